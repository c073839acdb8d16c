//! Whether this worker process is fit to run jobs: a fault of the worker itself (not of any
//! job) stops it claiming and makes `/healthz` answer 503 until it is restarted.

use std::sync::{Arc, OnceLock};

/// The worker's own fault, once one was seen (shared by the claim loop, jobs and `/healthz`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Health {
    fault: Arc<OnceLock<String>>,
}

impl Health {
    /// Records the worker's fault; the first one is kept and logged once, as one clear line.
    pub(crate) fn fault(&self, reason: &str) {
        if self.fault.set(reason.to_owned()).is_ok() {
            tracing::error!(
                reason,
                "this worker cannot run jobs: it stops claiming and reports unhealthy on /healthz; fix its configuration and restart it"
            );
        }
    }

    /// The recorded fault, if any.
    pub(crate) fn faulted(&self) -> Option<&str> {
        self.fault.get().map(String::as_str)
    }
}
