//! Shared plumbing of the benchmark programs: a throw-away database per run, and small
//! statistics helpers. Each program prints one result block in the format of bench/RESULTS.md.

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

/// A database created for one benchmark run and dropped at the end.
pub struct BenchDb {
    admin: PgPool,
    /// Connection options of the benchmark database.
    pub options: PgConnectOptions,
    /// Its URL, for child processes.
    pub url: String,
    name: String,
}

impl BenchDb {
    /// Creates and migrates `importer_bench_<random>` on the server of `DATABASE_URL`.
    pub async fn create() -> anyhow::Result<Self> {
        let base = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&base)
            .await
            .with_context(|| "Failed to connect to PostgreSQL (set DATABASE_URL)")?;
        let name = format!("importer_bench_{:08x}", rand::random::<u32>());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .context("Failed to create the benchmark database")?;
        let options: PgConnectOptions = base.parse::<PgConnectOptions>()?.database(&name);
        let url = options.to_url_lossy().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options.clone())
            .await?;
        importer_core::MIGRATOR.run(&pool).await?;
        pool.close().await;
        Ok(BenchDb {
            admin,
            options,
            url,
            name,
        })
    }

    /// A pool on the benchmark database.
    pub async fn pool(&self, size: u32) -> anyhow::Result<PgPool> {
        Ok(PgPoolOptions::new()
            .max_connections(size)
            .connect_with(self.options.clone())
            .await?)
    }

    /// Drops the database (connections must be closed).
    pub async fn drop_db(self) -> anyhow::Result<()> {
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&self.admin)
        .await?;
        Ok(())
    }
}

/// One simulated account with one list, registered in the simulators and in the importer.
pub struct SimAccount {
    /// Its Mailchimp API key (for the simulator's per-key stats).
    pub api_key: String,
    /// Its destination key (for the destination's stats and verification).
    pub destination_key: String,
    /// The importer's list id.
    pub list_id: i64,
}

/// Creates a list of `members` in the Mailchimp simulator under a new key, and registers it with
/// the importer: an account (cap 10, secrets encrypted with `secret_box`) and an hourly list.
pub async fn sim_account(
    pool: &PgPool,
    sim: &importer_sim::Sim,
    secret_box: &importer_core::secrets::SecretBox,
    name: &str,
    members: usize,
) -> anyhow::Result<SimAccount> {
    use importer_core::accounts::{self, NewAccount};
    use importer_core::lists::{self, NewList};
    use importer_core::secrets;
    let mc = sim.mailchimp();
    let api_key = mc.new_api_key("us6");
    mc.create_list(&api_key, name, members);
    let destination_key = format!("{name}-destination-key-0001");
    sim.destination().add_key(&destination_key);
    let account = accounts::create(
        pool,
        secret_box,
        &NewAccount {
            name: name.to_owned(),
            mailchimp_key: secrets::Secret::new(api_key.clone()),
            mailchimp_base_url: Some(sim.mailchimp_url()),
            destination_url: sim.destination_url(),
            destination_key: secrets::Secret::new(destination_key.clone()),
            max_concurrency: 10,
        },
    )
    .await?;
    let list = lists::add(
        pool,
        &NewList {
            account_id: account.id,
            mailchimp_list_id: name.to_owned(),
            name: None,
            schedule: Duration::from_secs(3600),
            enabled: true,
        },
    )
    .await?;
    Ok(SimAccount {
        api_key,
        destination_key,
        list_id: list.id,
    })
}

/// Waits (polling every 20 ms, at most 15 minutes) until run `id` has finished; returns it.
pub async fn wait_run(pool: &PgPool, id: i64) -> anyhow::Result<importer_core::runs::Run> {
    let started = std::time::Instant::now();
    loop {
        let r = importer_core::runs::get(pool, id)
            .await?
            .context("run vanished")?;
        if !r.status.is_active() {
            return Ok(r);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "run {id} did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `q`-quantile (0..=1) of `samples` (sorted in place).
pub fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let idx = ((samples.len() - 1) as f64 * q).round() as usize;
    samples[idx.min(samples.len() - 1)]
}

/// Milliseconds with three decimals, for reports.
pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}
