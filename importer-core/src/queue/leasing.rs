//! Leasing jobs, what the claim loop and the heartbeat call: claim (exact per-account Mailchimp
//! concurrency), heartbeat, and dead-lettering exhausted leases that expired. A holder's own
//! moves live in the modules named for them (`complete`, `fail`, `progress`, `borrow`,
//! `handoff`, `release`); operators' in `dead` and `inspect`.
//!
//! Claim algorithm (exact under READ COMMITTED, one transaction):
//! 1. dead-letter expired leases that have no attempt left ([`reap_expired`]);
//! 2. lock the accounts that are unpaused, have claimable jobs and are not visibly at their cap,
//!    least recently served first, but only as many as the limit needs (each offers its free
//!    slots, at most its due jobs), `FOR NO KEY UPDATE SKIP LOCKED`: concurrent claimers take the
//!    next accounts instead of colliding on the same ones (`NO KEY` so inserting jobs, whose
//!    foreign key takes `KEY SHARE`, is not blocked). Candidates are the accounts with waiting jobs,
//!    found by a skip scan over `jobs_waiting` that visits at most `2 * limit + 32` of them from
//!    a random pivot (so a claim costs the same with 10 or 10,000 busy accounts, and every
//!    account is reached over successive claims), plus those with expired leases;
//! 3. a second statement, whose snapshot is taken after the locks and so sees every earlier
//!    claimer's commit, counts each locked account's live slots and leases at most
//!    `max_concurrency - live` jobs per account (expired leases first, then by `run_after`),
//!    interleaving accounts, `FOR UPDATE SKIP LOCKED` on the job rows.
//!
//! Only a claim holding the account's lock can add a slot, so live slots never exceed the cap.
//! The one other way a slot becomes live again is a heartbeat, which only extends leases that
//! have not expired; a lease that expired less than [`SLOT_GRACE`] ago still counts against the
//! cap, which closes the race of a heartbeat in flight while its lease expires.

use std::sync::LazyLock;
use std::time::Duration;

use sqlx::{PgExecutor, PgPool};

use super::{fence_arrays, micros, ClaimedJob, Fence, QueueError, GRANT_LEASE, LEASED_COLUMNS};

/// Step 3 of the claim: lease jobs of the locked accounts `$1`, at most `$2` in all, to `$3` for
/// `$4` microseconds (`$5` slot grace); formatted once, so its text (the prepared statement's
/// key) never changes.
static CLAIM_JOBS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH acc AS MATERIALIZED (
             SELECT a.id, u.ord,
                    a.max_concurrency
                    - (SELECT coalesce(sum(1 + s.extra_slots), 0) FROM importer.jobs s
                        WHERE s.account_id = a.id AND s.holds_slot
                          AND s.locked_until > now() - $5 * interval '1 microsecond')::int AS free
               FROM unnest($1::bigint[]) WITH ORDINALITY AS u(id, ord)
               JOIN importer.accounts a ON a.id = u.id
         ),
         candidates AS (
             SELECT c.id, acc.ord, acc.free,
                    row_number() OVER (PARTITION BY acc.id ORDER BY c.prio, c.at, c.id) AS rn
               FROM acc
              CROSS JOIN LATERAL (
                    (SELECT j.id, 0 AS prio, j.locked_until AS at
                       FROM importer.jobs j
                      WHERE j.account_id = acc.id AND j.locked_until <= now()
                        AND j.attempts < j.max_attempts
                      ORDER BY j.locked_until
                      LIMIT least(greatest(acc.free, 0), $2))
                    UNION ALL
                    (SELECT j.id, 1 AS prio, j.run_after AS at
                       FROM importer.jobs j
                      WHERE j.account_id = acc.id AND j.locked_until IS NULL
                        AND j.run_after <= now()
                      ORDER BY j.run_after, j.id
                      LIMIT least(greatest(acc.free, 0), $2))
              ) c
              WHERE acc.free > 0
         ),
         picked AS (
             -- round robin over the accounts, in the order they were locked
             SELECT id FROM candidates WHERE rn <= free ORDER BY rn, ord LIMIT $2
         ),
         claimed AS (
             UPDATE importer.jobs j
                SET {GRANT_LEASE},
                    last_error = CASE WHEN j.locked_until IS NULL THEN j.last_error
                                      ELSE 'lease expired before the job finished' END,
                    errors = CASE WHEN j.locked_until IS NULL THEN j.errors
                                  ELSE importer.push_error(j.errors, jsonb_build_object(
                                           'attempt', j.attempts, 'at', now(),
                                           'error', format('lease expired before the job finished (held by %s)', j.locked_by),
                                           'kind', 'lease_expired')) END,
                    errors_total = j.errors_total
                                   + CASE WHEN j.locked_until IS NULL THEN 0 ELSE 1 END
               FROM (SELECT l.id FROM importer.jobs l
                      WHERE l.id = ANY(ARRAY(SELECT id FROM picked))
                        -- re-checked on the newest row version if it changed meanwhile
                        AND ((l.locked_until IS NULL AND l.run_after <= now())
                             OR (l.locked_until <= now() AND l.attempts < l.max_attempts))
                        FOR UPDATE SKIP LOCKED) lk
              WHERE j.id = lk.id
             RETURNING {LEASED_COLUMNS}
         ),
         served AS (
             UPDATE importer.accounts a SET last_claimed_at = now() WHERE a.id = ANY($1)
         )
         SELECT * FROM claimed ORDER BY id"
    )
});

