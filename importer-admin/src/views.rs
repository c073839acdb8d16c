//! What several commands print of lists and runs: [`ListView`] and its table (`lists list`,
//! `accounts show`), the runs table (`runs list`, `runs watch`, `tick`) and the progress
//! counters of a run (that table, `runs show` and the lines and bars of `watch`).

use chrono::{DateTime, Utc};
use comfy_table::Table;
use importer_core::lists::List;
use serde::Serialize;

use crate::output;
use crate::progress::RunProgress;

/// A list as commands print it.
#[derive(Debug, Clone, Serialize)]
pub struct ListView {
    /// The list id.
    pub id: i64,
    /// Its account.
    pub account_id: i64,
    /// The account's name.
    pub account: String,
    /// Mailchimp audience id.
    pub mailchimp_list_id: String,
    /// A name for people.
    pub name: Option<String>,
    /// Schedule as people write it (`1h`).
    pub schedule: String,
    /// Schedule in seconds.
    pub schedule_secs: u64,
    /// Whether scheduled runs are created.
    pub enabled: bool,
    /// The cursor; none = never synced (next run is full).
    pub synced_until: Option<DateTime<Utc>>,
    /// The list's own sync lag in seconds; none = the deployment's.
    pub sync_lag_secs: Option<f64>,
    /// Posts every member read, even those the ledger shows unchanged.
    pub always_post: bool,
    /// How often the tick audits it, in seconds; none = only on request.
    pub audit_every_secs: Option<u64>,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

impl ListView {
    /// The view of `list`, whose account is named `account`.
    pub fn new(list: &List, account: &str) -> Self {
        ListView {
            id: list.id,
            account_id: list.account_id,
            account: account.to_owned(),
            mailchimp_list_id: list.mailchimp_list_id.clone(),
            name: list.name.clone(),
            schedule: output::interval(list.schedule),
            schedule_secs: list.schedule.as_secs(),
            enabled: list.enabled,
            synced_until: list.synced_until,
            sync_lag_secs: list.sync_lag.map(|d| d.as_secs_f64()),
            always_post: list.always_post,
            audit_every_secs: list.audit_every.map(|d| d.as_secs()),
            created_at: list.created_at,
        }
    }

    /// `account/mailchimp_list_id`.
    pub fn label(&self) -> String {
        format!("{}/{}", self.account, self.mailchimp_list_id)
    }
}

/// The table of `lists list` and `accounts show`.
pub fn list_table(views: &[ListView]) -> Table {
    let mut t = output::table(["id", "list", "name", "schedule", "enabled", "synced until"]);
    for l in views {
        t.add_row(vec![
            l.id.to_string(),
            l.label(),
            output::opt(l.name.as_deref()),
            l.schedule.clone(),
            if l.enabled { "yes" } else { "no" }.to_owned(),
            l.synced_until
                .map_or_else(|| "never (next run full)".to_owned(), output::time),
        ]);
    }
    t
}

/// The table of `runs list` (and of `runs watch` and `tick` at the end).
pub fn run_table(rows: &[RunProgress]) -> Table {
    let mut t = output::table([
        "run", "list", "mode", "status", "trigger", "windows", "records", "dead", "rec/s",
        "created", "elapsed",
    ]);
    for r in rows {
        t.add_row(vec![
            r.run_id.to_string(),
            r.list_label(),
            r.mode.to_string(),
            r.status.to_string(),
            format!("{:?}", r.trigger).to_lowercase(),
            windows(r),
            records(r),
            r.jobs_dead.to_string(),
            format!("{:.0}", r.records_per_second),
            output::time(r.created_at),
            output::age(r.elapsed_secs),
        ]);
    }
    t
}

/// `3/7`, or `-` before planning.
pub fn windows(r: &RunProgress) -> String {
    r.windows()
        .map_or_else(|| "-".to_owned(), |(done, total)| format!("{done}/{total}"))
}

/// `3000/6543`, or the count alone before planning.
pub fn records(r: &RunProgress) -> String {
    match r.members_total {
        Some(total) => format!("{}/{total}", r.records_imported),
        None => r.records_imported.to_string(),
    }
}
