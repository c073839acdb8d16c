//! The scheduler tick: each due run created once, even by concurrent callers; lists with an
//! active run, of a paused account, or disabled get none; idempotent within a slot.
#![allow(clippy::unwrap_used)]

mod queue_support;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use importer_core::queue::{self, Completion, JobKind};
use importer_core::runs::{self, RunMode, RunStatus, Trigger};
use importer_core::{accounts, lists, tick};
use queue_support::{account, account_with_list, admin_run, list, pool, pools, LEASE};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::Barrier;

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, h, m, 0).unwrap()
}

/// The slot `importer.tick` gives `list` at `now`: its fixed phase within the schedule of
/// `period` seconds, `((id mod s) * 7919) mod s`, plus whole periods.
fn slot_of(list: i64, period: i64, now: DateTime<Utc>) -> DateTime<Utc> {
    let phase = ((list % period) * 7919) % period;
    let slot = phase + (now.timestamp() - phase).div_euclid(period) * period;
    DateTime::from_timestamp(slot, 0).unwrap()
}

async fn runs_of(pool: &PgPool, list: i64) -> Vec<runs::Run> {
    let filter = runs::RunFilter {
        list_id: Some(list),
        ..Default::default()
    };
    runs::list(pool, &filter).await.unwrap()
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn concurrent_ticks_create_each_due_run_once(_: PgPoolOptions, connect: PgConnectOptions) {
    let setup = pool(&connect, 2).await;
    let mut due = Vec::new();
    for a in 0..5 {
        let account = account(&setup, &format!("acct{a}"), 10).await;
        for l in 0..20 {
            due.push(list(&setup, account, &format!("a{a}l{l}")).await);
        }
    }
    let now = at(10, 17);
    let started = Utc::now();
    let barrier = Arc::new(Barrier::new(4));
    let mut ticks = tokio::task::JoinSet::new();
    for pool in pools(&connect, 4).await {
        let barrier = barrier.clone();
        ticks.spawn(async move {
            barrier.wait().await;
            tick::tick(&pool, Some(now)).await.unwrap()
        });
    }
    let mut created = Vec::new();
    while let Some(result) = ticks.join_next().await {
        created.extend(result.unwrap());
    }
    created.sort_by_key(|t| t.list_id);
    let lists: Vec<i64> = created.iter().map(|t| t.list_id).collect();
    assert_eq!(
        lists, due,
        "every due list got exactly one run, across all callers"
    );

    let runs: Vec<(i64, String, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT list_id, mode, scheduled_for, until FROM importer.runs ORDER BY list_id",
    )
    .fetch_all(&setup)
    .await
    .unwrap();
    assert_eq!(runs.len(), due.len());
    // `now` picks the slot; the window ends at the database clock minus the sync lag.
    let lag = chrono::Duration::seconds(60);
    let window_end = (started - lag - chrono::Duration::seconds(1))..=(Utc::now() - lag);
    assert!(runs.iter().all(|(list, mode, slot, until)| mode == "full"
        && *slot == slot_of(*list, 3600, now)
        && window_end.contains(until)));
    let phases: std::collections::HashSet<DateTime<Utc>> = runs.iter().map(|r| r.2).collect();
    assert!(
        phases.len() > due.len() / 2,
        "lists are spread over the hour, not all at its top"
    );
    let plans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM importer.jobs j JOIN importer.runs r ON r.id = j.run_id
          WHERE j.kind = 'plan_run' AND j.args = jsonb_build_object('run_id', r.id)",
    )
    .fetch_one(&setup)
    .await
    .unwrap();
    assert_eq!(plans, due.len() as i64, "each run has its plan job");
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn tick_skips_active_paused_and_disabled_lists(pool: PgPool) {
    let (_, due) = account_with_list(&pool, "due", 10).await;
    let (_, busy) = account_with_list(&pool, "busy", 10).await;
    let (paused_account, paused) = account_with_list(&pool, "paused", 10).await;
    let (_, disabled) = account_with_list(&pool, "disabled", 10).await;
    let manual = admin_run(&pool, busy).await;
    accounts::set_paused(&pool, paused_account, true)
        .await
        .unwrap();
    lists::set_enabled(&pool, disabled, false).await.unwrap();

    let created = tick::tick(&pool, Some(Utc::now())).await.unwrap();
    assert_eq!(
        created.iter().map(|t| t.list_id).collect::<Vec<_>>(),
        vec![due]
    );
    assert_eq!(runs_of(&pool, busy).await.len(), 1);
    assert_eq!(runs_of(&pool, busy).await[0].id, manual.id);
    assert!(runs_of(&pool, paused).await.is_empty());
    assert!(runs_of(&pool, disabled).await.is_empty());

    // Resumed and re-enabled lists are picked up by the next tick of the same slot.
    accounts::set_paused(&pool, paused_account, false)
        .await
        .unwrap();
    lists::set_enabled(&pool, disabled, true).await.unwrap();
    let mut created: Vec<i64> = tick::tick(&pool, Some(Utc::now()))
        .await
        .unwrap()
        .iter()
        .map(|t| t.list_id)
        .collect();
    created.sort_unstable();
    assert_eq!(created, vec![paused, disabled]);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn tick_is_idempotent_within_a_slot_and_creates_the_next_slot_incrementally(pool: PgPool) {
    let (_, list) = account_with_list(&pool, "acme", 10).await;
    let hour = chrono::Duration::hours(1);
    let minutes = chrono::Duration::minutes;
    // A slot of this list, and instants inside it and the next one.
    let slot = slot_of(list, 3600, at(10, 30));
    let first_at = slot + minutes(5);
    let first = tick::tick(&pool, Some(first_at)).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].list_id, first[0].mode), (list, RunMode::Full));
    assert!(tick::tick(&pool, Some(first_at)).await.unwrap().is_empty());
    assert!(tick::tick(&pool, Some(slot + minutes(59)))
        .await
        .unwrap()
        .is_empty());
    // Next slot, but the previous run is still active: nothing.
    assert!(tick::tick(&pool, Some(slot + hour + minutes(1)))
        .await
        .unwrap()
        .is_empty());

    // Finish the first run (a plan with nothing to import).
    let plan = queue::claim(&pool, "w", 10, LEASE).await.unwrap();
    assert_eq!(plan.len(), 1);
    assert_eq!(plan[0].kind, JobKind::PlanRun);
    queue::complete(&pool, plan[0].fence(), Completion::default())
        .await
        .unwrap();
    let done = runs::get(&pool, first[0].run_id).await.unwrap().unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert!(done.until <= Utc::now() - chrono::Duration::seconds(60));

    // The finished run's slot stays filled; the next slot gets an incremental run.
    assert!(tick::tick(&pool, Some(slot + minutes(30)))
        .await
        .unwrap()
        .is_empty());
    let second_at = slot + hour + minutes(2);
    let second = tick::tick(&pool, Some(second_at)).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].mode, RunMode::Incremental);
    let run = runs::get(&pool, second[0].run_id).await.unwrap().unwrap();
    assert_eq!(run.since, Some(done.until), "since = the cursor");
    assert!(run.until >= done.until);
    assert_eq!(run.scheduled_for, Some(slot + hour));
    assert_eq!(run.trigger, Trigger::Schedule);
    assert!(tick::tick(&pool, Some(slot + hour + minutes(3)))
        .await
        .unwrap()
        .is_empty());
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn slots_follow_each_lists_schedule(pool: PgPool) {
    let account = account(&pool, "acme", 10).await;
    let quarter = list(&pool, account, "quarter").await;
    lists::set_schedule(&pool, quarter, std::time::Duration::from_secs(15 * 60))
        .await
        .unwrap();
    let daily = list(&pool, account, "daily").await;
    lists::set_schedule(&pool, daily, std::time::Duration::from_secs(86_400))
        .await
        .unwrap();
    let now = at(10, 50);
    tick::tick(&pool, Some(now)).await.unwrap();
    let slot = |runs: Vec<runs::Run>| runs[0].scheduled_for.unwrap();
    let quarter_slot = slot(runs_of(&pool, quarter).await);
    assert_eq!(quarter_slot, slot_of(quarter, 900, now));
    assert!(quarter_slot <= now && now - quarter_slot < chrono::Duration::minutes(15));
    let daily_slot = slot(runs_of(&pool, daily).await);
    assert_eq!(daily_slot, slot_of(daily, 86_400, now));
    assert!(daily_slot <= now && now - daily_slot < chrono::Duration::days(1));
}

