//! The pages: each reads the core functions and views the CLI reads and renders a template.
//! Every list is a bounded page (keyset "next" links, never OFFSET) and every count over a table
//! that grows is capped or sampled, so no page gets slower as runs and dead jobs pile up.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use importer_core::queue::{self, DeadFilter, DeadReason, StateCounts, WorkerRow};
use importer_core::runs::RunStatus;
use importer_core::{accounts, audit, lists, rejected, throughput};
use minijinja::{context, Value};
use serde::Serialize;

use super::fields::{self, Fields};
use super::render::{self, PageError};
use super::session::{url_encode, Caller};
use super::users::Role;
use super::AppState;
use crate::progress::{self, RunProgress};
use crate::views;

/// Rows per page of every listing.
const PAGE: i64 = 50;
/// Counts stop here ("10,000+").
pub const COUNT_CAP: i64 = 10_000;
/// Groupings (dead jobs by error, rejected records by code) read at most this many newest rows.
pub const SAMPLE: i64 = 10_000;
/// Minutes the throughput chart shows.
const CHART_MINUTES: i32 = 180;

type Page = Result<Response, PageError>;

/// What every page's layout needs: the caller, their CSRF token, the flash message, the
/// active tab.
fn base(caller: &Caller, nav: &str) -> Value {
    context! {
        me => context! { name => caller.name.clone(), role => caller.role.as_str() },
        operator => caller.role == Role::Operator,
        csrf => caller.csrf(),
        flash => caller.flash.clone(),
        nav => nav,
    }
}

/// A run as pages show it: the progress row plus what is derived from it.
#[derive(Debug, Serialize)]
pub struct RunRow {
    #[serde(flatten)]
    progress: RunProgress,
    windows: String,
    eta_secs: Option<f64>,
    active: bool,
}

impl From<RunProgress> for RunRow {
    fn from(progress: RunProgress) -> Self {
        RunRow {
            windows: views::windows(&progress),
            eta_secs: progress.eta_secs(),
            active: progress.is_active(),
            progress,
        }
    }
}

/// A bar of the throughput chart.
#[derive(Debug, Serialize)]
struct Bar {
    x: f64,
    y: f64,
    h: f64,
    records: i64,
    label: String,
}

/// The throughput chart, laid out for its SVG.
#[derive(Debug, Serialize)]
struct Chart {
    width: u32,
    height: u32,
    bar_width: f64,
    bars: Vec<Bar>,
    peak: i64,
    total: i64,
    first: String,
    hours: i32,
}

fn chart(minutes: &[throughput::Minute]) -> Chart {
    let (width, height) = (900u32, 140u32);
    let slot = f64::from(width) / minutes.len().max(1) as f64;
    let peak = minutes.iter().map(|m| m.records).max().unwrap_or(0);
    let bars = minutes
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let h = if peak > 0 {
                (m.records as f64 / peak as f64 * f64::from(height)).max(if m.records > 0 {
                    1.0
                } else {
                    0.0
                })
            } else {
                0.0
            };
            Bar {
                x: i as f64 * slot,
                y: f64::from(height) - h,
                h,
                records: m.records,
                label: m.minute.format("%H:%M").to_string(),
            }
        })
        .collect();
    Chart {
        width,
        height,
        bar_width: (slot - 1.0).max(1.0),
        bars,
        peak,
        total: minutes.iter().map(|m| m.records).sum(),
        first: minutes
            .first()
            .map(|m| m.minute.format("%H:%M").to_string())
            .unwrap_or_default(),
        hours: CHART_MINUTES / 60,
    }
}

/// The overview's live part: queue, runs in flight, workers, chart.
#[derive(Debug, Serialize)]
struct Live {
    queue: StateCounts,
    inflight: Vec<RunRow>,
    workers: Vec<WorkerRow>,
    chart: Chart,
}

async fn live(state: &AppState) -> Result<Live, PageError> {
    let pool = &state.pool;
    let ids = progress::active_ids(pool).await?;
    let (queue, inflight, workers, minutes) = tokio::try_join!(
        async {
            queue::state_counts(pool, COUNT_CAP)
                .await
                .map_err(queue_error)
        },
        async { Ok::<_, PageError>(progress::by_ids(pool, &ids).await?) },
        async { queue::workers(pool).await.map_err(queue_error) },
        async { Ok::<_, PageError>(throughput::per_minute(pool, CHART_MINUTES).await?) },
    )?;
    Ok(Live {
        queue,
        inflight: inflight.into_iter().map(RunRow::from).collect(),
        workers,
        chart: chart(&minutes),
    })
}

