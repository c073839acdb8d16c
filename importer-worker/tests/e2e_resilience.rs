//! End to end: crashes, faults, permanent failures, graceful shutdown and the per-account cap.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{assert_completed, sigterm, slow_sim, Harness};
use importer_core::queue;
use importer_core::runs::RunStatus;
use importer_sim::MailchimpFaults;
use sqlx::PgPool;

/// `kill -9` one of 3 workers mid-run: its jobs come back when their leases expire.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_worker_killed_mid_run_loses_nothing(pool: PgPool) {
    let mut h = Harness::start(pool, slow_sim(21, 150)).await;
    h.add_account("crash", &[30_000], 10).await;
    let run = h.start_runs().await.remove(0);
    let env = [
        ("WORKER_CONCURRENCY", "4".to_owned()),
        ("WORKER_LEASE_SECS", "3".to_owned()),
    ];
    let mut victim = h.spawn_process(&env);
    let mut others = vec![h.spawn_process(&env), h.spawn_process(&env)];
    h.wait_records(run.id, 5_000, Duration::from_secs(60)).await;
    let held: i64 =
        sqlx::query_scalar("SELECT count(*) FROM importer.jobs WHERE locked_until IS NOT NULL")
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert!(held > 0, "jobs are in flight when the worker dies");
    victim.kill().unwrap();
    victim.wait().unwrap();

    let finished = h
        .wait_finished(&[run.id], Duration::from_secs(120))
        .await
        .remove(0);
    for w in &mut others {
        w.kill().unwrap();
        w.wait().unwrap();
    }
    assert_completed(&finished);
    h.assert_destination_matches();
}

/// 5% 500/503, bursts of 429 with Retry-After and hangs past the client timeout: runs complete,
/// and 429s (more per job than its attempts) spend no attempt.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn runs_complete_through_faults_and_429s_spend_no_attempts(pool: PgPool) {
    let mut h = Harness::start(pool, slow_sim(22, 5)).await;
    h.add_account("faulty", &[5000, 3000], 10).await;
    let started = h.start_runs().await;
    // Fewer attempts than the 429s each job will see: a 429 that spent one would kill jobs.
    sqlx::query("UPDATE importer.jobs SET max_attempts = 4")
        .execute(&h.pool)
        .await
        .unwrap();
    h.sim.mailchimp().set_faults(MailchimpFaults {
        error_rate: 0.05,
        burst_429: 80,
        retry_after: Some(1),
        hang_rate: 0.03,
        hang: Duration::from_millis(2500),
        ..MailchimpFaults::default()
    });
    let mut config = h.worker_config(10);
    config.mailchimp_timeout_secs = 1;
    let worker = h.spawn_worker(config).await;
    let ids: Vec<i64> = started.iter().map(|r| r.id).collect();
    let finished = h.wait_finished(&ids, Duration::from_secs(180)).await;
    worker.stop().await;
    for run in &finished {
        assert_completed(run);
    }
    let key = &h.accounts[0].api_key;
    assert!(h.sim.mailchimp().key_stats(key).responses_429 >= 80);
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM importer.dead_jobs")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(dead, 0);
    h.assert_destination_matches();
}

/// A revoked key dead-letters the plan, the run fails and the cursor stays; once the key works
/// again, requeueing the run completes it and moves the cursor.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_revoked_key_fails_the_run_until_requeued_after_the_fix(pool: PgPool) {
    let mut h = Harness::start(pool, slow_sim(23, 1)).await;
    h.add_account("revoked", &[2500], 10).await;
    let key = h.accounts[0].api_key.clone();
    let list_id = h.accounts[0].lists[0].id;
    h.sim.mailchimp().revoke_api_key(&key);
    let run = h.start_runs().await.remove(0);
    let worker = h.spawn_worker(h.worker_config(4)).await;

    let failed = h
        .wait_finished(&[run.id], Duration::from_secs(60))
        .await
        .remove(0);
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(failed.jobs_dead, 1);
    assert_eq!(
        h.cursor(list_id).await,
        None,
        "a failed run leaves the cursor"
    );
    let dead = queue::list_dead(&h.pool, &queue::DeadFilter::default())
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("(401)"),
        "{:?}",
        dead[0].last_error
    );

    h.sim.mailchimp().add_api_key(&key);
    assert_eq!(queue::requeue_run(&h.pool, run.id).await.unwrap(), 1);
    let done = h
        .wait_finished(&[run.id], Duration::from_secs(60))
        .await
        .remove(0);
    worker.stop().await;
    assert_completed(&done);
    assert_eq!(h.cursor(list_id).await, Some(done.until));
    h.assert_destination_matches();
}

