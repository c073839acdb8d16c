//! Lists: the Mailchimp audiences of an account to sync, their schedule and their cursor
//! (`synced_until`: every member changed before it has been delivered).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::queue::micros;

/// The schedule of a new list when none is given.
pub const DEFAULT_SCHEDULE: Duration = Duration::from_secs(3600);

/// The shortest schedule (the schema's `lists_schedule_bounds`).
pub const MIN_SCHEDULE: Duration = Duration::from_secs(60);

/// The longest schedule (the schema's `lists_schedule_bounds`): a month.
pub const MAX_SCHEDULE: Duration = Duration::from_secs(31 * 86_400);

/// Checks a schedule against [`MIN_SCHEDULE`]..=[`MAX_SCHEDULE`] before it reaches the schema,
/// with a message for people. Errors: [`ListError::Invalid`].
pub fn check_schedule(schedule: Duration) -> Result<(), ListError> {
    if (MIN_SCHEDULE..=MAX_SCHEDULE).contains(&schedule) {
        Ok(())
    } else {
        Err(ListError::Invalid(format!(
            "schedule {}s is out of bounds: between 1 minute and 31 days",
            schedule.as_secs()
        )))
    }
}

/// A list to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewList {
    /// The account it belongs to.
    pub account_id: i64,
    /// Mailchimp audience id (alphanumeric).
    pub mailchimp_list_id: String,
    /// A name for people.
    pub name: Option<String>,
    /// How often a scheduled run is created (at least one minute).
    pub schedule: Duration,
    /// Whether scheduled runs are created.
    pub enabled: bool,
}

/// A row of `importer.lists`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List {
    /// The list id.
    pub id: i64,
    /// Its account.
    pub account_id: i64,
    /// Mailchimp audience id.
    pub mailchimp_list_id: String,
    /// A name for people.
    pub name: Option<String>,
    /// How often a scheduled run is created (once per period, at the list's fixed phase).
    pub schedule: Duration,
    /// Whether scheduled runs are created.
    pub enabled: bool,
    /// The cursor; `None` = never synced (the next run is full).
    pub synced_until: Option<DateTime<Utc>>,
    /// Its own sync lag; `None` = the deployment's.
    pub sync_lag: Option<Duration>,
    /// Posts every member read, even those the ledger shows unchanged.
    pub always_post: bool,
    /// How often the tick audits it (`None`: only when an operator asks).
    pub audit_every: Option<Duration>,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

struct ListRow {
    id: i64,
    account_id: i64,
    mailchimp_list_id: String,
    name: Option<String>,
    schedule_us: i64,
    enabled: bool,
    synced_until: Option<DateTime<Utc>>,
    sync_lag_us: Option<i64>,
    always_post: bool,
    audit_every_us: Option<i64>,
    created_at: DateTime<Utc>,
}
crate::from_row!(ListRow {
    id,
    account_id,
    mailchimp_list_id,
    name,
    schedule_us,
    enabled,
    synced_until,
    sync_lag_us,
    always_post,
    audit_every_us,
    created_at
});

impl From<ListRow> for List {
    fn from(row: ListRow) -> Self {
        List {
            id: row.id,
            account_id: row.account_id,
            mailchimp_list_id: row.mailchimp_list_id,
            name: row.name,
            schedule: Duration::from_micros(u64::try_from(row.schedule_us).unwrap_or_default()),
            enabled: row.enabled,
            synced_until: row.synced_until,
            sync_lag: row
                .sync_lag_us
                .map(|us| Duration::from_micros(u64::try_from(us).unwrap_or_default())),
            always_post: row.always_post,
            audit_every: row
                .audit_every_us
                .map(|us| Duration::from_micros(u64::try_from(us).unwrap_or_default())),
            created_at: row.created_at,
        }
    }
}

/// Why a list operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The database failed or is unreachable.
    #[error("lists database error: {0}")]
    Database(#[from] sqlx::Error),
    /// No list has this id.
    #[error("list {0} not found")]
    NotFound(i64),
    /// No account has this id.
    #[error("account {0} not found")]
    AccountNotFound(i64),
    /// The account already has this Mailchimp list.
    #[error("account {account_id} already has Mailchimp list {mailchimp_list_id:?}")]
    Duplicate {
        /// The account.
        account_id: i64,
        /// The Mailchimp audience id.
        mailchimp_list_id: String,
    },
    /// A value breaks a rule of the schema (list id not alphanumeric, schedule out of bounds).
    #[error("invalid list: {0}")]
    Invalid(String),
    /// The list has an active run, so its cursor cannot be moved by hand now.
    #[error("list {list_id} has an active run {run_id}; cancel it (runs cancel {run_id}) or let it finish, then reset the cursor")]
    RunActive {
        /// The list.
        list_id: i64,
        /// Its active run.
        run_id: i64,
    },
}

