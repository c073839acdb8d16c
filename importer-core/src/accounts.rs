//! Accounts: a client's Mailchimp key, destination and Mailchimp concurrency budget.
//!
//! Keys are sealed with `secrets::SecretBox` for their row and column (which is why [`create`]
//! reserves the account's id before it encrypts) and stored with a redacted hint for display.
//! No `Debug` output of these types contains a key, plaintext or encrypted. [`rotate_secrets`]
//! re-seals every stored key under the current encryption key.

use std::fmt;

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};

use crate::ledger::{self, LedgerError};
use crate::secrets::{Sealed, Secret, SecretBox, SecretField, SecretSlot};

/// `max_concurrency` of a new account when none is given (Mailchimp allows 10 per key).
pub const DEFAULT_MAX_CONCURRENCY: i32 = 10;

/// A new account, keys in plaintext: [`create`] seals them for the new row.
#[derive(Clone, PartialEq, Eq)]
pub struct NewAccount {
    /// Unique, non-empty name.
    pub name: String,
    /// Mailchimp API key.
    pub mailchimp_key: Secret,
    /// Overrides the Mailchimp base URL derived from the key (the simulator).
    pub mailchimp_base_url: Option<String>,
    /// Base URL of the records API.
    pub destination_url: String,
    /// Destination API key.
    pub destination_key: Secret,
    /// Most Mailchimp requests in flight for this account (1..=1000).
    pub max_concurrency: i32,
}

/// A row of `importer.accounts`. Its `Debug` omits the encrypted keys.
#[derive(Clone, PartialEq, Eq)]
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
crate::from_row!(Account {
    id,
    name,
    mailchimp_key,
    mailchimp_key_hint,
    mailchimp_base_url,
    destination_url,
    destination_key,
    destination_key_hint,
    max_concurrency,
    paused,
    last_claimed_at,
    created_at,
    updated_at
});

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
            .field("mailchimp_base_url", &self.mailchimp_base_url)
            .field("destination_url", &self.destination_url)
            .field("max_concurrency", &self.max_concurrency)
            .finish()
    }
}

/// Changes to an account; `None` leaves a field as it is. A new key comes with its new hint.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AccountUpdate {
    /// New name.
    pub name: Option<String>,
    /// New Mailchimp key, sealed for this account ([`SecretBox::seal`]).
    pub mailchimp_key: Option<Sealed>,
    /// New base URL override; `Some(None)` removes it.
    pub mailchimp_base_url: Option<Option<String>>,
    /// New destination base URL.
    pub destination_url: Option<String>,
    /// New destination key, sealed for this account.
    pub destination_key: Option<Sealed>,
    /// New concurrency budget.
    pub max_concurrency: Option<i32>,
    /// Pause or resume.
    pub paused: Option<bool>,
}

impl fmt::Debug for AccountUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hint = |k: &Option<Sealed>| k.as_ref().map(|sealed| sealed.hint.clone());
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
#[derive(Clone, PartialEq, Eq)]
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
crate::from_row!(JobCredentials {
    mailchimp_key,
    mailchimp_base_url,
    destination_url,
    destination_key,
    max_concurrency
});

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
    /// The destination cannot change while runs of the account are active.
    #[error("account {account_id} has active runs {runs:?}: their jobs post to the destination they started with; cancel them (runs cancel <id>) or let them finish, then change the destination")]
    RunsActive {
        /// The account.
        account_id: i64,
        /// Its active runs.
        runs: Vec<i64>,
    },
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

