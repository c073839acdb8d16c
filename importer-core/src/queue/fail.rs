//! A holder's unhappy endings: retry later (with backoff or the server's Retry-After), snooze
//! without spending an attempt, or dead-letter with the job's error history.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{micros, ClaimedJob, Fence, QueueError};
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

/// What [`snooze`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnoozeOutcome {
    /// Back in the queue without spending an attempt, claimable from `run_after`.
    Snoozed {
        /// When the job becomes claimable again.
        run_after: DateTime<Utc>,
    },
    /// The job had snoozed as often or as long as [`RetryPolicy`] allows: it was retried
    /// instead, spending an attempt (or dead-lettered on its last one).
    Retried(RetryOutcome),
    /// The fence no longer holds: nothing changed.
    Fenced,
}

/// How a holder's job waits after a failure: the one home of retry and snooze delays and limits.
///
/// A snooze (Mailchimp's 429: our own concurrency, not the job's fault) spends no attempt, so
/// without limits a key that the client's other tools keep saturated would make a job poll
/// forever. After [`max_snoozes`](Self::max_snoozes) snoozes in a row, or once the first of them
/// is [`max_snooze_age`](Self::max_snooze_age) old, the next snooze is a retry: it spends an
/// attempt, so the job ends in `dead_jobs` with its reason if the key never frees up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Delay of a retry without a server's Retry-After, by attempt.
    pub retry: Backoff,
    /// Delay of a snooze without a Retry-After, by the job's snooze count.
    pub snooze: Backoff,
    /// The longest server Retry-After honoured; a longer one is cut to this.
    pub max_retry_after: Duration,
    /// Snoozes in a row after which a snooze becomes a retry.
    pub max_snoozes: i32,
    /// Age of the first snooze in a row after which a snooze becomes a retry.
    pub max_snooze_age: Duration,
}

impl Default for RetryPolicy {
    /// Retries 5 s → 10 min, snoozes 1 s → 30 s, Retry-After capped at 1 h, a snooze becomes a
    /// retry after 100 in a row or 30 min.
    fn default() -> Self {
        RetryPolicy {
            retry: Backoff::default(),
            snooze: Backoff::snooze(),
            max_retry_after: MAX_RETRY_AFTER,
            max_snoozes: 100,
            max_snooze_age: Duration::from_secs(1800),
        }
    }
}

impl RetryPolicy {
    /// The delay before claim number `attempt + 1` after a retryable failure.
    pub fn retry_delay(&self, attempt: i32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(server) => server.min(self.max_retry_after),
            None => self.retry.delay(attempt),
        }
    }

    /// The delay of the job's next snooze, `snoozes` being the snoozes it already made in a row.
    pub fn snooze_delay(&self, snoozes: i32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(server) => server.min(self.max_retry_after),
            None => self.snooze.delay(snoozes.saturating_add(1)),
        }
    }
}

/// Puts the held job back with [`RetryPolicy::default`] (see [`retry_with`]).
pub async fn retry(
    pool: &PgPool,
    job: &ClaimedJob,
    error: &str,
    retry_after: Option<Duration>,
) -> Result<RetryOutcome, QueueError> {
    retry_with(pool, job, &RetryPolicy::default(), error, retry_after).await
}

