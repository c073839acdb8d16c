//! The ledger (issue 12): what writing it costs, and what it saves.
//!
//! 1. **Write cost.** The shipping checkpoint (`queue::checkpoint`) of a range job, timed with
//!    no ledger entries, with 1,000 new members (inserts) and with 1,000 known members
//!    (updates), on a ledger already holding `--rows` rows of `--lists` lists. Reports the
//!    median per checkpoint, the cost per 1,000 records (the difference), the share of updates
//!    that were HOT and the ledger's size before and after the updates.
//! 2. **Posts saved.** Two lists of `--members`, one default and one `--always-post`, synced by
//!    the real worker; then in each 10 % of the members change, 80 % of them only in interests
//!    and tags, and the next incremental run goes. Reports destination requests and records.
//! 3. **Audit cost.** The real audit of the default list: without drift, then with 1 % of its
//!    members deleted and 1 % of changes skipped by a wrong cursor reset. Reports Mailchimp
//!    requests (per 1,000 members), scan bytes per member, members healed and deleted.
//!
//! `cargo run --profile max -p importer-bench --bin ledger -- --rows 2000000 --members 50000`

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use importer_bench::{ms, quantile, sim_account, wait_run, BenchDb, SimAccount};
use importer_core::ledger::Delivery;
use importer_core::mapping::Record;
use importer_core::queue::{self, Checkpoint, Completion, JobKind, NewJob};
use importer_core::runs::{self, RequestedMode, RunRequest, RunStatus};
use importer_core::secrets::SecretBox;
use importer_core::{list_audit, lists, settings};
use importer_sim::SimConfig;
use importer_worker::WorkerConfig;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Cli {
    /// Rows in the ledger before the write-cost measurement.
    #[arg(long, default_value_t = 2_000_000)]
    rows: i64,
    /// Lists those rows belong to.
    #[arg(long, default_value_t = 200)]
    lists: i64,
    /// Checkpoints timed per case.
    #[arg(long, default_value_t = 40)]
    samples: usize,
    /// Members of each list of the posts-saved measurement.
    #[arg(long, default_value_t = 50_000)]
    members: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    write_cost(&cli).await.context("write cost")?;
    posts_saved(cli.members).await.context("posts saved")?;
    Ok(())
}

fn record(i: i64) -> Record {
    Record {
        id: format!("{:032x}", i),
        firstname: format!("First{i}"),
        lastname: "Last".into(),
        email: format!("m{i}@example.com"),
        status: "subscribed".into(),
    }
}

