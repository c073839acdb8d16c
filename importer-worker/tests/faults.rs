//! Faults, end to end (issue 9): PostgreSQL restarted mid-run (a private cluster, so the shared
//! server is untouched), chaos with SIGKILLed workers and a misbehaving Mailchimp, a destination
//! down longer than every retry, and a window slower than its lease.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{assert_completed, slow_sim, Harness};
use importer_core::queue;
use importer_core::runs::RunStatus;
use importer_sim::{DestinationFaults, MailchimpFaults};
use importer_worker::WorkerConfig;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

/// A PostgreSQL cluster of this test alone, in a temporary directory, on a free port.
struct PrivateCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl PrivateCluster {
    fn start() -> PrivateCluster {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries under /usr/lib/postgresql")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("pg_ctl").exists())
            .max()
            .expect("a PostgreSQL version with pg_ctl");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("importer-pg-{}-{port}", std::process::id()));
        let cluster = PrivateCluster { bin, dir, port };
        std::fs::create_dir_all(&cluster.dir).unwrap();
        if is_root() {
            // initdb refuses to run as root: the cluster belongs to the postgres user.
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(&cluster.dir));
        }
        run(cluster
            .pg("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&cluster.dir));
        cluster.pg_ctl("start");
        cluster
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A command of the cluster's binaries, as the postgres user when we are root.
    fn pg(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if is_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        }
    }

    fn pg_ctl(&self, action: &str) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let mut cmd = self.pg("pg_ctl");
        cmd.arg("-D")
            .arg(&self.dir)
            .args(["-w", "-m", "fast", "-o", &options]);
        cmd.arg("-l").arg(self.dir.join("log")).arg(action);
        run(&mut cmd);
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("command starts");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// PostgreSQL stops and starts again while a run is in flight: the worker's claims, heartbeats
/// and completions fail for a while, it reconnects with backoff, and the run finishes with
/// every member delivered.
#[tokio::test]
async fn postgres_restarted_mid_run_the_worker_reconnects_and_finishes() {
    let cluster = PrivateCluster::start();
    assert!(cluster.dir.join("PG_VERSION").exists());
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&cluster.url())
        .await
        .unwrap();
    importer_core::MIGRATOR.run(&pool).await.unwrap();
    let mut h = Harness::start(pool, slow_sim(91, 150)).await;
    h.add_account("restart", &[20_000], 4).await;
    let worker = h
        .spawn_worker(WorkerConfig {
            lease_secs: 10,
            ..h.worker_config(8)
        })
        .await;
    let run = h.start_runs().await.remove(0);
    h.wait_records(run.id, 3_000, Duration::from_secs(60)).await;

    cluster.pg_ctl("stop");
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.pg_ctl("start");

    let done = h
        .wait_finished(&[run.id], Duration::from_secs(120))
        .await
        .remove(0);
    assert_completed(&done);
    h.assert_destination_matches();
    worker.stop().await;
}

/// Four worker processes, one SIGKILLed and restarted every two seconds, while Mailchimp resets
/// connections, hangs past the timeout, answers 5xx and truncates bodies: at the end the
/// destination matches Mailchimp exactly.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn chaos_killed_workers_and_a_faulty_mailchimp_end_in_sync(pool: PgPool) {
    let mut h = Harness::start(pool, slow_sim(92, 250)).await;
    h.add_account("chaosa", &[30_000, 15_000], 3).await;
    h.add_account("chaosb", &[20_000], 2).await;
    h.sim.mailchimp().set_faults(MailchimpFaults {
        error_rate: 0.05,
        reset_rate: 0.03,
        truncated_rate: 0.03,
        hang_rate: 0.02,
        hang: Duration::from_secs(8),
        ..MailchimpFaults::default()
    });
    let env = [
        ("WORKER_CONCURRENCY", "6".to_owned()),
        ("WORKER_LEASE_SECS", "3".to_owned()),
        ("WORKER_RETRY_BASE_MS", "200".to_owned()),
        ("WORKER_RETRY_MAX_SECS", "2".to_owned()),
        ("MAILCHIMP_TIMEOUT_SECS", "3".to_owned()),
    ];
    let mut workers: Vec<_> = (0..4).map(|_| h.spawn_process(&env)).collect();
    let runs = h.start_runs().await;
    let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut kills = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM importer.runs WHERE id = ANY($1) AND status IN ('planning', 'running')",
        )
        .bind(&ids)
        .fetch_one(&h.pool)
        .await
        .unwrap();
        if pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "runs still active after chaos");
        let victim = kills % workers.len();
        workers[victim].kill().unwrap();
        workers[victim].wait().unwrap();
        workers[victim] = h.spawn_process(&env);
        kills += 1;
    }
    for w in &mut workers {
        w.kill().unwrap();
        w.wait().unwrap();
    }
    let finished = h.wait_finished(&ids, Duration::from_secs(5)).await;
    let dead: Vec<(i64, String, Option<String>, serde_json::Value)> =
        sqlx::query_as("SELECT id, reason, last_error, errors FROM importer.dead_jobs")
            .fetch_all(&h.pool)
            .await
            .unwrap();
    assert!(dead.is_empty(), "after {kills} kills: {dead:#?}");
    for run in &finished {
        assert_completed(run);
    }
    assert!(
        kills >= 2,
        "the chaos lasted long enough to kill workers ({kills})"
    );
    h.assert_destination_matches();
}

