//! importer-worker: the long-running process that turns the PostgreSQL queue into imports.
//!
//! [`run`] is the whole worker as a library function (tests and `importer-admin demo` run it in
//! process); the binary parses configuration, wires signals and calls it.

#![warn(unreachable_pub, missing_docs)]

/// Logs one line about a job at `$level`, naming the job, its run and its account in the line
/// itself, so the context is there whatever level the log filter lets spans through.
macro_rules! job_line {
    ($level:ident, $job:expr, $($rest:tt)+) => {
        tracing::$level!(
            job.id = $job.id,
            job.kind = $job.kind.as_str(),
            job.attempt = $job.attempt,
            run.id = $job.run_id,
            account.id = $job.account_id,
            $($rest)+
        )
    };
}

mod completer;
mod config;
mod dispatch;
mod health;
mod heartbeat;
mod http;
mod jobs;
mod listener;
mod runner;
mod telemetry;

pub use config::{InvalidConfig, LogFormat, WorkerConfig};
pub use runner::{run, WorkerReport};
pub use telemetry::init_tracing;
