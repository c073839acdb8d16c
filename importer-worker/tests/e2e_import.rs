//! End to end: full and incremental syncs, and contacts changing while a run is in flight.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use chrono::Duration as ChronoDuration;
use common::{assert_completed, wait_past_lag, Harness, TEST_LAG};
use importer_core::mailchimp::{MailchimpClient, MailchimpConfig};
use importer_core::runs::{self, RunMode};
use importer_core::secrets::Secret;
use importer_core::tick;
use importer_sim::{ChurnStep, MailchimpSimConfig, SimConfig};
use sqlx::PgPool;

fn fast_sim() -> SimConfig {
    SimConfig {
        seed: 11,
        mailchimp: MailchimpSimConfig {
            latency_base: Duration::from_millis(5),
            latency_per_member: Duration::from_micros(5),
            ..MailchimpSimConfig::default()
        },
        ..SimConfig::default()
    }
}

/// 3 worker processes, 4 accounts, lists of 0, 1, 999, 1000, 1001 and 30,000 members.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn three_worker_processes_import_every_member_of_every_list_exactly_once(pool: PgPool) {
    let mut h = Harness::start(pool, fast_sim()).await;
    h.add_account("alpha", &[0, 30_000], 10).await;
    h.add_account("beta", &[1, 999], 10).await;
    h.add_account("gamma", &[1000], 10).await;
    h.add_account("delta", &[1001], 10).await;
    let started = h.start_runs().await;
    let mut workers: Vec<_> = (0..3)
        .map(|_| h.spawn_process(&[("WORKER_CONCURRENCY", "8".to_owned())]))
        .collect();
    let ids: Vec<i64> = started.iter().map(|r| r.id).collect();
    let finished = h.wait_finished(&ids, Duration::from_secs(180)).await;
    for w in &mut workers {
        w.kill().unwrap();
        w.wait().unwrap();
    }

    let mc = h.sim.mailchimp();
    for run in &finished {
        assert_completed(run);
        let list = h
            .accounts
            .iter()
            .flat_map(|a| a.lists.iter())
            .find(|l| l.id == run.list_id)
            .unwrap();
        let size = mc.member_count(&list.mailchimp_id).unwrap() as i64;
        assert_eq!(run.mode, RunMode::Full);
        assert_eq!(run.members_total, Some(size), "list {}", list.mailchimp_id);
        // Every member once; a lane split off a range may start a little behind where its
        // parent got to, which posts a few members twice (harmless upserts).
        let extra = run.records_imported - size;
        assert!(
            (0..=size / 100).contains(&extra),
            "list {}: {} records for {size} members",
            list.mailchimp_id,
            run.records_imported
        );
        // The plan job, one job per range of about RANGE_MEMBERS (none for an empty list), and
        // one per lane split off a range to use idle slots.
        let lanes: i64 =
            sqlx::query_scalar("SELECT count(*) FROM importer.range_lanes WHERE run_id = $1")
                .bind(run.id)
                .fetch_one(&h.pool)
                .await
                .unwrap();
        let ranges = i64::from(run.jobs_total) - 1 - lanes;
        let most = (size + importer_core::window::RANGE_MEMBERS as i64 - 1)
            / importer_core::window::RANGE_MEMBERS as i64;
        assert!(
            (size == 0 && ranges == 0) || (ranges >= 1 && ranges <= most),
            "list {}: {ranges} ranges for {size} members",
            list.mailchimp_id
        );
        assert_eq!(h.cursor(run.list_id).await, Some(run.until));
    }
    h.assert_destination_matches();
    for (i, account) in h.accounts.iter().enumerate() {
        let stats = h.sim.destination().stats(&account.destination_key);
        let members = h.expected(i).len() as u64;
        assert!(
            stats.duplicates_received <= members / 100,
            "account {i}: {} duplicates for {members} members",
            stats.duplicates_received
        );
    }
}