/// The destination is down longer than every retry: the window jobs die with a clear error, the
/// run fails and the cursor stays. After recovery one `dead requeue --run` finishes the run.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_destination_down_past_every_retry_fails_the_run_and_one_requeue_finishes_it(
    pool: PgPool,
) {
    let mut h = Harness::start(pool, slow_sim(93, 5)).await;
    let a = h.add_account("down", &[3_000], 4).await;
    let list = h.accounts[a].lists[0].id;
    h.sim.destination().set_faults(DestinationFaults {
        error_rate: 1.0,
        ..DestinationFaults::default()
    });
    let worker = h
        .spawn_worker(WorkerConfig {
            retry_base_ms: 50,
            retry_max_secs: 1,
            ..h.worker_config(4)
        })
        .await;
    let run = h.start_runs().await.remove(0);
    let failed = h
        .wait_finished(&[run.id], Duration::from_secs(90))
        .await
        .remove(0);
    assert_eq!(failed.status, RunStatus::Failed, "{failed:?}");
    assert!(failed.jobs_dead > 0);
    assert_eq!(h.cursor(list).await, None, "the cursor stays");
    let errors: Vec<String> =
        sqlx::query_scalar("SELECT last_error FROM importer.dead_jobs WHERE run_id = $1")
            .bind(run.id)
            .fetch_all(&h.pool)
            .await
            .unwrap();
    assert!(!errors.is_empty());
    assert!(
        errors.iter().all(|e| e.contains("destination")),
        "{errors:?}"
    );

    h.sim.destination().set_faults(DestinationFaults::default());
    let requeued = queue::requeue_run(&h.pool, run.id).await.unwrap();
    assert_eq!(requeued, u64::try_from(failed.jobs_dead).unwrap());
    let done = h
        .wait_finished(&[run.id], Duration::from_secs(60))
        .await
        .remove(0);
    assert_eq!(done.status, RunStatus::Completed, "{done:?}");
    assert!(h.cursor(list).await.is_some());
    h.assert_destination_current();
    worker.stop().await;
}

/// A window whose Mailchimp pages take longer than the lease keeps its lease by heartbeat and
/// is claimed exactly once.
#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_window_slower_than_its_lease_keeps_it_and_runs_once(pool: PgPool) {
    let mut h = Harness::start(pool, slow_sim(94, 4_000)).await;
    h.add_account("slow", &[1_500], 2).await;
    sqlx::raw_sql(
        "CREATE TABLE test_claims (job_id bigint, attempts int);
         CREATE FUNCTION test_log_claim() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO test_claims VALUES (NEW.id, NEW.attempts); RETURN NEW; END $$;
         CREATE TRIGGER test_log_claim AFTER UPDATE ON importer.jobs FOR EACH ROW
          WHEN (NEW.lease_token IS DISTINCT FROM OLD.lease_token AND NEW.lease_token IS NOT NULL)
          EXECUTE FUNCTION test_log_claim();",
    )
    .execute(&h.pool)
    .await
    .unwrap();
    let worker = h
        .spawn_worker(WorkerConfig {
            lease_secs: 3,
            mailchimp_timeout_secs: 30,
            ..h.worker_config(4)
        })
        .await;
    let run = h.start_runs().await.remove(0);
    let done = h
        .wait_finished(&[run.id], Duration::from_secs(120))
        .await
        .remove(0);
    assert_completed(&done);
    h.assert_destination_matches();
    let claims: Vec<(i64, i64)> =
        sqlx::query_as("SELECT job_id, count(*) FROM test_claims GROUP BY job_id ORDER BY job_id")
            .fetch_all(&h.pool)
            .await
            .unwrap();
    assert!(!claims.is_empty());
    assert!(
        claims.iter().all(|(_, n)| *n == 1),
        "every job claimed once: {claims:?}"
    );
    worker.stop().await;
}
