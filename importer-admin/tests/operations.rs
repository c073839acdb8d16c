//! `migrate`, `queue`, `tick` and connection errors through the real binary.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{with_database, Admin};
use importer_core::queue;
use sqlx::PgPool;

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn migrate_check_on_a_migrated_database_reports_nothing_pending(pool: PgPool) {
    let admin = Admin::new(&pool);
    let checked = admin.run(&["migrate", "--check"]).ok();
    assert!(
        checked.stdout.contains("database is up to date"),
        "{}",
        checked.stdout
    );
    let migrated = admin.run(&["migrate"]).ok();
    assert!(
        migrated.stdout.contains("database is up to date"),
        "{}",
        migrated.stdout
    );
    let json = admin
        .run(&["--output", "json", "migrate", "--check"])
        .ok()
        .json();
    let migrations = json.as_array().unwrap();
    assert!(!migrations.is_empty());
    assert!(migrations.iter().all(|m| m["applied"] == true), "{json}");
}

#[sqlx::test(migrations = false)]
async fn migrate_applies_pending_migrations_once_and_check_fails_before(pool: PgPool) {
    let admin = Admin::new(&pool);
    let unmigrated = admin.run(&["accounts", "list"]).code(1);
    assert!(
        unmigrated
            .stderr
            .contains("run importer-admin migrate first"),
        "{}",
        unmigrated.stderr
    );
    let pending = admin.run(&["migrate", "--check"]).code(1);
    let all = importer_core::MIGRATOR.iter().count();
    assert!(
        pending
            .stdout
            .contains(&format!("pending: {all} migrations")),
        "{}",
        pending.stdout
    );
    assert!(
        pending
            .stderr
            .contains("migrations pending; apply with importer-admin migrate"),
        "{}",
        pending.stderr
    );
    // --check changes nothing.
    let bookkeeping: bool =
        sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!bookkeeping);

    let applied = admin.run(&["migrate"]).ok();
    assert!(applied.stdout.contains("applied"), "{}", applied.stdout);
    admin.run(&["migrate", "--check"]).ok();
    let again = admin.run(&["migrate"]).ok();
    assert!(again.stdout.contains("up to date"), "{}", again.stdout);
    admin.run(&["accounts", "list"]).ok();
}

#[test]
fn an_unreachable_database_is_one_clear_sentence_without_the_password() {
    let admin = Admin::with_url(Some(
        "postgres://postgres:hunter2-secret@127.0.0.1:1/importer".to_owned(),
    ));
    let failed = admin.run(&["accounts", "list"]).code(1);
    assert_eq!(
        failed.stderr.trim(),
        "error: cannot connect to PostgreSQL at 127.0.0.1:1: connection refused; set DATABASE_URL (or --database-url)"
    );
    assert!(failed.stdout.is_empty());
    // The flag overrides the environment, and the password stays hidden there too.
    let flagged = Admin::with_url(None)
        .run(&[
            "--database-url",
            "postgres://u:hunter2-secret@127.0.0.1:1/x",
            "queue",
        ])
        .code(1);
    assert!(
        flagged.stderr.contains("127.0.0.1:1: connection refused"),
        "{}",
        flagged.stderr
    );
    assert!(!flagged.all().contains("hunter2"), "{}", flagged.all());
    let help = admin.run(&["--help"]).ok();
    assert!(
        !help.all().contains("hunter2"),
        "--help shows no env value: {}",
        help.stdout
    );
}

#[test]
fn a_missing_database_url_is_a_usage_error() {
    let failed = Admin::with_url(None).run(&["accounts", "list"]).code(2);
    assert!(
        failed.stderr.contains("set DATABASE_URL"),
        "{}",
        failed.stderr
    );
    let bad = Admin::with_url(Some("mysql://nope".to_owned()))
        .run(&["accounts", "list"])
        .code(1);
    assert!(
        bad.stderr
            .contains("not a valid PostgreSQL connection string"),
        "{}",
        bad.stderr
    );
}

#[test]
fn every_command_has_help_and_unknown_commands_are_usage_errors() {
    let admin = Admin::with_url(None);
    for args in [
        vec!["--help"],
        vec!["migrate", "--help"],
        vec!["accounts", "--help"],
        vec!["accounts", "update", "--help"],
        vec!["lists", "reset-cursor", "--help"],
        vec!["runs", "watch", "--help"],
        vec!["dead", "requeue", "--help"],
        vec!["queue", "--help"],
        vec!["tick", "--help"],
        vec!["seed", "--help"],
        vec!["demo", "--help"],
    ] {
        let help = admin.run(&args).ok();
        assert!(
            help.stdout.contains("Usage: importer-admin"),
            "{args:?}: {}",
            help.stdout
        );
    }
    admin.run(&["frobnicate"]).code(2);
    admin.run(&["runs", "list", "--status", "sleeping"]).code(2);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn queue_shows_depth_per_account_and_state_and_leases_per_worker(pool: PgPool) {
    let admin = Admin::new(&pool);
    let empty = admin.run(&["queue"]).ok();
    assert!(empty.stdout.contains("queue is empty"), "{}", empty.stdout);
    admin.add_account("acme");
    admin.add_list("acme", "one");
    admin.add_list("acme", "two");
    admin.run(&["runs", "start", "acme/one"]).ok();
    admin.run(&["runs", "start", "acme/two"]).ok();
    queue::claim(&pool, "worker-a", 1, Duration::from_secs(60))
        .await
        .unwrap();
    let shown = admin.run(&["queue"]).ok();
    for text in [
        "acme",
        "waiting",
        "running",
        "worker-a",
        "oldest waiting job",
    ] {
        assert!(shown.stdout.contains(text), "{text}: {}", shown.stdout);
    }
    let json = admin.run(&["--output", "json", "queue"]).ok().json();
    let states: Vec<&str> = json["depth"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["running", "waiting"]);
    assert_eq!(json["leases"][0]["worker"], "worker-a");
    assert_eq!(json["leases"][0]["slots"], 1);
    assert!(json["oldest_waiting_age_secs"].as_f64().unwrap() >= 0.0);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn tick_creates_the_due_runs_and_prints_them(pool: PgPool) {
    let admin = Admin::new(&pool);
    admin.add_account("acme");
    admin.add_list("acme", "one");
    admin.add_list("acme", "two");
    admin.run(&["lists", "disable", "acme/two"]).ok();
    let ticked = admin.run(&["tick"]).ok();
    assert!(
        ticked.stdout.contains("tick created 1 run:"),
        "{}",
        ticked.stdout
    );
    assert!(ticked.stdout.contains("acme/one"), "{}", ticked.stdout);
    assert!(!ticked.stdout.contains("acme/two"), "{}", ticked.stdout);
    let again = admin.run(&["--output", "json", "tick"]).ok().json();
    assert_eq!(
        again.as_array().unwrap().len(),
        0,
        "idempotent within a slot"
    );
    let trigger: String = sqlx::query_scalar("SELECT trigger FROM importer.runs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(trigger, "schedule");
}

#[test]
fn the_database_of_a_url_is_replaced_keeping_credentials_and_parameters() {
    assert_eq!(
        with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "t1"),
        "postgres://u:p@h:5432/t1?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "t2"), "postgres://h/t2");
}
