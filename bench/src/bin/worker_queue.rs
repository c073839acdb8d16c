//! The queue as it ships: no-op jobs through the real worker (`importer_worker::run`, in
//! processes of their own), beside graphile-worker on the same PostgreSQL in the same run.
//!
//! `cargo run --profile max -p importer-bench --bin worker_queue -- --jobs 100000 --processes 2 --concurrency 50`
//!
//! Throughput: N `noop` jobs are inserted, then P worker processes start and the clock runs
//! until the queue is empty (jobs spread over 20 accounts). Pickup: one idle worker process; one
//! job inserted every 20 ms; the latency runs from before the insert statement (so its commit is
//! included) to the commit of the job's claim, and to the commit of its completion, both reported
//! by benchmark-only triggers through NOTIFY.
//! With `--graphile DIR` (default `bench/graphile`, after `npm ci` there), graphile-worker's
//! no-op task runs the same measurements with the same processes and concurrency.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use importer_bench::{ms, quantile, BenchDb};
use importer_core::queue::{self, JobKind, NewJob};
use importer_core::secrets::SecretBox;
use importer_worker::WorkerConfig;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Jobs of the throughput measurement.
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    processes: usize,
    /// Jobs each process runs at once (WORKER_CONCURRENCY; graphile-worker's concurrency).
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Pickup samples.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// graphile-worker's scripts (`npm ci` done there); `none` to skip it.
    #[arg(long, default_value = "bench/graphile")]
    graphile: String,
}

#[derive(Subcommand)]
enum Mode {
    /// Internal: one worker process until SIGTERM.
    Worker {
        #[arg(long)]
        url: String,
        #[arg(long)]
        concurrency: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Mode::Worker { url, concurrency }) = cli.mode {
        return worker(&url, concurrency).await;
    }
    println!(
        "worker_queue (no-op jobs through importer_worker::run; {} processes x concurrency {})",
        cli.processes, cli.concurrency
    );
    let ours = throughput(&cli).await?;
    println!(
        "  importer-worker: {} jobs in {:.2} s = {:.0} jobs/s",
        cli.jobs, ours.0, ours.1
    );
    let (mut claimed, mut done) = pickup(&cli).await?;
    for (what, samples) in [("claimed", &mut claimed), ("completed", &mut done)] {
        println!(
            "  importer-worker pickup, insert commit included, to {what}: p50 {} p90 {} p99 {} max {}",
            ms(quantile(samples, 0.5)),
            ms(quantile(samples, 0.9)),
            ms(quantile(samples, 0.99)),
            ms(quantile(samples, 1.0))
        );
    }
    if cli.graphile != "none" {
        // graphile-worker as installed, then batched (its perfTest's localQueue of 500 and
        // completions batched with no delay): the goal compares with the batched one.
        for (label, extra) in [
            ("default", &[][..]),
            (
                "batched",
                &["--local-queue", "500", "--complete-batch-delay", "0"][..],
            ),
        ] {
            let theirs = graphile(&cli, extra).await?;
            let rate = theirs["jobs_per_sec"].as_f64().unwrap_or(f64::NAN);
            println!(
                "  graphile-worker {label}: {:.0} jobs/s ({:.2} s); importer-worker / graphile-worker = {:.2}x",
                rate,
                theirs["seconds"].as_f64().unwrap_or(f64::NAN),
                ours.1 / rate
            );
        }
        let pick = graphile_pickup(&cli).await?;
        println!(
            "  graphile-worker pickup, add call to handler start: p50 {} ms p90 {} ms p99 {} ms max {} ms",
            pick["p50_ms"], pick["p90_ms"], pick["p99_ms"], pick["max_ms"]
        );
    }
    Ok(())
}

/// One worker process: the real `importer_worker::run`, no HTTP port, no tick, until SIGTERM.
async fn worker(url: &str, concurrency: usize) -> anyhow::Result<()> {
    let config = WorkerConfig {
        concurrency,
        claim_batch: concurrency,
        tick_secs: 0,
        ..WorkerConfig::default()
    };
    let pool = importer_core::pool::options(config.pool_size())
        .connect(url)
        .await?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::spawn(async move {
        term.recv().await;
        stop.cancel();
    });
    let secrets = SecretBox::from_hex(&SecretBox::generate_key_hex())?;
    importer_worker::run(config, pool, secrets, shutdown).await?;
    Ok(())
}

fn spawn_workers(url: &str, cli: &Cli, n: usize) -> anyhow::Result<Vec<Child>> {
    let exe = std::env::current_exe()?;
    (0..n)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "worker",
                    "--url",
                    url,
                    "--concurrency",
                    &cli.concurrency.to_string(),
                ])
                .env("RUST_LOG", "error")
                .stdout(Stdio::null())
                .spawn()
                .context("Failed to start a worker process")
        })
        .collect()
}

fn stop_workers(children: Vec<Child>) -> anyhow::Result<()> {
    for child in &children {
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
    }
    for mut child in children {
        child.wait()?;
    }
    Ok(())
}

/// Accounts the throughput jobs are spread over: the product runs thousands of clients, and one
/// account's lock serialises its claims.
const ACCOUNTS: usize = 20;

