//! `dashboard_pages`: every dashboard page, served by the real `importer-admin serve`, over a
//! database with 1,000,000 finished runs, 100,000 dead jobs and 10,000 lists
//! (`bench/dashboard_seed.sql`). Prints p50, p95 and max of each page's full response time.
//!
//! Build first: `cargo build --profile max -p importer-admin -p importer-bench`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use importer_bench::{ms, quantile, BenchDb};

/// Times the dashboard's pages over a large database.
#[derive(Debug, Parser)]
struct Args {
    /// Requests per page.
    #[arg(long, default_value_t = 30)]
    samples: usize,
    /// The importer-admin binary to serve with (default: the one beside this program).
    #[arg(long)]
    admin: Option<String>,
}

const TOKEN: &str = "bench-operator-token-0123456789";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = BenchDb::create().await?;
    let result = run(&args, &db).await;
    db.drop_db().await?;
    result
}

async fn run(args: &Args, db: &BenchDb) -> anyhow::Result<()> {
    let pool = db.pool(2).await?;
    let started = Instant::now();
    sqlx::raw_sql(include_str!("../../dashboard_seed.sql"))
        .execute(&pool)
        .await
        .context("seeding failed")?;
    let seeded = started.elapsed();
    let counts: (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM importer.runs), (SELECT count(*) FROM importer.dead_jobs),
                (SELECT count(*) FROM importer.lists), (SELECT count(*) FROM importer.rejected_records)",
    )
    .fetch_one(&pool)
    .await?;
    let some_run: i64 = sqlx::query_scalar(
        "SELECT id FROM importer.runs WHERE status = 'failed' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await?;
    let some_dead: i64 = sqlx::query_scalar("SELECT max(id) FROM importer.dead_jobs")
        .fetch_one(&pool)
        .await?;
    pool.close().await;

    let admin = match &args.admin {
        Some(path) => std::path::PathBuf::from(path),
        None => std::env::current_exe()?.with_file_name("importer-admin"),
    };
    let mut child = Command::new(&admin)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("DATABASE_URL", &db.url)
        .env(
            "IMPORTER_DASHBOARD_USERS",
            format!("bench:operator:{TOKEN}"),
        )
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (build it with importer-bench)",
                admin.display()
            )
        })?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let Some(base) = line.trim().strip_prefix("dashboard: ") else {
        let _ = child.kill();
        bail!("serve printed {line:?}");
    };
    let base = base.trim_end_matches('/').to_owned();
    let result = time_pages(args, &base, some_run, some_dead).await;
    let _ = child.kill();
    let _ = child.wait();
    let rows = result?;

    println!(
        "dashboard_pages ({} runs, {} dead jobs, {} lists, {} rejected records; seeded in {:.0} s; {} requests per page)",
        counts.0, counts.1, counts.2, counts.3, seeded.as_secs_f64(), args.samples
    );
    println!(
        "{:<44} {:>9} {:>9} {:>9} {:>9}",
        "page", "p50 ms", "p95 ms", "max ms", "KiB"
    );
    for (page, mut samples, bytes) in rows {
        let max = samples.iter().max().copied().unwrap_or_default();
        println!(
            "{:<44} {:>9} {:>9} {:>9} {:>9.1}",
            page,
            ms(quantile(&mut samples, 0.5)),
            ms(quantile(&mut samples, 0.95)),
            ms(max),
            bytes as f64 / 1024.0
        );
    }
    Ok(())
}

async fn time_pages(
    args: &Args,
    base: &str,
    run: i64,
    dead: i64,
) -> anyhow::Result<Vec<(String, Vec<Duration>, usize)>> {
    let pages = [
        "/".to_owned(),
        "/fragments/overview".to_owned(),
        "/accounts".to_owned(),
        "/accounts?after=client-500".to_owned(),
        "/lists".to_owned(),
        "/lists?behind=1".to_owned(),
        "/runs".to_owned(),
        "/runs?status=failed".to_owned(),
        "/runs?account=500".to_owned(),
        "/runs?list=5000".to_owned(),
        "/runs?from=2026-01-01&to=2026-12-31".to_owned(),
        format!("/runs/{run}"),
        "/dead".to_owned(),
        "/dead?error=timed%20out".to_owned(),
        "/dead?reason=permanent".to_owned(),
        format!("/dead?run={run}"),
        format!("/dead/{dead}"),
        "/rejected".to_owned(),
        "/rejected?code=missing_email".to_owned(),
        "/audit".to_owned(),
        "/audit?actor=ana".to_owned(),
    ];
    let client = reqwest_client()?;
    let mut rows = Vec::new();
    for page in pages {
        let url = format!("{base}{page}");
        let mut samples = Vec::with_capacity(args.samples);
        let mut bytes = 0;
        // One warm-up request: the first query of a page plans and caches its statements.
        get(&client, &url).await?;
        for _ in 0..args.samples {
            let t = Instant::now();
            bytes = get(&client, &url).await?;
            samples.push(t.elapsed());
        }
        rows.push((page, samples, bytes));
    }
    Ok(rows)
}

fn reqwest_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?)
}

async fn get(client: &reqwest::Client, url: &str) -> anyhow::Result<usize> {
    let response = client
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response.bytes().await?;
    if !status.is_success() {
        bail!("GET {url}: {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(body.len())
}
