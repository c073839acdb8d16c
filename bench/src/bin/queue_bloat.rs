//! `queue_bloat`: 1,000,000 no-op jobs through the real worker (two `worker_queue worker`
//! processes, each `importer_worker::run`) while they are enqueued, with the `jobs` table's
//! size, its indexes' size, live and dead tuples and autovacuum runs sampled as it goes. Shows
//! that the queue table stays small however many jobs pass through it: a job's row is deleted
//! when it completes, and autovacuum reclaims the space for the next ones.
//!
//! `cargo build --profile max -p importer-bench && ./target/max/queue_bloat --jobs 1000000`

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use importer_bench::BenchDb;
use importer_core::queue::{self, JobKind, NewJob};
use sqlx::PgPool;

#[derive(Parser)]
struct Cli {
    /// Jobs pushed through the queue.
    #[arg(long, default_value_t = 1_000_000)]
    jobs: usize,
    /// At most this many jobs wait at once (the feeder tops the queue up to it).
    #[arg(long, default_value_t = 50_000)]
    backlog: i64,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    processes: usize,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    every: u64,
    /// When the server's autovacuum is off, run `VACUUM importer.jobs` at every sample instead
    /// (what autovacuum does with the queue table's settings); without it the run shows the
    /// table growing with dead tuples.
    #[arg(long)]
    vacuum: bool,
}

/// The jobs table as PostgreSQL reports it.
#[derive(Debug)]
struct Sample {
    table_bytes: i64,
    index_bytes: i64,
    live: i64,
    dead: i64,
    autovacuums: i64,
    queued: i64,
}
importer_core::from_row!(Sample {
    table_bytes,
    index_bytes,
    live,
    dead,
    autovacuums,
    queued
});

async fn sample(pool: &PgPool) -> anyhow::Result<Sample> {
    Ok(sqlx::query_as(
        "SELECT pg_relation_size('importer.jobs') AS table_bytes,
                pg_indexes_size('importer.jobs') AS index_bytes,
                s.n_live_tup AS live, s.n_dead_tup AS dead,
                s.autovacuum_count AS autovacuums,
                (SELECT count(*) FROM importer.jobs) AS queued
           FROM pg_stat_user_tables s
          WHERE s.schemaname = 'importer' AND s.relname = 'jobs'",
    )
    .fetch_one(pool)
    .await?)
}

fn kib(bytes: i64) -> String {
    format!("{:.0} KiB", bytes as f64 / 1024.0)
}

fn print(at: f64, done: usize, s: &Sample) {
    println!(
        "{:>7.0} s {:>9} {:>9} {:>12} {:>12} {:>8} {:>8} {:>5}",
        at,
        done,
        s.queued,
        kib(s.table_bytes),
        kib(s.index_bytes),
        s.live,
        s.dead,
        s.autovacuums
    );
}

