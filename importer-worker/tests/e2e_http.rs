//! The worker's HTTP port: `/healthz` answers when the database does, and `/metrics` exposes
//! the job, record and request metrics in Prometheus text after a real import.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{assert_completed, sigterm, Harness, Log};
use importer_sim::SimConfig;
use sqlx::PgPool;

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn health_and_metrics_are_served_while_importing(pool: PgPool) {
    let mut h = Harness::start(pool, SimConfig::default()).await;
    h.add_account("metrics", &[2500], 10).await;
    let mut worker = h.spawn_process_logged(&[
        ("WORKER_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ]);

    // The worker logs the address it bound (port 0 picks a free one).
    let log = Log::follow(&mut worker);
    let (_, listening) = log
        .wait_for("health and metrics listening", Duration::from_secs(30))
        .await;
    let addr = listening["bound"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let health = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok\n");

    let run = h.start_runs().await.remove(0);
    let done = h
        .wait_finished(&[run.id], Duration::from_secs(60))
        .await
        .remove(0);
    assert_completed(&done);

    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "importer_jobs_claimed_total{kind=\"plan_run\"} 1",
        "importer_jobs_claimed_total{kind=\"import_window\"} 1",
        "importer_jobs_total{kind=\"import_window\",outcome=\"completed\"} 1",
        "importer_records_imported_total 2500",
        "importer_job_duration_seconds_bucket{kind=\"import_window\",outcome=\"completed\"",
        "importer_mailchimp_request_duration_seconds_bucket{status=\"200\"",
        "importer_destination_request_duration_seconds_bucket{status=\"200\"",
        "importer_jobs_in_flight 0",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected:?} in:\n{metrics}"
        );
    }
    sigterm(&worker);
    assert!(worker.wait().unwrap().success());
}
