//! The sync window against the real schema: one clock with a lag, coverage, the cursor rule,
//! operator cursor semantics, checkpoints and borrowed slots (issue 8, DESIGN.md section 6).
#![allow(clippy::unwrap_used)]

mod queue_support;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use importer_core::lists::{self, ListError};
use importer_core::queue::{
    self, Checkpoint, CheckpointOutcome, Completion, Cost, Interval, JobKind, NewJob,
    RejectedRecord,
};
use importer_core::runs::{self, RequestedMode, RunRequest, RunStatus};
use importer_core::window::{Range, RangeArgs};
use importer_core::{settings, tick};
use queue_support::{account_with_list, claim_one, live_slots, LEASE};
use sqlx::PgPool;

fn at(h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, h, 0, 0).unwrap()
}

async fn db_now(pool: &PgPool) -> DateTime<Utc> {
    sqlx::query_scalar("SELECT now()")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn cursor(pool: &PgPool, list: i64) -> Option<DateTime<Utc>> {
    lists::get(pool, list).await.unwrap().unwrap().synced_until
}

fn request(mode: RequestedMode) -> RunRequest {
    RunRequest { mode }
}

/// A range job of `run` covering `[lo, hi)`.
fn range_job(account: i64, run: i64, lo: Option<DateTime<Utc>>, hi: DateTime<Utc>) -> NewJob {
    let args = RangeArgs {
        list_id: "l".into(),
        range: Range { lo, hi },
        progress: None,
        lane: None,
        stop_lane: None,
        stop_offset: None,
        since_inclusive: None,
    };
    NewJob::new(
        JobKind::ImportWindow,
        serde_json::to_value(args).unwrap(),
        account,
    )
    .in_run(run)
}

/// Plans `run` into the given ranges (the plan job completes with them as children).
async fn plan_into(
    pool: &PgPool,
    run: &runs::Run,
    ranges: &[(Option<DateTime<Utc>>, DateTime<Utc>)],
) {
    let plan = claim_one(pool, "planner").await;
    assert_eq!(plan.run_id, Some(run.id));
    let children = ranges
        .iter()
        .map(|(lo, hi)| range_job(run.account_id, run.id, *lo, *hi))
        .collect();
    queue::complete(
        pool,
        plan.fence(),
        Completion {
            children,
            members_total: Some(100),
            ..Completion::default()
        },
    )
    .await
    .unwrap();
}

/// Claims the waiting range jobs in order; returns them with their ranges.
async fn claim_ranges(pool: &PgPool, n: usize) -> Vec<(queue::ClaimedJob, Range)> {
    let mut jobs = queue::claim(pool, "w", n, LEASE).await.unwrap();
    jobs.sort_by_key(|j| j.id);
    jobs.into_iter()
        .map(|j| {
            let args: RangeArgs = serde_json::from_value(j.args.clone()).unwrap();
            (j, args.range)
        })
        .collect()
}

async fn complete_range(pool: &PgPool, job: &queue::ClaimedJob, range: Range, events: i32) {
    queue::complete(
        pool,
        job.fence(),
        Completion {
            records_imported: 10,
            covered: vec![range.interval()],
            cost: Cost {
                window_events: events,
                ..Cost::default()
            },
            ..Completion::default()
        },
    )
    .await
    .unwrap();
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn every_run_ends_at_the_database_clock_minus_the_sync_lag(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let (_, other) = account_with_list(&pool, "globex", 10).await;
    assert_eq!(
        settings::get(&pool).await.unwrap().sync_lag,
        settings::DEFAULT_SYNC_LAG
    );
    settings::set_sync_lag(&pool, Duration::from_secs(90))
        .await
        .unwrap();
    lists::set_sync_lag(&pool, other, Some(Duration::from_secs(5)))
        .await
        .unwrap();

    // A tick given a far-away instant picks that slot, but the window ends on the database clock.
    let before = db_now(&pool).await;
    let ticked = tick::tick(&pool, Some(at(3))).await.unwrap();
    let after = db_now(&pool).await;
    assert_eq!(ticked.len(), 2);
    let second = chrono::Duration::seconds(1);
    for t in ticked {
        let run = runs::get(&pool, t.run_id).await.unwrap().unwrap();
        let lag = chrono::Duration::seconds(if t.list_id == other { 5 } else { 90 });
        assert!(
            run.until > before - lag - second && run.until <= after - lag,
            "list {}: until {} for lag {lag}",
            t.list_id,
            run.until
        );
        assert_eq!(run.until.timestamp_subsec_nanos(), 0);
        runs::cancel(&pool, run.id).await.unwrap();
    }

    // Operators' runs go through the same function.
    let admin = runs::create(&pool, list, request(RequestedMode::Full))
        .await
        .unwrap();
    let now = db_now(&pool).await;
    assert!(admin.until <= now - chrono::Duration::seconds(90));
    assert!(admin.until > now - chrono::Duration::seconds(92));

    assert!(
        settings::set_sync_lag(&pool, Duration::from_secs(2 * 86_400))
            .await
            .is_err()
    );
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_failed_runs_completed_ranges_stay_done_and_the_next_run_reads_only_the_gap(
    pool: PgPool,
) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    settings::set_sync_lag(&pool, Duration::ZERO).await.unwrap();
    let run = runs::create(&pool, list, request(RequestedMode::Auto))
        .await
        .unwrap();
    let (b1, b2) = (at(1), at(2));
    plan_into(
        &pool,
        &run,
        &[(None, b1), (Some(b1), b2), (Some(b2), run.until)],
    )
    .await;
    let jobs = claim_ranges(&pool, 3).await;
    complete_range(&pool, &jobs[0].0, jobs[0].1, 0).await;
    queue::dead_letter(&pool, jobs[1].0.fence(), "destination down")
        .await
        .unwrap();
    complete_range(&pool, &jobs[2].0, jobs[2].1, 0).await;
    let failed = runs::get(&pool, run.id).await.unwrap().unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    // The cursor moved over the completed prefix, never over the dead range.
    assert_eq!(cursor(&pool, list).await, Some(b1));

    // The next run reads only the dead range and what is new.
    let next = runs::create(&pool, list, request(RequestedMode::Auto))
        .await
        .unwrap();
    assert_eq!(next.since, Some(b1));
    let gaps = runs::gaps(&pool, next.id).await.unwrap();
    assert_eq!(
        gaps,
        vec![
            Interval {
                lo: Some(b1),
                hi: b2
            },
            Interval {
                lo: Some(run.until),
                hi: next.until
            }
        ]
        .into_iter()
        .filter(|g| g.lo.is_none_or(|lo| lo < g.hi))
        .collect::<Vec<_>>()
    );
    runs::cancel(&pool, next.id).await.unwrap();

    // Requeueing the failed run instead completes it: the cursor moves over the whole window.
    queue::requeue_run(&pool, run.id).await.unwrap();
    let job = claim_one(&pool, "w").await;
    let range: RangeArgs = serde_json::from_value(job.args.clone()).unwrap();
    complete_range(&pool, &job, range.range, 0).await;
    assert_eq!(
        runs::get(&pool, run.id).await.unwrap().unwrap().status,
        RunStatus::Completed
    );
    assert_eq!(cursor(&pool, list).await, Some(run.until));
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_since_later_than_the_cursor_never_moves_the_cursor_over_the_gap(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    settings::set_sync_lag(&pool, Duration::ZERO).await.unwrap();
    lists::reset_cursor(&pool, list, Some(at(1))).await.unwrap();
    let ahead = runs::create(&pool, list, request(RequestedMode::Since(at(5))))
        .await
        .unwrap();
    plan_into(&pool, &ahead, &[(Some(at(5)), ahead.until)]).await;
    let jobs = claim_ranges(&pool, 1).await;
    complete_range(&pool, &jobs[0].0, jobs[0].1, 0).await;
    assert_eq!(
        runs::get(&pool, ahead.id).await.unwrap().unwrap().status,
        RunStatus::Completed
    );
    assert_eq!(cursor(&pool, list).await, Some(at(1)), "the gap stays open");

    // The next run covers the gap, skips what the --since run delivered, then the cursor moves
    // over both.
    let next = runs::create(&pool, list, request(RequestedMode::Auto))
        .await
        .unwrap();
    let gaps = runs::gaps(&pool, next.id).await.unwrap();
    assert_eq!(
        gaps[0],
        Interval {
            lo: Some(at(1)),
            hi: at(5)
        }
    );
    assert!(gaps[1..].iter().all(|g| g.lo >= Some(ahead.until)));
    let plan = claim_one(&pool, "planner").await;
    queue::complete(&pool, plan.fence(), Completion::default())
        .await
        .unwrap();
    assert_eq!(cursor(&pool, list).await, Some(next.until));
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn reset_cursor_is_refused_while_a_run_is_active_and_forgets_coverage(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    settings::set_sync_lag(&pool, Duration::ZERO).await.unwrap();
    let run = runs::create(&pool, list, request(RequestedMode::Auto))
        .await
        .unwrap();
    let refused = lists::reset_cursor(&pool, list, Some(at(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ListError::RunActive { run_id, .. } if run_id == run.id),
        "{refused:?}"
    );
    assert!(refused.to_string().contains(&format!("run {}", run.id)));
    assert_eq!(cursor(&pool, list).await, None, "nothing changed");

    // A completed range of a cancelled run is coverage beyond the cursor ...
    plan_into(&pool, &run, &[(None, at(1)), (Some(at(1)), run.until)]).await;
    let jobs = claim_ranges(&pool, 2).await;
    complete_range(&pool, &jobs[1].0, jobs[1].1, 0).await;
    runs::cancel(&pool, run.id).await.unwrap();
    assert_eq!(cursor(&pool, list).await, None);
    let covered: i64 = sqlx::query_scalar("SELECT count(*) FROM importer.coverage")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(covered, 1);
    // ... which a reset forgets, so the next run re-delivers from the new cursor.
    lists::reset_cursor(&pool, list, Some(at(0))).await.unwrap();
    let next = runs::create(&pool, list, request(RequestedMode::Auto))
        .await
        .unwrap();
    let gaps = runs::gaps(&pool, next.id).await.unwrap();
    assert_eq!(
        gaps,
        vec![Interval {
            lo: Some(at(0)),
            hi: next.until
        }]
    );
    assert!(matches!(
        lists::reset_cursor(&pool, list + 100, None).await,
        Err(ListError::NotFound(_))
    ));
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_run_that_saw_its_window_move_fails_and_keeps_no_coverage(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    settings::set_sync_lag(&pool, Duration::ZERO).await.unwrap();
    let run = runs::create(&pool, list, request(RequestedMode::Auto))
        .await
        .unwrap();
    plan_into(&pool, &run, &[(None, at(1)), (Some(at(1)), run.until)]).await;
    let jobs = claim_ranges(&pool, 2).await;
    complete_range(&pool, &jobs[0].0, jobs[0].1, 0).await;
    complete_range(&pool, &jobs[1].0, jobs[1].1, 2).await;
    let failed = runs::get(&pool, run.id).await.unwrap().unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(failed.window_events, 2);
    assert!(failed.error.unwrap().contains("not frozen"));
    assert_eq!(cursor(&pool, list).await, None);
    let next = runs::create(&pool, list, request(RequestedMode::Auto))
        .await
        .unwrap();
    assert_eq!(
        runs::gaps(&pool, next.id).await.unwrap(),
        vec![Interval {
            lo: None,
            hi: next.until
        }],
        "the whole window is read again"
    );
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn checkpoints_count_what_was_delivered_and_a_retry_resumes_from_them(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let run = runs::create(&pool, list, request(RequestedMode::Auto))
        .await
        .unwrap();
    plan_into(&pool, &run, &[(None, run.until)]).await;
    let job = claim_one(&pool, "w").await;
    let mut args: RangeArgs = serde_json::from_value(job.args.clone()).unwrap();
    args.progress = Some(importer_core::range_reader::Progress {
        offset: 1000,
        total: Some(5000),
        restarts: 0,
        tail: vec![7, 8, 9],
        lane_start: None,
    });
    let rejected = RejectedRecord {
        member_id: Some("m1".into()),
        email: None,
        code: "missing_email",
        reason: "member has no email address".into(),
        member: None,
        excerpt: "{\"id\":\"m1\"}".into(),
    };
    let checkpoint = Checkpoint {
        args: serde_json::to_value(&args).unwrap(),
        records_imported: 999,
        rejected: vec![rejected],
        cost: Cost {
            members_read: 1000,
            requests: 1,
            window_events: 0,
        },
        children: Vec::new(),
        ..Checkpoint::default()
    };
    assert_eq!(
        queue::checkpoint(&pool, job.fence(), &checkpoint)
            .await
            .unwrap(),
        CheckpointOutcome::Recorded {
            idle_slots: 9,
            children: Vec::new()
        },
        "nine of the account's ten slots are free and nothing waits for them"
    );
    let during = runs::get(&pool, run.id).await.unwrap().unwrap();
    assert_eq!(
        (
            during.records_imported,
            during.records_rejected,
            during.members_read
        ),
        (999, 1, 1000)
    );
    let code: String = sqlx::query_scalar("SELECT code FROM importer.rejected_records")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(code, "missing_email");

    // The attempt fails; the retry sees the checkpoint in its arguments.
    queue::retry(&pool, &job, "destination 503", Some(Duration::ZERO))
        .await
        .unwrap();
    let again = claim_one(&pool, "w2").await;
    let resumed: RangeArgs = serde_json::from_value(again.args).unwrap();
    assert_eq!(resumed.progress.unwrap().offset, 1000);
    // A stale holder's checkpoint changes nothing.
    assert_eq!(
        queue::checkpoint(&pool, job.fence(), &checkpoint)
            .await
            .unwrap(),
        CheckpointOutcome::Fenced
    );
    assert_eq!(
        runs::get(&pool, run.id)
            .await
            .unwrap()
            .unwrap()
            .records_imported,
        999
    );
}

/// A lane enters the queue with the checkpoint whose arguments make it its parent's stop, or
/// not at all: a checkpoint that is fenced enqueues nothing.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_checkpoint_enqueues_its_lane_in_the_same_transaction(pool: PgPool) {
    let (account, list) = account_with_list(&pool, "acme", 10).await;
    let run = runs::create(&pool, list, request(RequestedMode::Auto))
        .await
        .unwrap();
    plan_into(&pool, &run, &[(None, run.until)]).await;
    let job = claim_one(&pool, "w").await;
    let lane = NewJob {
        kind: JobKind::ImportWindow,
        args: job.args.clone(),
        account_id: account,
        run_id: Some(run.id),
        max_attempts: job.max_attempts,
        run_after: None,
    };
    let checkpoint = Checkpoint {
        args: job.args.clone(),
        children: vec![lane],
        ..Checkpoint::default()
    };
    let before = runs::get(&pool, run.id).await.unwrap().unwrap();
    let CheckpointOutcome::Recorded { children, .. } =
        queue::checkpoint(&pool, job.fence(), &checkpoint)
            .await
            .unwrap()
    else {
        panic!("the fence holds");
    };
    assert_eq!(children.len(), 1);
    let waiting: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM importer.jobs WHERE locked_until IS NULL")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        waiting, children,
        "the lane waits in the queue, under its id"
    );
    let after = runs::get(&pool, run.id).await.unwrap().unwrap();
    assert_eq!(
        (after.jobs_total, after.jobs_pending),
        (before.jobs_total + 1, before.jobs_pending + 1)
    );

    queue::retry(&pool, &job, "destination 503", Some(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(
        queue::checkpoint(&pool, job.fence(), &checkpoint)
            .await
            .unwrap(),
        CheckpointOutcome::Fenced
    );
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM importer.jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(jobs, 2, "the stale holder's lane was not enqueued");
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn borrowed_slots_count_against_the_cap_and_go_back(pool: PgPool) {
    let (account, _) = account_with_list(&pool, "acme", 4).await;
    let ids = queue_support::enqueue_jobs(&pool, account, 6).await;
    assert_eq!(ids.len(), 6);
    let first = claim_one(&pool, "planner").await;
    assert_eq!(
        queue::borrow_slots(&pool, first.fence(), 10).await.unwrap(),
        Some(3),
        "all the account's free slots, no more"
    );
    assert_eq!(live_slots(&pool, account).await, 4);
    assert!(queue::claim(&pool, "w", 5, LEASE).await.unwrap().is_empty());
    assert!(queue::return_slots(&pool, first.fence()).await.unwrap());
    assert_eq!(live_slots(&pool, account).await, 1);
    assert_eq!(queue::claim(&pool, "w", 5, LEASE).await.unwrap().len(), 3);
    assert_eq!(
        queue::borrow_slots(&pool, first.fence(), 2).await.unwrap(),
        Some(0),
        "nothing is free"
    );
    // A fence that no longer holds borrows nothing.
    queue::release(&pool, &[first.fence()]).await.unwrap();
    assert_eq!(
        queue::borrow_slots(&pool, first.fence(), 2).await.unwrap(),
        None
    );
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_lane_records_its_heads_once_and_an_unstarted_lane_can_be_taken_back(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let run = runs::create(&pool, list, request(RequestedMode::Auto))
        .await
        .unwrap();
    plan_into(&pool, &run, &[(None, run.until)]).await;
    let lane = importer_core::lanes::create(&pool, run.id, 5_000)
        .await
        .unwrap();
    assert_eq!(
        importer_core::lanes::heads(&pool, lane).await.unwrap(),
        None
    );
    assert_eq!(
        importer_core::lanes::record_heads(&pool, lane, &[1, u64::MAX, 3])
            .await
            .unwrap(),
        vec![1, u64::MAX, 3]
    );
    assert_eq!(
        importer_core::lanes::record_heads(&pool, lane, &[9])
            .await
            .unwrap(),
        vec![1, u64::MAX, 3],
        "a later attempt learns the heads it must start from"
    );
    assert_eq!(
        importer_core::lanes::heads(&pool, lane).await.unwrap(),
        Some(vec![1, u64::MAX, 3]),
        "the first heads stay: the reader before the lane may already stop at them"
    );

    let parent = claim_one(&pool, "w").await;
    let child = queue::enqueue(&pool, &range_job(run.account_id, run.id, None, run.until))
        .await
        .unwrap();
    assert!(queue::withdraw(&pool, child).await.unwrap());
    assert!(!queue::withdraw(&pool, child).await.unwrap(), "once");
    assert!(
        !queue::withdraw(&pool, parent.id).await.unwrap(),
        "a claimed job is not taken back"
    );
    let counted = runs::get(&pool, run.id).await.unwrap().unwrap();
    assert_eq!(
        (counted.jobs_total, counted.jobs_done, counted.jobs_pending),
        (3, 2, 1),
        "the withdrawn lane counts as done"
    );
}

/// Regression: a lane whose job waited again after its first read (retried, snoozed or
/// released after recording its heads) was taken back, and the reader before it, resumed from
/// a checkpoint naming it, stopped at those heads: the lane's share was read by nobody.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_lane_that_has_read_is_never_taken_back(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let run = runs::create(&pool, list, request(RequestedMode::Auto))
        .await
        .unwrap();
    plan_into(&pool, &run, &[(None, run.until)]).await;
    let lane = importer_core::lanes::create(&pool, run.id, 5_000)
        .await
        .unwrap();
    let job = queue::enqueue(&pool, &range_job(run.account_id, run.id, None, run.until))
        .await
        .unwrap();
    importer_core::lanes::record_heads(&pool, lane, &[4, 2])
        .await
        .unwrap();
    assert!(
        !importer_core::lanes::withdraw(&pool, lane, job)
            .await
            .unwrap(),
        "the lane has read: the reader before it may stop at its heads"
    );
    assert_eq!(
        importer_core::lanes::heads(&pool, lane).await.unwrap(),
        Some(vec![4, 2])
    );
    let waiting: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM importer.jobs WHERE id = $1)")
            .bind(job)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(waiting, "its job stays, to read the lane's share");
}

/// Regression: a lane taken back stayed without heads, so a retry of its parent from a
/// checkpoint that still named it (the parent killed before checkpointing the stop it took
/// back) waited for a lane that would never read. Taken back, a lane reads nothing; a lane
/// already claimed is neither taken back nor marked.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_lane_taken_back_reads_nothing(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let run = runs::create(&pool, list, request(RequestedMode::Auto))
        .await
        .unwrap();
    plan_into(&pool, &run, &[(None, run.until)]).await;
    let claimed = claim_one(&pool, "w").await;
    let claimed_lane = importer_core::lanes::create(&pool, run.id, 1_000)
        .await
        .unwrap();
    assert!(
        !importer_core::lanes::withdraw(&pool, claimed_lane, claimed.id)
            .await
            .unwrap(),
        "a claimed lane is not taken back"
    );
    assert_eq!(
        importer_core::lanes::heads(&pool, claimed_lane)
            .await
            .unwrap(),
        None,
        "nor marked: it is about to read"
    );

    let lane = importer_core::lanes::create(&pool, run.id, 5_000)
        .await
        .unwrap();
    let job = queue::enqueue(&pool, &range_job(run.account_id, run.id, None, run.until))
        .await
        .unwrap();
    assert!(importer_core::lanes::withdraw(&pool, lane, job)
        .await
        .unwrap());
    assert_eq!(
        importer_core::lanes::heads(&pool, lane).await.unwrap(),
        Some(Vec::new()),
        "a lane taken back reads nothing"
    );
}