async fn write_cost(cli: &Cli) -> anyhow::Result<()> {
    let db = BenchDb::create().await?;
    let pool = db.pool(4).await?;
    let secret_box = SecretBox::from_hex(&SecretBox::generate_key_hex())?;
    let sim = importer_sim::start(SimConfig::default()).await?;
    let SimAccount { list_id, .. } = sim_account(&pool, &sim, &secret_box, "cost", 0).await?;
    let account: i64 = sqlx::query_scalar("SELECT account_id FROM importer.lists WHERE id = $1")
        .bind(list_id)
        .fetch_one(&pool)
        .await?;
    // Other lists, and the bench list's own rows, as set-up (not what is measured).
    sqlx::query(
        "INSERT INTO importer.lists (account_id, mailchimp_list_id)
         SELECT $1, 'other' || g FROM generate_series(2, $2) g",
    )
    .bind(account)
    .bind(cli.lists)
    .execute(&pool)
    .await?;
    let per_list = cli.rows / cli.lists;
    sqlx::query(
        "INSERT INTO importer.ledger (list_id, member_key, fingerprint, last_changed)
         SELECT l.id, decode(lpad(to_hex(g), 32, '0'), 'hex'), g, now()
           FROM importer.lists l CROSS JOIN generate_series(1, $1) g",
    )
    .bind(per_list)
    .execute(&pool)
    .await?;
    sqlx::query("VACUUM ANALYZE importer.ledger")
        .execute(&pool)
        .await?;
    let size_before = ledger_size(&pool).await?;

    let run = runs::create(
        &pool,
        list_id,
        RunRequest {
            mode: RequestedMode::Full,
        },
    )
    .await?;
    let lease = Duration::from_secs(3600);
    let plan = queue::claim(&pool, "bench", 1, lease)
        .await?
        .pop()
        .context("no plan job")?;
    let child = NewJob::new(JobKind::ImportWindow, serde_json::json!({}), account).in_run(run.id);
    queue::complete(
        &pool,
        plan.fence(),
        Completion {
            children: vec![child],
            ..Completion::default()
        },
    )
    .await?;
    let job = queue::claim(&pool, "bench", 1, lease)
        .await?
        .pop()
        .context("no range job")?;

    let mut next_new = per_list + 1;
    let mut timings = Vec::new();
    for case in [
        "no ledger entries",
        "1,000 new members",
        "1,000 known members",
    ] {
        let mut samples = Vec::with_capacity(cli.samples);
        for s in 0..cli.samples {
            let ledger: Vec<Delivery> = match case {
                "no ledger entries" => Vec::new(),
                "1,000 new members" => {
                    let first = next_new;
                    next_new += 1000;
                    (first..first + 1000)
                        .map(|i| Delivery::of(&record(i), Some(1_700_000_000)))
                        .collect()
                }
                _ => {
                    // Known members spread over the list, as a run's changed members are.
                    let step = (per_list / 1000).max(1);
                    (0..1000)
                        .map(|k| 1 + (k * step + s as i64) % per_list)
                        .map(|i| Delivery::of(&record(i), Some(1_800_000_000 + s as i64)))
                        .collect()
                }
            };
            let checkpoint = Checkpoint {
                args: serde_json::json!({}),
                records_imported: ledger.len() as i64,
                ledger,
                ..Checkpoint::default()
            };
            let started = Instant::now();
            let outcome = queue::checkpoint(&pool, job.fence(), &checkpoint).await?;
            samples.push(started.elapsed());
            anyhow::ensure!(
                outcome != queue::CheckpointOutcome::Fenced,
                "the bench job lost its lease"
            );
        }
        timings.push((case, quantile(&mut samples, 0.5)));
    }
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&pool)
        .await?;
    let (updates, hot): (i64, i64) = sqlx::query_as(
        "SELECT coalesce(sum(n_tup_upd), 0)::int8, coalesce(sum(n_tup_hot_upd), 0)::int8
           FROM pg_stat_user_tables WHERE schemaname = 'importer' AND relname LIKE 'ledger_p%'",
    )
    .fetch_one(&pool)
    .await?;
    let size_after = ledger_size(&pool).await?;

    println!(
        "ledger write cost ({} rows in {} lists before; median of {} checkpoints each)",
        cli.rows, cli.lists, cli.samples
    );
    let base = timings[0].1;
    for (case, median) in &timings {
        println!(
            "  {:<22} {:>9} per checkpoint   {:>9} per 1,000 records over none",
            case,
            ms(*median),
            ms(median.saturating_sub(base))
        );
    }
    println!(
        "  updates HOT: {hot} of {updates} ({:.1} %); ledger {:.1} MB before, {:.1} MB after ({} members added)",
        100.0 * hot as f64 / updates.max(1) as f64,
        size_before as f64 / 1e6,
        size_after as f64 / 1e6,
        next_new - per_list - 1
    );
    pool.close().await;
    db.drop_db().await?;
    sim.shutdown().await;
    Ok(())
}

/// Heap and indexes of every ledger partition, in bytes.
async fn ledger_size(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT sum(pg_total_relation_size(c.oid))::int8 FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'importer' AND c.relname LIKE 'ledger_p%' AND c.relkind = 'r'",
    )
    .fetch_one(pool)
    .await?)
}

