//! Worker configuration: environment variables (12-factor) with command-line fallbacks.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use importer_core::backoff::Backoff;
use importer_core::queue::RetryPolicy;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (production).
    Json,
    /// Human-readable, coloured when on a terminal.
    Pretty,
}

/// The defaults, written once: clap's `default_value_t` and [`WorkerConfig::default`] both
/// read them.
mod defaults {
    pub(super) const CONCURRENCY: usize = 50;
    pub(super) const CLAIM_BATCH: usize = 100;
    pub(super) const LEASE_SECS: u64 = 60;
    pub(super) const POLL_MS: u64 = 1000;
    pub(super) const TICK_SECS: u64 = 5;
    pub(super) const HTTP_ADDR: &str = "0.0.0.0:9090";
    pub(super) const SHUTDOWN_GRACE_SECS: u64 = 30;
    pub(super) const MAILCHIMP_TIMEOUT_SECS: u64 = 30;
    pub(super) const MAX_BODY_BYTES: usize = importer_core::mailchimp::DEFAULT_MAX_BODY_BYTES;
    pub(super) const DESTINATION_TIMEOUT_SECS: u64 = 30;
    pub(super) const DESTINATION_MAX_BATCH: usize = 1000;
    pub(super) const MAX_RETRY_AFTER_SECS: u64 = 3600;
    pub(super) const RETRY_BASE_MS: u64 = 5000;
    pub(super) const RETRY_MAX_SECS: u64 = 600;
    pub(super) const MAX_SNOOZES: u32 = 100;
    pub(super) const MAX_SNOOZE_AGE_SECS: u64 = 1800;
}

/// Everything one worker process needs besides the database URL and the secret key.
#[derive(Debug, Clone, Args)]
pub struct WorkerConfig {
    /// Identifies this process in `jobs.locked_by`; default: hostname, pid and a random suffix.
    #[arg(long, env = "WORKER_ID")]
    pub worker_id: Option<String>,

