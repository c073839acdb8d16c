//! `exporter`: the database's state as Prometheus metrics, for the alerts of
//! `deploy/prometheus/alerts.yml`. One exporter serves what no worker should compute (every
//! worker running the same queries would multiply their cost by the replicas): lists behind
//! their schedule, the dead-letter store, the oldest active run, the queue and the workers' last
//! beats. Every figure is computed when Prometheus scrapes, from the core functions the
//! dashboard reads, each a capped count or an index probe.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use importer_core::queue::{self, DeadFilter};
use importer_core::{lists, runs};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sqlx::PgPool;

use crate::cli::ExporterArgs;

/// Connections of the exporter's pool: one scrape runs its queries one after another.
const POOL_SIZE: u32 = 2;
/// Lists exported by name: the worst this many behind (bounded label cardinality).
const WORST_LISTS: i64 = 100;
/// Counts stop here.
const COUNT_CAP: i64 = 1_000_000;

type GaugeF = Gauge<f64, AtomicU64>;
type Labels = Vec<(String, String)>;

/// Serves `/metrics` until SIGTERM or Ctrl-C; prints the address once listening.
pub async fn run<W: Write>(url: &str, args: ExporterArgs, out: &mut W) -> anyhow::Result<()> {
    let options = crate::database::parse_url(url)?;
    let pool = crate::database::connect(&options, POOL_SIZE).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address: SocketAddr = listener.local_addr().context("no local address")?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(pool.clone());
    let stop = crate::commands::serve::stop_on_signal();
    writeln!(out, "exporter: http://{address}/metrics")?;
    out.flush()?;
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
        .context("the exporter failed");
    pool.close().await;
    served
}

async fn metrics(State(pool): State<PgPool>) -> Response {
    match collect(&pool).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "exporter scrape failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("scrape failed: {e:#}\n"),
            )
                .into_response()
        }
    }
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: f64) {
    let g = GaugeF::default();
    g.set(value);
    registry.register(name, help, g);
}

/// One scrape: every figure read now, in a registry of its own, so a list that stopped being
/// behind is not exported any more.
pub async fn collect(pool: &PgPool) -> anyhow::Result<String> {
    let mut registry = Registry::default();

    let overdue = lists::overdue(pool, WORST_LISTS).await?;
    gauge(
        &mut registry,
        "importer_lists_behind",
        "Enabled lists of unpaused accounts behind their schedule (importer.is_behind)",
        overdue.behind as f64,
    );
    let per_list = Family::<Labels, GaugeF>::default();
    for (account, list, secs) in &overdue.worst {
        per_list
            .get_or_create(&vec![
                ("account".to_owned(), account.clone()),
                ("list".to_owned(), list.clone()),
            ])
            .set(*secs);
    }
    registry.register(
        "importer_list_overdue_seconds",
        "Seconds past one schedule period since the list's cursor, for the lists furthest behind",
        per_list,
    );

    let (dead, _) = queue::count_dead(pool, &DeadFilter::default(), COUNT_CAP).await?;
    gauge(
        &mut registry,
        "importer_dead_jobs",
        "Jobs in the dead-letter store (counted up to 1,000,000)",
        dead as f64,
    );

    let (active, oldest) = runs::active_age(pool).await?;
    gauge(
        &mut registry,
        "importer_runs_active",
        "Runs planning or running",
        active as f64,
    );
    gauge(
        &mut registry,
        "importer_run_oldest_active_seconds",
        "Age of the oldest active run (0 when none)",
        oldest.unwrap_or(0.0),
    );

    let counts = queue::state_counts(pool, COUNT_CAP).await?;
    let per_state = Family::<Labels, GaugeF>::default();
    for s in &counts.states {
        let state = serde_json::to_value(s.state)?
            .as_str()
            .unwrap_or("unknown")
            .to_owned();
        per_state
            .get_or_create(&vec![("state".to_owned(), state)])
            .set(s.jobs as f64);
    }
    registry.register(
        "importer_queue_jobs",
        "Jobs in the queue per state (each counted up to 1,000,000)",
        per_state,
    );
    gauge(
        &mut registry,
        "importer_queue_oldest_waiting_seconds",
        "How long the oldest claimable job has waited (0 when none)",
        counts.oldest_waiting_secs.unwrap_or(0.0),
    );

    let workers = queue::workers(pool).await?;
    gauge(
        &mut registry,
        "importer_workers_holding_jobs",
        "Workers holding at least one job",
        workers.len() as f64,
    );
    let stalest = workers
        .iter()
        .filter(|w| w.jobs > 0)
        .filter_map(|w| w.since_last_beat_secs)
        .fold(0.0_f64, f64::max);
    gauge(
        &mut registry,
        "importer_worker_last_beat_age_seconds",
        "Seconds since the stalest worker holding a live job last claimed or renewed a lease",
        stalest,
    );

    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}
