//! The scheduler tick: creates the due scheduled runs by calling the SQL function
//! `importer.tick(now)` (see its migration for the rules: one slot per schedule period at a fixed per-list phase, one run per list
//! and slot, none while the list has an active run or its account is paused).
//!
//! Every worker calls [`tick`] every few seconds; concurrent calls are safe because unique
//! indexes decide which call creates a run, so there is no leader to elect.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::runs::RunMode;

/// A run the tick created (with its `plan_run` job).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickedRun {
    /// The new run.
    pub run_id: i64,
    /// Its list.
    pub list_id: i64,
    /// The list's account.
    pub account_id: i64,
    /// Full (the list was never synced), incremental (since its cursor) or audit.
    pub mode: RunMode,
}
crate::from_row!(TickedRun {
    run_id,
    list_id,
    account_id,
    mode
});

/// Why a tick failed.
#[derive(Debug, thiserror::Error)]
pub enum TickError {
    /// The database failed or is unreachable; the next tick will catch up.
    #[error("tick failed: {0}")]
    Database(#[from] sqlx::Error),
}

/// Creates the runs due now; returns them, in list order. `at` picks the schedule slot and
/// defaults to the database clock (workers pass `None`: a worker's clock is never trusted);
/// tests pass an instant to play through a schedule. Either way each run's window ends at the
/// database clock minus the sync lag (`importer.create_runs`). Idempotent within a slot.
/// Errors are database failures; nothing is created then.
pub async fn tick<'e, E: PgExecutor<'e>>(
    executor: E,
    at: Option<DateTime<Utc>>,
) -> Result<Vec<TickedRun>, TickError> {
    Ok(sqlx::query_as(
        "SELECT run_id, list_id, account_id, mode
           FROM importer.tick(coalesce($1, now())) ORDER BY list_id",
    )
    .bind(at)
    .fetch_all(executor)
    .await?)
}