const LIST_COLUMNS: &str = "id, account_id, mailchimp_list_id, name, \
     (extract(epoch FROM schedule) * 1000000)::bigint AS schedule_us, enabled, synced_until, \
     (extract(epoch FROM sync_lag) * 1000000)::bigint AS sync_lag_us, always_post, \
     (extract(epoch FROM audit_every) * 1000000)::bigint AS audit_every_us, created_at";

fn classify(error: sqlx::Error, list: Option<&NewList>) -> ListError {
    if let sqlx::Error::Database(db) = &error {
        if let Some(list) = list {
            if db.is_unique_violation() {
                return ListError::Duplicate {
                    account_id: list.account_id,
                    mailchimp_list_id: list.mailchimp_list_id.clone(),
                };
            }
            if db.is_foreign_key_violation() {
                return ListError::AccountNotFound(list.account_id);
            }
        }
        if db.is_check_violation() {
            return ListError::Invalid(format!(
                "{} (constraint {})",
                db.message(),
                db.constraint().unwrap_or("?")
            ));
        }
    }
    ListError::Database(error)
}

/// Adds a list. Errors: [`ListError::AccountNotFound`], [`ListError::Duplicate`],
/// [`ListError::Invalid`], database failures.
pub async fn add(pool: &PgPool, list: &NewList) -> Result<List, ListError> {
    check_schedule(list.schedule)?;
    let sql = format!(
        "INSERT INTO importer.lists (account_id, mailchimp_list_id, name, schedule, enabled)
         VALUES ($1, $2, $3, $4 * interval '1 microsecond', $5)
         RETURNING {LIST_COLUMNS}"
    );
    let row: ListRow = sqlx::query_as(&sql)
        .bind(list.account_id)
        .bind(&list.mailchimp_list_id)
        .bind(&list.name)
        .bind(micros(list.schedule))
        .bind(list.enabled)
        .fetch_one(pool)
        .await
        .map_err(|e| classify(e, Some(list)))?;
    Ok(row.into())
}

/// Lists, of one account or all, by account then id. Errors are database failures.
pub async fn list(pool: &PgPool, account_id: Option<i64>) -> Result<Vec<List>, ListError> {
    let sql = format!(
        "SELECT {LIST_COLUMNS} FROM importer.lists
          WHERE $1::bigint IS NULL OR account_id = $1
          ORDER BY account_id, id"
    );
    let rows: Vec<ListRow> = sqlx::query_as(&sql)
        .bind(account_id)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(List::from).collect())
}

/// The list with this id, if any. Errors are database failures.
pub async fn get(pool: &PgPool, id: i64) -> Result<Option<List>, ListError> {
    let sql = format!("SELECT {LIST_COLUMNS} FROM importer.lists WHERE id = $1");
    let row: Option<ListRow> = sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?;
    Ok(row.map(List::from))
}

/// Enables or disables scheduled runs of a list. Errors: [`ListError::NotFound`], database
/// failures.
pub async fn set_enabled(pool: &PgPool, id: i64, enabled: bool) -> Result<List, ListError> {
    change(pool, id, "enabled = $2", enabled).await
}

/// Changes how often a list is synced (1 minute to 31 days). Errors: [`ListError::NotFound`],
/// [`ListError::Invalid`], database failures.
pub async fn set_schedule(pool: &PgPool, id: i64, schedule: Duration) -> Result<List, ListError> {
    check_schedule(schedule)?;
    change(
        pool,
        id,
        "schedule = $2 * interval '1 microsecond'",
        micros(schedule),
    )
    .await
}

/// Moves a list's cursor to `to` (`None`: the next run is a full sync), e.g. to re-deliver
/// changes since a date, and forgets the list's coverage beyond it (`importer.reset_cursor`).
/// Unlike a completing range, this may move it backwards.
///
/// Refused while the list has an active run: that run was planned from the old cursor and would
/// record coverage the reset means to forget. Cancel it first (`runs cancel`), then reset.
///
/// Errors: [`ListError::NotFound`], [`ListError::RunActive`], database failures.
pub async fn reset_cursor(
    pool: &PgPool,
    id: i64,
    to: Option<DateTime<Utc>>,
) -> Result<List, ListError> {
    let outcome: Option<(Option<i64>,)> =
        sqlx::query_as("SELECT active_run_id FROM importer.reset_cursor($1, $2)")
            .bind(id)
            .bind(to)
            .fetch_optional(pool)
            .await?;
    match outcome {
        None => Err(ListError::NotFound(id)),
        Some((Some(run_id),)) => Err(ListError::RunActive {
            list_id: id,
            run_id,
        }),
        Some((None,)) => get(pool, id).await?.ok_or(ListError::NotFound(id)),
    }
}

