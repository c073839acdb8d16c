//! The sync engine's promise, end to end (issue 8, DESIGN.md section 6): for each situation of
//! the figures table, a full sync of one list while Mailchimp changes under it, then the next
//! incremental run. Each test asserts 0 missing and 0 stale after the next run, and the Mailchimp
//! reads, destination writes and requests of the full sync as bounds.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{assert_completed, wait_past_lag, Harness};
use importer_core::mailchimp::{MailchimpClient, MailchimpConfig};
use importer_core::runs::{self, RequestedMode, RunRequest, RunStatus};
use importer_core::secrets::Secret;
use importer_core::settings;
use importer_sim::{ChurnStep, DestinationFaults, MailchimpSimConfig, MemberDefect, SimConfig};
use importer_worker::WorkerConfig;
use sqlx::PgPool;

/// Members of the list in every scenario.
const N: usize = 40_000;

/// What a scenario changes in the simulator.
#[derive(Clone, Default)]
struct Scenario {
    seed: u64,
    churn: Vec<ChurnStep>,
    clock_offset_secs: i64,
    visibility_delay: Duration,
    inclusive_since: bool,
    unstable_ties: bool,
    lag: Duration,
    /// Mailchimp's latency per request (default 8 ms, plus 8 µs per member).
    latency: Option<Duration>,
    /// The full sync is expected to fail because its window moved.
    window_moves: bool,
    /// The account's Mailchimp slots (default 10).
    slots: Option<i32>,
}

/// What the full sync cost, and what was still missing or stale after it and after the next run.
#[derive(Debug)]
struct Figures {
    reads: u64,
    posts: u64,
    requests: u64,
    planning: u64,
    window_events: i32,
    /// Not current after the full sync and not changed by the churn: a loss.
    lost_unchanged: usize,
}

impl Figures {
    fn read_ratio(&self) -> f64 {
        self.reads as f64 / N as f64
    }

    fn post_ratio(&self) -> f64 {
        self.posts as f64 / N as f64
    }

    /// Requests beyond planning over the pages a list of N needs.
    fn page_request_ratio(&self) -> f64 {
        (self.requests.saturating_sub(self.planning)) as f64 / N.div_ceil(1000) as f64
    }
}

fn churn(after_requests: u64, modify: f64, add: f64, delete: f64, archive: f64) -> ChurnStep {
    ChurnStep {
        after_requests,
        modify,
        add,
        delete,
        archive,
        ..ChurnStep::default()
    }
}

/// Member requests after which the churn lands: planning (a count, a probe, the since check)
/// and about a quarter of the pages of both ranges are read by then.
const MID_SYNC: u64 = 14;

/// 10 % of the list modified, added, deleted or archived in the middle of the full sync.
fn ten_percent() -> Vec<ChurnStep> {
    vec![churn(MID_SYNC, 0.04, 0.02, 0.02, 0.02)]
}

