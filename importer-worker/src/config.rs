//! Worker configuration: environment variables (12-factor) with command-line fallbacks.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (production).
    Json,
    /// Human-readable, coloured when on a terminal.
    Pretty,
}

/// Everything one worker process needs besides the database URL and the secret key.
#[derive(Debug, Clone, Args)]
pub struct WorkerConfig {
    /// Identifies this process in `jobs.locked_by`; default: hostname, pid and a random suffix.
    #[arg(long, env = "WORKER_ID")]
    pub worker_id: Option<String>,

    /// Most jobs this process runs at once (Mailchimp requests are further capped per account).
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 50)]
    pub concurrency: usize,

    /// Most jobs claimed in one round trip (default: the free capacity).
    #[arg(long, env = "WORKER_CLAIM_BATCH", default_value_t = 100)]
    pub claim_batch: usize,

    /// Lease (visibility timeout) of a claimed job, in seconds.
    #[arg(long, env = "WORKER_LEASE_SECS", default_value_t = 60)]
    pub lease_secs: u64,

    /// Fallback poll interval when no notification arrives, in milliseconds.
    #[arg(long, env = "WORKER_POLL_MS", default_value_t = 1000)]
    pub poll_ms: u64,

    /// How often this worker calls `importer.tick(now)`, in seconds (0 = never).
    #[arg(long, env = "WORKER_TICK_SECS", default_value_t = 5)]
    pub tick_secs: u64,

    /// Health and metrics address (`/healthz`, `/metrics`); empty to disable.
    #[arg(long, env = "WORKER_HTTP_ADDR", default_value = "0.0.0.0:9090")]
    pub http_addr: String,

    /// On SIGTERM, how long in-flight jobs may run before they are released, in seconds.
    #[arg(long, env = "WORKER_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,

    /// Timeout of one Mailchimp request, in seconds.
    #[arg(long, env = "MAILCHIMP_TIMEOUT_SECS", default_value_t = 30)]
    pub mailchimp_timeout_secs: u64,

    /// Longest Mailchimp response body read, in bytes; a longer one fails the request (retried,
    /// then dead-lettered with that reason) instead of exhausting memory.
    #[arg(long, env = "MAILCHIMP_MAX_BODY_BYTES", default_value_t = importer_core::mailchimp::DEFAULT_MAX_BODY_BYTES)]
    pub mailchimp_max_body_bytes: usize,

    /// Timeout of one destination request, in seconds.
    #[arg(long, env = "DESTINATION_TIMEOUT_SECS", default_value_t = 30)]
    pub destination_timeout_secs: u64,

    /// Most records in one `POST /record` (the destination answers 413 beyond its limit).
    #[arg(long, env = "DESTINATION_MAX_BATCH", default_value_t = 1000)]
    pub destination_max_batch: usize,

    /// PostgreSQL connections of this process (default: derived from concurrency).
    #[arg(long, env = "DATABASE_POOL_SIZE")]
    pub pool_size: Option<u32>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            worker_id: None,
            concurrency: 50,
            claim_batch: 100,
            lease_secs: 60,
            poll_ms: 1000,
            tick_secs: 5,
            http_addr: String::new(),
            shutdown_grace_secs: 30,
            mailchimp_timeout_secs: 30,
            mailchimp_max_body_bytes: importer_core::mailchimp::DEFAULT_MAX_BODY_BYTES,
            destination_timeout_secs: 30,
            destination_max_batch: 1000,
            pool_size: None,
        }
    }
}

impl WorkerConfig {
    /// The lease length.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.max(1))
    }

    /// Heartbeats every third of the lease, so two can be missed before the lease expires.
    pub fn heartbeat_interval(&self) -> Duration {
        self.lease() / 3
    }

    /// The fallback poll interval.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_ms.max(10))
    }

    /// The tick interval, if this worker ticks.
    pub fn tick_interval(&self) -> Option<Duration> {
        (self.tick_secs > 0).then(|| Duration::from_secs(self.tick_secs))
    }

    /// The shutdown grace period.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// The health/metrics address, if enabled.
    pub fn http_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        let addr = self.http_addr.trim();
        if addr.is_empty() || addr == "off" {
            return Ok(None);
        }
        let parsed = addr
            .parse()
            .map_err(|e| anyhow::anyhow!("WORKER_HTTP_ADDR {addr:?} is not host:port: {e}"))?;
        Ok(Some(parsed))
    }

    /// Pool size: jobs spend most of their time on HTTP, so a fraction of the concurrency plus
    /// the claim loop, heartbeat, tick and health check is enough.
    pub fn pool_size(&self) -> u32 {
        self.pool_size
            .unwrap_or_else(|| (self.concurrency as u32 / 4).clamp(2, 16) + 4)
    }

    /// This worker's id.
    pub fn resolved_worker_id(&self) -> String {
        self.worker_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "worker".to_owned());
            format!(
                "{host}-{}-{:04x}",
                std::process::id(),
                rand::random::<u16>()
            )
        })
    }
}
