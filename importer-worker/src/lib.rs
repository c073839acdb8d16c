//! importer-worker: the long-running process that turns the PostgreSQL queue into imports.
//!
//! [`run`] is the whole worker as a library function (tests and `importer-admin demo` run it in
//! process); the binary parses configuration, wires signals and calls it.

pub mod config;
pub mod heartbeat;
pub mod http;
pub mod jobs;
pub mod listener;
pub mod runner;
pub mod telemetry;

pub use config::{LogFormat, WorkerConfig};
pub use runner::{run, WorkerReport};
