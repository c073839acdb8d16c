//! `seed`: registers the accounts and lists of an importer-sim configuration file, pointing at
//! the simulator's URLs, idempotently (what exists is left alone). docker-compose runs it once.

use std::io::Write;

use anyhow::{bail, Context};
use importer_core::accounts::{self, DEFAULT_MAX_CONCURRENCY};
use importer_core::lists::{self, NewList};
use importer_core::secrets::{validate_mailchimp_key, Secret, SecretBox};
use importer_sim::SimConfig;
use serde::Serialize;
use sqlx::PgPool;

use crate::cli::SeedArgs;
use crate::commands::accounts::{create as create_account, AccountInput};
use crate::commands::lists::create as create_list;
use crate::output::{self, Format};

/// What seeding did to one account or list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeedAction {
    /// It was registered now.
    Created,
    /// It was registered before; left alone.
    Exists,
}

/// One seeded list.
#[derive(Debug, Serialize)]
pub struct SeededList {
    /// The importer's list id.
    pub id: i64,
    /// Mailchimp audience id.
    pub mailchimp_list_id: String,
    /// What happened.
    pub action: SeedAction,
}

/// One seeded account and its lists.
#[derive(Debug, Serialize)]
pub struct SeededAccount {
    /// The importer's account id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// What happened.
    pub action: SeedAction,
    /// Its lists.
    pub lists: Vec<SeededList>,
}

/// Runs `seed`.
pub async fn run<W: Write>(
    pool: &PgPool,
    args: SeedArgs,
    format: Format,
    out: &mut W,
) -> anyhow::Result<()> {
    let path = args.sim_config.display().to_string();
    let text = std::fs::read_to_string(&args.sim_config)
        .with_context(|| format!("cannot read the simulator configuration {path}"))?;
    let config: SimConfig = toml::from_str(&text)
        .with_context(|| format!("{path} is not a valid importer-sim configuration"))?;
    // Check every account before writing anything, so a bad file changes nothing.
    for (i, account) in config.accounts.iter().enumerate() {
        let which = format!("account #{} ({:?}) in {path}", i + 1, account.name);
        if account.name.trim().is_empty() {
            bail!("{which} has no name");
        }
        if let Err(shape) = validate_mailchimp_key(&account.api_key) {
            bail!("the api_key of {which} is not valid: {shape}");
        }
        if account.destination_key.as_deref().is_none_or(str::is_empty) {
            bail!("{which} has no destination_key: the importer could not deliver its records");
        }
    }
    let secrets = SecretBox::from_env().context("cannot encrypt the API keys")?;
    let mut report = Vec::new();
    for seed in &config.accounts {
        let (account, action) = match accounts::find_by_name(pool, &seed.name).await? {
            Some(existing) => (existing, SeedAction::Exists),
            None => {
                let input = AccountInput {
                    name: seed.name.clone(),
                    mailchimp_key: Secret::new(seed.api_key.clone()),
                    destination_key: Secret::new(seed.destination_key.clone().unwrap_or_default()),
                    mailchimp_base_url: Some(args.mailchimp_base_url.clone()),
                    destination_url: args.destination_url.clone(),
                    max_concurrency: DEFAULT_MAX_CONCURRENCY,
                };
                let created = create_account(pool, &secrets, &input)
                    .await
                    .with_context(|| format!("cannot register account {:?}", seed.name))?;
                (created, SeedAction::Created)
            }
        };
        let existing = lists::list(pool, Some(account.id)).await?;
        let mut seeded_lists = Vec::new();
        for list in &seed.lists {
            if let Some(found) = existing.iter().find(|l| l.mailchimp_list_id == list.id) {
                seeded_lists.push(SeededList {
                    id: found.id,
                    mailchimp_list_id: list.id.clone(),
                    action: SeedAction::Exists,
                });
                continue;
            }
            let new = NewList {
                account_id: account.id,
                mailchimp_list_id: list.id.clone(),
                name: None,
                schedule: args.schedule,
                enabled: true,
            };
            let created = create_list(pool, &new)
                .await
                .with_context(|| format!("cannot register list {}/{}", seed.name, list.id))?;
            seeded_lists.push(SeededList {
                id: created.id,
                mailchimp_list_id: list.id.clone(),
                action: SeedAction::Created,
            });
        }
        report.push(SeededAccount {
            id: account.id,
            name: account.name,
            action,
            lists: seeded_lists,
        });
    }
    if format == Format::Json {
        return output::write_json(out, &report);
    }
    let mut t = output::table(["account", "list", "id", "seeded"]);
    let word = |a: SeedAction| match a {
        SeedAction::Created => "created",
        SeedAction::Exists => "exists, left alone",
    };
    for a in &report {
        t.add_row(vec![
            a.name.clone(),
            "-".to_owned(),
            a.id.to_string(),
            word(a.action).to_owned(),
        ]);
        for l in &a.lists {
            t.add_row(vec![
                a.name.clone(),
                l.mailchimp_list_id.clone(),
                l.id.to_string(),
                word(l.action).to_owned(),
            ]);
        }
    }
    output::write_table(out, &t)?;
    let created = report
        .iter()
        .flat_map(|a| std::iter::once(a.action).chain(a.lists.iter().map(|l| l.action)))
        .filter(|a| *a == SeedAction::Created)
        .count();
    writeln!(
        out,
        "seeded from {path}: {created} created; lists are synced every {} (the first run starts at the next tick)",
        output::interval(args.schedule)
    )?;
    Ok(())
}
