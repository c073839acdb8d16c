//! Requeueing dead jobs (by id, by run, by error text) with fresh attempts, reviving failed
//! runs; refusing when that would make two active runs of a list; purging old dead jobs.
#![allow(clippy::unwrap_used)]

mod queue_support;

use chrono::Utc;
use importer_core::queue::{self, Completion, DeadFilter, QueueError};
use importer_core::runs::{self, RunStatus};
use queue_support::{account_with_list, admin_run, claim_one, jobs_count, planned_run};
use sqlx::PgPool;

/// A failed run of `list` whose `windows` import jobs all died with `error`.
async fn failed_run(pool: &PgPool, list: i64, windows: usize, error: &str) -> i64 {
    let run = planned_run(pool, list, windows).await;
    for _ in 0..windows {
        let job = claim_one(pool, "w").await;
        assert!(queue::dead_letter(pool, job.fence(), error).await.unwrap());
    }
    let run_row = runs::get(pool, run).await.unwrap().unwrap();
    assert_eq!(run_row.status, RunStatus::Failed);
    run
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn requeue_brings_a_dead_job_back_with_fresh_attempts_and_its_run_back_to_running(
    pool: PgPool,
) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let run = failed_run(&pool, list, 1, "401 API Key Invalid").await;
    let dead = queue::list_dead(&pool, &DeadFilter::default())
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);

    assert_eq!(queue::requeue_job(&pool, dead[0].id).await.unwrap(), 1);
    let revived = runs::get(&pool, run).await.unwrap().unwrap();
    assert_eq!(revived.status, RunStatus::Running);
    assert_eq!((revived.finished_at, revived.error), (None, None));
    assert_eq!((revived.jobs_dead, revived.jobs_pending), (0, 1));
    assert!(queue::get_dead(&pool, dead[0].id).await.unwrap().is_none());

    let job = claim_one(&pool, "w").await;
    assert_eq!(
        (job.id, job.attempt),
        (dead[0].id, 1),
        "same id, fresh attempts"
    );
    queue::complete(&pool, job.fence(), Completion::default())
        .await
        .unwrap();
    let completed = runs::get(&pool, run).await.unwrap().unwrap();
    assert_eq!(completed.status, RunStatus::Completed);
    let cursor: Option<chrono::DateTime<Utc>> =
        sqlx::query_scalar("SELECT synced_until FROM importer.lists WHERE id = $1")
            .bind(list)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(cursor, Some(completed.until));

    assert!(matches!(
        queue::requeue_job(&pool, dead[0].id).await,
        Err(QueueError::DeadJobNotFound(_))
    ));
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn requeue_by_run_moves_all_its_dead_jobs(pool: PgPool) {
    let (_, list_a) = account_with_list(&pool, "a", 10).await;
    let (_, list_b) = account_with_list(&pool, "b", 10).await;
    let run_a = failed_run(&pool, list_a, 3, "HTTP 500").await;
    let run_b = failed_run(&pool, list_b, 2, "HTTP 500").await;

    assert_eq!(queue::requeue_run(&pool, run_a).await.unwrap(), 3);
    assert_eq!(jobs_count(&pool).await, 3);
    let filter = DeadFilter {
        run_id: Some(run_b),
        ..DeadFilter::default()
    };
    assert_eq!(queue::list_dead(&pool, &filter).await.unwrap().len(), 2);
    assert_eq!(
        runs::get(&pool, run_a).await.unwrap().unwrap().status,
        RunStatus::Running
    );
    assert_eq!(
        runs::get(&pool, run_b).await.unwrap().unwrap().status,
        RunStatus::Failed
    );
    assert_eq!(queue::requeue_run(&pool, run_a).await.unwrap(), 0);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn requeue_by_error_text_moves_only_matching_jobs(pool: PgPool) {
    let (_, list_a) = account_with_list(&pool, "a", 10).await;
    let (_, list_b) = account_with_list(&pool, "b", 10).await;
    failed_run(&pool, list_a, 2, "mailchimp: 401 API Key Invalid").await;
    let run_b = failed_run(&pool, list_b, 1, "destination: HTTP 500").await;

    let filter = DeadFilter {
        error_contains: Some("api key".to_owned()),
        ..DeadFilter::default()
    };
    assert_eq!(queue::list_dead(&pool, &filter).await.unwrap().len(), 2);
    assert_eq!(
        queue::requeue_matching(&pool, "API KEY invalid")
            .await
            .unwrap(),
        2
    );
    assert_eq!(jobs_count(&pool).await, 2);
    let left = queue::list_dead(&pool, &DeadFilter::default())
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].run_id, Some(run_b));
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn requeue_refuses_to_revive_a_run_whose_list_has_another_active_run(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let failed = failed_run(&pool, list, 1, "HTTP 500").await;
    let active = admin_run(&pool, list).await;

    let error = queue::requeue_run(&pool, failed).await.unwrap_err();
    assert!(
        matches!(error, QueueError::ListBusy { run_id, active_run_id, .. }
                 if run_id == failed && active_run_id == active.id),
        "{error:?}"
    );
    assert!(error.to_string().contains(&active.id.to_string()));
    // Nothing moved.
    assert_eq!(
        queue::list_dead(&pool, &DeadFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        runs::get(&pool, failed).await.unwrap().unwrap().status,
        RunStatus::Failed
    );
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn dead_jobs_of_a_cancelled_run_are_not_requeued(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let run = planned_run(&pool, list, 2).await;
    let job = claim_one(&pool, "w").await;
    queue::dead_letter(&pool, job.fence(), "HTTP 404")
        .await
        .unwrap();
    runs::cancel(&pool, run).await.unwrap();

    assert!(matches!(
        queue::requeue_run(&pool, run).await,
        Err(QueueError::RunCancelled { run_id }) if run_id == run
    ));
    assert_eq!(queue::requeue_matching(&pool, "404").await.unwrap(), 0);
    assert_eq!(jobs_count(&pool).await, 0);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn purge_dead_deletes_only_old_dead_jobs(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    failed_run(&pool, list, 2, "HTTP 500").await;
    sqlx::query(
        "UPDATE importer.dead_jobs SET died_at = now() - interval '40 days'
          WHERE id = (SELECT min(id) FROM importer.dead_jobs)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let cutoff = Utc::now() - chrono::Duration::days(30);
    assert_eq!(queue::purge_dead(&pool, cutoff).await.unwrap(), 1);
    assert_eq!(
        queue::list_dead(&pool, &DeadFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Regression: a failed run revived after its list's cursor was reset covered its whole window
/// when it completed, including what the reset meant to re-read, so the next run silently
/// skipped it. Its dead jobs stay dead: by run it is refused, by filter they are skipped.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_failed_run_planned_before_a_cursor_reset_is_not_revived(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let failed = failed_run(&pool, list, 2, "HTTP 500").await;
    importer_core::lists::reset_cursor(&pool, list, None)
        .await
        .unwrap();

    let error = queue::requeue_run(&pool, failed).await.unwrap_err();
    assert!(
        matches!(error, QueueError::RunBeforeReset { run_id, list_id } if run_id == failed && list_id == list),
        "{error:?}"
    );
    assert_eq!(
        queue::requeue_matching(&pool, "HTTP 500").await.unwrap(),
        0,
        "skipped"
    );
    assert_eq!(
        queue::list_dead(&pool, &DeadFilter::default())
            .await
            .unwrap()
            .len(),
        2,
        "nothing moved"
    );
    assert_eq!(
        runs::get(&pool, failed).await.unwrap().unwrap().status,
        RunStatus::Failed
    );

    // A run planned after the reset is revived as before.
    let later = failed_run(&pool, list, 1, "HTTP 502").await;
    assert_eq!(queue::requeue_run(&pool, later).await.unwrap(), 1);
}
