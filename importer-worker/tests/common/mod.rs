//! End-to-end harness: a fresh database (from `#[sqlx::test]`), the simulators in process, and
//! workers either in process (`importer_worker::run`) or as real `importer-worker` processes.
//! Tests wait by probing the database (runs finished, queue drained), never by fixed sleeps.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use importer_core::accounts::{self, NewAccount};
use importer_core::lists::{self, NewList};
use importer_core::runs::{self, Run, RunStatus};
use importer_core::secrets::{Secret, SecretBox};
use importer_sim::{ExpectedRecord, Sim, SimConfig};
use importer_worker::WorkerConfig;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One account registered in both the simulator and the importer.
pub struct TestAccount {
    pub id: i64,
    pub api_key: String,
    pub destination_key: String,
    pub lists: Vec<TestList>,
}

/// One list registered in both.
#[derive(Clone)]
pub struct TestList {
    pub id: i64,
    pub mailchimp_id: String,
}

/// The system under test.
pub struct Harness {
    pub pool: PgPool,
    pub options: PgConnectOptions,
    pub sim: Sim,
    pub secret_hex: String,
    pub secrets: SecretBox,
    pub accounts: Vec<TestAccount>,
}

impl Harness {
    /// Starts the simulators; `config` sets latency and switches. The test database's sync lag
    /// is [`TEST_LAG`] (tests of the lag set their own).
    pub async fn start(pool: PgPool, config: SimConfig) -> Self {
        // TEST_LOG=info shows the in-process workers' log lines (to diagnose a test).
        if let Ok(filter) = std::env::var("TEST_LOG") {
            use tracing_subscriber::layer::SubscriberExt;
            use tracing_subscriber::util::SubscriberInitExt;
            let filter: tracing_subscriber::filter::Targets =
                filter.parse().expect("TEST_LOG is target=level directives");
            let _ = tracing_subscriber::registry()
                .with(tracing_subscriber::fmt::layer().with_test_writer())
                .with(filter)
                .try_init();
        }
        importer_core::settings::set_sync_lag(&pool, TEST_LAG)
            .await
            .expect("sync lag set");
        let options = (*pool.connect_options()).clone();
        let sim = importer_sim::start(config).await.expect("simulator starts");
        let secret_hex = SecretBox::generate_key_hex();
        let secrets = SecretBox::from_hex(&secret_hex).unwrap();
        Harness {
            pool,
            options,
            sim,
            secret_hex,
            secrets,
            accounts: Vec::new(),
        }
    }

    /// The test database's URL, for worker processes: `DATABASE_URL` with its database swapped.
    pub fn database_url(&self) -> String {
        let base = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let db = self
            .options
            .get_database()
            .expect("test database has a name");
        let authority_start = base.find("://").map_or(0, |i| i + 3);
        let (head, rest) = base.split_at(authority_start);
        let path_start = rest.find('/').unwrap_or(rest.len());
        let query = rest.find('?').map_or("", |q| &rest[q..]);
        format!("{head}{}/{db}{query}", &rest[..path_start])
    }

