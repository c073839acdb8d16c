//! The ledger (`importer.ledger`): what we delivered for each member of each list, so that a
//! run posts only what changed and an audit can compare Mailchimp with what we delivered.
//!
//! A row holds the member's [`fingerprint`] (of the five mapped fields), its `last_changed`
//! when we read it and when. Rows are written by the checkpoint or the completion of the job
//! that delivered them ([`record`], in that transaction, set-based), after the post: the ledger
//! never claims a record the destination was not sent. A member read again with the same
//! fingerprint (Mailchimp moved `last_changed` for interests, tags or stats, which we do not
//! map) is not posted ([`ListLedger::unchanged`]); its row still records the new
//! `last_changed`. The write is unconditional (last write wins, as at the destination): runs of
//! one list never overlap (`runs_one_active_per_list`) and within a run a member belongs to
//! one range, so the ledger's order of writes is the destination's order of posts.
//!
//! The same email in two lists of one account is one destination record: each list's ledger
//! holds what that list delivered. Sizing, partitioning and HOT updates: see the migration
//! `20261202000001_ledger.sql`.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{PgExecutor, PgPool};

use crate::mapping::Record;

/// Why a ledger operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database failed or is unreachable.
    #[error("ledger database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// What we delivered (or confirmed the destination holds) for one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Mailchimp's member id.
    pub member_id: String,
    /// [`fingerprint`] of its mapped record.
    pub fingerprint: i64,
    /// Its `last_changed` as read (`None` when Mailchimp sent none).
    pub last_changed: Option<DateTime<Utc>>,
    /// [`member_key`] of `member_id`, once for the page's lookup and its write.
    key: Vec<u8>,
}

impl Delivery {
    /// The delivery of `record`, read with `last_changed` (Unix seconds).
    pub fn of(record: &Record, last_changed: Option<i64>) -> Delivery {
        Delivery {
            member_id: record.id.clone(),
            fingerprint: fingerprint(record),
            last_changed: last_changed.and_then(|s| DateTime::from_timestamp(s, 0)),
            key: member_key(&record.id),
        }
    }
}

/// A stable fingerprint of a mapped record: the first 8 bytes of a SHA-256 over its five
/// fields, each prefixed with its length (so no two records share an encoding). Stable across
/// processes and versions, unlike `std`'s hasher; a collision (2^-64 per pair) would skip one
/// post, which the next change of the member repairs.
pub fn fingerprint(record: &Record) -> i64 {
    let mut hash = Sha256::new();
    for field in [
        &record.id,
        &record.firstname,
        &record.lastname,
        &record.email,
        &record.status,
    ] {
        hash.update((field.len() as u64).to_le_bytes());
        hash.update(field.as_bytes());
    }
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// The ledger of the list a run syncs, as that run's jobs use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListLedger {
    /// The list.
    pub list_id: i64,
    /// The list posts every member read (`lists.always_post`): nothing is skipped.
    pub always_post: bool,
}

impl ListLedger {
    /// The ledger of `run_id`'s list, if the run exists. Errors are database failures.
    pub async fn of_run(pool: &PgPool, run_id: i64) -> Result<Option<ListLedger>, LedgerError> {
        let row: Option<(i64, bool)> = sqlx::query_as(
            "SELECT l.id, l.always_post FROM importer.runs r
               JOIN importer.lists l ON l.id = r.list_id WHERE r.id = $1",
        )
        .bind(run_id)
        .fetch_optional(pool)
        .await?;
        Ok(row.map(|(list_id, always_post)| ListLedger {
            list_id,
            always_post,
        }))
    }

    /// The members of `deliveries` whose record the destination already holds: the ledger has
    /// the same fingerprint. Empty for a list that posts always. One query. Errors are
    /// database failures.
    pub async fn unchanged(
        &self,
        pool: &PgPool,
        deliveries: &[Delivery],
    ) -> Result<HashSet<String>, LedgerError> {
        if self.always_post || deliveries.is_empty() {
            return Ok(HashSet::new());
        }
        let keys: Vec<&[u8]> = deliveries.iter().map(|d| d.key.as_slice()).collect();
        // The keys as one array, so the lookup is an index scan of the list's rows for these
        // members only, whatever the list's size (joined with unnest instead, the planner
        // hashed every row of the list on each page).
        let held: Vec<(Vec<u8>, i64)> = sqlx::query_as(
            "SELECT g.member_key, g.fingerprint
               FROM importer.ledger g
              WHERE g.list_id = $1 AND g.member_key = ANY ($2::bytea[])",
        )
        .bind(self.list_id)
        .bind(&keys)
        .fetch_all(pool)
        .await?;
        let held: HashMap<Vec<u8>, i64> = held.into_iter().collect();
        Ok(deliveries
            .iter()
            .filter(|d| held.get(&d.key) == Some(&d.fingerprint))
            .map(|d| d.member_id.clone())
            .collect())
    }
}

