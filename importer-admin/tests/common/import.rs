//! A real import for tests that watch one: the simulators, an account and list registered
//! through the CLI, and in-process workers (`importer_worker::run`).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::time::Duration;

use importer_core::secrets::SecretBox;
use importer_sim::{Sim, SimConfig};
use importer_worker::WorkerConfig;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Admin;

/// The simulators, an account `acme` with one list of `members` members in them and in the
/// importer (through the CLI), and `workers` in-process workers.
pub struct Import {
    /// The simulators.
    pub sim: Sim,
    /// The CLI on the test's database, with the simulator keys in its environment.
    pub admin: Admin,
    stop: CancellationToken,
    workers: Vec<JoinHandle<anyhow::Result<importer_worker::WorkerReport>>>,
}

impl Import {
    /// Starts the simulators and registers `acme` (cap 4) and its list `browser01`.
    pub async fn start(pool: &PgPool, members: usize, page_ms: u64) -> Self {
        let config = SimConfig {
            seed: 7,
            mailchimp: importer_sim::MailchimpSimConfig {
                latency_base: Duration::from_millis(page_ms),
                latency_per_member: Duration::from_micros(20),
                ..importer_sim::MailchimpSimConfig::default()
            },
            ..SimConfig::default()
        };
        let sim = importer_sim::start(config).await.unwrap();
        let mc_key = sim.mailchimp().new_api_key("us6");
        let dest_key = "dest-key-browser-test-0001";
        sim.destination().add_key(dest_key);
        sim.mailchimp().create_list(&mc_key, "browser01", members);
        let admin = Admin::new(pool)
            .env("SIM_MC_KEY", &mc_key)
            .env("SIM_DEST_KEY", dest_key);
        admin
            .run(&[
                "accounts",
                "add",
                "--name",
                "acme",
                "--max-concurrency",
                "4",
                "--destination-url",
                &sim.destination_url(),
                "--mailchimp-base-url",
                &sim.mailchimp_url(),
                "--mailchimp-key-env",
                "SIM_MC_KEY",
                "--destination-key-env",
                "SIM_DEST_KEY",
            ])
            .ok();
        admin
            .run(&[
                "lists",
                "add",
                "--account",
                "acme",
                "--list-id",
                "browser01",
                "--schedule",
                "1d",
                "--disabled",
            ])
            .ok();
        importer_core::settings::set_sync_lag(pool, Duration::from_secs(1))
            .await
            .unwrap();
        Import {
            sim,
            admin,
            stop: CancellationToken::new(),
            workers: Vec::new(),
        }
    }

    /// Starts in-process worker `k`, serving `/metrics` on `http_addr` when given.
    pub fn spawn_worker(&mut self, pool: &PgPool, http_addr: Option<&str>, k: usize) {
        let options = pool.connect_options().as_ref().clone();
        self.spawn_worker_on(options, http_addr, k);
    }

    /// Starts in-process worker `k` connecting with `options` (e.g. as another role).
    pub fn spawn_worker_on(
        &mut self,
        options: sqlx::postgres::PgConnectOptions,
        http_addr: Option<&str>,
        k: usize,
    ) {
        let config = WorkerConfig {
            tick_secs: 3600,
            http_addr: http_addr.unwrap_or_default().to_owned(),
            ..worker_config(&format!("browser-worker-{k}"))
        };
        let secrets = SecretBox::from_hex(&self.admin.secret_key).unwrap();
        self.workers
            .push(start_worker(config, options, secrets, self.stop.clone()));
    }

    /// Stops the workers, then the simulators.
    pub async fn stop(self) {
        self.stop.cancel();
        for w in self.workers {
            let _ = w.await;
        }
        self.sim.shutdown().await;
    }
}

/// A test worker's configuration: named `worker_id`, 8 jobs in flight, quick polls, retries and
/// shutdown, a pool of 4, no tick.
pub fn worker_config(worker_id: &str) -> WorkerConfig {
    WorkerConfig {
        worker_id: Some(worker_id.to_owned()),
        concurrency: 8,
        poll_ms: 100,
        tick_secs: 0,
        shutdown_grace_secs: 2,
        pool_size: Some(4),
        retry_base_ms: 50,
        retry_max_secs: 1,
        ..WorkerConfig::default()
    }
}

/// Starts `importer_worker::run` in process on a pool of its own (a worker closes its pool when
/// it stops), until `stop` is cancelled.
pub fn start_worker(
    config: WorkerConfig,
    options: sqlx::postgres::PgConnectOptions,
    secrets: SecretBox,
    stop: CancellationToken,
) -> JoinHandle<anyhow::Result<importer_worker::WorkerReport>> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_lazy_with(options);
    tokio::spawn(importer_worker::run(config, pool, secrets, stop))
}

/// Run `run`'s status now.
pub async fn run_status(pool: &PgPool, run: i64) -> String {
    sqlx::query_scalar("SELECT status FROM importer.runs WHERE id = $1")
        .bind(run)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Waits until run `run` is in `status`; panics with the status it is in after `timeout`.
pub async fn wait_for_run(pool: &PgPool, run: i64, status: &str, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let now = run_status(pool, run).await;
        if now == status {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "run {run} is {now}, not {status}, after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
