//! The worker's HTTP port: `/healthz` (ready when the database answers) and `/metrics`.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::telemetry::metrics_handle;

/// Binds `addr` and serves health and metrics until `shutdown` is cancelled.
/// Returns the bound address (useful with port 0) and the server task.
pub(crate) async fn serve(
    addr: SocketAddr,
    pool: PgPool,
    health: Health,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state((pool, health));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind the health/metrics port {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "health/metrics server failed");
        }
    });
    Ok((bound, task))
}

/// 200 when the database answers and the worker has no fault of its own; 503 otherwise, with
/// the reason (a fault's reason names configuration, never a secret's value).
async fn healthz(State((pool, health)): State<(PgPool, Health)>) -> (StatusCode, String) {
    if let Some(fault) = health.faulted() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {fault}\n"),
        );
    }
    match sqlx::query("SELECT 1").execute(&pool).await {
        Ok(_) => (StatusCode::OK, "ok\n".to_owned()),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "database unavailable\n".to_owned(),
        ),
    }
}

async fn metrics() -> String {
    metrics_handle().render()
}
