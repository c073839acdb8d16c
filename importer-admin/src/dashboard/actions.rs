//! The actions: every POST is checked in one order (CSRF token, role, input, confirmation), then
//! done through the same core function the CLI calls, and written to the audit log with its
//! outcome, whether it was done, refused or failed.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::{CookieJar, Form};
use chrono::{DateTime, Utc};
use importer_core::accounts::{self, AccountError, AccountUpdate};
use importer_core::audit::{self, Outcome, Via};
use importer_core::lists::{self, ListError};
use importer_core::queue::{self, BulkOutcome, DeadFilter, QueueError};
use importer_core::runs::{self, RequestedMode, RunError, RunRequest};
use minijinja::context;
use serde_json::json;

use super::fields::{self, Fields};
use super::pages::{dead_filter, dead_filter_fields, queue_error, safe_next, COUNT_CAP};
use super::render::{self, PageError};
use super::session::{self, Caller};
use super::users::Role;
use super::AppState;

/// Dead jobs moved or deleted per transaction by a bulk action.
pub const BULK_CHUNK: i64 = 1000;

/// Which dead jobs a bulk action takes.
#[derive(Debug, Clone)]
enum Selection {
    /// The checked ones.
    Ids(Vec<i64>),
    /// Every one matching the page's filter.
    Filter(DeadFilter),
}

/// An operator action, parsed and ready to run.
#[derive(Debug, Clone)]
enum Act {
    Pause(i64),
    Resume(i64),
    SetCap(i64, i32),
    StartRun {
        list: i64,
        full: bool,
    },
    Enable(i64),
    Disable(i64),
    Audit(i64),
    ResetCursor {
        list: i64,
        to: Option<DateTime<Utc>>,
    },
    CancelRun(i64),
    Requeue(Selection),
    Purge(Selection),
}

/// What went wrong with an action that was tried.
enum Failure {
    /// A rule refused it (e.g. the list has an active run): nothing changed.
    Refused(String),
    /// An error: the database, most likely.
    Failed(String),
}

