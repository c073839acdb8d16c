//! The scheduler tick over many lists.
//!
//! `cargo run --profile max -p importer-bench --bin tick -- --lists 10000 --accounts 1000`
//!
//! 1. Cold start: every list is new, so every list is due in the first tick.
//! 2. The same call again: nothing due.
//! 3. Steady state: every run finished, then one simulated hour of ticks 5 s apart (as the
//!    workers call it); each list's fixed phase spreads the hour's 10,000 runs over those ticks.
//!    Reported: the duration of those ticks (p50, max) and the runs they created in all.

use std::time::Instant;

use chrono::Utc;
use clap::Parser;
use importer_bench::{ms, quantile, BenchDb};
use importer_core::tick;

#[derive(Parser)]
struct Cli {
    /// Lists, spread evenly over the accounts.
    #[arg(long, default_value_t = 10_000)]
    lists: i64,
    /// Accounts.
    #[arg(long, default_value_t = 1_000)]
    accounts: i64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let db = BenchDb::create().await?;
    let pool = db.pool(2).await?;
    sqlx::query(
        "INSERT INTO importer.accounts (name, mailchimp_key, mailchimp_key_hint, destination_url,
                                        destination_key, destination_key_hint)
         SELECT 'acct' || g, '\\x00', '…', 'http://127.0.0.1:1', '\\x00', '…'
           FROM generate_series(1, $1) g",
    )
    .bind(cli.accounts)
    .execute(&pool)
    .await?;
    sqlx::query(
        "INSERT INTO importer.lists (account_id, mailchimp_list_id, synced_until)
         SELECT a.id, 'list' || g, CASE WHEN g % 2 = 0 THEN now() - interval '2 hours' END
           FROM generate_series(1, $1) g
           JOIN importer.accounts a ON a.name = 'acct' || (1 + g % $2)",
    )
    .bind(cli.lists)
    .bind(cli.accounts)
    .execute(&pool)
    .await?;
    sqlx::query("ANALYZE").execute(&pool).await?;

    let t = Instant::now();
    let created = tick::tick(&pool, None).await?;
    let first = t.elapsed();
    let t = Instant::now();
    let again = tick::tick(&pool, None).await?;
    let second = t.elapsed();
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM importer.jobs")
        .fetch_one(&pool)
        .await?;

    // Finish every run (as if imported) so the next hour's slots can fill.
    sqlx::query("DELETE FROM importer.jobs")
        .execute(&pool)
        .await?;
    sqlx::query("UPDATE importer.runs SET jobs_pending = 0, jobs_done = jobs_total")
        .execute(&pool)
        .await?;
    let start = Utc::now();
    let mut durations = Vec::new();
    let mut steady_runs = 0;
    for k in 1..=720 {
        let now = start + chrono::Duration::seconds(5 * k);
        let t = Instant::now();
        steady_runs += tick::tick(&pool, Some(now)).await?.len();
        durations.push(t.elapsed());
    }
    pool.close().await;
    db.drop_db().await?;
    anyhow::ensure!(
        created.len() as i64 == cli.lists,
        "tick created {} runs for {} lists",
        created.len(),
        cli.lists
    );
    println!(
        "tick ({} lists over {} accounts, half never synced)",
        cli.lists, cli.accounts
    );
    println!(
        "  cold start, every list due: {} runs + {jobs} plan jobs in {}",
        created.len(),
        ms(first)
    );
    println!(
        "  again, nothing due: {} runs in {}",
        again.len(),
        ms(second)
    );
    println!(
        "  steady state, one hour of ticks 5 s apart: {steady_runs} runs in 720 ticks, \
         p50 {} max {} per tick (target < 100 ms)",
        ms(quantile(&mut durations, 0.5)),
        ms(quantile(&mut durations, 1.0))
    );
    Ok(())
}
