//! The PostgreSQL job queue: its types and the operations on `importer.jobs` and
//! `importer.dead_jobs`.
//!
//! - [`enqueue`]/[`enqueue_many`] add jobs (set-based) and wake idle workers with `NOTIFY`;
//! - [`claim`] leases jobs with `FOR UPDATE SKIP LOCKED`, exactly within each account's
//!   `max_concurrency`, and dead-letters exhausted expired leases ([`reap_expired`]);
//! - a holder then [`heartbeat`]s, [`checkpoint`]s a long job, [`borrow_slots`] for parallel
//!   requests, [`release_slot`]s, and settles the job with [`complete`],
//!   [`complete_many`], [`retry`], [`snooze`], [`dead_letter`] or (on shutdown) [`release`];
//! - operators list, [`requeue_job`]/[`requeue_run`]/[`requeue_matching`] and [`purge_dead`]
//!   dead jobs, and look at [`queue_depth`] and [`leases`].
//!
//! **Fencing.** A claim increments `attempts` and draws a new lease token; the holder's
//! [`Fence`] is `(job id, lease token)`.
//! Every state change by a holder is conditioned on that pair and on the job being locked, so a
//! worker whose lease was taken over (or whose job was cancelled) changes nothing and gets
//! `false` / a `Fenced` outcome, never an error. Snooze and release hand the attempt back, but
//! the token is never reused, so a fence outlived by its lease matches nothing.
//!
//! **Lock order.** Whatever touches a run's counters locks the run row before the job rows
//! (complete, dead-letter, reaping, cancel, requeue), so those paths cannot deadlock each other.
//! A checkpoint or completion writes its ledger rows (in member-key order) before either, so
//! the jobs of one run write their pages in parallel and queue on the run row only for their
//! counters and commit.
//! The run finishing rule itself lives in the database (`importer.finish_run` trigger).

mod borrow;
mod complete;
mod dead;
mod enqueue;
mod fail;
mod handoff;
mod inspect;
mod leasing;
mod progress;
mod release;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use borrow::{borrow_slots, return_slots};
pub use complete::{
    complete, complete_many, CompleteOutcome, Completion, Cost, Interval, RejectedRecord,
};
pub use dead::{
    count_dead, get_dead, group_dead, list_dead, purge_dead, purge_filtered, purge_ids,
    requeue_filtered, requeue_ids, requeue_job, requeue_matching, requeue_run, BulkOutcome,
    DeadFilter, DeadGroup, DeadJob, DeadReason,
};
pub use enqueue::{enqueue, enqueue_many, withdraw};
pub use fail::{
    dead_letter, retry, retry_with, snooze, RetryOutcome, RetryPolicy, SnoozeOutcome,
    MAX_RETRY_AFTER,
};
pub use handoff::{handoff_slot, Handoff};
pub use inspect::{
    leases, queue_depth, state_counts, workers, JobState, LeaseRow, QueueDepthRow, StateCount,
    StateCounts, WorkerRow,
};
pub use leasing::{claim, heartbeat, reap_expired};
pub use progress::{checkpoint, Checkpoint, CheckpointOutcome};
pub use release::{release, release_slot};

/// The `LISTEN`/`NOTIFY` channel on which enqueues wake idle workers (empty payload).
pub const NOTIFY_CHANNEL: &str = "importer_jobs";

/// `max_attempts` of a job when its producer has no better idea.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 5;

/// What a job does; stored as text in `jobs.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Count the run's window on Mailchimp and enqueue its `import_window` jobs.
    PlanRun,
    /// Fetch one page of members, map them and post them to the destination.
    ImportWindow,
    /// Compare a list's members in Mailchimp with its ledger and heal the drift.
    AuditList,
    /// Does nothing: benchmarks push it through the real worker to measure the queue alone.
    /// Always compiled in: a row of a kind a worker does not know would fail its claims.
    Noop,
}

crate::text_enum!(JobKind {
    PlanRun => "plan_run",
    ImportWindow => "import_window",
    AuditList => "audit_list",
    Noop => "noop",
});

/// A job kind name that is not one of [`JobKind`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job kind {0:?} (expected plan_run, import_window, audit_list or noop)")]
pub struct UnknownJobKind(pub String);

impl FromStr for JobKind {
    type Err = UnknownJobKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "plan_run" => Ok(JobKind::PlanRun),
            "import_window" => Ok(JobKind::ImportWindow),
            "audit_list" => Ok(JobKind::AuditList),
            "noop" => Ok(JobKind::Noop),
            other => Err(UnknownJobKind(other.to_owned())),
        }
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// What the job does.
    pub kind: JobKind,
    /// Kind-specific arguments.
    pub args: serde_json::Value,
    /// The account whose Mailchimp budget the job spends.
    pub account_id: i64,
    /// The run the job counts on (its `jobs_total`/`jobs_pending` grow by one); it must be active.
    pub run_id: Option<i64>,
    /// Claims allowed before the job is dead-lettered.
    pub max_attempts: i32,
    /// Not claimable before this instant; `None` = now.
    pub run_after: Option<DateTime<Utc>>,
}

