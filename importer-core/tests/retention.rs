//! Retention: rows past their age go in bounded batches; a list's newest completed run stays;
//! ages can be read and changed, within the schema's minimums.
#![allow(clippy::unwrap_used)]

mod queue_support;

use std::time::Duration;

use importer_core::retention::{self, RetentionUpdate};
use queue_support::account_with_list;
use sqlx::PgPool;

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM importer.{table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn rows_past_their_age_are_pruned_in_batches_and_each_lists_newest_completed_run_stays(
    pool: PgPool,
) {
    let (account, list) = account_with_list(&pool, "acme", 10).await;
    // 5 completed and 3 failed runs over 100 days old, 2 recent completed runs; old dead jobs,
    // rejected records, audit rows and throughput minutes, and one of each that is recent.
    sqlx::query(
        "INSERT INTO importer.runs (list_id, account_id, mode, until, status, trigger, created_at,
                                    finished_at)
         SELECT $1, $2, 'full', now(), s, 'admin', now() - d, now() - d
           FROM (VALUES ('completed', interval '105 days'), ('completed', interval '104 days'),
                        ('completed', interval '103 days'), ('completed', interval '102 days'),
                        ('completed', interval '101 days'), ('failed', interval '100 days'),
                        ('failed', interval '100 days'), ('failed', interval '100 days'),
                        ('completed', interval '1 day'), ('completed', interval '2 hours')) v(s, d)",
    )
    .bind(list)
    .bind(account)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::raw_sql(&format!(
        "INSERT INTO importer.dead_jobs (id, kind, args, account_id, run_id, attempts, max_attempts,
                                         reason, created_at, died_at)
         SELECT 100 + i, 'import_window', '{{}}', {account}, NULL, 5, 5, 'exhausted', now(),
                now() - interval '40 days'
           FROM generate_series(1, 5) i;
         INSERT INTO importer.dead_jobs (id, kind, args, account_id, attempts, max_attempts, reason,
                                         created_at, died_at)
         VALUES (200, 'import_window', '{{}}', {account}, 5, 5, 'exhausted', now(), now());
         INSERT INTO importer.rejected_records (run_id, list_id, reason, code, excerpt, created_at)
         SELECT r.id, r.list_id, 'no email', 'missing_email', '{{}}', now() - interval '40 days'
           FROM importer.runs r WHERE r.status = 'failed';
         INSERT INTO importer.audit_log (at, actor, via, action, outcome)
         SELECT now() - interval '400 days', 'old', 'cli', 'tick', 'ok' FROM generate_series(1, 3);
         INSERT INTO importer.audit_log (actor, via, action, outcome) VALUES ('new', 'cli', 'tick', 'ok');
         INSERT INTO importer.records_per_minute VALUES (now() - interval '3 days', 1, 5), (now(), 1, 5);"
    ))
    .execute(&pool)
    .await
    .unwrap();

    // A batch of 2 deletes at most 2 of each kind.
    let first = retention::prune(&pool, 2).await.unwrap();
    let first: Vec<(&str, i64)> = first.iter().map(|(w, n)| (w.as_str(), *n)).collect();
    assert_eq!(
        first,
        vec![
            ("runs", 2),
            ("dead_jobs", 2),
            ("rejected_records", 2),
            ("audit_log", 2),
            ("records_per_minute", 1)
        ]
    );
    // Until nothing is past its age.
    while retention::prune(&pool, 2)
        .await
        .unwrap()
        .iter()
        .any(|(_, n)| *n > 0)
    {}
    // The list's newest completed runs are recent, so all 8 old runs go; the 2 recent remain.
    assert_eq!(count(&pool, "runs").await, 2);
    assert_eq!(
        count(&pool, "dead_jobs").await,
        1,
        "the one that died today stays"
    );
    assert_eq!(count(&pool, "rejected_records").await, 0);
    assert_eq!(count(&pool, "audit_log").await, 1);
    assert_eq!(count(&pool, "records_per_minute").await, 1);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_lists_only_completed_run_is_kept_however_old(pool: PgPool) {
    let (account, list) = account_with_list(&pool, "acme", 10).await;
    sqlx::query(
        "INSERT INTO importer.runs (list_id, account_id, mode, until, status, trigger, created_at, finished_at)
         VALUES ($1, $2, 'full', now(), 'completed', 'admin', now() - interval '1 year', now() - interval '1 year'),
                ($1, $2, 'full', now(), 'cancelled', 'admin', now() - interval '1 year', now() - interval '1 year')",
    )
    .bind(list)
    .bind(account)
    .execute(&pool)
    .await
    .unwrap();
    while retention::prune(&pool, 100)
        .await
        .unwrap()
        .iter()
        .any(|(_, n)| *n > 0)
    {}
    let left: Vec<String> = sqlx::query_scalar("SELECT status FROM importer.runs")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        left,
        vec!["completed"],
        "the last successful sync stays visible"
    );
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn retention_ages_can_be_read_and_changed_within_their_minimums(pool: PgPool) {
    let defaults = retention::get(&pool).await.unwrap();
    assert_eq!(defaults.keep_runs, Duration::from_secs(90 * 86_400));
    assert_eq!(defaults.keep_audit_log, Duration::from_secs(365 * 86_400));
    let changed = retention::set(
        &pool,
        &RetentionUpdate {
            keep_dead_jobs: Some(Duration::from_secs(7 * 86_400)),
            ..RetentionUpdate::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(changed.keep_dead_jobs, Duration::from_secs(7 * 86_400));
    assert_eq!(changed.keep_runs, defaults.keep_runs, "the others stay");
    let refused = retention::set(
        &pool,
        &RetentionUpdate {
            keep_runs: Some(Duration::from_secs(60)),
            keep_dead_jobs: Some(Duration::from_secs(3600)),
            ..RetentionUpdate::default()
        },
    )
    .await;
    assert!(matches!(
        refused,
        Err(retention::RetentionError::Invalid(_))
    ));
    assert_eq!(
        retention::get(&pool).await.unwrap(),
        changed,
        "nothing changed"
    );
}

/// A weekly audit does not push a list's last sync out of retention, nor do hourly syncs its
/// last audit: each kind keeps its newest completed run (and an audit its result).
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_lists_newest_sync_and_newest_audit_are_both_kept(pool: PgPool) {
    let (account, list) = account_with_list(&pool, "acme", 10).await;
    sqlx::query(
        "INSERT INTO importer.runs (list_id, account_id, mode, until, status, trigger, created_at, finished_at)
         VALUES ($1, $2, 'full', now(), 'completed', 'admin', now() - interval '200 days', now() - interval '200 days'),
                ($1, $2, 'audit', now(), 'completed', 'admin', now() - interval '180 days', now() - interval '180 days'),
                ($1, $2, 'audit', now(), 'completed', 'admin', now() - interval '150 days', now() - interval '150 days'),
                ($1, $2, 'full', now(), 'completed', 'admin', now() - interval '120 days', now() - interval '120 days')",
    )
    .bind(list)
    .bind(account)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO importer.audit_results
                (run_id, list_id, members_seen, missing, stale, healed, deferred, rejected,
                 deleted, deleted_new, mailchimp_requests, mailchimp_bytes)
         SELECT id, list_id, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 FROM importer.runs WHERE mode = 'audit'",
    )
    .execute(&pool)
    .await
    .unwrap();
    while retention::prune(&pool, 100)
        .await
        .unwrap()
        .iter()
        .any(|(_, n)| *n > 0)
    {}
    let left: Vec<(String, i32)> = sqlx::query_as(
        "SELECT mode, extract(day FROM now() - finished_at)::int FROM importer.runs ORDER BY finished_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        left,
        vec![("audit".to_owned(), 150), ("full".to_owned(), 120)]
    );
    assert_eq!(count(&pool, "audit_results").await, 1);
}
