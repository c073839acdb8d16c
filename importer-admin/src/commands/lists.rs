//! `lists add | list | enable | disable | set-schedule | reset-cursor`, and [`create`] (the
//! path `lists add`, `seed` and `demo` share).

use std::io::Write;

use anyhow::{bail, Context};
use importer_core::accounts;
use importer_core::lists::{self, List, ListError, NewList};
use sqlx::PgPool;

use crate::cli::{AuditEvery, LagArg, ListAddArgs, ListsCommand};
use crate::lookup;
use crate::output::{self, Format};
use crate::views::{self, ListView};

/// Adds a list after checking what the schema would refuse, with messages that say why.
/// Errors: bad id or schedule, a duplicate ([`ListError::Duplicate`] in the chain), database
/// failures.
pub async fn create(pool: &PgPool, new: &NewList) -> anyhow::Result<List> {
    check_mailchimp_id(&new.mailchimp_list_id)?;
    Ok(lists::add(pool, new).await?)
}

fn check_mailchimp_id(id: &str) -> anyhow::Result<()> {
    if !importer_core::mailchimp::is_list_id(id) {
        bail!("Mailchimp list id {id:?} is not valid: it must be 1 to 64 letters, digits, - or _ (e.g. a1b2c3d4e5)");
    }
    Ok(())
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
            let (l, a) = lookup::list(pool, &list).await?;
            let l = lists::set_enabled(pool, l.id, true).await?;
            changed(out, format, &ListView::new(&l, &a.name), "enabled")
        }
        ListsCommand::Disable { list } => {
            let (l, a) = lookup::list(pool, &list).await?;
            let l = lists::set_enabled(pool, l.id, false).await?;
            changed(
                out,
                format,
                &ListView::new(&l, &a.name),
                "disabled (an active run continues)",
            )
        }
        ListsCommand::SetSchedule { list, interval } => {
            let (l, a) = lookup::list(pool, &list).await?;
            let l = lists::set_schedule(pool, l.id, interval).await?;
            let what = format!("now synced every {}", output::interval(interval));
            changed(out, format, &ListView::new(&l, &a.name), &what)
        }
        ListsCommand::SetSyncLag { list, lag } => {
            let (l, a) = lookup::list(pool, &list).await?;
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
        ListsCommand::SetAuditEvery { list, every } => {
            let (l, a) = lookup::list(pool, &list).await?;
            let (every, what) = match every {
                AuditEvery::Off => (None, "now audited only on request".to_owned()),
                AuditEvery::Every(d) => (
                    Some(d),
                    format!("now audited every {}", output::interval(d)),
                ),
            };
            let l = lists::set_audit_every(pool, l.id, every).await?;
            changed(out, format, &ListView::new(&l, &a.name), &what)
        }
        ListsCommand::SetAlwaysPost { list, value } => {
            let (l, a) = lookup::list(pool, &list).await?;
            let l = lists::set_always_post(pool, l.id, value).await?;
            let what = if value {
                "now posts every member read"
            } else {
                "now posts only members whose record changed (the ledger)"
            };
            changed(out, format, &ListView::new(&l, &a.name), what)
        }
        ListsCommand::ResetCursor { list, to } => {
            let (l, a) = lookup::list(pool, &list).await?;
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
    let account = lookup::account(pool, &args.account).await?;
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
    let list = if created && args.always_post {
        lists::set_always_post(pool, list.id, true).await?
    } else {
        list
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
        Some(reference) => Some(lookup::account(pool, reference).await?.id),
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
    output::emit_list(out, format, &views, empty, views::list_table)
}