impl NewJob {
    /// A job claimable now, outside any run, with [`DEFAULT_MAX_ATTEMPTS`].
    pub fn new(kind: JobKind, args: serde_json::Value, account_id: i64) -> Self {
        NewJob {
            kind,
            args,
            account_id,
            run_id: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            run_after: None,
        }
    }

    /// The same job, counted on `run_id`.
    pub fn in_run(mut self, run_id: i64) -> Self {
        self.run_id = Some(run_id);
        self
    }
}

/// A job leased by [`claim`]: the holder must settle it before `locked_until` (or heartbeat).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct ClaimedJob {
    /// The job id.
    pub id: i64,
    /// What the job does.
    pub kind: JobKind,
    /// Kind-specific arguments.
    pub args: serde_json::Value,
    /// The account the job belongs to.
    pub account_id: i64,
    /// The run the job counts on, if any.
    pub run_id: Option<i64>,
    /// This claim's attempt number (1 for the first claim).
    pub attempt: i32,
    /// This lease's token, unique for the life of the job id: the fence.
    pub lease_token: i64,
    /// Snoozes in a row before this claim (drives the snooze backoff and limit).
    pub snoozes: i32,
    /// Claims allowed.
    pub max_attempts: i32,
    /// When the lease expires unless extended by [`heartbeat`].
    pub locked_until: DateTime<Utc>,
}
crate::from_row!(ClaimedJob {
    id,
    kind,
    args,
    account_id,
    run_id,
    attempt,
    lease_token,
    snoozes,
    max_attempts,
    locked_until
});

impl ClaimedJob {
    /// The fence that every state change of this claim is conditioned on.
    pub fn fence(&self) -> Fence {
        Fence {
            job_id: self.id,
            token: self.lease_token,
        }
    }

    /// Whether this is the job's last allowed attempt.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }
}

/// A holder's proof of its lease: `(job id, lease token)`.
///
/// The token comes from the `importer.lease_tokens` sequence at every claim, so it is unique for
/// the life of the job id even though attempts go down (snooze, release, requeue): a stale
/// holder's fence can never match a later lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fence {
    /// The job id.
    pub job_id: i64,
    /// The lease token the claim drew.
    pub token: i64,
}

/// Why a queue operation failed (a lost lease is not an error: see the `Fenced` outcomes).
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The database failed or is unreachable.
    #[error("queue database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A row holds a job kind this build does not know.
    #[error(transparent)]
    UnknownKind(#[from] UnknownJobKind),
    /// Jobs were enqueued for a run that is missing or no longer planning/running.
    #[error("run {run_id} is not active (missing, finished or cancelled): jobs can only be added to a planning or running run")]
    RunNotActive {
        /// The run named by the job.
        run_id: i64,
    },
    /// A completion carried rejected records but its job belongs to no run.
    #[error("job {job_id} has no run, so its rejected records cannot be stored")]
    RejectedWithoutRun {
        /// The job.
        job_id: i64,
    },
    /// No dead job has this id.
    #[error("dead job {0} not found")]
    DeadJobNotFound(i64),
    /// No run has this id.
    #[error("run {0} not found")]
    RunNotFound(i64),
    /// Requeueing would revive a failed run while its list has another active run.
    #[error("cannot requeue the dead jobs of run {run_id}: list {list_id} has another active run {active_run_id}; let it finish (or cancel it) and requeue again")]
    ListBusy {
        /// The failed run whose jobs were to be requeued.
        run_id: i64,
        /// Its list.
        list_id: i64,
        /// The list's active run.
        active_run_id: i64,
    },
    /// The dead job belongs to a cancelled run, which cannot be revived.
    #[error("cannot requeue dead jobs of run {run_id}: the run was cancelled")]
    RunCancelled {
        /// The cancelled run.
        run_id: i64,
    },
    /// The dead job belongs to a failed run planned before its list's cursor was reset: its
    /// completion would cover what the reset meant to forget.
    #[error("cannot requeue dead jobs of run {run_id}: list {list_id}'s cursor was reset after the run was planned, and completing it would cover what the reset meant to re-read; start a new run instead (runs start)")]
    RunBeforeReset {
        /// The failed run.
        run_id: i64,
        /// Its list.
        list_id: i64,
    },
}

/// A duration as whole microseconds for SQL (`$n * interval '1 microsecond'`), saturating.
pub(crate) fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// Splits fences into the parallel arrays `UNNEST` takes.
pub(crate) fn fence_arrays(fences: &[Fence]) -> (Vec<i64>, Vec<i64>) {
    fences.iter().map(|f| (f.job_id, f.token)).unzip()
}