/// Sets a list's own sync lag (`None`: the deployment's, see [`crate::settings`]). Errors:
/// [`ListError::NotFound`], [`ListError::Invalid`] (over a day), database failures.
pub async fn set_sync_lag(
    pool: &PgPool,
    id: i64,
    lag: Option<Duration>,
) -> Result<List, ListError> {
    change(
        pool,
        id,
        "sync_lag = $2 * interval '1 microsecond'",
        lag.map(micros),
    )
    .await
}

/// Makes a list post every member read (`true`), or skip those whose record the destination
/// already holds per the ledger (`false`, the default). Errors: [`ListError::NotFound`],
/// database failures.
pub async fn set_always_post(pool: &PgPool, id: i64, always: bool) -> Result<List, ListError> {
    change(pool, id, "always_post = $2", always).await
}

/// Sets how often the tick audits a list (1 hour to 366 days; `None`: only on request).
/// Errors: [`ListError::NotFound`], [`ListError::Invalid`], database failures.
pub async fn set_audit_every(
    pool: &PgPool,
    id: i64,
    every: Option<Duration>,
) -> Result<List, ListError> {
    change(
        pool,
        id,
        "audit_every = $2 * interval '1 microsecond'",
        every.map(micros),
    )
    .await
}

/// Deletes a list with its runs, jobs and rejected records; returns whether it existed.
/// Errors are database failures.
pub async fn remove(pool: &PgPool, id: i64) -> Result<bool, ListError> {
    let done = sqlx::query("DELETE FROM importer.lists WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Runs `UPDATE lists SET {assignment}` with `$2 = value` on list `id`.
async fn change<T>(pool: &PgPool, id: i64, assignment: &str, value: T) -> Result<List, ListError>
where
    T: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
{
    let sql =
        format!("UPDATE importer.lists SET {assignment} WHERE id = $1 RETURNING {LIST_COLUMNS}");
    let row: Option<ListRow> = sqlx::query_as(&sql)
        .bind(id)
        .bind(value)
        .fetch_optional(pool)
        .await
        .map_err(|e| classify(e, None))?;
    row.map(List::from).ok_or(ListError::NotFound(id))
}

/// A list as the dashboard's lists page shows it: schedule, cursor, last run, behind or not.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ListSummary {
    /// The list id.
    pub id: i64,
    /// Its account.
    pub account_id: i64,
    /// The account's name.
    pub account: String,
    /// Whether the account is paused.
    pub account_paused: bool,
    /// Mailchimp audience id.
    pub mailchimp_list_id: String,
    /// A name for people.
    pub name: Option<String>,
    /// Schedule in seconds.
    pub schedule_secs: f64,
    /// Whether scheduled runs are created.
    pub enabled: bool,
    /// The cursor.
    pub synced_until: Option<DateTime<Utc>>,
    /// Behind its schedule (`importer.is_behind`).
    pub behind: bool,
    /// Seconds since the cursor (none if never synced).
    pub lag_secs: Option<f64>,
    /// The newest run.
    pub last_run_id: Option<i64>,
    /// Its status.
    pub last_run_status: Option<String>,
    /// When it was created.
    pub last_run_at: Option<DateTime<Utc>>,
    /// When its newest audit concluded.
    pub last_audit_at: Option<DateTime<Utc>>,
    /// The drift that audit could not heal (`importer.unhealed`).
    pub audit_unhealed: Option<i64>,
    /// Members we delivered that are gone from Mailchimp (`importer.deleted_members`).
    pub deleted_members: i64,
}
crate::from_row!(ListSummary {
    id,
    account_id,
    account,
    account_paused,
    mailchimp_list_id,
    name,
    schedule_secs,
    enabled,
    synced_until,
    behind,
    lag_secs,
    last_run_id,
    last_run_status,
    last_run_at,
    last_audit_at,
    audit_unhealed,
    deleted_members
});

/// Which lists [`summaries`] returns, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SummaryFilter {
    /// Only this account's.
    pub account_id: Option<i64>,
    /// Only lists behind their schedule.
    pub behind_only: bool,
    /// Only lists with a larger id (the next page).
    pub after_id: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

/// Lists matching `filter` by id, with their newest run (one index probe each). Errors are
/// database failures.
pub async fn summaries(
    pool: &PgPool,
    filter: &SummaryFilter,
) -> Result<Vec<ListSummary>, ListError> {
    Ok(sqlx::query_as(
        "SELECT l.id, l.account_id, a.name AS account, a.paused AS account_paused,
                l.mailchimp_list_id, l.name,
                extract(epoch FROM l.schedule)::float8 AS schedule_secs, l.enabled,
                l.synced_until, importer.is_behind(l.enabled, l.synced_until, l.schedule) AS behind,
                extract(epoch FROM now() - l.synced_until)::float8 AS lag_secs,
                last.id AS last_run_id, last.status AS last_run_status,
                last.created_at AS last_run_at,
                au.concluded_at AS last_audit_at,
                au.unhealed AS audit_unhealed,
                (SELECT count(*) FROM importer.deleted_members d WHERE d.list_id = l.id)
                    AS deleted_members
           FROM importer.lists l
           JOIN importer.accounts a ON a.id = l.account_id
           LEFT JOIN LATERAL (
                SELECT r.id, r.status, r.created_at FROM importer.runs r
                 WHERE r.list_id = l.id ORDER BY r.created_at DESC LIMIT 1) last ON true
           LEFT JOIN LATERAL (
                SELECT x.concluded_at, importer.unhealed(x) AS unhealed
                  FROM importer.audit_results x
                 WHERE x.list_id = l.id ORDER BY x.run_id DESC LIMIT 1) au ON true
          WHERE ($1::bigint IS NULL OR l.account_id = $1)
            AND (NOT $2 OR importer.is_behind(l.enabled, l.synced_until, l.schedule))
            AND ($3::bigint IS NULL OR l.id > $3)
          ORDER BY l.id
          LIMIT $4",
    )
    .bind(filter.account_id)
    .bind(filter.behind_only)
    .bind(filter.after_id)
    .bind(filter.limit)
    .fetch_all(pool)
    .await?)
}

/// A row of `importer.lists_behind_schedule`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BehindList {
    /// The list.
    pub list_id: i64,
    /// Its Mailchimp audience id.
    pub mailchimp_list_id: String,
    /// Its name for people.
    pub list_name: Option<String>,
    /// Its account.
    pub account_id: i64,
    /// The account's name.
    pub account: String,
    /// Whether the account is paused (its lists fall behind by design).
    pub account_paused: bool,
    /// Schedule in seconds.
    pub schedule_secs: f64,
    /// The cursor.
    pub synced_until: Option<DateTime<Utc>>,
    /// Seconds since the cursor; none if never synced.
    pub lag_secs: Option<f64>,
    /// When a run of it last completed.
    pub last_completed_at: Option<DateTime<Utc>>,
    /// Its active run.
    pub active_run_id: Option<i64>,
    /// That run's status.
    pub active_run_status: Option<String>,
}
crate::from_row!(BehindList {
    list_id,
    mailchimp_list_id,
    list_name,
    account_id,
    account,
    account_paused,
    schedule_secs,
    synced_until,
    lag_secs,
    last_completed_at,
    active_run_id,
    active_run_status
});

