//! Many claimers on separate connections: every job completed exactly once, never held by two
//! claimers at once, nothing lost.
#![allow(clippy::unwrap_used)]

mod queue_support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use importer_core::queue::{self, JobKind, RetryOutcome};
use importer_core::runs::{self, RunStatus};
use queue_support::{account_with_list, admin_run, jobs_count, pool, pools, window, LEASE};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

const ACCOUNTS: usize = 4;
const WINDOWS_PER_RUN: usize = 1250;
const CLAIMERS: usize = 8;

#[derive(Default)]
struct Ledger {
    /// Jobs currently held by some claimer (by this process's account of it).
    held: Mutex<HashSet<i64>>,
    /// How many times each job was completed.
    completed: Mutex<HashMap<i64, u32>>,
    /// Completed jobs, all claimers together.
    done: AtomicUsize,
}

impl Ledger {
    fn take(&self, id: i64) {
        assert!(
            self.held.lock().unwrap().insert(id),
            "job {id} claimed while another claimer held it"
        );
    }

    fn give_back(&self, id: i64) {
        assert!(self.held.lock().unwrap().remove(&id));
    }

    fn completed(&self, id: i64) {
        *self.completed.lock().unwrap().entry(id).or_default() += 1;
        self.done.fetch_add(1, Ordering::SeqCst);
    }
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn eight_claimers_work_5000_jobs_each_completed_exactly_once(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let setup = pool(&connect, 2).await;
    let mut run_ids = Vec::new();
    for a in 0..ACCOUNTS {
        let (account, list) = account_with_list(&setup, &format!("acct{a}"), 1000).await;
        let run = admin_run(&setup, list).await;
        let windows: Vec<_> = (0..WINDOWS_PER_RUN)
            .map(|k| window(account, run.id, k as i64))
            .collect();
        queue::enqueue_many(&setup, &windows).await.unwrap();
        run_ids.push(run.id);
    }
    // 5,000 window jobs plus one plan job per run.
    let total = ACCOUNTS * (WINDOWS_PER_RUN + 1);
    assert_eq!(jobs_count(&setup).await, total as i64);

    let ledger = Arc::new(Ledger::default());
    let mut claimers = tokio::task::JoinSet::new();
    for (n, pool) in pools(&connect, CLAIMERS).await.into_iter().enumerate() {
        let ledger = ledger.clone();
        claimers.spawn(async move {
            let worker = format!("claimer-{n}");
            let mut retried = 0;
            while ledger.done.load(Ordering::SeqCst) < total {
                let jobs = queue::claim(&pool, &worker, 50, LEASE).await.unwrap();
                if jobs.is_empty() {
                    // Other claimers hold the accounts right now, or retries are not due yet.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                for job in &jobs {
                    ledger.take(job.id);
                }
                let mut batch = Vec::new();
                for job in jobs {
                    if job.kind == JobKind::PlanRun {
                        ledger.give_back(job.id);
                        let outcome = queue::complete(&pool, job.fence(), Default::default())
                            .await
                            .unwrap();
                        assert!(!outcome.is_fenced());
                        ledger.completed(job.id);
                    } else if job.attempt == 1 && job.id % 10 == 0 {
                        // Some jobs fail once and come back at once (Retry-After: 0).
                        ledger.give_back(job.id);
                        let outcome = queue::retry(&pool, &job, "flaky", Some(Duration::ZERO))
                            .await
                            .unwrap();
                        assert!(matches!(outcome, RetryOutcome::Retried { .. }));
                        retried += 1;
                    } else {
                        batch.push((job.fence(), 1));
                    }
                }
                for (fence, _) in &batch {
                    ledger.give_back(fence.job_id);
                }
                let completed = queue::complete_many(&pool, &batch).await.unwrap();
                assert_eq!(completed.len(), batch.len(), "a held job was fenced");
                for fence in completed {
                    ledger.completed(fence.job_id);
                }
            }
            retried
        });
    }
    let mut retried = 0;
    while let Some(result) = claimers.join_next().await {
        retried += result.unwrap();
    }

    {
        let completed = ledger.completed.lock().unwrap();
        assert_eq!(completed.len(), total, "every job completed");
        assert!(completed.values().all(|n| *n == 1), "a job completed twice");
    }
    assert!(
        retried >= total / 20,
        "the retry path was exercised ({retried})"
    );
    assert!(ledger.held.lock().unwrap().is_empty());
    assert_eq!(jobs_count(&setup).await, 0, "jobs left in the queue");
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM importer.dead_jobs")
        .fetch_one(&setup)
        .await
        .unwrap();
    assert_eq!(dead, 0);
    let mut done_on_runs = 0;
    for run_id in run_ids {
        let run = runs::get(&setup, run_id).await.unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Completed);
        assert_eq!(run.jobs_total, WINDOWS_PER_RUN as i32 + 1);
        assert_eq!(run.jobs_done, run.jobs_total);
        assert_eq!(run.jobs_pending, 0);
        assert_eq!(run.records_imported, WINDOWS_PER_RUN as i64);
        done_on_runs += run.jobs_done as usize;
    }
    assert_eq!(done_on_runs, total, "the runs' counters add up");
}