/// Creates an account: reserves its id, seals both keys for it under `secrets`' current key,
/// stores them with their hints. Errors: [`AccountError::NameTaken`], [`AccountError::Invalid`],
/// database failures (a failed insert leaves a gap in the ids, nothing else).
pub async fn create(
    pool: &PgPool,
    secrets: &SecretBox,
    account: &NewAccount,
) -> Result<Account, AccountError> {
    let id: i64 =
        sqlx::query_scalar("SELECT nextval(pg_get_serial_sequence('importer.accounts', 'id'))")
            .fetch_one(pool)
            .await?;
    let mailchimp = secrets.seal(id, SecretField::MailchimpKey, &account.mailchimp_key);
    let destination = secrets.seal(id, SecretField::DestinationKey, &account.destination_key);
    let sql = format!(
        "INSERT INTO importer.accounts
                (id, name, mailchimp_key, mailchimp_key_hint, mailchimp_base_url, destination_url,
                 destination_key, destination_key_hint, max_concurrency)
         OVERRIDING SYSTEM VALUE
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         RETURNING {ACCOUNT_COLUMNS}"
    );
    sqlx::query_as(&sql)
        .bind(id)
        .bind(&account.name)
        .bind(&mailchimp.bytes)
        .bind(&mailchimp.hint)
        .bind(&account.mailchimp_base_url)
        .bind(&account.destination_url)
        .bind(&destination.bytes)
        .bind(&destination.hint)
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
/// claim (slots already held run to their end). A new destination URL or key forgets what the
/// ledger says was delivered, and is refused while runs of the account are active. Errors:
/// [`AccountError::NotFound`], [`AccountError::NameTaken`], [`AccountError::Invalid`],
/// [`AccountError::RunsActive`], database failures.
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
    let mut tx = pool.begin().await?;
    let moves = update.destination_url.is_some() || update.destination_key.is_some();
    if moves {
        refuse_while_running(&mut tx, id).await?;
    }
    let account: Account = sqlx::query_as(&sql)
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
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| classify(e, update.name.as_deref()))?
        .ok_or(AccountError::NotFound(id))?;
    // A new destination holds none of what the ledger says was delivered: forget it, or the
    // next runs would skip every member they find unchanged. (Key rotation re-encrypts the
    // same key through `secrets`, not here, and keeps the ledger.)
    if moves {
        ledger::forget_account(&mut *tx, id)
            .await
            .map_err(|LedgerError::Database(e)| AccountError::Database(e))?;
    }
    tx.commit().await?;
    Ok(account)
}

/// Refuses a destination change while runs of the account are active. Their jobs loaded the
/// old destination once and post to it to the end, and would record those posts in the ledger
/// just forgotten: a later sync would skip those members as delivered while the new destination
/// never got them. The account's lists are locked first, so no run starts before this
/// transaction ends (a run's insert waits on its list's row); the runs are read by a second
/// statement, whose snapshot sees a run whose insert the lock waited for.
async fn refuse_while_running(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    account_id: i64,
) -> Result<(), AccountError> {
    sqlx::query(
        "SELECT l.id FROM importer.lists l WHERE l.account_id = $1 ORDER BY l.id FOR UPDATE",
    )
    .bind(account_id)
    .execute(&mut **tx)
    .await?;
    let runs: Vec<i64> = sqlx::query_scalar(
        "SELECT r.id FROM importer.runs r JOIN importer.lists l ON l.id = r.list_id
          WHERE l.account_id = $1 AND r.status IN ('planning', 'running')
          ORDER BY r.id",
    )
    .bind(account_id)
    .fetch_all(&mut **tx)
    .await?;
    if runs.is_empty() {
        Ok(())
    } else {
        Err(AccountError::RunsActive { account_id, runs })
    }
}

fn split_key(key: &Option<Sealed>) -> (Option<&[u8]>, Option<&str>) {
    match key {
        Some(sealed) => (Some(sealed.bytes.as_slice()), Some(sealed.hint.as_str())),
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
crate::from_row!(AccountSummary {
    id,
    name,
    paused,
    max_concurrency,
    slots_in_use,
    lists,
    mailchimp_key_hint,
    destination_key_hint,
    destination_url,
    last_synced_at
});

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

/// An account's two stored keys, still sealed.
struct SealedKeys {
    id: i64,
    mailchimp_key: Vec<u8>,
    destination_key: Vec<u8>,
}
crate::from_row!(SealedKeys {
    id,
    mailchimp_key,
    destination_key
});

impl SealedKeys {
    fn fields(&self) -> [(SecretField, &[u8]); 2] {
        [
            (SecretField::MailchimpKey, &self.mailchimp_key),
            (SecretField::DestinationKey, &self.destination_key),
        ]
    }
}

/// Accounts after id `after`, at most `limit`, with their sealed keys; locked when `lock`.
async fn sealed_page<'e, E: PgExecutor<'e>>(
    executor: E,
    after: i64,
    limit: i64,
    lock: bool,
) -> Result<Vec<SealedKeys>, sqlx::Error> {
    let sql = format!(
        "SELECT id, mailchimp_key, destination_key FROM importer.accounts
          WHERE id > $1 ORDER BY id LIMIT $2 {}",
        if lock { "FOR UPDATE" } else { "" }
    );
    sqlx::query_as(&sql)
        .bind(after)
        .bind(limit)
        .fetch_all(executor)
        .await
}

/// A stored key that a rotation could not re-seal, and why (the error never holds the key).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RotationFailure {
    /// The account.
    pub account_id: i64,
    /// The column.
    pub column: &'static str,
    /// Why: a key this process lacks, or bytes that do not belong to this row.
    pub error: String,
}

/// What [`rotate_secrets`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RotationReport {
    /// Accounts looked at.
    pub accounts: u64,
    /// Keys re-sealed under the current key.
    pub resealed: u64,
    /// Keys that already were (opened to check them, left as they are).
    pub already_current: u64,
    /// Keys that could not be opened; left as they are.
    pub failed: Vec<RotationFailure>,
}

