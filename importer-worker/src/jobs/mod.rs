//! Running one claimed job: dispatch by kind, then settle its outcome on the queue
//! (complete, retry, snooze or dead-letter), with one log line and metrics per outcome.

mod audit;
mod credentials;
mod import;
mod plan;

use std::sync::Weak;
use std::time::{Duration, Instant};

use importer_core::destination::{DestinationClient, DestinationError};
use importer_core::mailchimp::{MailchimpClient, MailchimpError};
use importer_core::queue::{
    self, ClaimedJob, Completion, JobKind, RetryOutcome, RetryPolicy, SnoozeOutcome,
};
use importer_core::range_reader::ReadError;
use importer_core::secrets::SecretBox;
use sqlx::PgPool;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use crate::completer::Completer;
use crate::dispatch::Dispatcher;
use crate::health::Health;

/// What every job needs: the database, the HTTP clients and the key that opens the secrets.
pub(crate) struct JobContext {
    /// The database pool.
    pub pool: PgPool,
    /// One pooled Mailchimp client per process.
    pub mailchimp: MailchimpClient,
    /// One pooled destination client per process.
    pub destination: DestinationClient,
    /// Decrypts account secrets.
    pub secrets: SecretBox,
    /// Delays and limits of retries and snoozes.
    pub retry_policy: RetryPolicy,
    /// This worker's id (`jobs.locked_by`).
    pub worker_id: String,
    /// The lease of a claimed job.
    pub lease: Duration,
    /// Completes jobs whose result fits a batch.
    pub(crate) completer: Completer,
    /// Starts jobs: those claimed and those received by slot handoff.
    pub(crate) dispatcher: Dispatcher,
    /// This context, for starting a handed-over job from inside a running one.
    pub(crate) me: Weak<JobContext>,
    /// The worker's own health (a fault stops claiming).
    pub(crate) health: Health,
    /// Where a key may be sent (https, or plain http to an allowed host).
    pub(crate) url_policy: importer_core::url_policy::UrlPolicy,
    /// Cancelled at shutdown: no more handoffs (the claim loop no longer takes jobs).
    pub stopping: CancellationToken,
}

/// Why a job did not complete, and so what happens to it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JobError {
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
    /// A fault of this worker, not of the job (its secret key cannot decrypt the account's
    /// secrets): the job is released without spending an attempt and the worker stops claiming.
    #[error("{0}")]
    WorkerFault(String),
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

/// Tries of one Mailchimp read before its error fails the job.
const READ_TRIES: u32 = 3;

/// Makes one Mailchimp read (a GET, so repeating it is harmless), timed into
/// `importer_mailchimp_request_duration_seconds{status}`, and repeats it at once (after 100 ms,
/// then 200 ms) on a transient fault: a 5xx, a reset or truncated body, a timeout. A job makes
/// many reads, and without this one fault in twenty requests fails most plans and pages whole,
/// spending an attempt and a backoff each time. 429s are not repeated here (they snooze the job,
/// freeing the account's slot), nor are bodies over the size limit.
pub(crate) async fn read<T, F, Fut>(call: F) -> Result<T, MailchimpError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, MailchimpError>>,
{
    let mut tries = 1;
    loop {
        let started = Instant::now();
        let result = call().await;
        let status = match &result {
            Ok(_) => "200".to_owned(),
            Err(e) => status_label(e.status(), e.kind()),
        };
        metrics::histogram!("importer_mailchimp_request_duration_seconds", "status" => status)
            .record(started.elapsed().as_secs_f64());
        match result {
            Err(error) if tries < READ_TRIES && is_transient(&error) => {
                metrics::counter!("importer_mailchimp_read_retries_total").increment(1);
                tracing::debug!(%error, tries, "Mailchimp read failed; repeating it");
                tokio::time::sleep(Duration::from_millis(100 << (tries - 1))).await;
                tries += 1;
            }
            other => return other,
        }
    }
}

