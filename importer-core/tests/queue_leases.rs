//! Leases: expiry, takeover, fencing of the old holder, heartbeats, and attempts counted at
//! claim time so a job that never finishes still ends in the dead-letter store.
#![allow(clippy::unwrap_used)]

mod queue_support;

use std::time::Duration;

use importer_core::queue::{
    self, Completion, DeadReason, Fence, NewJob, RetryOutcome, RetryPolicy, SnoozeOutcome,
};
use importer_core::runs::{self, RunStatus};
use queue_support::{account_with_list, claim_one, expire, jobs_count, planned_run, LEASE};
use sqlx::PgPool;

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn expired_lease_is_claimed_again_and_the_old_holder_is_fenced(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let run = planned_run(&pool, list, 1).await;

    let first = claim_one(&pool, "worker-a").await;
    assert_eq!(first.attempt, 1);
    assert!(queue::claim(&pool, "worker-b", 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    expire(&pool, &[first.id]).await;

    let second = claim_one(&pool, "worker-b").await;
    assert_eq!(second.id, first.id);
    assert_eq!(second.attempt, 2);
    let old = first.fence();

    // Every state change by the old holder is refused, and changes nothing.
    assert!(queue::heartbeat(&pool, &[old], LEASE)
        .await
        .unwrap()
        .is_empty());
    assert!(!queue::release_slot(&pool, old).await.unwrap());
    assert!(queue::complete(&pool, old, Completion::default())
        .await
        .unwrap()
        .is_fenced());
    assert!(queue::complete_many(&pool, &[(old, 5)])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        queue::retry(&pool, &first, "late failure", None)
            .await
            .unwrap(),
        RetryOutcome::Fenced
    );
    assert!(!queue::dead_letter(&pool, old, "late permanent failure")
        .await
        .unwrap());
    assert_eq!(
        queue::snooze(&pool, &first, &RetryPolicy::default(), "late 429", None)
            .await
            .unwrap(),
        SnoozeOutcome::Fenced
    );
    assert_eq!(queue::release(&pool, &[old]).await.unwrap(), 0);
    let (locked_by, attempts): (String, i32) =
        sqlx::query_as("SELECT locked_by, attempts FROM importer.jobs WHERE id = $1")
            .bind(first.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((locked_by.as_str(), attempts), ("worker-b", 2));

    // The takeover is recorded in the job's history.
    let kinds: Vec<String> = sqlx::query_scalar(
        "SELECT e->>'kind' FROM importer.jobs, jsonb_array_elements(errors) e WHERE id = $1",
    )
    .bind(first.id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(kinds, vec!["lease_expired"]);

    // The new holder completes normally.
    let outcome = queue::complete(&pool, second.fence(), Completion::default())
        .await
        .unwrap();
    assert!(!outcome.is_fenced());
    let run = runs::get(&pool, run).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.jobs_done, 2);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn job_never_finished_ends_dead_after_max_attempts_with_lease_expired(pool: PgPool) {
    let (account, list) = account_with_list(&pool, "acme", 10).await;
    let run = runs::create(
        &pool,
        list,
        runs::RunRequest {
            mode: runs::RequestedMode::Auto,
        },
    )
    .await
    .unwrap();
    let mut job = queue_support::window(account, run.id, 0);
    job.max_attempts = 3;
    let id = queue::enqueue(&pool, &job).await.unwrap();
    // Finish the plan so only the window job is left.
    let plan = claim_one(&pool, "planner").await;
    queue::complete(&pool, plan.fence(), Completion::default())
        .await
        .unwrap();

    for attempt in 1..=3 {
        let claimed = claim_one(&pool, &format!("doomed-{attempt}")).await;
        assert_eq!((claimed.id, claimed.attempt), (id, attempt));
        assert_eq!(claimed.is_last_attempt(), attempt == 3);
        expire(&pool, &[id]).await; // the worker dies
    }
    assert!(queue::claim(&pool, "next", 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(jobs_count(&pool).await, 0);

    let dead = queue::get_dead(&pool, id).await.unwrap().unwrap();
    assert_eq!(dead.reason, DeadReason::LeaseExpired);
    assert_eq!((dead.attempts, dead.max_attempts), (3, 3));
    let history: Vec<(i32, String)> = serde_json::from_value::<Vec<serde_json::Value>>(dead.errors)
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["attempt"].as_i64().unwrap() as i32,
                e["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        history,
        vec![
            (1, "lease_expired".to_owned()),
            (2, "lease_expired".to_owned()),
            (3, "lease_expired".to_owned())
        ]
    );
    let run = runs::get(&pool, run.id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!((run.jobs_dead, run.jobs_pending, run.jobs_done), (1, 0, 1));
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn heartbeat_extends_live_leases_but_never_revives_an_expired_one(pool: PgPool) {
    let account = queue_support::account(&pool, "acme", 10).await;
    let kind = queue::JobKind::ImportWindow;
    for n in 0..2 {
        queue::enqueue(
            &pool,
            &NewJob::new(kind, serde_json::json!({ "n": n }), account),
        )
        .await
        .unwrap();
    }
    let jobs = queue::claim(&pool, "w", 2, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(jobs.len(), 2);
    let (live, stale) = (jobs[0].clone(), jobs[1].clone());
    expire(&pool, &[stale.id]).await;
    let bogus = Fence {
        job_id: live.id,
        token: live.lease_token + 1_000,
    };

    let held = queue::heartbeat(&pool, &[live.fence(), stale.fence(), bogus], LEASE)
        .await
        .unwrap();
    assert_eq!(held, vec![live.fence()]);
    let until: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT locked_until FROM importer.jobs WHERE id = $1")
            .bind(live.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(until > live.locked_until + chrono::Duration::seconds(200));
    let stale_until: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT locked_until FROM importer.jobs WHERE id = $1")
            .bind(stale.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(stale_until < chrono::Utc::now());
}

/// Regression (issue 9, defect 5): snooze and release hand the attempt back, so the next claim
/// had the same `(id, attempt)` fence as the stale holder, whose `complete` then deleted the
/// new holder's job. Lease tokens never repeat.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_fence_is_never_issued_twice_for_a_job(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let run = planned_run(&pool, list, 1).await;
    let first = claim_one(&pool, "worker-a").await;
    // The first holder's lease expires mid-job; B takes over and snoozes (attempt handed back);
    // C then claims at the same attempt number as A had.
    expire(&pool, &[first.id]).await;
    let second = claim_one(&pool, "worker-b").await;
    let policy = RetryPolicy {
        snooze: importer_core::backoff::Backoff {
            base: Duration::ZERO,
            ..importer_core::backoff::Backoff::snooze()
        },
        ..RetryPolicy::default()
    };
    let snoozed = queue::snooze(&pool, &second, &policy, "429", None)
        .await
        .unwrap();
    assert!(matches!(snoozed, SnoozeOutcome::Snoozed { .. }));
    let third = claim_one(&pool, "worker-c").await;
    assert_eq!(third.attempt, second.attempt, "the attempt number repeats");
    assert_ne!(third.fence(), second.fence(), "the fence does not");

    // The stale holders' moves all miss; the live one completes.
    for stale in [&first, &second] {
        assert!(queue::complete(&pool, stale.fence(), Completion::default())
            .await
            .unwrap()
            .is_fenced());
        assert!(queue::release(&pool, &[stale.fence()]).await.unwrap() == 0);
    }
    assert_eq!(
        jobs_count(&pool).await,
        1,
        "the live holder's job is still there"
    );
    assert!(
        !queue::complete(&pool, third.fence(), Completion::default())
            .await
            .unwrap()
            .is_fenced()
    );
    let done = runs::get(&pool, run).await.unwrap().unwrap();
    assert_eq!(done.status, RunStatus::Completed);
}