    /// Most jobs this process runs at once (Mailchimp requests are further capped per account).
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = defaults::CONCURRENCY)]
    pub concurrency: usize,

    /// Most jobs claimed in one round trip (default: the free capacity).
    #[arg(long, env = "WORKER_CLAIM_BATCH", default_value_t = defaults::CLAIM_BATCH)]
    pub claim_batch: usize,

    /// Lease (visibility timeout) of a claimed job, in seconds (at least 3).
    #[arg(long, env = "WORKER_LEASE_SECS", default_value_t = defaults::LEASE_SECS)]
    pub lease_secs: u64,

    /// Fallback poll interval when no notification arrives, in milliseconds (at least 10).
    #[arg(long, env = "WORKER_POLL_MS", default_value_t = defaults::POLL_MS)]
    pub poll_ms: u64,

    /// How often this worker calls `importer.tick(now)`, in seconds (0 = never).
    #[arg(long, env = "WORKER_TICK_SECS", default_value_t = defaults::TICK_SECS)]
    pub tick_secs: u64,

    /// Health and metrics address (`/healthz`, `/metrics`); empty to disable.
    #[arg(long, env = "WORKER_HTTP_ADDR", default_value = defaults::HTTP_ADDR)]
    pub http_addr: String,

    /// On SIGTERM, how long in-flight jobs may run before they are released, in seconds.
    #[arg(long, env = "WORKER_SHUTDOWN_GRACE_SECS", default_value_t = defaults::SHUTDOWN_GRACE_SECS)]
    pub shutdown_grace_secs: u64,

    /// Timeout of one Mailchimp request, in seconds.
    #[arg(long, env = "MAILCHIMP_TIMEOUT_SECS", default_value_t = defaults::MAILCHIMP_TIMEOUT_SECS)]
    pub mailchimp_timeout_secs: u64,

    /// Longest Mailchimp response body read, in bytes; a longer one fails the request (retried,
    /// then dead-lettered with that reason) instead of exhausting memory.
    #[arg(long, env = "MAILCHIMP_MAX_BODY_BYTES", default_value_t = defaults::MAX_BODY_BYTES)]
    pub mailchimp_max_body_bytes: usize,

    /// Timeout of one destination request, in seconds.
    #[arg(long, env = "DESTINATION_TIMEOUT_SECS", default_value_t = defaults::DESTINATION_TIMEOUT_SECS)]
    pub destination_timeout_secs: u64,

    /// Most records in one `POST /record` (the destination answers 413 beyond its limit).
    #[arg(long, env = "DESTINATION_MAX_BATCH", default_value_t = defaults::DESTINATION_MAX_BATCH)]
    pub destination_max_batch: usize,

    /// Delay before the first retry of a failed job, in milliseconds; it doubles per attempt.
    #[arg(long, env = "WORKER_RETRY_BASE_MS", default_value_t = defaults::RETRY_BASE_MS)]
    pub retry_base_ms: u64,

    /// Longest delay between retries of a failed job, in seconds.
    #[arg(long, env = "WORKER_RETRY_MAX_SECS", default_value_t = defaults::RETRY_MAX_SECS)]
    pub retry_max_secs: u64,

    /// Longest server Retry-After honoured, in seconds; a longer one is cut to this.
    #[arg(long, env = "WORKER_MAX_RETRY_AFTER_SECS", default_value_t = defaults::MAX_RETRY_AFTER_SECS)]
    pub max_retry_after_secs: u64,

    /// Snoozes in a row (Mailchimp 429s) after which a snooze spends an attempt.
    #[arg(long, env = "WORKER_MAX_SNOOZES", default_value_t = defaults::MAX_SNOOZES)]
    pub max_snoozes: u32,

    /// Age of the first of a job's snoozes in a row after which a snooze spends an attempt, in
    /// seconds.
    #[arg(long, env = "WORKER_MAX_SNOOZE_AGE_SECS", default_value_t = defaults::MAX_SNOOZE_AGE_SECS)]
    pub max_snooze_age_secs: u64,

    /// PostgreSQL connections of this process (default: derived from concurrency).
    #[arg(long, env = "DATABASE_POOL_SIZE")]
    pub pool_size: Option<u32>,

    /// Hosts an account's URL may reach over plain http (comma-separated); every other URL must
    /// be https, or its jobs die as permanent before a key is sent.
    #[arg(long, env = "IMPORTER_HTTP_ALLOWED_HOSTS", default_value = importer_core::url_policy::DEFAULT_HTTP_ALLOWED_HOSTS)]
    pub http_allowed_hosts: String,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            worker_id: None,
            concurrency: defaults::CONCURRENCY,
            claim_batch: defaults::CLAIM_BATCH,
            lease_secs: defaults::LEASE_SECS,
            poll_ms: defaults::POLL_MS,
            tick_secs: defaults::TICK_SECS,
            // Off by default for library callers (tests, demo): they run several workers.
            http_addr: String::new(),
            shutdown_grace_secs: defaults::SHUTDOWN_GRACE_SECS,
            mailchimp_timeout_secs: defaults::MAILCHIMP_TIMEOUT_SECS,
            mailchimp_max_body_bytes: defaults::MAX_BODY_BYTES,
            destination_timeout_secs: defaults::DESTINATION_TIMEOUT_SECS,
            destination_max_batch: defaults::DESTINATION_MAX_BATCH,
            retry_base_ms: defaults::RETRY_BASE_MS,
            retry_max_secs: defaults::RETRY_MAX_SECS,
            max_retry_after_secs: defaults::MAX_RETRY_AFTER_SECS,
            max_snoozes: defaults::MAX_SNOOZES,
            max_snooze_age_secs: defaults::MAX_SNOOZE_AGE_SECS,
            pool_size: None,
            http_allowed_hosts: importer_core::url_policy::DEFAULT_HTTP_ALLOWED_HOSTS.to_owned(),
        }
    }
}

/// A configuration value out of its range; names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value} is invalid: {rule}")]
pub struct InvalidConfig {
    /// The environment variable (and flag) at fault.
    pub variable: &'static str,
    /// The value given.
    pub value: String,
    /// What it must be.
    pub rule: &'static str,
}