impl Act {
    /// The audit log's action name.
    fn name(&self) -> &'static str {
        match self {
            Act::Pause(_) => "accounts.pause",
            Act::Resume(_) => "accounts.resume",
            Act::SetCap(..) => "accounts.update",
            Act::StartRun { .. } => "runs.start",
            Act::Enable(_) => "lists.enable",
            Act::Disable(_) => "lists.disable",
            Act::Audit(_) => "audit",
            Act::ResetCursor { .. } => "lists.reset_cursor",
            Act::CancelRun(_) => "runs.cancel",
            Act::Requeue(_) => "dead.requeue",
            Act::Purge(_) => "dead.purge",
        }
    }

    /// The objects it acts on, for the audit log.
    fn objects(&self) -> serde_json::Value {
        match self {
            Act::Pause(id) | Act::Resume(id) => json!({ "account_id": id }),
            Act::SetCap(id, cap) => json!({ "account_id": id, "max_concurrency": cap }),
            Act::StartRun { list, full } => {
                json!({ "list_id": list, "mode": if *full { "full" } else { "incremental" } })
            }
            Act::Enable(id) | Act::Disable(id) | Act::Audit(id) => json!({ "list_id": id }),
            Act::ResetCursor { list, to } => json!({ "list_id": list, "to": to }),
            Act::CancelRun(id) => json!({ "run_id": id }),
            Act::Requeue(s) | Act::Purge(s) => selection_objects(s),
        }
    }

    /// Where the browser goes afterwards.
    fn back(&self) -> String {
        match self {
            Act::Pause(_) | Act::Resume(_) | Act::SetCap(..) => "/accounts".to_owned(),
            Act::StartRun { .. }
            | Act::Enable(_)
            | Act::Disable(_)
            | Act::Audit(_)
            | Act::ResetCursor { .. } => "/lists".to_owned(),
            Act::CancelRun(id) => format!("/runs/{id}"),
            Act::Requeue(Selection::Filter(f)) | Act::Purge(Selection::Filter(f)) => {
                match f.run_id {
                    Some(run) => format!("/runs/{run}"),
                    None => "/dead".to_owned(),
                }
            }
            Act::Requeue(_) | Act::Purge(_) => "/dead".to_owned(),
        }
    }

    /// The question and button of its confirmation page, when it needs one: it is destructive
    /// or may move many jobs.
    async fn confirmation(&self, state: &AppState) -> Result<Option<(String, String)>, PageError> {
        Ok(match self {
            Act::ResetCursor { list, to } => Some((
                match to {
                    None => format!("Reset the cursor of list {list}? Its next run will be a full sync that re-reads and re-posts every contact."),
                    Some(t) => format!("Move the cursor of list {list} to {t}? Every change since then is synced again."),
                },
                "Reset cursor".to_owned(),
            )),
            Act::CancelRun(id) => Some((
                format!("Cancel run {id}? Its queued jobs are removed; its list keeps the coverage it reached."),
                "Cancel run".to_owned(),
            )),
            Act::Requeue(s) => Some((
                format!("Requeue {}? They run again with fresh attempts, and a failed run becomes running.", described(state, s).await?),
                "Requeue".to_owned(),
            )),
            Act::Purge(s) => Some((
                format!("Delete {} for good? Their runs keep counting them as dead.", described(state, s).await?),
                "Purge".to_owned(),
            )),
            _ => None,
        })
    }

    /// Does it; `Ok` carries what came of it, for people.
    async fn perform(&self, state: &AppState) -> Result<String, Failure> {
        let pool = &state.pool;
        match self {
            Act::Pause(id) | Act::Resume(id) => {
                let paused = matches!(self, Act::Pause(_));
                let a = accounts::set_paused(pool, *id, paused)
                    .await
                    .map_err(account_failure)?;
                Ok(format!(
                    "account {} {}",
                    a.name,
                    if paused { "paused" } else { "resumed" }
                ))
            }
            Act::SetCap(id, cap) => {
                let update = AccountUpdate {
                    max_concurrency: Some(*cap),
                    ..AccountUpdate::default()
                };
                let a = accounts::update(pool, *id, &update)
                    .await
                    .map_err(account_failure)?;
                Ok(format!(
                    "account {}: concurrency cap {}",
                    a.name, a.max_concurrency
                ))
            }
            Act::Audit(list) => {
                let run = runs::create_audit(pool, *list, false)
                    .await
                    .map_err(run_failure)?;
                Ok(format!(
                    "audit run {} started for list {list}: its result shows in the list's audit column when it concludes",
                    run.id
                ))
            }
            Act::StartRun { list, full } => {
                let mode = if *full {
                    RequestedMode::Full
                } else {
                    RequestedMode::Auto
                };
                let run = runs::create(pool, *list, RunRequest { mode })
                    .await
                    .map_err(run_failure)?;
                Ok(format!(
                    "run {} started ({}) for list {list}",
                    run.id, run.mode
                ))
            }
            Act::Enable(id) | Act::Disable(id) => {
                let enabled = matches!(self, Act::Enable(_));
                lists::set_enabled(pool, *id, enabled)
                    .await
                    .map_err(list_failure)?;
                Ok(format!(
                    "list {id} {}",
                    if enabled { "enabled" } else { "disabled" }
                ))
            }
            Act::ResetCursor { list, to } => {
                lists::reset_cursor(pool, *list, *to)
                    .await
                    .map_err(list_failure)?;
                Ok(match to {
                    None => format!("list {list}: cursor reset, the next run is full"),
                    Some(t) => format!("list {list}: cursor moved to {t}"),
                })
            }
            Act::CancelRun(id) => {
                let run = runs::cancel(pool, *id).await.map_err(run_failure)?;
                Ok(format!("run {} {}", run.id, run.status))
            }
            Act::Requeue(s) => {
                let done = match s {
                    Selection::Ids(ids) => queue::requeue_ids(pool, ids).await,
                    Selection::Filter(f) => queue::requeue_filtered(pool, f, BULK_CHUNK).await,
                }
                .map_err(queue_failure)?;
                Ok(bulk_summary("requeued", done))
            }
            Act::Purge(s) => {
                let done = match s {
                    Selection::Ids(ids) => queue::purge_ids(pool, ids).await,
                    Selection::Filter(f) => queue::purge_filtered(pool, f, BULK_CHUNK).await,
                }
                .map_err(queue_failure)?;
                Ok(bulk_summary("purged", done))
            }
        }
    }
}

