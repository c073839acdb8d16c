//! Running one claimed job: dispatch by kind, then settle its outcome on the queue
//! (complete, retry, snooze or dead-letter), with one log line and metrics per outcome.

mod credentials;
mod import;
mod plan;

use std::sync::Arc;
use std::time::{Duration, Instant};

use importer_core::backoff::Backoff;
use importer_core::destination::{DestinationClient, DestinationError};
use importer_core::mailchimp::{MailchimpClient, MailchimpError};
use importer_core::queue::{self, ClaimedJob, Completion, JobKind, RetryOutcome};
use importer_core::range_reader::ReadError;
use importer_core::secrets::SecretBox;
use sqlx::PgPool;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// What every job needs: the database, the HTTP clients and the key that opens the secrets.
pub struct JobContext {
    /// The database pool.
    pub pool: PgPool,
    /// One pooled Mailchimp client per process.
    pub mailchimp: MailchimpClient,
    /// One pooled destination client per process.
    pub destination: DestinationClient,
    /// Decrypts account secrets.
    pub secrets: SecretBox,
    /// Woken when a job gives back its Mailchimp slot, so the claim loop can fill it at once.
    pub slot_freed: Arc<Notify>,
    /// Backoff for rate-limited (snoozed) jobs without a Retry-After.
    pub snooze_backoff: Backoff,
    /// This worker's id (`jobs.locked_by`).
    pub worker_id: String,
    /// The lease of a claimed job.
    pub lease: Duration,
    /// This process's job capacity; a slot handoff takes a permit for the job it receives.
    pub capacity: Arc<Semaphore>,
    /// Jobs received by slot handoff, for the claim loop to run.
    pub handoff: mpsc::UnboundedSender<(ClaimedJob, OwnedSemaphorePermit)>,
    /// Cancelled at shutdown: no more handoffs (the claim loop no longer takes jobs).
    pub stopping: CancellationToken,
}

/// Why a job did not complete, and so what happens to it.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Transient: back to the queue with backoff (or the server's Retry-After), spending an attempt.
    #[error("{message}")]
    Retryable {
        /// What went wrong.
        message: String,
        /// The server's Retry-After, if it sent one.
        retry_after: Option<Duration>,
    },
    /// Mailchimp's concurrency limit: snoozed, no attempt spent.
    #[error("rate limited by Mailchimp: {message}")]
    RateLimited {
        /// What Mailchimp said.
        message: String,
        /// The server's Retry-After, if it sent one.
        retry_after: Option<Duration>,
    },
    /// Will not succeed by retrying (bad key, unknown list, malformed job): dead-lettered at once.
    #[error("{0}")]
    Permanent(String),
    /// The lease was taken over: this worker must not touch the job any more.
    #[error("lease lost")]
    Fenced,
}

impl From<MailchimpError> for JobError {
    fn from(error: MailchimpError) -> Self {
        let message = format!("mailchimp: {error}");
        if error.is_rate_limited() {
            JobError::RateLimited {
                message,
                retry_after: error.retry_after(),
            }
        } else if error.is_retryable() {
            JobError::Retryable {
                message,
                retry_after: error.retry_after(),
            }
        } else {
            JobError::Permanent(message)
        }
    }
}

impl From<DestinationError> for JobError {
    fn from(error: DestinationError) -> Self {
        let message = format!("destination: {error}");
        if error.is_retryable() {
            JobError::Retryable {
                message,
                retry_after: error.retry_after(),
            }
        } else {
            JobError::Permanent(message)
        }
    }
}

impl From<ReadError<MailchimpError>> for JobError {
    fn from(error: ReadError<MailchimpError>) -> Self {
        match error {
            ReadError::Source(e) => e.into(),
            other @ ReadError::NotFrozen { .. } => JobError::Retryable {
                message: other.to_string(),
                retry_after: None,
            },
        }
    }
}

impl From<importer_core::runs::RunError> for JobError {
    fn from(error: importer_core::runs::RunError) -> Self {
        JobError::Retryable {
            message: format!("runs: {error}"),
            retry_after: None,
        }
    }
}

/// Times one Mailchimp call into `importer_mailchimp_request_duration_seconds{status}`.
pub(crate) async fn timed<T>(
    call: impl std::future::Future<Output = Result<T, MailchimpError>>,
) -> Result<T, MailchimpError> {
    let started = Instant::now();
    let result = call.await;
    let status = match &result {
        Ok(_) => "200".to_owned(),
        Err(e) => status_label(e.status(), e.kind()),
    };
    metrics::histogram!("importer_mailchimp_request_duration_seconds", "status" => status)
        .record(started.elapsed().as_secs_f64());
    result
}