/// How long an expired lease with a slot keeps counting against its account's cap.
pub(crate) const SLOT_GRACE: Duration = Duration::from_secs(2);

/// Step 2 of the claim: lock the accounts this claim may serve (`$1` limit, `$2` slot grace in
/// microseconds, `$3` accounts visited by the skip scan).
const CLAIM_ACCOUNTS: &str = "WITH RECURSIVE pivot AS MATERIALIZED (
             SELECT floor(random() * (coalesce((SELECT max(id) FROM importer.accounts), 0) + 1))::bigint AS id
         ),
         -- distinct accounts with waiting jobs, a skip scan over jobs_waiting (one index probe
         -- each): at most $3 of them, from a random pivot upwards ...
         upper_part(account_id, n) AS (
             (SELECT j.account_id, 1 FROM importer.jobs j
               WHERE j.locked_until IS NULL AND j.account_id >= (SELECT id FROM pivot)
               ORDER BY j.account_id LIMIT 1)
             UNION ALL
             SELECT (SELECT j.account_id FROM importer.jobs j
                      WHERE j.locked_until IS NULL AND j.account_id > w.account_id
                      ORDER BY j.account_id LIMIT 1),
                    w.n + 1
               FROM upper_part w
              WHERE w.account_id IS NOT NULL AND w.n < $3
         ),
         -- ... then wrapping around below the pivot
         lower_part(account_id, n) AS (
             (SELECT j.account_id, 1 FROM importer.jobs j
               WHERE j.locked_until IS NULL AND j.account_id < (SELECT id FROM pivot)
               ORDER BY j.account_id LIMIT 1)
             UNION ALL
             SELECT (SELECT j.account_id FROM importer.jobs j
                      WHERE j.locked_until IS NULL AND j.account_id > w.account_id
                        AND j.account_id < (SELECT id FROM pivot)
                      ORDER BY j.account_id LIMIT 1),
                    w.n + 1
               FROM lower_part w
              WHERE w.account_id IS NOT NULL
                AND w.n < $3 - (SELECT count(account_id) FROM upper_part)
         ),
         waiting AS (
             SELECT account_id FROM upper_part UNION ALL SELECT account_id FROM lower_part
         ),
         candidates AS MATERIALIZED (
             SELECT w.account_id FROM waiting w
              WHERE w.account_id IS NOT NULL
                -- the account's earliest waiting job is due (an index probe on jobs_waiting)
                AND (SELECT j.run_after FROM importer.jobs j
                      WHERE j.account_id = w.account_id AND j.locked_until IS NULL
                      ORDER BY j.run_after LIMIT 1) <= now()
             UNION
             SELECT j.account_id FROM importer.jobs j
              WHERE j.locked_until <= now() AND j.attempts < j.max_attempts
         ),
         -- what each candidate could give this claim: its free slots, at most its due jobs
         offers AS MATERIALIZED (
             SELECT a.id, a.last_claimed_at,
                    least(a.max_concurrency
                          - (SELECT coalesce(sum(1 + s.extra_slots), 0) FROM importer.jobs s
                              WHERE s.account_id = c.account_id AND s.holds_slot
                                AND s.locked_until > now() - $2 * interval '1 microsecond'),
                          -- due jobs, counted in two index ranges (jobs_waiting, jobs_leased),
                          -- each in its index's order so that the planner walks the index: one
                          -- OR over both, or no order, ran as a sequential scan per account
                          (SELECT count(*) FROM (
                               SELECT 1 FROM importer.jobs j
                                WHERE j.account_id = c.account_id
                                  AND j.locked_until IS NULL AND j.run_after <= now()
                                ORDER BY j.run_after, j.id
                                LIMIT $1) d)
                          + (SELECT count(*) FROM (
                               SELECT 1 FROM importer.jobs j
                                WHERE j.account_id = c.account_id
                                  AND j.locked_until <= now() AND j.attempts < j.max_attempts
                                ORDER BY j.locked_until
                                LIMIT $1) e)) AS offer
               FROM candidates c
               JOIN importer.accounts a ON a.id = c.account_id
              WHERE NOT a.paused
         ),
         -- least recently served first, only as many accounts as the limit needs: concurrent
         -- claimers then lock different accounts instead of one claimer locking them all
         needed AS (
             SELECT id FROM (
                 SELECT id, offer,
                        sum(offer) OVER (ORDER BY last_claimed_at NULLS FIRST, id) AS running
                   FROM offers WHERE offer > 0) o
              WHERE running - offer < $1
         )
         -- lock that many, skipping accounts another claimer holds right now (LIMIT applies
         -- after SKIP LOCKED), so concurrent claimers take the next accounts instead of none
         SELECT a.id
           FROM importer.accounts a
           JOIN offers o ON o.id = a.id AND o.offer > 0
          ORDER BY a.last_claimed_at NULLS FIRST, a.id
          LIMIT (SELECT count(*) FROM needed)
            FOR NO KEY UPDATE OF a SKIP LOCKED";

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
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut tx = pool.begin().await?;
    // A claim need not wait for its WAL flush: if PostgreSQL itself crashes before the flush, the
    // claim is simply lost and the job is waiting again (delivery is at least once anyway), while
    // an idle worker picks a new job up one disk flush sooner. Completions stay synchronous.
    // No JIT: the claim's estimated cost passes jit_above_cost once the planner sees a large
    // jobs table (after a VACUUM updated its statistics), and compiling it took ~1 s per claim
    // for a statement that runs in milliseconds (queue_bloat: 100 jobs/s instead of thousands).
    sqlx::query(
        "SELECT set_config('synchronous_commit', 'off', true), set_config('jit', 'off', true)",
    )
    .execute(&mut *tx)
    .await?;
    reap_expired(&mut *tx).await?;

    // Candidates come from the jobs (a skip scan over jobs_waiting, and expired leases), not
    // from a scan of all accounts: the work is proportional to the accounts that have jobs.
    let accounts: Vec<i64> = sqlx::query_scalar(CLAIM_ACCOUNTS)
        .bind(limit)
        .bind(micros(SLOT_GRACE))
        .bind(limit.saturating_mul(2).saturating_add(32).min(4096))
        .fetch_all(&mut *tx)
        .await?;
    if accounts.is_empty() {
        tx.commit().await?;
        return Ok(Vec::new());
    }

    let jobs: Vec<ClaimedJob> = sqlx::query_as(CLAIM_JOBS.as_str())
        .bind(&accounts)
        .bind(limit)
        .bind(worker_id)
        .bind(micros(lease))
        .bind(micros(SLOT_GRACE))
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(jobs)
}