async fn account(pool: &sqlx::PgPool, n: usize) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO importer.accounts (name, mailchimp_key, mailchimp_key_hint, destination_url,
                                        destination_key, destination_key_hint, max_concurrency)
         VALUES ($1, '\\x00', '…', 'http://127.0.0.1:1', '\\x00', '…', 1000) RETURNING id",
    )
    .bind(format!("bench{n}"))
    .fetch_one(pool)
    .await?)
}

/// Wall seconds and jobs/s of `cli.jobs` no-op jobs through `cli.processes` workers.
async fn throughput(cli: &Cli) -> anyhow::Result<(f64, f64)> {
    let db = BenchDb::create().await?;
    let pool = db.pool(4).await?;
    let mut accounts = Vec::new();
    for n in 0..ACCOUNTS {
        accounts.push(account(&pool, n).await?);
    }
    let mut made = 0;
    while made < cli.jobs {
        let n = 10_000.min(cli.jobs - made);
        let jobs: Vec<NewJob> = (made..made + n)
            .map(|i| NewJob::new(JobKind::Noop, serde_json::json!({}), accounts[i % ACCOUNTS]))
            .collect();
        queue::enqueue_many(&pool, &jobs).await?;
        made += n;
    }
    sqlx::query("VACUUM ANALYZE importer.jobs")
        .execute(&pool)
        .await?;
    let started = Instant::now();
    let children = spawn_workers(&db.url, cli, cli.processes)?;
    loop {
        let left: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM importer.jobs)")
            .fetch_one(&pool)
            .await?;
        if !left {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop_workers(children)?;
    pool.close().await;
    db.drop_db().await?;
    Ok((elapsed, cli.jobs as f64 / elapsed))
}

/// Latencies of one job at a time with one idle worker process: from before the insert to the
/// claim's commit (pickup), and to the completion's commit.
async fn pickup(cli: &Cli) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let db = BenchDb::create().await?;
    let pool = db.pool(2).await?;
    let account = account(&pool, 0).await?;
    // Benchmark-only triggers: a claim (a new lease token) and a completion (the row deleted)
    // notify when they commit.
    sqlx::raw_sql(
        "CREATE FUNCTION public.bench_claimed() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_notify('bench', 'claimed ' || NEW.id); RETURN NEW; END $$;
         CREATE TRIGGER bench_claimed AFTER UPDATE ON importer.jobs FOR EACH ROW
          WHEN (NEW.lease_token IS NOT NULL AND OLD.lease_token IS NULL)
          EXECUTE FUNCTION public.bench_claimed();
         CREATE FUNCTION public.bench_done() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_notify('bench', 'done ' || OLD.id); RETURN OLD; END $$;
         CREATE TRIGGER bench_done AFTER DELETE ON importer.jobs
            FOR EACH ROW EXECUTE FUNCTION public.bench_done();",
    )
    .execute(&pool)
    .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen("bench").await?;
    let children = spawn_workers(&db.url, cli, 1)?;
    // Let the worker start and settle into its idle wait.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (mut claimed, mut done) = (Vec::new(), Vec::new());
    for _ in 0..cli.samples {
        let before = Instant::now();
        let job = NewJob::new(JobKind::Noop, serde_json::json!({}), account);
        let id = queue::enqueue(&pool, &job).await?;
        let (claim_note, done_note) = (format!("claimed {id}"), format!("done {id}"));
        loop {
            let note = tokio::time::timeout(Duration::from_secs(10), listener.recv())
                .await
                .context("a job was not completed within 10 s")??;
            if note.payload() == claim_note {
                claimed.push(before.elapsed());
            } else if note.payload() == done_note {
                done.push(before.elapsed());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_workers(children)?;
    drop(listener);
    pool.close().await;
    db.drop_db().await?;
    Ok((claimed, done))
}

/// A database of its own for graphile-worker on the same server.
async fn graphile_db() -> anyhow::Result<BenchDb> {
    BenchDb::create().await
}

async fn run_node(cli: &Cli, script: &str, args: &[String]) -> anyhow::Result<serde_json::Value> {
    let db = graphile_db().await?;
    let out = tokio::process::Command::new("node")
        .arg(script)
        .arg("--database")
        .arg(&db.url)
        .args(args)
        .current_dir(&cli.graphile)
        .stderr(Stdio::inherit())
        .output()
        .await
        .with_context(|| {
            format!(
                "Failed to run node {script} in {} (npm ci there first)",
                cli.graphile
            )
        })?;
    db.drop_db().await?;
    anyhow::ensure!(out.status.success(), "node {script} failed: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("node {script} printed {text:?}"))
}

async fn graphile(cli: &Cli, extra: &[&str]) -> anyhow::Result<serde_json::Value> {
    let mut args = vec![
        "--jobs".to_owned(),
        cli.jobs.to_string(),
        "--concurrency".to_owned(),
        cli.concurrency.to_string(),
        "--processes".to_owned(),
        cli.processes.to_string(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    run_node(cli, "throughput.mjs", &args).await
}

async fn graphile_pickup(cli: &Cli) -> anyhow::Result<serde_json::Value> {
    let args = [
        "--samples".to_owned(),
        cli.samples.to_string(),
        "--concurrency".to_owned(),
        cli.concurrency.to_string(),
    ];
    run_node(cli, "pickup.mjs", &args).await
}