/// The `status` label of a request metric: the HTTP status when the server answered, else the
/// error class (`timeout`, `connect`, …).
pub(crate) fn status_label(status: Option<u16>, kind: &'static str) -> String {
    status.map_or_else(|| kind.to_owned(), |s| s.to_string())
}

impl From<sqlx::Error> for JobError {
    fn from(error: sqlx::Error) -> Self {
        JobError::Retryable {
            message: format!("database: {error}"),
            retry_after: None,
        }
    }
}

impl From<queue::QueueError> for JobError {
    fn from(error: queue::QueueError) -> Self {
        JobError::Retryable {
            message: format!("queue: {error}"),
            retry_after: None,
        }
    }
}

/// Runs the job's handler.
async fn execute(ctx: &JobContext, job: &ClaimedJob) -> Result<Completion, JobError> {
    match job.kind {
        JobKind::PlanRun => plan::run(ctx, job).await,
        JobKind::ImportWindow => import::run(ctx, job).await,
    }
}

/// Runs a claimed job to its end and records the outcome on the queue.
pub async fn run(ctx: &JobContext, job: &ClaimedJob) {
    let started = Instant::now();
    let kind = job.kind.as_str();
    let result = execute(ctx, job).await;
    let outcome = settle(ctx, job, result).await;
    let elapsed = started.elapsed();
    metrics::histogram!("importer_job_duration_seconds", "kind" => kind, "outcome" => outcome)
        .record(elapsed.as_secs_f64());
    metrics::counter!("importer_jobs_total", "kind" => kind, "outcome" => outcome).increment(1);
}

/// Records the handler's result on the queue; returns the outcome label.
async fn settle(
    ctx: &JobContext,
    job: &ClaimedJob,
    result: Result<Completion, JobError>,
) -> &'static str {
    let fence = job.fence();
    match result {
        Ok(completion) => {
            let imported = completion.records_imported;
            let rejected = completion.rejected.len();
            match queue::complete(&ctx.pool, fence, completion).await {
                Ok(outcome) if outcome.is_fenced() => {
                    tracing::warn!("job finished but its lease was taken over; result discarded");
                    "fenced"
                }
                Ok(_) => {
                    metrics::counter!("importer_records_imported_total")
                        .increment(imported.max(0) as u64);
                    metrics::counter!("importer_records_rejected_total").increment(rejected as u64);
                    tracing::info!(records = imported, rejected, "job completed");
                    "completed"
                }
                Err(error) => {
                    tracing::error!(error = %error, "could not record the job's completion; its lease will expire and it will run again");
                    "error"
                }
            }
        }
        Err(JobError::Fenced) => {
            tracing::warn!("lease lost while running; the job belongs to another worker now");
            "fenced"
        }
        Err(JobError::RateLimited {
            message,
            retry_after,
        }) => {
            let delay = retry_after.unwrap_or_else(|| ctx.snooze_backoff.delay(1));
            match queue::snooze(&ctx.pool, fence, delay, &message).await {
                Ok(true) => {
                    tracing::info!(delay_ms = delay.as_millis() as u64, error = %message, "job snoozed, no attempt spent");
                    ctx.slot_freed.notify_one();
                    "snoozed"
                }
                Ok(false) => "fenced",
                Err(error) => {
                    tracing::error!(error = %error, "could not snooze the job");
                    "error"
                }
            }
        }
        Err(JobError::Retryable {
            message,
            retry_after,
        }) => match queue::retry(&ctx.pool, fence, &message, retry_after).await {
            Ok(RetryOutcome::Retried { run_after }) => {
                tracing::warn!(error = %message, %run_after, "job failed; retrying later");
                ctx.slot_freed.notify_one();
                "retried"
            }
            Ok(RetryOutcome::DeadLettered) => {
                tracing::error!(error = %message, "job failed on its last attempt; dead-lettered");
                ctx.slot_freed.notify_one();
                "dead"
            }
            Ok(RetryOutcome::Fenced) => "fenced",
            Err(error) => {
                tracing::error!(error = %error, job_error = %message, "could not record the job's failure");
                "error"
            }
        },
        Err(JobError::Permanent(message)) => {
            match queue::dead_letter(&ctx.pool, fence, &message).await {
                Ok(true) => {
                    tracing::error!(error = %message, "job failed permanently; dead-lettered");
                    ctx.slot_freed.notify_one();
                    "dead"
                }
                Ok(false) => "fenced",
                Err(error) => {
                    tracing::error!(error = %error, job_error = %message, "could not dead-letter the job");
                    "error"
                }
            }
        }
    }
}
