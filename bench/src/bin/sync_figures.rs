//! The sync engine's figures (issue 8): for each situation, one full sync of a list with the
//! reference latency profile (100 ms + 50 µs per member: L = 150 ms per full page) while
//! Mailchimp changes under it, then the next incremental run. Reports Mailchimp members read
//! and records posted per member of the list, requests beyond planning per page the list needs,
//! planning requests, ranges planned + lanes split off, what was missing or stale after the full sync (beyond the members that
//! changed) and after the next run, and the full sync's throughput against C x P / L.
//!
//! `cargo run --profile max -p importer-bench --bin sync_figures -- --members 200000`
//!
//! The workers are the real `importer_worker::run`, in process; the simulators too.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use importer_bench::{sim_account, wait_run, BenchDb, SimAccount};
use importer_core::runs::{self, RequestedMode, RunRequest, RunStatus};
use importer_core::secrets::SecretBox;
use importer_core::settings;
use importer_sim::{ChurnStep, MailchimpSimConfig, SimConfig};
use importer_worker::WorkerConfig;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Cli {
    /// Members in the list.
    #[arg(long, default_value_t = 200_000)]
    members: usize,
    /// Only the situations whose name contains this.
    #[arg(long)]
    only: Option<String>,
}

struct Situation {
    name: &'static str,
    churn: Vec<ChurnStep>,
    clock_offset_secs: i64,
    visibility_delay: Duration,
    lag: Duration,
}

/// Member requests after which the churn lands: planning is done and about a tenth of the pages
/// have been read.
fn mid_sync(members: usize) -> u64 {
    (members / 1000 / 10).max(4) as u64 + 2
}

fn churn(after: u64, modify: f64, add: f64, delete: f64, archive: f64) -> Vec<ChurnStep> {
    vec![ChurnStep {
        after_requests: after,
        modify,
        add,
        delete,
        archive,
        ..ChurnStep::default()
    }]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let at = mid_sync(cli.members);
    let ten = || churn(at, 0.04, 0.02, 0.02, 0.02);
    let one_second = Duration::from_secs(1);
    let situations = vec![
        Situation {
            name: "no change during the sync",
            churn: vec![],
            clock_offset_secs: 0,
            visibility_delay: Duration::ZERO,
            lag: one_second,
        },
        Situation {
            name: "10 % modified/added/deleted/archived",
            churn: ten(),
            clock_offset_secs: 0,
            visibility_delay: Duration::ZERO,
            lag: one_second,
        },
        Situation {
            name: "50 % re-imported (bulk edit)",
            churn: churn(at, 0.5, 0.0, 0.0, 0.0),
            clock_offset_secs: 0,
            visibility_delay: Duration::ZERO,
            lag: one_second,
        },
        Situation {
            name: "clock 10 s behind, 10 % churn",
            churn: ten(),
            clock_offset_secs: -10,
            visibility_delay: Duration::ZERO,
            lag: Duration::from_secs(12),
        },
        Situation {
            name: "clock 10 s ahead, 10 % churn",
            churn: ten(),
            clock_offset_secs: 10,
            visibility_delay: Duration::ZERO,
            lag: Duration::from_secs(12),
        },
        Situation {
            name: "visible 5 s late (= lag), 10 % churn",
            churn: ten(),
            clock_offset_secs: 0,
            visibility_delay: Duration::from_secs(5),
            lag: Duration::from_secs(5),
        },
    ];
    println!(
        "sync_figures ({} members, C=10, L=150 ms per full page; ratios are per member of the list)",
        cli.members
    );
    println!(
        "{:<40} {:>7} {:>7} {:>9} {:>9} {:>7} {:>10} {:>10} {:>8} {:>8}",
        "situation",
        "read/N",
        "post/N",
        "req/page",
        "planning",
        "ranges",
        "lost full",
        "lost next",
        "wall s",
        "C*P/L %"
    );
    for s in situations {
        if cli
            .only
            .as_ref()
            .is_some_and(|o| !s.name.contains(o.as_str()))
        {
            continue;
        }
        run(cli.members, &s).await.with_context(|| s.name)?;
    }
    Ok(())
}