/// Re-seals every stored key under `secrets`' current key, `batch` accounts per transaction in
/// id order, calling `progress` after each batch. A batch locks its rows only while it re-seals
/// them (microseconds per key), so workers go on reading the keys (MVCC) and opening them with
/// the current or the previous key; `accounts update` waits for the batch at most. Idempotent:
/// run it again after an interruption. A key that does not open is reported and left alone.
/// Errors are database failures.
pub async fn rotate_secrets(
    pool: &PgPool,
    secrets: &SecretBox,
    batch: i64,
    mut progress: impl FnMut(&RotationReport),
) -> Result<RotationReport, AccountError> {
    let mut report = RotationReport::default();
    let mut after = 0;
    loop {
        let mut tx = pool.begin().await?;
        let page = sealed_page(&mut *tx, after, batch.max(1), true).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.id;
        let (mut ids, mut mailchimp, mut destination) = (Vec::new(), Vec::new(), Vec::new());
        for row in &page {
            report.accounts += 1;
            let mut new = [None, None];
            for (k, (field, stored)) in row.fields().into_iter().enumerate() {
                match secrets.reseal(SecretSlot::new(row.id, field), stored) {
                    Ok(Some(bytes)) => {
                        report.resealed += 1;
                        new[k] = Some(bytes);
                    }
                    Ok(None) => report.already_current += 1,
                    Err(error) => report.failed.push(RotationFailure {
                        account_id: row.id,
                        column: field.column(),
                        error: error.to_string(),
                    }),
                }
            }
            if new.iter().any(Option::is_some) {
                let [mc, dest] = new;
                ids.push(row.id);
                mailchimp.push(mc.unwrap_or_else(|| row.mailchimp_key.clone()));
                destination.push(dest.unwrap_or_else(|| row.destination_key.clone()));
            }
        }
        sqlx::query(
            "UPDATE importer.accounts a
                SET mailchimp_key = u.mailchimp_key, destination_key = u.destination_key
               FROM unnest($1::bigint[], $2::bytea[], $3::bytea[])
                    AS u(id, mailchimp_key, destination_key)
              WHERE a.id = u.id",
        )
        .bind(&ids)
        .bind(&mailchimp)
        .bind(&destination)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        progress(&report);
    }
    Ok(report)
}

/// How many stored keys each encryption key sealed, as `secrets status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct KeyUsage {
    /// Id of the current key.
    pub current_key_id: String,
    /// Id of the previous key, when one is configured.
    pub previous_key_id: Option<String>,
    /// Keys sealed by the current key.
    pub current: u64,
    /// Keys sealed by the previous key: a rotation is not finished while this is above 0.
    pub previous: u64,
    /// Keys in the old format (no key id): `secrets rotate` upgrades them.
    pub legacy: u64,
    /// Keys sealed by keys this process does not have, by key id.
    pub unknown: std::collections::BTreeMap<String, u64>,
}

/// Counts the stored keys by the key that sealed them (from their headers; only a value of an
/// unknown key is tried, in case it is of the old format), reading the accounts in pages of
/// 1,000. Errors are database failures.
pub async fn key_usage(pool: &PgPool, secrets: &SecretBox) -> Result<KeyUsage, AccountError> {
    use crate::secrets::SealedBy;
    let mut usage = KeyUsage {
        current_key_id: secrets.current_key_id(),
        previous_key_id: secrets.previous_key_id(),
        ..KeyUsage::default()
    };
    let mut after = 0;
    loop {
        let page = sealed_page(pool, after, 1000, false).await?;
        let Some(last) = page.last() else {
            return Ok(usage);
        };
        after = last.id;
        for row in &page {
            for (field, stored) in row.fields() {
                match secrets.key_of(stored) {
                    SealedBy::Current => usage.current += 1,
                    SealedBy::Previous => usage.previous += 1,
                    SealedBy::Legacy => usage.legacy += 1,
                    // An old-format value whose nonce looks like a header (1 in 256) opens.
                    SealedBy::Unknown(_)
                        if secrets
                            .decrypt(SecretSlot::new(row.id, field), stored)
                            .is_ok() =>
                    {
                        usage.legacy += 1
                    }
                    SealedBy::Unknown(id) => *usage.unknown.entry(id).or_default() += 1,
                }
            }
        }
    }
}
