//! Accounts: a client's Mailchimp key, destination and Mailchimp concurrency budget.
//!
//! Secrets arrive here already encrypted (`secrets::SecretBox`) and are stored as bytes with a
//! redacted hint for display; this module never sees a plaintext key, and no `Debug` output of
//! its types contains the encrypted bytes either.

use std::fmt;

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};

/// `max_concurrency` of a new account when none is given (Mailchimp allows 10 per key).
pub const DEFAULT_MAX_CONCURRENCY: i32 = 10;

/// A new account; the keys are already encrypted.
#[derive(Clone, PartialEq, Eq)]
pub struct NewAccount {
    /// Unique, non-empty name.
    pub name: String,
    /// Encrypted Mailchimp API key.
    pub mailchimp_key: Vec<u8>,
    /// Redacted Mailchimp key for display, e.g. `…-us6`.
    pub mailchimp_key_hint: String,
    /// Overrides the Mailchimp base URL derived from the key (the simulator).
    pub mailchimp_base_url: Option<String>,
    /// Base URL of the records API.
    pub destination_url: String,
    /// Encrypted destination key.
    pub destination_key: Vec<u8>,
    /// Redacted destination key for display.
    pub destination_key_hint: String,
    /// Most Mailchimp requests in flight for this account (1..=1000).
    pub max_concurrency: i32,
}

/// A row of `importer.accounts`. Its `Debug` omits the encrypted keys.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Account {
    /// The account id.
    pub id: i64,
    /// Its unique name.
    pub name: String,
    /// Encrypted Mailchimp API key.
    pub mailchimp_key: Vec<u8>,
    /// Redacted Mailchimp key for display.
    pub mailchimp_key_hint: String,
    /// Mailchimp base URL override.
    pub mailchimp_base_url: Option<String>,
    /// Base URL of the records API.
    pub destination_url: String,
    /// Encrypted destination key.
    pub destination_key: Vec<u8>,
    /// Redacted destination key for display.
    pub destination_key_hint: String,
    /// Most Mailchimp requests in flight for this account.
    pub max_concurrency: i32,
    /// A paused account gets no scheduled runs and none of its jobs are claimed.
    pub paused: bool,
    /// When jobs of this account were last claimed.
    pub last_claimed_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("mailchimp_key", &self.mailchimp_key_hint)
            .field("mailchimp_base_url", &self.mailchimp_base_url)
            .field("destination_url", &self.destination_url)
            .field("destination_key", &self.destination_key_hint)
            .field("max_concurrency", &self.max_concurrency)
            .field("paused", &self.paused)
            .field("last_claimed_at", &self.last_claimed_at)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

impl fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewAccount")
            .field("name", &self.name)
            .field("mailchimp_key", &self.mailchimp_key_hint)
            .field("mailchimp_base_url", &self.mailchimp_base_url)
            .field("destination_url", &self.destination_url)
            .field("destination_key", &self.destination_key_hint)
            .field("max_concurrency", &self.max_concurrency)
            .finish()
    }
}

/// Changes to an account; `None` leaves a field as it is. A new key comes with its new hint.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AccountUpdate {
    /// New name.
    pub name: Option<String>,
    /// New encrypted Mailchimp key and its hint.
    pub mailchimp_key: Option<(Vec<u8>, String)>,
    /// New base URL override; `Some(None)` removes it.
    pub mailchimp_base_url: Option<Option<String>>,
    /// New destination base URL.
    pub destination_url: Option<String>,
    /// New encrypted destination key and its hint.
    pub destination_key: Option<(Vec<u8>, String)>,
    /// New concurrency budget.
    pub max_concurrency: Option<i32>,
    /// Pause or resume.
    pub paused: Option<bool>,
}

impl fmt::Debug for AccountUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hint = |k: &Option<(Vec<u8>, String)>| k.as_ref().map(|(_, hint)| hint.clone());
        f.debug_struct("AccountUpdate")
            .field("name", &self.name)
            .field("mailchimp_key", &hint(&self.mailchimp_key))
            .field("mailchimp_base_url", &self.mailchimp_base_url)
            .field("destination_url", &self.destination_url)
            .field("destination_key", &hint(&self.destination_key))
            .field("max_concurrency", &self.max_concurrency)
            .field("paused", &self.paused)
            .finish()
    }
}

