//! Deployment-wide settings (`importer.settings`, one row): today the sync lag.
//!
//! The sync lag is how far behind the database clock a run's window ends. It absorbs Mailchimp's
//! clock skew and the delay before a change is visible in the API (DESIGN.md section 6): a change
//! stamped before `until` must be visible when the run starts. A list may override it
//! (`lists.sync_lag`).

use std::time::Duration;

use sqlx::PgPool;

use crate::queue::micros;

/// The sync lag a fresh deployment starts with (the migration's default): see docs/architecture.md,
/// "Sync correctness" for why 60 s.
pub const DEFAULT_SYNC_LAG: Duration = Duration::from_secs(60);

/// The longest sync lag the schema accepts.
pub const MAX_SYNC_LAG: Duration = Duration::from_secs(86_400);

/// Why a settings operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The database failed or is unreachable.
    #[error("settings database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The value is outside what the schema accepts.
    #[error("sync lag must be at most {max:?}, not {given:?}")]
    LagOutOfRange {
        /// The value given.
        given: Duration,
        /// The largest allowed.
        max: Duration,
    },
}

/// The deployment's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How far behind the database clock windows end.
    pub sync_lag: Duration,
}

/// Reads the settings. Errors are database failures.
pub async fn get(pool: &PgPool) -> Result<Settings, SettingsError> {
    let us: i64 = sqlx::query_scalar(
        "SELECT (extract(epoch FROM sync_lag) * 1000000)::bigint FROM importer.settings",
    )
    .fetch_one(pool)
    .await?;
    Ok(Settings {
        sync_lag: Duration::from_micros(u64::try_from(us).unwrap_or_default()),
    })
}

/// Sets the deployment's sync lag (whole seconds are stored as given, fractions too). Errors:
/// [`SettingsError::LagOutOfRange`], database failures.
pub async fn set_sync_lag(pool: &PgPool, lag: Duration) -> Result<Settings, SettingsError> {
    check_lag(lag)?;
    sqlx::query(
        "UPDATE importer.settings
            SET sync_lag = $1 * interval '1 microsecond', updated_at = now()",
    )
    .bind(micros(lag))
    .execute(pool)
    .await?;
    get(pool).await
}

/// Refuses a lag the schema would refuse, with a message naming the limit.
pub fn check_lag(lag: Duration) -> Result<(), SettingsError> {
    if lag > MAX_SYNC_LAG {
        return Err(SettingsError::LagOutOfRange {
            given: lag,
            max: MAX_SYNC_LAG,
        });
    }
    Ok(())
}
