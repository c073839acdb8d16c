//! `queue`: depth per account and state (`importer.queue_depth`), the oldest waiting job, and
//! the leases each worker holds (`importer.leases`).

use std::io::Write;

use importer_core::queue::{self, JobState, LeaseRow, QueueDepthRow};
use serde::Serialize;
use sqlx::PgPool;

use crate::output::{self, Format};

/// `queue` as JSON.
#[derive(Debug, Serialize)]
struct QueueReport {
    depth: Vec<QueueDepthRow>,
    oldest_waiting_age_secs: Option<f64>,
    leases: Vec<LeaseRow>,
}

fn state(s: JobState) -> &'static str {
    match s {
        JobState::Waiting => "waiting",
        JobState::Scheduled => "scheduled",
        JobState::Running => "running",
        JobState::Expired => "expired",
    }
}

/// Runs `queue`.
pub async fn run<W: Write>(pool: &PgPool, format: Format, out: &mut W) -> anyhow::Result<()> {
    let depth = queue::queue_depth(pool).await?;
    let leases = queue::leases(pool).await?;
    let oldest_waiting_age_secs = depth
        .iter()
        .filter(|d| d.state == JobState::Waiting)
        .map(|d| d.oldest_age_secs)
        .reduce(f64::max);
    let report = QueueReport {
        depth,
        oldest_waiting_age_secs,
        leases,
    };
    if format == Format::Json {
        return output::write_json(out, &report);
    }
    if report.depth.is_empty() {
        writeln!(out, "queue is empty")?;
    } else {
        let mut t = output::table([
            "account",
            "state",
            "jobs",
            "slots",
            "oldest",
            "next run after",
        ]);
        for d in &report.depth {
            let paused = if d.paused { " (paused)" } else { "" };
            t.add_row(vec![
                format!("{}{paused}", d.account),
                state(d.state).to_owned(),
                d.jobs.to_string(),
                d.slots.to_string(),
                output::age(d.oldest_age_secs),
                output::time(d.next_run_after),
            ]);
        }
        output::write_table(out, &t)?;
        let total: i64 = report.depth.iter().map(|d| d.jobs).sum();
        writeln!(
            out,
            "{}; oldest waiting job: {}",
            output::count(total.unsigned_abs(), "job", "jobs"),
            report
                .oldest_waiting_age_secs
                .map_or_else(|| "none waiting".to_owned(), output::age)
        )?;
    }
    if report.leases.is_empty() {
        writeln!(out, "no worker holds a lease")?;
        return Ok(());
    }
    let mut t = output::table([
        "worker",
        "jobs",
        "live",
        "slots",
        "expired",
        "accounts",
        "next expiry",
    ]);
    for l in &report.leases {
        t.add_row(vec![
            l.worker.clone(),
            l.jobs.to_string(),
            l.live.to_string(),
            l.slots.to_string(),
            l.expired.to_string(),
            l.accounts.to_string(),
            output::time(l.next_expiry),
        ]);
    }
    output::write_table(out, &t)
}