fn bulk_summary(verb: &str, done: BulkOutcome) -> String {
    let mut text = format!(
        "{} dead job{} {verb}",
        done.jobs,
        if done.jobs == 1 { "" } else { "s" }
    );
    if done.skipped > 0 {
        text.push_str(&format!(
            ", {} left dead (their run was cancelled)",
            done.skipped
        ));
    }
    if done.chunks > 1 {
        text.push_str(&format!(" in {} chunks", done.chunks));
    }
    text
}

fn selection_objects(s: &Selection) -> serde_json::Value {
    match s {
        Selection::Ids(ids) => json!({ "dead_job_ids": ids }),
        Selection::Filter(f) => json!({
            "filter": dead_filter_fields(f)
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect::<serde_json::Map<_, _>>()
        }),
    }
}

/// "3 dead jobs" or "every dead job matching error contains "x" (12)".
async fn described(state: &AppState, s: &Selection) -> Result<String, PageError> {
    Ok(match s {
        Selection::Ids(ids) => format!(
            "{} selected dead job{}",
            ids.len(),
            if ids.len() == 1 { "" } else { "s" }
        ),
        Selection::Filter(f) => {
            let (n, capped) = queue::count_dead(&state.pool, f, COUNT_CAP)
                .await
                .map_err(queue_error)?;
            let what = dead_filter_fields(f)
                .iter()
                .map(|(k, v)| format!("{k} = {v}"))
                .collect::<Vec<_>>()
                .join(", ");
            let count = format!("{}{}", render::thousands(n), if capped { "+" } else { "" });
            if what.is_empty() {
                format!("all {count} dead jobs")
            } else {
                format!("all {count} dead jobs matching {what}")
            }
        }
    })
}

fn account_failure(e: AccountError) -> Failure {
    match e {
        AccountError::Database(e) => Failure::Failed(crate::database::describe(&e)),
        other => Failure::Refused(other.to_string()),
    }
}

fn list_failure(e: ListError) -> Failure {
    match e {
        ListError::Database(e) => Failure::Failed(crate::database::describe(&e)),
        other => Failure::Refused(other.to_string()),
    }
}

fn run_failure(e: RunError) -> Failure {
    match e {
        RunError::Database(e) => Failure::Failed(crate::database::describe(&e)),
        other => Failure::Refused(other.to_string()),
    }
}

fn queue_failure(e: QueueError) -> Failure {
    match e {
        QueueError::Database(e) => Failure::Failed(crate::database::describe(&e)),
        other => Failure::Refused(other.to_string()),
    }
}

/// Records an action in the audit log; a failure to record is logged, never hidden.
async fn record(
    state: &AppState,
    caller_name: &str,
    action: &str,
    objects: serde_json::Value,
    outcome: Outcome,
    detail: &str,
) {
    let entry = audit::NewEntry {
        actor: caller_name.to_owned(),
        via: Via::Dashboard,
        action: action.to_owned(),
        objects,
        outcome,
        detail: Some(detail.to_owned()),
    };
    if let Err(e) = audit::record(&state.pool, &entry).await {
        tracing::error!(actor = caller_name, action, error = %e, "could not write the audit log");
    }
}

