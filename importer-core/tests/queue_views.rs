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
            "ledger_members",
            "list_audits",
            "lists_behind_schedule",
            "queue_depth",
            "run_progress",
            "workers"
        ]
    );
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn the_workers_view_shows_each_workers_jobs_and_its_last_beat(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    planned_run(&pool, list, 3).await;
    let held = claim_one(&pool, "worker-1").await;
    let lapsed = claim_one(&pool, "worker-2").await;
    expire(&pool, &[lapsed.id]).await;
    sqlx::query("UPDATE importer.jobs SET leased_at = now() - interval '50 seconds' WHERE id = $1")
        .bind(held.id)
        .execute(&pool)
        .await
        .unwrap();
    // A heartbeat moves the last beat to now.
    let before = queue::workers(&pool).await.unwrap();
    let w1 = before.iter().find(|w| w.worker == "worker-1").unwrap();
    assert!(w1.since_last_beat_secs.unwrap() >= 50.0, "{w1:?}");
    queue::heartbeat(&pool, &[held.fence()], std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let rows: Vec<(String, i64, i64, i64, bool)> = queue::workers(&pool)
        .await
        .unwrap()
        .into_iter()
        .map(|w| {
            let recent = w.since_last_beat_secs.unwrap() < 5.0;
            (w.worker, w.jobs, w.slots, w.expired, recent)
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("worker-1".to_owned(), 1, 1, 0, true),
            ("worker-2".to_owned(), 0, 0, 1, true),
        ]
    );
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn state_counts_stop_at_their_cap_and_name_the_oldest_waiting_job(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    planned_run(&pool, list, 7).await;
    sqlx::query("UPDATE importer.jobs SET created_at = now() - interval '1 hour'")
        .execute(&pool)
        .await
        .unwrap();
    claim_one(&pool, "worker-1").await;
    let counts = queue::state_counts(&pool, 5).await.unwrap();
    let states: Vec<(JobState, i64, bool)> = counts
        .states
        .iter()
        .map(|s| (s.state, s.jobs, s.capped))
        .collect();
    assert_eq!(
        states,
        vec![
            (JobState::Waiting, 5, true),
            (JobState::Scheduled, 0, false),
            (JobState::Running, 1, false),
            (JobState::Expired, 0, false),
        ]
    );
    let oldest = counts.oldest_waiting_secs.unwrap();
    assert!((3590.0..3700.0).contains(&oldest), "{oldest}");
    let exact = queue::state_counts(&pool, 100).await.unwrap();
    assert_eq!((exact.states[0].jobs, exact.states[0].capped), (6, false));
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn records_per_minute_add_up_what_runs_import(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let run = planned_run(&pool, list, 2).await;
    let mut one_backend = pool.acquire().await.unwrap();
    for n in [300_i64, 200] {
        sqlx::query(
            "UPDATE importer.runs SET records_imported = records_imported + $2 WHERE id = $1",
        )
        .bind(run)
        .bind(n)
        .execute(&mut *one_backend)
        .await
        .unwrap();
    }
    drop(one_backend);
    // A change that imports nothing adds nothing.
    sqlx::query("UPDATE importer.runs SET records_rejected = 4 WHERE id = $1")
        .bind(run)
        .execute(&pool)
        .await
        .unwrap();
    let minutes = importer_core::throughput::per_minute(&pool, 3)
        .await
        .unwrap();
    assert_eq!(minutes.len(), 3);
    let records: Vec<i64> = minutes.iter().map(|m| m.records).collect();
    assert_eq!(records.iter().sum::<i64>(), 500, "{records:?}");
    assert_eq!(*records.last().unwrap(), 500, "the current minute is last");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM importer.records_per_minute")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 1, "one row per minute and backend");
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn the_queue_table_is_vacuumed_by_dead_tuple_count_at_full_speed(pool: PgPool) {
    let options: Vec<String> = sqlx::query_scalar(
        "SELECT unnest(reloptions) FROM pg_class WHERE oid = 'importer.jobs'::regclass ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for expected in [
        "autovacuum_vacuum_cost_delay=0",
        "autovacuum_vacuum_scale_factor=0",
        "autovacuum_vacuum_threshold=10000",
    ] {
        assert!(
            options.iter().any(|o| o == expected),
            "{expected} not in {options:?}"
        );
    }
}