/// Whether repeating a read at once may succeed.
fn is_transient(error: &MailchimpError) -> bool {
    error.is_retryable()
        && !error.is_rate_limited()
        && !matches!(error, MailchimpError::BodyTooLarge { .. })
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

impl From<importer_core::ledger::LedgerError> for JobError {
    fn from(error: importer_core::ledger::LedgerError) -> Self {
        JobError::Retryable {
            message: error.to_string(),
            retry_after: None,
        }
    }
}

impl From<importer_core::list_audit::AuditError> for JobError {
    fn from(error: importer_core::list_audit::AuditError) -> Self {
        JobError::Retryable {
            message: error.to_string(),
            retry_after: None,
        }
    }
}

/// The run a job belongs to and its list; a missing one is permanent (the job cannot succeed).
async fn run_and_list(
    ctx: &JobContext,
    run_id: i64,
) -> Result<(importer_core::runs::Run, importer_core::lists::List), JobError> {
    let run = importer_core::runs::get(&ctx.pool, run_id)
        .await?
        .ok_or_else(|| JobError::Permanent(format!("run {run_id} does not exist")))?;
    let list = importer_core::lists::get(&ctx.pool, run.list_id)
        .await
        .map_err(|e| JobError::Retryable {
            message: format!("loading list {}: {e}", run.list_id),
            retry_after: None,
        })?
        .ok_or_else(|| JobError::Permanent(format!("list {} does not exist", run.list_id)))?;
    Ok((run, list))
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
        JobKind::AuditList => audit::run(ctx, job).await,
        JobKind::Noop => Ok(Completion::default()),
    }
}

/// Runs a claimed job to its end and records the outcome on the queue.
pub(crate) async fn run(ctx: &JobContext, job: &ClaimedJob, permit: OwnedSemaphorePermit) {
    let started = Instant::now();
    let kind = job.kind.as_str();
    let result = execute(ctx, job).await;
    // The work is done: its capacity permit frees now, so the claim loop claims the next jobs
    // while this one's outcome commits (the lease and the Mailchimp slot stay until then).
    drop(permit);
    ctx.dispatcher.slot_freed.notify_one();
    let outcome = settle(ctx, job, result).await;
    let elapsed = started.elapsed();
    metrics::histogram!("importer_job_duration_seconds", "kind" => kind, "outcome" => outcome)
        .record(elapsed.as_secs_f64());
    metrics::counter!("importer_jobs_total", "kind" => kind, "outcome" => outcome).increment(1);
}

