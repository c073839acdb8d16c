//! The audit of a list: every member id and `last_changed` in Mailchimp compared with the
//! list's ledger ([`crate::ledger`]), set-based in SQL.
//!
//! An audit is a run of mode `audit` ([`crate::runs::create_audit`], the tick's
//! `importer.create_audits`) with one `audit_list` job. Its scan stores what it reads in
//! `importer.audit_seen` ([`record_seen`]): first every member changed before the audit's
//! `until`, then every member changed since (present in Mailchimp, left to the next sync).
//! Then:
//! - **missing or stale** ([`needed`]): changed before the list's cursor, and not in the ledger
//!   or in it with an older `last_changed`. The job re-delivers them (healed); those that
//!   changed again meanwhile are left to the next sync (deferred). Members changed after the
//!   cursor are not drift: the next sync delivers them.
//! - **deleted** ([`conclude`]): in the ledger, read by neither pass. Recorded in
//!   `importer.deleted_members` with when it was first noticed; the destination keeps them
//!   (the records API has no delete), so they are the drift an audit cannot heal.
//!
//! Why the second pass: a member that changes during the scan leaves the first pass's window
//! (its new `last_changed` is after `until`) possibly before the scan reached it; the second
//! pass, read after the first, sees it there, so it is never taken for deleted.
//!
//! Ordering with syncs: an audit is a run, so `runs_one_active_per_list` keeps it apart from
//! the list's syncs; the ledger is only ever written by one run of a list at a time.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};

use crate::mailchimp::Stamp;
use crate::queue::Fence;

/// Why an audit operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database failed or is unreachable.
    #[error("audit database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Stores members a scan read; idempotent (a member read twice stays once, with its first
/// read). `after_until`: read by the second pass. Errors are database failures.
pub async fn record_seen(
    pool: &PgPool,
    run_id: i64,
    stamps: &[Stamp],
    after_until: bool,
) -> Result<(), AuditError> {
    if stamps.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = stamps.iter().map(|s| s.id.as_str()).collect();
    let changed: Vec<Option<DateTime<Utc>>> = stamps.iter().map(|s| s.last_changed).collect();
    sqlx::query(
        "INSERT INTO importer.audit_seen (run_id, member_key, last_changed, after_until)
         SELECT $1, importer.ledger_key(u.member_id), u.last_changed, $4
           FROM unnest($2::text[], $3::timestamptz[]) AS u(member_id, last_changed)
         ON CONFLICT DO NOTHING",
    )
    .bind(run_id)
    .bind(&ids)
    .bind(&changed)
    .bind(after_until)
    .execute(pool)
    .await?;
    Ok(())
}

/// A member the audit must re-deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needed {
    /// Mailchimp's member id.
    pub member_id: String,
    /// Its `last_changed` as the scan read it.
    pub last_changed: DateTime<Utc>,
    /// Its place among every member the first pass read, by `last_changed`: how many members a
    /// read from the previous needed member to this one would return.
    pub position: i64,
    /// In the ledger with an older `last_changed` (else never delivered).
    pub stale: bool,
}

/// The missing and stale members of the audit `run_id` (see the module docs), by
/// `last_changed`; with `redeliver`, every member changed before the cursor (stale when the
/// ledger knows it). None when the list was never synced (no cursor). Errors are database
/// failures.
pub async fn needed(
    pool: &PgPool,
    run_id: i64,
    redeliver: bool,
) -> Result<Vec<Needed>, AuditError> {
    let rows: Vec<(String, DateTime<Utc>, i64, bool)> = sqlx::query_as(
        "WITH list AS (
             SELECT r.list_id, l.synced_until FROM importer.runs r
               JOIN importer.lists l ON l.id = r.list_id WHERE r.id = $1
         ),
         ranked AS (
             SELECT s.member_key, s.last_changed,
                    row_number() OVER (ORDER BY s.last_changed, s.member_key) AS position
               FROM importer.audit_seen s
              WHERE s.run_id = $1 AND NOT s.after_until AND s.last_changed IS NOT NULL
         )
         SELECT importer.ledger_member_id(k.member_key), k.last_changed, k.position,
                g.member_key IS NOT NULL
           FROM ranked k
          CROSS JOIN list
           LEFT JOIN importer.ledger g
                  ON g.list_id = list.list_id AND g.member_key = k.member_key
          WHERE k.last_changed < list.synced_until
            AND ($2 OR g.member_key IS NULL OR g.last_changed IS NULL
                 OR g.last_changed < k.last_changed)
          ORDER BY k.position",
    )
    .bind(run_id)
    .bind(redeliver)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(member_id, last_changed, position, stale)| Needed {
            member_id,
            last_changed,
            position,
            stale,
        })
        .collect())
}

