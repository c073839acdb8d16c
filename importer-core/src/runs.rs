//! Runs: one sync of one list over the window `[since, until)` of `last_changed`.
//!
//! Every run, scheduled or an operator's, is created by one SQL function,
//! `importer.create_runs`, which freezes `until` from the database clock minus the sync lag and
//! inserts the run with its `plan_run` job (the run counts that job: `jobs_total = jobs_pending
//! = 1`). Job completions and dead-letters adjust the counters in the queue module; the finishing
//! rule (pending reaches 0: completed when nothing died, else failed) lives in the
//! `importer.finish_run` trigger, and the cursor moves with coverage, range by range
//! (`importer.cover`), never over an interval that was not delivered.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::queue::Interval;

/// Where a run is in its life; stored as text in `runs.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Created; its plan job has not completed yet.
    Planning,
    /// Planned; its import jobs are in the queue.
    Running,
    /// Every job completed; the list cursor moved to `until`.
    Completed,
    /// Every job finished but some died; the cursor did not move. Requeueing revives it.
    Failed,
    /// Stopped by an operator; its jobs left the queue.
    Cancelled,
}

crate::text_enum!(RunStatus {
    Planning => "planning",
    Running => "running",
    Completed => "completed",
    Failed => "failed",
    Cancelled => "cancelled",
});

impl RunStatus {
    /// Planning or running (at most one such run per list).
    pub fn is_active(self) -> bool {
        matches!(self, RunStatus::Planning | RunStatus::Running)
    }
}

/// Full (no lower bound) or incremental (since a cursor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// Every member changed before `until`.
    Full,
    /// Members changed in `[since, until)`.
    Incremental,
    /// Mailchimp compared with the ledger (`crate::list_audit`); delivers only what it heals.
    Audit,
}

crate::text_enum!(RunMode { Full => "full", Incremental => "incremental", Audit => "audit" });

/// Who created a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `importer.tick`, for a schedule slot.
    Schedule,
    /// An operator.
    Admin,
}

crate::text_enum!(Trigger { Schedule => "schedule", Admin => "admin" });

/// A row of `importer.runs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The run id.
    pub id: i64,
    /// The list it syncs.
    pub list_id: i64,
    /// The list's account.
    pub account_id: i64,
    /// Full or incremental.
    pub mode: RunMode,
    /// Lower bound (inclusive) of `last_changed`; `None` for a full run.
    pub since: Option<DateTime<Utc>>,
    /// Upper bound (exclusive), frozen at creation (whole seconds).
    pub until: DateTime<Utc>,
    /// Where the run is.
    pub status: RunStatus,
    /// Who created it.
    pub trigger: Trigger,
    /// The schedule slot it fills (scheduled runs only).
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Members Mailchimp counted in the window when planned.
    pub members_total: Option<i64>,
    /// Jobs it ever had (plan included).
    pub jobs_total: i32,
    /// Jobs still in the queue.
    pub jobs_pending: i32,
    /// Jobs completed.
    pub jobs_done: i32,
    /// Jobs dead.
    pub jobs_dead: i32,
    /// Jobs removed by a cancel.
    pub jobs_cancelled: i32,
    /// Records the destination accepted.
    pub records_imported: i64,
    /// Members that could not be mapped.
    pub records_rejected: i64,
    /// Members read whose record the destination already held (the ledger): not posted.
    pub records_unchanged: i64,
    /// Times the engine saw the window was not frozen.
    pub window_events: i32,
    /// Members Mailchimp returned to the run's range reads.
    pub members_read: i64,
    /// Mailchimp requests the run made.
    pub mailchimp_requests: i64,
    /// Of those, the plan job's.
    pub planning_requests: i32,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When planning finished and the import began.
    pub started_at: Option<DateTime<Utc>>,
    /// When it completed, failed or was cancelled.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
}
crate::from_row!(Run {
    id,
    list_id,
    account_id,
    mode,
    since,
    until,
    status,
    trigger,
    scheduled_for,
    members_total,
    jobs_total,
    jobs_pending,
    jobs_done,
    jobs_dead,
    jobs_cancelled,
    records_imported,
    records_rejected,
    records_unchanged,
    window_events,
    members_read,
    mailchimp_requests,
    planning_requests,
    created_at,
    started_at,
    finished_at,
    error
});

/// Which window an operator's run covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestedMode {
    /// Incremental from the list's cursor, or full when it has none.
    Auto,
    /// Full, whatever the cursor.
    Full,
    /// Incremental from this instant (truncated to the second).
    Since(DateTime<Utc>),
}

/// An operator's request for a run ([`create`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunRequest {
    /// Which window.
    pub mode: RequestedMode,
}