/// Records the handler's result on the queue; returns the outcome label. Every line names the
/// job, its run and its account (`job_line!`), fenced outcomes included.
async fn settle(
    ctx: &JobContext,
    job: &ClaimedJob,
    result: Result<Completion, JobError>,
) -> &'static str {
    use Recorded::{Completed, Fenced};
    let fence = job.fence();
    let (message, retry_after) = match result {
        Ok(completion) => {
            let imported = completion.records_imported;
            let rejected = completion.rejected.len();
            let unchanged = completion.records_unchanged;
            let recorded = if completion.fits_batch() {
                ctx.completer.complete(fence, imported).await.map(|held| {
                    if held {
                        Completed
                    } else {
                        Fenced
                    }
                })
            } else {
                queue::complete(&ctx.pool, fence, completion)
                    .await
                    .map(|o| if o.is_fenced() { Fenced } else { Completed })
                    .map_err(|e| e.to_string())
            };
            match recorded {
                Ok(Fenced) => {
                    job_line!(
                        warn,
                        job,
                        "job finished but its lease was taken over; result discarded"
                    );
                    return "fenced";
                }
                Ok(Completed) => {
                    metrics::counter!("importer_records_imported_total")
                        .increment(imported.max(0) as u64);
                    metrics::counter!("importer_records_rejected_total").increment(rejected as u64);
                    metrics::counter!("importer_records_unchanged_total")
                        .increment(unchanged.max(0) as u64);
                    job_line!(
                        info,
                        job,
                        records = imported,
                        rejected,
                        unchanged,
                        "job completed"
                    );
                    return "completed";
                }
                // Not recorded: retried at once with the real error (fenced), instead of
                // waiting out the lease and dying as lease_expired on the last attempt.
                Err(error) => (
                    format!("could not record the job's completion: {error}"),
                    None,
                ),
            }
        }
        Err(JobError::Fenced) => {
            job_line!(
                warn,
                job,
                "lease lost while running; the job belongs to another worker now"
            );
            return "fenced";
        }
        Err(JobError::WorkerFault(reason)) => {
            ctx.health.fault(&reason);
            return match queue::release(&ctx.pool, &[fence]).await {
                Ok(1) => {
                    job_line!(warn, job, error = %reason, "job released without spending an attempt (a fault of this worker)");
                    "released"
                }
                Ok(_) => {
                    job_line!(warn, job, "job to release was no longer held (fenced)");
                    "fenced"
                }
                Err(error) => {
                    job_line!(error, job, %error, "could not release the job; its lease will expire");
                    "error"
                }
            };
        }
        Err(JobError::RateLimited {
            message,
            retry_after,
        }) => {
            return match queue::snooze(&ctx.pool, job, &ctx.retry_policy, &message, retry_after)
                .await
            {
                Ok(SnoozeOutcome::Snoozed { run_after }) => {
                    job_line!(info, job, %run_after, snoozes = job.snoozes + 1, error = %message, "job snoozed, no attempt spent");
                    ctx.dispatcher.slot_freed.notify_one();
                    "snoozed"
                }
                Ok(SnoozeOutcome::Retried(outcome)) => {
                    let label = retried(ctx, job, &message, outcome);
                    job_line!(
                        warn,
                        job,
                        snoozes = job.snoozes,
                        "rate limited past the snooze limits: that snooze spent an attempt"
                    );
                    label
                }
                Ok(SnoozeOutcome::Fenced) => {
                    job_line!(warn, job, "could not snooze: the lease was taken over");
                    "fenced"
                }
                Err(error) => {
                    job_line!(error, job, %error, job_error = %message, "could not snooze the job; its lease will expire");
                    "error"
                }
            };
        }
        Err(JobError::Retryable {
            message,
            retry_after,
        }) => (message, retry_after),
        Err(JobError::Permanent(message)) => {
            return match queue::dead_letter(&ctx.pool, fence, &message).await {
                Ok(true) => {
                    job_line!(error, job, error = %message, "job failed permanently; dead-lettered");
                    ctx.dispatcher.slot_freed.notify_one();
                    "dead"
                }
                Ok(false) => {
                    job_line!(warn, job, error = %message, "could not dead-letter: the lease was taken over");
                    "fenced"
                }
                Err(error) => {
                    job_line!(error, job, %error, job_error = %message, "could not dead-letter the job; its lease will expire");
                    "error"
                }
            };
        }
    };
    match queue::retry_with(&ctx.pool, job, &ctx.retry_policy, &message, retry_after).await {
        Ok(outcome) => retried(ctx, job, &message, outcome),
        Err(error) => {
            job_line!(error, job, %error, job_error = %message, "could not record the job's failure; its lease will expire");
            "error"
        }
    }
}

/// Whether a completion was recorded or refused by the fence.
enum Recorded {
    Completed,
    Fenced,
}

/// Logs what a retry did; returns the outcome label.
fn retried(
    ctx: &JobContext,
    job: &ClaimedJob,
    message: &str,
    outcome: RetryOutcome,
) -> &'static str {
    match outcome {
        RetryOutcome::Retried { run_after } => {
            job_line!(warn, job, error = %message, %run_after, "job failed; retrying later");
            ctx.dispatcher.slot_freed.notify_one();
            "retried"
        }
        RetryOutcome::DeadLettered => {
            job_line!(error, job, error = %message, "job failed on its last attempt; dead-lettered");
            ctx.dispatcher.slot_freed.notify_one();
            "dead"
        }
        RetryOutcome::Fenced => {
            job_line!(warn, job, error = %message, "could not retry: the lease was taken over");
            "fenced"
        }
    }
}