/// Regression (issue 9, defect 8): `schedule = '10000 years'` on one list made
/// `importer.tick` fail for every list. Schedules are bounded by the schema and by
/// `lists::set_schedule`, and the tick reads them through a clamp.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn one_absurd_schedule_cannot_break_the_tick(pool: PgPool) {
    let account = account(&pool, "acme", 10).await;
    let normal = list(&pool, account, "normal").await;
    let monthly = list(&pool, account, "monthly").await;

    let refused =
        sqlx::query("UPDATE importer.lists SET schedule = interval '10000 years' WHERE id = $1")
            .bind(monthly)
            .execute(&pool)
            .await
            .unwrap_err();
    assert!(
        refused.to_string().contains("lists_schedule_bounds"),
        "{refused}"
    );
    let err = lists::set_schedule(
        &pool,
        monthly,
        std::time::Duration::from_secs(86_400 * 365 * 10_000),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, lists::ListError::Invalid(_)), "{err}");
    assert!(
        err.to_string().contains("between 1 minute and 31 days"),
        "{err}"
    );

    // The longest schedule allowed ticks like any other, and so does its neighbour.
    lists::set_schedule(&pool, monthly, lists::MAX_SCHEDULE)
        .await
        .unwrap();
    tick::tick(&pool, Some(at(10, 50))).await.unwrap();
    assert_eq!(runs_of(&pool, normal).await.len(), 1);
    assert_eq!(runs_of(&pool, monthly).await.len(), 1);

    // Whatever a row could hold, the tick's arithmetic is clamped.
    let clamped: Vec<i64> = sqlx::query_scalar(
        "SELECT importer.schedule_period(s) FROM unnest(ARRAY[interval '1 second',
                interval '10000 years', interval '1 hour']) s",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(clamped, vec![60, 31 * 86_400, 3600]);
}

