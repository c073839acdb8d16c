//! `importer-sim`: serves the Mailchimp and destination simulators until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use importer_sim::{ChurnStep, SimConfig};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Simulators of the Mailchimp Marketing API and of the destination records API.
#[derive(Debug, Parser)]
#[command(name = "importer-sim", version)]
struct Args {
    /// TOML configuration (switches, seeded accounts, lists and destination keys).
    #[arg(long, env = "IMPORTER_SIM_CONFIG")]
    config: Option<PathBuf>,
    /// Address of the Mailchimp simulator (API under /3.0).
    #[arg(
        long,
        env = "IMPORTER_SIM_MAILCHIMP_ADDR",
        default_value = "0.0.0.0:8081"
    )]
    mailchimp_addr: SocketAddr,
    /// Address of the destination simulator (POST /record).
    #[arg(
        long,
        env = "IMPORTER_SIM_DESTINATION_ADDR",
        default_value = "0.0.0.0:8082"
    )]
    destination_addr: SocketAddr,
    /// Seed of all generated data (overrides the file).
    #[arg(long, env = "IMPORTER_SIM_SEED")]
    seed: Option<u64>,
    /// Mailchimp latency per request, in milliseconds (overrides the file).
    #[arg(long, env = "IMPORTER_SIM_LATENCY_BASE_MS")]
    latency_base_ms: Option<u64>,
    /// Mailchimp latency per member returned, in microseconds (overrides the file).
    #[arg(long, env = "IMPORTER_SIM_LATENCY_PER_MEMBER_US")]
    latency_per_member_us: Option<u64>,
    /// Destination latency per request, in milliseconds (overrides the file).
    #[arg(long, env = "IMPORTER_SIM_DESTINATION_LATENCY_BASE_MS")]
    destination_latency_base_ms: Option<u64>,
    /// Destination latency per record, in microseconds (overrides the file).
    #[arg(long, env = "IMPORTER_SIM_DESTINATION_LATENCY_PER_RECORD_US")]
    destination_latency_per_record_us: Option<u64>,
    /// Simultaneous Mailchimp requests per key (overrides the file).
    #[arg(long, env = "IMPORTER_SIM_MAX_CONNECTIONS")]
    max_connections_per_key: Option<usize>,
    /// Mailchimp's clock minus ours, in seconds, either sign (overrides the file).
    #[arg(
        long,
        env = "IMPORTER_SIM_CLOCK_OFFSET_SECS",
        allow_hyphen_values = true
    )]
    clock_offset_secs: Option<i64>,
    /// Changes become visible this many milliseconds after they are made (overrides the file).
    #[arg(long, env = "IMPORTER_SIM_VISIBILITY_DELAY_MS")]
    visibility_delay_ms: Option<u64>,
    /// `since_last_changed` is inclusive (`>=`) instead of strict.
    #[arg(long, env = "IMPORTER_SIM_INCLUSIVE_SINCE")]
    inclusive_since: bool,
    /// Equal sort keys come back in a different order on every request.
    #[arg(long, env = "IMPORTER_SIM_UNSTABLE_TIES")]
    unstable_ties: bool,
    /// A churn step, e.g. `after=20,modify=0.05,add=0.02,delete=0.02,archive=0.01` (repeatable;
    /// added to the file's).
    #[arg(long = "churn", value_parser = parse_churn)]
    churn: Vec<ChurnStep>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "IMPORTER_SIM_LOG_JSON")]
    log_json: bool,
}

impl Args {
    /// The file's configuration with the flags applied on top.
    fn config(&self) -> anyhow::Result<SimConfig> {
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("Failed to read {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("Failed to parse {}", path.display()))?
            }
            None => SimConfig::default(),
        };
        if let Some(seed) = self.seed {
            config.seed = seed;
        }
        if let Some(ms) = self.latency_base_ms {
            config.mailchimp.latency_base = Duration::from_millis(ms);
        }
        if let Some(us) = self.latency_per_member_us {
            config.mailchimp.latency_per_member = Duration::from_micros(us);
        }
        if let Some(ms) = self.destination_latency_base_ms {
            config.destination.latency_base = Duration::from_millis(ms);
        }
        if let Some(us) = self.destination_latency_per_record_us {
            config.destination.latency_per_record = Duration::from_micros(us);
        }
        if let Some(n) = self.max_connections_per_key {
            config.mailchimp.max_connections_per_key = n;
        }
        if let Some(secs) = self.clock_offset_secs {
            config.mailchimp.clock_offset_secs = secs;
        }
        if let Some(ms) = self.visibility_delay_ms {
            config.mailchimp.visibility_delay = Duration::from_millis(ms);
        }
        config.mailchimp.inclusive_since |= self.inclusive_since;
        config.mailchimp.unstable_ties |= self.unstable_ties;
        config.mailchimp.churn.extend(self.churn.iter().cloned());
        Ok(config)
    }
}

fn parse_churn(text: &str) -> Result<ChurnStep, String> {
    ChurnStep::parse(text)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // `target=level` directives, as the worker's and the CLI's `RUST_LOG` (importer-core's
    // `log_filter`, which this crate does not depend on); an invalid value logs at `info`.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|value| value.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let registry = tracing_subscriber::registry().with(filter);
    if args.log_json {
        registry
            .with(tracing_subscriber::fmt::layer().json())
            .init();
    } else {
        registry.with(tracing_subscriber::fmt::layer()).init();
    }
    let config = args.config()?;
    let accounts = config.accounts.len();
    // Installed before the servers start (and log that they listen): a SIGTERM sent as soon as
    // the simulators are ready must stop them cleanly, not kill the process.
    let shutdown = shutdown_signal()?;
    let sim = importer_sim::start_on(config, args.mailchimp_addr, args.destination_addr)
        .await
        .context("Failed to start the simulators")?;
    tracing::info!(
        mailchimp = %sim.mailchimp_url(),
        destination = %sim.destination_url(),
        accounts,
        "importer-sim ready"
    );
    shutdown.await?;
    tracing::info!("shutting down");
    sim.shutdown().await;
    Ok(())
}

/// Installs the SIGTERM handler now; the future resolves on SIGTERM (containers) or Ctrl-C.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = anyhow::Result<()>>> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("Failed to install the SIGTERM handler")?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("Failed to listen for Ctrl-C")?,
            _ = term.recv() => {}
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c()
            .await
            .context("Failed to listen for Ctrl-C")?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_valid() {
        Args::command().debug_assert();
    }

    #[test]
    fn example_config_parses_and_flags_override_it() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/sim.example.toml");
        let args = Args::try_parse_from(["importer-sim", "--config", path, "--seed", "9"]).unwrap();
        let config = args.config().unwrap();
        assert_eq!(config.seed, 9);
        assert_eq!(config.accounts.len(), 3);
    }

    #[test]
    fn time_and_churn_switches_come_from_flags() {
        let args = Args::try_parse_from([
            "importer-sim",
            "--clock-offset-secs",
            "-10",
            "--visibility-delay-ms",
            "2500",
            "--inclusive-since",
            "--unstable-ties",
            "--churn",
            "after=5,modify=0.1",
            "--churn",
            "after=9,delete=0.05",
        ])
        .unwrap();
        let c = args.config().unwrap().mailchimp;
        assert_eq!(c.clock_offset_secs, -10);
        assert_eq!(c.visibility_delay, Duration::from_millis(2500));
        assert!(c.inclusive_since && c.unstable_ties);
        assert_eq!(c.churn.len(), 2);
        assert_eq!(c.churn[1].delete, 0.05);
    }
}
