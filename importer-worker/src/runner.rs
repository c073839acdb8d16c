//! One worker process's life: claim loop, heartbeat, tick, health port, graceful shutdown.
//!
//! `run` is a library function taking its configuration, a pool and a shutdown token, so tests
//! and the admin `demo` run the real loop in process; `main` only parses, wires and waits.

use std::sync::Arc;
use std::time::Duration;

use importer_core::backoff::Backoff;
use importer_core::destination::{DestinationClient, DestinationConfig};
use importer_core::mailchimp::{MailchimpClient, MailchimpConfig};
use importer_core::queue::{self, ClaimedJob};
use importer_core::secrets::SecretBox;
use importer_core::tick;
use sqlx::PgPool;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::WorkerConfig;
use crate::heartbeat::{self, InFlight};
use crate::jobs::{self, JobContext};
use crate::listener::JobListener;

/// What a worker did before it stopped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerReport {
    /// Jobs claimed.
    pub claimed: u64,
    /// Jobs still running at the end of the grace period, given back to the queue.
    pub released: u64,
}

/// Runs a worker until `shutdown` is cancelled, then stops claiming, lets in-flight jobs finish
/// within the grace period and releases (without spending an attempt) those that do not.
///
/// Errors: building the HTTP clients or binding the health port; everything after start-up is
/// logged and retried, never fatal.
pub async fn run(
    config: WorkerConfig,
    pool: PgPool,
    secrets: SecretBox,
    shutdown: CancellationToken,
) -> anyhow::Result<WorkerReport> {
    // Install the metrics recorder before the first metric is recorded (metrics recorded
    // without one are dropped).
    crate::telemetry::metrics_handle();
    let worker_id = config.resolved_worker_id();
    let span = tracing::info_span!("worker", worker.id = %worker_id);
    run_inner(config, pool, secrets, shutdown, worker_id)
        .instrument(span)
        .await
}

async fn run_inner(
    config: WorkerConfig,
    pool: PgPool,
    secrets: SecretBox,
    shutdown: CancellationToken,
    worker_id: String,
) -> anyhow::Result<WorkerReport> {
    let mailchimp = MailchimpClient::new(MailchimpConfig {
        timeout: Duration::from_secs(config.mailchimp_timeout_secs),
        max_body_bytes: config.mailchimp_max_body_bytes,
        ..MailchimpConfig::default()
    })?;
    let destination = DestinationClient::new(DestinationConfig {
        timeout: Duration::from_secs(config.destination_timeout_secs),
        max_batch: config.destination_max_batch,
        ..DestinationConfig::default()
    })?;
    let capacity = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let (handoff_tx, mut handoff_rx) = mpsc::unbounded_channel();
    let ctx = Arc::new(JobContext {
        pool: pool.clone(),
        mailchimp,
        destination,
        secrets,
        slot_freed: Arc::new(Notify::new()),
        snooze_backoff: Backoff::snooze(),
        worker_id: worker_id.clone(),
        lease: config.lease(),
        capacity,
        handoff: handoff_tx,
        stopping: shutdown.clone(),
    });

    // Background services stop on `services`, which is cancelled only after the jobs are done.
    let services = CancellationToken::new();
    let in_flight = InFlight::default();
    let heartbeat_task = tokio::spawn(
        heartbeat::run(
            pool.clone(),
            in_flight.clone(),
            config.lease(),
            config.heartbeat_interval(),
            services.clone(),
        )
        .in_current_span(),
    );
    let http_task = match config.http_addr()? {
        Some(addr) => {
            let (bound, task) = crate::http::serve(addr, pool.clone(), services.clone()).await?;
            tracing::info!(%bound, "health and metrics listening");
            Some(task)
        }
        None => None,
    };
    let tick_task = config.tick_interval().map(|interval| {
        tokio::spawn(ticker(pool.clone(), interval, shutdown.clone()).in_current_span())
    });

    tracing::info!(
        concurrency = config.concurrency,
        lease_secs = config.lease_secs,
        "worker started"
    );
    let tracker = TaskTracker::new();
    let claimed = claim_loop(
        &config,
        &ctx,
        &worker_id,
        &in_flight,
        &tracker,
        &mut handoff_rx,
        &shutdown,
    )
    .await;

    // Graceful shutdown: no more claims; in-flight jobs get the grace period.
    tracker.close();
    let grace = config.shutdown_grace();
    tracing::info!(
        in_flight = in_flight.len(),
        grace_secs = grace.as_secs(),
        "shutting down: waiting for in-flight jobs"
    );
    let mut released = 0;
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        let fences = in_flight.cancel_all();
        tracker.wait().await;
        match queue::release(&pool, &fences).await {
            Ok(n) => released = n,
            Err(error) => {
                tracing::error!(%error, "could not release jobs; their leases will expire")
            }
        }
        tracing::warn!(
            released,
            "grace period over: released unfinished jobs without spending an attempt"
        );
    }
    services.cancel();
    let _ = heartbeat_task.await;
    if let Some(task) = http_task {
        let _ = task.await;
    }
    if let Some(task) = tick_task {
        let _ = task.await;
    }
    tracing::info!(claimed, released, "worker stopped");
    Ok(WorkerReport { claimed, released })
}