/// 5 worker processes with concurrency 20 against one account capped at 10.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn five_workers_never_exceed_the_accounts_mailchimp_concurrency(pool: PgPool) {
    let mut h = Harness::start(pool, slow_sim(24, 40)).await;
    h.add_account("capped", &[30_000, 20_000], 10).await;
    let started = h.start_runs().await;
    let mut workers: Vec<_> = (0..5)
        .map(|_| h.spawn_process(&[("WORKER_CONCURRENCY", "20".to_owned())]))
        .collect();
    let ids: Vec<i64> = started.iter().map(|r| r.id).collect();
    let finished = h.wait_finished(&ids, Duration::from_secs(180)).await;
    for w in &mut workers {
        w.kill().unwrap();
        w.wait().unwrap();
    }
    for run in &finished {
        assert_completed(run);
    }
    let stats = h.sim.mailchimp().key_stats(&h.accounts[0].api_key);
    assert!(
        stats.peak_concurrency <= 10,
        "peak {}",
        stats.peak_concurrency
    );
    assert!(
        stats.peak_concurrency >= 5,
        "the cap is used, peak {}",
        stats.peak_concurrency
    );
    assert_eq!(stats.responses_429, 0);
    h.assert_destination_matches();
}

/// SIGTERM mid-run: the worker exits 0 within its grace period, holding no lease; another
/// worker finishes the run and nothing is missing.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn sigterm_mid_run_exits_zero_within_the_grace_period_and_loses_nothing(pool: PgPool) {
    let mut h = Harness::start(pool, slow_sim(25, 200)).await;
    h.add_account("term", &[60_000], 10).await;
    let run = h.start_runs().await.remove(0);
    let mut worker = h.spawn_process(&[
        ("WORKER_CONCURRENCY", "4".to_owned()),
        ("WORKER_SHUTDOWN_GRACE_SECS", "5".to_owned()),
    ]);
    h.wait_records(run.id, 3_000, Duration::from_secs(60)).await;
    let signalled = Instant::now();
    sigterm(&worker);
    let status = loop {
        if let Some(status) = worker.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(8),
            "worker did not exit within its grace period"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status:?}");
    let held: i64 =
        sqlx::query_scalar("SELECT count(*) FROM importer.jobs WHERE locked_until IS NOT NULL")
            .fetch_one(&h.pool)
            .await
            .unwrap();
    let detail: Vec<(i64, Option<String>, i32, bool)> = sqlx::query_as(
        "SELECT id, locked_by, attempts, holds_slot FROM importer.jobs WHERE locked_until IS NOT NULL",
    )
    .fetch_all(&h.pool)
    .await
    .unwrap();
    assert_eq!(held, 0, "a stopped worker holds no lease: {detail:?}");
    let during = importer_core::runs::get(&h.pool, run.id)
        .await
        .unwrap()
        .unwrap();
    assert!(during.status.is_active(), "the run was interrupted mid-way");

    let other = h.spawn_worker(h.worker_config(8)).await;
    let finished = h
        .wait_finished(&[run.id], Duration::from_secs(120))
        .await
        .remove(0);
    other.stop().await;
    assert_completed(&finished);
    h.assert_destination_matches();
}