/// After a full sync, 500 modified and 200 added members are exactly what the next run sends.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn the_next_scheduled_run_sends_only_the_members_that_changed(pool: PgPool) {
    let mut h = Harness::start(pool, fast_sim()).await;
    let a = h.add_account("inc", &[3000, 2000], 10).await;
    let worker = h.spawn_worker(h.worker_config(10)).await;

    let first = tick::tick(&h.pool, Some(chrono::Utc::now())).await.unwrap();
    assert_eq!(first.len(), 2);
    let ids: Vec<i64> = first.iter().map(|t| t.run_id).collect();
    for run in h.wait_finished(&ids, Duration::from_secs(60)).await {
        assert_completed(&run);
    }
    h.assert_destination_matches();

    common::next_second().await;
    let mc = h.sim.mailchimp();
    let lists = h.accounts[a].lists.clone();
    let mut changed = Vec::new();
    for (list, (modify, add)) in lists.iter().zip([(300, 120), (200, 80)]) {
        let mut ids: HashSet<String> = mc
            .modify_members(&list.mailchimp_id, modify)
            .into_iter()
            .collect();
        ids.extend(mc.add_members(&list.mailchimp_id, add));
        assert_eq!(ids.len(), modify + add);
        changed.push(ids.len() as i64);
    }
    wait_past_lag(TEST_LAG).await;
    let received_before = h
        .sim
        .destination()
        .stats(&h.accounts[a].destination_key)
        .records_received;

    // An hour passes for the scheduler: free the current slot so tick schedules the next run.
    sqlx::query("UPDATE importer.runs SET scheduled_for = scheduled_for - interval '1 hour'")
        .execute(&h.pool)
        .await
        .unwrap();
    let second = tick::tick(&h.pool, Some(chrono::Utc::now())).await.unwrap();
    assert_eq!(second.len(), 2);
    let ids: Vec<i64> = second.iter().map(|t| t.run_id).collect();
    let finished = h.wait_finished(&ids, Duration::from_secs(60)).await;
    worker.stop().await;

    let client = MailchimpClient::new(MailchimpConfig::default()).unwrap();
    let account = client
        .account(
            &Secret::new(h.accounts[a].api_key.clone()),
            Some(&h.sim.mailchimp_url()),
        )
        .unwrap();
    let mut sent = 0;
    for run in &finished {
        assert_completed(run);
        assert_eq!(run.mode, RunMode::Incremental);
        let idx = lists.iter().position(|l| l.id == run.list_id).unwrap();
        let since = run.since.unwrap();
        // Members of the boundary second [since - 1s, since) may be sent again, nothing else.
        let boundary = account
            .count_members(
                &lists[idx].mailchimp_id,
                Some(since - ChronoDuration::seconds(2)),
                Some(since),
            )
            .await
            .unwrap() as i64;
        let total = run.members_total.unwrap();
        assert!(
            total >= changed[idx] && total <= changed[idx] + boundary,
            "run {} sent {total}, expected {} (+{boundary} boundary)",
            run.id,
            changed[idx]
        );
        sent += run.records_imported;
    }
    let received = h
        .sim
        .destination()
        .stats(&h.accounts[a].destination_key)
        .records_received;
    assert_eq!(received - received_before, sent as u64);
    h.assert_destination_matches();
}

/// 5% of a 30,000-member list modified and 2% added while its run is in flight: the run still
/// delivers every member that did not change, and the next run delivers the rest.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn contacts_changing_mid_run_are_delivered_by_this_run_or_the_next(pool: PgPool) {
    let config = SimConfig {
        seed: 12,
        mailchimp: MailchimpSimConfig {
            latency_base: Duration::from_millis(60),
            latency_per_member: Duration::from_micros(20),
            // Once the run has made 8 member requests (planning and a few pages).
            churn: vec![ChurnStep {
                after_requests: 8,
                modify: 0.05,
                add: 0.02,
                ..ChurnStep::default()
            }],
            ..MailchimpSimConfig::default()
        },
        ..SimConfig::default()
    };
    let mut h = Harness::start(pool, config).await;
    let a = h.add_account("mut", &[30_000], 3).await;
    let list = h.accounts[a].lists[0].clone();
    let run = h.start_runs().await.remove(0);
    let worker = h.spawn_worker(h.worker_config(6)).await;
    let first = h
        .wait_finished(&[run.id], Duration::from_secs(120))
        .await
        .remove(0);
    assert_completed(&first);
    let changed: HashSet<String> = h
        .sim
        .mailchimp()
        .churned(&list.mailchimp_id)
        .into_iter()
        .collect();
    assert_eq!(changed.len(), 1500 + 600, "the churn step fired mid-run");

    let not_current = h.not_current(a);
    let lost: Vec<&String> = not_current.difference(&changed).collect();
    assert!(
        lost.is_empty(),
        "{} unchanged members were not delivered by the run: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );

    wait_past_lag(TEST_LAG).await;
    let second = runs::create(
        &h.pool,
        list.id,
        runs::RunRequest {
            mode: runs::RequestedMode::Auto,
        },
    )
    .await
    .unwrap();
    assert_eq!(second.since, Some(first.until));
    let second = h
        .wait_finished(&[second.id], Duration::from_secs(60))
        .await
        .remove(0);
    worker.stop().await;
    assert_completed(&second);
    h.assert_destination_matches();
}

/// A first full sync knows no count when it guesses its range boundaries (`RANGE_MEMBERS`
/// apart). On 2 slots a list of 30,000 gets the guess 20,000 + 10,000, more than a page per slot
/// from even, so planning probes once more at the count (15,000): 3 planning requests, and still
/// every member once. A list of 900 wants one range whatever the guess: 2 planning requests.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_first_full_sync_probes_again_when_its_guessed_ranges_are_far_from_even(pool: PgPool) {
    let mut h = Harness::start(pool, fast_sim()).await;
    h.add_account("reprobe", &[30_000, 900], 2).await;
    let worker = h.spawn_worker(h.worker_config(4)).await;
    let started = h.start_runs().await;
    let ids: Vec<i64> = started.iter().map(|r| r.id).collect();
    let finished = h.wait_finished(&ids, Duration::from_secs(120)).await;
    worker.stop().await;
    let lists = h.accounts[0].lists.clone();
    for run in &finished {
        assert_completed(run);
        let (size, planning) = if run.list_id == lists[0].id {
            (30_000, 3)
        } else {
            (900, 2)
        };
        assert_eq!(run.members_total, Some(size));
        assert_eq!(
            run.planning_requests, planning,
            "list {}: planning requests",
            run.list_id
        );
    }
    h.assert_destination_matches();
}