/// The one path of every action: CSRF, role, input, confirmation, then the action and its
/// audit row.
async fn execute(
    state: &AppState,
    caller: &Caller,
    fields: &Fields,
    path: &str,
    name: &str,
    act: Result<Act, PageError>,
) -> Response {
    if !caller.csrf_ok(fields.get("csrf")) {
        let why = "the form's CSRF token is missing or wrong (reload the page and try again); nothing was changed";
        record(
            state,
            &caller.name,
            name,
            json!({ "path": path }),
            Outcome::Refused,
            why,
        )
        .await;
        return PageError::forbidden(why).into_response();
    }
    if caller.role != Role::Operator {
        let why = format!(
            "{} is a viewer: only operators can act; nothing was changed",
            caller.name
        );
        record(
            state,
            &caller.name,
            name,
            json!({ "path": path }),
            Outcome::Refused,
            &why,
        )
        .await;
        return PageError::forbidden(why).into_response();
    }
    let act = match act {
        Ok(act) => act,
        Err(e) => {
            record(
                state,
                &caller.name,
                name,
                json!({ "path": path }),
                Outcome::Refused,
                &e.message,
            )
            .await;
            return e.into_response();
        }
    };
    if !fields.confirmed() {
        match act.confirmation(state).await {
            Err(e) => return e.into_response(),
            Ok(Some((question, verb))) => {
                let kept: Vec<(String, String)> = fields
                    .0
                    .iter()
                    .filter(|(n, _)| n != "csrf" && n != "confirm")
                    .cloned()
                    .collect();
                return render::page(
                    "confirm.html",
                    context! {
                        question, verb, action => path, fields => kept, back => act.back(),
                        me => context! { name => caller.name.clone(), role => caller.role.as_str() },
                        csrf => caller.csrf(), operator => true, nav => "",
                    },
                );
            }
            Ok(None) => {}
        }
    }
    let objects = act.objects();
    match act.perform(state).await {
        Ok(detail) => {
            tracing::info!(actor = %caller.name, action = act.name(), objects = %objects, %detail, "dashboard action");
            record(
                state,
                &caller.name,
                act.name(),
                objects,
                Outcome::Ok,
                &detail,
            )
            .await;
            if let Some(s) = &caller.session {
                state.sessions.flash(&s.id, detail);
            }
            Redirect::to(&act.back()).into_response()
        }
        Err(Failure::Refused(why)) => {
            record(
                state,
                &caller.name,
                act.name(),
                objects,
                Outcome::Refused,
                &why,
            )
            .await;
            PageError {
                status: StatusCode::CONFLICT,
                message: format!("{why}; nothing was changed"),
            }
            .into_response()
        }
        Err(Failure::Failed(why)) => {
            tracing::error!(actor = %caller.name, action = act.name(), error = %why, "dashboard action failed");
            record(
                state,
                &caller.name,
                act.name(),
                objects,
                Outcome::Failed,
                &why,
            )
            .await;
            PageError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: format!("the action failed: {why}"),
            }
            .into_response()
        }
    }
}

fn unknown(kind: &str, action: &str) -> Response {
    PageError::not_found(format!(
        "there is no {kind} action {action:?}; nothing was changed"
    ))
    .into_response()
}

/// `POST /accounts/{id}/pause|resume|concurrency`.
pub async fn account(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let fields = Fields(form);
    let name = match action.as_str() {
        "pause" => "accounts.pause",
        "resume" => "accounts.resume",
        "concurrency" => "accounts.update",
        _ => return unknown("account", &action),
    };
    let act = fields::id("account", &id).and_then(|id| match action.as_str() {
        "pause" => Ok(Act::Pause(id)),
        "resume" => Ok(Act::Resume(id)),
        _ => match fields.get("max_concurrency").map(str::parse::<i32>) {
            Some(Ok(cap)) if (1..=1000).contains(&cap) => Ok(Act::SetCap(id, cap)),
            _ => Err(PageError::bad(
                "max_concurrency must be a whole number from 1 to 1000; nothing was changed",
            )),
        },
    });
    execute(
        &state,
        &caller,
        &fields,
        &format!("/accounts/{id}/{action}"),
        name,
        act,
    )
    .await
}