/// Lists behind their schedule, worst first (never synced, then the oldest cursor), at most
/// `limit`. Errors are database failures.
pub async fn behind(pool: &PgPool, limit: i64) -> Result<Vec<BehindList>, ListError> {
    Ok(sqlx::query_as(
        "SELECT list_id, mailchimp_list_id, list_name, account_id, account, account_paused,
                extract(epoch FROM schedule)::float8 AS schedule_secs, synced_until,
                extract(epoch FROM lag)::float8 AS lag_secs, last_completed_at,
                active_run_id, active_run_status
           FROM importer.lists_behind_schedule
          ORDER BY synced_until NULLS FIRST, list_id
          LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Lists behind their schedule as alerts see them (`importer-admin exporter`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Overdue {
    /// Enabled lists of unpaused accounts behind their schedule (`importer.is_behind`).
    pub behind: i64,
    /// The worst of them: account name, Mailchimp list id, and seconds past one schedule
    /// period since the cursor (since the list was added, if it was never synced).
    pub worst: Vec<(String, String, f64)>,
}

/// The lists behind their schedule, counted, and the `limit` furthest behind. Paused accounts'
/// lists are left out: they fall behind by design. Errors are database failures.
pub async fn overdue(pool: &PgPool, limit: i64) -> Result<Overdue, ListError> {
    let rows: Vec<(String, String, f64, i64)> = sqlx::query_as(
        "SELECT a.name, l.mailchimp_list_id,
                extract(epoch FROM now() - coalesce(l.synced_until, l.created_at) - l.schedule)::float8
                    AS overdue,
                count(*) OVER () AS behind
           FROM importer.lists l
           JOIN importer.accounts a ON a.id = l.account_id
          WHERE importer.is_behind(l.enabled, l.synced_until, l.schedule) AND NOT a.paused
          ORDER BY overdue DESC, l.id
          LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(Overdue {
        behind: rows.first().map_or(0, |r| r.3),
        worst: rows.into_iter().map(|(a, l, o, _)| (a, l, o)).collect(),
    })
}
