//! Leasing jobs, what the claim loop and the heartbeat call: claim (exact per-account Mailchimp
//! concurrency), heartbeat, and dead-lettering exhausted leases that expired. A holder's own
//! moves live in the modules named for them (`complete`, `fail`, `progress`, `borrow`,
//! `handoff`, `release`); operators' in `dead` and `inspect`.
//!
//! The claim is the SQL function `importer.claim` (migration `20261203000001_claim_function`),
//! called as one statement in autocommit: one round trip instead of six (BEGIN, settings, three
//! steps, COMMIT), each of which an idle worker's pickup waited on. Its algorithm, exact under READ
//! COMMITTED:
//! 1. dead-letter expired leases that have no attempt left (`importer.reap_expired`);
//! 2. lock the accounts that are unpaused, have claimable jobs and are not visibly at their cap,
//!    least recently served first, but only as many as the limit needs (each offers its free
//!    slots, at most its due jobs), `FOR NO KEY UPDATE SKIP LOCKED`: concurrent claimers take the
//!    next accounts instead of colliding on the same ones (`NO KEY` so inserting jobs, whose
//!    foreign key takes `KEY SHARE`, is not blocked). Candidates are the accounts with waiting jobs,
//!    found by a skip scan over `jobs_waiting` that visits at most `2 * limit + 32` of them from
//!    a random pivot (so a claim costs the same with 10 or 10,000 busy accounts, and every
//!    account is reached over successive claims), plus those with expired leases;
//! 3. a second statement, whose snapshot (a PL/pgSQL function takes one per statement) is taken
//!    after the locks and so sees every earlier claimer's commit, counts each locked account's
//!    live slots and leases (`importer.grant_leases`) at most `max_concurrency - live` jobs per
//!    account (expired leases first, then by `run_after`), interleaving accounts, `FOR UPDATE
//!    SKIP LOCKED` on the job rows.
//!
//! Only a claim holding the account's lock can add a slot, so live slots never exceed the cap.
//! The one other way a slot becomes live again is a heartbeat, which only extends leases that
//! have not expired; a lease that expired less than [`SLOT_GRACE`] ago still counts against the
//! cap, which closes the race of a heartbeat in flight while its lease expires.

use std::time::Duration;

use sqlx::{PgExecutor, PgPool};

use super::{fence_arrays, micros, ClaimedJob, Fence, QueueError};

/// How long an expired lease with a slot keeps counting against its account's cap.
pub(crate) const SLOT_GRACE: Duration = Duration::from_secs(2);

/// Most exhausted expired leases dead-lettered per [`reap_expired`] call.
const REAP_BATCH: i64 = 1000;

/// Leases up to `limit` jobs to `worker_id` for `lease`, each holding a Mailchimp slot.
///
/// Claimable jobs are waiting jobs whose `run_after` has passed and jobs whose lease expired
/// with attempts left; paused accounts are skipped and no account exceeds its
/// `max_concurrency` live slots. Attempts are counted here. Returns fewer jobs (possibly none)
/// when nothing more is claimable or other claimers hold the accounts at this instant; poll
/// again later or on [`NOTIFY_CHANNEL`](super::NOTIFY_CHANNEL). Errors are database failures.
pub async fn claim(
    pool: &PgPool,
    worker_id: &str,
    limit: usize,
    lease: Duration,
) -> Result<Vec<ClaimedJob>, QueueError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    // One statement in autocommit (READ COMMITTED: `importer.claim` relies on a new snapshot
    // between locking accounts and counting their slots), so a pickup waits on one round trip.
    let jobs = sqlx::query_as("SELECT * FROM importer.claim($1, $2, $3, $4)")
        .bind(worker_id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(micros(lease))
        .bind(micros(SLOT_GRACE))
        .fetch_all(pool)
        .await?;
    Ok(jobs)
}

/// Dead-letters (reason `lease_expired`) jobs whose lease expired on their last attempt; returns
/// how many (`importer.reap_expired`). [`claim`] does it too; a maintenance task may call it.
/// Errors are database failures.
pub async fn reap_expired<'e, E: PgExecutor<'e>>(executor: E) -> Result<u64, QueueError> {
    let reaped: i64 = sqlx::query_scalar("SELECT importer.reap_expired($1)")
        .bind(REAP_BATCH)
        .fetch_one(executor)
        .await?;
    Ok(u64::try_from(reaped).unwrap_or_default())
}