/// What a job needs to reach both APIs for one account (keys still encrypted).
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct JobCredentials {
    /// Encrypted Mailchimp API key.
    pub mailchimp_key: Vec<u8>,
    /// Mailchimp base URL override.
    pub mailchimp_base_url: Option<String>,
    /// Base URL of the records API.
    pub destination_url: String,
    /// Encrypted destination key.
    pub destination_key: Vec<u8>,
    /// The account's Mailchimp concurrency budget.
    pub max_concurrency: i32,
}

impl fmt::Debug for JobCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobCredentials")
            .field("mailchimp_key", &"<encrypted>")
            .field("mailchimp_base_url", &self.mailchimp_base_url)
            .field("destination_url", &self.destination_url)
            .field("destination_key", &"<encrypted>")
            .field("max_concurrency", &self.max_concurrency)
            .finish()
    }
}

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The database failed or is unreachable.
    #[error("accounts database error: {0}")]
    Database(#[from] sqlx::Error),
    /// No account has this id.
    #[error("account {0} not found")]
    NotFound(i64),
    /// Another account has this name.
    #[error("an account named {0:?} already exists")]
    NameTaken(String),
    /// A value breaks a rule of the schema (empty name, concurrency outside 1..=1000).
    #[error("invalid account: {0}")]
    Invalid(String),
}

const ACCOUNT_COLUMNS: &str = "id, name, mailchimp_key, mailchimp_key_hint, mailchimp_base_url, \
     destination_url, destination_key, destination_key_hint, max_concurrency, paused, \
     last_claimed_at, created_at, updated_at";

/// Maps constraint violations to the errors a caller can act on.
fn classify(error: sqlx::Error, name: Option<&str>) -> AccountError {
    if let sqlx::Error::Database(db) = &error {
        if db.is_unique_violation() {
            return AccountError::NameTaken(name.unwrap_or_default().to_owned());
        }
        if db.is_check_violation() {
            return AccountError::Invalid(format!(
                "{} (constraint {})",
                db.message(),
                db.constraint().unwrap_or("?")
            ));
        }
    }
    AccountError::Database(error)
}

/// Creates an account. Errors: [`AccountError::NameTaken`], [`AccountError::Invalid`],
/// database failures.
pub async fn create(pool: &PgPool, account: &NewAccount) -> Result<Account, AccountError> {
    let sql = format!(
        "INSERT INTO importer.accounts
                (name, mailchimp_key, mailchimp_key_hint, mailchimp_base_url, destination_url,
                 destination_key, destination_key_hint, max_concurrency)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING {ACCOUNT_COLUMNS}"
    );
    sqlx::query_as(&sql)
        .bind(&account.name)
        .bind(&account.mailchimp_key)
        .bind(&account.mailchimp_key_hint)
        .bind(&account.mailchimp_base_url)
        .bind(&account.destination_url)
        .bind(&account.destination_key)
        .bind(&account.destination_key_hint)
        .bind(account.max_concurrency)
        .fetch_one(pool)
        .await
        .map_err(|e| classify(e, Some(&account.name)))
}

/// Every account, by name. Errors are database failures.
pub async fn list(pool: &PgPool) -> Result<Vec<Account>, AccountError> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM importer.accounts ORDER BY name");
    Ok(sqlx::query_as(&sql).fetch_all(pool).await?)
}

/// The account with this id, if any. Errors are database failures.
pub async fn get(pool: &PgPool, id: i64) -> Result<Option<Account>, AccountError> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM importer.accounts WHERE id = $1");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?)
}

/// The account with this name, if any. Errors are database failures.
pub async fn find_by_name(pool: &PgPool, name: &str) -> Result<Option<Account>, AccountError> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM importer.accounts WHERE name = $1");
    Ok(sqlx::query_as(&sql).bind(name).fetch_optional(pool).await?)
}

/// Applies `update` and returns the account. Lowering `max_concurrency` takes effect at the next
/// claim (slots already held run to their end). Errors: [`AccountError::NotFound`],
/// [`AccountError::NameTaken`], [`AccountError::Invalid`], database failures.
pub async fn update(
    pool: &PgPool,
    id: i64,
    update: &AccountUpdate,
) -> Result<Account, AccountError> {
    let (mc_key, mc_hint) = split_key(&update.mailchimp_key);
    let (dest_key, dest_hint) = split_key(&update.destination_key);
    let sql = format!(
        "UPDATE importer.accounts
            SET name = coalesce($2, name),
                mailchimp_key = coalesce($3, mailchimp_key),
                mailchimp_key_hint = coalesce($4, mailchimp_key_hint),
                mailchimp_base_url = CASE WHEN $5 THEN $6 ELSE mailchimp_base_url END,
                destination_url = coalesce($7, destination_url),
                destination_key = coalesce($8, destination_key),
                destination_key_hint = coalesce($9, destination_key_hint),
                max_concurrency = coalesce($10, max_concurrency),
                paused = coalesce($11, paused),
                updated_at = now()
          WHERE id = $1
         RETURNING {ACCOUNT_COLUMNS}"
    );
    sqlx::query_as(&sql)
        .bind(id)
        .bind(&update.name)
        .bind(mc_key)
        .bind(mc_hint)
        .bind(update.mailchimp_base_url.is_some())
        .bind(update.mailchimp_base_url.clone().flatten())
        .bind(&update.destination_url)
        .bind(dest_key)
        .bind(dest_hint)
        .bind(update.max_concurrency)
        .bind(update.paused)
        .fetch_optional(pool)
        .await
        .map_err(|e| classify(e, update.name.as_deref()))?
        .ok_or(AccountError::NotFound(id))
}

