//! Retention: how long finished runs, dead jobs, rejected records and audit rows are kept
//! (`importer.settings.keep_*`), and [`prune`], which deletes a bounded batch of each past its
//! age (`importer.prune`). Every worker prunes after its tick, so old rows go at a steady pace
//! without a maintenance job, and no prune holds locks for long.

use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;

use crate::queue::micros;

/// Rows of each kind one prune deletes at most.
pub const PRUNE_BATCH: i32 = 1000;

/// How long each kind of row is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Retention {
    /// Finished runs, with their dead jobs, rejected records and audit results (a list's newest
    /// completed sync and newest completed audit are always kept).
    pub keep_runs: Duration,
    /// Dead jobs.
    pub keep_dead_jobs: Duration,
    /// Rejected records.
    pub keep_rejected_records: Duration,
    /// Audit log rows.
    pub keep_audit_log: Duration,
}

/// A change to the ages; `None` keeps one as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionUpdate {
    /// New age of finished runs (at least a day).
    pub keep_runs: Option<Duration>,
    /// New age of dead jobs (at least an hour).
    pub keep_dead_jobs: Option<Duration>,
    /// New age of rejected records (at least an hour).
    pub keep_rejected_records: Option<Duration>,
    /// New age of audit rows (at least a day).
    pub keep_audit_log: Option<Duration>,
}

/// Why a retention change was refused.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The database failed or is unreachable.
    #[error("retention database error: {0}")]
    Database(#[from] sqlx::Error),
    /// An age below the schema's minimum (a day for runs and audit rows, an hour otherwise).
    #[error("invalid retention: {0}")]
    Invalid(String),
}

fn secs(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or_default())
}

/// The ages in force. Errors are database failures.
pub async fn get(pool: &PgPool) -> Result<Retention, RetentionError> {
    let (runs, dead, rejected, audit): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (extract(epoch FROM keep_runs) * 1000000)::bigint,
                (extract(epoch FROM keep_dead_jobs) * 1000000)::bigint,
                (extract(epoch FROM keep_rejected_records) * 1000000)::bigint,
                (extract(epoch FROM keep_audit_log) * 1000000)::bigint
           FROM importer.settings",
    )
    .fetch_one(pool)
    .await?;
    Ok(Retention {
        keep_runs: secs(runs),
        keep_dead_jobs: secs(dead),
        keep_rejected_records: secs(rejected),
        keep_audit_log: secs(audit),
    })
}

/// Changes the ages given; returns those in force. Errors: [`RetentionError::Invalid`] (below a
/// minimum; nothing changes), database failures.
pub async fn set(pool: &PgPool, update: &RetentionUpdate) -> Result<Retention, RetentionError> {
    let done = sqlx::query(
        "UPDATE importer.settings
            SET keep_runs = coalesce($1 * interval '1 microsecond', keep_runs),
                keep_dead_jobs = coalesce($2 * interval '1 microsecond', keep_dead_jobs),
                keep_rejected_records = coalesce($3 * interval '1 microsecond', keep_rejected_records),
                keep_audit_log = coalesce($4 * interval '1 microsecond', keep_audit_log),
                updated_at = now()",
    )
    .bind(update.keep_runs.map(micros))
    .bind(update.keep_dead_jobs.map(micros))
    .bind(update.keep_rejected_records.map(micros))
    .bind(update.keep_audit_log.map(micros))
    .execute(pool)
    .await;
    match done {
        Err(sqlx::Error::Database(db)) if db.is_check_violation() => Err(RetentionError::Invalid(
            "runs and audit rows are kept at least 1 day, dead jobs and rejected records at least 1 hour"
                .to_owned(),
        )),
        Err(e) => Err(e.into()),
        Ok(_) => get(pool).await,
    }
}

/// What one prune deleted, per kind.
pub type Pruned = Vec<(String, i64)>;

/// Deletes at most `batch` rows of each kind past its age; returns the counts per kind
/// (`runs`, `dead_jobs`, `rejected_records`, `audit_log`, `records_per_minute`). Concurrent
/// calls skip each other's rows. Errors are database failures.
pub async fn prune(pool: &PgPool, batch: i32) -> Result<Pruned, sqlx::Error> {
    sqlx::query_as("SELECT what, deleted FROM importer.prune($1)")
        .bind(batch.max(1))
        .fetch_all(pool)
        .await
}