/// Dead-letters (reason `lease_expired`) jobs whose lease expired on their last attempt; returns
/// how many. [`claim`] calls it; a maintenance task may too. Errors are database failures.
pub async fn reap_expired<'e, E: PgExecutor<'e>>(executor: E) -> Result<u64, QueueError> {
    let reaped: i64 = sqlx::query_scalar(
        "WITH expired AS (
             SELECT j.id, j.run_id FROM importer.jobs j
              WHERE j.locked_until <= now() AND j.attempts >= j.max_attempts
              LIMIT $1
         ),
         run_locks AS MATERIALIZED (
             -- runs before jobs, in id order, like every other path that counts on runs
             SELECT r.id FROM importer.runs r
              WHERE r.id = ANY(ARRAY(SELECT run_id FROM expired WHERE run_id IS NOT NULL))
              ORDER BY r.id
                FOR NO KEY UPDATE
         ),
         victims AS (
             SELECT j.id FROM importer.jobs j
              WHERE j.id = ANY(ARRAY(SELECT id FROM expired))
                AND j.locked_until <= now() AND j.attempts >= j.max_attempts
                AND (SELECT count(*) FROM run_locks) >= 0
                FOR UPDATE SKIP LOCKED
         ),
         gone AS (
             DELETE FROM importer.jobs j WHERE j.id = ANY(ARRAY(SELECT id FROM victims))
             RETURNING j.*
         ),
         buried AS (
             INSERT INTO importer.dead_jobs
                    (id, kind, args, account_id, run_id, attempts, max_attempts, last_error,
                     errors, errors_total, reason, created_at)
             SELECT g.id, g.kind, g.args, g.account_id, g.run_id, g.attempts, g.max_attempts,
                    'lease expired on the last attempt',
                    importer.push_error(g.errors, jsonb_build_object(
                        'attempt', g.attempts, 'at', now(),
                        'error', format('lease expired on the last attempt (held by %s)', g.locked_by),
                        'kind', 'lease_expired')),
                    g.errors_total + 1, 'lease_expired', g.created_at
               FROM gone g
         ),
         counted AS (
             UPDATE importer.runs r
                SET jobs_pending = r.jobs_pending - c.n,
                    jobs_dead = r.jobs_dead + c.n
               FROM (SELECT run_id, count(*)::int AS n FROM gone
                      WHERE run_id IS NOT NULL GROUP BY run_id) c
              WHERE r.id = c.run_id
         )
         SELECT count(*) FROM gone",
    )
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

    /// Regression: the due-jobs count of each candidate account was one OR over waiting and
    /// expired jobs, which PostgreSQL ran as a sequential scan of `jobs` per account (2x slower
    /// claims at 50,000 jobs, and linear in the table's size). Each part now has its index.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn the_account_step_of_a_claim_reads_jobs_through_indexes_only(pool: PgPool) {
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
        let plan: serde_json::Value =
            sqlx::query_scalar(&format!("EXPLAIN (FORMAT JSON) {CLAIM_ACCOUNTS}"))
                .bind(50_i64)
                .bind(micros(SLOT_GRACE))
                .bind(132_i64)
                .fetch_one(&pool)
                .await
                .unwrap();
        let text = plan.to_string();
        assert!(text.contains("jobs_waiting"), "{text}");
        let mut scans = Vec::new();
        collect_seq_scans(&plan, &mut scans);
        assert!(
            !scans.contains(&"jobs".to_owned()),
            "sequential scan of jobs: {text}"
        );
    }

    fn collect_seq_scans(node: &serde_json::Value, out: &mut Vec<String>) {
        match node {
            serde_json::Value::Object(map) => {
                if map.get("Node Type").and_then(|t| t.as_str()) == Some("Seq Scan") {
                    if let Some(rel) = map.get("Relation Name").and_then(|r| r.as_str()) {
                        out.push(rel.to_owned());
                    }
                }
                map.values().for_each(|v| collect_seq_scans(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect_seq_scans(v, out)),
            _ => {}
        }
    }
}