/// What the audit job counted while it healed; [`conclude`] adds what SQL counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Healing {
    /// Missing members found.
    pub missing: i64,
    /// Stale members found.
    pub stale: i64,
    /// Of those, re-delivered (or found to be held already).
    pub healed: i64,
    /// Of those, changed again since the scan: left to the next sync.
    pub deferred: i64,
    /// Of those, not mappable (rejected records of the audit run).
    pub rejected: i64,
    /// Mailchimp requests of the audit.
    pub requests: i64,
    /// Response bytes of those requests.
    pub bytes: i64,
}

/// What an audit found and did (`importer.audit_results`, newest per list in
/// `importer.list_audits`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditResult {
    /// The audit run.
    pub run_id: i64,
    /// Its list.
    pub list_id: i64,
    /// Members in Mailchimp (both passes).
    pub members_seen: i64,
    /// Changed before the cursor and never delivered.
    pub missing: i64,
    /// Changed before the cursor and delivered older.
    pub stale: i64,
    /// Missing or stale members re-delivered.
    pub healed: i64,
    /// Missing or stale members that changed again: the next sync delivers them.
    pub deferred: i64,
    /// Missing or stale members that cannot be mapped.
    pub rejected: i64,
    /// In the ledger, gone from Mailchimp.
    pub deleted: i64,
    /// Of those, first noticed by this audit.
    pub deleted_new: i64,
    /// Mailchimp requests.
    pub mailchimp_requests: i64,
    /// Response bytes.
    pub mailchimp_bytes: i64,
    /// The ledger was not trusted: everything before the cursor was posted again.
    pub redeliver: bool,
    /// When it concluded.
    pub concluded_at: DateTime<Utc>,
    /// Drift found and not healed (`importer.unhealed`): newly deleted members, and missing or
    /// stale ones neither delivered, deferred nor rejected.
    pub unhealed: i64,
}
crate::from_row!(AuditResult {
    run_id,
    list_id,
    members_seen,
    missing,
    stale,
    healed,
    deferred,
    rejected,
    deleted,
    deleted_new,
    mailchimp_requests,
    mailchimp_bytes,
    redeliver,
    concluded_at,
    unhealed
});

impl AuditResult {
    /// Response bytes per member seen.
    pub fn bytes_per_member(&self) -> f64 {
        self.mailchimp_bytes as f64 / self.members_seen.max(1) as f64
    }
}

const RESULT_COLUMNS: &str = "run_id, list_id, members_seen, missing, stale, healed, deferred, \
     rejected, deleted, deleted_new, mailchimp_requests, mailchimp_bytes, redeliver, concluded_at, \
     importer.unhealed(a) AS unhealed";

/// What [`conclude`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Concluded {
    /// The fence no longer holds: nothing changed.
    Fenced,
    /// The audit's result (the one stored earlier, when a retry concludes again).
    Result(AuditResult),
}

