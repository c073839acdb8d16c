//! `settings`: the deployment-wide settings (`importer.settings`), today the sync lag.

use std::io::Write;

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
}

impl From<Settings> for SettingsView {
    fn from(s: Settings) -> Self {
        SettingsView {
            sync_lag_secs: s.sync_lag.as_secs_f64(),
        }
    }
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
            let s = settings::get(pool).await?;
            if format == Format::Json {
                return output::write_json(out, &SettingsView::from(s));
            }
            let table = output::details(vec![(
                "sync lag",
                format!(
                    "{} (a run covers changes up to now minus this; lists may override it)",
                    output::interval(s.sync_lag)
                ),
            )]);
            output::write_table(out, &table)
        }
        SettingsCommand::Set { sync_lag } => {
            let s = settings::set_sync_lag(pool, sync_lag).await?;
            let text = format!(
                "sync lag set to {}: runs created from now on end that far behind the database clock",
                output::interval(s.sync_lag)
            );
            output::done(out, format, &text, &SettingsView::from(s))
        }
    }
}
