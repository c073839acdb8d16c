//! A holder's unhappy endings: retry (backoff, Retry-After, exhaustion), snooze, dead-letter,
//! release on shutdown; each with its effect on attempts, history and the run.
#![allow(clippy::unwrap_used)]

mod queue_support;

use std::time::Duration;

use chrono::Utc;
use importer_core::backoff::{Backoff, Jitter};
use importer_core::queue::{
    self, DeadReason, JobKind, NewJob, RetryOutcome, RetryPolicy, SnoozeOutcome,
};
use importer_core::runs::{self, RunStatus};
use queue_support::{account, account_with_list, claim_one, planned_run, LEASE};
use sqlx::PgPool;

async fn one_job(pool: &PgPool, max_attempts: i32) -> i64 {
    let account = account(pool, "acme", 10).await;
    let mut job = NewJob::new(JobKind::ImportWindow, serde_json::json!({}), account);
    job.max_attempts = max_attempts;
    queue::enqueue(pool, &job).await.unwrap()
}

/// Snoozes without waiting: the job is claimable again at once.
fn now() -> RetryPolicy {
    RetryPolicy {
        snooze: Backoff {
            base: Duration::ZERO,
            ..Backoff::snooze()
        },
        ..RetryPolicy::default()
    }
}

async fn attempts_and_run_after(pool: &PgPool, id: i64) -> (i32, chrono::DateTime<Utc>) {
    sqlx::query_as("SELECT attempts, run_after FROM importer.jobs WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn error_kinds(pool: &PgPool, id: i64) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT e->>'kind' FROM importer.jobs, jsonb_array_elements(errors) e WHERE id = $1",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn snooze_does_not_spend_an_attempt(pool: PgPool) {
    let id = one_job(&pool, 2).await;
    // Snoozing twice on a two-attempt budget, and the job can still fail twice after that.
    for _ in 0..2 {
        let job = claim_one(&pool, "w").await;
        assert_eq!(job.attempt, 1);
        assert!(matches!(
            queue::snooze(&pool, &job, &now(), "429: too many requests", None)
                .await
                .unwrap(),
            SnoozeOutcome::Snoozed { .. }
        ));
        assert_eq!(attempts_and_run_after(&pool, id).await.0, 0);
    }
    assert_eq!(error_kinds(&pool, id).await, vec!["snooze", "snooze"]);

    let job = claim_one(&pool, "w").await;
    assert_eq!(job.attempt, 1);
    let outcome = queue::retry(&pool, &job, "boom", Some(Duration::ZERO))
        .await
        .unwrap();
    assert!(matches!(outcome, RetryOutcome::Retried { .. }));
    let job = claim_one(&pool, "w").await;
    assert_eq!(job.attempt, 2);

    // A snooze with a delay hides the job until then, and frees its slot.
    assert!(matches!(
        queue::snooze(&pool, &job, &now(), "429", Some(Duration::from_secs(60)))
            .await
            .unwrap(),
        SnoozeOutcome::Snoozed { .. }
    ));
    let (attempts, run_after) = attempts_and_run_after(&pool, id).await;
    assert_eq!(attempts, 1);
    assert!(run_after > Utc::now() + chrono::Duration::seconds(50));
    assert!(queue::claim(&pool, "w", 10, LEASE)
        .await
        .unwrap()
        .is_empty());
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn retry_honours_retry_after(pool: PgPool) {
    let id = one_job(&pool, 5).await;
    let job = claim_one(&pool, "w").await;
    let before = Utc::now();
    let outcome = queue::retry(&pool, &job, "429", Some(Duration::from_secs(120)))
        .await
        .unwrap();
    let RetryOutcome::Retried { run_after } = outcome else {
        panic!("expected a retry, got {outcome:?}");
    };
    let delay = (run_after - before).num_seconds();
    assert!(
        (118..=122).contains(&delay),
        "Retry-After 120 s gave {delay} s"
    );
    assert_eq!(attempts_and_run_after(&pool, id).await, (1, run_after));
    assert!(queue::claim(&pool, "w", 10, LEASE)
        .await
        .unwrap()
        .is_empty());

    // An absurd Retry-After is capped at an hour.
    sqlx::query("UPDATE importer.jobs SET run_after = now() WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    let job = claim_one(&pool, "w").await;
    let outcome = queue::retry(&pool, &job, "429", Some(Duration::from_secs(86_400 * 30)))
        .await
        .unwrap();
    let RetryOutcome::Retried { run_after } = outcome else {
        panic!("expected a retry, got {outcome:?}");
    };
    assert!(run_after < Utc::now() + chrono::Duration::seconds(3601));
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn retry_backs_off_and_dead_letters_on_the_last_attempt(pool: PgPool) {
    let id = one_job(&pool, 3).await;
    let backoff = Backoff {
        base: Duration::from_secs(10),
        factor: 3.0,
        max: Duration::from_secs(60),
        jitter: Jitter::None,
    };
    let mut delays = Vec::new();
    for attempt in 1..=2 {
        let job = claim_one(&pool, "w").await;
        assert_eq!(job.attempt, attempt);
        let before = Utc::now();
        let outcome = queue::retry_with(
            &pool,
            &job,
            &RetryPolicy {
                retry: backoff,
                ..RetryPolicy::default()
            },
            &format!("HTTP 503 #{attempt}"),
            None,
        )
        .await
        .unwrap();
        let RetryOutcome::Retried { run_after } = outcome else {
            panic!("expected a retry, got {outcome:?}");
        };
        delays.push((run_after - before).num_seconds());
        sqlx::query("UPDATE importer.jobs SET run_after = now() WHERE id = $1")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    }
    assert!(
        (9..=11).contains(&delays[0]) && (29..=31).contains(&delays[1]),
        "{delays:?}"
    );

    let job = claim_one(&pool, "w").await;
    assert!(job.is_last_attempt());
    let outcome = queue::retry(&pool, &job, "HTTP 503 #3", None)
        .await
        .unwrap();
    assert_eq!(outcome, RetryOutcome::DeadLettered);
    let dead = queue::get_dead(&pool, id).await.unwrap().unwrap();
    assert_eq!(dead.reason, DeadReason::Exhausted);
    assert_eq!(dead.last_error.as_deref(), Some("HTTP 503 #3"));
    let history: Vec<serde_json::Value> = serde_json::from_value(dead.errors).unwrap();
    let summary: Vec<(i64, &str, &str)> = history
        .iter()
        .map(|e| {
            assert!(e["at"].is_string());
            (
                e["attempt"].as_i64().unwrap(),
                e["error"].as_str().unwrap(),
                e["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, "HTTP 503 #1", "retry"),
            (2, "HTTP 503 #2", "retry"),
            (3, "HTTP 503 #3", "exhausted")
        ]
    );
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn dead_letter_moves_the_job_and_fails_its_run(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let run = planned_run(&pool, list, 2).await;
    let first = claim_one(&pool, "w").await;
    assert!(
        queue::dead_letter(&pool, first.fence(), "401 API Key Invalid")
            .await
            .unwrap()
    );
    let dead = queue::get_dead(&pool, first.id).await.unwrap().unwrap();
    assert_eq!((dead.reason, dead.attempts), (DeadReason::Permanent, 1));
    assert_eq!(dead.run_id, Some(run));

    let still_running = runs::get(&pool, run).await.unwrap().unwrap();
    assert_eq!(still_running.status, RunStatus::Running);
    assert_eq!(
        (still_running.jobs_dead, still_running.jobs_pending),
        (1, 1)
    );

    let second = claim_one(&pool, "w").await;
    queue::complete(&pool, second.fence(), Default::default())
        .await
        .unwrap();
    let failed = runs::get(&pool, run).await.unwrap().unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    assert!(failed.finished_at.is_some());
    assert!(failed.error.unwrap().contains("1 of 3 jobs dead"));
    let cursor: Option<chrono::DateTime<Utc>> =
        sqlx::query_scalar("SELECT synced_until FROM importer.lists WHERE id = $1")
            .bind(list)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(cursor, None, "a failed run leaves the cursor");
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn release_hands_jobs_back_without_spending_attempts(pool: PgPool) {
    let account = account(&pool, "acme", 10).await;
    let jobs: Vec<NewJob> = (0..3)
        .map(|k| {
            NewJob::new(
                JobKind::ImportWindow,
                serde_json::json!({ "k": k }),
                account,
            )
        })
        .collect();
    queue::enqueue_many(&pool, &jobs).await.unwrap();
    let held = queue::claim(&pool, "stopping", 3, LEASE).await.unwrap();
    let fences: Vec<_> = held.iter().map(|j| j.fence()).collect();
    assert_eq!(queue::release(&pool, &fences).await.unwrap(), 3);
    let again = queue::claim(&pool, "other", 3, LEASE).await.unwrap();
    assert_eq!(again.len(), 3);
    assert!(again.iter().all(|j| j.attempt == 1));
}

/// Regression (issue 9, defect 1): every snooze waited the first delay, any Retry-After was
/// honoured, a job could snooze forever, and each snooze grew its history without bound.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn snoozes_back_off_are_capped_and_end_in_a_retry(pool: PgPool) {
    let id = one_job(&pool, 3).await;
    let policy = RetryPolicy {
        snooze: Backoff {
            jitter: Jitter::None,
            ..Backoff::snooze()
        },
        max_retry_after: Duration::from_secs(300),
        max_snoozes: 25,
        ..RetryPolicy::default()
    };
    let mut delays = Vec::new();
    for n in 0..25 {
        let job = claim_one(&pool, "w").await;
        assert_eq!(job.snoozes, n, "the claim carries the snooze count");
        let before = Utc::now();
        let retry_after = (n == 24).then(|| Duration::from_secs(365 * 86_400));
        let outcome = queue::snooze(&pool, &job, &policy, "429", retry_after)
            .await
            .unwrap();
        let SnoozeOutcome::Snoozed { run_after } = outcome else {
            panic!("snooze {n}: {outcome:?}");
        };
        delays.push((run_after - before).num_seconds());
        sqlx::query("UPDATE importer.jobs SET run_after = now() WHERE id = $1")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    }
    assert_eq!(
        &delays[..6],
        &[1, 2, 4, 8, 16, 30],
        "the backoff grows by snooze count"
    );
    assert!(delays[6..24].iter().all(|d| *d == 30), "{delays:?}");
    assert!(
        (299..=301).contains(&delays[24]),
        "a year of Retry-After is cut to 300 s"
    );
    assert_eq!(
        attempts_and_run_after(&pool, id).await.0,
        0,
        "no attempt spent"
    );

    // The 26th is a retry: it spends an attempt, and the snooze series starts again.
    let job = claim_one(&pool, "w").await;
    let outcome = queue::snooze(&pool, &job, &policy, "429", None)
        .await
        .unwrap();
    assert!(
        matches!(
            outcome,
            SnoozeOutcome::Retried(RetryOutcome::Retried { .. })
        ),
        "{outcome:?}"
    );
    let (snoozes, errors_total, kept, last_error): (i32, i32, i32, String) = sqlx::query_as(
        "SELECT snoozes, errors_total, jsonb_array_length(errors), last_error FROM importer.jobs WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (snoozes, errors_total, kept),
        (0, 26, 20),
        "history bounded, all counted"
    );
    assert!(last_error.contains("25 snoozes in a row"), "{last_error}");
    assert_eq!(attempts_and_run_after(&pool, id).await.0, 1);
}

/// A job snoozing for longer than the age limit retries too, whatever its count.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_snooze_older_than_the_age_limit_spends_an_attempt(pool: PgPool) {
    let id = one_job(&pool, 3).await;
    let policy = RetryPolicy {
        max_snooze_age: Duration::from_secs(600),
        ..now()
    };
    let job = claim_one(&pool, "w").await;
    let outcome = queue::snooze(&pool, &job, &policy, "429", None)
        .await
        .unwrap();
    assert!(matches!(outcome, SnoozeOutcome::Snoozed { .. }));
    sqlx::query(
        "UPDATE importer.jobs SET first_snoozed_at = now() - interval '11 minutes' WHERE id = $1",
    )
    .bind(id)
    .execute(&pool)
    .await
    .unwrap();
    let job = claim_one(&pool, "w").await;
    let outcome = queue::snooze(&pool, &job, &policy, "429", None)
        .await
        .unwrap();
    assert!(
        matches!(
            outcome,
            SnoozeOutcome::Retried(RetryOutcome::Retried { .. })
        ),
        "{outcome:?}"
    );
    assert_eq!(attempts_and_run_after(&pool, id).await.0, 1);
}

/// A checkpoint is progress: it gives the attempts back, so faults and kills spread over a long
/// range's life do not exhaust it, while a job that never progresses still dies.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_checkpoint_gives_the_attempts_back(pool: PgPool) {
    let id = one_job(&pool, 3).await;
    let fast = RetryPolicy {
        retry: Backoff {
            base: Duration::ZERO,
            ..Backoff::default()
        },
        ..RetryPolicy::default()
    };
    for _ in 0..2 {
        let job = claim_one(&pool, "w").await;
        queue::retry_with(&pool, &job, &fast, "HTTP 503", None)
            .await
            .unwrap();
    }
    let job = claim_one(&pool, "w").await;
    assert!(job.is_last_attempt());
    let checkpoint = queue::Checkpoint {
        args: serde_json::json!({ "progress": 1 }),
        ..queue::Checkpoint::default()
    };
    let outcome = queue::checkpoint(&pool, job.fence(), &checkpoint)
        .await
        .unwrap();
    assert!(matches!(outcome, queue::CheckpointOutcome::Recorded { .. }));
    assert_eq!(attempts_and_run_after(&pool, id).await.0, 1);
    // Not the last attempt any more: it retries, and dies only after two more claims in a row
    // without progress.
    let outcome = queue::retry_with(&pool, &job, &fast, "HTTP 503", None)
        .await
        .unwrap();
    assert!(
        matches!(outcome, RetryOutcome::Retried { .. }),
        "{outcome:?}"
    );
    let job = claim_one(&pool, "w").await;
    assert_eq!(job.attempt, 2);
    queue::retry_with(&pool, &job, &fast, "HTTP 503", None)
        .await
        .unwrap();
    let job = claim_one(&pool, "w").await;
    let outcome = queue::retry_with(&pool, &job, &fast, "HTTP 503", None)
        .await
        .unwrap();
    assert_eq!(outcome, RetryOutcome::DeadLettered);
}
