//! `settings`: the deployment-wide settings (`importer.settings`): the sync lag and the
//! retention ages.

use std::io::Write;

use importer_core::retention::{self, Retention, RetentionUpdate};
use importer_core::settings::{self, Settings};
use serde::Serialize;
use sqlx::PgPool;

use crate::cli::SettingsCommand;
use crate::output::{self, Format};

/// The settings as printed.
#[derive(Serialize)]
struct SettingsView {
    /// Sync lag in seconds.
    sync_lag_secs: f64,
    /// Finished runs are kept this many seconds.
    keep_runs_secs: u64,
    /// Dead jobs are kept this many seconds.
    keep_dead_jobs_secs: u64,
    /// Rejected records are kept this many seconds.
    keep_rejected_records_secs: u64,
    /// Audit rows are kept this many seconds.
    keep_audit_log_secs: u64,
}

impl SettingsView {
    fn new(s: Settings, r: Retention) -> Self {
        SettingsView {
            sync_lag_secs: s.sync_lag.as_secs_f64(),
            keep_runs_secs: r.keep_runs.as_secs(),
            keep_dead_jobs_secs: r.keep_dead_jobs.as_secs(),
            keep_rejected_records_secs: r.keep_rejected_records.as_secs(),
            keep_audit_log_secs: r.keep_audit_log.as_secs(),
        }
    }
}

async fn current(pool: &PgPool) -> anyhow::Result<(Settings, Retention)> {
    Ok((settings::get(pool).await?, retention::get(pool).await?))
}

/// Runs a `settings` subcommand.
pub async fn run<W: Write>(
    pool: &PgPool,
    command: SettingsCommand,
    format: Format,
    out: &mut W,
) -> anyhow::Result<()> {
    match command {
        SettingsCommand::Show => {
            let (s, r) = current(pool).await?;
            if format == Format::Json {
                return output::write_json(out, &SettingsView::new(s, r));
            }
            let table = output::details(vec![
                (
                    "sync lag",
                    format!(
                        "{} (a run covers changes up to now minus this; lists may override it)",
                        output::interval(s.sync_lag)
                    ),
                ),
                (
                    "keep runs",
                    format!(
                        "{} (finished runs, with their dead jobs and rejected records; each list's newest completed sync and audit stay)",
                        output::interval(r.keep_runs)
                    ),
                ),
                ("keep dead jobs", output::interval(r.keep_dead_jobs)),
                ("keep rejected records", output::interval(r.keep_rejected_records)),
                ("keep audit log", output::interval(r.keep_audit_log)),
            ]);
            output::write_table(out, &table)
        }
        SettingsCommand::Set(args) => {
            let mut changed = Vec::new();
            if let Some(lag) = args.sync_lag {
                settings::set_sync_lag(pool, lag).await?;
                changed.push(format!(
                    "sync lag {}: runs created from now on end that far behind the database clock",
                    output::interval(lag)
                ));
            }
            let update = RetentionUpdate {
                keep_runs: args.keep_runs,
                keep_dead_jobs: args.keep_dead_jobs,
                keep_rejected_records: args.keep_rejected_records,
                keep_audit_log: args.keep_audit_log,
            };
            if update != RetentionUpdate::default() {
                let r = retention::set(pool, &update).await?;
                changed.push(format!(
                    "retention: runs {}, dead jobs {}, rejected records {}, audit log {} (workers prune after each tick)",
                    output::interval(r.keep_runs),
                    output::interval(r.keep_dead_jobs),
                    output::interval(r.keep_rejected_records),
                    output::interval(r.keep_audit_log)
                ));
            }
            let (s, r) = current(pool).await?;
            output::done(out, format, &changed.join("; "), &SettingsView::new(s, r))
        }
    }
}
