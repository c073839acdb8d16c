//! The simulated Mailchimp API routes under `/3.0`: members, list info, ping and the API root.
//!
//! Every route authenticates, then takes one of the key's connection slots for the whole
//! handler (latency and hangs included). Faults apply to the members endpoint only.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;
use tokio::time::Instant;

use super::auth::{self, KeyEntry, Slot};
use super::faults::{self, Fault};
use super::fields::Scope;
use super::json::{timestamp, View};
use super::members::{mix, Status, INVALID_UTF8_MARKER};
use super::page::Page;
use super::problem::Problem;
use super::query::{field_params, MemberQuery};
use super::store::ListData;
use super::MailchimpSim;
use crate::read;

type Params = Query<Vec<(String, String)>>;

pub(super) fn routes() -> Router<MailchimpSim> {
    Router::new()
        .route("/3.0", get(root))
        .route("/3.0/", get(root))
        .route("/3.0/ping", get(ping))
        .route("/3.0/lists/{list_id}", get(list_info))
        .route("/3.0/lists/{list_id}/members", get(members))
}

/// Any other path: Mailchimp's 404.
pub(super) async fn not_found() -> Problem {
    Problem::not_found()
}

/// An authenticated request holding a connection slot.
struct Authorized {
    key: String,
    entry: Arc<KeyEntry>,
    slot: Option<Slot>,
}

impl MailchimpSim {
    /// Authenticates the request and takes a slot: 401 without a valid key, 429 at the limit.
    fn authorize(&self, headers: &HeaderMap) -> Result<Authorized, Problem> {
        let key = match auth::request_key(headers) {
            Ok(Some(key)) => key,
            Ok(None) => return Err(Problem::key_missing()),
            Err(()) => return Err(Problem::key_invalid()),
        };
        let entry = self.valid_key(&key).ok_or_else(Problem::key_invalid)?;
        let config = self.config();
        let Some(slot) = entry.acquire(config.max_connections_per_key) else {
            entry.count_429();
            return Err(Problem::too_many(
                config.max_connections_per_key,
                config.retry_after_on_429,
            ));
        };
        Ok(Authorized {
            key,
            entry,
            slot: Some(slot),
        })
    }

    /// The list if it belongs to `key`; 404 otherwise (unknown or another key's list).
    fn owned_list(
        &self,
        key: &str,
        list_id: &str,
    ) -> Result<Arc<std::sync::RwLock<ListData>>, Problem> {
        self.list(list_id)
            .filter(|l| read(l).meta.owner == key)
            .ok_or_else(Problem::not_found)
    }
}

fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = (status, body.into()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        headers.insert("x-request-id", id);
    }
    response
}

async fn ping(State(sim): State<MailchimpSim>, headers: HeaderMap) -> Result<Response, Problem> {
    let _auth = sim.authorize(&headers)?;
    Ok(json_response(
        StatusCode::OK,
        json!({"health_status": "Everything's Chimpy!"}).to_string(),
    ))
}

async fn root(State(sim): State<MailchimpSim>, headers: HeaderMap) -> Result<Response, Problem> {
    let auth = sim.authorize(&headers)?;
    let id = &auth.key[..auth.key.len().min(10)];
    let total: usize = read(&sim.inner.lists)
        .values()
        .map(|l| read(l))
        .filter(|l| l.meta.owner == auth.key)
        .map(|l| l.members.len())
        .sum();
    Ok(json_response(
        StatusCode::OK,
        json!({
            "account_id": id,
            "login_id": id,
            "account_name": "Simulated account",
            "email": "owner@example.com",
            "role": "owner",
            "pro_enabled": false,
            "total_subscribers": total,
        })
        .to_string(),
    ))
}

async fn list_info(
    State(sim): State<MailchimpSim>,
    Path(list_id): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let auth = sim.authorize(&headers)?;
    let list = sim.owned_list(&auth.key, &list_id)?;
    let body = {
        let l = read(&list);
        let count = |s: Status| l.members.iter().filter(|m| m.status == s).count();
        let last_changed = l.members.iter().map(|m| m.last_changed).max().unwrap_or(0);
        let href = format!(
            "https://{}.api.mailchimp.com/3.0/lists/{}",
            l.meta.dc, l.meta.id
        );
        json!({
            "id": l.meta.id,
            "web_id": 100_000 + l.meta.seed % 900_000,
            "name": l.meta.name,
            "contact": {"company": "Simulated Inc.", "address1": "675 Ponce de Leon Ave NE", "address2": "",
                        "city": "Atlanta", "state": "GA", "zip": "30308", "country": "US", "phone": ""},
            "permission_reminder": "You signed up on our website.",
            "use_archive_bar": true,
            "campaign_defaults": {"from_name": "Simulated", "from_email": "news@example.com",
                                  "subject": "", "language": "en"},
            "notify_on_subscribe": "",
            "notify_on_unsubscribe": "",
            "date_created": timestamp(l.meta.date_created),
            "list_rating": 3,
            "email_type_option": false,
            "visibility": "prv",
            "double_optin": false,
            "marketing_permissions": false,
            "stats": {
                "member_count": count(Status::Subscribed),
                "total_contacts": l.members.len(),
                "unsubscribe_count": count(Status::Unsubscribed),
                "cleaned_count": count(Status::Cleaned),
                "member_count_since_send": 0,
                "unsubscribe_count_since_send": 0,
                "cleaned_count_since_send": 0,
                "campaign_count": 0,
                "avg_sub_rate": 0,
                "avg_unsub_rate": 0,
                "open_rate": 0,
                "click_rate": 0,
                "last_sub_date": timestamp(last_changed),
                "last_unsub_date": "",
            },
            "_links": [
                {"rel": "self", "href": href, "method": "GET"},
                {"rel": "members", "href": format!("{href}/members"), "method": "GET"},
            ],
        })
    };
    let (fields, exclude) = field_params(&params);
    let body = Scope::new(fields.as_ref(), exclude.as_ref()).trim(body);
    Ok(json_response(StatusCode::OK, body.to_string()))
}

