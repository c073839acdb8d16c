//! Operator-facing run operations: create (mode from the cursor, one active run per list),
//! list, cancel (jobs leave the queue, holders are fenced), rejected records.
#![allow(clippy::unwrap_used)]

mod queue_support;

use chrono::{Duration, DurationRound, Utc};
use importer_core::lists;
use importer_core::queue::{self, Completion, RejectedRecord};
use importer_core::runs::{
    self, RequestedMode, RunError, RunFilter, RunMode, RunRequest, RunStatus, Trigger,
};
use queue_support::{account_with_list, claim_one, jobs_count, planned_run};
use sqlx::PgPool;

fn request(mode: RequestedMode) -> RunRequest {
    RunRequest { mode }
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn second_active_run_is_refused_naming_the_active_run(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let first = runs::create(&pool, list, request(RequestedMode::Auto))
        .await
        .unwrap();
    let error = runs::create(&pool, list, request(RequestedMode::Full))
        .await
        .unwrap_err();
    assert!(
        matches!(error, RunError::AlreadyActive { run_id, list_id } if run_id == first.id && list_id == list),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains(&format!("active run {}", first.id)),
        "{error}"
    );
    assert_eq!(
        jobs_count(&pool).await,
        1,
        "the refused run left no job behind"
    );

    // Once the first run is over, a new one is accepted.
    runs::cancel(&pool, first.id).await.unwrap();
    runs::create(&pool, list, request(RequestedMode::Auto))
        .await
        .unwrap();
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn create_picks_full_or_incremental_from_the_cursor(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let before = Utc::now().duration_trunc(Duration::seconds(1)).unwrap();

    let full = runs::create(&pool, list, request(RequestedMode::Auto))
        .await
        .unwrap();
    assert_eq!(
        (full.mode, full.since, full.trigger),
        (RunMode::Full, None, Trigger::Admin)
    );
    assert_eq!(
        (full.jobs_total, full.jobs_pending, full.status),
        (1, 1, RunStatus::Planning)
    );
    // The window ends at the database clock minus the default sync lag.
    let lag = Duration::seconds(60);
    assert!(
        full.until >= before - lag && full.until <= Utc::now() - lag,
        "{}",
        full.until
    );
    assert_eq!(
        full.until.timestamp_subsec_nanos(),
        0,
        "until is whole seconds"
    );
    let plan: serde_json::Value = sqlx::query_scalar(
        "SELECT args FROM importer.jobs WHERE run_id = $1 AND kind = 'plan_run'",
    )
    .bind(full.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(plan, serde_json::json!({ "run_id": full.id }));
    runs::cancel(&pool, full.id).await.unwrap();

    let cursor = before - Duration::hours(2);
    lists::reset_cursor(&pool, list, Some(cursor))
        .await
        .unwrap();
    let incremental = runs::create(&pool, list, request(RequestedMode::Auto))
        .await
        .unwrap();
    assert_eq!(
        (incremental.mode, incremental.since),
        (RunMode::Incremental, Some(cursor))
    );
    runs::cancel(&pool, incremental.id).await.unwrap();

    let forced = runs::create(&pool, list, request(RequestedMode::Full))
        .await
        .unwrap();
    assert_eq!((forced.mode, forced.since), (RunMode::Full, None));
    runs::cancel(&pool, forced.id).await.unwrap();

    let since = before - Duration::minutes(30) + Duration::milliseconds(250);
    let manual = runs::create(&pool, list, request(RequestedMode::Since(since)))
        .await
        .unwrap();
    assert_eq!(manual.mode, RunMode::Incremental);
    assert_eq!(
        manual.since,
        Some(since.duration_trunc(Duration::seconds(1)).unwrap())
    );
    runs::cancel(&pool, manual.id).await.unwrap();

    let future = Utc::now() + Duration::hours(1);
    assert!(matches!(
        runs::create(&pool, list, request(RequestedMode::Since(future))).await,
        Err(RunError::SinceInFuture { .. })
    ));
    assert!(matches!(
        runs::create(&pool, list + 100, request(RequestedMode::Auto)).await,
        Err(RunError::ListNotFound(_))
    ));
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn cancel_removes_the_runs_jobs_counts_them_and_fences_holders(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let (_, other_list) = account_with_list(&pool, "other", 10).await;
    let run = planned_run(&pool, list, 3).await;
    let held = claim_one(&pool, "w").await;
    assert_eq!(held.run_id, Some(run));
    let other = runs::create(&pool, other_list, request(RequestedMode::Auto))
        .await
        .unwrap();

    let cancelled = runs::cancel(&pool, run).await.unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    assert_eq!(
        (
            cancelled.jobs_cancelled,
            cancelled.jobs_pending,
            cancelled.jobs_done
        ),
        (3, 0, 1)
    );
    assert!(cancelled.finished_at.is_some());
    assert_eq!(
        jobs_count(&pool).await,
        1,
        "only the other run's plan job is left"
    );

    assert!(queue::complete(&pool, held.fence(), Completion::default())
        .await
        .unwrap()
        .is_fenced());
    assert!(!queue::release_slot(&pool, held.fence()).await.unwrap());
    assert!(matches!(
        runs::cancel(&pool, run).await,
        Err(RunError::NotActive {
            status: RunStatus::Cancelled,
            ..
        })
    ));
    assert!(matches!(
        runs::cancel(&pool, run + 100).await,
        Err(RunError::NotFound(_))
    ));
    assert_eq!(
        runs::get(&pool, other.id).await.unwrap().unwrap().status,
        RunStatus::Planning
    );
    let cursor: Option<chrono::DateTime<Utc>> =
        sqlx::query_scalar("SELECT synced_until FROM importer.lists WHERE id = $1")
            .bind(list)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(cursor, None);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn rejected_records_are_stored_with_their_run(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let run = planned_run(&pool, list, 1).await;
    let job = claim_one(&pool, "w").await;
    let completion = Completion {
        records_imported: 998,
        rejected: vec![
            RejectedRecord {
                member_id: Some("abc".to_owned()),
                email: None,
                code: "missing_email",
                reason: "no email address".to_owned(),
                member: Some(serde_json::json!({ "id": "abc" })),
                excerpt: r#"{"id":"abc"}"#.to_owned(),
            },
            RejectedRecord {
                member_id: None,
                email: Some("x@example.com".to_owned()),
                code: "missing_id",
                reason: "no id".to_owned(),
                member: Some(serde_json::json!({ "email_address": "x@example.com" })),
                excerpt: r#"{"email_address":"x@example.com"}"#.to_owned(),
            },
        ],
        ..Completion::default()
    };
    queue::complete(&pool, job.fence(), completion)
        .await
        .unwrap();
    let done = runs::get(&pool, run).await.unwrap().unwrap();
    assert_eq!((done.records_imported, done.records_rejected), (998, 2));
    let stored: Vec<(i64, i64, String)> =
        sqlx::query_as("SELECT run_id, list_id, reason FROM importer.rejected_records ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        stored,
        vec![
            (run, list, "no email address".to_owned()),
            (run, list, "no id".to_owned())
        ]
    );
}

/// Regression (issue 9, defect 10): reasons were free text, so grouping by reason gave one
/// row per bad value. The README's query groups by the stable code.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn rejections_group_by_their_stable_code_whatever_the_detail(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let run = planned_run(&pool, list, 1).await;
    let job = claim_one(&pool, "w").await;
    let bad_status = |n: usize| RejectedRecord {
        member_id: Some(format!("m{n}")),
        email: Some(format!("m{n}@example.com")),
        code: "invalid_status",
        reason: format!("status \"weird-{n}\" is not a Mailchimp member status"),
        member: None,
        excerpt: format!(r#"{{"id":"m{n}"}}"#),
    };
    let completion = Completion {
        rejected: (0..5).map(bad_status).collect(),
        ..Completion::default()
    };
    queue::complete(&pool, job.fence(), completion)
        .await
        .unwrap();
    // The README's query, verbatim but for the run id.
    let by_code: Vec<(String, i64)> = sqlx::query_as(
        "SELECT code, count(*) FROM importer.rejected_records WHERE run_id = $1 GROUP BY code",
    )
    .bind(run)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(by_code, vec![("invalid_status".to_owned(), 5)]);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn runs_are_listed_newest_first_by_status_account_and_list(pool: PgPool) {
    let (account_a, list_a) = account_with_list(&pool, "a", 10).await;
    let (_, list_b) = account_with_list(&pool, "b", 10).await;
    let old = runs::create(&pool, list_a, request(RequestedMode::Auto))
        .await
        .unwrap();
    runs::cancel(&pool, old.id).await.unwrap();
    let new = runs::create(&pool, list_a, request(RequestedMode::Auto))
        .await
        .unwrap();
    let other = runs::create(&pool, list_b, request(RequestedMode::Auto))
        .await
        .unwrap();

    let ids = |runs: Vec<runs::Run>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let all = runs::list(&pool, &RunFilter::default()).await.unwrap();
    assert_eq!(ids(all), vec![other.id, new.id, old.id]);
    let by_account = RunFilter {
        account_id: Some(account_a),
        ..Default::default()
    };
    assert_eq!(
        ids(runs::list(&pool, &by_account).await.unwrap()),
        vec![new.id, old.id]
    );
    let cancelled = RunFilter {
        status: Some(RunStatus::Cancelled),
        ..Default::default()
    };
    assert_eq!(
        ids(runs::list(&pool, &cancelled).await.unwrap()),
        vec![old.id]
    );
    let by_list = RunFilter {
        list_id: Some(list_b),
        limit: Some(1),
        ..Default::default()
    };
    assert_eq!(
        ids(runs::list(&pool, &by_list).await.unwrap()),
        vec![other.id]
    );
    assert_eq!(
        runs::active_for_list(&pool, list_a)
            .await
            .unwrap()
            .unwrap()
            .id,
        new.id
    );
}
