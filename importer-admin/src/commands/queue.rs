//! `queue`: depth per account and state (`importer.queue_depth`), the oldest waiting job, and
//! the leases each worker holds (`importer.leases`).

use std::io::Write;

use chrono::{DateTime, Utc};
use importer_core::queue::{self, JobState, LeaseRow, QueueDepthRow};
use serde::Serialize;
use sqlx::PgPool;

use crate::output::{self, Format};

/// Jobs of one account in one state.
#[derive(Debug, Serialize)]
pub struct DepthView {
    /// The account.
    pub account_id: i64,
    /// Its name.
    pub account: String,
    /// Whether it is paused.
    pub paused: bool,
    /// waiting, scheduled, running or expired.
    pub state: JobState,
    /// Jobs in this state.
    pub jobs: i64,
    /// Of which hold a live Mailchimp slot.
    pub slots: i64,
    /// Age of the oldest of them, in seconds.
    pub oldest_age_secs: f64,
    /// Earliest run_after among them.
    pub next_run_after: DateTime<Utc>,
}

impl From<QueueDepthRow> for DepthView {
    fn from(r: QueueDepthRow) -> Self {
        DepthView {
            account_id: r.account_id,
            account: r.account,
            paused: r.paused,
            state: r.state,
            jobs: r.jobs,
            slots: r.slots,
            oldest_age_secs: r.oldest_age_secs,
            next_run_after: r.next_run_after,
        }
    }
}

/// The jobs one worker holds.
#[derive(Debug, Serialize)]
pub struct LeaseView {
    /// Worker id.
    pub worker: String,
    /// Jobs held, live or expired.
    pub jobs: i64,
    /// On a live lease.
    pub live: i64,
    /// Holding a Mailchimp slot.
    pub slots: i64,
    /// Expired (a dead worker shows only these).
    pub expired: i64,
    /// Distinct accounts.
    pub accounts: i64,
    /// Earliest lease expiry.
    pub next_expiry: DateTime<Utc>,
}

impl From<LeaseRow> for LeaseView {
    fn from(r: LeaseRow) -> Self {
        LeaseView {
            worker: r.worker,
            jobs: r.jobs,
            live: r.live,
            slots: r.slots,
            expired: r.expired,
            accounts: r.accounts,
            next_expiry: r.next_expiry,
        }
    }
}

/// `queue` as JSON.
#[derive(Debug, Serialize)]
struct QueueReport {
    depth: Vec<DepthView>,
    oldest_waiting_age_secs: Option<f64>,
    leases: Vec<LeaseView>,
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
    let depth: Vec<DepthView> = queue::queue_depth(pool)
        .await?
        .into_iter()
        .map(DepthView::from)
        .collect();
    let leases: Vec<LeaseView> = queue::leases(pool)
        .await?
        .into_iter()
        .map(LeaseView::from)
        .collect();
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
