//! Pickup latency: how long after an insert an idle worker has claimed the job.
//!
//! `cargo run --release -p importer-bench --bin pickup_latency -- --samples 300`
//!
//! A claimer idles on the worker's own LISTEN/NOTIFY listener and claims on wake-up, exactly as
//! the worker's claim loop does; the inserter enqueues one job every 20 ms. Two latencies per
//! job: from the moment its insert committed (the job exists) to the claim returning it, and from
//! before the insert statement (so including the insert's own commit). Reported: p50, p90, p99,
//! max of each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use importer_bench::{ms, quantile, BenchDb};
use importer_core::queue::{self, JobKind, NewJob};
use importer_worker::listener::JobListener;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Cli {
    /// Jobs inserted (one every `--gap-ms`).
    #[arg(long, default_value_t = 300)]
    samples: usize,
    /// Pause between inserts, so the claimer is idle at each insert.
    #[arg(long, default_value_t = 20)]
    gap_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let db = BenchDb::create().await?;
    let pool = db.pool(4).await?;
    let account: i64 = sqlx::query_scalar(
        "INSERT INTO importer.accounts (name, mailchimp_key, mailchimp_key_hint, destination_url,
                                        destination_key, destination_key_hint, max_concurrency)
         VALUES ('latency', '\\x00', '…', 'http://127.0.0.1:1', '\\x00', '…', 1000) RETURNING id",
    )
    .fetch_one(&pool)
    .await?;

    let claimed: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let stop = CancellationToken::new();
    let claimer = {
        let pool = db.pool(2).await?;
        let claimed = claimed.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut listener = JobListener::connect(&pool).await;
            loop {
                let jobs = queue::claim(&pool, "latency", 10, Duration::from_secs(60)).await?;
                let now = Instant::now();
                if !jobs.is_empty() {
                    {
                        let mut map = claimed.lock().unwrap_or_else(|e| e.into_inner());
                        for j in &jobs {
                            map.insert(j.id, now);
                        }
                    }
                    let items: Vec<_> = jobs.iter().map(|j| (j.fence(), 0i64)).collect();
                    queue::complete_many(&pool, &items).await?;
                    continue;
                }
                tokio::select! {
                    _ = stop.cancelled() => return anyhow::Ok(()),
                    _ = listener.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut inserted = HashMap::new();
    for _ in 0..cli.samples {
        tokio::time::sleep(Duration::from_millis(cli.gap_ms)).await;
        let t0 = Instant::now();
        let id = queue::enqueue(
            &pool,
            &NewJob::new(JobKind::ImportWindow, serde_json::json!({}), account),
        )
        .await?;
        inserted.insert(id, (t0, Instant::now()));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    claimer.await??;

    let claimed = claimed
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let mut from_commit = Vec::new();
    let mut from_call = Vec::new();
    for (id, (called, committed)) in &inserted {
        if let Some(at) = claimed.get(id) {
            from_commit.push(at.saturating_duration_since(*committed));
            from_call.push(at.saturating_duration_since(*called));
        }
    }
    let missing = inserted.len() - from_commit.len();
    pool.close().await;
    db.drop_db().await?;
    anyhow::ensure!(missing == 0, "{missing} jobs were never claimed");
    println!(
        "pickup_latency ({} samples, one insert every {} ms, claimer idle on LISTEN)",
        from_commit.len(),
        cli.gap_ms
    );
    for (what, samples) in [
        ("from insert commit", &mut from_commit),
        ("from insert call  ", &mut from_call),
    ] {
        println!(
            "  {what}: p50 {}  p90 {}  p99 {}  max {}",
            ms(quantile(samples, 0.5)),
            ms(quantile(samples, 0.9)),
            ms(quantile(samples, 0.99)),
            ms(quantile(samples, 1.0))
        );
    }
    println!("  (target: p50 < 3 ms)");
    Ok(())
}