/// Runs the full sync under `s`, then the next incremental run; asserts nothing is missing or
/// stale at the end and returns the full sync's figures.
async fn run_scenario(pool: PgPool, s: Scenario) -> Figures {
    let config = SimConfig {
        seed: s.seed,
        mailchimp: MailchimpSimConfig {
            latency_base: s.latency.unwrap_or(Duration::from_millis(8)),
            latency_per_member: Duration::from_micros(8),
            clock_offset_secs: s.clock_offset_secs,
            visibility_delay: s.visibility_delay,
            inclusive_since: s.inclusive_since,
            unstable_ties: s.unstable_ties,
            churn: s.churn.clone(),
            ..MailchimpSimConfig::default()
        },
        ..SimConfig::default()
    };
    let mut h = Harness::start(pool, config).await;
    settings::set_sync_lag(&h.pool, s.lag).await.unwrap();
    let a = h.add_account("sync", &[N], s.slots.unwrap_or(10)).await;
    let list = h.accounts[a].lists[0].clone();
    let key = h.accounts[a].api_key.clone();
    // Figures measure the engine, not its recovery from an overloaded test machine: timeouts
    // and leases long enough that a slow response is never retried (a retried page is read
    // again, legitimately, and would blur the bounds).
    let config = WorkerConfig {
        lease_secs: 30,
        mailchimp_timeout_secs: 30,
        destination_timeout_secs: 30,
        ..h.worker_config(20)
    };
    let worker = h.spawn_worker(config).await;

    let full = h.start_runs().await.remove(0);
    let full = h
        .wait_finished(&[full.id], Duration::from_secs(120))
        .await
        .remove(0);
    if s.window_moves {
        assert_eq!(full.status, RunStatus::Failed);
        assert!(
            full.error
                .as_deref()
                .unwrap_or_default()
                .contains("not frozen"),
            "{:?}",
            full.error
        );
        assert_eq!(h.cursor(list.id).await, None, "no coverage is kept");
    } else {
        assert_completed(&full);
    }
    let mc = h.sim.mailchimp();
    let stats = mc.key_stats(&key);
    let posted = h
        .sim
        .destination()
        .stats(&h.accounts[a].destination_key)
        .records_received;
    let changed: HashSet<String> = mc.churned(&list.mailchimp_id).into_iter().collect();
    // What became visible late is compared only once it is visible.
    tokio::time::sleep(s.visibility_delay).await;
    let lost_unchanged = h.not_current(a).difference(&changed).count();
    let figures = Figures {
        reads: stats.members_returned,
        posts: posted,
        requests: stats.requests,
        planning: u64::try_from(full.planning_requests).unwrap(),
        window_events: full.window_events,
        lost_unchanged,
    };

    // The next run must come once the changes are in its window: older than the lag on our
    // clock, and (when Mailchimp's clock is ahead) once their stamps are in our past. Scheduled
    // runs an hour apart always are.
    let ahead = Duration::from_secs(s.clock_offset_secs.max(0).unsigned_abs());
    wait_past_lag(s.lag + s.visibility_delay + ahead).await;
    let next = runs::create(
        &h.pool,
        list.id,
        RunRequest {
            mode: RequestedMode::Auto,
        },
    )
    .await
    .unwrap();
    let next = h
        .wait_finished(&[next.id], Duration::from_secs(120))
        .await
        .remove(0);
    worker.stop().await;
    eprintln!("figures: {figures:?}");
    eprintln!("full {full:?}\nnext {next:?}");
    assert_completed(&next);
    h.assert_destination_current();
    figures
}

fn assert_within(f: &Figures, reads: f64, posts: f64) {
    assert!(
        f.read_ratio() <= reads,
        "read {:.3} x N (bound {reads}): {f:?}",
        f.read_ratio()
    );
    assert!(
        f.post_ratio() <= posts,
        "posted {:.3} x N (bound {posts}): {f:?}",
        f.post_ratio()
    );
}

/// As many ranges as slots, nothing to share: exactly the pages the list needs.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_list_that_does_not_change_is_read_and_posted_once(pool: PgPool) {
    let f = run_scenario(
        pool,
        Scenario {
            seed: 81,
            lag: Duration::from_secs(1),
            slots: Some(2),
            ..Scenario::default()
        },
    )
    .await;
    assert_eq!(f.lost_unchanged, 0);
    assert_eq!(f.window_events, 0);
    assert_within(&f, 1.01, 1.01);
    assert!(
        f.page_request_ratio() <= 1.05,
        "{:.3} x ceil(N/1000) requests beyond planning: {f:?}",
        f.page_request_ratio()
    );
}