/// Extends the leases of `fences` to now + `lease`, in one statement; returns the fences still
/// held. A fence is missing from the result when its job was completed, taken over, cancelled,
/// or its lease already expired (an expired lease is never revived: the holder must stop).
/// Errors are database failures.
pub async fn heartbeat(
    pool: &PgPool,
    fences: &[Fence],
    lease: Duration,
) -> Result<Vec<Fence>, QueueError> {
    if fences.is_empty() {
        return Ok(Vec::new());
    }
    let (ids, tokens) = fence_arrays(fences);
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "WITH held AS MATERIALIZED (
             SELECT j.id
               FROM unnest($1::bigint[], $2::bigint[]) AS f(id, token)
               JOIN importer.jobs j ON j.id = f.id AND j.lease_token = f.token
              WHERE j.locked_until > now()
              ORDER BY j.id
                FOR NO KEY UPDATE OF j
         )
         UPDATE importer.jobs j
            SET locked_until = now() + $3 * interval '1 microsecond', leased_at = now()
          WHERE j.id = ANY(ARRAY(SELECT id FROM held))
         RETURNING j.id, j.lease_token",
    )
    .bind(&ids)
    .bind(&tokens)
    .bind(micros(lease))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(job_id, token)| Fence { job_id, token })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Regression: claims ran with JIT, which compiled the claim statement for ~1 s per claim
    /// once its estimated cost passed `jit_above_cost` (a large jobs table after a VACUUM). The
    /// claim's transaction turns JIT off; a trigger on the claimed rows reads the setting there.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_claim_runs_without_jit(pool: PgPool) {
        sqlx::raw_sql(
            "CREATE TABLE test_jit (jit text);
             CREATE FUNCTION test_jit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN INSERT INTO test_jit VALUES (current_setting('jit')); RETURN NEW; END $$;
             CREATE TRIGGER test_jit AFTER UPDATE ON importer.jobs FOR EACH ROW
              EXECUTE FUNCTION test_jit();
             INSERT INTO importer.accounts (name, mailchimp_key, mailchimp_key_hint, destination_url,
                                            destination_key, destination_key_hint)
             VALUES ('acme', '\\x00', '-', 'https://x.example', '\\x00', '-');
             INSERT INTO importer.jobs (kind, account_id) VALUES ('noop', 1);",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("SET jit = on").execute(&pool).await.unwrap();
        let jobs = claim(&pool, "w", 1, Duration::from_secs(60)).await.unwrap();
        assert_eq!(jobs.len(), 1);
        let seen: Vec<String> = sqlx::query_scalar("SELECT jit FROM test_jit")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(seen, vec!["off"]);
    }

    /// A claim's commit does not wait for its WAL flush: `importer.claim` turns
    /// `synchronous_commit` off for the caller's transaction (a local setting, so it outlives
    /// the function until that transaction's commit), and for nothing after it.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_claim_commits_without_waiting_for_its_flush(pool: PgPool) {
        let mut conn = pool.acquire().await.unwrap();
        sqlx::query("SET synchronous_commit = on")
            .execute(&mut *conn)
            .await
            .unwrap();
        let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
        let jobs: Vec<ClaimedJob> =
            sqlx::query_as("SELECT * FROM importer.claim('w', 1, 60000000, 2000000)")
                .fetch_all(&mut *tx)
                .await
                .unwrap();
        assert!(jobs.is_empty());
        let inside: String = sqlx::query_scalar("SELECT current_setting('synchronous_commit')")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let after: String = sqlx::query_scalar("SELECT current_setting('synchronous_commit')")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!((inside.as_str(), after.as_str()), ("off", "on"));
    }

    /// Regression: the due-jobs count of each candidate account was one OR over waiting and
    /// expired jobs, which PostgreSQL ran as a sequential scan of `jobs` per account (2x slower
    /// claims at 50,000 jobs, and linear in the table's size). Each part now has its index: a
    /// whole claim, every statement of `importer.claim` included, scans `jobs` by index only.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_claim_reads_jobs_through_indexes_only(pool: PgPool) {
        sqlx::raw_sql(
            "INSERT INTO importer.accounts (name, mailchimp_key, mailchimp_key_hint, destination_url,
                                            destination_key, destination_key_hint, max_concurrency)
             SELECT 'a' || g, '\\x00', '.', 'http://x', '\\x00', '.', 1000 FROM generate_series(1, 20) g;
             INSERT INTO importer.jobs (kind, args, account_id, max_attempts)
             SELECT 'noop', '{}', 1 + g % 20, 5 FROM generate_series(1, 50000) g;
             ANALYZE importer.jobs;",
        )
        .execute(&pool)
        .await
        .unwrap();
        // The counters of this transaction alone (pg_stat_xact_*), nested statements included.
        let mut tx = pool.begin().await.unwrap();
        for _ in 0..7 {
            // past PostgreSQL's five custom plans, so a cached generic plan is checked too
            let jobs: Vec<ClaimedJob> =
                sqlx::query_as("SELECT * FROM importer.claim('w', 50, 60000000, 2000000)")
                    .fetch_all(&mut *tx)
                    .await
                    .unwrap();
            assert_eq!(jobs.len(), 50);
        }
        let (seq, idx): (i64, i64) = sqlx::query_as(
            "SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables
              WHERE relid = 'importer.jobs'::regclass",
        )
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        assert_eq!(seq, 0, "sequential scans of jobs during claims");
        assert!(
            idx > 0,
            "no index scan counted: the check would not see a scan"
        );
    }
}
