//! `lists add | list | enable | disable | set-schedule | reset-cursor`, [`create`] (the path
//! `lists add`, `seed` and `demo` share) and [`resolve`] (a `<list>` argument: its id or
//! `account/mailchimp_list_id`).

use std::io::Write;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use comfy_table::Table;
use importer_core::accounts::{self, Account};
use importer_core::lists::{self, List, ListError, NewList};
use serde::Serialize;
use sqlx::PgPool;

use crate::cli::{LagArg, ListAddArgs, ListsCommand};
use crate::commands::accounts::resolve as resolve_account;
use crate::output::{self, Format};

/// A list as commands print it.
#[derive(Debug, Clone, Serialize)]
pub struct ListView {
    /// The list id.
    pub id: i64,
    /// Its account.
    pub account_id: i64,
    /// The account's name.
    pub account: String,
    /// Mailchimp audience id.
    pub mailchimp_list_id: String,
    /// A name for people.
    pub name: Option<String>,
    /// Schedule as people write it (`1h`).
    pub schedule: String,
    /// Schedule in seconds.
    pub schedule_secs: u64,
    /// Whether scheduled runs are created.
    pub enabled: bool,
    /// The cursor; none = never synced (next run is full).
    pub synced_until: Option<DateTime<Utc>>,
    /// The list's own sync lag in seconds; none = the deployment's.
    pub sync_lag_secs: Option<f64>,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

impl ListView {
    /// The view of `list`, whose account is named `account`.
    pub fn new(list: &List, account: &str) -> Self {
        ListView {
            id: list.id,
            account_id: list.account_id,
            account: account.to_owned(),
            mailchimp_list_id: list.mailchimp_list_id.clone(),
            name: list.name.clone(),
            schedule: output::interval(list.schedule),
            schedule_secs: list.schedule.as_secs(),
            enabled: list.enabled,
            synced_until: list.synced_until,
            sync_lag_secs: list.sync_lag.map(|d| d.as_secs_f64()),
            created_at: list.created_at,
        }
    }

    /// `account/mailchimp_list_id`.
    pub fn label(&self) -> String {
        format!("{}/{}", self.account, self.mailchimp_list_id)
    }
}

/// The table of `lists list` and `accounts show`.
pub fn table(views: &[ListView]) -> Table {
    let mut t = output::table(["id", "list", "name", "schedule", "enabled", "synced until"]);
    for l in views {
        t.add_row(vec![
            l.id.to_string(),
            l.label(),
            output::opt(l.name.as_deref()),
            l.schedule.clone(),
            if l.enabled { "yes" } else { "no" }.to_owned(),
            l.synced_until
                .map_or_else(|| "never (next run full)".to_owned(), output::time),
        ]);
    }
    t
}

/// Adds a list after checking what the schema would refuse, with messages that say why.
/// Errors: bad id or schedule, a duplicate ([`ListError::Duplicate`] in the chain), database
/// failures.
pub async fn create(pool: &PgPool, new: &NewList) -> anyhow::Result<List> {
    check_mailchimp_id(&new.mailchimp_list_id)?;
    Ok(lists::add(pool, new).await?)
}

fn check_mailchimp_id(id: &str) -> anyhow::Result<()> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        bail!("Mailchimp list id {id:?} is not valid: it must be 1 to 64 letters and digits (e.g. a1b2c3d4e5)");
    }
    Ok(())
}

/// Finds a list by id or `account/mailchimp_list_id`, with its account. Errors: no such list
/// (the message says how to list them), database failures.
pub async fn resolve(pool: &PgPool, reference: &str) -> anyhow::Result<(List, Account)> {
    let not_found = || {
        format!("no list {reference:?}; name it by id or account/mailchimp_list_id (see importer-admin lists list)")
    };
    let list = match reference.rsplit_once('/') {
        Some((account, mailchimp_id)) => {
            let account = resolve_account(pool, account).await?;
            lists::list(pool, Some(account.id))
                .await?
                .into_iter()
                .find(|l| l.mailchimp_list_id == mailchimp_id)
                .with_context(not_found)?
        }
        None => {
            let id: i64 = reference.parse().ok().with_context(not_found)?;
            lists::get(pool, id).await?.with_context(not_found)?
        }
    };
    let account = accounts::get(pool, list.account_id)
        .await?
        .with_context(not_found)?;
    Ok((list, account))
}

