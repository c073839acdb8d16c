//! The dead-letter store: listing dead jobs, requeueing them (by job, by run, by error text)
//! with fresh attempts, and purging old ones.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Postgres, Transaction};

use super::{JobKind, QueueError};

/// Why a job died; stored in `dead_jobs.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum DeadReason {
    /// Retryable errors used every attempt.
    Exhausted,
    /// A permanent error (e.g. 401, unknown list).
    Permanent,
    /// The last attempt's lease expired: its worker died or stalled.
    LeaseExpired,
}

/// A row of `importer.dead_jobs`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeadJob {
    /// The id the job had in the queue (kept on requeue).
    pub id: i64,
    /// What the job did.
    pub kind: JobKind,
    /// Its arguments.
    pub args: serde_json::Value,
    /// Its account.
    pub account_id: i64,
    /// Its run, if any.
    pub run_id: Option<i64>,
    /// Claims it had.
    pub attempts: i32,
    /// Claims it was allowed.
    pub max_attempts: i32,
    /// The error that killed it.
    pub last_error: Option<String>,
    /// The newest errors it saw (at most 20): `[{attempt, at, error, kind}]`.
    pub errors: serde_json::Value,
    /// Entries ever added to the history (`errors` keeps the newest 20).
    pub errors_total: i32,
    /// Why it died.
    pub reason: DeadReason,
    /// When it was first enqueued.
    pub created_at: DateTime<Utc>,
    /// When it died.
    pub died_at: DateTime<Utc>,
}

/// Which dead jobs [`list_dead`] returns (all conditions must hold), newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadFilter {
    /// Only this run's.
    pub run_id: Option<i64>,
    /// Only this account's.
    pub account_id: Option<i64>,
    /// Only those whose last error contains this text (case-insensitive).
    pub error_contains: Option<String>,
    /// At most this many (default 100).
    pub limit: Option<i64>,
}

const DEAD_COLUMNS: &str = "id, kind, args, account_id, run_id, attempts, max_attempts, \
                            last_error, errors, errors_total, reason, created_at, died_at";

/// Lists dead jobs matching `filter`, most recently died first. Errors are database failures.
pub async fn list_dead(pool: &PgPool, filter: &DeadFilter) -> Result<Vec<DeadJob>, QueueError> {
    let sql = format!(
        "SELECT {DEAD_COLUMNS} FROM importer.dead_jobs
          WHERE ($1::bigint IS NULL OR run_id = $1)
            AND ($2::bigint IS NULL OR account_id = $2)
            AND ($3::text IS NULL OR strpos(lower(last_error), lower($3)) > 0)
          ORDER BY died_at DESC, id DESC
          LIMIT $4"
    );
    Ok(sqlx::query_as(&sql)
        .bind(filter.run_id)
        .bind(filter.account_id)
        .bind(filter.error_contains.as_deref())
        .bind(filter.limit.unwrap_or(100))
        .fetch_all(pool)
        .await?)
}

/// One dead job by id (`None` if there is none). Errors are database failures.
pub async fn get_dead(pool: &PgPool, id: i64) -> Result<Option<DeadJob>, QueueError> {
    let sql = format!("SELECT {DEAD_COLUMNS} FROM importer.dead_jobs WHERE id = $1");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?)
}

/// Requeues one dead job (see [`requeue_run`] for the rules); returns 1.
///
/// Errors: [`QueueError::DeadJobNotFound`], [`QueueError::RunCancelled`],
/// [`QueueError::ListBusy`], database failures.
pub async fn requeue_job(pool: &PgPool, id: i64) -> Result<u64, QueueError> {
    let moved = requeue(pool, Selector::Job(id)).await?;
    if moved == 0 {
        return Err(QueueError::DeadJobNotFound(id));
    }
    Ok(moved)
}

/// Moves every dead job of `run_id` back into the queue with fresh attempts (same ids), counts
/// them pending again on the run and, if the run had failed, sets it running again; returns how
/// many moved (0 if the run has no dead jobs). One transaction.
///
/// Errors: [`QueueError::RunCancelled`] (a cancelled run stays cancelled),
/// [`QueueError::ListBusy`] when reviving a failed run whose list has another active run,
/// database failures; then nothing moves.
pub async fn requeue_run(pool: &PgPool, run_id: i64) -> Result<u64, QueueError> {
    requeue(pool, Selector::Run(run_id)).await
}

/// Requeues every dead job whose last error contains `error_contains` (case-insensitive), as
/// [`requeue_run`] does, skipping jobs of cancelled runs; returns how many moved.
///
/// Errors: [`QueueError::ListBusy`] (nothing moves), database failures.
pub async fn requeue_matching(pool: &PgPool, error_contains: &str) -> Result<u64, QueueError> {
    requeue(pool, Selector::Error(error_contains)).await
}

