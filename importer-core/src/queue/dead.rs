//! The dead-letter store: listing dead jobs, requeueing them (by job, by run, by error text)
//! with fresh attempts, and purging old ones.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Postgres, Transaction};

use super::{JobKind, QueueError};

/// Why a job died; stored in `dead_jobs.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadReason {
    /// Retryable errors used every attempt.
    Exhausted,
    /// A permanent error (e.g. 401, unknown list).
    Permanent,
    /// The last attempt's lease expired: its worker died or stalled.
    LeaseExpired,
}

crate::text_enum!(DeadReason {
    Exhausted => "exhausted",
    Permanent => "permanent",
    LeaseExpired => "lease_expired",
});

/// A row of `importer.dead_jobs`.
#[derive(Debug, Clone, PartialEq)]
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
crate::from_row!(DeadJob {
    id,
    kind,
    args,
    account_id,
    run_id,
    attempts,
    max_attempts,
    last_error,
    errors,
    errors_total,
    reason,
    created_at,
    died_at
});

/// Which dead jobs [`list_dead`] returns (all conditions must hold), newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadFilter {
    /// Only this run's.
    pub run_id: Option<i64>,
    /// Only this account's.
    pub account_id: Option<i64>,
    /// Only those whose last error contains this text (case-insensitive).
    pub error_contains: Option<String>,
    /// Only those that died for this reason.
    pub reason: Option<DeadReason>,
    /// Only those that died at or after this instant.
    pub died_since: Option<DateTime<Utc>>,
    /// Only those listed after this one (`(died_at, id)` of the last row of the previous page).
    pub after: Option<(DateTime<Utc>, i64)>,
    /// At most this many (default 100).
    pub limit: Option<i64>,
}

/// Dead jobs sharing one last error, among a sample of the newest matching a filter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadGroup {
    /// The last error they share.
    pub error: Option<String>,
    /// How many of the sample have it.
    pub jobs: i64,
    /// Distinct runs among them.
    pub runs: i64,
    /// When the newest of them died.
    pub last_died_at: DateTime<Utc>,
}
crate::from_row!(DeadGroup {
    error,
    jobs,
    runs,
    last_died_at
});

/// What a bulk requeue or purge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BulkOutcome {
    /// Jobs moved back to the queue (requeue) or deleted (purge).
    pub jobs: u64,
    /// Jobs left dead because their run was cancelled (requeue only).
    pub skipped: u64,
    /// Transactions it took, one per chunk.
    pub chunks: u64,
}

const DEAD_COLUMNS: &str = "id, kind, args, account_id, run_id, attempts, max_attempts, \
                            last_error, errors, errors_total, reason, created_at, died_at";

/// Lists dead jobs matching `filter`, most recently died first. Errors are database failures.
pub async fn list_dead(pool: &PgPool, filter: &DeadFilter) -> Result<Vec<DeadJob>, QueueError> {
    let sql = format!(
        "SELECT {DEAD_COLUMNS} FROM importer.dead_jobs
          WHERE {MATCHES}
            AND ($6::timestamptz IS NULL OR (died_at, id) < ($6, $7))
          ORDER BY died_at DESC, id DESC
          LIMIT $8"
    );
    let (after_at, after_id) = filter.after.unzip();
    Ok(bind_matches(sqlx::query_as(&sql), filter)
        .bind(after_at)
        .bind(after_id)
        .bind(filter.limit.unwrap_or(100))
        .fetch_all(pool)
        .await?)
}

/// The conditions of a [`DeadFilter`] but its page: `$1` run, `$2` account, `$3` error text,
/// `$4` reason, `$5` died since. One home for what "matching the filter" means, shared by the
/// listing, the grouping and the bulk actions.
const MATCHES: &str = "($1::bigint IS NULL OR run_id = $1)
            AND ($2::bigint IS NULL OR account_id = $2)
            AND ($3::text IS NULL OR strpos(lower(last_error), lower($3)) > 0)
            AND ($4::text IS NULL OR reason = $4)
            AND ($5::timestamptz IS NULL OR died_at >= $5)";

/// Binds `$1`..`$5` of [`MATCHES`].
fn bind_matches<'q, O>(
    query: sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments>,
    filter: &'q DeadFilter,
) -> sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments> {
    query
        .bind(filter.run_id)
        .bind(filter.account_id)
        .bind(filter.error_contains.as_deref())
        .bind(filter.reason)
        .bind(filter.died_since)
}

/// Dead jobs matching `filter` grouped by last error, largest group first, over the newest
/// `sample` of them: grouping 100,000 rows on every page view is what makes queue dashboards
/// slow, and the newest few thousand show what is failing now. Errors are database failures.
pub async fn group_dead(
    pool: &PgPool,
    filter: &DeadFilter,
    sample: i64,
) -> Result<Vec<DeadGroup>, QueueError> {
    let sql = format!(
        "SELECT last_error AS error, count(*) AS jobs, count(DISTINCT run_id) AS runs,
                max(died_at) AS last_died_at
           FROM (SELECT last_error, run_id, died_at FROM importer.dead_jobs
                  WHERE {MATCHES}
                  ORDER BY died_at DESC LIMIT $6) s
          GROUP BY last_error
          ORDER BY count(*) DESC, max(died_at) DESC
          LIMIT 50"
    );
    Ok(bind_matches(sqlx::query_as(&sql), filter)
        .bind(sample)
        .fetch_all(pool)
        .await?)
}