/// Runs a `lists` subcommand.
pub async fn run<W: Write>(
    pool: &PgPool,
    command: ListsCommand,
    format: Format,
    out: &mut W,
) -> anyhow::Result<()> {
    match command {
        ListsCommand::Add(args) => add(pool, args, format, out).await,
        ListsCommand::List { account } => list(pool, account.as_deref(), format, out).await,
        ListsCommand::Enable { list } => {
            let (l, a) = resolve(pool, &list).await?;
            let l = lists::set_enabled(pool, l.id, true).await?;
            changed(out, format, &ListView::new(&l, &a.name), "enabled")
        }
        ListsCommand::Disable { list } => {
            let (l, a) = resolve(pool, &list).await?;
            let l = lists::set_enabled(pool, l.id, false).await?;
            changed(
                out,
                format,
                &ListView::new(&l, &a.name),
                "disabled (an active run continues)",
            )
        }
        ListsCommand::SetSchedule { list, interval } => {
            let (l, a) = resolve(pool, &list).await?;
            let l = lists::set_schedule(pool, l.id, interval).await?;
            let what = format!("now synced every {}", output::interval(interval));
            changed(out, format, &ListView::new(&l, &a.name), &what)
        }
        ListsCommand::SetSyncLag { list, lag } => {
            let (l, a) = resolve(pool, &list).await?;
            let lag = match lag {
                LagArg::Default => None,
                LagArg::Lag(d) => {
                    importer_core::settings::check_lag(d)?;
                    Some(d)
                }
            };
            let l = lists::set_sync_lag(pool, l.id, lag).await?;
            let what = match lag {
                Some(d) => format!("now uses a sync lag of {}", output::interval(d)),
                None => "now uses the deployment's sync lag (settings show)".to_owned(),
            };
            changed(out, format, &ListView::new(&l, &a.name), &what)
        }
        ListsCommand::ResetCursor { list, to } => {
            let (l, a) = resolve(pool, &list).await?;
            let l = lists::reset_cursor(pool, l.id, to).await?;
            let what = match to {
                Some(t) => format!(
                    "cursor set to {}: the next run syncs changes since then",
                    output::time(t)
                ),
                None => "cursor cleared: the next run is a full sync".to_owned(),
            };
            changed(out, format, &ListView::new(&l, &a.name), &what)
        }
    }
}

fn changed<W: Write>(
    out: &mut W,
    format: Format,
    view: &ListView,
    what: &str,
) -> anyhow::Result<()> {
    let text = format!("list {} (id {}) {what}", view.label(), view.id);
    output::done(out, format, &text, view)
}

async fn add<W: Write>(
    pool: &PgPool,
    args: ListAddArgs,
    format: Format,
    out: &mut W,
) -> anyhow::Result<()> {
    let account = resolve_account(pool, &args.account).await?;
    let new = NewList {
        account_id: account.id,
        mailchimp_list_id: args.list_id.clone(),
        name: args.name,
        schedule: args.schedule,
        enabled: !args.disabled,
    };
    let (list, created) = match create(pool, &new).await {
        Ok(list) => (list, true),
        Err(e)
            if args.if_not_exists
                && matches!(e.downcast_ref(), Some(ListError::Duplicate { .. })) =>
        {
            let existing = lists::list(pool, Some(account.id))
                .await?
                .into_iter()
                .find(|l| l.mailchimp_list_id == args.list_id)
                .context("the existing list vanished")?;
            (existing, false)
        }
        Err(e) => return Err(e),
    };
    let view = ListView::new(&list, &account.name);
    let text = if created {
        format!(
            "added list {} (id {}), synced every {}{}",
            view.label(),
            view.id,
            view.schedule,
            if view.enabled { "" } else { " once enabled" }
        )
    } else {
        format!(
            "list {} (id {}) already exists; left unchanged",
            view.label(),
            view.id
        )
    };
    output::done(out, format, &text, &view)
}

async fn list<W: Write>(
    pool: &PgPool,
    account: Option<&str>,
    format: Format,
    out: &mut W,
) -> anyhow::Result<()> {
    let account_id = match account {
        Some(reference) => Some(resolve_account(pool, reference).await?.id),
        None => None,
    };
    let names: std::collections::HashMap<i64, String> = accounts::list(pool)
        .await?
        .into_iter()
        .map(|a| (a.id, a.name))
        .collect();
    let views: Vec<ListView> = lists::list(pool, account_id)
        .await?
        .iter()
        .map(|l| {
            let name = names.get(&l.account_id).map_or("?", String::as_str);
            ListView::new(l, name)
        })
        .collect();
    let empty = "no lists; add one with importer-admin lists add";
    output::emit_list(out, format, &views, empty, table)
}
