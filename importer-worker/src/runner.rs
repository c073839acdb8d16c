//! One worker process's life: claim loop, heartbeat, tick, health port, graceful shutdown.
//!
//! `run` is a library function taking its configuration, a pool and a shutdown token, so tests
//! and the admin `demo` run the real loop in process; `main` only parses, wires and waits.

use std::sync::Arc;
use std::time::Duration;

use importer_core::destination::{DestinationClient, DestinationConfig};
use importer_core::mailchimp::{MailchimpClient, MailchimpConfig};
use importer_core::queue;
use importer_core::secrets::SecretBox;
use importer_core::{retention, tick};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::completer::Completer;
use crate::config::WorkerConfig;
use crate::dispatch::Dispatcher;
use crate::health::Health;
use crate::heartbeat::{self, InFlight};
use crate::jobs::JobContext;
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
    config.validate()?;
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
    let in_flight = InFlight::default();
    let health = Health::default();
    let (completer, completer_task) = Completer::start(pool.clone());
    let ctx = Arc::new_cyclic(|me| JobContext {
        pool: pool.clone(),
        mailchimp,
        destination,
        secrets,
        retry_policy: config.retry_policy(),
        completer,
        worker_id: worker_id.clone(),
        lease: config.lease(),
        dispatcher: Dispatcher::new(config.concurrency, in_flight.clone()),
        me: me.clone(),
        health: health.clone(),
        url_policy: importer_core::url_policy::UrlPolicy::new(&config.http_allowed_hosts),
        stopping: shutdown.clone(),
    });

    // Background services stop on `services`, which is cancelled only after the jobs are done.
    let services = CancellationToken::new();
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
            let (bound, task) =
                crate::http::serve(addr, pool.clone(), health.clone(), services.clone()).await?;
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
    claim_loop(&config, &ctx, &worker_id, &shutdown).await;

    // Graceful shutdown: no more claims; in-flight jobs (handed-over ones included, since every
    // job starts through the dispatcher) get the grace period.
    let grace = config.shutdown_grace();
    tracing::info!(
        in_flight = in_flight.len(),
        grace_secs = grace.as_secs(),
        "shutting down: waiting for in-flight jobs"
    );
    let mut released = 0;
    if ctx.dispatcher.drain(grace).await {
        // Every job ended in time; those the at-risk rule stopped still hold their leases.
        let stopped = in_flight.take_stopped();
        if !stopped.is_empty() {
            match queue::release(&pool, &stopped).await {
                Ok(n) => released = n,
                Err(error) => {
                    tracing::error!(%error, "could not release stopped jobs; their leases will expire")
                }
            }
        }
    } else {
        let fences = in_flight.cancel_all();
        ctx.dispatcher.wait().await;
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
    // Every job has ended, so no completion is waiting: the task only waits for its channel.
    completer_task.abort();
    let _ = heartbeat_task.await;
    if let Some(task) = http_task {
        let _ = task.await;
    }
    if let Some(task) = tick_task {
        let _ = task.await;
    }
    let claimed = ctx.dispatcher.started();
    tracing::info!(claimed, released, "worker stopped");
    Ok(WorkerReport { claimed, released })
}

/// Claims jobs whenever there is capacity and something may be waiting, until shutdown (or a
/// fault of this worker, after which it only waits for shutdown).
async fn claim_loop(
    config: &WorkerConfig,
    ctx: &Arc<JobContext>,
    worker_id: &str,
    shutdown: &CancellationToken,
) {
    let dispatcher = &ctx.dispatcher;
    let mut listener = JobListener::connect(&ctx.pool).await;
    let mut error_backoff = Duration::from_millis(100);
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        if ctx.health.faulted().is_some() {
            // Stop claiming: the jobs this worker would take would fail here for its own fault.
            shutdown.cancelled().await;
            return;
        }
        // Take the permits before claiming: handoffs take permits concurrently, and a claimed
        // job without a permit would sit leased and unrun until its lease expired.
        let mut permits = dispatcher.permits(config.claim_batch);
        let free = permits.len();
        let mut filled = false;
        if free > 0 {
            let asked_at = tokio::time::Instant::now();
            match queue::claim(&ctx.pool, worker_id, free, config.lease()).await {
                Ok(jobs) => {
                    error_backoff = Duration::from_millis(100);
                    filled = jobs.len() == free;
                    let mut refused = Vec::new();
                    for (job, permit) in jobs.into_iter().zip(permits.drain(..)) {
                        if let Err(job) = dispatcher.start(ctx.clone(), job, permit, asked_at) {
                            refused.push(job.fence());
                        }
                    }
                    if !refused.is_empty() {
                        // Past the hard stop (cannot happen while this loop runs): give back.
                        if let Err(error) = queue::release(&ctx.pool, &refused).await {
                            tracing::warn!(%error, "could not release claimed jobs; their leases will expire");
                        }
                    }
                }
                Err(error) => {
                    drop(permits);
                    tracing::warn!(%error, "claim failed; backing off");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(error_backoff) => {}
                    }
                    error_backoff = (error_backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        drop(permits);
        if filled && dispatcher.has_room() {
            // We got all we asked for: more may be waiting.
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = listener.notified() => {}
            _ = dispatcher.slot_freed.notified() => {}
            _ = tokio::time::sleep(config.poll_interval()) => {}
        }
    }
}

/// Calls `importer.tick(now)`, then `importer.prune`, every `interval` until `shutdown`.
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
        // Retention rides on the tick: a bounded batch per kind, so old rows go steadily.
        match retention::prune(&pool, retention::PRUNE_BATCH).await {
            Ok(pruned) => {
                for (what, n) in pruned.into_iter().filter(|(_, n)| *n > 0) {
                    metrics::counter!("importer_pruned_total", "what" => what.clone())
                        .increment(u64::try_from(n).unwrap_or_default());
                    tracing::info!(what = %what, rows = n, "pruned rows past their retention");
                }
            }
            Err(error) => tracing::warn!(%error, "prune failed; will retry"),
        }
    }
}
