//! Encryption key rotation (issue 11): stored keys re-sealed under a new key while an import
//! runs, and ciphertexts bound to their account and column.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{assert_completed, slow_sim, Harness};
use importer_core::accounts;
use importer_core::runs::RunStatus;
use importer_core::secrets::SecretBox;
use importer_sim::SimConfig;
use sqlx::PgPool;

async fn running(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status IN ('planning', 'running')),
                coalesce(sum(jobs_done), 0)::bigint
           FROM importer.runs",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Workers holding the new key and the previous one run an import while `rotate_secrets`
/// re-seals every stored key in batches of two accounts: every run completes, nothing dies,
/// the destination holds every member, and afterwards a worker with only the new key works.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn rotating_the_encryption_key_during_an_import_loses_nothing(pool: PgPool) {
    let mut h = Harness::start(pool, slow_sim(11, 200)).await;
    for k in 0..6 {
        h.add_account(&format!("rotate{k}"), &[3000, 3000], 2).await;
    }
    let new_hex = SecretBox::generate_key_hex();
    let both = SecretBox::from_hex(&new_hex)
        .unwrap()
        .with_previous(&h.secret_hex)
        .unwrap();
    let worker = h.spawn_worker_with(h.worker_config(3), both.clone()).await;
    let runs = h.start_runs().await;

    // Rotate once the import is under way: some jobs done, most runs still going.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (active, done) = running(&h.pool).await;
        if done > 0 {
            assert!(
                active > 6,
                "rotation must overlap the import ({active} runs active)"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the import never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut batches = 0;
    let report = accounts::rotate_secrets(&h.pool, &both, 2, |_| batches += 1)
        .await
        .unwrap();
    assert_eq!((report.accounts, report.resealed), (6, 12), "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(batches, 3);
    let (active, _) = running(&h.pool).await;
    assert!(
        active > 0,
        "the rotation finished while runs were still importing"
    );

    let usage = accounts::key_usage(&h.pool, &both).await.unwrap();
    assert_eq!((usage.current, usage.previous, usage.legacy), (12, 0, 0));
    let again = accounts::rotate_secrets(&h.pool, &both, 2, |_| {})
        .await
        .unwrap();
    assert_eq!(
        (again.resealed, again.already_current),
        (0, 12),
        "idempotent"
    );

    let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
    for run in h.wait_finished(&ids, Duration::from_secs(120)).await {
        assert_completed(&run);
    }
    h.assert_destination_matches();
    worker.stop().await;

    // The old key can go: a worker with only the new one runs the next sync.
    let only_new = SecretBox::from_hex(&new_hex).unwrap();
    let old_only = accounts::key_usage(&h.pool, &h.secrets).await.unwrap();
    assert_eq!((old_only.current, old_only.previous), (0, 0));
    assert_eq!(old_only.unknown.get(&only_new.current_key_id()), Some(&12));
    let worker = h.spawn_worker_with(h.worker_config(4), only_new).await;
    let next: Vec<i64> = h.start_runs().await.iter().map(|r| r.id).collect();
    for run in h.wait_finished(&next, Duration::from_secs(60)).await {
        assert_completed(&run);
    }
    worker.stop().await;
}

/// A Mailchimp key copied from one account's row into another's does not open there: the job
/// dies as permanent with a message saying so, and the copied key is never sent to Mailchimp
/// (without the binding, account A's sync would read account B's audience with B's key).
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_key_copied_from_another_account_is_refused_and_never_sent(pool: PgPool) {
    let mut h = Harness::start(pool, SimConfig::default()).await;
    let victim = h.add_account("victim", &[50], 2).await;
    let donor = h.add_account("donor", &[50], 2).await;
    sqlx::query(
        "UPDATE importer.accounts v SET mailchimp_key = d.mailchimp_key
           FROM importer.accounts d WHERE v.id = $1 AND d.id = $2",
    )
    .bind(h.accounts[victim].id)
    .bind(h.accounts[donor].id)
    .execute(&h.pool)
    .await
    .unwrap();
    let worker = h.spawn_worker(h.worker_config(2)).await;
    let run = importer_core::runs::create(
        &h.pool,
        h.accounts[victim].lists[0].id,
        importer_core::runs::RunRequest {
            mode: importer_core::runs::RequestedMode::Full,
        },
    )
    .await
    .unwrap();
    let done = h
        .wait_finished(&[run.id], Duration::from_secs(30))
        .await
        .remove(0);
    assert_eq!(done.status, RunStatus::Failed, "{done:?}");
    let error: String = sqlx::query_scalar("SELECT last_error FROM importer.dead_jobs")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert!(
        error.contains("copied from another account or column"),
        "{error}"
    );
    let mc = h.sim.mailchimp();
    assert_eq!(mc.key_stats(&h.accounts[donor].api_key).requests, 0);
    assert_eq!(mc.key_stats(&h.accounts[victim].api_key).requests, 0);
    worker.stop().await;
}
