//! Reading the rejected-records store (`importer.rejected_records`, written by the completion
//! of the job that met the member): by reason code, run or list, newest first.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

/// A row of `importer.rejected_records` as operators read it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectedRow {
    /// Row id.
    pub id: i64,
    /// The run that met the member.
    pub run_id: i64,
    /// Its list.
    pub list_id: i64,
    /// Mailchimp's member id, when it had one.
    pub member_id: Option<String>,
    /// The member's email, when it had one.
    pub email: Option<String>,
    /// Stable reason code (see `rejection::RejectReason::code`).
    pub code: String,
    /// What exactly was wrong.
    pub reason: String,
    /// The member as Mailchimp sent it, cut to 1 KiB.
    pub excerpt: String,
    /// When it was rejected.
    pub created_at: DateTime<Utc>,
}
crate::from_row!(RejectedRow {
    id,
    run_id,
    list_id,
    member_id,
    email,
    code,
    reason,
    excerpt,
    created_at
});

/// Which rejected records [`list`] returns, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only with this reason code.
    pub code: Option<String>,
    /// Only of this run.
    pub run_id: Option<i64>,
    /// Only of this list.
    pub list_id: Option<i64>,
    /// Only rows older than this id (the next page).
    pub before_id: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

/// Rejected records per reason code among the newest `sample` (capped, so the page costs the
/// same at a million rows). Errors are database failures.
pub async fn count_by_code(
    pool: &PgPool,
    filter: &Filter,
    sample: i64,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT code, count(*) FROM (
             SELECT code FROM importer.rejected_records
              WHERE ($1::bigint IS NULL OR run_id = $1)
                AND ($2::bigint IS NULL OR list_id = $2)
              ORDER BY id DESC LIMIT $3) s
          GROUP BY code ORDER BY count(*) DESC, code",
    )
    .bind(filter.run_id)
    .bind(filter.list_id)
    .bind(sample)
    .fetch_all(pool)
    .await
}

/// Rejected records matching `filter`, newest first. Errors are database failures.
pub async fn list(pool: &PgPool, filter: &Filter) -> Result<Vec<RejectedRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, run_id, list_id, member_id, email, code, reason, excerpt, created_at
           FROM importer.rejected_records
          WHERE ($1::text IS NULL OR code = $1)
            AND ($2::bigint IS NULL OR run_id = $2)
            AND ($3::bigint IS NULL OR list_id = $3)
            AND ($4::bigint IS NULL OR id < $4)
          ORDER BY id DESC
          LIMIT $5",
    )
    .bind(filter.code.as_deref())
    .bind(filter.run_id)
    .bind(filter.list_id)
    .bind(filter.before_id)
    .bind(filter.limit)
    .fetch_all(pool)
    .await
}