/// More slots than ranges: ranges hand parts of themselves to lanes on the idle slots. Lanes
/// cost requests (each ends on a partial page), never reads: a reader asks only up to where the
/// lane after it starts.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn lanes_on_idle_slots_read_and_post_each_member_once(pool: PgPool) {
    let f = run_scenario(
        pool,
        Scenario {
            seed: 81,
            lag: Duration::from_secs(1),
            ..Scenario::default()
        },
    )
    .await;
    assert_eq!(f.lost_unchanged, 0);
    assert_within(&f, 1.01, 1.01);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn ten_percent_of_the_list_changing_during_the_full_sync_costs_at_most_ten_percent_more(
    pool: PgPool,
) {
    let f = run_scenario(
        pool,
        Scenario {
            seed: 82,
            churn: ten_percent(),
            lag: Duration::from_secs(1),
            ..Scenario::default()
        },
    )
    .await;
    assert_eq!(f.lost_unchanged, 0);
    assert_within(&f, 1.1, 1.1);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn half_the_list_reimported_during_the_full_sync_costs_at_most_half_more(pool: PgPool) {
    let f = run_scenario(
        pool,
        Scenario {
            seed: 83,
            churn: vec![churn(MID_SYNC, 0.5, 0.0, 0.0, 0.0)],
            lag: Duration::from_secs(1),
            ..Scenario::default()
        },
    )
    .await;
    assert_eq!(f.lost_unchanged, 0);
    assert_within(&f, 1.5, 1.5);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn mailchimps_clock_ten_seconds_behind_loses_nothing_under_churn(pool: PgPool) {
    let f = run_scenario(
        pool,
        Scenario {
            seed: 84,
            churn: ten_percent(),
            clock_offset_secs: -10,
            lag: Duration::from_secs(12),
            ..Scenario::default()
        },
    )
    .await;
    assert_eq!(f.lost_unchanged, 0);
    assert_eq!(
        f.window_events, 0,
        "the lag absorbs the skew: the window stayed frozen"
    );
    assert_within(&f, 1.1, 1.1);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn mailchimps_clock_ten_seconds_ahead_loses_nothing_under_churn(pool: PgPool) {
    let f = run_scenario(
        pool,
        Scenario {
            seed: 85,
            churn: ten_percent(),
            clock_offset_secs: 10,
            lag: Duration::from_secs(12),
            ..Scenario::default()
        },
    )
    .await;
    assert_eq!(f.lost_unchanged, 0);
    assert_within(&f, 1.1, 1.1);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn changes_visible_as_late_as_the_lag_are_not_lost(pool: PgPool) {
    let f = run_scenario(
        pool,
        Scenario {
            seed: 86,
            churn: ten_percent(),
            visibility_delay: Duration::from_secs(2),
            lag: Duration::from_secs(2),
            // Slow enough that changes become visible while the full sync still reads.
            latency: Some(Duration::from_millis(120)),
            slots: Some(2),
            ..Scenario::default()
        },
    )
    .await;
    assert_eq!(f.lost_unchanged, 0);
    assert_within(&f, 1.1, 1.1);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn an_inclusive_since_and_unstable_ties_change_nothing(pool: PgPool) {
    let f = run_scenario(
        pool,
        Scenario {
            seed: 87,
            churn: ten_percent(),
            inclusive_since: true,
            unstable_ties: true,
            lag: Duration::from_secs(1),
            ..Scenario::default()
        },
    )
    .await;
    assert_eq!(f.lost_unchanged, 0);
    assert_within(&f, 1.1, 1.1);
}

/// With no lag and Mailchimp's clock behind ours, members changed during the sync get stamps
/// inside its window and enter it, possibly in ranges already read: the engine sees ranges grow,
/// counts the events, and the run fails instead of completing on a coverage it cannot show; the
/// next run covers the window again and nothing is lost.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_window_that_is_not_frozen_fails_its_run_and_the_next_run_covers_it_again(pool: PgPool) {
    let f = run_scenario(
        pool,
        Scenario {
            seed: 88,
            churn: vec![churn(MID_SYNC, 0.04, 0.0, 0.0, 0.0)],
            clock_offset_secs: -30,
            lag: Duration::ZERO,
            window_moves: true,
            ..Scenario::default()
        },
    )
    .await;
    assert!(f.window_events > 0, "the growth was seen: {f:?}");
}

/// Incremental runs one after the other while changes keep coming, each visible only as late as
/// the lag: every change reaches the destination (the bug: runs that had passed a second never
/// looked back at changes that became visible in it later).
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn back_to_back_incremental_runs_lose_no_late_change(pool: PgPool) {
    let lag = Duration::from_secs(2);
    let config = SimConfig {
        seed: 89,
        mailchimp: MailchimpSimConfig {
            latency_base: Duration::from_millis(20),
            visibility_delay: lag,
            ..MailchimpSimConfig::default()
        },
        ..SimConfig::default()
    };
    let mut h = Harness::start(pool, config).await;
    settings::set_sync_lag(&h.pool, lag).await.unwrap();
    let a = h.add_account("late", &[3_000], 10).await;
    let list = h.accounts[a].lists[0].clone();
    let worker = h.spawn_worker(h.worker_config(10)).await;
    let request = RunRequest {
        mode: RequestedMode::Auto,
    };
    let mc = h.sim.mailchimp();
    for round in 0..6 {
        mc.modify_members(&list.mailchimp_id, 40);
        mc.add_members(&list.mailchimp_id, 10);
        let run = runs::create(&h.pool, list.id, request).await.unwrap();
        let run = h
            .wait_finished(&[run.id], Duration::from_secs(60))
            .await
            .remove(0);
        assert_completed(&run);
        assert!(round == 0 || run.since.is_some());
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    wait_past_lag(lag + lag).await;
    let last = runs::create(&h.pool, list.id, request).await.unwrap();
    let last = h
        .wait_finished(&[last.id], Duration::from_secs(60))
        .await
        .remove(0);
    worker.stop().await;
    assert_completed(&last);
    h.assert_destination_current();
}

/// Every kind of broken member is a rejected record with its code; its pages complete and
/// everything else is delivered.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn every_kind_of_broken_member_is_rejected_with_its_code_and_its_page_completes(
    pool: PgPool,
) {
    let mut h = Harness::start(
        pool,
        SimConfig {
            seed: 90,
            ..SimConfig::default()
        },
    )
    .await;
    let a = h.add_account("broken", &[5_000], 10).await;
    let list = h.accounts[a].lists[0].clone();
    let mc = h.sim.mailchimp();
    let kinds = [
        (MemberDefect::WrongType, "invalid_field_type"),
        (MemberDefect::DuplicateField, "duplicate_field"),
        (MemberDefect::InvalidUtf8, "invalid_utf8"),
        (MemberDefect::NoEmail, "missing_email"),
        (MemberDefect::BadStatus, "invalid_status"),
    ];
    let mut broken = Vec::new();
    for (defect, code) in kinds {
        for id in mc.corrupt_members(&list.mailchimp_id, 3, defect) {
            broken.push((id, code));
        }
    }
    let run = h.start_runs().await.remove(0);
    let worker = h.spawn_worker(h.worker_config(10)).await;
    let run = h
        .wait_finished(&[run.id], Duration::from_secs(60))
        .await
        .remove(0);
    worker.stop().await;
    assert_completed(&run);
    assert_eq!(run.records_rejected, 15);
    assert_eq!(run.records_imported, 5_000 - 15);
    let mut stored: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT member_id, code, excerpt FROM importer.rejected_records WHERE run_id = $1",
    )
    .bind(run.id)
    .fetch_all(&h.pool)
    .await
    .unwrap();
    stored.sort();
    let mut want: Vec<(String, &str)> = broken;
    want.sort();
    assert_eq!(
        stored
            .iter()
            .map(|(id, code, _)| (id.clone(), code.as_str()))
            .collect::<Vec<_>>(),
        want
    );
    assert!(stored
        .iter()
        .all(|(_, _, excerpt)| !excerpt.is_empty() && excerpt.len() <= 1024));
    h.assert_destination_current();
}

/// A run that fails with dead ranges keeps the ranges it completed: the cursor moves over the
/// completed prefix and the next run reads only what did not complete.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn after_a_failed_run_the_next_one_reads_only_what_did_not_complete(pool: PgPool) {
    let mut h = Harness::start(
        pool,
        SimConfig {
            seed: 91,
            mailchimp: MailchimpSimConfig {
                latency_base: Duration::from_millis(20),
                ..MailchimpSimConfig::default()
            },
            ..SimConfig::default()
        },
    )
    .await;
    // Two slots make two ranges; a worker that runs one job at a time reads them in order.
    let a = h.add_account("resume", &[60_000], 2).await;
    let list = h.accounts[a].lists[0].clone();
    let key = h.accounts[a].api_key.clone();
    let run = h.start_runs().await.remove(0);
    let worker = h.spawn_worker(h.worker_config(1)).await;
    // Once the first range is done, the destination goes down for good and jobs die at once.
    h.wait_jobs_done(run.id, 2, Duration::from_secs(60)).await;
    sqlx::query("UPDATE importer.jobs SET max_attempts = 1")
        .execute(&h.pool)
        .await
        .unwrap();
    h.sim.destination().set_faults(DestinationFaults {
        error_rate: 1.0,
        ..DestinationFaults::default()
    });
    let failed = h
        .wait_finished(&[run.id], Duration::from_secs(120))
        .await
        .remove(0);
    assert_eq!(failed.status, RunStatus::Failed, "{:?}", failed.error);
    assert!(failed.jobs_dead >= 1);
    let cursor = h.cursor(list.id).await;
    assert!(
        cursor.is_some(),
        "the cursor moved over the completed first range"
    );
    assert!(cursor < Some(failed.until), "but not over the dead ranges");

    h.sim.destination().set_faults(DestinationFaults::default());
    let reads_before = h.sim.mailchimp().key_stats(&key).members_returned;
    wait_past_lag(common::TEST_LAG).await;
    let next = runs::create(
        &h.pool,
        list.id,
        RunRequest {
            mode: RequestedMode::Auto,
        },
    )
    .await
    .unwrap();
    assert_eq!(next.since, cursor);
    let next = h
        .wait_finished(&[next.id], Duration::from_secs(120))
        .await
        .remove(0);
    worker.stop().await;
    assert_completed(&next);
    let reread = h.sim.mailchimp().key_stats(&key).members_returned - reads_before;
    let left = u64::try_from(next.members_total.unwrap()).unwrap();
    let client = MailchimpClient::new(MailchimpConfig::default()).unwrap();
    let account = client
        .account(&Secret::new(key.clone()), Some(&h.sim.mailchimp_url()))
        .unwrap();
    let done_before = account
        .count_members(&list.mailchimp_id, None, cursor)
        .await
        .unwrap();
    assert_eq!(
        done_before + left,
        60_000,
        "the next run's window is what was not covered"
    );
    assert!(done_before > 0 && left < 60_000);
    assert!(
        reread as f64 <= left as f64 * 1.05 + 100.0,
        "the next run read {reread} members for {left} left to read"
    );
    h.assert_destination_current();
}

/// A lane is enqueued with the checkpoint that makes it its parent's stop. Enqueued on its own
/// (the defect this guards), a parent whose page failed between the split and that checkpoint
/// resumed from an older one, without the stop, and read the lane's share a second time: about
/// one list in six was posted twice under load. Failed posts store nothing and retried pages
/// are read from the checkpoint's tail, so here nothing may reach the destination twice.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_range_that_fails_just_after_splitting_a_lane_never_reads_that_lane_again(pool: PgPool) {
    let mut h = Harness::start(
        pool,
        SimConfig {
            seed: 92,
            mailchimp: MailchimpSimConfig {
                latency_base: Duration::from_millis(8),
                latency_per_member: Duration::from_micros(8),
                ..MailchimpSimConfig::default()
            },
            ..SimConfig::default()
        },
    )
    .await;
    // Failures here are the point: no job may run out of attempts while its pages keep failing.
    sqlx::raw_sql(
        "CREATE FUNCTION many_attempts() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN NEW.max_attempts := 1000; RETURN NEW; END $$;
         CREATE TRIGGER many_attempts BEFORE INSERT ON importer.jobs
             FOR EACH ROW EXECUTE FUNCTION many_attempts();",
    )
    .execute(&h.pool)
    .await
    .unwrap();
    let a = h.add_account("split", &[N], 10).await;
    h.sim.destination().set_faults(DestinationFaults {
        error_rate: 0.4,
        ..DestinationFaults::default()
    });
    let config = WorkerConfig {
        retry_base_ms: 20,
        retry_max_secs: 1,
        lease_secs: 30,
        mailchimp_timeout_secs: 30,
        destination_timeout_secs: 30,
        ..h.worker_config(20)
    };
    let worker = h.spawn_worker(config).await;
    let run = h.start_runs().await.remove(0);
    let run = h
        .wait_finished(&[run.id], Duration::from_secs(180))
        .await
        .remove(0);
    worker.stop().await;
    assert_completed(&run);
    let splits: i64 = sqlx::query_scalar("SELECT count(*) FROM importer.range_lanes")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    let stats = h.sim.destination().stats(&h.accounts[a].destination_key);
    eprintln!("{splits} lanes, {run:?}, {stats:?}");
    assert!(run.jobs_total > 3, "lanes were split off: {run:?}");
    assert_eq!(
        stats.duplicates_received, 0,
        "a lane's share was read and posted twice: {stats:?}"
    );
    h.sim.destination().set_faults(DestinationFaults::default());
    h.assert_destination_current();
}