/// Records `error` and puts the held job back in the queue after `policy`'s retry delay (the
/// server's Retry-After, capped, or the backoff for this attempt); the attempt stays spent and
/// the snooze series restarts. On the job's last attempt it is dead-lettered instead (reason
/// `exhausted`) and counted dead on its run. Errors are database failures.
pub async fn retry_with(
    pool: &PgPool,
    job: &ClaimedJob,
    policy: &RetryPolicy,
    error: &str,
    retry_after: Option<Duration>,
) -> Result<RetryOutcome, QueueError> {
    let fence = job.fence();
    let delay = policy.retry_delay(job.attempt, retry_after);
    let retried: Option<DateTime<Utc>> = sqlx::query_scalar(
        "UPDATE importer.jobs
            SET lease_token = NULL,
                locked_by = NULL,
                locked_until = NULL,
                holds_slot = false,
                extra_slots = 0,
                snoozes = 0,
                first_snoozed_at = NULL,
                run_after = now() + $3 * interval '1 microsecond',
                last_error = $4,
                errors = importer.push_error(errors, jsonb_build_object(
                             'attempt', attempts, 'at', now(), 'error', $4::text, 'kind', 'retry')),
                errors_total = errors_total + 1
          WHERE id = $1 AND lease_token = $2 AND locked_until IS NOT NULL
            AND attempts < max_attempts
         RETURNING run_after",
    )
    .bind(fence.job_id)
    .bind(fence.token)
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

/// Reschedules the held job without spending its attempt (Mailchimp said 429 because of our own
/// concurrency), after `policy`'s snooze delay for its snooze count (or the server's
/// Retry-After, capped), recording `reason` in its bounded history. Past `policy`'s snooze
/// limits it retries instead ([`SnoozeOutcome::Retried`]). Either way the lease is gone.
/// Errors are database failures.
pub async fn snooze(
    pool: &PgPool,
    job: &ClaimedJob,
    policy: &RetryPolicy,
    reason: &str,
    retry_after: Option<Duration>,
) -> Result<SnoozeOutcome, QueueError> {
    let fence = job.fence();
    let delay = policy.snooze_delay(job.snoozes, retry_after);
    let snoozed: Option<DateTime<Utc>> = sqlx::query_scalar(
        "UPDATE importer.jobs
            SET attempts = attempts - 1,
                lease_token = NULL,
                locked_by = NULL,
                locked_until = NULL,
                holds_slot = false,
                extra_slots = 0,
                snoozes = snoozes + 1,
                first_snoozed_at = coalesce(first_snoozed_at, now()),
                run_after = now() + $3 * interval '1 microsecond',
                last_error = $4,
                errors = importer.push_error(errors, jsonb_build_object(
                             'attempt', attempts, 'at', now(), 'error', $4::text, 'kind', 'snooze')),
                errors_total = errors_total + 1
          WHERE id = $1 AND lease_token = $2 AND locked_until IS NOT NULL
            AND snoozes < $5
            AND (first_snoozed_at IS NULL
                 OR first_snoozed_at > now() - $6 * interval '1 microsecond')
         RETURNING run_after",
    )
    .bind(fence.job_id)
    .bind(fence.token)
    .bind(micros(delay))
    .bind(reason)
    .bind(policy.max_snoozes)
    .bind(micros(policy.max_snooze_age))
    .fetch_optional(pool)
    .await?;
    if let Some(run_after) = snoozed {
        return Ok(SnoozeOutcome::Snoozed { run_after });
    }
    let error = format!(
        "{reason} (still rate limited after {} snoozes in a row: spending an attempt)",
        job.snoozes
    );
    match retry_with(pool, job, policy, &error, retry_after).await? {
        RetryOutcome::Fenced => Ok(SnoozeOutcome::Fenced),
        other => Ok(SnoozeOutcome::Retried(other)),
    }
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
                             WHERE j.id = $1 AND j.lease_token = $2 AND j.locked_until IS NOT NULL)
                FOR NO KEY UPDATE
         ),
         gone AS (
             DELETE FROM importer.jobs j
              WHERE j.id = $1 AND j.lease_token = $2 AND j.locked_until IS NOT NULL
                AND ($5 OR j.attempts >= j.max_attempts)
                AND (SELECT count(*) FROM run_lock) >= 0
             RETURNING j.*
         ),
         buried AS (
             INSERT INTO importer.dead_jobs
                    (id, kind, args, account_id, run_id, attempts, max_attempts, last_error,
                     errors, errors_total, reason, created_at)
             SELECT g.id, g.kind, g.args, g.account_id, g.run_id, g.attempts, g.max_attempts, $3,
                    importer.push_error(g.errors, jsonb_build_object(
                        'attempt', g.attempts, 'at', now(), 'error', $3::text, 'kind', $4::text)),
                    g.errors_total + 1, $4, g.created_at
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
    .bind(fence.token)
    .bind(error)
    .bind(reason)
    .bind(any_attempt)
    .fetch_one(pool)
    .await?;
    Ok(buried == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::Jitter;

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let p = RetryPolicy {
            max_retry_after: Duration::from_secs(300),
            ..RetryPolicy::default()
        };
        let s = Duration::from_secs;
        assert_eq!(p.retry_delay(3, Some(s(42))), s(42));
        assert_eq!(p.retry_delay(1, Some(s(365 * 86_400))), s(300));
        assert_eq!(p.snooze_delay(0, Some(s(365 * 86_400))), s(300));
        let d = p.retry_delay(1, None);
        assert!(d >= Duration::from_millis(2500) && d <= s(5));
    }

    #[test]
    fn snoozes_back_off_from_one_to_thirty_seconds() {
        let p = RetryPolicy {
            snooze: Backoff {
                jitter: Jitter::None,
                ..Backoff::snooze()
            },
            ..RetryPolicy::default()
        };
        let delays: Vec<u64> = (0..8).map(|n| p.snooze_delay(n, None).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