async fn posts_saved(members: usize) -> anyhow::Result<()> {
    let sim = importer_sim::start(SimConfig::default()).await?;
    let db = BenchDb::create().await?;
    let pool = db.pool(4).await?;
    settings::set_sync_lag(&pool, Duration::from_secs(1)).await?;
    let secret_box = SecretBox::from_hex(&SecretBox::generate_key_hex())?;
    let default = sim_account(&pool, &sim, &secret_box, "skips", members).await?;
    let always = sim_account(&pool, &sim, &secret_box, "always", members).await?;
    lists::set_always_post(&pool, always.list_id, true).await?;
    let shutdown = CancellationToken::new();
    let config = WorkerConfig {
        concurrency: 20,
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
    for a in [&default, &always] {
        run_once(&pool, a.list_id).await?;
    }
    let changed = members / 10;
    let touched = changed * 8 / 10;
    let mc = sim.mailchimp();
    for name in ["skips", "always"] {
        mc.touch_members(name, touched);
        mc.modify_members(name, changed - touched);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "posts saved: lists of {members}, then {changed} members changed, {touched} of them only in interests and tags"
    );
    println!(
        "  {:<14} {:>8} {:>8} {:>10} {:>10} {:>9}",
        "list", "read", "posted", "unchanged", "dest reqs", "run ms"
    );
    let mut figures = Vec::new();
    for (label, a) in [("default", &default), ("--always-post", &always)] {
        let dest = sim.destination();
        let before = dest.stats(&a.destination_key);
        let run = run_once(&pool, a.list_id).await?;
        let after = dest.stats(&a.destination_key);
        let wall = (run.finished_at.context("no finish")? - run.created_at).num_milliseconds();
        println!(
            "  {:<14} {:>8} {:>8} {:>10} {:>10} {:>9}",
            label,
            run.members_read,
            after.records_received - before.records_received,
            run.records_unchanged,
            after.requests - before.requests,
            wall
        );
        figures.push(after.records_received - before.records_received);
    }
    println!(
        "  saved: {} of {} records posted ({:.0} %)",
        figures[1] - figures[0],
        figures[1],
        100.0 * (figures[1] - figures[0]) as f64 / figures[1].max(1) as f64
    );

    // 3. The audit's cost: without drift, then with 1 % deleted and 1 % of changes skipped by a
    // wrong cursor reset.
    println!("audit of a list of {members} (bytes/m: scan response bytes per member)");
    println!(
        "  {:<44} {:>8} {:>9} {:>8} {:>7} {:>9} {:>8}",
        "", "requests", "req/1000", "bytes/m", "healed", "deleted", "wall ms"
    );
    let clean = audit_once(&pool, default.list_id).await?;
    report_audit("no drift", &clean, members);
    let drift = members / 100;
    mc.delete_members("skips", drift);
    mc.modify_members("skips", drift);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let now: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT now()").fetch_one(&pool).await?;
    lists::reset_cursor(&pool, default.list_id, Some(now)).await?;
    let healed = audit_once(&pool, default.list_id).await?;
    report_audit("1 % deleted, 1 % stale", &healed, members);
    shutdown.cancel();
    worker.await??;
    pool.close().await;
    db.drop_db().await?;
    sim.shutdown().await;
    Ok(())
}

async fn audit_once(pool: &PgPool, list_id: i64) -> anyhow::Result<(list_audit::AuditResult, i64)> {
    let run = runs::create_audit(pool, list_id, false).await?;
    let r = wait_run(pool, run.id).await?;
    anyhow::ensure!(r.status == RunStatus::Completed, "audit ended {:?}", r);
    let wall = (r.finished_at.context("no finish")? - r.created_at).num_milliseconds();
    let result = list_audit::result(pool, run.id)
        .await?
        .context("no audit result")?;
    Ok((result, wall))
}

fn report_audit(label: &str, (r, wall): &(list_audit::AuditResult, i64), members: usize) {
    println!(
        "  {:<44} {:>8} {:>9.2} {:>8.1} {:>7} {:>9} {:>8}",
        label,
        r.mailchimp_requests,
        1000.0 * r.mailchimp_requests as f64 / members as f64,
        r.bytes_per_member(),
        r.healed,
        r.deleted,
        wall
    );
}

async fn run_once(pool: &PgPool, list_id: i64) -> anyhow::Result<runs::Run> {
    let id = runs::create(
        pool,
        list_id,
        RunRequest {
            mode: RequestedMode::Auto,
        },
    )
    .await?
    .id;
    let r = wait_run(pool, id).await?;
    anyhow::ensure!(r.status == RunStatus::Completed, "run ended {:?}", r);
    Ok(r)
}