/// Deletes dead jobs that died before `older_than`; returns how many. Their runs keep counting
/// them in `jobs_dead`. Errors are database failures.
pub async fn purge_dead(pool: &PgPool, older_than: DateTime<Utc>) -> Result<u64, QueueError> {
    let done = sqlx::query("DELETE FROM importer.dead_jobs WHERE died_at < $1")
        .bind(older_than)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// Which dead jobs a requeue moves.
enum Selector<'a> {
    Job(i64),
    Run(i64),
    Error(&'a str),
}

async fn requeue(pool: &PgPool, selector: Selector<'_>) -> Result<u64, QueueError> {
    let mut tx = pool.begin().await?;
    let (by_job, by_run, by_error) = match selector {
        Selector::Job(id) => (Some(id), None, None),
        Selector::Run(id) => (None, Some(id), None),
        Selector::Error(text) => (None, None, Some(text)),
    };
    let candidates: Vec<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT id, run_id FROM importer.dead_jobs
          WHERE ($1::bigint IS NULL OR id = $1)
            AND ($2::bigint IS NULL OR run_id = $2)
            AND ($3::text IS NULL OR strpos(lower(last_error), lower($3)) > 0)
          ORDER BY id",
    )
    .bind(by_job)
    .bind(by_run)
    .bind(by_error)
    .fetch_all(&mut *tx)
    .await?;
    if candidates.is_empty() {
        return Ok(0);
    }
    let mut run_ids: Vec<i64> = candidates.iter().filter_map(|(_, r)| *r).collect();
    run_ids.sort_unstable();
    run_ids.dedup();

    // Runs first, in id order (the lock order of every path that counts on runs).
    let runs: Vec<(i64, i64, String)> = sqlx::query_as(
        "SELECT id, list_id, status FROM importer.runs
          WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
    )
    .bind(&run_ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut skipped_runs = Vec::new();
    for (run_id, list_id, status) in &runs {
        match status.as_str() {
            "cancelled" if by_error.is_some() => skipped_runs.push(*run_id),
            "cancelled" => return Err(QueueError::RunCancelled { run_id: *run_id }),
            "failed" => check_list_free(&mut tx, *run_id, *list_id).await?,
            _ => {}
        }
    }
    let ids: Vec<i64> = candidates
        .iter()
        .filter(|(_, run)| run.is_none_or(|r| !skipped_runs.contains(&r)))
        .map(|(id, _)| *id)
        .collect();

    let moved = sqlx::query_scalar::<_, i64>(
        "WITH moved AS (
             DELETE FROM importer.dead_jobs WHERE id = ANY($1)
             RETURNING id, kind, args, account_id, run_id, max_attempts, last_error, errors, errors_total,
                       created_at
         ),
         back AS (
             INSERT INTO importer.jobs
                    (id, kind, args, account_id, run_id, attempts, max_attempts, run_after,
                     last_error, errors, errors_total, created_at)
             OVERRIDING SYSTEM VALUE
             SELECT id, kind, args, account_id, run_id, 0, max_attempts, now(),
                    last_error, errors, errors_total, created_at
               FROM moved
             RETURNING id, run_id
         ),
         counted AS (
             UPDATE importer.runs r
                SET jobs_dead = r.jobs_dead - c.n,
                    jobs_pending = r.jobs_pending + c.n,
                    status = CASE WHEN r.status = 'failed' THEN 'running' ELSE r.status END,
                    finished_at = CASE WHEN r.status = 'failed' THEN NULL ELSE r.finished_at END,
                    error = CASE WHEN r.status = 'failed' THEN NULL ELSE r.error END
               FROM (SELECT run_id, count(*)::int AS n FROM back
                      WHERE run_id IS NOT NULL GROUP BY run_id) c
              WHERE r.id = c.run_id
         ),
         notified AS MATERIALIZED (
             SELECT importer.wake_workers() WHERE EXISTS (SELECT 1 FROM back)
         )
         SELECT count(*) FROM back WHERE (SELECT count(*) FROM notified) >= 0",
    )
    .bind(&ids)
    .fetch_one(&mut *tx)
    .await;
    let moved = match moved {
        Ok(n) => n,
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("runs_one_active_per_list") => {
            // A run of the list became active between the check and the update (e.g. a tick).
            drop(tx);
            return Err(busy_error(pool, &runs).await);
        }
        Err(e) => return Err(e.into()),
    };
    tx.commit().await?;
    Ok(u64::try_from(moved).unwrap_or_default())
}

/// Fails with [`QueueError::ListBusy`] if `list_id` has an active run other than `run_id`.
async fn check_list_free(
    tx: &mut Transaction<'_, Postgres>,
    run_id: i64,
    list_id: i64,
) -> Result<(), QueueError> {
    let active: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM importer.runs
          WHERE list_id = $1 AND status IN ('planning', 'running') AND id <> $2",
    )
    .bind(list_id)
    .bind(run_id)
    .fetch_optional(&mut **tx)
    .await?;
    match active {
        Some(active_run_id) => Err(QueueError::ListBusy {
            run_id,
            list_id,
            active_run_id,
        }),
        None => Ok(()),
    }
}

/// Names the conflicting active run after a lost race on `runs_one_active_per_list`.
async fn busy_error(pool: &PgPool, runs: &[(i64, i64, String)]) -> QueueError {
    for (run_id, list_id, status) in runs {
        if status != "failed" {
            continue;
        }
        let active: Result<Option<i64>, _> = sqlx::query_scalar(
            "SELECT id FROM importer.runs
              WHERE list_id = $1 AND status IN ('planning', 'running') AND id <> $2",
        )
        .bind(list_id)
        .bind(run_id)
        .fetch_optional(pool)
        .await;
        match active {
            Ok(Some(active_run_id)) => {
                return QueueError::ListBusy {
                    run_id: *run_id,
                    list_id: *list_id,
                    active_run_id,
                }
            }
            Ok(None) => {}
            Err(e) => return e.into(),
        }
    }
    QueueError::Database(sqlx::Error::Protocol(
        "requeue conflicted with another active run that has since finished; retry".to_owned(),
    ))
}