/// Claims jobs whenever there is capacity and something may be waiting; returns jobs claimed.
async fn claim_loop(
    config: &WorkerConfig,
    ctx: &Arc<JobContext>,
    worker_id: &str,
    in_flight: &InFlight,
    tracker: &TaskTracker,
    handoffs: &mut mpsc::UnboundedReceiver<(ClaimedJob, OwnedSemaphorePermit)>,
    shutdown: &CancellationToken,
) -> u64 {
    let capacity = &ctx.capacity;
    let mut listener = JobListener::connect(&ctx.pool).await;
    let mut claimed_total = 0u64;
    let mut error_backoff = Duration::from_millis(100);
    loop {
        if shutdown.is_cancelled() {
            return claimed_total;
        }
        // Take the permits before claiming: handoffs take permits concurrently, and a claimed
        // job without a permit would sit leased and unrun until its lease expired.
        let mut permits: Vec<OwnedSemaphorePermit> =
            std::iter::from_fn(|| capacity.clone().try_acquire_owned().ok())
                .take(config.claim_batch.max(1))
                .collect();
        let free = permits.len();
        let mut filled = false;
        if free > 0 {
            match queue::claim(&ctx.pool, worker_id, free, config.lease()).await {
                Ok(jobs) => {
                    error_backoff = Duration::from_millis(100);
                    filled = jobs.len() == free;
                    claimed_total += jobs.len() as u64;
                    for (job, permit) in jobs.into_iter().zip(permits.drain(..)) {
                        spawn_job(ctx, job, permit, in_flight, tracker);
                    }
                }
                Err(error) => {
                    drop(permits);
                    tracing::warn!(%error, "claim failed; backing off");
                    tokio::select! {
                        _ = shutdown.cancelled() => return claimed_total,
                        _ = tokio::time::sleep(error_backoff) => {}
                    }
                    error_backoff = (error_backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        drop(permits);
        if filled && capacity.available_permits() > 0 {
            // We got all we asked for: more may be waiting.
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return claimed_total,
            Some((job, permit)) = handoffs.recv() => {
                // A slot handed over by a finishing job: run its new job at once.
                claimed_total += 1;
                spawn_job(ctx, job, permit, in_flight, tracker);
            }
            _ = listener.notified() => {}
            _ = ctx.slot_freed.notified() => {}
            _ = tokio::time::sleep(config.poll_interval()) => {}
        }
    }
}

fn spawn_job(
    ctx: &Arc<JobContext>,
    job: ClaimedJob,
    permit: tokio::sync::OwnedSemaphorePermit,
    in_flight: &InFlight,
    tracker: &TaskTracker,
) {
    let token = CancellationToken::new();
    in_flight.insert(job.fence(), token.clone());
    let span = tracing::info_span!(
        "job",
        job.id = job.id,
        job.kind = job.kind.as_str(),
        job.attempt = job.attempt,
        run.id = job.run_id,
        account.id = job.account_id,
    );
    let ctx = ctx.clone();
    let in_flight = in_flight.clone();
    metrics::gauge!("importer_jobs_in_flight").increment(1.0);
    metrics::counter!("importer_jobs_claimed_total", "kind" => job.kind.as_str()).increment(1);
    tracker.spawn(
        async move {
            tokio::select! {
                _ = jobs::run(&ctx, &job) => {}
                _ = token.cancelled() => {
                    tracing::warn!("job stopped: lease lost or shutdown grace period over");
                }
            }
            in_flight.remove(job.id);
            metrics::gauge!("importer_jobs_in_flight").decrement(1.0);
            // The capacity permit frees here; wake the claim loop to use it.
            drop(permit);
            ctx.slot_freed.notify_one();
        }
        .instrument(span),
    );
}

/// Calls `importer.tick(now)` every `interval` until `shutdown`.
async fn ticker(pool: PgPool, interval: Duration, shutdown: CancellationToken) {
    let mut timer = tokio::time::interval(interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = timer.tick() => {}
        }
        match tick::tick(&pool, None).await {
            Ok(created) if !created.is_empty() => {
                tracing::info!(runs = created.len(), "tick created scheduled runs");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "tick failed; will retry"),
        }
    }
}
