//! The Mailchimp simulator's control API under `/_sim` (JSON, no auth), mirroring the
//! [`MailchimpSim`] handle methods for the admin demo, docker-compose and scripts.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /_sim/keys` | `{"dc": "us6"}` or `{"api_key": "…"}` | 201 `{"api_key": "…"}` |
//! | `DELETE /_sim/keys/{key}` | | 204 (key revoked) |
//! | `GET /_sim/keys/{key}/stats` | | `KeyStats` |
//! | `POST /_sim/stats/reset` | | 204 |
//! | `POST /_sim/lists` | `{"api_key", "list_id", "members"}` | 201 `{"list_id", "members"}` |
//! | `GET /_sim/lists/{list_id}` | | `{"list_id", "members"}` |
//! | `POST /_sim/lists/{list_id}/{modify,touch,add,delete,archive}` | `{"n": 10}` | `{"ids": […]}` |
//! | `POST /_sim/lists/{list_id}/corrupt` | `{"n": 3, "defect": "invalid_utf8"}` | `{"ids": […]}` |
//! | `GET /_sim/churn`, `PUT /_sim/churn` | `[ChurnStep]` | the churn plan (request counts restart) |
//! | `GET /_sim/lists/{list_id}/expected` | | `[{id, firstname, lastname, email, status}]` |
//! | `GET /_sim/faults`, `PUT /_sim/faults` | `MailchimpFaults` | the switches |
//! | `GET /_sim/config` | | the `MailchimpSimConfig` |

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{MailchimpFaults, MailchimpSim, MemberDefect};
use crate::config::ChurnStep;

pub(super) fn routes() -> Router<MailchimpSim> {
    Router::new()
        .route("/_sim/keys", post(create_key))
        .route("/_sim/keys/{key}", delete(revoke_key))
        .route("/_sim/keys/{key}/stats", get(key_stats))
        .route("/_sim/stats/reset", post(reset_stats))
        .route("/_sim/lists", post(create_list))
        .route("/_sim/lists/{list_id}", get(list_summary))
        .route("/_sim/lists/{list_id}/expected", get(expected))
        .route("/_sim/lists/{list_id}/corrupt", post(corrupt))
        .route("/_sim/lists/{list_id}/{op}", post(mutate))
        .route("/_sim/faults", get(get_faults).put(set_faults))
        .route("/_sim/churn", get(get_churn).put(set_churn))
        .route("/_sim/config", get(config))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    dc: Option<String>,
    api_key: Option<String>,
}

async fn create_key(State(sim): State<MailchimpSim>, Json(body): Json<NewKey>) -> Response {
    let key = match (body.api_key, body.dc) {
        (Some(key), _) if !key.is_empty() => {
            sim.add_api_key(&key);
            key
        }
        (_, dc) => sim.new_api_key(dc.as_deref().unwrap_or("us1")),
    };
    (StatusCode::CREATED, Json(json!({"api_key": key}))).into_response()
}

async fn revoke_key(State(sim): State<MailchimpSim>, Path(key): Path<String>) -> StatusCode {
    sim.revoke_api_key(&key);
    StatusCode::NO_CONTENT
}

async fn key_stats(State(sim): State<MailchimpSim>, Path(key): Path<String>) -> Response {
    Json(sim.key_stats(&key)).into_response()
}

async fn reset_stats(State(sim): State<MailchimpSim>) -> StatusCode {
    sim.reset_stats();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewList {
    api_key: String,
    list_id: String,
    members: usize,
}

async fn create_list(State(sim): State<MailchimpSim>, Json(body): Json<NewList>) -> Response {
    if body.api_key.is_empty() || body.list_id.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "api_key and list_id must not be empty",
        );
    }
    // Generating a big list is CPU work: keep it off the async worker threads.
    let (list_id, members) = (body.list_id.clone(), body.members);
    let created = tokio::task::spawn_blocking(move || {
        sim.create_list(&body.api_key, &body.list_id, body.members)
    })
    .await;
    match created {
        Ok(()) => (
            StatusCode::CREATED,
            Json(json!({"list_id": list_id, "members": members})),
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn list_summary(State(sim): State<MailchimpSim>, Path(list_id): Path<String>) -> Response {
    match sim.member_count(&list_id) {
        Some(n) => Json(json!({"list_id": list_id, "members": n})).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("unknown list {list_id}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Count {
    n: usize,
}

async fn mutate(
    State(sim): State<MailchimpSim>,
    Path((list_id, op)): Path<(String, String)>,
    Json(body): Json<Count>,
) -> Response {
    if !sim.has_list(&list_id) {
        return error(StatusCode::NOT_FOUND, format!("unknown list {list_id}"));
    }
    let ids = match op.as_str() {
        "modify" => sim.modify_members(&list_id, body.n),
        "touch" => sim.touch_members(&list_id, body.n),
        "add" => sim.add_members(&list_id, body.n),
        "delete" => sim.delete_members(&list_id, body.n),
        "archive" => sim.archive_members(&list_id, body.n),
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                format!("unknown operation {op}: use modify, touch, add, delete or archive"),
            )
        }
    };
    Json(json!({"ids": ids})).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Corrupt {
    n: usize,
    defect: MemberDefect,
}

async fn corrupt(
    State(sim): State<MailchimpSim>,
    Path(list_id): Path<String>,
    Json(body): Json<Corrupt>,
) -> Response {
    if !sim.has_list(&list_id) {
        return error(StatusCode::NOT_FOUND, format!("unknown list {list_id}"));
    }
    Json(json!({"ids": sim.corrupt_members(&list_id, body.n, body.defect)})).into_response()
}

async fn expected(State(sim): State<MailchimpSim>, Path(list_id): Path<String>) -> Response {
    if !sim.has_list(&list_id) {
        return error(StatusCode::NOT_FOUND, format!("unknown list {list_id}"));
    }
    Json(sim.expected_records(&list_id)).into_response()
}

async fn get_faults(State(sim): State<MailchimpSim>) -> Json<MailchimpFaults> {
    Json(sim.faults())
}

async fn set_faults(
    State(sim): State<MailchimpSim>,
    Json(faults): Json<MailchimpFaults>,
) -> Json<MailchimpFaults> {
    sim.set_faults(faults);
    Json(sim.faults())
}

async fn get_churn(State(sim): State<MailchimpSim>) -> Json<Vec<ChurnStep>> {
    Json(sim.churn())
}

async fn set_churn(
    State(sim): State<MailchimpSim>,
    Json(steps): Json<Vec<ChurnStep>>,
) -> Json<Vec<ChurnStep>> {
    sim.set_churn(steps);
    Json(sim.churn())
}

async fn config(State(sim): State<MailchimpSim>) -> Response {
    Json(sim.config().clone()).into_response()
}
