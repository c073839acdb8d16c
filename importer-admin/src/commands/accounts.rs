//! `accounts add | list | show | update | pause | resume | remove`, and [`create`], the one path
//! by which `accounts add`, `seed` and `demo` register an account (keys encrypted, hints
//! stored, never printed).

use std::io::{self, Write};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use importer_core::accounts::{self, Account, AccountError, AccountUpdate, NewAccount};
use importer_core::lists;
use importer_core::secrets::{validate_mailchimp_key, Secret, SecretBox, SecretField};
use importer_core::url_policy::UrlPolicy;
use serde::Serialize;
use sqlx::PgPool;

use crate::cli::{AccountAddArgs, AccountUpdateArgs, AccountsCommand, UsageError};
use crate::lookup;
use crate::output::{self, Format};
use crate::secret_input;
use crate::views::{self, ListView};

/// An account as commands print it: keys only as redacted hints.
#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    /// The account id.
    pub id: i64,
    /// Its unique name.
    pub name: String,
    /// Redacted Mailchimp key, e.g. `…-us6`.
    pub mailchimp_key: String,
    /// Mailchimp base URL override.
    pub mailchimp_base_url: Option<String>,
    /// Records API base URL.
    pub destination_url: String,
    /// Redacted destination key.
    pub destination_key: String,
    /// Most Mailchimp requests in flight.
    pub max_concurrency: i32,
    /// Paused accounts get no runs and no claims.
    pub paused: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<&Account> for AccountView {
    fn from(a: &Account) -> Self {
        AccountView {
            id: a.id,
            name: a.name.clone(),
            mailchimp_key: a.mailchimp_key_hint.clone(),
            mailchimp_base_url: a.mailchimp_base_url.clone(),
            destination_url: a.destination_url.clone(),
            destination_key: a.destination_key_hint.clone(),
            max_concurrency: a.max_concurrency,
            paused: a.paused,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// An account to register, keys in plaintext (they are encrypted by [`create`]).
#[derive(Debug, Clone)]
pub struct AccountInput {
    /// Unique name.
    pub name: String,
    /// Mailchimp API key.
    pub mailchimp_key: Secret,
    /// Destination API key.
    pub destination_key: Secret,
    /// Mailchimp base URL override.
    pub mailchimp_base_url: Option<String>,
    /// Records API base URL.
    pub destination_url: String,
    /// Most Mailchimp requests in flight.
    pub max_concurrency: i32,
}

/// Validates, encrypts and stores an account. Errors: a key of the wrong shape, a URL that is
/// not http(s), a taken name ([`AccountError::NameTaken`] in the chain), database failures.
pub async fn create(
    pool: &PgPool,
    secrets: &SecretBox,
    input: &AccountInput,
) -> anyhow::Result<Account> {
    if let Err(shape) = validate_mailchimp_key(input.mailchimp_key.expose()) {
        bail!(
            "the Mailchimp API key of account {:?} is not valid: {shape}",
            input.name
        );
    }
    let new = NewAccount {
        name: input.name.clone(),
        mailchimp_key: input.mailchimp_key.clone(),
        mailchimp_base_url: input
            .mailchimp_base_url
            .as_deref()
            .map(|u| http_url("--mailchimp-base-url", u))
            .transpose()?,
        destination_url: http_url("--destination-url", &input.destination_url)?,
        destination_key: input.destination_key.clone(),
        max_concurrency: input.max_concurrency,
    };
    Ok(accounts::create(pool, secrets, &new).await?)
}

/// Checks that `url` is http(s) and within the URL policy (`importer_core::url_policy`), and
/// drops a trailing slash (paths are appended to it).
fn http_url(option: &str, url: &str) -> anyhow::Result<String> {
    let url = url.trim();
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
        bail!("{option} must be an http:// or https:// URL, got {url:?}");
    }
    // Keys go where these URLs point: https, or plain http only to an allowed host.
    if let Err(refused) = UrlPolicy::from_env().check(url) {
        bail!("{option}: {refused}");
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// Runs an `accounts` subcommand.
pub async fn run<W: Write>(
    pool: &PgPool,
    command: AccountsCommand,
    format: Format,
    out: &mut W,
) -> anyhow::Result<()> {
    match command {
        AccountsCommand::Add(args) => add(pool, args, format, out).await,
        AccountsCommand::List => list(pool, format, out).await,
        AccountsCommand::Show { account } => show(pool, &account, format, out).await,
        AccountsCommand::Update(args) => update(pool, args, format, out).await,
        AccountsCommand::Pause { account } => set_paused(pool, &account, true, format, out).await,
        AccountsCommand::Resume { account } => set_paused(pool, &account, false, format, out).await,
        AccountsCommand::Remove { account, yes } => remove(pool, &account, yes, format, out).await,
    }
}

fn load_secret_box() -> anyhow::Result<SecretBox> {
    SecretBox::from_env().context("cannot encrypt the API keys")
}

async fn add<W: Write>(
    pool: &PgPool,
    args: AccountAddArgs,
    format: Format,
    out: &mut W,
) -> anyhow::Result<()> {
    let (Some(mc_source), Some(dest_source)) = (args.keys.mailchimp(), args.keys.destination())
    else {
        return Err(UsageError(
            "accounts add needs both keys: one of --mailchimp-key-env, --mailchimp-key-file, \
             --mailchimp-key-stdin and one of --destination-key-env, --destination-key-file, \
             --destination-key-stdin (keys are never taken from the command line)"
                .to_owned(),
        )
        .into());
    };
    let secrets = load_secret_box()?;
    let mut stdin = io::stdin().lock();
    let input = AccountInput {
        name: args.name.clone(),
        mailchimp_key: secret_input::mailchimp_key(&mc_source, &mut stdin)?,
        destination_key: secret_input::destination_key(&dest_source, &mut stdin)?,
        mailchimp_base_url: args.mailchimp_base_url,
        destination_url: args.destination_url,
        max_concurrency: args.max_concurrency,
    };
    let (account, created) = match create(pool, &secrets, &input).await {
        Ok(account) => (account, true),
        Err(e) if args.if_not_exists && is_name_taken(&e) => {
            let existing = accounts::find_by_name(pool, &args.name)
                .await?
                .with_context(|| format!("account {:?} vanished", args.name))?;
            (existing, false)
        }
        Err(e) => return Err(e),
    };
    let view = AccountView::from(&account);
    let text = if created {
        format!(
            "added account {} (id {}): mailchimp key {}, destination key {}",
            view.name, view.id, view.mailchimp_key, view.destination_key
        )
    } else {
        format!(
            "account {} (id {}) already exists; left unchanged",
            view.name, view.id
        )
    };
    output::done(out, format, &text, &view)
}

fn is_name_taken(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<AccountError>(),
        Some(AccountError::NameTaken(_))
    )
}

async fn list<W: Write>(pool: &PgPool, format: Format, out: &mut W) -> anyhow::Result<()> {
    let accounts = accounts::list(pool).await?;
    let lists = lists::list(pool, None).await?;
    let views: Vec<AccountView> = accounts.iter().map(AccountView::from).collect();
    let empty = "no accounts yet; add one with importer-admin accounts add";
    output::emit_list(out, format, &views, empty, |views| {
        let mut t = output::table([
            "id",
            "name",
            "mailchimp key",
            "mailchimp base url",
            "destination url",
            "destination key",
            "concurrency",
            "paused",
            "lists",
        ]);
        for a in views {
            let n = lists.iter().filter(|l| l.account_id == a.id).count();
            t.add_row(vec![
                a.id.to_string(),
                a.name.clone(),
                a.mailchimp_key.clone(),
                output::opt(a.mailchimp_base_url.as_deref()),
                a.destination_url.clone(),
                a.destination_key.clone(),
                a.max_concurrency.to_string(),
                if a.paused { "yes" } else { "no" }.to_owned(),
                n.to_string(),
            ]);
        }
        t
    })
}

/// `accounts show` as JSON: the account and its lists.
#[derive(Serialize)]
struct AccountDetail {
    #[serde(flatten)]
    account: AccountView,
    lists: Vec<ListView>,
}

async fn show<W: Write>(
    pool: &PgPool,
    reference: &str,
    format: Format,
    out: &mut W,
) -> anyhow::Result<()> {
    let account = lookup::account(pool, reference).await?;
    let lists = lists::list(pool, Some(account.id)).await?;
    let detail = AccountDetail {
        account: AccountView::from(&account),
        lists: lists
            .iter()
            .map(|l| ListView::new(l, &account.name))
            .collect(),
    };
    if format == Format::Json {
        return output::write_json(out, &detail);
    }
    let a = &detail.account;
    output::write_table(
        out,
        &output::details(vec![
            ("id", a.id.to_string()),
            ("name", a.name.clone()),
            ("mailchimp key", a.mailchimp_key.clone()),
            (
                "mailchimp base url",
                output::opt(a.mailchimp_base_url.as_deref()),
            ),
            ("destination url", a.destination_url.clone()),
            ("destination key", a.destination_key.clone()),
            ("max concurrency", a.max_concurrency.to_string()),
            ("paused", a.paused.to_string()),
            ("created", output::time(a.created_at)),
            ("updated", output::time(a.updated_at)),
        ]),
    )?;
    if detail.lists.is_empty() {
        writeln!(
            out,
            "no lists yet: importer-admin lists add --account {} --list-id …",
            a.name
        )?;
        return Ok(());
    }
    output::write_table(out, &views::list_table(&detail.lists))
}

async fn update<W: Write>(
    pool: &PgPool,
    args: AccountUpdateArgs,
    format: Format,
    out: &mut W,
) -> anyhow::Result<()> {
    let account = lookup::account(pool, &args.account).await?;
    let mut change = AccountUpdate {
        name: args.name,
        destination_url: args
            .destination_url
            .as_deref()
            .map(|u| http_url("--destination-url", u))
            .transpose()?,
        mailchimp_base_url: if args.clear_mailchimp_base_url {
            Some(None)
        } else {
            args.mailchimp_base_url
                .as_deref()
                .map(|u| http_url("--mailchimp-base-url", u).map(Some))
                .transpose()?
        },
        max_concurrency: args.max_concurrency,
        ..AccountUpdate::default()
    };
    let (mc_source, dest_source) = (args.keys.mailchimp(), args.keys.destination());
    if mc_source.is_some() || dest_source.is_some() {
        let secrets = load_secret_box()?;
        let mut stdin = io::stdin().lock();
        if let Some(source) = mc_source {
            let key = secret_input::mailchimp_key(&source, &mut stdin)?;
            change.mailchimp_key = Some(secrets.seal(account.id, SecretField::MailchimpKey, &key));
        }
        if let Some(source) = dest_source {
            let key = secret_input::destination_key(&source, &mut stdin)?;
            change.destination_key =
                Some(secrets.seal(account.id, SecretField::DestinationKey, &key));
        }
    }
    if change == AccountUpdate::default() {
        return Err(UsageError(
            "accounts update needs at least one change (see importer-admin accounts update --help)"
                .to_owned(),
        )
        .into());
    }
    let updated = accounts::update(pool, account.id, &change).await?;
    let view = AccountView::from(&updated);
    let text = format!("account {} (id {}) updated", view.name, view.id);
    output::done(out, format, &text, &view)
}

async fn set_paused<W: Write>(
    pool: &PgPool,
    reference: &str,
    paused: bool,
    format: Format,
    out: &mut W,
) -> anyhow::Result<()> {
    let account = lookup::account(pool, reference).await?;
    let updated = accounts::set_paused(pool, account.id, paused).await?;
    let view = AccountView::from(&updated);
    let text = if paused {
        format!(
            "account {} paused: no scheduled runs, none of its jobs claimed",
            view.name
        )
    } else {
        format!("account {} resumed", view.name)
    };
    output::done(out, format, &text, &view)
}

async fn remove<W: Write>(
    pool: &PgPool,
    reference: &str,
    yes: bool,
    format: Format,
    out: &mut W,
) -> anyhow::Result<()> {
    let account = lookup::account(pool, reference).await?;
    let lists = lists::list(pool, Some(account.id)).await?;
    if !yes {
        bail!(
            "refusing to remove account {} (id {}) with its {}, runs and jobs without --yes",
            account.name,
            account.id,
            output::count(lists.len() as u64, "list", "lists")
        );
    }
    accounts::remove(pool, account.id).await?;
    let text = format!(
        "account {} (id {}) removed with its {}",
        account.name,
        account.id,
        output::count(lists.len() as u64, "list", "lists")
    );
    output::done(
        out,
        format,
        &text,
        &serde_json::json!({"removed": AccountView::from(&account), "lists": lists.len()}),
    )
}