/// The ledger's key of a Mailchimp member id, computed here for the hot statements (a page's
/// lookup and write) instead of by `importer.ledger_key` once per member in the database, which
/// was a third of their time (a regular expression per id). The SQL function stays the
/// definition, for operators and the audit: the test
/// `member_keys_are_those_of_the_sql_function` holds both to the same answers.
fn member_key(member_id: &str) -> Vec<u8> {
    let bytes = member_id.as_bytes();
    // Lowercase only, as the SQL function's pattern: an uppercase id is kept as its bytes.
    let lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if bytes.len() == 32 && bytes.iter().all(lower_hex) {
        if let Ok(key) = hex::decode(bytes) {
            return key;
        }
    }
    let mut key = bytes.to_vec();
    if key.len() == 16 {
        // Never 16 bytes long: that is the length of a decoded hex id.
        key.push(0);
    }
    key
}

/// Forgets what was delivered for every list of `account_id`: its destination changed, and
/// what the old one holds says nothing of the new one (records are kept per destination key),
/// so the next runs post every member they read. Returns the rows removed. Run it in the
/// transaction that changes the destination. Errors are database failures.
pub(crate) async fn forget_account<'e, E: PgExecutor<'e>>(
    executor: E,
    account_id: i64,
) -> Result<u64, LedgerError> {
    Ok(sqlx::query(
        "DELETE FROM importer.ledger g USING importer.lists l
          WHERE l.account_id = $1 AND g.list_id = l.id",
    )
    .bind(account_id)
    .execute(executor)
    .await?
    .rows_affected())
}

/// Records `deliveries` in the ledger of `run_id`'s list, one statement: inserts new members,
/// overwrites known ones (last write wins; see the module docs). A member listed twice counts
/// once, with its latest `last_changed`. Run it in the transaction that records the delivery.
pub(crate) async fn record<'e, E: PgExecutor<'e>>(
    executor: E,
    run_id: i64,
    deliveries: &[Delivery],
) -> Result<(), sqlx::Error> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let keys: Vec<&[u8]> = deliveries.iter().map(|d| d.key.as_slice()).collect();
    let prints: Vec<i64> = deliveries.iter().map(|d| d.fingerprint).collect();
    let changed: Vec<Option<DateTime<Utc>>> = deliveries.iter().map(|d| d.last_changed).collect();
    sqlx::query(
        "INSERT INTO importer.ledger AS g (list_id, member_key, fingerprint, last_changed)
         SELECT DISTINCT ON (u.member_key) r.list_id, u.member_key, u.fingerprint, u.last_changed
           FROM importer.runs r
          CROSS JOIN unnest($2::bytea[], $3::bigint[], $4::timestamptz[])
                     WITH ORDINALITY AS u(member_key, fingerprint, last_changed, ord)
          WHERE r.id = $1
          ORDER BY u.member_key, u.last_changed DESC NULLS LAST, u.ord DESC
         ON CONFLICT (list_id, member_key) DO UPDATE
            SET fingerprint = EXCLUDED.fingerprint,
                last_changed = EXCLUDED.last_changed,
                confirmed_at = now()",
    )
    .bind(run_id)
    .bind(&keys)
    .bind(&prints)
    .bind(&changed)
    .execute(executor)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn member_keys_are_those_of_the_sql_function(pool: PgPool) {
        let ids = [
            "0123456789abcdef0123456789abcdef",
            "ffffffffffffffffffffffffffffffff",
            "0123456789ABCDEF0123456789abcdef",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdeg",
            "sixteen-chars-id",
            "short",
            "",
            "é-unicode-ünïcödé",
            "0123456789abcdef0123456789abcdef0",
        ];
        for id in ids {
            let sql: Vec<u8> = sqlx::query_scalar("SELECT importer.ledger_key($1)")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(member_key(id), sql, "{id:?}");
            let back: String = sqlx::query_scalar("SELECT importer.ledger_member_id($1)")
                .bind(member_key(id))
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(back, id);
        }
    }

    fn record(firstname: &str, lastname: &str) -> Record {
        Record {
            id: "0f".repeat(16),
            firstname: firstname.into(),
            lastname: lastname.into(),
            email: "a@example.com".into(),
            status: "subscribed".into(),
        }
    }

    #[test]
    fn a_fingerprint_changes_with_any_mapped_field_and_with_nothing_else() {
        let base = fingerprint(&record("Ann", "Lee"));
        assert_eq!(base, fingerprint(&record("Ann", "Lee")));
        assert_ne!(base, fingerprint(&record("Ann", "Lea")));
        // Length prefixes: moving a character from one field to the next changes it.
        assert_ne!(base, fingerprint(&record("AnnL", "ee")));
        let mut other = record("Ann", "Lee");
        other.status = "unsubscribed".into();
        assert_ne!(base, fingerprint(&other));
    }

    #[test]
    fn a_fingerprint_is_stable_across_versions() {
        // A value written by one version is compared by the next: this must never change.
        assert_eq!(fingerprint(&record("Ann", "Lee")), FINGERPRINT_OF_ANN_LEE);
    }

    const FINGERPRINT_OF_ANN_LEE: i64 = 7_947_719_706_745_075_231;
}
