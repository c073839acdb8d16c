//! One account end to end against the simulator's latency model: throughput as a ratio of the
//! ceiling C x P / L, worker CPU-seconds per million members, and worker peak RSS.
//!
//! `cargo run --profile max -p importer-bench --bin import_throughput -- --members 200000`
//!
//! The simulators run in this process; the worker runs in a child process (this program
//! re-executed as `worker`, which calls `importer_worker::run`, the same loop as the
//! `importer-worker` binary), so its CPU time and memory are measured alone from /proc.
//! Throughput is members / (run finished - run created), planning included.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use importer_bench::{sim_account, BenchDb, SimAccount};
use importer_core::runs::{self, RequestedMode, RunRequest, RunStatus};
use importer_core::secrets::SecretBox;
use importer_sim::{DestinationSimConfig, MailchimpSimConfig, SimConfig};
use importer_worker::WorkerConfig;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Members in the list.
    #[arg(long, default_value_t = 200_000)]
    members: usize,
    /// Simulated Mailchimp latency per request.
    #[arg(long, default_value_t = 100)]
    latency_base_ms: u64,
    /// Simulated Mailchimp latency per member returned.
    #[arg(long, default_value_t = 50)]
    latency_per_member_us: u64,
    /// Worker concurrency (jobs in flight in the worker process).
    #[arg(long, default_value_t = 50)]
    worker_concurrency: usize,
}

#[derive(Subcommand)]
enum Mode {
    /// Internal: the worker process.
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
    let latency_base = Duration::from_millis(cli.latency_base_ms);
    let latency_per_member = Duration::from_micros(cli.latency_per_member_us);
    let sim = importer_sim::start(SimConfig {
        seed: 1,
        mailchimp: MailchimpSimConfig {
            latency_base,
            latency_per_member,
            ..MailchimpSimConfig::default()
        },
        destination: DestinationSimConfig::default(),
        ..SimConfig::default()
    })
    .await?;
    let db = BenchDb::create().await?;
    let pool = db.pool(4).await?;
    let secret_hex = SecretBox::generate_key_hex();
    let secret_box = SecretBox::from_hex(&secret_hex)?;
    let mc = sim.mailchimp();
    let SimAccount {
        api_key,
        destination_key: dest_key,
        list_id,
    } = sim_account(&pool, &sim, &secret_box, "benchlist", cli.members).await?;
    let dest_key = dest_key.as_str();

    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "worker",
            "--url",
            &db.url,
            "--concurrency",
            &cli.worker_concurrency.to_string(),
        ])
        .env("IMPORTER_SECRET_KEY", &secret_hex)
        .spawn()
        .context("Failed to start the worker process")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu_before = cpu_seconds(&child)?;

    let run = runs::create(
        &pool,
        list_id,
        RunRequest {
            mode: RequestedMode::Full,
        },
    )
    .await?;
    let started = Instant::now();
    let finished = loop {
        let r = runs::get(&pool, run.id).await?.context("run vanished")?;
        if !r.status.is_active() {
            break r;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "run did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cpu = cpu_seconds(&child)? - cpu_before;
    let peak_rss_mb = peak_rss_kb(&child)? as f64 / 1024.0;
    child.kill().ok();
    child.wait().ok();
    anyhow::ensure!(
        finished.status == RunStatus::Completed,
        "run ended {:?}: {:?}",
        finished.status,
        finished.error
    );
    let verification = sim
        .destination()
        .verify(dest_key, &mc.expected_records("benchlist"));
    anyhow::ensure!(
        verification.is_complete(),
        "destination incomplete: {} missing",
        verification.missing.len()
    );
    let wall = (finished.finished_at.context("no finish time")? - finished.created_at)
        .to_std()
        .unwrap_or_default();
    let stats = mc.key_stats(&api_key);

    let page_latency = latency_base + latency_per_member * 1000;
    let ceiling = 10.0 * 1000.0 / page_latency.as_secs_f64();
    let rate = cli.members as f64 / wall.as_secs_f64();
    println!(
        "import_throughput (1 account, C=10, P=1000, L={} ms per full page)",
        page_latency.as_millis()
    );
    println!(
        "  members: {}, run wall time: {:.2} s, {:.0} members/s",
        cli.members,
        wall.as_secs_f64(),
        rate
    );
    println!(
        "  ceiling C*P/L: {ceiling:.0} members/s, ratio: {:.1} % (target >= 95 %)",
        100.0 * rate / ceiling
    );
    println!(
        "  mailchimp requests: {}, peak concurrency: {}, 429s: {}",
        stats.requests, stats.peak_concurrency, stats.responses_429
    );
    println!(
        "  worker CPU: {cpu:.2} s = {:.2} CPU-s per million members (target <= 1)",
        cpu * 1e6 / cli.members as f64
    );
    println!(
        "  worker peak RSS: {peak_rss_mb:.1} MB at concurrency {} (target <= 50 MB)",
        cli.worker_concurrency
    );
    pool.close().await;
    db.drop_db().await?;
    sim.shutdown().await;
    Ok(())
}

async fn worker(url: &str, concurrency: usize) -> anyhow::Result<()> {
    // The worker's own log lines when asked (RUST_LOG=info): where a run's time goes.
    if std::env::var_os("RUST_LOG").is_some() {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .with(importer_core::log_filter::from_env("info"))
            .init();
    }
    let config = WorkerConfig {
        concurrency,
        tick_secs: 0,
        poll_ms: 200,
        ..WorkerConfig::default()
    };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(config.pool_size())
        .connect(url)
        .await?;
    let secrets = SecretBox::from_env()?;
    importer_worker::run(config, pool, secrets, CancellationToken::new()).await?;
    Ok(())
}

/// utime + stime of a child process, in seconds.
fn cpu_seconds(child: &Child) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id()))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("bad /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11).context("no utime")?.parse()?;
    let stime: f64 = fields.get(12).context("no stime")?.parse()?;
    // Linux reports clock ticks; USER_HZ is 100 on every mainstream architecture.
    Ok((utime + stime) / 100.0)
}

/// Peak resident set (VmHWM) of a child process, in KiB.
fn peak_rss_kb(child: &Child) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("bad VmHWM")?
        .parse()?)
}