/// Which runs [`list`] returns (all conditions must hold), newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only in this status.
    pub status: Option<RunStatus>,
    /// Only of this account.
    pub account_id: Option<i64>,
    /// Only of this list.
    pub list_id: Option<i64>,
    /// At most this many (default 50).
    pub limit: Option<i64>,
}

/// Why a run operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The database failed or is unreachable.
    #[error("runs database error: {0}")]
    Database(#[from] sqlx::Error),
    /// No list has this id.
    #[error("list {0} not found")]
    ListNotFound(i64),
    /// No run has this id.
    #[error("run {0} not found")]
    NotFound(i64),
    /// The list already has an active run (one at a time per list).
    #[error("list {list_id} already has an active run {run_id}; wait for it or cancel it first")]
    AlreadyActive {
        /// The active run.
        run_id: i64,
        /// The list.
        list_id: i64,
    },
    /// The run is no longer active, so it cannot be cancelled.
    #[error("run {run_id} is {status}, not active")]
    NotActive {
        /// The run.
        run_id: i64,
        /// Its status.
        status: RunStatus,
    },
    /// The requested `since` (or the list's cursor) is after the window's end (now minus the
    /// sync lag).
    #[error("since {since} is after the end of the window ({until}: now minus the sync lag)")]
    SinceInFuture {
        /// The requested lower bound.
        since: DateTime<Utc>,
        /// Where the window would end.
        until: DateTime<Utc>,
    },
}

const RUN_COLUMNS: &str = "id, list_id, account_id, mode, since, until, status, trigger, \
     scheduled_for, members_total, jobs_total, jobs_pending, jobs_done, jobs_dead, \
     jobs_cancelled, records_imported, records_rejected, records_unchanged, window_events, \
     members_read, \
     mailchimp_requests, planning_requests, created_at, started_at, finished_at, error";

/// Creates an operator's run of `list_id` with its `plan_run` job through
/// `importer.create_runs` (which notifies idle workers). The window ends at the database clock
/// minus the sync lag; it starts per `request` (auto: the cursor, full when the list has none).
///
/// Errors: [`RunError::ListNotFound`], [`RunError::AlreadyActive`] naming the list's active
/// run, [`RunError::SinceInFuture`], database failures.
pub async fn create(pool: &PgPool, list_id: i64, request: RunRequest) -> Result<Run, RunError> {
    let (mode, since) = match request.mode {
        RequestedMode::Auto => ("auto", None),
        RequestedMode::Full => ("full", None),
        RequestedMode::Since(ts) => ("since", Some(ts)),
    };
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM importer.create_runs(ARRAY[$1::bigint], 'admin', $2, $3)"
    );
    let created: Option<Run> = sqlx::query_as(&sql)
        .bind(list_id)
        .bind(mode)
        .bind(since)
        .fetch_optional(pool)
        .await?;
    if let Some(run) = created {
        return Ok(run);
    }
    // Nothing was created: say why.
    if let Some(active) = active_for_list(pool, list_id).await? {
        return Err(RunError::AlreadyActive {
            run_id: active.id,
            list_id,
        });
    }
    let list: Option<(DateTime<Utc>, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT date_trunc('second', now() - coalesce(l.sync_lag, s.sync_lag)), l.synced_until
           FROM importer.lists l CROSS JOIN importer.settings s WHERE l.id = $1",
    )
    .bind(list_id)
    .fetch_optional(pool)
    .await?;
    match list {
        None => Err(RunError::ListNotFound(list_id)),
        Some((until, cursor)) => Err(RunError::SinceInFuture {
            since: since.or(cursor).unwrap_or(until),
            until,
        }),
    }
}

/// What is left to read of a run's window: `[since, until)` minus the list's coverage, in
/// order (`importer.run_gaps`; `lo = None` is the start of a full sync). Errors are database
/// failures.
pub async fn gaps(pool: &PgPool, run_id: i64) -> Result<Vec<Interval>, RunError> {
    let rows: Vec<(Option<DateTime<Utc>>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT nullif(lo, '-infinity'), hi FROM importer.run_gaps($1) WHERE lo < hi ORDER BY lo",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(lo, hi)| Interval { lo, hi })
        .collect())
}

/// How many members the list's last completed run of `mode` (other than `except`) counted:
/// what the planner expects this time. Errors are database failures.
pub async fn last_members_total(
    pool: &PgPool,
    list_id: i64,
    mode: RunMode,
    except: i64,
) -> Result<Option<i64>, RunError> {
    Ok(sqlx::query_scalar(
        "SELECT members_total FROM importer.runs
          WHERE list_id = $1 AND mode = $2 AND status = 'completed' AND id <> $3
            AND members_total IS NOT NULL
          ORDER BY created_at DESC, id DESC
          LIMIT 1",
    )
    .bind(list_id)
    .bind(mode.as_str())
    .bind(except)
    .fetch_optional(pool)
    .await?)
}

