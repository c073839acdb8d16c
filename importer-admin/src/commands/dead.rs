//! `dead list | show | requeue | purge`: the dead-letter store, as operators handle it.

use std::io::Write;

use anyhow::Context;
use chrono::{DateTime, Utc};
use importer_core::queue::{self, DeadFilter, DeadJob, DeadReason, JobKind};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::cli::{DeadCommand, RequeueTarget};
use crate::output::{self, Format};

/// A dead job as commands print it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadView {
    /// The job id (kept on requeue).
    pub id: i64,
    /// What the job did.
    pub kind: JobKind,
    /// Its arguments.
    pub args: serde_json::Value,
    /// Its account.
    pub account_id: i64,
    /// Its run.
    pub run_id: Option<i64>,
    /// Claims it had.
    pub attempts: i32,
    /// Claims it was allowed.
    pub max_attempts: i32,
    /// Why it died.
    pub reason: DeadReason,
    /// The error that killed it.
    pub last_error: Option<String>,
    /// Every error it saw: `[{attempt, at, error, kind}]`.
    pub errors: serde_json::Value,
    /// When it was first enqueued.
    pub created_at: DateTime<Utc>,
    /// When it died.
    pub died_at: DateTime<Utc>,
}

impl From<DeadJob> for DeadView {
    fn from(d: DeadJob) -> Self {
        DeadView {
            id: d.id,
            kind: d.kind,
            args: d.args,
            account_id: d.account_id,
            run_id: d.run_id,
            attempts: d.attempts,
            max_attempts: d.max_attempts,
            reason: d.reason,
            last_error: d.last_error,
            errors: d.errors,
            created_at: d.created_at,
            died_at: d.died_at,
        }
    }
}

/// One entry of a job's error history, as the queue records it (fields kept loose: the
/// history is for people, and an odd entry must not hide the others).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ErrorEntry {
    attempt: serde_json::Value,
    at: serde_json::Value,
    error: serde_json::Value,
    kind: serde_json::Value,
}

/// A JSON value as table text: strings without quotes, null as `-`.
fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn reason(r: DeadReason) -> &'static str {
    match r {
        DeadReason::Exhausted => "exhausted",
        DeadReason::Permanent => "permanent",
        DeadReason::LeaseExpired => "lease_expired",
    }
}

/// Runs a `dead` subcommand.
pub async fn run<W: Write>(
    pool: &PgPool,
    command: DeadCommand,
    format: Format,
    out: &mut W,
) -> anyhow::Result<()> {
    match command {
        DeadCommand::List {
            run,
            error_contains,
            limit,
        } => {
            let filter = DeadFilter {
                run_id: run,
                error_contains,
                limit: Some(limit.max(1)),
                ..DeadFilter::default()
            };
            let views: Vec<DeadView> = queue::list_dead(pool, &filter)
                .await?
                .into_iter()
                .map(DeadView::from)
                .collect();
            output::emit_list(out, format, &views, "no dead jobs match", |views| {
                let mut t = output::table([
                    "id",
                    "kind",
                    "run",
                    "account",
                    "attempts",
                    "reason",
                    "died",
                    "last error",
                ]);
                for d in views {
                    t.add_row(vec![
                        d.id.to_string(),
                        d.kind.to_string(),
                        output::opt(d.run_id),
                        d.account_id.to_string(),
                        format!("{}/{}", d.attempts, d.max_attempts),
                        reason(d.reason).to_owned(),
                        output::time(d.died_at),
                        output::truncate(d.last_error.as_deref().unwrap_or("-"), 80),
                    ]);
                }
                t
            })
        }
        DeadCommand::Show { id } => show(pool, id, format, out).await,
        DeadCommand::Requeue(target) => requeue(pool, target, format, out).await,
        DeadCommand::Purge { older_than } => {
            let age =
                chrono::Duration::from_std(older_than).context("--older-than is too large")?;
            let before = Utc::now() - age;
            let purged = queue::purge_dead(pool, before).await?;
            let text = format!(
                "purged {} that died before {}",
                output::count(purged, "dead job", "dead jobs"),
                output::time(before)
            );
            output::done(
                out,
                format,
                &text,
                &serde_json::json!({"purged": purged, "died_before": before}),
            )
        }
    }
}

async fn show<W: Write>(pool: &PgPool, id: i64, format: Format, out: &mut W) -> anyhow::Result<()> {
    let job = queue::get_dead(pool, id)
        .await?
        .with_context(|| format!("no dead job {id}; see importer-admin dead list"))?;
    let view = DeadView::from(job);
    if format == Format::Json {
        return output::write_json(out, &view);
    }
    output::write_table(
        out,
        &output::details(vec![
            ("id", view.id.to_string()),
            ("kind", view.kind.to_string()),
            ("args", view.args.to_string()),
            ("run", output::opt(view.run_id)),
            ("account", view.account_id.to_string()),
            (
                "attempts",
                format!("{}/{}", view.attempts, view.max_attempts),
            ),
            ("reason", reason(view.reason).to_owned()),
            ("last error", output::opt(view.last_error.as_deref())),
            ("enqueued", output::time(view.created_at)),
            ("died", output::time(view.died_at)),
        ]),
    )?;
    let history: Vec<ErrorEntry> = match &view.errors {
        serde_json::Value::Array(entries) => entries
            .iter()
            .map(|e| serde_json::from_value(e.clone()).unwrap_or_default())
            .collect(),
        _ => Vec::new(),
    };
    let mut t = output::table(["attempt", "at", "kind", "error"]);
    for e in &history {
        t.add_row(vec![
            text(&e.attempt),
            text(&e.at),
            text(&e.kind),
            text(&e.error),
        ]);
    }
    writeln!(
        out,
        "error history ({}):",
        output::count(history.len() as u64, "entry", "entries")
    )?;
    output::write_table(out, &t)
}

async fn requeue<W: Write>(
    pool: &PgPool,
    target: RequeueTarget,
    format: Format,
    out: &mut W,
) -> anyhow::Result<()> {
    let (moved, what) = match (target.job, target.run, target.error_contains) {
        (Some(job), _, _) => (
            queue::requeue_job(pool, job)
                .await
                .with_context(|| format!("cannot requeue dead job {job}"))?,
            format!("dead job {job}"),
        ),
        (_, Some(run), _) => (
            queue::requeue_run(pool, run)
                .await
                .with_context(|| format!("cannot requeue the dead jobs of run {run}"))?,
            format!("dead jobs of run {run}"),
        ),
        (_, _, Some(text)) => (
            queue::requeue_matching(pool, &text)
                .await
                .with_context(|| {
                    format!("cannot requeue dead jobs whose error contains {text:?}")
                })?,
            format!("dead jobs whose last error contains {text:?}"),
        ),
        // clap's group makes exactly one selector present.
        (None, None, None) => anyhow::bail!("dead requeue needs --job, --run or --error-contains"),
    };
    let text = format!(
        "requeued {} with fresh attempts ({what})",
        output::count(moved, "job", "jobs")
    );
    output::done(out, format, &text, &serde_json::json!({"requeued": moved}))
}
