//! `importer-admin serve`: the operator dashboard. Pages render on the server (minijinja) from
//! the same core functions and views the CLI reads; a small vendored script refreshes the live
//! sections. Every action is authenticated, CSRF-checked, allowed by role, confirmed when it is
//! destructive or bulk, and written to the audit log with its outcome.

mod actions;
mod fields;
mod pages;
mod render;
mod session;
pub mod users;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use self::session::Sessions;
use self::users::Users;

/// How the dashboard runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (localhost unless told otherwise).
    pub listen: SocketAddr,
    /// Who may sign in.
    pub users: Users,
    /// Mark the session cookie `Secure` (serve behind TLS).
    pub secure_cookies: bool,
    /// How often live sections refresh.
    pub refresh: Duration,
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pool: PgPool,
    users: Arc<Users>,
    sessions: Sessions,
    secure_cookies: bool,
    refresh_ms: u64,
}

/// The dashboard's routes over `state`.
fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/fragments/overview", get(pages::overview_fragment))
        .route("/api/overview", get(pages::overview_json))
        .route("/accounts", get(pages::accounts))
        .route("/accounts/{id}/{action}", post(actions::account))
        .route("/lists", get(pages::lists))
        .route("/lists/{id}/{action}", post(actions::list))
        .route("/runs", get(pages::runs))
        .route("/runs/{id}", get(pages::run))
        .route("/fragments/runs/{id}", get(pages::run_fragment))
        .route("/runs/{id}/{action}", post(actions::run))
        .route("/dead", get(pages::dead))
        // GET /dead/{id} shows a job; POST /dead/requeue and /dead/purge act.
        .route("/dead/{id}", get(pages::dead_job).post(actions::dead))
        .route("/rejected", get(pages::rejected))
        .route("/audit", get(pages::audit))
        .route("/login", get(pages::login_form).post(actions::login))
        .route("/logout", post(actions::logout))
        .route("/healthz", get(|| async { "ok" }))
        .route("/assets/dashboard.js", get(script))
        .route("/assets/dashboard.css", get(stylesheet))
        .fallback(pages::not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Headers on every answer: no framing (clickjacking), no sniffing, scripts and styles only
/// from this server, and no caching of pages that show live data.
async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    let set = [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("assets/dashboard.js"),
    )
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("assets/dashboard.css"),
    )
}

/// Serves the dashboard until `stop` is cancelled; `on_listen` gets the bound address (port 0
/// picks a free one).
pub async fn serve(
    pool: PgPool,
    config: Config,
    stop: CancellationToken,
    on_listen: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr().context("no local address")?;
    let state = AppState {
        pool,
        users: Arc::new(config.users),
        sessions: Sessions::default(),
        secure_cookies: config.secure_cookies,
        refresh_ms: u64::try_from(config.refresh.as_millis())
            .unwrap_or(2000)
            .max(250),
    };
    let app = router(state);
    on_listen(address);
    tracing::info!(%address, "dashboard listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
        .context("the dashboard server failed")
}