/// Concludes the audit held by `fence` in one transaction: records the deleted members (in the
/// ledger, not seen), forgets those seen again, stores the result and drops what the scan
/// stored. Idempotent: concluding again returns the stored result and changes nothing. Run it
/// before the job's completion. Errors are database failures.
pub async fn conclude(
    pool: &PgPool,
    fence: Fence,
    run_id: i64,
    healing: &Healing,
    redeliver: bool,
) -> Result<Concluded, AuditError> {
    let mut tx = pool.begin().await?;
    let held: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM importer.jobs
          WHERE id = $1 AND lease_token = $2 AND locked_until > now() FOR UPDATE",
    )
    .bind(fence.job_id)
    .bind(fence.token)
    .fetch_optional(&mut *tx)
    .await?;
    if held.is_none() {
        return Ok(Concluded::Fenced);
    }
    if let Some(done) = result(&mut *tx, run_id).await? {
        return Ok(Concluded::Result(done));
    }
    sqlx::query(
        "WITH run AS (SELECT list_id FROM importer.runs WHERE id = $1),
         gone AS (
             SELECT g.member_key, g.last_changed FROM importer.ledger g, run
              WHERE g.list_id = run.list_id
                AND NOT EXISTS (SELECT 1 FROM importer.audit_seen s
                                 WHERE s.run_id = $1 AND s.member_key = g.member_key)
         ),
         noticed AS (
             INSERT INTO importer.deleted_members (list_id, member_id, last_changed, noticed_by)
             SELECT run.list_id, importer.ledger_member_id(gone.member_key), gone.last_changed, $1
               FROM gone, run
             ON CONFLICT (list_id, member_id) DO NOTHING
             RETURNING 1
         ),
         back AS (
             DELETE FROM importer.deleted_members d USING run
              WHERE d.list_id = run.list_id
                AND EXISTS (SELECT 1 FROM importer.audit_seen s
                             WHERE s.run_id = $1 AND s.member_key = importer.ledger_key(d.member_id))
         )
         INSERT INTO importer.audit_results
                (run_id, list_id, members_seen, missing, stale, healed, deferred, rejected,
                 deleted, deleted_new, mailchimp_requests, mailchimp_bytes, redeliver)
         SELECT $1, run.list_id,
                (SELECT count(*) FROM importer.audit_seen WHERE run_id = $1),
                $2, $3, $4, $5, $6,
                (SELECT count(*) FROM gone), (SELECT count(*) FROM noticed), $7, $8, $9
           FROM run",
    )
    .bind(run_id)
    .bind(healing.missing)
    .bind(healing.stale)
    .bind(healing.healed)
    .bind(healing.deferred)
    .bind(healing.rejected)
    .bind(healing.requests)
    .bind(healing.bytes)
    .bind(redeliver)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM importer.audit_seen WHERE run_id = $1")
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
    let done = result(&mut *tx, run_id)
        .await?
        .ok_or(AuditError::Database(sqlx::Error::RowNotFound))?;
    tx.commit().await?;
    Ok(Concluded::Result(done))
}

/// The result of audit run `run_id`, once concluded. Errors are database failures.
pub async fn result<'e, E: PgExecutor<'e>>(
    executor: E,
    run_id: i64,
) -> Result<Option<AuditResult>, AuditError> {
    let sql = format!("SELECT {RESULT_COLUMNS} FROM importer.audit_results a WHERE run_id = $1");
    Ok(sqlx::query_as(&sql)
        .bind(run_id)
        .fetch_optional(executor)
        .await?)
}

/// The newest concluded audit of `list_id`. Errors are database failures.
pub async fn latest(pool: &PgPool, list_id: i64) -> Result<Option<AuditResult>, AuditError> {
    let sql = format!(
        "SELECT {RESULT_COLUMNS} FROM importer.audit_results a
          WHERE list_id = $1 ORDER BY run_id DESC LIMIT 1"
    );
    Ok(sqlx::query_as(&sql)
        .bind(list_id)
        .fetch_optional(pool)
        .await?)
}

/// A member we delivered that is gone from Mailchimp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeletedMember {
    /// Mailchimp's member id.
    pub member_id: String,
    /// The `last_changed` we last delivered.
    pub last_changed: Option<DateTime<Utc>>,
    /// When an audit first noticed it.
    pub noticed_at: DateTime<Utc>,
    /// That audit run.
    pub noticed_by: i64,
}
crate::from_row!(DeletedMember {
    member_id,
    last_changed,
    noticed_at,
    noticed_by
});

/// The members of `list_id` gone from Mailchimp, oldest noticed first, at most `limit`, and
/// how many there are. Errors are database failures.
pub async fn deleted_members(
    pool: &PgPool,
    list_id: i64,
    limit: i64,
) -> Result<(Vec<DeletedMember>, i64), AuditError> {
    let members = sqlx::query_as(
        "SELECT member_id, last_changed, noticed_at, noticed_by FROM importer.deleted_members
          WHERE list_id = $1 ORDER BY noticed_at, member_id LIMIT $2",
    )
    .bind(list_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let total =
        sqlx::query_scalar("SELECT count(*) FROM importer.deleted_members WHERE list_id = $1")
            .bind(list_id)
            .fetch_one(pool)
            .await?;
    Ok((members, total))
}
