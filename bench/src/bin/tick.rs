//! The scheduler tick over many lists: `importer.tick(now)` creating every due run at once,
//! and the same call again (nothing due).
//!
//! `cargo run --release -p importer-bench --bin tick -- --lists 10000 --accounts 1000`

use std::time::Instant;

use chrono::Utc;
use clap::Parser;
use importer_bench::{ms, BenchDb};
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
    let created = tick::tick(&pool, Utc::now()).await?;
    let first = t.elapsed();
    let t = Instant::now();
    let again = tick::tick(&pool, Utc::now()).await?;
    let second = t.elapsed();
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM importer.jobs")
        .fetch_one(&pool)
        .await?;
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
        "  first tick: {} runs + {jobs} plan jobs in {} (target < 100 ms)",
        created.len(),
        ms(first)
    );
    println!(
        "  second tick (nothing due): {} runs in {}",
        again.len(),
        ms(second)
    );
    Ok(())
}
