//! One module per command group; each writes to any `impl Write` so tests can read its output.

pub mod accounts;
pub mod audit;
pub mod dead;
pub mod demo;
pub mod exporter;
pub mod lists;
pub mod migrate;
pub mod queue;
pub mod runs;
pub mod secrets;
pub mod seed;
pub mod serve;
pub mod settings;
pub mod tick;
pub mod watch;