/// `POST /lists/{id}/runs|enable|disable|reset-cursor`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let fields = Fields(form);
    let name = match action.as_str() {
        "runs" => "runs.start",
        "enable" => "lists.enable",
        "disable" => "lists.disable",
        "audit" => "audit",
        "reset-cursor" => "lists.reset_cursor",
        _ => return unknown("list", &action),
    };
    let act = fields::id("list", &id).and_then(|id| match action.as_str() {
        "runs" => match fields.choice("mode", &["incremental", "full"])?.as_deref() {
            Some("full") => Ok(Act::StartRun {
                list: id,
                full: true,
            }),
            _ => Ok(Act::StartRun {
                list: id,
                full: false,
            }),
        },
        "enable" => Ok(Act::Enable(id)),
        "disable" => Ok(Act::Disable(id)),
        "audit" => Ok(Act::Audit(id)),
        _ => Ok(Act::ResetCursor {
            list: id,
            to: fields.time("to")?,
        }),
    });
    execute(
        &state,
        &caller,
        &fields,
        &format!("/lists/{id}/{action}"),
        name,
        act,
    )
    .await
}

/// `POST /runs/{id}/cancel`.
pub async fn run(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let fields = Fields(form);
    if action != "cancel" {
        return unknown("run", &action);
    }
    let act = fields::id("run", &id).map(Act::CancelRun);
    execute(
        &state,
        &caller,
        &fields,
        &format!("/runs/{id}/cancel"),
        "runs.cancel",
        act,
    )
    .await
}

/// `POST /dead/requeue|purge`: the checked jobs (`scope=ids`, `id=...`) or every job matching
/// the filter fields (`scope=filter`), applied on the server in chunks.
pub async fn dead(
    State(state): State<AppState>,
    caller: Caller,
    Path(action): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let fields = Fields(form);
    let name = match action.as_str() {
        "requeue" => "dead.requeue",
        "purge" => "dead.purge",
        _ => return unknown("dead job", &action),
    };
    let selection = match fields.choice("scope", &["ids", "filter"]) {
        Ok(Some(scope)) if scope == "filter" => dead_filter(&fields).map(Selection::Filter),
        Ok(Some(_)) => fields
            .all("id")
            .into_iter()
            .map(|id| fields::id("id", id))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|ids| {
                if ids.is_empty() {
                    Err(PageError::bad("no dead job selected; nothing was changed"))
                } else {
                    Ok(Selection::Ids(ids))
                }
            }),
        Ok(None) => Err(PageError::bad(
            "scope must be ids or filter; nothing was changed",
        )),
        Err(e) => Err(e),
    };
    let act = selection.map(|s| {
        if action == "requeue" {
            Act::Requeue(s)
        } else {
            Act::Purge(s)
        }
    });
    execute(
        &state,
        &caller,
        &fields,
        &format!("/dead/{action}"),
        name,
        act,
    )
    .await
}

/// `POST /login`: a valid token starts a session.
pub async fn login(
    State(state): State<AppState>,
    jar: CookieJar,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let fields = Fields(form);
    let next = safe_next(fields.get("next"));
    let Some(user) = fields
        .get("token")
        .and_then(|t| state.users.authenticate(t))
        .cloned()
    else {
        record(
            &state,
            "anonymous",
            "session.sign_in",
            json!({}),
            Outcome::Refused,
            "unknown token",
        )
        .await;
        let mut page = render::page(
            "login.html",
            context! { next, message => "That token is not valid." },
        );
        *page.status_mut() = StatusCode::UNAUTHORIZED;
        return page;
    };
    let id = state.sessions.start(&user);
    record(
        &state,
        &user.name,
        "session.sign_in",
        json!({}),
        Outcome::Ok,
        user.role.as_str(),
    )
    .await;
    (
        jar.add(session::session_cookie(id, state.secure_cookies)),
        Redirect::to(&next),
    )
        .into_response()
}

/// `POST /logout`.
pub async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    jar: CookieJar,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let fields = Fields(form);
    if !caller.csrf_ok(fields.get("csrf")) {
        return PageError::forbidden("the form's CSRF token is missing or wrong").into_response();
    }
    if let Some(s) = &caller.session {
        state.sessions.end(&s.id);
    }
    (
        jar.remove(session::removal_cookie()),
        Redirect::to("/login"),
    )
        .into_response()
}