    /// Registers an account with lists of the given sizes (index = list number).
    pub async fn add_account(
        &mut self,
        name: &str,
        sizes: &[usize],
        max_concurrency: i32,
    ) -> usize {
        let mc = self.sim.mailchimp();
        let api_key = mc.new_api_key("us6");
        let destination_key = format!("dest-{name}-0123456789abcdef");
        self.sim.destination().add_key(&destination_key);
        let account = accounts::create(
            &self.pool,
            &self.secrets,
            &NewAccount {
                name: name.to_owned(),
                mailchimp_key: Secret::new(api_key.clone()),
                mailchimp_base_url: Some(self.sim.mailchimp_url()),
                destination_url: self.sim.destination_url(),
                destination_key: Secret::new(destination_key.clone()),
                max_concurrency,
            },
        )
        .await
        .unwrap();
        let mut test_lists = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            let mailchimp_id = format!("{name}{i}list");
            mc.create_list(&api_key, &mailchimp_id, *size);
            let list = lists::add(
                &self.pool,
                &NewList {
                    account_id: account.id,
                    mailchimp_list_id: mailchimp_id.clone(),
                    name: None,
                    schedule: Duration::from_secs(3600),
                    enabled: true,
                },
            )
            .await
            .unwrap();
            test_lists.push(TestList {
                id: list.id,
                mailchimp_id,
            });
        }
        self.accounts.push(TestAccount {
            id: account.id,
            api_key,
            destination_key,
            lists: test_lists,
        });
        self.accounts.len() - 1
    }

    /// A worker configuration for tests: short lease and poll, no HTTP port, no tick.
    pub fn worker_config(&self, concurrency: usize) -> WorkerConfig {
        WorkerConfig {
            concurrency,
            lease_secs: 5,
            poll_ms: 200,
            tick_secs: 0,
            shutdown_grace_secs: 10,
            mailchimp_timeout_secs: 5,
            destination_timeout_secs: 5,
            ..WorkerConfig::default()
        }
    }

    /// Starts an in-process worker.
    pub async fn spawn_worker(&self, config: WorkerConfig) -> InProcessWorker {
        self.spawn_worker_with(config, self.secrets.clone()).await
    }

    /// Starts an in-process worker with its own encryption keys.
    pub async fn spawn_worker_with(
        &self,
        config: WorkerConfig,
        secrets: SecretBox,
    ) -> InProcessWorker {
        let pool = PgPoolOptions::new()
            .max_connections(config.pool_size())
            .connect_with(self.options.clone())
            .await
            .unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(importer_worker::run(
            config,
            pool,
            secrets,
            shutdown.clone(),
        ));
        InProcessWorker { shutdown, task }
    }

    /// Starts a real `importer-worker` process with extra environment.
    pub fn spawn_process(&self, env: &[(&str, String)]) -> WorkerProcess {
        self.process(env, Stdio::inherit())
    }

    /// Starts a real `importer-worker` process whose (JSON) log lines the test reads.
    pub fn spawn_process_logged(&self, env: &[(&str, String)]) -> WorkerProcess {
        self.process(env, Stdio::piped())
    }

    fn process(&self, env: &[(&str, String)], stderr: Stdio) -> WorkerProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_importer-worker"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", self.database_url())
            .env("IMPORTER_SECRET_KEY", &self.secret_hex)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .env("WORKER_HTTP_ADDR", "")
            .env("WORKER_TICK_SECS", "0")
            .env("WORKER_LEASE_SECS", "5")
            .env("WORKER_POLL_MS", "200")
            .env("MAILCHIMP_TIMEOUT_SECS", "5")
            .stdout(Stdio::null())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        WorkerProcess(cmd.spawn().expect("importer-worker starts"))
    }

    /// Starts a run for every list of the harness (admin trigger, incremental or full).
    pub async fn start_runs(&self) -> Vec<Run> {
        let mut started = Vec::new();
        for account in &self.accounts {
            for list in &account.lists {
                let run = runs::create(
                    &self.pool,
                    list.id,
                    runs::RunRequest {
                        mode: runs::RequestedMode::Auto,
                    },
                )
                .await
                .unwrap();
                started.push(run);
            }
        }
        started
    }

    /// Waits (probing the database) until every given run has finished; returns them.
    pub async fn wait_finished(&self, ids: &[i64], timeout: Duration) -> Vec<Run> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut done = Vec::new();
            for id in ids {
                let run = runs::get(&self.pool, *id).await.unwrap().unwrap();
                if !run.status.is_active() {
                    done.push(run);
                }
            }
            if done.len() == ids.len() {
                return done;
            }
            assert!(
                Instant::now() < deadline,
                "runs {ids:?} not finished after {timeout:?}: {} done",
                done.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `list_id` from its cursor (full without one) to its end, which must be completed.
    pub async fn sync_list(&self, list_id: i64) -> Run {
        let run = runs::create(
            &self.pool,
            list_id,
            runs::RunRequest {
                mode: runs::RequestedMode::Auto,
            },
        )
        .await
        .unwrap();
        let run = self
            .wait_finished(&[run.id], Duration::from_secs(60))
            .await
            .remove(0);
        assert_completed(&run);
        run
    }

    /// Waits until `run_id` has delivered at least `records` (ranges checkpoint page by page).
    pub async fn wait_records(&self, run_id: i64, records: i64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let run = runs::get(&self.pool, run_id).await.unwrap().unwrap();
            if run.records_imported >= records || !run.status.is_active() {
                return;
            }
            assert!(Instant::now() < deadline, "run {run_id} made no progress");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until some jobs of `run_id` are done.
    pub async fn wait_jobs_done(&self, run_id: i64, at_least: i32, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let run = runs::get(&self.pool, run_id).await.unwrap().unwrap();
            if run.jobs_done >= at_least || !run.status.is_active() {
                return;
            }
            assert!(Instant::now() < deadline, "run {run_id} made no progress");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every current member of every list of `account`, as the destination should hold them.
    pub fn expected(&self, account: usize) -> Vec<ExpectedRecord> {
        let mc = self.sim.mailchimp();
        self.accounts[account]
            .lists
            .iter()
            .flat_map(|l| mc.expected_records(&l.mailchimp_id))
            .collect()
    }

    /// Asserts the destination holds exactly the current members of every account.
    pub fn assert_destination_matches(&self) {
        for (i, account) in self.accounts.iter().enumerate() {
            let v = self
                .sim
                .destination()
                .verify(&account.destination_key, &self.expected(i));
            assert!(
                v.missing.is_empty() && v.stale.is_empty() && v.unexpected.is_empty(),
                "account {i}: {} missing, {} stale, {} unexpected of {} expected",
                v.missing.len(),
                v.stale.len(),
                v.unexpected.len(),
                v.expected
            );
        }
    }

    /// Asserts the destination holds every current member of every account, current: nothing
    /// missing or stale (members deleted in Mailchimp stay at the destination, which has no
    /// delete).
    pub fn assert_destination_current(&self) {
        for (i, account) in self.accounts.iter().enumerate() {
            let v = self
                .sim
                .destination()
                .verify(&account.destination_key, &self.expected(i));
            assert!(
                v.missing.is_empty() && v.stale.is_empty(),
                "account {i}: {} missing, {} stale of {} expected",
                v.missing.len(),
                v.stale.len(),
                v.expected
            );
        }
    }

    /// The cursor of a list.
    pub async fn cursor(&self, list_id: i64) -> Option<DateTime<Utc>> {
        lists::get(&self.pool, list_id)
            .await
            .unwrap()
            .unwrap()
            .synced_until
    }

    /// Ids missing or stale at the destination for `account`.
    pub fn not_current(&self, account: usize) -> HashSet<String> {
        let v = self.sim.destination().verify(
            &self.accounts[account].destination_key,
            &self.expected(account),
        );
        v.missing.into_iter().chain(v.stale).collect()
    }
}

/// Simulators answering Mailchimp pages in `base_ms` plus 20 µs per member.
pub fn slow_sim(seed: u64, base_ms: u64) -> SimConfig {
    SimConfig {
        seed,
        mailchimp: importer_sim::MailchimpSimConfig {
            latency_base: Duration::from_millis(base_ms),
            latency_per_member: Duration::from_micros(20),
            ..importer_sim::MailchimpSimConfig::default()
        },
        ..SimConfig::default()
    }
}

/// The sync lag of test databases: short, so that a change is in the next run's window soon.
pub const TEST_LAG: Duration = Duration::from_secs(1);

/// Waits until changes made now are older than `lag` and the clock is in a later second: the
/// next run's window (ending at now minus the lag) then includes them.
pub async fn wait_past_lag(lag: Duration) {
    tokio::time::sleep(lag).await;
    next_second().await;
}

/// Sleeps until the wall clock enters a new second: `last_changed` has one-second resolution,
/// so a mutation and the run that should see it must not share a second with the cursor.
pub async fn next_second() {
    let now = Utc::now();
    let into = now.timestamp_subsec_millis();
    tokio::time::sleep(Duration::from_millis(u64::from(1000 - into) + 20)).await;
}

/// A log line and when the test read it.
pub type Line = (DateTime<Utc>, serde_json::Value);

/// The JSON log lines of a worker process, as they arrive.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Line>>>);

impl Log {
    /// Reads `worker`'s stderr (a logged process) in a thread of its own.
    pub fn follow(worker: &mut WorkerProcess) -> Log {
        let log = Log::default();
        let lines = log.0.clone();
        let stderr = worker.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    lines.lock().unwrap().push((Utc::now(), v));
                }
            }
        });
        log
    }

    /// The lines whose message contains `text`, with when they arrived.
    pub fn matching(&self, text: &str) -> Vec<Line> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, v)| v["message"].as_str().unwrap_or_default().contains(text))
            .cloned()
            .collect()
    }

    /// Waits for the first line whose message contains `text`.
    pub async fn wait_for(&self, text: &str, timeout: Duration) -> Line {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(first) = self.matching(text).into_iter().next() {
                return first;
            }
            assert!(
                Instant::now() < deadline,
                "no log line {text:?} after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A worker process, killed when dropped so a failing test leaves no orphan behind.
pub struct WorkerProcess(pub Child);

impl std::ops::Deref for WorkerProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for WorkerProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A worker running in this process.
pub struct InProcessWorker {
    pub shutdown: CancellationToken,
    pub task: JoinHandle<anyhow::Result<importer_worker::WorkerReport>>,
}

impl InProcessWorker {
    /// Stops the worker gracefully and returns its report.
    pub async fn stop(self) -> importer_worker::WorkerReport {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap()
    }
}

/// Asserts a run completed with consistent counters.
pub fn assert_completed(run: &Run) {
    assert_eq!(
        run.status,
        RunStatus::Completed,
        "run {} is {:?}: {:?}",
        run.id,
        run.status,
        run.error
    );
    assert_eq!(run.jobs_pending, 0);
    assert_eq!(run.jobs_dead, 0);
    assert_eq!(run.jobs_done, run.jobs_total, "run {}", run.id);
}

/// Sends SIGTERM to a child process.
pub fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success());
}
