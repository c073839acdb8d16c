//! `runs start | list | show | cancel | watch`: operators' runs, and what every run did.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use importer_core::queue::{self, DeadFilter};
use importer_core::runs::{self, RequestedMode, RunError, RunRequest};
use serde::Serialize;
use sqlx::PgPool;

use crate::cli::RunsCommand;
use crate::commands::watch;
use crate::lookup;
use crate::output::{self, Format};
use crate::progress::{self, RunProgress};
use crate::views;

/// Runs a `runs` subcommand.
pub async fn run<W: Write>(
    pool: &PgPool,
    command: RunsCommand,
    format: Format,
    out: &mut W,
) -> anyhow::Result<()> {
    match command {
        RunsCommand::Start { list, full, since } => {
            let mode = match (full, since) {
                (true, _) => RequestedMode::Full,
                (false, Some(t)) => RequestedMode::Since(t),
                (false, None) => RequestedMode::Auto,
            };
            start(pool, &list, mode, format, out).await
        }
        RunsCommand::List {
            status,
            account,
            list,
            limit,
        } => {
            let mut filter = progress::Filter {
                status: status.map(Into::into),
                limit: limit.max(1),
                ..progress::Filter::default()
            };
            if let Some(a) = account {
                filter.account_id = Some(lookup::account(pool, &a).await?.id);
            }
            if let Some(l) = list {
                filter.list_id = Some(lookup::list(pool, &l).await?.0.id);
            }
            let rows = progress::list(pool, &filter).await?;
            output::emit_list(out, format, &rows, "no runs match", views::run_table)
        }
        RunsCommand::Show { id } => show(pool, id, format, out).await,
        RunsCommand::Cancel { id } => {
            let run = runs::cancel(pool, id)
                .await
                .with_context(|| format!("cannot cancel run {id}"))?;
            let row = progress::get(pool, run.id)
                .await?
                .with_context(|| format!("run {id} vanished"))?;
            let text = format!(
                "cancelled run {} of {}: {} removed from the queue, {} imported before",
                row.run_id,
                row.list_label(),
                output::count(run.jobs_cancelled.unsigned_abs(), "job", "jobs"),
                output::count(row.records_imported.unsigned_abs(), "record", "records")
            );
            output::done(out, format, &text, &row)
        }
        RunsCommand::Watch { id, interval_ms } => {
            let ids = match id {
                Some(id) => vec![id],
                None => progress::active_ids(pool).await?,
            };
            if ids.is_empty() {
                return output::done(out, format, "no active runs", &Vec::<RunProgress>::new());
            }
            let display = watch::Display::for_output(format);
            let rows =
                watch::watch(pool, &ids, Duration::from_millis(interval_ms), display, out).await?;
            output::emit_list(out, format, &rows, "no runs", views::run_table)?;
            watch::require_completed(&rows)
        }
    }
}

