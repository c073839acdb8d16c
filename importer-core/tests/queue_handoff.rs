//! Slot handoff: a job done with Mailchimp passes its slot to the next waiting job of the same
//! account in one statement, never exceeding the account's cap.
#![allow(clippy::unwrap_used)]

mod queue_support;

use importer_core::queue::{self, Handoff};
use queue_support::{account, enqueue_jobs, live_slots, LEASE};
use sqlx::PgPool;

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_handoff_passes_the_slot_to_the_next_job_and_keeps_the_cap(pool: PgPool) {
    let acct = account(&pool, "handoff", 2).await;
    enqueue_jobs(&pool, acct, 4).await;
    let held = queue::claim(&pool, "w1", 10, LEASE).await.unwrap();
    assert_eq!(held.len(), 2, "the cap is 2");
    assert_eq!(live_slots(&pool, acct).await, 2);

    let next = match queue::handoff_slot(&pool, held[0].fence(), "w1", LEASE)
        .await
        .unwrap()
    {
        Handoff::Next(job) => job,
        other => panic!("expected the next job, got {other:?}"),
    };
    assert_eq!(next.account_id, acct);
    assert_eq!(next.attempt, 1);
    assert!(held.iter().all(|h| h.id != next.id));
    assert_eq!(live_slots(&pool, acct).await, 2, "one slot out, one in");
    assert!(
        queue::claim(&pool, "w2", 10, LEASE)
            .await
            .unwrap()
            .is_empty(),
        "the account is still at its cap"
    );

    // The old holder's slot is gone: a second handoff on the same fence changes nothing.
    assert_eq!(
        queue::handoff_slot(&pool, held[0].fence(), "w1", LEASE)
            .await
            .unwrap(),
        Handoff::Fenced
    );
    assert_eq!(live_slots(&pool, acct).await, 2);

    // The last waiting job, then nothing left: the slot is simply released.
    assert!(matches!(
        queue::handoff_slot(&pool, held[1].fence(), "w1", LEASE)
            .await
            .unwrap(),
        Handoff::Next(_)
    ));
    assert_eq!(
        queue::handoff_slot(&pool, next.fence(), "w1", LEASE)
            .await
            .unwrap(),
        Handoff::Released
    );
    assert_eq!(live_slots(&pool, acct).await, 1);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_paused_account_gets_no_handoff(pool: PgPool) {
    let acct = account(&pool, "paused", 1).await;
    enqueue_jobs(&pool, acct, 2).await;
    let held = queue::claim(&pool, "w1", 10, LEASE).await.unwrap();
    importer_core::accounts::set_paused(&pool, acct, true)
        .await
        .unwrap();
    assert_eq!(
        queue::handoff_slot(&pool, held[0].fence(), "w1", LEASE)
            .await
            .unwrap(),
        Handoff::Released
    );
    assert_eq!(live_slots(&pool, acct).await, 0);
}

/// Regression (issue 9, defect 2): a handoff swapped slots one for one whatever the cap, so a
/// lowered `max_concurrency` did not take effect while the account's backlog lasted.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_handoff_never_leaves_more_live_slots_than_a_lowered_cap(pool: PgPool) {
    let acct = account(&pool, "lowered", 10).await;
    enqueue_jobs(&pool, acct, 30).await;
    let mut held = queue::claim(&pool, "w1", 10, LEASE).await.unwrap();
    assert_eq!(live_slots(&pool, acct).await, 10);
    sqlx::query("UPDATE importer.accounts SET max_concurrency = 5 WHERE id = $1")
        .bind(acct)
        .execute(&pool)
        .await
        .unwrap();

    // Over the cap, each handoff only releases, until the account is back under it; from then
    // on the swaps keep it exactly at the new cap.
    let mut counts = Vec::new();
    while let Some(job) = held.pop() {
        match queue::handoff_slot(&pool, job.fence(), "w1", LEASE)
            .await
            .unwrap()
        {
            Handoff::Next(next) if counts.len() < 20 => held.insert(0, next),
            Handoff::Next(next) => {
                queue::release_slot(&pool, next.fence()).await.unwrap();
            }
            Handoff::Released => {}
            Handoff::Fenced => panic!("fence lost"),
        }
        counts.push(live_slots(&pool, acct).await);
    }
    assert_eq!(&counts[..5], &[9, 8, 7, 6, 5], "{counts:?}");
    assert!(counts.iter().skip(5).all(|n| *n <= 5), "{counts:?}");
}

/// Regression: a handoff passed on the slot of a lease however long expired. A stalled holder's
/// handoff then raced a claim that no longer counted that slot (expired past the grace), and
/// both leased a job with it: the account ran one job over its cap. Past the grace the slot is
/// only given back.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_lease_expired_past_the_grace_hands_off_nothing(pool: PgPool) {
    let acct = account(&pool, "stalled", 1).await;
    enqueue_jobs(&pool, acct, 3).await;
    let held = queue::claim(&pool, "w1", 10, LEASE).await.unwrap();
    assert_eq!(held.len(), 1);
    sqlx::query("UPDATE importer.jobs SET locked_until = now() - interval '10 s' WHERE id = $1")
        .bind(held[0].id)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        queue::handoff_slot(&pool, held[0].fence(), "w1", LEASE)
            .await
            .unwrap(),
        Handoff::Released
    );
    assert_eq!(live_slots(&pool, acct).await, 0, "nothing leased with it");

    // Within the grace the claim still counts the slot, so a swap stays one for one.
    let again = queue::claim(&pool, "w2", 10, LEASE).await.unwrap();
    assert_eq!(again.len(), 1);
    sqlx::query("UPDATE importer.jobs SET locked_until = now() - interval '100 ms' WHERE id = $1")
        .bind(again[0].id)
        .execute(&pool)
        .await
        .unwrap();
    assert!(matches!(
        queue::handoff_slot(&pool, again[0].fence(), "w2", LEASE)
            .await
            .unwrap(),
        Handoff::Next(_)
    ));
    assert_eq!(live_slots(&pool, acct).await, 1);
}
