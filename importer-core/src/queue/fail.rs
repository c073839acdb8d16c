//! A holder's unhappy endings: retry later (with backoff or the server's Retry-After), snooze
//! without spending an attempt, or dead-letter with the job's error history.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{micros, Fence, QueueError};
use crate::backoff::Backoff;

pub use crate::backoff::MAX_RETRY_AFTER;

/// What [`retry`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    /// Back in the queue, claimable from `run_after`.
    Retried {
        /// When the job becomes claimable again.
        run_after: DateTime<Utc>,
    },
    /// That was the last attempt: moved to `importer.dead_jobs` (reason `exhausted`).
    DeadLettered,
    /// The fence no longer holds: nothing changed.
    Fenced,
}

/// Puts the fenced job back with [`Backoff::default`] (see [`retry_with`]).
pub async fn retry(
    pool: &PgPool,
    fence: Fence,
    error: &str,
    retry_after: Option<Duration>,
) -> Result<RetryOutcome, QueueError> {
    retry_with(pool, fence, &Backoff::default(), error, retry_after).await
}

/// Records `error` and puts the fenced job back in the queue after `retry_after` (the server's
/// Retry-After, capped at [`MAX_RETRY_AFTER`]) or else `backoff`'s delay for this attempt; the
/// attempt stays spent. On the job's last attempt it is dead-lettered instead (reason
/// `exhausted`) and counted dead on its run. Errors are database failures.
pub async fn retry_with(
    pool: &PgPool,
    fence: Fence,
    backoff: &Backoff,
    error: &str,
    retry_after: Option<Duration>,
) -> Result<RetryOutcome, QueueError> {
    let delay = backoff.retry_delay(fence.attempt, retry_after);
    let retried: Option<DateTime<Utc>> = sqlx::query_scalar(
        "UPDATE importer.jobs
            SET locked_by = NULL,
                locked_until = NULL,
                holds_slot = false,
                extra_slots = 0,
                run_after = now() + $3 * interval '1 microsecond',
                last_error = $4,
                errors = errors || jsonb_build_array(jsonb_build_object(
                             'attempt', attempts, 'at', now(), 'error', $4::text, 'kind', 'retry'))
          WHERE id = $1 AND attempts = $2 AND locked_until IS NOT NULL
            AND attempts < max_attempts
         RETURNING run_after",
    )
    .bind(fence.job_id)
    .bind(fence.attempt)
    .bind(micros(delay))
    .bind(error)
    .fetch_optional(pool)
    .await?;
    if let Some(run_after) = retried {
        return Ok(RetryOutcome::Retried { run_after });
    }
    if bury(pool, fence, error, Burial::Exhausted).await? {
        Ok(RetryOutcome::DeadLettered)
    } else {
        Ok(RetryOutcome::Fenced)
    }
}

/// Reschedules the fenced job `delay` from now without spending its attempt (e.g. Mailchimp
/// said 429 because of our own concurrency), recording `reason` in its history. The attempt
/// number is handed back, so the caller must drop its fence. `Ok(false)`: the fence no longer
/// holds. Errors are database failures.
pub async fn snooze(
    pool: &PgPool,
    fence: Fence,
    delay: Duration,
    reason: &str,
) -> Result<bool, QueueError> {
    let done = sqlx::query(
        "UPDATE importer.jobs
            SET attempts = attempts - 1,
                locked_by = NULL,
                locked_until = NULL,
                holds_slot = false,
                extra_slots = 0,
                run_after = now() + $3 * interval '1 microsecond',
                errors = errors || jsonb_build_array(jsonb_build_object(
                             'attempt', attempts, 'at', now(), 'error', $4::text, 'kind', 'snooze'))
          WHERE id = $1 AND attempts = $2 AND locked_until IS NOT NULL",
    )
    .bind(fence.job_id)
    .bind(fence.attempt)
    .bind(micros(delay))
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Moves the fenced job to `importer.dead_jobs` (reason `permanent`: retrying cannot help, e.g.
/// 401 or an unknown list) with its error history, counting it dead on its run, in one
/// transaction. `Ok(false)`: the fence no longer holds. Errors are database failures.
pub async fn dead_letter(pool: &PgPool, fence: Fence, error: &str) -> Result<bool, QueueError> {
    bury(pool, fence, error, Burial::Permanent).await
}

/// Why a holder dead-letters its job.
#[derive(Clone, Copy)]
enum Burial {
    /// A retryable error on the last attempt (only then does it apply).
    Exhausted,
    /// A permanent error, on any attempt.
    Permanent,
}

/// Moves the fenced job to dead_jobs and counts it on its run, in one statement (run row locked
/// before the job row). Returns whether the fence held.
async fn bury(
    pool: &PgPool,
    fence: Fence,
    error: &str,
    burial: Burial,
) -> Result<bool, QueueError> {
    let (reason, any_attempt) = match burial {
        Burial::Exhausted => ("exhausted", false),
        Burial::Permanent => ("permanent", true),
    };
    let buried: i64 = sqlx::query_scalar(
        "WITH run_lock AS MATERIALIZED (
             SELECT r.id FROM importer.runs r
              WHERE r.id = (SELECT j.run_id FROM importer.jobs j
                             WHERE j.id = $1 AND j.attempts = $2 AND j.locked_until IS NOT NULL)
                FOR NO KEY UPDATE
         ),
         gone AS (
             DELETE FROM importer.jobs j
              WHERE j.id = $1 AND j.attempts = $2 AND j.locked_until IS NOT NULL
                AND ($5 OR j.attempts >= j.max_attempts)
                AND (SELECT count(*) FROM run_lock) >= 0
             RETURNING j.*
         ),
         buried AS (
             INSERT INTO importer.dead_jobs
                    (id, kind, args, account_id, run_id, attempts, max_attempts, last_error,
                     errors, reason, created_at)
             SELECT g.id, g.kind, g.args, g.account_id, g.run_id, g.attempts, g.max_attempts, $3,
                    g.errors || jsonb_build_array(jsonb_build_object(
                        'attempt', g.attempts, 'at', now(), 'error', $3::text, 'kind', $4::text)),
                    $4, g.created_at
               FROM gone g
         ),
         counted AS (
             UPDATE importer.runs r
                SET jobs_pending = r.jobs_pending - 1,
                    jobs_dead = r.jobs_dead + 1
               FROM gone g
              WHERE r.id = g.run_id
         )
         SELECT count(*) FROM gone",
    )
    .bind(fence.job_id)
    .bind(fence.attempt)
    .bind(error)
    .bind(reason)
    .bind(any_attempt)
    .fetch_one(pool)
    .await?;
    Ok(buried == 1)
}