fn split_key(key: &Option<(Vec<u8>, String)>) -> (Option<&[u8]>, Option<&str>) {
    match key {
        Some((bytes, hint)) => (Some(bytes.as_slice()), Some(hint.as_str())),
        None => (None, None),
    }
}

/// Pauses (no scheduled runs, no claims) or resumes an account. Errors:
/// [`AccountError::NotFound`], database failures.
pub async fn set_paused(pool: &PgPool, id: i64, paused: bool) -> Result<Account, AccountError> {
    let update = AccountUpdate {
        paused: Some(paused),
        ..AccountUpdate::default()
    };
    self::update(pool, id, &update).await
}

/// Deletes an account with its lists, runs, jobs and dead jobs (holders of its jobs get fenced);
/// returns whether it existed. Errors are database failures.
pub async fn remove(pool: &PgPool, id: i64) -> Result<bool, AccountError> {
    let done = sqlx::query("DELETE FROM importer.accounts WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The encrypted credentials a job of `account_id` needs (`None` if the account is gone).
/// One indexed query; the worker decrypts. Errors are database failures.
pub async fn credentials_for_job<'e, E: PgExecutor<'e>>(
    executor: E,
    account_id: i64,
) -> Result<Option<JobCredentials>, sqlx::Error> {
    sqlx::query_as(
        "SELECT mailchimp_key, mailchimp_base_url, destination_url, destination_key, max_concurrency
           FROM importer.accounts WHERE id = $1",
    )
    .bind(account_id)
    .fetch_optional(executor)
    .await
}

/// An account as the dashboard's accounts page shows it: no key, only its hints.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct AccountSummary {
    /// The account id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Whether it is paused.
    pub paused: bool,
    /// Its Mailchimp concurrency cap.
    pub max_concurrency: i32,
    /// Live Mailchimp slots in use (jobs holding one on a live lease).
    pub slots_in_use: i64,
    /// Its lists.
    pub lists: i64,
    /// Redacted Mailchimp key.
    pub mailchimp_key_hint: String,
    /// Redacted destination key.
    pub destination_key_hint: String,
    /// The records API's base URL.
    pub destination_url: String,
    /// When a run of one of its lists last completed.
    pub last_synced_at: Option<DateTime<Utc>>,
}

/// Accounts by name after `after_name` (the previous page's last), at most `limit`, each with
/// its list count, slots in use and last successful sync (index probes per account: the page
/// costs the same however many runs there are). Errors are database failures.
pub async fn summaries(
    pool: &PgPool,
    after_name: Option<&str>,
    limit: i64,
) -> Result<Vec<AccountSummary>, AccountError> {
    Ok(sqlx::query_as(
        "SELECT a.id, a.name, a.paused, a.max_concurrency,
                (SELECT count(*) FROM importer.jobs j
                  WHERE j.account_id = a.id AND j.locked_until > now() AND j.holds_slot)
                    AS slots_in_use,
                (SELECT count(*) FROM importer.lists l WHERE l.account_id = a.id) AS lists,
                a.mailchimp_key_hint, a.destination_key_hint, a.destination_url,
                (SELECT max(last.finished_at)
                   FROM importer.lists l
                  CROSS JOIN LATERAL (
                        SELECT r.finished_at FROM importer.runs r
                         WHERE r.list_id = l.id AND r.status = 'completed'
                         ORDER BY r.finished_at DESC LIMIT 1) last
                  WHERE l.account_id = a.id) AS last_synced_at
           FROM importer.accounts a
          WHERE $1::text IS NULL OR a.name > $1
          ORDER BY a.name
          LIMIT $2",
    )
    .bind(after_name)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
