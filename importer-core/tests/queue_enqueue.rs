//! Enqueueing: set-based inserts counted on their runs, refused for inactive runs, and a
//! NOTIFY that wakes listeners.
#![allow(clippy::unwrap_used)]

mod queue_support;

use std::time::Duration;

use importer_core::queue::{self, JobKind, NewJob, QueueError, NOTIFY_CHANNEL};
use importer_core::runs;
use queue_support::{account_with_list, admin_run, jobs_count, window};
use sqlx::postgres::PgListener;
use sqlx::PgPool;

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn enqueue_many_inserts_in_input_order_and_counts_on_the_run(pool: PgPool) {
    let (account, list) = account_with_list(&pool, "acme", 10).await;
    let run = admin_run(&pool, list).await;
    let jobs: Vec<NewJob> = (0..250)
        .map(|k| window(account, run.id, k * 1000))
        .collect();
    let ids = queue::enqueue_many(&pool, &jobs).await.unwrap();
    assert_eq!(ids.len(), 250);
    let offsets: Vec<i64> = sqlx::query_scalar(
        "SELECT (args->>'offset')::bigint FROM importer.jobs WHERE id = ANY($1) ORDER BY id",
    )
    .bind(&ids)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(offsets, (0..250).map(|k| k * 1000).collect::<Vec<_>>());

    let run = runs::get(&pool, run.id).await.unwrap().unwrap();
    assert_eq!((run.jobs_total, run.jobs_pending), (251, 251));

    // Inside a caller's transaction: rolled back with it.
    let mut tx = pool.begin().await.unwrap();
    queue::enqueue(&mut *tx, &window(account, run.id, 1))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(jobs_count(&pool).await, 251);
    assert_eq!(
        runs::get(&pool, run.id).await.unwrap().unwrap().jobs_total,
        251
    );
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn enqueue_for_an_inactive_run_is_refused_and_changes_nothing(pool: PgPool) {
    let (account, list) = account_with_list(&pool, "acme", 10).await;
    let run = admin_run(&pool, list).await;
    runs::cancel(&pool, run.id).await.unwrap();
    let (_, other_list) = account_with_list(&pool, "other", 10).await;
    let live = admin_run(&pool, other_list).await;

    let jobs = vec![
        window(live.account_id, live.id, 0),
        window(account, run.id, 0),
    ];
    let error = queue::enqueue_many(&pool, &jobs).await.unwrap_err();
    assert!(matches!(error, QueueError::RunNotActive { run_id } if run_id == run.id));
    assert_eq!(jobs_count(&pool).await, 1, "only the live run's plan job");
    assert_eq!(
        runs::get(&pool, live.id).await.unwrap().unwrap().jobs_total,
        1
    );
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn enqueue_notifies_listeners(pool: PgPool) {
    let (account, _) = account_with_list(&pool, "acme", 10).await;
    let mut listener = PgListener::connect_with(&pool).await.unwrap();
    listener.listen(NOTIFY_CHANNEL).await.unwrap();

    let job = NewJob::new(JobKind::ImportWindow, serde_json::json!({}), account);
    queue::enqueue(&pool, &job).await.unwrap();
    let note = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("no notification within 5 s")
        .unwrap();
    assert_eq!(note.channel(), NOTIFY_CHANNEL);
}

#[test]
fn job_kinds_round_trip_through_their_names() {
    for kind in [JobKind::PlanRun, JobKind::ImportWindow] {
        assert_eq!(kind.as_str().parse::<JobKind>().unwrap(), kind);
        assert_eq!(
            serde_json::to_value(kind).unwrap(),
            serde_json::Value::String(kind.as_str().to_owned())
        );
    }
    assert!("plan".parse::<JobKind>().is_err());
}
