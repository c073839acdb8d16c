//! Read-only looks at the queue for operators: the `importer.queue_depth` and `importer.leases`
//! views as Rust rows.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::QueueError;

/// A job's state as `importer.queue_depth` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

crate::text_enum!(JobState {
    Waiting => "waiting",
    Scheduled => "scheduled",
    Running => "running",
    Expired => "expired",
});

/// One row of `importer.queue_depth`: jobs of one account in one state.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
crate::from_row!(QueueDepthRow {
    account_id,
    account,
    paused,
    state,
    jobs,
    slots,
    oldest_age_secs,
    next_run_after
});

/// One row of `importer.leases`: the jobs one worker holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
crate::from_row!(LeaseRow {
    worker,
    jobs,
    live,
    slots,
    expired,
    accounts,
    next_expiry
});

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

/// Jobs in each state over every account, each count capped (see [`StateCount::capped`]), and
/// how long the oldest claimable job has waited.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateCounts {
    /// One count per state, in the order waiting, scheduled, running, expired.
    pub states: Vec<StateCount>,
    /// Seconds since the oldest waiting (claimable now) job was enqueued; none if none waits.
    pub oldest_waiting_secs: Option<f64>,
}

/// Jobs in one state, counted up to a cap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StateCount {
    /// The state.
    pub state: JobState,
    /// Jobs in it, at most the cap.
    pub jobs: i64,
    /// Whether there are more than `jobs` (the count stopped at the cap).
    pub capped: bool,
}

/// Counts jobs per state, stopping each count at `cap`: a backlog of millions costs no more to
/// show than one of `cap` jobs, since every state's count is a `LIMIT`ed range of the index
/// that serves claims (`jobs_waiting`, `jobs_leased`). Errors are database failures.
pub async fn state_counts(pool: &PgPool, cap: i64) -> Result<StateCounts, QueueError> {
    let (waiting, scheduled, running, expired, oldest): (i64, i64, i64, i64, Option<f64>) =
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM (SELECT 1 FROM importer.jobs
                      WHERE locked_until IS NULL AND run_after <= now() LIMIT $1 + 1) s),
                    (SELECT count(*) FROM (SELECT 1 FROM importer.jobs
                      WHERE locked_until IS NULL AND run_after > now() LIMIT $1 + 1) s),
                    (SELECT count(*) FROM (SELECT 1 FROM importer.jobs
                      WHERE locked_until IS NOT NULL AND locked_until > now() LIMIT $1 + 1) s),
                    (SELECT count(*) FROM (SELECT 1 FROM importer.jobs
                      WHERE locked_until IS NOT NULL AND locked_until <= now() LIMIT $1 + 1) s),
                    -- ids grow with created_at: the primary key finds the oldest
                    (SELECT extract(epoch FROM now() - created_at)::float8
                       FROM importer.jobs
                      WHERE locked_until IS NULL AND run_after <= now()
                      ORDER BY id LIMIT 1)",
        )
        .bind(cap)
        .fetch_one(pool)
        .await?;
    let count = |state, n: i64| StateCount {
        state,
        jobs: n.min(cap),
        capped: n > cap,
    };
    Ok(StateCounts {
        states: vec![
            count(JobState::Waiting, waiting),
            count(JobState::Scheduled, scheduled),
            count(JobState::Running, running),
            count(JobState::Expired, expired),
        ],
        oldest_waiting_secs: oldest,
    })
}

/// One row of `importer.workers`: a worker seen through the leases it holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerRow {
    /// The worker id (`jobs.locked_by`).
    pub worker: String,
    /// Jobs it holds on a live lease.
    pub jobs: i64,
    /// Of which hold a Mailchimp slot.
    pub slots: i64,
    /// Jobs whose lease it let expire.
    pub expired: i64,
    /// Its newest claim or lease renewal.
    pub last_beat: Option<DateTime<Utc>>,
    /// Seconds since then.
    pub since_last_beat_secs: Option<f64>,
}
crate::from_row!(WorkerRow {
    worker,
    jobs,
    slots,
    expired,
    last_beat,
    since_last_beat_secs
});

/// Workers holding jobs, most recently beating first. Errors are database failures.
pub async fn workers(pool: &PgPool) -> Result<Vec<WorkerRow>, QueueError> {
    Ok(sqlx::query_as(
        "SELECT worker, jobs, slots, expired, last_beat,
                extract(epoch FROM since_last_beat)::float8 AS since_last_beat_secs
           FROM importer.workers ORDER BY last_beat DESC NULLS LAST, worker",
    )
    .fetch_all(pool)
    .await?)
}
