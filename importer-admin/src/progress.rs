//! Read-only reports over the public view `importer.run_progress`: one row per run with its
//! list and account names, counters, percent and throughput. `runs list/show/watch` and the
//! demo all read runs through here, so they agree on every number.

use chrono::{DateTime, Utc};
use importer_core::runs::{RunMode, RunStatus, Trigger};
use serde::Serialize;
use sqlx::PgPool;

/// A row of `importer.run_progress`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunProgress {
    /// The run.
    pub run_id: i64,
    /// Its list.
    pub list_id: i64,
    /// The list's Mailchimp audience id.
    pub mailchimp_list_id: String,
    /// The list's name for people.
    pub list_name: Option<String>,
    /// The account.
    pub account_id: i64,
    /// The account's name.
    pub account: String,
    /// Where the run is.
    pub status: RunStatus,
    /// Full or incremental.
    pub mode: RunMode,
    /// Schedule or admin.
    pub trigger: Trigger,
    /// Window start (inclusive); none for a full run.
    pub since: Option<DateTime<Utc>>,
    /// Window end (exclusive).
    pub until: DateTime<Utc>,
    /// Members Mailchimp counted in the window (known once planned).
    pub members_total: Option<i64>,
    /// Jobs the run ever had (the plan job included).
    pub jobs_total: i32,
    /// Jobs completed.
    pub jobs_done: i32,
    /// Jobs still queued.
    pub jobs_pending: i32,
    /// Jobs in the dead-letter store.
    pub jobs_dead: i32,
    /// Jobs removed by a cancel.
    pub jobs_cancelled: i32,
    /// Records the destination accepted.
    pub records_imported: i64,
    /// Members that could not be mapped.
    pub records_rejected: i64,
    /// Members read whose record the destination already held: not posted.
    pub records_unchanged: i64,
    /// Jobs done / jobs total, in percent.
    pub percent: Option<f64>,
    /// Seconds from creation to finish (or now).
    pub elapsed_secs: f64,
    /// Records imported per second since the import began.
    pub records_per_second: f64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When the import began.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
}
importer_core::from_row!(RunProgress {
    run_id,
    list_id,
    mailchimp_list_id,
    list_name,
    account_id,
    account,
    status,
    mode,
    trigger,
    since,
    until,
    members_total,
    jobs_total,
    jobs_done,
    jobs_pending,
    jobs_dead,
    jobs_cancelled,
    records_imported,
    records_rejected,
    records_unchanged,
    percent,
    elapsed_secs,
    records_per_second,
    created_at,
    started_at,
    finished_at,
    error
});

impl RunProgress {
    /// `account/mailchimp_list_id`, the way commands accept a list.
    pub fn list_label(&self) -> String {
        format!("{}/{}", self.account, self.mailchimp_list_id)
    }

    /// Whether the run is still planning or running.
    pub fn is_active(&self) -> bool {
        self.status.is_active()
    }

    /// `(done, total)` import windows, once the plan job has counted them.
    pub fn windows(&self) -> Option<(i32, i32)> {
        // members_total is set by the plan job's completion, which also adds the windows.
        self.members_total?;
        let total = (self.jobs_total - 1).max(0);
        let done = (self.jobs_done - 1).clamp(0, total);
        Some((done, total))
    }

    /// Seconds left at the current rate, while the run is active and the rate is known.
    pub fn eta_secs(&self) -> Option<f64> {
        let total = self.members_total?;
        if !self.is_active() || self.records_per_second <= 0.0 {
            return None;
        }
        let left = (total - self.records_imported).max(0) as f64;
        Some(left / self.records_per_second)
    }
}

const COLUMNS: &str = "run_id, list_id, mailchimp_list_id, list_name, account_id, account, \
     status, mode, trigger, since, until, members_total, jobs_total, jobs_done, jobs_pending, \
     jobs_dead, jobs_cancelled, records_imported, records_rejected, records_unchanged, \
     percent::float8 AS percent, \
     extract(epoch FROM elapsed)::float8 AS elapsed_secs, \
     records_per_second::float8 AS records_per_second, created_at, started_at, finished_at, error";

/// Which runs [`list`] returns, newest first.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only in this status.
    pub status: Option<RunStatus>,
    /// Only of this account.
    pub account_id: Option<i64>,
    /// Only of this list.
    pub list_id: Option<i64>,
    /// Only created at or after this instant.
    pub created_from: Option<DateTime<Utc>>,
    /// Only created before this instant.
    pub created_to: Option<DateTime<Utc>>,
    /// Only listed after this run (`(created_at, run_id)` of the previous page's last row).
    pub after: Option<(DateTime<Utc>, i64)>,
    /// At most this many.
    pub limit: i64,
}

/// Runs matching `filter`, newest first. Errors are database failures.
pub async fn list(pool: &PgPool, filter: &Filter) -> Result<Vec<RunProgress>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM importer.run_progress
          WHERE ($1::text IS NULL OR status = $1)
            AND ($2::bigint IS NULL OR account_id = $2)
            AND ($3::bigint IS NULL OR list_id = $3)
            AND ($4::timestamptz IS NULL OR created_at >= $4)
            AND ($5::timestamptz IS NULL OR created_at < $5)
            AND ($6::timestamptz IS NULL OR (created_at, run_id) < ($6, $7))
          ORDER BY created_at DESC, run_id DESC
          LIMIT $8"
    );
    let (after_at, after_id) = filter.after.unzip();
    sqlx::query_as(&sql)
        .bind(filter.status.map(RunStatus::as_str))
        .bind(filter.account_id)
        .bind(filter.list_id)
        .bind(filter.created_from)
        .bind(filter.created_to)
        .bind(after_at)
        .bind(after_id)
        .bind(filter.limit)
        .fetch_all(pool)
        .await
}

/// These runs, in id order (missing ids are simply absent). Errors are database failures.
pub async fn by_ids(pool: &PgPool, ids: &[i64]) -> Result<Vec<RunProgress>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM importer.run_progress WHERE run_id = ANY($1) ORDER BY run_id"
    );
    sqlx::query_as(&sql).bind(ids).fetch_all(pool).await
}

/// One run, if it exists. Errors are database failures.
pub async fn get(pool: &PgPool, id: i64) -> Result<Option<RunProgress>, sqlx::Error> {
    Ok(by_ids(pool, &[id]).await?.into_iter().next())
}

/// Ids of every active (planning or running) run. Errors are database failures.
pub async fn active_ids(pool: &PgPool) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT run_id FROM importer.run_progress
          WHERE status IN ('planning', 'running') ORDER BY run_id",
    )
    .fetch_all(pool)
    .await
}
