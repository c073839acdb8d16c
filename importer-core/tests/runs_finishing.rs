//! The finishing rule: the completion that brings a run's pending jobs to zero finishes it
//! exactly once, moves the cursor only forwards, and only when nothing died.
#![allow(clippy::unwrap_used)]

mod queue_support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use importer_core::queue::{self, CompleteOutcome, Completion};
use importer_core::runs::{self, RunStatus};
use importer_core::{settings, tick};
use queue_support::{
    account_with_list, admin_run, claim_one, planned_run, pools, record_run_transitions,
    transitions, window, LEASE,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::Barrier;

async fn cursor(pool: &PgPool, list: i64) -> Option<DateTime<Utc>> {
    sqlx::query_scalar("SELECT synced_until FROM importer.lists WHERE id = $1")
        .bind(list)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn last_two_jobs_completed_concurrently_finish_the_run_exactly_once(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let workers = pools(&connect, 3).await;
    let setup = workers[2].clone();
    record_run_transitions(&setup).await;
    for round in 0..10 {
        let (_, list) = account_with_list(&setup, &format!("acct{round}"), 10).await;
        let run = planned_run(&setup, list, 2).await;
        let jobs = queue::claim(&setup, "w", 2, LEASE).await.unwrap();
        assert_eq!(jobs.len(), 2);

        let barrier = Arc::new(Barrier::new(2));
        let single = {
            let (pool, barrier, fence) = (workers[0].clone(), barrier.clone(), jobs[0].fence());
            tokio::spawn(async move {
                barrier.wait().await;
                let completion = Completion {
                    records_imported: 7,
                    ..Completion::default()
                };
                queue::complete(&pool, fence, completion).await.unwrap()
            })
        };
        let batched = {
            let (pool, barrier, fence) = (workers[1].clone(), barrier.clone(), jobs[1].fence());
            tokio::spawn(async move {
                barrier.wait().await;
                queue::complete_many(&pool, &[(fence, 5)]).await.unwrap()
            })
        };
        let single = single.await.unwrap();
        let batched = batched.await.unwrap();
        assert_eq!(batched.len(), 1);
        assert!(matches!(single, CompleteOutcome::Completed { .. }));

        let done = runs::get(&setup, run).await.unwrap().unwrap();
        assert_eq!(done.status, RunStatus::Completed);
        assert_eq!(
            (done.jobs_done, done.jobs_pending, done.records_imported),
            (3, 0, 12)
        );
        assert!(done.finished_at.is_some());
        assert_eq!(
            transitions(&setup, run).await,
            vec![
                ("planning".to_owned(), "running".to_owned()),
                ("running".to_owned(), "completed".to_owned())
            ],
            "round {round}: the run must finish exactly once"
        );
        assert_eq!(cursor(&setup, list).await, Some(done.until));
    }
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn plan_completion_with_zero_children_completes_the_run_at_once(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let run = admin_run(&pool, list).await;
    let plan = claim_one(&pool, "w").await;
    let completion = Completion {
        members_total: Some(0),
        ..Completion::default()
    };
    let outcome = queue::complete(&pool, plan.fence(), completion)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        CompleteOutcome::Completed {
            run_finished: Some(RunStatus::Completed)
        }
    );
    let done = runs::get(&pool, run.id).await.unwrap().unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(
        (done.jobs_total, done.jobs_done, done.members_total),
        (1, 1, Some(0))
    );
    assert!(done.started_at.is_some() && done.finished_at.is_some());
    assert_eq!(cursor(&pool, list).await, Some(done.until));
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn plan_completion_with_children_marks_the_run_running(pool: PgPool) {
    let (account, list) = account_with_list(&pool, "acme", 10).await;
    let run = admin_run(&pool, list).await;
    assert_eq!(run.status, RunStatus::Planning);
    let plan = claim_one(&pool, "w").await;
    let completion = Completion {
        children: (0..4).map(|k| window(account, run.id, k * 1000)).collect(),
        members_total: Some(3500),
        ..Completion::default()
    };
    let outcome = queue::complete(&pool, plan.fence(), completion)
        .await
        .unwrap();
    assert_eq!(outcome, CompleteOutcome::Completed { run_finished: None });
    let running = runs::get(&pool, run.id).await.unwrap().unwrap();
    assert_eq!(running.status, RunStatus::Running);
    assert_eq!(
        (running.jobs_total, running.jobs_pending, running.jobs_done),
        (5, 4, 1)
    );
    assert_eq!(running.members_total, Some(3500));
    assert!(running.started_at.is_some());
    assert_eq!(cursor(&pool, list).await, None);

    let windows = queue::claim(&pool, "w", 10, LEASE).await.unwrap();
    assert_eq!(windows.len(), 4);
    let items: Vec<_> = windows.iter().map(|j| (j.fence(), 1000)).collect();
    queue::complete_many(&pool, &items[..3]).await.unwrap();
    assert_eq!(
        queue::complete(&pool, windows[3].fence(), Completion::default())
            .await
            .unwrap(),
        CompleteOutcome::Completed {
            run_finished: Some(RunStatus::Completed)
        }
    );
    let done = runs::get(&pool, run.id).await.unwrap().unwrap();
    assert_eq!(
        (done.status, done.records_imported),
        (RunStatus::Completed, 3000)
    );
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn cursor_never_moves_backwards(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap();
    let t1 = t0 + chrono::Duration::hours(1);

    // The older run's window ends an hour ago (a long sync lag); it fails: one window dies.
    settings::set_sync_lag(&pool, Duration::from_secs(3600))
        .await
        .unwrap();
    let older = tick::tick(&pool, Some(t0)).await.unwrap();
    assert_eq!(older.len(), 1);
    let plan = claim_one(&pool, "w").await;
    let child = window(older[0].account_id, older[0].run_id, 0);
    queue::complete(
        &pool,
        plan.fence(),
        Completion {
            children: vec![child],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let job = claim_one(&pool, "w").await;
    queue::dead_letter(&pool, job.fence(), "HTTP 500")
        .await
        .unwrap();
    assert_eq!(
        runs::get(&pool, older[0].run_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        RunStatus::Failed
    );
    assert_eq!(cursor(&pool, list).await, None);

    // The newer run (no lag) covers the same ground and more, and completes.
    settings::set_sync_lag(&pool, Duration::ZERO).await.unwrap();
    let newer = tick::tick(&pool, Some(t1)).await.unwrap();
    assert_eq!(newer.len(), 1);
    let plan = claim_one(&pool, "w").await;
    assert_eq!(plan.run_id, Some(newer[0].run_id));
    queue::complete(&pool, plan.fence(), Completion::default())
        .await
        .unwrap();
    let newer_until = runs::get(&pool, newer[0].run_id)
        .await
        .unwrap()
        .unwrap()
        .until;
    assert_eq!(cursor(&pool, list).await, Some(newer_until));

    // The older run, requeued and completed late, must not pull the cursor back to t0.
    assert_eq!(queue::requeue_run(&pool, older[0].run_id).await.unwrap(), 1);
    let job = claim_one(&pool, "w").await;
    let outcome = queue::complete(&pool, job.fence(), Completion::default())
        .await
        .unwrap();
    assert_eq!(
        outcome,
        CompleteOutcome::Completed {
            run_finished: Some(RunStatus::Completed)
        }
    );
    let older_run = runs::get(&pool, older[0].run_id).await.unwrap().unwrap();
    assert!(older_run.until < newer_until);
    assert_eq!(cursor(&pool, list).await, Some(newer_until));
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn complete_many_completes_the_held_and_skips_the_fenced(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let run = planned_run(&pool, list, 3).await;
    let jobs = queue::claim(&pool, "w", 3, Duration::from_secs(60))
        .await
        .unwrap();
    queue_support::expire(&pool, &[jobs[2].id]).await;
    let taken = claim_one(&pool, "thief").await;
    assert_eq!(taken.id, jobs[2].id);

    let items: Vec<_> = jobs.iter().map(|j| (j.fence(), 10)).collect();
    let completed = queue::complete_many(&pool, &items).await.unwrap();
    let mut ids: Vec<i64> = completed.iter().map(|f| f.job_id).collect();
    ids.sort_unstable();
    let mut expected = vec![jobs[0].id, jobs[1].id];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    let running = runs::get(&pool, run).await.unwrap().unwrap();
    assert_eq!(running.status, RunStatus::Running);
    assert_eq!(
        (
            running.jobs_done,
            running.jobs_pending,
            running.records_imported
        ),
        (3, 1, 20)
    );
}
