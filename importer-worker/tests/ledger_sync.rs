//! The ledger in a real sync (issue 12): a member whose mapped record did not change is not
//! posted again, unless its list posts always; the ledger records what was delivered.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{assert_completed, wait_past_lag, Harness, TEST_LAG};
use importer_core::lists;
use importer_sim::SimConfig;
use sqlx::PgPool;

const N: usize = 5_000;

async fn next_run(h: &Harness, list: i64) -> importer_core::runs::Run {
    wait_past_lag(TEST_LAG).await;
    h.sync_list(list).await
}

async fn ledger_rows(h: &Harness, list: i64) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM importer.ledger WHERE list_id = $1")
        .bind(list)
        .fetch_one(&h.pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn members_whose_interests_and_tags_changed_are_not_posted_again(pool: PgPool) {
    let mut h = Harness::start(pool, SimConfig::default()).await;
    let a = h.add_account("ledger", &[N], 4).await;
    let list = h.accounts[a].lists[0].clone();
    let dest_key = h.accounts[a].destination_key.clone();
    let worker = h.spawn_worker(h.worker_config(8)).await;

    let full = h.start_runs().await.remove(0);
    let full = h
        .wait_finished(&[full.id], Duration::from_secs(60))
        .await
        .remove(0);
    assert_completed(&full);
    assert_eq!(full.records_imported, N as i64);
    assert_eq!(full.records_unchanged, 0);
    assert_eq!(ledger_rows(&h, list.id).await, N as i64);
    let posted_before = h.sim.destination().stats(&dest_key).records_received;

    // 500 members get new interests and tags (last_changed moves, nothing mapped changes);
    // 100 others change their names.
    let mc = h.sim.mailchimp();
    let touched = mc.touch_members(&list.mailchimp_id, 500);
    let modified = mc.modify_members(&list.mailchimp_id, 100);
    let next = next_run(&h, list.id).await;
    let posted = h.sim.destination().stats(&dest_key).records_received - posted_before;
    let changed = touched
        .iter()
        .chain(&modified)
        .collect::<std::collections::HashSet<_>>();
    assert!(next.members_read >= changed.len() as i64);
    assert_eq!(
        next.records_unchanged,
        (changed.len() - modified.len()) as i64,
        "every touched member that was not also modified is unchanged: {next:?}"
    );
    assert_eq!(next.records_imported, modified.len() as i64);
    assert_eq!(
        posted,
        modified.len() as u64,
        "only the modified were posted"
    );
    h.assert_destination_current();
    // The ledger holds the touched members' new last_changed: an audit will not call them stale.
    let stale: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM importer.ledger_members
          WHERE list_id = $1 AND member_id = ANY($2) AND last_changed < $3",
    )
    .bind(list.id)
    .bind(&touched)
    .bind(next.since)
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!(stale, 0);
    assert_eq!(ledger_rows(&h, list.id).await, N as i64);

    // A list that posts always posts the touched members too.
    lists::set_always_post(&h.pool, list.id, true)
        .await
        .unwrap();
    let posted_before = h.sim.destination().stats(&dest_key).records_received;
    let touched = mc.touch_members(&list.mailchimp_id, 200);
    let always = next_run(&h, list.id).await;
    worker.stop().await;
    assert_eq!(always.records_unchanged, 0);
    assert_eq!(always.records_imported, touched.len() as i64);
    assert_eq!(
        h.sim.destination().stats(&dest_key).records_received - posted_before,
        touched.len() as u64
    );
}