/// Audits are scheduled like syncs, at the list's phase of its audit period, once per slot:
/// for lists with a sync completed before the slot began, never beside an active run (the
/// sync comes first), and never in place of a sync that falls on the same instant.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn the_tick_audits_a_synced_list_once_per_period_after_its_sync(pool: PgPool) {
    let (_, synced) = account_with_list(&pool, "acme", 10).await;
    let (_, never) = account_with_list(&pool, "globex", 10).await;
    let audits = |runs: &[tick::TickedRun]| -> Vec<i64> {
        runs.iter()
            .filter(|r| r.mode == RunMode::Audit)
            .map(|r| r.list_id)
            .collect()
    };
    // Both lists get their first sync; one completes, the other is cancelled.
    let first = tick::tick(&pool, None).await.unwrap();
    assert_eq!(first.len(), 2);
    assert!(audits(&first).is_empty());
    let plan = queue::claim(&pool, "w", 1, LEASE).await.unwrap().remove(0);
    let (done, other) = match plan.run_id {
        Some(id) if id == first[0].run_id => (first[0], first[1]),
        _ => (first[1], first[0]),
    };
    queue::complete(
        &pool,
        plan.fence(),
        Completion {
            members_total: Some(0),
            ..Completion::default()
        },
    )
    .await
    .unwrap();
    runs::cancel(&pool, other.run_id).await.unwrap();
    let synced_list = done.list_id;
    assert!([synced, never].contains(&synced_list));

    // This week's audit slot began before that sync finished: no audit yet.
    assert!(audits(&tick::tick(&pool, None).await.unwrap()).is_empty());

    // Next week: the syncs come first, then, once they are done, the audit of the synced list.
    let later = Utc::now() + chrono::Duration::days(8);
    let syncs = tick::tick(&pool, Some(later)).await.unwrap();
    assert!(audits(&syncs).is_empty(), "{syncs:?}");
    for r in &syncs {
        runs::cancel(&pool, r.run_id).await.unwrap();
    }
    let due = tick::tick(&pool, Some(later)).await.unwrap();
    assert_eq!(audits(&due), vec![synced_list], "{due:?}");
    let audit = runs::get(&pool, due[0].run_id).await.unwrap().unwrap();
    assert_eq!(audit.mode, RunMode::Audit);
    assert_eq!(audit.trigger, Trigger::Schedule);
    assert_eq!(
        audit.scheduled_for,
        Some(slot_of(synced_list, 7 * 86_400, later))
    );
    assert_eq!(audit.since, None);
    let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM importer.jobs WHERE run_id = $1")
        .bind(audit.id)
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(kinds, vec!["audit_list".to_owned()]);

    // Once per slot.
    runs::cancel(&pool, audit.id).await.unwrap();
    assert!(audits(&tick::tick(&pool, Some(later)).await.unwrap()).is_empty());

    // A list audited only on request gets none.
    lists::set_audit_every(&pool, synced_list, None)
        .await
        .unwrap();
    let week_after = later + chrono::Duration::days(7);
    for r in tick::tick(&pool, Some(week_after)).await.unwrap() {
        runs::cancel(&pool, r.run_id).await.unwrap();
    }
    assert!(audits(&tick::tick(&pool, Some(week_after)).await.unwrap()).is_empty());
}
