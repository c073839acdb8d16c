//! The bare queue: no-op jobs claimed and completed in batches by N processes.
//!
//! `cargo run --release -p importer-bench --bin queue_throughput -- --jobs 200000 --processes 2`
//!
//! The parent creates a database, enqueues the jobs (spread over accounts and runs), then starts
//! N copies of itself as claimers (`child`), each looping claim(batch) -> complete_many until the
//! queue is empty. Reported: wall time from the children's start to the last exit, jobs/s.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use importer_bench::BenchDb;
use importer_core::queue::{self, JobKind, NewJob};
use importer_core::runs::{self, RequestedMode, RunRequest};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Jobs to run through the queue.
    #[arg(long, default_value_t = 200_000)]
    jobs: usize,
    /// Claimer processes.
    #[arg(long, default_value_t = 2)]
    processes: usize,
    /// Jobs per claim and per complete_many.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Accounts the jobs are spread over (each with a high max_concurrency).
    #[arg(long, default_value_t = 20)]
    accounts: usize,
}

#[derive(Subcommand)]
enum Mode {
    /// Internal: one claimer process.
    Child {
        #[arg(long)]
        url: String,
        #[arg(long)]
        batch: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Mode::Child { url, batch }) = cli.mode {
        return child(&url, batch).await;
    }
    let db = BenchDb::create().await?;
    let pool = db.pool(4).await?;
    let mut runs_by_account = Vec::new();
    for a in 0..cli.accounts {
        let account: i64 = sqlx::query_scalar(
            "INSERT INTO importer.accounts (name, mailchimp_key, mailchimp_key_hint, destination_url,
                                            destination_key, destination_key_hint, max_concurrency)
             VALUES ($1, '\\x00', '…', 'http://127.0.0.1:1', '\\x00', '…', 1000) RETURNING id",
        )
        .bind(format!("bench{a}"))
        .fetch_one(&pool)
        .await?;
        let list: i64 = sqlx::query_scalar(
            "INSERT INTO importer.lists (account_id, mailchimp_list_id) VALUES ($1, 'benchlist') RETURNING id",
        )
        .bind(account)
        .fetch_one(&pool)
        .await?;
        let run = runs::create(
            &pool,
            list,
            RunRequest {
                mode: RequestedMode::Full,
            },
        )
        .await?;
        runs_by_account.push((account, run.id));
    }
    let enqueue_started = Instant::now();
    let per_chunk = 10_000;
    let mut made = 0;
    while made < cli.jobs {
        let n = per_chunk.min(cli.jobs - made);
        let jobs: Vec<NewJob> = (0..n)
            .map(|i| {
                let (account, run) = runs_by_account[(made + i) % runs_by_account.len()];
                NewJob::new(JobKind::ImportWindow, serde_json::json!({}), account).in_run(run)
            })
            .collect();
        queue::enqueue_many(&pool, &jobs).await?;
        made += n;
    }
    let enqueue_time = enqueue_started.elapsed();
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM importer.jobs")
        .fetch_one(&pool)
        .await?;
    sqlx::query("VACUUM ANALYZE importer.jobs")
        .execute(&pool)
        .await?;

    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let mut children = Vec::new();
    for _ in 0..cli.processes {
        children.push(
            Command::new(&exe)
                .args(["child", "--url", &db.url, "--batch", &cli.batch.to_string()])
                .spawn()
                .context("Failed to start a claimer process")?,
        );
    }
    for mut c in children {
        let status = c.wait()?;
        anyhow::ensure!(status.success(), "a claimer failed: {status}");
    }
    let elapsed = started.elapsed();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM importer.jobs")
        .fetch_one(&pool)
        .await?;
    let done: i64 = sqlx::query_scalar("SELECT coalesce(sum(jobs_done), 0) FROM importer.runs")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    db.drop_db().await?;
    anyhow::ensure!(left == 0, "{left} jobs left in the queue");
    println!("queue_throughput");
    println!(
        "  jobs: {total} ({} accounts), processes: {}, batch: {}",
        cli.accounts, cli.processes, cli.batch
    );
    println!(
        "  enqueue: {:.0} jobs/s ({:.2} s)",
        total as f64 / enqueue_time.as_secs_f64(),
        enqueue_time.as_secs_f64()
    );
    println!(
        "  claim+complete: {:.2} s, {:.0} jobs/s (target > 26,000)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    println!("  counted done on runs: {done}");
    Ok(())
}

async fn child(url: &str, batch: usize) -> anyhow::Result<()> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await?;
    let worker = format!("bench-{}", std::process::id());
    let mut empty = 0;
    loop {
        let jobs = queue::claim(&pool, &worker, batch, Duration::from_secs(60)).await?;
        if jobs.is_empty() {
            let left: i64 = sqlx::query_scalar("SELECT count(*) FROM importer.jobs")
                .fetch_one(&pool)
                .await?;
            if left == 0 {
                return Ok(());
            }
            empty += 1;
            if empty > 1000 {
                anyhow::bail!("no progress: {left} jobs left but none claimable");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        empty = 0;
        let items: Vec<_> = jobs.iter().map(|j| (j.fence(), 0i64)).collect();
        queue::complete_many(&pool, &items).await?;
    }
}
