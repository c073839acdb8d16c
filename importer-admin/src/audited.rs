//! The audit log of the command line: which commands change something, what the log calls them
//! and on which objects, and the row each writes with its outcome. Reads write nothing.

use importer_core::audit::{self, Outcome, Via};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::cli::{
    AccountsCommand, AuditEvery, Command, DeadCommand, LagArg, ListsCommand, RunsCommand,
    SecretsCommand, SettingsCommand, UsageError,
};

/// The action name and objects of a command that changes something; none for a read.
pub fn action(command: &Command) -> Option<(&'static str, Value)> {
    Some(match command {
        Command::Accounts(c) => match c {
            AccountsCommand::Add(a) => ("accounts.add", json!({ "name": a.name })),
            AccountsCommand::Update(a) => (
                "accounts.update",
                json!({
                    "account": a.account, "name": a.name, "max_concurrency": a.max_concurrency,
                    "destination_url": a.destination_url, "mailchimp_base_url": a.mailchimp_base_url,
                    "new_mailchimp_key": a.keys.mailchimp_key_env.is_some() || a.keys.mailchimp_key_file.is_some() || a.keys.mailchimp_key_stdin,
                    "new_destination_key": a.keys.destination_key_env.is_some() || a.keys.destination_key_file.is_some() || a.keys.destination_key_stdin,
                }),
            ),
            AccountsCommand::Pause { account } => ("accounts.pause", json!({ "account": account })),
            AccountsCommand::Resume { account } => {
                ("accounts.resume", json!({ "account": account }))
            }
            AccountsCommand::Remove { account, .. } => {
                ("accounts.remove", json!({ "account": account }))
            }
            AccountsCommand::List | AccountsCommand::Show { .. } => return None,
        },
        Command::Lists(c) => match c {
            ListsCommand::Add(a) => (
                "lists.add",
                json!({ "account": a.account, "mailchimp_list_id": a.list_id }),
            ),
            ListsCommand::Enable { list } => ("lists.enable", json!({ "list": list })),
            ListsCommand::Disable { list } => ("lists.disable", json!({ "list": list })),
            ListsCommand::SetSchedule { list, interval } => (
                "lists.set_schedule",
                json!({ "list": list, "schedule_secs": interval.as_secs() }),
            ),
            ListsCommand::SetSyncLag { list, lag } => (
                "lists.set_sync_lag",
                json!({ "list": list, "lag_secs": match lag { LagArg::Default => None, LagArg::Lag(d) => Some(d.as_secs_f64()) } }),
            ),
            ListsCommand::SetAuditEvery { list, every } => (
                "lists.set_audit_every",
                json!({ "list": list, "audit_every_secs": match every { AuditEvery::Off => None, AuditEvery::Every(d) => Some(d.as_secs()) } }),
            ),
            ListsCommand::SetAlwaysPost { list, value } => (
                "lists.set_always_post",
                json!({ "list": list, "always_post": value }),
            ),
            ListsCommand::ResetCursor { list, to } => {
                ("lists.reset_cursor", json!({ "list": list, "to": to }))
            }
            ListsCommand::List { .. } => return None,
        },
        Command::Audit(a) if !a.last => {
            ("audit", json!({ "list": a.list, "redeliver": a.redeliver }))
        }
        Command::Audit(_) => return None,
        Command::Runs(c) => match c {
            RunsCommand::Start { list, full, since } => (
                "runs.start",
                json!({ "list": list, "full": full, "since": since }),
            ),
            RunsCommand::Cancel { id } => ("runs.cancel", json!({ "run_id": id })),
            RunsCommand::List { .. } | RunsCommand::Show { .. } | RunsCommand::Watch { .. } => {
                return None
            }
        },
        Command::Dead(c) => match c {
            DeadCommand::Requeue(t) => (
                "dead.requeue",
                json!({ "job": t.job, "run": t.run, "error_contains": t.error_contains }),
            ),
            DeadCommand::Purge { older_than } => (
                "dead.purge",
                json!({ "older_than_secs": older_than.as_secs() }),
            ),
            DeadCommand::List { .. } | DeadCommand::Show { .. } => return None,
        },
        Command::Settings(SettingsCommand::Set(a)) => (
            "settings.set",
            json!({
                "sync_lag_secs": a.sync_lag.map(|d| d.as_secs_f64()),
                "keep_runs_secs": a.keep_runs.map(|d| d.as_secs()),
                "keep_dead_jobs_secs": a.keep_dead_jobs.map(|d| d.as_secs()),
                "keep_rejected_records_secs": a.keep_rejected_records.map(|d| d.as_secs()),
                "keep_audit_log_secs": a.keep_audit_log.map(|d| d.as_secs()),
            }),
        ),
        Command::Tick => ("tick", json!({})),
        Command::Secrets(SecretsCommand::Rotate { batch }) => {
            ("secrets.rotate", json!({ "batch": batch }))
        }
        Command::Seed(a) => ("seed", json!({ "sim_config": a.sim_config })),
        Command::Settings(SettingsCommand::Show)
        | Command::Secrets(SecretsCommand::Status)
        | Command::Migrate(_)
        | Command::Queue
        | Command::Demo(_)
        | Command::Serve(_)
        | Command::Exporter(_) => return None,
    })
}

/// Who runs the command: `IMPORTER_ACTOR`, else `cli:` and the OS user.
fn actor() -> String {
    if let Ok(actor) = std::env::var("IMPORTER_ACTOR") {
        if !actor.trim().is_empty() {
            return actor.trim().to_owned();
        }
    }
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("cli:{user}")
}

/// Writes the command's row. A usage error or a rule's refusal is `refused`; an error that
/// reached the database is `failed`. A failure to write is reported on stderr, not hidden.
pub async fn record(pool: &PgPool, action: &str, objects: Value, result: &anyhow::Result<()>) {
    let (outcome, detail) = match result {
        Ok(()) => (Outcome::Ok, None),
        Err(e) => {
            let database = e.chain().any(|c| c.downcast_ref::<sqlx::Error>().is_some());
            let usage = e.downcast_ref::<UsageError>().is_some();
            let outcome = if database && !usage {
                Outcome::Failed
            } else {
                Outcome::Refused
            };
            (outcome, Some(format!("{e:#}")))
        }
    };
    let entry = audit::NewEntry {
        actor: actor(),
        via: Via::Cli,
        action: action.to_owned(),
        objects,
        outcome,
        detail,
    };
    match audit::record(pool, &entry).await {
        Ok(_) => {}
        // An unmigrated database: the command itself already failed for that reason.
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => {}
        Err(e) => eprintln!(
            "warning: could not write the audit log: {}",
            crate::database::describe(&e)
        ),
    }
}