async fn run(members: usize, s: &Situation) -> anyhow::Result<()> {
    let sim = importer_sim::start(SimConfig {
        seed: 7,
        mailchimp: MailchimpSimConfig {
            latency_base: Duration::from_millis(100),
            latency_per_member: Duration::from_micros(50),
            clock_offset_secs: s.clock_offset_secs,
            visibility_delay: s.visibility_delay,
            churn: s.churn.clone(),
            ..MailchimpSimConfig::default()
        },
        ..SimConfig::default()
    })
    .await?;
    let db = BenchDb::create().await?;
    let pool = db.pool(4).await?;
    settings::set_sync_lag(&pool, s.lag).await?;
    let secret_box = SecretBox::from_hex(&SecretBox::generate_key_hex())?;
    let mc = sim.mailchimp();
    let SimAccount {
        api_key,
        destination_key: dest_key,
        list_id,
    } = sim_account(&pool, &sim, &secret_box, "figures", members).await?;
    let dest_key = dest_key.as_str();
    let shutdown = CancellationToken::new();
    let config = WorkerConfig {
        concurrency: 50,
        tick_secs: 0,
        poll_ms: 200,
        ..WorkerConfig::default()
    };
    let worker_pool = db.pool(config.pool_size()).await?;
    let worker = tokio::spawn(importer_worker::run(
        config,
        worker_pool,
        secret_box.clone(),
        shutdown.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let full = wait_run(&pool, start(&pool, list_id).await?).await?;
    let stats = mc.key_stats(&api_key);
    let posted = sim.destination().stats(dest_key).records_received;
    let changed: HashSet<String> = mc.churned("figures").into_iter().collect();
    tokio::time::sleep(s.visibility_delay).await;
    let expected = mc.expected_records("figures");
    let v = sim.destination().verify(dest_key, &expected);
    let lost_full = v
        .missing
        .iter()
        .chain(&v.stale)
        .filter(|id| !changed.contains(*id))
        .count();

    let ahead = Duration::from_secs(s.clock_offset_secs.max(0).unsigned_abs());
    tokio::time::sleep(s.lag + s.visibility_delay + ahead + Duration::from_secs(1)).await;
    let next = wait_run(&pool, start(&pool, list_id).await?).await?;
    shutdown.cancel();
    worker.await??;
    let v = sim
        .destination()
        .verify(dest_key, &mc.expected_records("figures"));
    let lost_next = v.missing.len() + v.stale.len();
    anyhow::ensure!(
        full.status == RunStatus::Completed && next.status == RunStatus::Completed,
        "runs ended {:?} / {:?}: {:?}",
        full.status,
        next.status,
        full.error.or(next.error)
    );

    let n = members as f64;
    let lanes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM importer.range_lanes WHERE run_id = $1")
            .bind(full.id)
            .fetch_one(&pool)
            .await?;
    let ranges = u64::try_from(i64::from(full.jobs_total) - 1 - lanes).unwrap_or(0);
    let planning = u64::try_from(full.planning_requests).unwrap_or(0);
    let page_requests =
        stats.requests.saturating_sub(planning) as f64 / members.div_ceil(1000) as f64;
    let wall = (full.finished_at.context("no finish time")? - full.created_at)
        .to_std()
        .unwrap_or_default();
    let ceiling = 10.0 * 1000.0 / 0.150;
    println!(
        "{:<40} {:>7.3} {:>7.3} {:>9.3} {:>9} {:>7} {:>10} {:>10} {:>8.2} {:>8.1}",
        s.name,
        stats.members_returned as f64 / n,
        posted as f64 / n,
        page_requests,
        planning,
        format!("{ranges}+{lanes}"),
        lost_full,
        lost_next,
        wall.as_secs_f64(),
        100.0 * n / wall.as_secs_f64() / ceiling
    );
    pool.close().await;
    db.drop_db().await?;
    sim.shutdown().await;
    Ok(())
}

async fn start(pool: &sqlx::PgPool, list_id: i64) -> anyhow::Result<i64> {
    Ok(runs::create(
        pool,
        list_id,
        RunRequest {
            mode: RequestedMode::Auto,
        },
    )
    .await?
    .id)
}