/// The run with this id, if any. Errors are database failures.
pub async fn get(pool: &PgPool, id: i64) -> Result<Option<Run>, RunError> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM importer.runs WHERE id = $1");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?)
}

/// The list's active (planning or running) run, if any. Errors are database failures.
pub async fn active_for_list(pool: &PgPool, list_id: i64) -> Result<Option<Run>, RunError> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM importer.runs
          WHERE list_id = $1 AND status IN ('planning', 'running')"
    );
    Ok(sqlx::query_as(&sql)
        .bind(list_id)
        .fetch_optional(pool)
        .await?)
}

/// Creates an operator's audit of `list_id` with its `audit_list` job through
/// `importer.create_audits`; its `until` is frozen like a sync's. With `redeliver`, the ledger
/// is not trusted: every member changed before the cursor is posted again (the destination
/// lost or altered records, which no audit can see). Errors:
/// [`RunError::ListNotFound`], [`RunError::AlreadyActive`] naming the list's active run (an
/// audit never runs beside a sync of its list), database failures.
pub async fn create_audit(pool: &PgPool, list_id: i64, redeliver: bool) -> Result<Run, RunError> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM importer.create_audits(ARRAY[$1::bigint], 'admin', NULL, $2)"
    );
    let created: Option<Run> = sqlx::query_as(&sql)
        .bind(list_id)
        .bind(redeliver)
        .fetch_optional(pool)
        .await?;
    if let Some(run) = created {
        return Ok(run);
    }
    match active_for_list(pool, list_id).await? {
        Some(active) => Err(RunError::AlreadyActive {
            run_id: active.id,
            list_id,
        }),
        None => Err(RunError::ListNotFound(list_id)),
    }
}

/// Runs matching `filter`, newest first. Errors are database failures.
pub async fn list(pool: &PgPool, filter: &RunFilter) -> Result<Vec<Run>, RunError> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM importer.runs
          WHERE ($1::text IS NULL OR status = $1)
            AND ($2::bigint IS NULL OR account_id = $2)
            AND ($3::bigint IS NULL OR list_id = $3)
          ORDER BY created_at DESC, id DESC
          LIMIT $4"
    );
    Ok(sqlx::query_as(&sql)
        .bind(filter.status.map(RunStatus::as_str))
        .bind(filter.account_id)
        .bind(filter.list_id)
        .bind(filter.limit.unwrap_or(50))
        .fetch_all(pool)
        .await?)
}

/// Cancels an active run in one transaction: its jobs leave the queue (counted in
/// `jobs_cancelled`; their holders' later completions are fenced), status `cancelled`. Dead
/// jobs stay in the dead-letter store. Returns the updated run.
///
/// Errors: [`RunError::NotFound`], [`RunError::NotActive`], database failures.
pub async fn cancel(pool: &PgPool, run_id: i64) -> Result<Run, RunError> {
    let mut tx = pool.begin().await?;
    // The run row first, then its jobs (in id order): the lock order of the queue.
    let status: Option<RunStatus> =
        sqlx::query_scalar("SELECT status FROM importer.runs WHERE id = $1 FOR NO KEY UPDATE")
            .bind(run_id)
            .fetch_optional(&mut *tx)
            .await?;
    match status {
        None => return Err(RunError::NotFound(run_id)),
        Some(status) if !status.is_active() => return Err(RunError::NotActive { run_id, status }),
        Some(_) => {}
    }
    let sql = format!(
        "WITH doomed AS MATERIALIZED (
             SELECT id FROM importer.jobs WHERE run_id = $1 ORDER BY id FOR UPDATE
         ),
         gone AS (
             DELETE FROM importer.jobs WHERE id IN (SELECT id FROM doomed) RETURNING id
         )
         UPDATE importer.runs r
            SET status = 'cancelled',
                finished_at = now(),
                error = 'cancelled by an operator',
                jobs_cancelled = r.jobs_cancelled + (SELECT count(*) FROM gone),
                jobs_pending = r.jobs_pending - (SELECT count(*) FROM gone)
          WHERE r.id = $1
         RETURNING {RUN_COLUMNS}"
    );
    let run: Run = sqlx::query_as(&sql)
        .bind(run_id)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(run)
}

/// Active (planning or running) runs, and the age in seconds of the oldest. Errors are database
/// failures.
pub async fn active_age(pool: &PgPool) -> Result<(i64, Option<f64>), RunError> {
    Ok(sqlx::query_as(
        "SELECT count(*), extract(epoch FROM now() - min(created_at))::float8
           FROM importer.runs WHERE status IN ('planning', 'running')",
    )
    .fetch_one(pool)
    .await?)
}