/// A queue error as a page: the database's is a 503, a rule's a 400.
pub fn queue_error(e: queue::QueueError) -> PageError {
    match e {
        queue::QueueError::Database(e) => e.into(),
        other => PageError::bad(other.to_string()),
    }
}

fn list_error(e: lists::ListError) -> PageError {
    match e {
        lists::ListError::Database(e) => e.into(),
        other => PageError::bad(other.to_string()),
    }
}

/// `GET /`.
pub async fn overview(State(state): State<AppState>, caller: Caller) -> Page {
    let pool = &state.pool;
    let day_ago = chrono::Utc::now() - chrono::Duration::hours(24);
    let dead_filter = DeadFilter {
        died_since: Some(day_ago),
        ..DeadFilter::default()
    };
    let (live, behind, (dead_24h, dead_capped), groups) = tokio::try_join!(
        live(&state),
        async { lists::behind(pool, 21).await.map_err(list_error) },
        async {
            queue::count_dead(pool, &dead_filter, COUNT_CAP)
                .await
                .map_err(queue_error)
        },
        async {
            queue::group_dead(pool, &dead_filter, SAMPLE)
                .await
                .map_err(queue_error)
        },
    )?;
    let behind_more = behind.len() > 20;
    let behind: Vec<_> = behind.into_iter().take(20).collect();
    Ok(render::page(
        "overview.html",
        context! {
            queue => &live.queue, inflight => &live.inflight, workers => &live.workers,
            chart => &live.chart, behind, behind_more, dead_24h, dead_24h_capped => dead_capped,
            dead_groups => groups.into_iter().take(5).collect::<Vec<_>>(),
            refresh_ms => state.refresh_ms,
            ..base(&caller, "/")
        },
    ))
}

/// `GET /fragments/overview`: the live part of the overview, for the refreshing script.
pub async fn overview_fragment(State(state): State<AppState>, _caller: Caller) -> Page {
    let live = live(&state).await?;
    Ok(render::page("inflight.html", Value::from_serialize(&live)))
}

