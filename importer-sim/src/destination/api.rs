//! HTTP routes of the destination: `POST /record` and the control API under `/_sim`.
//!
//! | route | answer |
//! |---|---|
//! | `POST /record` | 200 `{"status":"OK","response":<accepted>}`, 400/401/413 `{"status":"error","message":…}` |
//! | `POST /_sim/keys` `{"key": "…"}` | 204 |
//! | `GET /_sim/faults`, `PUT /_sim/faults` | `DestinationFaults` |
//! | `GET /_sim/stats?key=…` | `DestinationStats` |
//! | `GET /_sim/records?key=…` | stored records, sorted by id |
//! | `DELETE /_sim/records?key=…` | 204, records and counters forgotten |
//! | `POST /_sim/damage?key=…` `{"drop": 5, "alter": 5}` | `{"dropped": […], "altered": […]}`: drift injected at the destination |
//! | `POST /_sim/verify?key=…` with `[expected records]` | `Verification` |
//! | `GET /_sim/verify?key=…&mailchimp_list=…` | `Verification` against the in-process Mailchimp simulator |

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use super::validate::{parse_batch, BatchError};
use super::{DestinationFaults, DestinationSim, Fault};
use crate::record::ExpectedRecord;

pub(super) fn routes() -> Router<DestinationSim> {
    Router::new()
        .route("/record", post(post_record))
        .route("/_sim/keys", post(add_key))
        .route("/_sim/faults", get(get_faults).put(set_faults))
        .route("/_sim/stats", get(stats))
        .route("/_sim/records", get(records).delete(clear))
        .route("/_sim/damage", post(damage))
        .route("/_sim/verify", get(verify_list).post(verify))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        // Batches are limited by count (413), not by axum's 2 MB default.
        .layer(DefaultBodyLimit::max(256 * 1024 * 1024))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"status": "error", "message": message.into()})),
    )
        .into_response()
}

/// The raw key of `Authorization`, or of the British `Authorisation`.
fn request_key(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .or_else(|| headers.get("authorisation"))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

async fn post_record(
    State(sim): State<DestinationSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let Some(key) = request_key(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "missing Authorization header");
    };
    if !sim.has_key(key) {
        return error(StatusCode::UNAUTHORIZED, "invalid API key");
    }
    sim.count_request(key);
    let config = sim.config();
    let records = match parse_batch(&body, config.max_batch) {
        Ok(records) => records,
        Err(e @ BatchError::TooLarge(..)) => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
        Err(e @ BatchError::Invalid(_)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let fault = sim.draw();
    match fault {
        Fault::Error { unavailable: true } => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "service unavailable")
        }
        Fault::Error { unavailable: false } => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
        Fault::Hang(d) => tokio::time::sleep(d).await,
        Fault::None | Fault::ShortCount => {}
    }
    let per_record = config
        .latency_per_record
        .saturating_mul(u32::try_from(records.len()).unwrap_or(u32::MAX));
    tokio::time::sleep_until(started + config.latency_base + per_record).await;
    let keep = match fault {
        Fault::ShortCount => records.len().saturating_sub(1),
        _ => records.len(),
    };
    let sent = records.len();
    let accepted = sim.store(key, records, keep);
    tracing::debug!(sent, accepted, ?fault, "records stored");
    (
        StatusCode::OK,
        Json(json!({"status": "OK", "response": accepted})),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    key: String,
}

async fn add_key(State(sim): State<DestinationSim>, Json(body): Json<NewKey>) -> Response {
    if body.key.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "key must not be empty");
    }
    sim.add_key(body.key.trim());
    StatusCode::NO_CONTENT.into_response()
}

async fn get_faults(State(sim): State<DestinationSim>) -> Json<DestinationFaults> {
    Json(sim.faults())
}

async fn set_faults(
    State(sim): State<DestinationSim>,
    Json(faults): Json<DestinationFaults>,
) -> Json<DestinationFaults> {
    sim.set_faults(faults);
    Json(sim.faults())
}

#[derive(Deserialize)]
struct KeyParam {
    key: String,
    mailchimp_list: Option<String>,
}

async fn stats(State(sim): State<DestinationSim>, Query(q): Query<KeyParam>) -> Response {
    Json(sim.stats(&q.key)).into_response()
}

async fn records(State(sim): State<DestinationSim>, Query(q): Query<KeyParam>) -> Response {
    Json(sim.records(&q.key)).into_response()
}

#[derive(Deserialize)]
struct DamageBody {
    #[serde(default)]
    drop: usize,
    #[serde(default)]
    alter: usize,
}

async fn damage(
    State(sim): State<DestinationSim>,
    Query(q): Query<KeyParam>,
    Json(body): Json<DamageBody>,
) -> Response {
    Json(sim.damage(&q.key, body.drop, body.alter)).into_response()
}

async fn clear(State(sim): State<DestinationSim>, Query(q): Query<KeyParam>) -> StatusCode {
    sim.clear(&q.key);
    StatusCode::NO_CONTENT
}

async fn verify(
    State(sim): State<DestinationSim>,
    Query(q): Query<KeyParam>,
    Json(expected): Json<Vec<ExpectedRecord>>,
) -> Response {
    Json(sim.verify(&q.key, &expected)).into_response()
}

async fn verify_list(State(sim): State<DestinationSim>, Query(q): Query<KeyParam>) -> Response {
    let Some(list) = q.mailchimp_list else {
        return error(
            StatusCode::BAD_REQUEST,
            "mailchimp_list is required (or POST the expected records)",
        );
    };
    match sim.verify_list(&q.key, &list) {
        Some(v) => Json(v).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("list {list} is not known to an in-process Mailchimp simulator"),
        ),
    }
}
