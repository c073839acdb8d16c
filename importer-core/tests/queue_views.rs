//! The views for people answer the obvious questions, and every table and view is commented.
#![allow(clippy::unwrap_used)]

mod queue_support;

use importer_core::lists;
use importer_core::queue::{self, JobKind, JobState, NewJob};
use queue_support::{account_with_list, claim_one, expire, planned_run};
use sqlx::PgPool;

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn views_answer_the_operator_questions(pool: PgPool) {
    let (acme, acme_list) = account_with_list(&pool, "acme", 10).await;
    let (beta, beta_list) = account_with_list(&pool, "beta", 10).await;
    lists::reset_cursor(&pool, beta_list, Some(chrono::Utc::now()))
        .await
        .unwrap();
    let run = planned_run(&pool, acme_list, 4).await;

    // acme: one running, one expired, one dead, one waiting window.
    let running = claim_one(&pool, "worker-1").await;
    let dying = claim_one(&pool, "worker-1").await;
    queue::dead_letter(&pool, dying.fence(), "mailchimp: 404 list not found")
        .await
        .unwrap();
    let expired = claim_one(&pool, "worker-2").await;
    expire(&pool, &[expired.id]).await;
    // beta: one job scheduled for later.
    let mut later = NewJob::new(JobKind::ImportWindow, serde_json::json!({}), beta);
    later.run_after = Some(chrono::Utc::now() + chrono::Duration::minutes(5));
    queue::enqueue(&pool, &later).await.unwrap();

    let depth: Vec<(String, JobState, i64, i64)> = queue::queue_depth(&pool)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.account, r.state, r.jobs, r.slots))
        .collect();
    assert_eq!(
        depth,
        vec![
            ("acme".to_owned(), JobState::Running, 1, 1),
            ("acme".to_owned(), JobState::Expired, 1, 0),
            ("acme".to_owned(), JobState::Waiting, 1, 0),
            ("beta".to_owned(), JobState::Scheduled, 1, 0),
        ]
    );

    let progress: (String, i32, i32, i32, i32, f64, f64) = sqlx::query_as(
        "SELECT status, jobs_total, jobs_done, jobs_pending, jobs_dead, percent::float8,
                extract(epoch FROM elapsed)::float8
           FROM importer.run_progress WHERE run_id = $1",
    )
    .bind(run)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (
            progress.0.as_str(),
            progress.1,
            progress.2,
            progress.3,
            progress.4,
            progress.5
        ),
        ("running", 5, 1, 3, 1, 20.0)
    );
    assert!(progress.6 >= 0.0);

    type ErrorRow = (Option<String>, i64, i64, i64, Vec<String>);
    let by_error: Vec<ErrorRow> = sqlx::query_as(
        "SELECT error, jobs, runs, accounts, reasons FROM importer.dead_jobs_by_error",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        by_error,
        vec![(
            Some("mailchimp: 404 list not found".to_owned()),
            1,
            1,
            1,
            vec!["permanent".to_owned()]
        )]
    );

    let behind: Vec<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT list_id, active_run_id FROM importer.lists_behind_schedule ORDER BY list_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        behind,
        vec![(acme_list, Some(run))],
        "beta's cursor is fresh"
    );

    let leases: Vec<(String, i64, i64, i64)> = queue::leases(&pool)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.worker, l.jobs, l.live, l.expired))
        .collect();
    assert_eq!(
        leases,
        vec![
            ("worker-1".to_owned(), 1, 1, 0),
            ("worker-2".to_owned(), 1, 0, 1)
        ]
    );
    assert_eq!(running.account_id, acme);

    // Lists that lag two periods behind are reported too.
    sqlx::query(
        "UPDATE importer.lists SET synced_until = now() - interval '3 hours' WHERE id = $1",
    )
    .bind(beta_list)
    .execute(&pool)
    .await
    .unwrap();
    let lag: Vec<(i64, f64)> = sqlx::query_as(
        "SELECT list_id, extract(epoch FROM lag)::float8 FROM importer.lists_behind_schedule
          WHERE list_id = $1",
    )
    .bind(beta_list)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(lag.len(), 1);
    assert!((lag[0].1 - 3.0 * 3600.0).abs() < 60.0);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn every_table_view_and_function_of_the_schema_is_commented(pool: PgPool) {
    let uncommented: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'importer' AND c.relkind IN ('r', 'v')
            AND obj_description(c.oid, 'pg_class') IS NULL
         UNION ALL
         SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = 'importer' AND obj_description(p.oid, 'pg_proc') IS NULL",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(uncommented.is_empty(), "uncommented: {uncommented:?}");
    let views: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.views
          WHERE table_schema = 'importer' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        views,
        vec![
            "dead_jobs_by_error",
            "leases",
            "lists_behind_schedule",
            "queue_depth",
            "run_progress"
        ]
    );
}