/// `GET /api/overview`: the live part as JSON (queue, runs in flight, workers, chart).
pub async fn overview_json(State(state): State<AppState>, _caller: Caller) -> Page {
    let live = live(&state).await?;
    Ok(Json(serde_json::json!({
        "queue": live.queue,
        "inflight": live.inflight,
        "workers": live.workers,
        "records_per_minute": live.chart.bars.iter().map(|b| b.records).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// `GET /accounts`.
pub async fn accounts(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<Vec<(String, String)>>,
) -> Page {
    let query = Fields(query);
    let mut rows = accounts::summaries(&state.pool, query.get("after"), PAGE + 1)
        .await
        .map_err(|e| match e {
            accounts::AccountError::Database(e) => PageError::from(e),
            other => PageError::bad(other.to_string()),
        })?;
    let next = (rows.len() as i64 > PAGE).then(|| {
        rows.truncate(PAGE as usize);
        rows.last().map(|a| a.name.clone())
    });
    Ok(render::page(
        "accounts.html",
        context! { accounts => rows, next => next.flatten(), ..base(&caller, "/accounts") },
    ))
}

/// `GET /lists`.
pub async fn lists(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<Vec<(String, String)>>,
) -> Page {
    let query = Fields(query);
    let filter = lists::SummaryFilter {
        account_id: query.id("account")?,
        behind_only: query.get("behind").is_some(),
        after_id: query.id("after")?,
        limit: PAGE + 1,
    };
    let mut rows = lists::summaries(&state.pool, &filter)
        .await
        .map_err(list_error)?;
    let next = (rows.len() as i64 > PAGE).then(|| {
        rows.truncate(PAGE as usize);
        let last = rows.last().map_or(0, |l| l.id);
        let mut q = format!("/lists?after={last}");
        if let Some(a) = filter.account_id {
            q.push_str(&format!("&account={a}"));
        }
        if filter.behind_only {
            q.push_str("&behind=1");
        }
        q
    });
    Ok(render::page(
        "lists.html",
        context! {
            lists => rows, next,
            filter => context! { account => filter.account_id, behind => filter.behind_only },
            ..base(&caller, "/lists")
        },
    ))
}

/// `GET /runs`: filtered by status, account, list and creation time, newest first.
pub async fn runs(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<Vec<(String, String)>>,
) -> Page {
    let query = Fields(query);
    let statuses = ["planning", "running", "completed", "failed", "cancelled"];
    let status = query.choice("status", &statuses)?;
    let after = match (query.time("after_time")?, query.id("after_id")?) {
        (Some(t), Some(id)) => Some((t, id)),
        _ => None,
    };
    let filter = progress::Filter {
        status: status.as_deref().map(run_status),
        account_id: query.id("account")?,
        list_id: query.id("list")?,
        created_from: query.time("from")?,
        created_to: query.time("to")?,
        after,
        limit: PAGE + 1,
    };
    let mut rows = progress::list(&state.pool, &filter).await?;
    let next = (rows.len() as i64 > PAGE).then(|| {
        rows.truncate(PAGE as usize);
        let mut q: Vec<(String, String)> = query
            .0
            .iter()
            .filter(|(n, v)| !n.starts_with("after_") && !v.is_empty())
            .cloned()
            .collect();
        if let Some(last) = rows.last() {
            q.push((
                "after_time".into(),
                crate::output::time_precise(last.created_at),
            ));
            q.push(("after_id".into(), last.run_id.to_string()));
        }
        format!("/runs?{}", query_string(&q))
    });
    let rows: Vec<RunRow> = rows.into_iter().map(RunRow::from).collect();
    Ok(render::page(
        "runs.html",
        context! {
            runs => rows, next,
            filter => context! {
                status, account => query.get("account"), list => query.get("list"),
                from => query.get("from"), to => query.get("to"),
            },
            ..base(&caller, "/runs")
        },
    ))
}

fn run_status(s: &str) -> RunStatus {
    match s {
        "planning" => RunStatus::Planning,
        "running" => RunStatus::Running,
        "completed" => RunStatus::Completed,
        "failed" => RunStatus::Failed,
        _ => RunStatus::Cancelled,
    }
}

/// `a=1&b=x%20y`.
pub fn query_string(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(n, v)| format!("{}={}", url_encode(n), url_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// One line of a run's timeline.
#[derive(Debug, Serialize)]
struct Event {
    at: chrono::DateTime<chrono::Utc>,
    what: String,
}

async fn run_row(state: &AppState, id: &str) -> Result<RunRow, PageError> {
    let id = fields::id("run", id)?;
    progress::get(&state.pool, id)
        .await?
        .map(RunRow::from)
        .ok_or_else(|| PageError::not_found(format!("there is no run {id}")))
}

/// `GET /runs/{id}`: windows, records, dead jobs, timeline, errors.
pub async fn run(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Page {
    let run = run_row(&state, &id).await?;
    let p = &run.progress;
    let dead = queue::list_dead(
        &state.pool,
        &DeadFilter {
            run_id: Some(p.run_id),
            limit: Some(100),
            ..DeadFilter::default()
        },
    )
    .await
    .map_err(queue_error)?;
    let mut timeline = vec![Event {
        at: p.created_at,
        what: format!(
            "created ({}, {})",
            p.mode,
            format!("{:?}", p.trigger).to_lowercase()
        ),
    }];
    if let Some(at) = p.started_at {
        timeline.push(Event {
            at,
            what: match p.members_total {
                Some(n) => format!(
                    "planned: {} members in {} windows",
                    render::thousands(n),
                    (p.jobs_total - 1).max(0)
                ),
                None => "import began".to_owned(),
            },
        });
    }
    for d in dead.iter().take(20) {
        timeline.push(Event {
            at: d.died_at,
            what: format!(
                "job #{} died ({}): {}",
                d.id,
                reason(d.reason),
                d.last_error.as_deref().unwrap_or("-")
            ),
        });
    }
    if let Some(at) = p.finished_at {
        timeline.push(Event {
            at,
            what: format!(
                "{}{}",
                p.status,
                p.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
        });
    }
    timeline.sort_by_key(|e| e.at);
    let dead: Vec<Value> = dead.iter().map(dead_value).collect();
    Ok(render::page(
        "run.html",
        context! { run, timeline, dead, refresh_ms => state.refresh_ms, ..base(&caller, "/runs") },
    ))
}

/// `GET /fragments/runs/{id}`: the live cards of a run's page.
pub async fn run_fragment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Page {
    let run = run_row(&state, &id).await?;
    let env_run = context! { run, refresh_ms => state.refresh_ms, ..base(&caller, "/runs") };
    Ok(render::page("run_live.html", env_run))
}

fn reason(r: DeadReason) -> &'static str {
    match r {
        DeadReason::Exhausted => "exhausted",
        DeadReason::Permanent => "permanent",
        DeadReason::LeaseExpired => "lease_expired",
    }
}

/// A dead job for templates (its kind and reason as text).
fn dead_value(d: &queue::DeadJob) -> Value {
    context! {
        id => d.id, kind => d.kind.as_str(), args => d.args.to_string(), account_id => d.account_id,
        run_id => d.run_id, attempts => d.attempts, max_attempts => d.max_attempts,
        last_error => d.last_error.clone(), errors => Value::from_serialize(&d.errors),
        errors_total => d.errors_total, reason => reason(d.reason), created_at => d.created_at,
        died_at => d.died_at,
    }
}

/// The dead-job filter of a query string or a form (the page's filters and the bulk actions
/// read the same fields, so "all matching" means what the page showed).
pub fn dead_filter(fields: &Fields) -> Result<DeadFilter, PageError> {
    let reason = fields
        .choice("reason", &["exhausted", "permanent", "lease_expired"])?
        .map(|r| match r.as_str() {
            "exhausted" => DeadReason::Exhausted,
            "permanent" => DeadReason::Permanent,
            _ => DeadReason::LeaseExpired,
        });
    Ok(DeadFilter {
        run_id: fields.id("run")?,
        account_id: fields.id("account")?,
        error_contains: fields.get("error").map(str::to_owned),
        reason,
        died_since: None,
        after: None,
        limit: None,
    })
}

/// The filter's fields as name-value pairs (hidden inputs of the bulk forms, links).
pub fn dead_filter_fields(filter: &DeadFilter) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(e) = &filter.error_contains {
        out.push(("error".to_owned(), e.clone()));
    }
    if let Some(r) = filter.run_id {
        out.push(("run".to_owned(), r.to_string()));
    }
    if let Some(a) = filter.account_id {
        out.push(("account".to_owned(), a.to_string()));
    }
    if let Some(r) = filter.reason {
        out.push(("reason".to_owned(), reason(r).to_owned()));
    }
    out
}

/// `GET /dead`: grouped by error, then the newest matching jobs.
pub async fn dead(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<Vec<(String, String)>>,
) -> Page {
    let query = Fields(query);
    let filter = dead_filter(&query)?;
    let mut page_filter = filter.clone();
    page_filter.limit = Some(PAGE + 1);
    if let (Some(t), Some(id)) = (query.time("after_time")?, query.id("after_id")?) {
        page_filter.after = Some((t, id));
    }
    let pool = &state.pool;
    let ((count, capped), groups, mut jobs) = tokio::try_join!(
        async {
            queue::count_dead(pool, &filter, COUNT_CAP)
                .await
                .map_err(queue_error)
        },
        async {
            queue::group_dead(pool, &filter, SAMPLE)
                .await
                .map_err(queue_error)
        },
        async {
            queue::list_dead(pool, &page_filter)
                .await
                .map_err(queue_error)
        },
    )?;
    let fields = dead_filter_fields(&filter);
    let next = (jobs.len() as i64 > PAGE).then(|| {
        jobs.truncate(PAGE as usize);
        let mut q = fields.clone();
        if let Some(last) = jobs.last() {
            q.push((
                "after_time".into(),
                crate::output::time_precise(last.died_at),
            ));
            q.push(("after_id".into(), last.id.to_string()));
        }
        format!("/dead?{}", query_string(&q))
    });
    let without_error: Vec<(String, String)> = fields
        .iter()
        .filter(|(n, _)| n != "error")
        .cloned()
        .collect();
    Ok(render::page(
        "dead.html",
        context! {
            count, capped, groups, sampled => count > SAMPLE || capped, sample => SAMPLE,
            jobs => jobs.iter().map(dead_value).collect::<Vec<_>>(), next,
            filter => context! {
                error => filter.error_contains.clone(), run => filter.run_id,
                account => filter.account_id, reason => filter.reason.map(reason),
            },
            filter_fields => fields, filter_query => query_string(&without_error),
            ..base(&caller, "/dead")
        },
    ))
}

/// `GET /dead/{id}`: one dead job with its attempt history.
pub async fn dead_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Page {
    let id = fields::id("dead job", &id)?;
    let job = queue::get_dead(&state.pool, id)
        .await
        .map_err(queue_error)?
        .ok_or_else(|| PageError::not_found(format!("there is no dead job {id}")))?;
    Ok(render::page(
        "dead_job.html",
        context! { job => dead_value(&job), ..base(&caller, "/dead") },
    ))
}

/// `GET /rejected`: by reason code, then the newest records with their excerpt.
pub async fn rejected(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<Vec<(String, String)>>,
) -> Page {
    let query = Fields(query);
    let code = query.choice("code", &importer_core::rejection::RejectReason::CODES)?;
    let filter = rejected::Filter {
        code,
        run_id: query.id("run")?,
        list_id: query.id("list")?,
        before_id: query.id("before")?,
        limit: PAGE + 1,
    };
    let (codes, mut records) = tokio::try_join!(
        rejected::count_by_code(&state.pool, &filter, SAMPLE),
        rejected::list(&state.pool, &filter),
    )?;
    let mut scope = Vec::new();
    if let Some(r) = filter.run_id {
        scope.push(("run".to_owned(), r.to_string()));
    }
    if let Some(l) = filter.list_id {
        scope.push(("list".to_owned(), l.to_string()));
    }
    let next = (records.len() as i64 > PAGE).then(|| {
        records.truncate(PAGE as usize);
        let mut q = scope.clone();
        if let Some(c) = &filter.code {
            q.push(("code".to_owned(), c.clone()));
        }
        if let Some(last) = records.last() {
            q.push(("before".to_owned(), last.id.to_string()));
        }
        format!("/rejected?{}", query_string(&q))
    });
    let sampled: i64 = codes.iter().map(|(_, n)| n).sum();
    Ok(render::page(
        "rejected.html",
        context! {
            codes, records, next, scope_query => query_string(&scope),
            sample => (sampled >= SAMPLE).then_some(SAMPLE),
            filter => context! { code => filter.code.clone(), run => filter.run_id, list => filter.list_id },
            ..base(&caller, "/rejected")
        },
    ))
}

/// `GET /audit`.
pub async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<Vec<(String, String)>>,
) -> Page {
    let query = Fields(query);
    let filter = audit::Filter {
        actor: query.get("actor").map(str::to_owned),
        action: query.get("action").map(str::to_owned),
        before_id: query.id("before")?,
        limit: PAGE + 1,
    };
    let mut entries = audit::list(&state.pool, &filter).await?;
    let next = (entries.len() as i64 > PAGE).then(|| {
        entries.truncate(PAGE as usize);
        let mut q = Vec::new();
        if let Some(a) = &filter.actor {
            q.push(("actor".to_owned(), a.clone()));
        }
        if let Some(a) = &filter.action {
            q.push(("action".to_owned(), a.clone()));
        }
        if let Some(last) = entries.last() {
            q.push(("before".to_owned(), last.id.to_string()));
        }
        format!("/audit?{}", query_string(&q))
    });
    let entries: Vec<Value> = entries
        .iter()
        .map(|e| {
            context! {
                at => e.at, actor => e.actor.clone(), via => Value::from_serialize(e.via),
                action => e.action.clone(), objects => e.objects.to_string(),
                outcome => Value::from_serialize(e.outcome), detail => e.detail.clone(),
            }
        })
        .collect();
    Ok(render::page(
        "audit.html",
        context! {
            entries, next,
            filter => context! { actor => filter.actor.clone(), action => filter.action.clone() },
            ..base(&caller, "/audit")
        },
    ))
}

/// Where to go after signing in: a path on this server, never another site.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/".to_owned(),
    }
}

/// `GET /login`.
pub async fn login_form(Query(query): Query<Vec<(String, String)>>) -> Response {
    let query = Fields(query);
    render::page(
        "login.html",
        context! { next => safe_next(query.get("next")), message => Option::<String>::None },
    )
}

/// Unknown page or action.
pub async fn not_found(uri: axum::http::Uri) -> PageError {
    PageError {
        status: StatusCode::NOT_FOUND,
        message: format!(
            "there is no page or action at {}; nothing was changed",
            uri.path()
        ),
    }
}
