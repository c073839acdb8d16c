//! Read-only looks at the queue for operators: the `importer.queue_depth` and `importer.leases`
//! views as Rust rows.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::QueueError;

/// A job's state as `importer.queue_depth` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum JobState {
    /// Claimable now.
    Waiting,
    /// Claimable later (backoff, Retry-After, snooze).
    Scheduled,
    /// Held on a live lease.
    Running,
    /// Lease expired; will be reclaimed or dead-lettered by the next claim.
    Expired,
}

/// One row of `importer.queue_depth`: jobs of one account in one state.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct QueueDepthRow {
    /// The account.
    pub account_id: i64,
    /// Its name.
    pub account: String,
    /// Whether it is paused (its jobs are not claimed).
    pub paused: bool,
    /// The state.
    pub state: JobState,
    /// Jobs in this state.
    pub jobs: i64,
    /// Of which hold a live Mailchimp slot.
    pub slots: i64,
    /// Seconds since the oldest of them was enqueued.
    pub oldest_age_secs: f64,
    /// Earliest `run_after` among them.
    pub next_run_after: DateTime<Utc>,
}

/// One row of `importer.leases`: the jobs one worker holds.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct LeaseRow {
    /// The worker id (`jobs.locked_by`).
    pub worker: String,
    /// Jobs it holds, live or expired.
    pub jobs: i64,
    /// Of which on a live lease.
    pub live: i64,
    /// Of which hold a live Mailchimp slot.
    pub slots: i64,
    /// Of which expired (a dead worker shows only these).
    pub expired: i64,
    /// Distinct accounts among them.
    pub accounts: i64,
    /// The earliest lease expiry.
    pub next_expiry: DateTime<Utc>,
}

/// Queue depth per account and state, by account name then state. Errors are database failures.
pub async fn queue_depth(pool: &PgPool) -> Result<Vec<QueueDepthRow>, QueueError> {
    Ok(sqlx::query_as(
        "SELECT account_id, account, paused, state, jobs, slots,
                extract(epoch FROM oldest_age)::float8 AS oldest_age_secs, next_run_after
           FROM importer.queue_depth
          ORDER BY account, account_id,
                   array_position(ARRAY['running', 'expired', 'waiting', 'scheduled'], state)",
    )
    .fetch_all(pool)
    .await?)
}

/// Jobs held per worker, by worker id. Errors are database failures.
pub async fn leases(pool: &PgPool) -> Result<Vec<LeaseRow>, QueueError> {
    Ok(sqlx::query_as(
        "SELECT worker, jobs, live, slots, expired, accounts, next_expiry
           FROM importer.leases ORDER BY worker",
    )
    .fetch_all(pool)
    .await?)
}