/// Sleeps `hang` in a task that owns the slot, so a client that gives up still leaves the
/// connection counted until the server would have answered (as Mailchimp does).
async fn hang(slot: Option<Slot>, hang: Duration) -> Option<Slot> {
    let task = tokio::spawn(async move {
        tokio::time::sleep(hang).await;
        slot
    });
    task.await.ok().flatten()
}

async fn members(
    State(sim): State<MailchimpSim>,
    Path(list_id): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let started = Instant::now();
    let mut auth = sim.authorize(&headers)?;
    let list = sim.owned_list(&auth.key, &list_id)?;
    let config = sim.config();
    let query = MemberQuery::parse(&params, config)?;
    for step in sim.inner.churn.count_request(&list_id) {
        let changed = sim.churn_list(&list_id, &step).len();
        tracing::info!(list_id, changed, ?step, "churn step applied");
    }
    if read(&list).has_due() {
        crate::write(&list).settle();
    }
    let fault = sim.inner.faults.draw();
    match fault {
        Fault::Burst429 { retry_after } => {
            auth.entry.count_429();
            return Err(Problem::too_many(
                config.max_connections_per_key,
                retry_after.or(config.retry_after_on_429),
            ));
        }
        Fault::Error { unavailable } => return Err(Problem::server_error(unavailable)),
        Fault::Hang(d) => auth.slot = hang(auth.slot.take(), d).await,
        _ => {}
    }
    let mut tie_rng = config.unstable_ties.then(|| {
        let n = sim
            .inner
            .request_counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        StdRng::seed_from_u64(mix(sim.inner.seed, n))
    });
    // One read lock for the page and total_items: they come from the same snapshot.
    let (page, total, meta) = {
        let l = read(&list);
        let (page, total) = query.select(&l, config.inclusive_since, tie_rng.as_mut());
        (page, total, Arc::clone(&l.meta))
    };
    let scope = Scope::new(query.fields.as_ref(), query.exclude.as_ref());
    let page_view = Page {
        meta: &meta,
        members: &page,
        total,
    };
    let body = serde_json::to_vec(&View {
        value: &page_view,
        scope,
    })
    .map_err(|_| Problem::server_error(false))?;
    let body = break_utf8(body);
    let per_member = config
        .latency_per_member
        .saturating_mul(u32::try_from(page.len()).unwrap_or(u32::MAX));
    auth.entry.count_members(page.len());
    tokio::time::sleep_until(started + config.latency_base + per_member).await;
    tracing::debug!(list_id, members = page.len(), total, ?fault, "members page");
    Ok(match fault {
        Fault::Malformed => json_response(StatusCode::OK, faults::malform(body)),
        Fault::Truncated => json_response(StatusCode::OK, faults::truncate(body)),
        Fault::Reset => json_response(StatusCode::OK, reset_body(body, auth.slot.take())),
        _ => json_response(StatusCode::OK, body),
    })
}

/// Swaps the marker of members served with invalid UTF-8 for bytes that are not UTF-8.
fn break_utf8(body: Vec<u8>) -> Vec<u8> {
    let marker = INVALID_UTF8_MARKER.as_bytes();
    if !body.windows(marker.len()).any(|w| w == marker) {
        return body;
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i..].starts_with(marker) {
            out.extend_from_slice(b"\xff\xfe");
            i += marker.len();
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    out
}

/// A body that sends its first half, then aborts the connection.
fn reset_body(mut body: Vec<u8>, slot: Option<Slot>) -> Body {
    let tail = body.split_off(body.len() / 2);
    drop(tail);
    let first = futures::stream::once(async move { Ok::<_, io::Error>(bytes::Bytes::from(body)) });
    let abort = futures::stream::once(async move {
        // Let the headers and first half reach the client before the abort.
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(slot);
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "injected connection reset",
        ))
    });
    Body::from_stream(futures::StreamExt::chain(first, abort))
}
