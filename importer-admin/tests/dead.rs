//! `dead ...` through the real binary; jobs die through the queue API, as a worker's would.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::Admin;
use importer_core::queue;
use sqlx::PgPool;

/// A failed run 1 whose plan job died with `error`; returns the dead job's id.
async fn failed_run(pool: &PgPool, admin: &Admin, error: &str) -> i64 {
    admin.add_account("acme");
    admin.add_list("acme", "abc123");
    admin.run(&["runs", "start", "acme/abc123"]).ok();
    let job = queue::claim(pool, "test-worker", 1, Duration::from_secs(60))
        .await
        .unwrap()
        .remove(0);
    queue::retry(pool, &job, "HTTP 503 once", Some(Duration::ZERO))
        .await
        .unwrap();
    let job = queue::claim(pool, "test-worker", 1, Duration::from_secs(60))
        .await
        .unwrap()
        .remove(0);
    assert!(queue::dead_letter(pool, job.fence(), error).await.unwrap());
    job.id
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn dead_jobs_can_be_listed_shown_requeued_and_purged(pool: PgPool) {
    let admin = Admin::new(&pool);
    let id = failed_run(&pool, &admin, "HTTP 404: Resource Not Found").await;
    let id_text = id.to_string();

    let listed = admin.run(&["dead", "list", "--run", "1"]).ok();
    assert!(
        listed.stdout.contains("Resource Not Found"),
        "{}",
        listed.stdout
    );
    assert!(listed.stdout.contains("permanent"), "{}", listed.stdout);
    let filtered = admin
        .run(&["dead", "list", "--error-contains", "timeout"])
        .ok();
    assert!(
        filtered.stdout.contains("no dead jobs match"),
        "{}",
        filtered.stdout
    );

    let shown = admin.run(&["dead", "show", &id_text]).ok();
    assert!(
        shown.stdout.contains("error history (2 entries)"),
        "{}",
        shown.stdout
    );
    assert!(shown.stdout.contains("HTTP 503 once"), "{}", shown.stdout);
    let json = admin
        .run(&["--output", "json", "dead", "show", &id_text])
        .ok()
        .json();
    assert_eq!(json["errors"].as_array().unwrap().len(), 2);
    assert_eq!(json["reason"], "permanent");
    let listed = admin.run(&["--output", "json", "dead", "list"]).ok().json();
    assert_eq!(listed[0]["id"], id);

    let requeued = admin
        .run(&["dead", "requeue", "--error-contains", "not found"])
        .ok();
    assert!(
        requeued.stdout.contains("requeued 1 job"),
        "{}",
        requeued.stdout
    );
    let status: String = sqlx::query_scalar("SELECT status FROM importer.runs WHERE id = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        status, "running",
        "a failed run runs again once its jobs are requeued"
    );

    // Kill it again, then requeue by job and by run, then purge.
    let job = queue::claim(&pool, "test-worker", 1, Duration::from_secs(60))
        .await
        .unwrap()
        .remove(0);
    queue::dead_letter(&pool, job.fence(), "HTTP 404: Resource Not Found")
        .await
        .unwrap();
    admin.run(&["dead", "requeue", "--job", &id_text]).ok();
    let job = queue::claim(&pool, "test-worker", 1, Duration::from_secs(60))
        .await
        .unwrap()
        .remove(0);
    queue::dead_letter(&pool, job.fence(), "HTTP 404: Resource Not Found")
        .await
        .unwrap();
    let by_run = admin
        .run(&["--output", "json", "dead", "requeue", "--run", "1"])
        .ok()
        .json();
    assert_eq!(by_run["requeued"], 1);
    let job = queue::claim(&pool, "test-worker", 1, Duration::from_secs(60))
        .await
        .unwrap()
        .remove(0);
    queue::dead_letter(&pool, job.fence(), "HTTP 404: Resource Not Found")
        .await
        .unwrap();

    let kept = admin.run(&["dead", "purge", "--older-than", "7d"]).ok();
    assert!(
        kept.stdout.contains("purged 0 dead jobs"),
        "{}",
        kept.stdout
    );
    sqlx::query("UPDATE importer.dead_jobs SET died_at = now() - interval '8 days'")
        .execute(&pool)
        .await
        .unwrap();
    let purged = admin.run(&["dead", "purge", "--older-than", "7d"]).ok();
    assert!(
        purged.stdout.contains("purged 1 dead job"),
        "{}",
        purged.stdout
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM importer.dead_jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn dead_requeue_needs_exactly_one_selector(pool: PgPool) {
    let admin = Admin::new(&pool);
    let none = admin.run(&["dead", "requeue"]).code(2);
    assert!(none.stderr.contains("--job"), "{}", none.stderr);
    admin
        .run(&["dead", "requeue", "--job", "1", "--run", "1"])
        .code(2);
    let missing = admin.run(&["dead", "requeue", "--job", "42"]).code(1);
    assert!(
        missing.stderr.contains("dead job 42 not found"),
        "{}",
        missing.stderr
    );
    let unknown = admin.run(&["dead", "show", "42"]).code(1);
    assert!(
        unknown.stderr.contains("no dead job 42"),
        "{}",
        unknown.stderr
    );
}
