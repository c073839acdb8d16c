//! `runs ...` through the real binary; job outcomes are produced with the queue API, as a
//! worker would.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use common::Admin;
use importer_core::queue::{self, ClaimedJob, Completion};
use sqlx::PgPool;

async fn claim_one(pool: &PgPool) -> ClaimedJob {
    let mut jobs = queue::claim(pool, "test-worker", 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "one job to claim");
    jobs.remove(0)
}

fn setup(pool: &PgPool) -> Admin {
    let admin = Admin::new(pool);
    admin.add_account("acme");
    admin.add_list("acme", "abc123");
    admin
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_run_can_be_started_listed_shown_and_cancelled(pool: PgPool) {
    let admin = setup(&pool);
    let started = admin.run(&["runs", "start", "acme/abc123"]).ok();
    assert!(
        started.stdout.contains("started full run 1 of acme/abc123"),
        "{}",
        started.stdout
    );
    assert!(
        started.stdout.contains("importer-admin runs watch 1"),
        "{}",
        started.stdout
    );

    let listed = admin
        .run(&["runs", "list", "--status", "planning", "--account", "acme"])
        .ok();
    assert!(listed.stdout.contains("acme/abc123"), "{}", listed.stdout);
    let none = admin.run(&["runs", "list", "--status", "completed"]).ok();
    assert!(none.stdout.contains("no runs match"), "{}", none.stdout);

    let shown = admin.run(&["runs", "show", "1"]).ok();
    for field in [
        "window",
        "percent",
        "jobs",
        "records imported",
        "records/s",
        "planning",
    ] {
        assert!(shown.stdout.contains(field), "{field}: {}", shown.stdout);
    }

    let cancelled = admin.run(&["runs", "cancel", "1"]).ok();
    assert!(
        cancelled.stdout.contains("cancelled run 1"),
        "{}",
        cancelled.stdout
    );
    let status: String = sqlx::query_scalar("SELECT status FROM importer.runs WHERE id = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "cancelled");
    let again = admin.run(&["runs", "cancel", "1"]).code(1);
    assert!(
        again.stderr.contains("run 1 is cancelled, not active"),
        "{}",
        again.stderr
    );
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_second_active_run_is_refused_naming_the_active_run(pool: PgPool) {
    let admin = setup(&pool);
    admin.run(&["runs", "start", "acme/abc123", "--full"]).ok();
    let refused = admin.run(&["runs", "start", "1"]).code(1);
    assert!(
        refused.stderr.contains("run 1 is already active"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("importer-admin runs cancel 1"),
        "{}",
        refused.stderr
    );
    assert_eq!(refused.stderr.lines().count(), 1, "{}", refused.stderr);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn runs_start_since_creates_an_incremental_run_and_json_parses_back(pool: PgPool) {
    let admin = setup(&pool);
    let run = admin
        .run(&[
            "--output",
            "json",
            "runs",
            "start",
            "acme/abc123",
            "--since",
            "2026-01-01T00:00:00Z",
        ])
        .ok()
        .json();
    assert_eq!(run["mode"], "incremental");
    assert_eq!(run["since"], "2026-01-01T00:00:00Z");
    assert_eq!(run["trigger"], "admin");
    let listed = admin.run(&["--output", "json", "runs", "list"]).ok().json();
    assert_eq!(listed[0]["run_id"], run["run_id"]);
    let shown = admin
        .run(&["--output", "json", "runs", "show", "1"])
        .ok()
        .json();
    assert_eq!(shown["status"], "planning");
    assert!(shown["dead_errors"].as_array().unwrap().is_empty());
    let future = admin
        .run(&[
            "runs",
            "start",
            "acme/abc123",
            "--since",
            "2999-01-01T00:00:00Z",
        ])
        .code(1);
    assert!(future.stderr.contains("in the future") || future.stderr.contains("already active"));
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn watch_exits_zero_when_the_run_completed(pool: PgPool) {
    let admin = setup(&pool);
    admin.run(&["runs", "start", "acme/abc123"]).ok();
    let plan = claim_one(&pool).await;
    let completion = Completion {
        members_total: Some(0),
        ..Completion::default()
    };
    assert!(!queue::complete(&pool, plan.fence(), completion)
        .await
        .unwrap()
        .is_fenced());
    let watched = admin
        .run(&["runs", "watch", "1", "--interval-ms", "50"])
        .ok();
    assert!(
        watched
            .stdout
            .contains("run 1 acme/abc123 completed 100.0%"),
        "{}",
        watched.stdout
    );
    let synced: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT synced_until FROM importer.lists WHERE id = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(synced.is_some());
    // With no active run, watch without an id has nothing to do.
    let idle = admin.run(&["runs", "watch"]).ok();
    assert!(idle.stdout.contains("no active runs"), "{}", idle.stdout);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn watch_exits_one_when_the_run_failed_and_show_names_the_error(pool: PgPool) {
    let admin = setup(&pool);
    admin.run(&["runs", "start", "acme/abc123"]).ok();
    let plan = claim_one(&pool).await;
    assert!(
        queue::dead_letter(&pool, plan.fence(), "HTTP 401: API Key Invalid")
            .await
            .unwrap()
    );
    let watched = admin
        .run(&["runs", "watch", "--interval-ms", "50", "1"])
        .code(1);
    assert!(watched.stdout.contains("failed"), "{}", watched.stdout);
    assert!(
        watched.stderr.contains("run 1 of acme/abc123 failed"),
        "{}",
        watched.stderr
    );
    let shown = admin.run(&["runs", "show", "1"]).ok();
    assert!(
        shown.stdout.contains("HTTP 401: API Key Invalid"),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains("dead requeue --run 1"),
        "{}",
        shown.stdout
    );
    let json = admin
        .run(&["--output", "json", "runs", "show", "1"])
        .ok()
        .json();
    assert_eq!(json["dead_errors"][0]["jobs"], 1);
    assert_eq!(json["jobs_dead"], 1);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn watch_shows_progress_lines_until_the_run_finishes(pool: PgPool) {
    let admin = setup(&pool);
    admin.run(&["runs", "start", "acme/abc123"]).ok();
    let mut watcher = admin.spawn(&["runs", "watch", "1", "--interval-ms", "50"]);
    let mut stdout = BufReader::new(watcher.stdout.take().unwrap()).lines();
    // Probe: the watcher reports the planning run before anything happens to it.
    let first = stdout.next().unwrap().unwrap();
    assert!(first.starts_with("run 1 acme/abc123 planning"), "{first}");
    let plan = claim_one(&pool).await;
    let completion = Completion {
        members_total: Some(0),
        ..Completion::default()
    };
    queue::complete(&pool, plan.fence(), completion)
        .await
        .unwrap();
    let rest: Vec<String> = stdout.map(Result::unwrap).collect();
    assert!(watcher.wait().unwrap().success(), "{rest:?}");
    let last_line = rest.iter().rev().find(|l| l.starts_with("run 1 ")).unwrap();
    assert!(last_line.contains("completed 100.0%"), "{rest:?}");
    // The summary table follows the progress lines.
    assert!(rest.iter().any(|l| l.contains("rec/s")), "{rest:?}");
}