async fn start<W: Write>(
    pool: &PgPool,
    reference: &str,
    mode: RequestedMode,
    format: Format,
    out: &mut W,
) -> anyhow::Result<()> {
    let (list, account) = lookup::list(pool, reference).await?;
    let label = format!("{}/{}", account.name, list.mailchimp_list_id);
    let run = match runs::create(pool, list.id, RunRequest { mode }).await {
        Ok(run) => run,
        Err(RunError::AlreadyActive { run_id, .. }) => anyhow::bail!(
            "cannot start a run of list {label}: run {run_id} is already active for it; \
             watch it (importer-admin runs watch {run_id}) or cancel it (importer-admin runs cancel {run_id})"
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot start a run of list {label}")),
    };
    let row = progress::get(pool, run.id)
        .await?
        .with_context(|| format!("run {} vanished", run.id))?;
    let window = match row.since {
        Some(since) => format!("changes since {}", output::time(since)),
        None => "every member".to_owned(),
    };
    let text = format!(
        "started {} run {} of {label} ({window}, until {}); follow it with: importer-admin runs watch {}",
        row.mode,
        row.run_id,
        output::time(row.until),
        row.run_id
    );
    output::done(out, format, &text, &row)
}

/// What killed a run's dead jobs: one entry per distinct last error.
#[derive(Debug, Serialize)]
struct DeadError {
    error: String,
    jobs: usize,
}

/// `runs show` as JSON.
#[derive(Debug, Serialize)]
struct RunDetail {
    #[serde(flatten)]
    run: RunProgress,
    windows_done: Option<i32>,
    windows_total: Option<i32>,
    eta_secs: Option<f64>,
    dead_errors: Vec<DeadError>,
}

async fn show<W: Write>(pool: &PgPool, id: i64, format: Format, out: &mut W) -> anyhow::Result<()> {
    let run = progress::get(pool, id)
        .await?
        .with_context(|| format!("no run {id}; see importer-admin runs list"))?;
    let dead = queue::list_dead(
        pool,
        &DeadFilter {
            run_id: Some(id),
            limit: Some(10_000),
            ..DeadFilter::default()
        },
    )
    .await?;
    let mut by_error: BTreeMap<String, usize> = BTreeMap::new();
    for job in &dead {
        let error = job
            .last_error
            .clone()
            .unwrap_or_else(|| "(none)".to_owned());
        *by_error.entry(error).or_default() += 1;
    }
    let detail = RunDetail {
        windows_done: run.windows().map(|w| w.0),
        windows_total: run.windows().map(|w| w.1),
        eta_secs: run.eta_secs(),
        dead_errors: by_error
            .into_iter()
            .map(|(error, jobs)| DeadError { error, jobs })
            .collect(),
        run,
    };
    if format == Format::Json {
        return output::write_json(out, &detail);
    }
    let r = &detail.run;
    output::write_table(
        out,
        &output::details(vec![
            ("run", r.run_id.to_string()),
            ("list", format!("{} (id {})", r.list_label(), r.list_id)),
            ("status", r.status.to_string()),
            ("mode", r.mode.to_string()),
            ("trigger", format!("{:?}", r.trigger).to_lowercase()),
            (
                "window",
                format!(
                    "[{}, {})",
                    r.since.map_or_else(|| "beginning".to_owned(), output::time),
                    output::time(r.until)
                ),
            ),
            ("members in window", output::opt(r.members_total)),
            ("windows done", views::windows(r)),
            (
                "percent",
                r.percent
                    .map_or_else(|| "-".to_owned(), |p| format!("{p:.1}%")),
            ),
            (
                "jobs",
                format!(
                    "{} total: {} done, {} pending, {} dead, {} cancelled",
                    r.jobs_total, r.jobs_done, r.jobs_pending, r.jobs_dead, r.jobs_cancelled
                ),
            ),
            ("records imported", r.records_imported.to_string()),
            ("records rejected", r.records_rejected.to_string()),
            ("records unchanged", r.records_unchanged.to_string()),
            ("records/s", format!("{:.1}", r.records_per_second)),
            (
                "eta",
                detail.eta_secs.map_or_else(|| "-".to_owned(), output::age),
            ),
            ("created", output::time(r.created_at)),
            ("started", output::opt_time(r.started_at)),
            ("finished", output::opt_time(r.finished_at)),
            ("elapsed", output::age(r.elapsed_secs)),
            ("error", output::opt(r.error.as_deref())),
        ]),
    )?;
    if !detail.dead_errors.is_empty() {
        let mut t = output::table(["dead jobs", "last error"]);
        for e in &detail.dead_errors {
            t.add_row(vec![e.jobs.to_string(), e.error.clone()]);
        }
        output::write_table(out, &t)?;
        writeln!(
            out,
            "inspect: importer-admin dead list --run {id}; retry: importer-admin dead requeue --run {id}"
        )?;
    }
    Ok(())
}
