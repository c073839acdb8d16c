//! `lists ...` through the real binary.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{DateTime, Utc};
use common::Admin;
use sqlx::PgPool;

async fn list_row(pool: &PgPool, id: i64) -> (bool, f64, Option<DateTime<Utc>>) {
    sqlx::query_as(
        "SELECT enabled, extract(epoch FROM schedule)::float8, synced_until
           FROM importer.lists WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn lists_can_be_added_listed_enabled_disabled_rescheduled_and_reset(pool: PgPool) {
    let admin = Admin::new(&pool);
    admin.add_account("acme");
    let added = admin
        .run(&[
            "lists",
            "add",
            "--account",
            "acme",
            "--list-id",
            "a1b2c3",
            "--name",
            "Newsletter",
            "--schedule",
            "30m",
            "--disabled",
        ])
        .ok();
    assert!(
        added.stdout.contains("added list acme/a1b2c3 (id 1)"),
        "{}",
        added.stdout
    );
    assert_eq!(list_row(&pool, 1).await, (false, 1800.0, None));

    let listed = admin.run(&["lists", "list", "--account", "acme"]).ok();
    assert!(listed.stdout.contains("Newsletter"), "{}", listed.stdout);
    assert!(
        listed.stdout.contains("never (next run full)"),
        "{}",
        listed.stdout
    );

    admin.run(&["lists", "enable", "acme/a1b2c3"]).ok();
    assert!(list_row(&pool, 1).await.0);
    admin.run(&["lists", "disable", "1"]).ok();
    assert!(!list_row(&pool, 1).await.0);

    let rescheduled = admin.run(&["lists", "set-schedule", "1", "1d"]).ok();
    assert!(
        rescheduled.stdout.contains("now synced every 1d"),
        "{}",
        rescheduled.stdout
    );
    assert_eq!(list_row(&pool, 1).await.1, 86_400.0);

    let reset = admin
        .run(&[
            "lists",
            "reset-cursor",
            "acme/a1b2c3",
            "--to",
            "2026-11-01T00:00:00Z",
        ])
        .ok();
    assert!(
        reset.stdout.contains("cursor set to 2026-11-01T00:00:00Z"),
        "{}",
        reset.stdout
    );
    assert_eq!(
        list_row(&pool, 1).await.2.unwrap().to_rfc3339(),
        "2026-11-01T00:00:00+00:00"
    );
    let cleared = admin.run(&["lists", "reset-cursor", "acme/a1b2c3"]).ok();
    assert!(
        cleared.stdout.contains("the next run is a full sync"),
        "{}",
        cleared.stdout
    );
    assert_eq!(list_row(&pool, 1).await.2, None);

    // While a run is active the cursor cannot be moved: the message names the run.
    admin.run(&["runs", "start", "acme/a1b2c3"]).ok();
    let refused = admin
        .run(&[
            "lists",
            "reset-cursor",
            "acme/a1b2c3",
            "--to",
            "2026-10-01T00:00:00Z",
        ])
        .code(1);
    assert!(
        refused.stderr.contains("has an active run 1") && refused.stderr.contains("runs cancel 1"),
        "{}",
        refused.stderr
    );
    assert_eq!(list_row(&pool, 1).await.2, None, "nothing changed");
    admin.run(&["runs", "cancel", "1"]).ok();
    admin
        .run(&[
            "lists",
            "reset-cursor",
            "acme/a1b2c3",
            "--to",
            "2026-10-01T00:00:00Z",
        ])
        .ok();
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn sync_lags_are_shown_and_set_for_the_deployment_and_per_list(pool: PgPool) {
    let admin = Admin::new(&pool);
    admin.add_account("acme");
    admin.add_list("acme", "a1b2c3");
    let shown = admin.run(&["settings", "show"]).ok();
    assert!(shown.stdout.contains("1m"), "{}", shown.stdout);
    let set = admin
        .run(&["--output", "json", "settings", "set", "--sync-lag", "90s"])
        .ok()
        .json();
    assert_eq!(set["sync_lag_secs"], 90.0);
    admin.run(&["settings", "set", "--sync-lag", "2d"]).code(1);
    let per_list = admin
        .run(&["lists", "set-sync-lag", "acme/a1b2c3", "30s"])
        .ok();
    assert!(
        per_list.stdout.contains("sync lag of 30s"),
        "{}",
        per_list.stdout
    );
    let listed = admin
        .run(&["--output", "json", "lists", "list"])
        .ok()
        .json();
    assert_eq!(listed[0]["sync_lag_secs"], 30.0);
    admin
        .run(&["lists", "set-sync-lag", "acme/a1b2c3", "default"])
        .ok();
    let listed = admin
        .run(&["--output", "json", "lists", "list"])
        .ok()
        .json();
    assert!(listed[0]["sync_lag_secs"].is_null());
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn json_output_of_lists_parses_back(pool: PgPool) {
    let admin = Admin::new(&pool);
    admin.add_account("acme");
    admin.add_account("globex");
    admin.add_list("acme", "one");
    admin.add_list("globex", "two");
    let all = admin
        .run(&["--output", "json", "lists", "list"])
        .ok()
        .json();
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert_eq!(all[0]["schedule"], "1h");
    assert_eq!(all[0]["schedule_secs"], 3600);
    assert!(all[0]["synced_until"].is_null());
    let globex = admin
        .run(&["--output", "json", "lists", "list", "--account", "globex"])
        .ok()
        .json();
    assert_eq!(globex.as_array().unwrap().len(), 1);
    assert_eq!(globex[0]["account"], "globex");
    assert_eq!(globex[0]["mailchimp_list_id"], "two");
    let changed = admin
        .run(&["--output", "json", "lists", "disable", "globex/two"])
        .ok()
        .json();
    assert_eq!(changed["enabled"], false);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn bad_list_arguments_are_refused_with_the_reason(pool: PgPool) {
    let admin = Admin::new(&pool);
    admin.add_account("acme");
    let short = admin
        .run(&[
            "lists",
            "add",
            "--account",
            "acme",
            "--list-id",
            "abc",
            "--schedule",
            "30s",
        ])
        .code(2);
    assert!(
        short.stderr.contains("between 1 minute and 31 days"),
        "{}",
        short.stderr
    );
    // Regression (issue 9, defect 8): an absurd schedule is refused before it reaches the tick.
    let absurd = admin
        .run(&[
            "lists",
            "add",
            "--account",
            "acme",
            "--list-id",
            "abc",
            "--schedule",
            "520000w",
        ])
        .code(2);
    assert!(
        absurd.stderr.contains("between 1 minute and 31 days"),
        "{}",
        absurd.stderr
    );
    let bad_interval = admin
        .run(&[
            "lists",
            "add",
            "--account",
            "acme",
            "--list-id",
            "abc",
            "--schedule",
            "hourly",
        ])
        .code(2);
    assert!(
        bad_interval.stderr.contains("e.g. 30m, 1h, 1d"),
        "{}",
        bad_interval.stderr
    );
    let bad_id = admin
        .run(&[
            "lists",
            "add",
            "--account",
            "acme",
            "--list-id",
            "no/slashes",
        ])
        .code(1);
    assert!(
        bad_id.stderr.contains("letters, digits, - or _"),
        "{}",
        bad_id.stderr
    );
    admin.add_list("acme", "abc");
    // Regression: ids with '-' or '_' were refused by the CLI and the schema alike.
    admin.add_list("acme", "list-1_b");
    let duplicate = admin
        .run(&["lists", "add", "--account", "acme", "--list-id", "abc"])
        .code(1);
    assert!(
        duplicate.stderr.contains("already has Mailchimp list"),
        "{}",
        duplicate.stderr
    );
    admin
        .run(&[
            "lists",
            "add",
            "--account",
            "acme",
            "--list-id",
            "abc",
            "--if-not-exists",
        ])
        .ok();
    let unknown = admin.run(&["lists", "enable", "acme/nope"]).code(1);
    assert!(
        unknown.stderr.contains("no list \"acme/nope\""),
        "{}",
        unknown.stderr
    );
    let no_account = admin
        .run(&["lists", "add", "--account", "ghost", "--list-id", "x"])
        .code(1);
    assert!(
        no_account.stderr.contains("no account named \"ghost\""),
        "{}",
        no_account.stderr
    );
}
