//! Lease renewal: one statement extends every lease this worker holds; a job whose lease was
//! taken over is cancelled locally so it stops spending requests on work that is no longer ours.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use importer_core::queue::{self, Fence};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// The jobs this worker is running: fence and the token that stops the job's task.
#[derive(Default, Clone)]
pub struct InFlight {
    jobs: Arc<Mutex<HashMap<i64, (Fence, CancellationToken)>>>,
}

impl InFlight {
    /// Registers a running job.
    pub fn insert(&self, fence: Fence, token: CancellationToken) {
        self.lock().insert(fence.job_id, (fence, token));
    }

    /// Forgets a job that ended.
    pub fn remove(&self, job_id: i64) {
        self.lock().remove(&job_id);
    }

    /// The fences of every running job.
    pub fn fences(&self) -> Vec<Fence> {
        self.lock().values().map(|(f, _)| *f).collect()
    }

    /// Jobs running now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no job runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cancels the given jobs' tasks (lease lost) and forgets them.
    fn cancel(&self, job_ids: &[i64]) {
        let mut jobs = self.lock();
        for id in job_ids {
            if let Some((_, token)) = jobs.remove(id) {
                token.cancel();
            }
        }
    }

    /// Cancels every running job's task and returns their fences (hard stop at shutdown).
    pub fn cancel_all(&self) -> Vec<Fence> {
        let mut jobs = self.lock();
        jobs.drain()
            .map(|(_, (fence, token))| {
                token.cancel();
                fence
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (Fence, CancellationToken)>> {
        // A poisoned map only means a task panicked mid-insert; the data is still consistent.
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Extends the leases of `in_flight` every `interval` until `stop` is cancelled.
pub async fn run(
    pool: PgPool,
    in_flight: InFlight,
    lease: Duration,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let fences = in_flight.fences();
        if fences.is_empty() {
            continue;
        }
        match queue::heartbeat(&pool, &fences, lease).await {
            Ok(held) => {
                let held: std::collections::HashSet<i64> = held.iter().map(|f| f.job_id).collect();
                let lost: Vec<i64> = fences
                    .iter()
                    .map(|f| f.job_id)
                    .filter(|id| !held.contains(id))
                    .collect();
                if !lost.is_empty() {
                    tracing::warn!(jobs = ?lost, "leases lost (taken over or job cancelled); stopping those jobs");
                    in_flight.cancel(&lost);
                }
            }
            Err(error) => tracing::warn!(%error, "heartbeat failed; will retry"),
        }
    }
}
