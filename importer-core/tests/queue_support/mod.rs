//! Fixtures shared by the queue, runs, tick and accounts integration tests: accounts, lists,
//! runs with window jobs, SQL probes.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use importer_core::accounts::{self, NewAccount};
use importer_core::lists::{self, NewList};
use importer_core::queue::{self, ClaimedJob, Completion, JobKind, NewJob};
use importer_core::runs::{self, RequestedMode, RunRequest};
use importer_core::secrets::{Secret, SecretBox};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// A lease long enough never to expire during a test.
pub const LEASE: Duration = Duration::from_secs(300);

/// An account with made-up keys, sealed under a throw-away encryption key.
pub async fn account(pool: &PgPool, name: &str, max_concurrency: i32) -> i64 {
    #[allow(clippy::unwrap_used)]
    let secrets = SecretBox::from_hex(&SecretBox::generate_key_hex()).unwrap();
    accounts::create(
        pool,
        &secrets,
        &NewAccount {
            name: name.to_owned(),
            mailchimp_key: Secret::new("0123456789abcdef0123456789abcdef-us6"),
            mailchimp_base_url: Some("http://127.0.0.1:1/3.0".to_owned()),
            destination_url: "http://127.0.0.1:1".to_owned(),
            destination_key: Secret::new("destination-key-0000cafe"),
            max_concurrency,
        },
    )
    .await
    .unwrap()
    .id
}

/// An enabled hourly list of `account_id`.
pub async fn list(pool: &PgPool, account_id: i64, mailchimp_list_id: &str) -> i64 {
    lists::add(
        pool,
        &NewList {
            account_id,
            mailchimp_list_id: mailchimp_list_id.to_owned(),
            name: Some(format!("list {mailchimp_list_id}")),
            schedule: Duration::from_secs(3600),
            enabled: true,
        },
    )
    .await
    .unwrap()
    .id
}

/// An account with one list; returns (account, list).
pub async fn account_with_list(pool: &PgPool, name: &str, max_concurrency: i32) -> (i64, i64) {
    let account = account(pool, name, max_concurrency).await;
    let list = list(pool, account, &format!("{name}list")).await;
    (account, list)
}

/// An `import_window` job of `run_id`.
pub fn window(account_id: i64, run_id: i64, offset: i64) -> NewJob {
    NewJob::new(
        JobKind::ImportWindow,
        serde_json::json!({ "offset": offset }),
        account_id,
    )
    .in_run(run_id)
}

/// Creates an admin run of `list_id` (incremental from the cursor, or full without one).
pub async fn admin_run(pool: &PgPool, list_id: i64) -> runs::Run {
    runs::create(
        pool,
        list_id,
        RunRequest {
            mode: RequestedMode::Auto,
        },
    )
    .await
    .unwrap()
}

/// Creates an admin run of `list_id`, claims its plan job (it must be the only claimable job)
/// and completes it with `windows` import_window children; returns the run id.
pub async fn planned_run(pool: &PgPool, list_id: i64, windows: usize) -> i64 {
    let run = admin_run(pool, list_id).await;
    let plan = claim_one(pool, "planner").await;
    assert_eq!(plan.kind, JobKind::PlanRun);
    assert_eq!(plan.run_id, Some(run.id));
    let children = (0..windows)
        .map(|k| window(run.account_id, run.id, k as i64 * 1000))
        .collect();
    let outcome = queue::complete(
        pool,
        plan.fence(),
        Completion {
            children,
            members_total: Some(windows as i64 * 1000),
            ..Completion::default()
        },
    )
    .await
    .unwrap();
    assert!(!outcome.is_fenced());
    run.id
}

/// Claims exactly one job.
pub async fn claim_one(pool: &PgPool, worker: &str) -> ClaimedJob {
    let mut jobs = queue::claim(pool, worker, 1, LEASE).await.unwrap();
    assert_eq!(jobs.len(), 1, "expected one claimable job");
    jobs.pop().unwrap()
}

/// Pools of one connection each, on the test database.
pub async fn pools(connect: &PgConnectOptions, n: usize) -> Vec<PgPool> {
    let mut pools = Vec::with_capacity(n);
    for _ in 0..n {
        pools.push(
            PgPoolOptions::new()
                .max_connections(1)
                .connect_with(connect.clone())
                .await
                .unwrap(),
        );
    }
    pools
}

/// A pool of `n` connections on the test database.
pub async fn pool(connect: &PgConnectOptions, n: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(n)
        .connect_with(connect.clone())
        .await
        .unwrap()
}

/// Live Mailchimp slots of an account, as the cap counts them (without the grace period).
pub async fn live_slots(pool: &PgPool, account_id: i64) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(1 + extra_slots), 0) FROM importer.jobs
          WHERE account_id = $1 AND holds_slot AND locked_until > now()",
    )
    .bind(account_id)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Makes the leases of `ids` expire a minute ago (as if their worker died).
pub async fn expire(pool: &PgPool, ids: &[i64]) {
    sqlx::query(
        "UPDATE importer.jobs SET locked_until = now() - interval '1 minute' WHERE id = ANY($1)",
    )
    .bind(ids)
    .execute(pool)
    .await
    .unwrap();
}

/// Rows in `importer.jobs`.
pub async fn jobs_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM importer.jobs")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Logs every status change of a run into `test_run_transitions` (a test-only trigger), so a
/// test can assert a run finished exactly once.
pub async fn record_run_transitions(pool: &PgPool) {
    sqlx::raw_sql(
        "CREATE TABLE test_run_transitions (seq bigserial, run_id bigint, old_status text,
                                            new_status text, finished_at timestamptz);
         CREATE FUNCTION test_log_transition() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO test_run_transitions (run_id, old_status, new_status, finished_at)
             VALUES (NEW.id, OLD.status, NEW.status, NEW.finished_at);
             RETURN NULL;
         END $$;
         CREATE TRIGGER test_log_transition AFTER UPDATE ON importer.runs FOR EACH ROW
             WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.finished_at IS DISTINCT FROM NEW.finished_at)
             EXECUTE FUNCTION test_log_transition();",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// The recorded transitions of `run_id`, oldest first.
pub async fn transitions(pool: &PgPool, run_id: i64) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT old_status, new_status FROM test_run_transitions WHERE run_id = $1 ORDER BY seq",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Enqueues `n` waiting `import_window` jobs of `account_id` outside any run; returns their ids.
pub async fn enqueue_jobs(pool: &PgPool, account_id: i64, n: usize) -> Vec<i64> {
    let jobs: Vec<NewJob> = (0..n)
        .map(|k| {
            NewJob::new(
                JobKind::ImportWindow,
                serde_json::json!({ "k": k }),
                account_id,
            )
        })
        .collect();
    queue::enqueue_many(pool, &jobs).await.unwrap()
}
