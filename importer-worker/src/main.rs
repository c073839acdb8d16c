//! `importer-worker`: parse configuration, connect, wire SIGTERM/Ctrl-C, run until told to stop.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use importer_core::secrets::SecretBox;
use importer_worker::{init_tracing, LogFormat, WorkerConfig};
use tokio_util::sync::CancellationToken;

/// Runs import jobs from the PostgreSQL queue. Scale by starting more processes.
#[derive(Debug, Parser)]
#[command(name = "importer-worker", version, about)]
struct Cli {
    /// PostgreSQL connection string (its value, which may hold a password, is never printed).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,

    #[command(flatten)]
    worker: WorkerConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Before connecting: a bad value fails at once, not after a minute of connection retries.
    cli.worker.validate()?;
    // Flushes buffered log lines when main returns.
    let _log_guard = init_tracing(cli.log_format);
    let secrets = SecretBox::from_env().context("Failed to load the secret encryption key")?;
    let pool = connect(&cli.database_url, cli.worker.pool_size()).await?;

    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    importer_worker::run(cli.worker, pool, secrets, shutdown).await?;
    Ok(())
}

/// Connects, retrying for a minute: in a fresh deployment the database may start after us.
async fn connect(url: &str, size: u32) -> anyhow::Result<sqlx::PgPool> {
    let mut delay = Duration::from_millis(250);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match importer_core::pool::options(size)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
        {
            Ok(pool) => return Ok(pool),
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(%error, "cannot connect to PostgreSQL yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(error) => {
                return Err(error).context("Failed to connect to PostgreSQL (check DATABASE_URL)")
            }
        }
    }
}

/// Cancels `shutdown` on SIGTERM (containers) or Ctrl-C.
async fn wait_for_signal(shutdown: CancellationToken) {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
    shutdown.cancel();
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_valid() {
        Cli::command().debug_assert();
    }
}