/// Dead jobs matching `filter`, counted up to `cap`; `(count, capped)`. Errors are database
/// failures.
pub async fn count_dead(
    pool: &PgPool,
    filter: &DeadFilter,
    cap: i64,
) -> Result<(i64, bool), QueueError> {
    let sql = format!(
        "SELECT count(*) FROM (SELECT 1 FROM importer.dead_jobs WHERE {MATCHES} LIMIT $6 + 1) s"
    );
    let (n,): (i64,) = bind_matches(sqlx::query_as(&sql), filter)
        .bind(cap)
        .fetch_one(pool)
        .await?;
    Ok((n.min(cap), n > cap))
}

/// One dead job by id (`None` if there is none). Errors are database failures.
pub async fn get_dead(pool: &PgPool, id: i64) -> Result<Option<DeadJob>, QueueError> {
    let sql = format!("SELECT {DEAD_COLUMNS} FROM importer.dead_jobs WHERE id = $1");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?)
}

/// Requeues one dead job (see [`requeue_run`] for the rules); returns 1.
///
/// Errors: [`QueueError::DeadJobNotFound`], [`QueueError::RunCancelled`],
/// [`QueueError::RunBeforeReset`], [`QueueError::ListBusy`], database failures.
pub async fn requeue_job(pool: &PgPool, id: i64) -> Result<u64, QueueError> {
    let moved = requeue(pool, Selector::Job(id)).await?.moved;
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
/// [`QueueError::RunBeforeReset`] (a failed run planned before its list's cursor was reset
/// stays failed: completing it would cover what the reset meant to re-read),
/// [`QueueError::ListBusy`] when reviving a failed run whose list has another active run,
/// database failures; then nothing moves.
pub async fn requeue_run(pool: &PgPool, run_id: i64) -> Result<u64, QueueError> {
    Ok(requeue(pool, Selector::Run(run_id)).await?.moved)
}

/// Requeues every dead job whose last error contains `error_contains` (case-insensitive), as
/// [`requeue_run`] does, skipping jobs of cancelled runs and of failed runs planned before their
/// list's cursor was reset; returns how many moved.
///
/// Errors: [`QueueError::ListBusy`] (nothing moves), database failures.
pub async fn requeue_matching(pool: &PgPool, error_contains: &str) -> Result<u64, QueueError> {
    Ok(requeue(pool, Selector::Error(error_contains)).await?.moved)
}

/// Requeues these dead jobs, as [`requeue_run`] does; jobs of cancelled runs stay dead and are
/// counted as skipped. One transaction.
///
/// Errors: [`QueueError::ListBusy`] (nothing moves), database failures.
pub async fn requeue_ids(pool: &PgPool, ids: &[i64]) -> Result<BulkOutcome, QueueError> {
    let chunk = requeue(pool, Selector::Ids(ids)).await?;
    Ok(BulkOutcome {
        jobs: chunk.moved,
        skipped: chunk.skipped,
        chunks: 1,
    })
}

/// Requeues every dead job matching `filter` (its page ignored), as [`requeue_ids`] does, in
/// chunks of `chunk` jobs in id order, each chunk its own transaction: a filter matching
/// 100,000 jobs never holds one long transaction. A chunk that fails stops the walk; the chunks
/// before it stay requeued (the outcome so far is in the error's absence only, so callers
/// report it before retrying).
///
/// Errors: [`QueueError::ListBusy`], database failures.
pub async fn requeue_filtered(
    pool: &PgPool,
    filter: &DeadFilter,
    chunk: i64,
) -> Result<BulkOutcome, QueueError> {
    let mut outcome = BulkOutcome::default();
    let mut after = 0;
    loop {
        let done = requeue(
            pool,
            Selector::Filter {
                filter,
                after,
                limit: chunk.max(1),
            },
        )
        .await?;
        outcome.jobs += done.moved;
        outcome.skipped += done.skipped;
        outcome.chunks += 1;
        match done.last_id {
            Some(last) => after = last,
            None => return Ok(outcome),
        }
    }
}

/// Deletes these dead jobs; returns how many. Their runs keep counting them in `jobs_dead`.
/// Errors are database failures.
pub async fn purge_ids(pool: &PgPool, ids: &[i64]) -> Result<BulkOutcome, QueueError> {
    let done = sqlx::query("DELETE FROM importer.dead_jobs WHERE id = ANY($1)")
        .bind(ids)
        .execute(pool)
        .await?;
    Ok(BulkOutcome {
        jobs: done.rows_affected(),
        skipped: 0,
        chunks: 1,
    })
}

/// Deletes every dead job matching `filter` (its page ignored) in chunks of `chunk`, each its
/// own statement. Errors are database failures (chunks before stay deleted).
pub async fn purge_filtered(
    pool: &PgPool,
    filter: &DeadFilter,
    chunk: i64,
) -> Result<BulkOutcome, QueueError> {
    let sql = format!(
        "WITH gone AS (
             DELETE FROM importer.dead_jobs WHERE id IN (
                 SELECT id FROM importer.dead_jobs WHERE {MATCHES} ORDER BY id LIMIT $6)
             RETURNING 1)
         SELECT count(*) FROM gone"
    );
    let mut outcome = BulkOutcome::default();
    loop {
        let (deleted,): (i64,) = bind_matches(sqlx::query_as(&sql), filter)
            .bind(chunk.max(1))
            .fetch_one(pool)
            .await?;
        outcome.jobs += u64::try_from(deleted).unwrap_or_default();
        outcome.chunks += 1;
        if deleted == 0 {
            return Ok(outcome);
        }
    }
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
    /// One job; refused if its run was cancelled.
    Job(i64),
    /// A run's; refused if the run was cancelled.
    Run(i64),
    /// Those whose last error contains the text; cancelled runs' skipped.
    Error(&'a str),
    /// These; cancelled runs' skipped.
    Ids(&'a [i64]),
    /// The next chunk matching a filter (ids above `after`); cancelled runs' skipped.
    Filter {
        filter: &'a DeadFilter,
        after: i64,
        limit: i64,
    },
}

/// What one requeue transaction did.
struct Requeued {
    moved: u64,
    skipped: u64,
    /// The largest candidate id, none when there was no candidate (the walk is over).
    last_id: Option<i64>,
}

impl Selector<'_> {
    /// The candidates query's filter, chunk start and size, and whether a cancelled run
    /// refuses the whole requeue (`true`) or only keeps its own jobs dead.
    fn scope(&self) -> (DeadFilter, Option<Vec<i64>>, i64, Option<i64>, bool) {
        match *self {
            Selector::Job(id) => (DeadFilter::default(), Some(vec![id]), 0, None, true),
            Selector::Run(run_id) => (
                DeadFilter {
                    run_id: Some(run_id),
                    ..DeadFilter::default()
                },
                None,
                0,
                None,
                true,
            ),
            Selector::Error(text) => (
                DeadFilter {
                    error_contains: Some(text.to_owned()),
                    ..DeadFilter::default()
                },
                None,
                0,
                None,
                false,
            ),
            Selector::Ids(ids) => (DeadFilter::default(), Some(ids.to_vec()), 0, None, false),
            Selector::Filter {
                filter,
                after,
                limit,
            } => (filter.clone(), None, after, Some(limit), false),
        }
    }
}

async fn requeue(pool: &PgPool, selector: Selector<'_>) -> Result<Requeued, QueueError> {
    let (filter, ids, after, limit, strict) = selector.scope();
    let mut tx = pool.begin().await?;
    let sql = format!(
        "SELECT id, run_id FROM importer.dead_jobs
          WHERE {MATCHES}
            AND ($6::bigint[] IS NULL OR id = ANY($6))
            AND id > $7
          ORDER BY id
          LIMIT $8"
    );
    let candidates: Vec<(i64, Option<i64>)> = bind_matches(sqlx::query_as(&sql), &filter)
        .bind(ids)
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
    let last_id = candidates.last().map(|(id, _)| *id);
    if candidates.is_empty() {
        return Ok(Requeued {
            moved: 0,
            skipped: 0,
            last_id,
        });
    }
    let mut run_ids: Vec<i64> = candidates.iter().filter_map(|(_, r)| *r).collect();
    run_ids.sort_unstable();
    run_ids.dedup();

    // Runs first, in id order (the lock order of every path that counts on runs).
    let runs: Vec<(i64, i64, String, bool)> = sqlx::query_as(
        "SELECT r.id, r.list_id, r.status,
                coalesce(l.cursor_reset_at > r.created_at, false) AS planned_before_reset
           FROM importer.runs r JOIN importer.lists l ON l.id = r.list_id
          WHERE r.id = ANY($1) ORDER BY r.id
            -- KEY SHARE of the list: a reset_cursor in flight (FOR UPDATE) commits first and
            -- its stamp is read again, or waits for this requeue
            FOR NO KEY UPDATE OF r FOR KEY SHARE OF l",
    )
    .bind(&run_ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut skipped_runs = Vec::new();
    for (run_id, list_id, status, planned_before_reset) in &runs {
        match status.as_str() {
            "cancelled" if !strict => skipped_runs.push(*run_id),
            "cancelled" => return Err(QueueError::RunCancelled { run_id: *run_id }),
            "failed" if *planned_before_reset && !strict => skipped_runs.push(*run_id),
            "failed" if *planned_before_reset => {
                return Err(QueueError::RunBeforeReset {
                    run_id: *run_id,
                    list_id: *list_id,
                })
            }
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
    let moved = u64::try_from(moved).unwrap_or_default();
    Ok(Requeued {
        moved,
        skipped: (candidates.len() as u64).saturating_sub(moved),
        last_id,
    })
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
async fn busy_error(pool: &PgPool, runs: &[(i64, i64, String, bool)]) -> QueueError {
    for (run_id, list_id, status, _) in runs {
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
