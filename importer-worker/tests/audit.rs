//! The audit (issue 12), end to end with the real worker and the simulators: it finds exactly
//! the drift injected, heals what it can without posting anything else, reports the members
//! deleted in Mailchimp, costs about a request per 1,000 members, and never runs beside a sync
//! of its list.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{assert_completed, wait_past_lag, Harness, TEST_LAG};
use importer_core::list_audit::{self, AuditResult};
use importer_core::lists;
use importer_core::runs::{self, RequestedMode, RunError, RunMode, RunRequest};
use importer_sim::{MailchimpSimConfig, SimConfig};
use sqlx::PgPool;

const N: usize = 5_000;

async fn audit(h: &Harness, list: i64) -> AuditResult {
    let run = runs::create_audit(&h.pool, list, false).await.unwrap();
    assert_eq!(run.mode, RunMode::Audit);
    let run = h
        .wait_finished(&[run.id], Duration::from_secs(60))
        .await
        .remove(0);
    assert_completed(&run);
    list_audit::result(&h.pool, run.id).await.unwrap().unwrap()
}

async fn ledger_rows(h: &Harness, list: i64) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM importer.ledger WHERE list_id = $1")
        .bind(list)
        .fetch_one(&h.pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn an_audit_heals_exactly_the_injected_drift_and_reports_the_deleted(pool: PgPool) {
    let mut h = Harness::start(pool, SimConfig::default()).await;
    let a = h.add_account("audit", &[N], 4).await;
    let list = h.accounts[a].lists[0].clone();
    let key = h.accounts[a].api_key.clone();
    let dest_key = h.accounts[a].destination_key.clone();
    let worker = h.spawn_worker(h.worker_config(8)).await;
    h.sync_list(list.id).await;
    let mc = h.sim.mailchimp();

    // Drift of every kind the ledger can see:
    // - members deleted in Mailchimp (a GDPR erasure);
    let deleted: HashSet<String> = mc
        .delete_members(&list.mailchimp_id, 40)
        .into_iter()
        .collect();
    // - changes a wrong cursor reset skipped: changed, then the cursor moved past them;
    let skipped: HashSet<String> = mc
        .modify_members(&list.mailchimp_id, 60)
        .into_iter()
        .filter(|id| !deleted.contains(id))
        .collect();
    wait_past_lag(TEST_LAG).await;
    let now: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    lists::reset_cursor(&h.pool, list.id, Some(now))
        .await
        .unwrap();
    // - members a bug never delivered (the ledger has no row for them).
    let other: Vec<String> = deleted.union(&skipped).cloned().collect();
    let lost: HashSet<String> = sqlx::query_scalar(
        "DELETE FROM importer.ledger g
          WHERE g.list_id = $1 AND g.member_key IN (
                SELECT member_key FROM importer.ledger
                 WHERE list_id = $1 AND importer.ledger_member_id(member_key) <> ALL($2)
                 ORDER BY member_key OFFSET 1000 LIMIT 30)
         RETURNING importer.ledger_member_id(g.member_key)",
    )
    .bind(list.id)
    .bind(&other)
    .fetch_all(&h.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(lost.len(), 30);
    let posted_before = h.sim.destination().stats(&dest_key).records_received;
    let reads_before = mc.key_stats(&key).requests;

    let found = audit(&h, list.id).await;
    let posted = h.sim.destination().stats(&dest_key).records_received - posted_before;
    let requests = mc.key_stats(&key).requests - reads_before;
    eprintln!("{found:?}, {requests} requests");
    assert_eq!(found.members_seen, (N - deleted.len()) as i64);
    assert_eq!(found.stale, skipped.len() as i64, "{found:?}");
    assert_eq!(found.missing, lost.len() as i64, "{found:?}");
    assert_eq!(found.healed, (skipped.len() + lost.len()) as i64);
    assert_eq!((found.deferred, found.rejected), (0, 0));
    assert_eq!((found.deleted, found.deleted_new), (40, 40));
    assert_eq!(found.unhealed, 40, "deleted members cannot be healed");
    assert_eq!(
        posted,
        (skipped.len() + lost.len()) as u64,
        "only the drift was posted"
    );
    let (reported, total) = list_audit::deleted_members(&h.pool, list.id, 100)
        .await
        .unwrap();
    assert_eq!(total, 40);
    assert_eq!(
        reported
            .iter()
            .map(|d| d.member_id.clone())
            .collect::<HashSet<_>>(),
        deleted
    );
    h.assert_destination_current();
    assert_eq!(ledger_rows(&h, list.id).await, N as i64);

    // Cost: the scan and the pass since `until`, then the heal reads its spans in full (the
    // drift is spread over the whole list here, so one span covers it).
    let pages = N.div_ceil(1000) as u64;
    assert_eq!(found.mailchimp_requests, requests as i64);
    assert!(
        requests <= 2 * pages + 2,
        "{requests} requests for {N} members"
    );

    // Nothing left: the next audit heals nothing and notices nothing new.
    let reads_before = mc.key_stats(&key).requests;
    let again = audit(&h, list.id).await;
    worker.stop().await;
    // Without drift an audit is its scan: about a request per 1,000 members (and one for the
    // pass since `until`), well under 100 bytes per member.
    let requests = mc.key_stats(&key).requests - reads_before;
    assert!(requests <= pages + 1, "{requests} requests for {N} members");
    assert!(again.bytes_per_member() < 90.0, "{again:?}");
    assert_eq!(
        (again.missing, again.stale, again.healed),
        (0, 0, 0),
        "{again:?}"
    );
    assert_eq!((again.deleted, again.deleted_new), (40, 0));
    assert_eq!(
        h.sim.destination().stats(&dest_key).records_received - posted_before,
        posted
    );
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn an_audit_and_a_sync_of_one_list_never_run_at_once(pool: PgPool) {
    let mut h = Harness::start(
        pool,
        SimConfig {
            mailchimp: MailchimpSimConfig {
                latency_base: Duration::from_millis(150),
                ..MailchimpSimConfig::default()
            },
            ..SimConfig::default()
        },
    )
    .await;
    let a = h.add_account("order", &[N], 2).await;
    let list = h.accounts[a].lists[0].clone();
    let worker = h.spawn_worker(h.worker_config(4)).await;
    h.sync_list(list.id).await;
    let mc = h.sim.mailchimp();
    mc.modify_members(&list.mailchimp_id, 300);
    wait_past_lag(TEST_LAG).await;

    // A sync in flight refuses an audit, naming itself.
    let running = runs::create(
        &h.pool,
        list.id,
        RunRequest {
            mode: RequestedMode::Auto,
        },
    )
    .await
    .unwrap();
    match runs::create_audit(&h.pool, list.id, false).await {
        Err(RunError::AlreadyActive { run_id, .. }) => assert_eq!(run_id, running.id),
        other => panic!("an audit beside a sync: {other:?}"),
    }
    h.wait_finished(&[running.id], Duration::from_secs(60))
        .await;

    // An audit in flight refuses a sync, and the tick creates none for the list.
    let auditing = runs::create_audit(&h.pool, list.id, false).await.unwrap();
    match runs::create(
        &h.pool,
        list.id,
        RunRequest {
            mode: RequestedMode::Auto,
        },
    )
    .await
    {
        Err(RunError::AlreadyActive { run_id, .. }) => assert_eq!(run_id, auditing.id),
        other => panic!("a sync beside an audit: {other:?}"),
    }
    let ticked = importer_core::tick::tick(&h.pool, None).await.unwrap();
    assert!(
        ticked.iter().all(|r| r.list_id != list.id),
        "the tick skips a list under audit: {ticked:?}"
    );
    let done = h
        .wait_finished(&[auditing.id], Duration::from_secs(60))
        .await
        .remove(0);
    worker.stop().await;
    assert_completed(&done);
    let found = list_audit::result(&h.pool, done.id).await.unwrap().unwrap();
    assert_eq!(
        (found.missing, found.stale, found.deleted),
        (0, 0, 0),
        "the sync before it delivered everything: {found:?}"
    );
    assert_eq!(ledger_rows(&h, list.id).await, N as i64);
    h.assert_destination_current();
}

/// Drift inside the destination (records it lost or altered, with our ledger intact) is
/// invisible to an audit: the records API has no read. A redelivering audit heals it by posting
/// every member before the cursor again.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn records_the_destination_lost_are_healed_by_a_redelivering_audit(pool: PgPool) {
    let mut h = Harness::start(pool, SimConfig::default()).await;
    let a = h.add_account("restore", &[N], 4).await;
    let list = h.accounts[a].lists[0].clone();
    let dest_key = h.accounts[a].destination_key.clone();
    let worker = h.spawn_worker(h.worker_config(8)).await;
    h.sync_list(list.id).await;
    let damage = h.sim.destination().damage(&dest_key, 25, 25);
    assert_eq!((damage.dropped.len(), damage.altered.len()), (25, 25));
    let not_current = h.not_current(a);
    assert_eq!(not_current.len(), 50);

    // An audit trusts the ledger: it cannot see this, and says so by finding nothing.
    let blind = audit(&h, list.id).await;
    assert_eq!((blind.missing, blind.stale, blind.healed), (0, 0, 0));
    assert_eq!(h.not_current(a), not_current);

    let posted_before = h.sim.destination().stats(&dest_key).records_received;
    let run = runs::create_audit(&h.pool, list.id, true).await.unwrap();
    let run = h
        .wait_finished(&[run.id], Duration::from_secs(60))
        .await
        .remove(0);
    worker.stop().await;
    assert_completed(&run);
    let found = list_audit::result(&h.pool, run.id).await.unwrap().unwrap();
    assert!(found.redeliver);
    assert_eq!(found.healed, N as i64, "{found:?}");
    assert_eq!(found.unhealed, 0);
    assert_eq!(
        h.sim.destination().stats(&dest_key).records_received - posted_before,
        N as u64
    );
    h.assert_destination_current();
}
