//! Process-wide telemetry: the one tracing subscriber and the one Prometheus recorder.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Installs the global tracing subscriber (`RUST_LOG`, default `info`), writing to standard error
/// from a background thread: a slow or stalled log reader then drops lines instead of blocking
/// the runtime's threads (and with them every job). Keep the returned guard alive until exit: it
/// flushes what is buffered when dropped. Later calls install nothing.
pub fn init_tracing(format: LogFormat) -> WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let filter = importer_core::log_filter::from_env("info");
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry
            .with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(layer.compact()).try_init(),
    };
    guard
}

/// The counters alerts and dashboards rate over, created at 0 when the recorder is installed:
/// a series that appears only with its first event makes `increase()` blind to that event.
fn register_counters() {
    for kind in ["range_grew", "member_after_range"] {
        metrics::counter!("importer_window_events_total", "kind" => kind).absolute(0);
    }
    metrics::counter!("importer_records_imported_total").absolute(0);
    metrics::counter!("importer_records_rejected_total").absolute(0);
    metrics::counter!("importer_records_unchanged_total").absolute(0);
    for result in [
        "missing", "stale", "healed", "deferred", "rejected", "deleted",
    ] {
        metrics::counter!("importer_audit_members_total", "result" => result).absolute(0);
    }
    metrics::counter!("importer_audit_unhealed_total").absolute(0);
}

/// The process's Prometheus recorder, installed on first use (several in-process workers share it).
pub(crate) fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = install();
        register_counters();
        handle
    })
}

fn install() -> PrometheusHandle {
    {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("duration_seconds".to_owned()),
                &[
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 120.0,
                ],
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed (cannot happen in our binaries): keep a private one
            // so /metrics still renders.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    }
}
