//! Starting jobs: the one place that turns a leased job into a running task, whether the claim
//! loop claimed it or a finishing job received it by slot handoff.
//!
//! A job runs only with a capacity permit (given back when its work ends, before its outcome
//! commits), is registered in [`InFlight`] (so heartbeats renew
//! it and shutdown can release it) and is spawned on the worker's [`TaskTracker`] (so shutdown
//! waits for it). A job handed over during shutdown is therefore waited for or released like
//! any other, never orphaned.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use importer_core::queue::ClaimedJob;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::heartbeat::InFlight;
use crate::jobs::{self, JobContext};

/// Capacity, in-flight set and task tracker of one worker process.
pub(crate) struct Dispatcher {
    capacity: Arc<Semaphore>,
    in_flight: InFlight,
    tracker: TaskTracker,
    /// Woken when a job ends or gives back its Mailchimp slot, so the claim loop fills it.
    pub(crate) slot_freed: Notify,
    started: AtomicU64,
}

impl Dispatcher {
    /// A dispatcher for `concurrency` jobs at once (at least one).
    pub(crate) fn new(concurrency: usize, in_flight: InFlight) -> Dispatcher {
        Dispatcher {
            capacity: Arc::new(Semaphore::new(concurrency.max(1))),
            in_flight,
            tracker: TaskTracker::new(),
            slot_freed: Notify::new(),
            started: AtomicU64::new(0),
        }
    }

    /// Up to `n` free capacity permits, taken now.
    pub(crate) fn permits(&self, n: usize) -> Vec<OwnedSemaphorePermit> {
        std::iter::from_fn(|| self.capacity.clone().try_acquire_owned().ok())
            .take(n)
            .collect()
    }

    /// Whether a permit is free.
    pub(crate) fn has_room(&self) -> bool {
        self.capacity.available_permits() > 0
    }

    /// Jobs started so far.
    pub(crate) fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Waits for every started job, for at most `grace`; returns whether they all ended.
    pub(crate) async fn drain(&self, grace: std::time::Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }

    /// Waits for every started job (after they were cancelled).
    pub(crate) async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Runs `task` on the worker's tracker, so that shutdown waits for it like for a job: for
    /// work a job starts that must end even when the job itself is stopped (a slot handoff,
    /// which may lease the next job to this worker and must then start or release it).
    pub(crate) fn spawn_tracked<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(task)
    }

    /// Runs `job`, leased by a request sent at `asked_at`, with `permit` as a tracked task;
    /// gives the job back (`Err`) when the worker is past its hard stop, or when a newer lease
    /// of the same job already runs here, for the caller to release (fenced, for the latter).
    pub(crate) fn start(
        &self,
        ctx: Arc<JobContext>,
        job: ClaimedJob,
        permit: OwnedSemaphorePermit,
        asked_at: tokio::time::Instant,
    ) -> Result<(), ClaimedJob> {
        let token = CancellationToken::new();
        if !self.in_flight.insert(job.fence(), token.clone(), asked_at) {
            return Err(job);
        }
        self.started.fetch_add(1, Ordering::Relaxed);
        let span = tracing::error_span!(
            "job",
            job.id = job.id,
            job.kind = job.kind.as_str(),
            job.attempt = job.attempt,
            run.id = job.run_id,
            account.id = job.account_id,
        );
        metrics::gauge!("importer_jobs_in_flight").increment(1.0);
        metrics::counter!("importer_jobs_claimed_total", "kind" => job.kind.as_str()).increment(1);
        self.tracker.spawn(
            async move {
                tokio::select! {
                    _ = jobs::run(&ctx, &job, permit) => {}
                    _ = token.cancelled() => {
                        job_line!(warn, job, "job stopped: lease lost or at risk, or shutdown grace period over");
                    }
                }
                ctx.dispatcher.in_flight.remove(job.fence());
                metrics::gauge!("importer_jobs_in_flight").decrement(1.0);
                // The capacity permit was freed when the work ended (or with the cancelled
                // job); wake the claim loop to use it.
                ctx.dispatcher.slot_freed.notify_one();
            }
            .instrument(span),
        );
        Ok(())
    }
}