impl WorkerConfig {
    /// Refuses values the worker cannot run with, naming the variable; nothing is clamped.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let checks: [(&'static str, u64, u64, &'static str); 11] = [
            (
                "WORKER_CONCURRENCY",
                self.concurrency as u64,
                1,
                "must be at least 1",
            ),
            (
                "WORKER_CLAIM_BATCH",
                self.claim_batch as u64,
                1,
                "must be at least 1",
            ),
            (
                "WORKER_LEASE_SECS",
                self.lease_secs,
                3,
                "must be at least 3 (heartbeats every third of it)",
            ),
            ("WORKER_POLL_MS", self.poll_ms, 10, "must be at least 10"),
            (
                "MAILCHIMP_TIMEOUT_SECS",
                self.mailchimp_timeout_secs,
                1,
                "must be at least 1",
            ),
            (
                "MAILCHIMP_MAX_BODY_BYTES",
                self.mailchimp_max_body_bytes as u64,
                1024,
                "must be at least 1024",
            ),
            (
                "DESTINATION_TIMEOUT_SECS",
                self.destination_timeout_secs,
                1,
                "must be at least 1",
            ),
            (
                "DESTINATION_MAX_BATCH",
                self.destination_max_batch as u64,
                1,
                "must be at least 1",
            ),
            (
                "WORKER_MAX_SNOOZES",
                u64::from(self.max_snoozes),
                1,
                "must be at least 1",
            ),
            (
                "WORKER_RETRY_MAX_SECS",
                self.retry_max_secs,
                1,
                "must be at least 1",
            ),
            (
                "WORKER_MAX_SNOOZE_AGE_SECS",
                self.max_snooze_age_secs,
                1,
                "must be at least 1",
            ),
        ];
        for (variable, value, min, rule) in checks {
            if value < min {
                return Err(InvalidConfig {
                    variable,
                    value: value.to_string(),
                    rule,
                });
            }
        }
        if self.pool_size == Some(0) {
            return Err(InvalidConfig {
                variable: "DATABASE_POOL_SIZE",
                value: "0".to_owned(),
                rule: "must be at least 1",
            });
        }
        Ok(())
    }

    /// The lease length.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    /// Heartbeats every third of the lease, so two can be missed before the lease expires.
    pub fn heartbeat_interval(&self) -> Duration {
        self.lease() / 3
    }

    /// The fallback poll interval.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_ms)
    }

    /// The tick interval, if this worker ticks.
    pub fn tick_interval(&self) -> Option<Duration> {
        (self.tick_secs > 0).then(|| Duration::from_secs(self.tick_secs))
    }

    /// The shutdown grace period.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// Delays and limits of retries and snoozes.
    pub fn retry_policy(&self) -> RetryPolicy {
        let defaults = RetryPolicy::default();
        RetryPolicy {
            retry: Backoff {
                base: Duration::from_millis(self.retry_base_ms),
                max: Duration::from_secs(self.retry_max_secs),
                ..defaults.retry
            },
            max_retry_after: Duration::from_secs(self.max_retry_after_secs),
            max_snoozes: i32::try_from(self.max_snoozes).unwrap_or(i32::MAX),
            max_snooze_age: Duration::from_secs(self.max_snooze_age_secs),
            ..defaults
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(WorkerConfig::default().validate(), Ok(()));
    }

    #[test]
    fn invalid_values_are_refused_naming_the_variable_never_clamped() {
        let cases = [
            (
                WorkerConfig {
                    lease_secs: 0,
                    ..WorkerConfig::default()
                },
                "WORKER_LEASE_SECS",
            ),
            (
                WorkerConfig {
                    concurrency: 0,
                    ..WorkerConfig::default()
                },
                "WORKER_CONCURRENCY",
            ),
            (
                WorkerConfig {
                    poll_ms: 1,
                    ..WorkerConfig::default()
                },
                "WORKER_POLL_MS",
            ),
            (
                WorkerConfig {
                    max_snoozes: 0,
                    ..WorkerConfig::default()
                },
                "WORKER_MAX_SNOOZES",
            ),
            (
                WorkerConfig {
                    pool_size: Some(0),
                    ..WorkerConfig::default()
                },
                "DATABASE_POOL_SIZE",
            ),
        ];
        for (config, variable) in cases {
            let error = config.validate().expect_err(variable);
            assert_eq!(error.variable, variable);
            assert!(error.to_string().starts_with(variable), "{error}");
        }
    }

    #[test]
    fn the_retry_policy_takes_the_configured_limits() {
        let config = WorkerConfig {
            max_retry_after_secs: 120,
            max_snoozes: 7,
            max_snooze_age_secs: 60,
            ..WorkerConfig::default()
        };
        let policy = config.retry_policy();
        assert_eq!(policy.max_retry_after, Duration::from_secs(120));
        assert_eq!(policy.max_snoozes, 7);
        assert_eq!(policy.max_snooze_age, Duration::from_secs(60));
    }
}
