//! Per-account Mailchimp concurrency: live slots never exceed `max_concurrency`, across
//! concurrent claimers, while other accounts keep being served; paused accounts are skipped.
#![allow(clippy::unwrap_used)]

mod queue_support;

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use importer_core::accounts;
use importer_core::queue::{self, JobKind, NewJob};
use queue_support::{account, enqueue_jobs, expire, jobs_count, live_slots, pool, pools, LEASE};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn account_cap_holds_across_four_concurrent_claimers_while_other_accounts_are_served(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let setup = pool(&connect, 2).await;
    let capped = account(&setup, "capped", 3).await;
    let other = account(&setup, "other", 10).await;
    const PER_ACCOUNT: usize = 40;
    enqueue_jobs(&setup, capped, PER_ACCOUNT).await;
    enqueue_jobs(&setup, other, PER_ACCOUNT).await;

    let done = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicI64::new(0));
    let other_served_while_capped_full = Arc::new(AtomicUsize::new(0));
    let total = 2 * PER_ACCOUNT;

    // An independent probe, polling the invariant while the claimers work.
    let probe = {
        let (done, max_seen) = (done.clone(), max_seen.clone());
        let probe_pool = pool(&connect, 1).await;
        tokio::spawn(async move {
            while done.load(Ordering::SeqCst) < total {
                let live = live_slots(&probe_pool, capped).await;
                assert!(live <= 3, "probe saw {live} live slots for a cap of 3");
                max_seen.fetch_max(live, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        })
    };

    let mut claimers = tokio::task::JoinSet::new();
    for (n, pool) in pools(&connect, 4).await.into_iter().enumerate() {
        let (done, max_seen, served) = (
            done.clone(),
            max_seen.clone(),
            other_served_while_capped_full.clone(),
        );
        claimers.spawn(async move {
            let worker = format!("claimer-{n}");
            while done.load(Ordering::SeqCst) < total {
                let claimed = queue::claim(&pool, &worker, 2, LEASE).await.unwrap();
                let live = live_slots(&pool, capped).await;
                assert!(live <= 3, "{live} live slots for a cap of 3 after a claim");
                max_seen.fetch_max(live, Ordering::SeqCst);
                if claimed.is_empty() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                if live == 3 && claimed.iter().any(|j| j.account_id == other) {
                    served.fetch_add(1, Ordering::SeqCst);
                }
                for job in claimed {
                    if job.account_id == capped {
                        // "Mailchimp request in flight" for a moment, then the slot goes back.
                        tokio::time::sleep(Duration::from_millis(3)).await;
                        assert!(queue::release_slot(&pool, job.fence()).await.unwrap());
                    }
                    let outcome = queue::complete(&pool, job.fence(), Default::default())
                        .await
                        .unwrap();
                    assert!(!outcome.is_fenced());
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
    }
    while let Some(result) = claimers.join_next().await {
        result.unwrap();
    }
    probe.await.unwrap();

    assert_eq!(jobs_count(&setup).await, 0);
    assert_eq!(live_slots(&setup, capped).await, 0);
    assert_eq!(
        max_seen.load(Ordering::SeqCst),
        3,
        "the cap was never reached"
    );
    assert!(
        other_served_while_capped_full.load(Ordering::SeqCst) > 0,
        "the other account was not served while the capped one was full"
    );
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn releasing_a_slot_lets_the_next_job_of_a_capped_account_be_claimed(pool: PgPool) {
    let capped = account(&pool, "capped", 3).await;
    enqueue_jobs(&pool, capped, 6).await;

    let held = queue::claim(&pool, "w", 10, LEASE).await.unwrap();
    assert_eq!(held.len(), 3);
    assert!(queue::claim(&pool, "w", 10, LEASE)
        .await
        .unwrap()
        .is_empty());

    // The slot goes back while the lease stays (posting to the destination): one more fits.
    assert!(queue::release_slot(&pool, held[0].fence()).await.unwrap());
    let next = queue::claim(&pool, "w", 10, LEASE).await.unwrap();
    assert_eq!(next.len(), 1);
    assert!(queue::claim(&pool, "w", 10, LEASE)
        .await
        .unwrap()
        .is_empty());

    // Completing a job that still held its slot frees it too.
    queue::complete(&pool, held[1].fence(), Default::default())
        .await
        .unwrap();
    assert_eq!(queue::claim(&pool, "w", 10, LEASE).await.unwrap().len(), 1);
    assert_eq!(live_slots(&pool, capped).await, 3);

    // A lower cap applies at the next claim.
    let update = accounts::AccountUpdate {
        max_concurrency: Some(1),
        ..Default::default()
    };
    accounts::update(&pool, capped, &update).await.unwrap();
    queue::complete(&pool, held[2].fence(), Default::default())
        .await
        .unwrap();
    assert!(queue::claim(&pool, "w", 10, LEASE)
        .await
        .unwrap()
        .is_empty());
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_lease_that_just_expired_keeps_its_slot_for_the_grace_period(pool: PgPool) {
    let capped = account(&pool, "capped", 1).await;
    let ids = enqueue_jobs(&pool, capped, 2).await;
    let first = queue::claim(&pool, "w", 10, LEASE).await.unwrap();
    assert_eq!(first.len(), 1);

    sqlx::query("UPDATE importer.jobs SET locked_until = now() - interval '100 ms' WHERE id = $1")
        .bind(first[0].id)
        .execute(&pool)
        .await
        .unwrap();
    assert!(
        queue::claim(&pool, "w2", 10, LEASE)
            .await
            .unwrap()
            .is_empty(),
        "a heartbeat in flight could still revive that slot"
    );

    expire(&pool, &[first[0].id]).await;
    let again = queue::claim(&pool, "w2", 10, LEASE).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].id, again[0].attempt),
        (ids[0], 2),
        "expired leases first"
    );
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn paused_account_jobs_are_not_claimed(pool: PgPool) {
    let paused = account(&pool, "paused", 10).await;
    let active = account(&pool, "active", 10).await;
    enqueue_jobs(&pool, paused, 3).await;
    enqueue_jobs(&pool, active, 3).await;
    accounts::set_paused(&pool, paused, true).await.unwrap();

    let claimed = queue::claim(&pool, "w", 10, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 3);
    assert!(claimed.iter().all(|j| j.account_id == active));

    accounts::set_paused(&pool, paused, false).await.unwrap();
    let claimed = queue::claim(&pool, "w", 10, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 3);
    assert!(claimed.iter().all(|j| j.account_id == paused));
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn claims_take_accounts_in_turn_and_respect_run_after(pool: PgPool) {
    let a = account(&pool, "a", 10).await;
    let b = account(&pool, "b", 10).await;
    enqueue_jobs(&pool, a, 4).await;
    enqueue_jobs(&pool, b, 4).await;
    let mut later = NewJob::new(JobKind::ImportWindow, serde_json::json!({}), b);
    later.run_after = Some(chrono::Utc::now() + chrono::Duration::hours(1));
    let later = queue::enqueue(&pool, &later).await.unwrap();

    // A claim locks only as many accounts as its limit needs (one here), least recently served
    // first, so the next claim serves the other account.
    let first = queue::claim(&pool, "w", 4, LEASE).await.unwrap();
    assert_eq!(first.len(), 4);
    let first_account = first[0].account_id;
    assert!(first.iter().all(|j| j.account_id == first_account));
    let second = queue::claim(&pool, "w", 4, LEASE).await.unwrap();
    assert_eq!(second.len(), 4);
    assert!(second.iter().all(|j| j.account_id != first_account));
    assert_eq!(
        [first_account, second[0].account_id]
            .iter()
            .filter(|x| **x == a)
            .count(),
        1,
        "each account served once"
    );

    let rest = queue::claim(&pool, "w", 100, LEASE).await.unwrap();
    assert!(
        rest.iter().all(|j| j.id != later),
        "a job is not claimed before run_after"
    );
    assert!(rest.is_empty());
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn claims_reach_every_account_when_many_have_jobs(pool: PgPool) {
    // More accounts with work than one claim looks at (2 * limit + 32).
    let mut expected = Vec::new();
    for n in 0..80 {
        let id = account(&pool, &format!("acct{n}"), 10).await;
        enqueue_jobs(&pool, id, 1).await;
        expected.push(id);
    }
    let mut served = Vec::new();
    for _ in 0..80 {
        let claimed = queue::claim(&pool, "w", 1, LEASE).await.unwrap();
        assert_eq!(
            claimed.len(),
            1,
            "a claim came back empty with work waiting"
        );
        served.push(claimed[0].account_id);
    }
    served.sort_unstable();
    assert_eq!(served, expected);
}