fn spawn_workers(url: &str, n: usize) -> anyhow::Result<Vec<Child>> {
    let exe = std::env::current_exe()?.with_file_name("worker_queue");
    (0..n)
        .map(|_| {
            Command::new(&exe)
                .args(["worker", "--url", url, "--concurrency", "50"])
                .env("RUST_LOG", "error")
                .stdout(Stdio::null())
                .spawn()
                .with_context(|| format!("cannot start {} (build importer-bench)", exe.display()))
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let db = BenchDb::create().await?;
    let result = run(&cli, &db).await;
    db.drop_db().await?;
    result
}

async fn run(cli: &Cli, db: &BenchDb) -> anyhow::Result<()> {
    let pool = db.pool(4).await?;
    let mut accounts = Vec::new();
    for n in 0..20 {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO importer.accounts (name, mailchimp_key, mailchimp_key_hint, destination_url,
                                            destination_key, destination_key_hint, max_concurrency)
             VALUES ($1, '\\x00', '…', 'http://127.0.0.1:1', '\\x00', '…', 1000) RETURNING id",
        )
        .bind(format!("bloat{n}"))
        .fetch_one(&pool)
        .await?;
        accounts.push(id);
    }
    let settings: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, setting FROM pg_settings
          WHERE name IN ('autovacuum_naptime', 'autovacuum_vacuum_scale_factor',
                         'autovacuum_vacuum_threshold', 'autovacuum_vacuum_insert_threshold')
          ORDER BY name",
    )
    .fetch_all(&pool)
    .await?;
    println!(
        "queue_bloat: {} no-op jobs through {} worker processes (backlog at most {}); {}",
        cli.jobs,
        cli.processes,
        cli.backlog,
        settings
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{:>9} {:>9} {:>9} {:>12} {:>12} {:>8} {:>8} {:>5}",
        "at", "enqueued", "queued", "table", "indexes", "live", "dead", "avac"
    );
    let autovacuum: String = sqlx::query_scalar("SHOW autovacuum")
        .fetch_one(&pool)
        .await?;
    let vacuum = cli.vacuum && autovacuum == "off";
    println!(
        "autovacuum is {autovacuum}{}",
        if vacuum {
            "; this run VACUUMs importer.jobs at every sample instead"
        } else {
            ""
        }
    );
    let started = Instant::now();
    print(0.0, 0, &sample(&pool).await?);
    let workers = spawn_workers(&db.url, cli.processes)?;
    let mut enqueued = 0usize;
    let mut next_sample = Instant::now() + Duration::from_secs(cli.every);
    let mut peak_table = 0;
    let mut peak_index = 0;
    loop {
        let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM importer.jobs")
            .fetch_one(&pool)
            .await?;
        if enqueued < cli.jobs && queued < cli.backlog {
            let n = (cli.backlog - queued).clamp(0, 10_000) as usize;
            let n = n.min(cli.jobs - enqueued);
            let jobs: Vec<NewJob> = (enqueued..enqueued + n)
                .map(|i| NewJob::new(JobKind::Noop, serde_json::json!({}), accounts[i % 20]))
                .collect();
            queue::enqueue_many(&pool, &jobs).await?;
            enqueued += n;
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if Instant::now() >= next_sample {
            if vacuum {
                sqlx::query("VACUUM importer.jobs").execute(&pool).await?;
            }
            let s = sample(&pool).await?;
            peak_table = peak_table.max(s.table_bytes);
            peak_index = peak_index.max(s.index_bytes);
            print(started.elapsed().as_secs_f64(), enqueued, &s);
            next_sample += Duration::from_secs(cli.every);
        }
        if enqueued == cli.jobs && queued == 0 {
            break;
        }
    }
    let drained = started.elapsed().as_secs_f64();
    // Let autovacuum pass over the emptied table once more (its naptime is a minute).
    let before = sample(&pool).await?;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut after = sample(&pool).await?;
    let vacuums: i64 = sqlx::query_scalar(
        "SELECT vacuum_count FROM pg_stat_user_tables WHERE schemaname = 'importer' AND relname = 'jobs'",
    )
    .fetch_one(&pool)
    .await?;
    println!("manual vacuums: {vacuums}");
    if vacuum {
        sqlx::query("VACUUM importer.jobs").execute(&pool).await?;
        after = sample(&pool).await?;
    }
    while !vacuum
        && autovacuum == "on"
        && after.autovacuums == before.autovacuums
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_secs(5)).await;
        after = sample(&pool).await?;
    }
    print(started.elapsed().as_secs_f64(), enqueued, &after);
    for mut w in workers {
        let _ = Command::new("kill")
            .args(["-TERM", &w.id().to_string()])
            .status();
        let _ = w.wait();
    }
    println!(
        "drained {} jobs in {:.0} s ({:.0} jobs/s); peak table {}, peak indexes {}; after: table {}, indexes {}, {} dead tuples, {} autovacuums",
        cli.jobs,
        drained,
        cli.jobs as f64 / drained,
        kib(peak_table),
        kib(peak_index),
        kib(after.table_bytes),
        kib(after.index_bytes),
        after.dead,
        after.autovacuums
    );
    Ok(())
}
