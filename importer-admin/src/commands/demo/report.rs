//! The demo's verdict: for every list, what Mailchimp holds now against what the destination
//! received (missing, stale), with the runs' throughput; per account, what the destination saw.

use std::io::Write;
use std::time::Duration;

use anyhow::bail;
use importer_sim::Sim;
use serde::Serialize;

use crate::output::{self, Format};
use crate::progress::RunProgress;

/// At most this many example ids of missing or stale records in the report.
const EXAMPLES: usize = 10;

/// A demo list and where its records go.
#[derive(Debug, Clone)]
pub struct DemoList {
    /// The importer account's name.
    pub account: String,
    /// The account's destination key at the simulator (never printed).
    pub destination_key: String,
    /// The importer's list id.
    pub list_id: i64,
    /// The Mailchimp audience id.
    pub mailchimp_list_id: String,
}

/// One list's verification.
#[derive(Debug, Serialize)]
pub struct ListVerification {
    /// Account name.
    pub account: String,
    /// Mailchimp audience id.
    pub list: String,
    /// Records Mailchimp says the destination should hold.
    pub expected: usize,
    /// Of which the destination holds (with any values).
    pub delivered: usize,
    /// Expected but absent.
    pub missing: usize,
    /// Present with outdated values.
    pub stale: usize,
    /// A few missing ids.
    pub missing_examples: Vec<String>,
    /// A few stale ids.
    pub stale_examples: Vec<String>,
    /// Records the full run imported.
    pub full_records: i64,
    /// Its throughput.
    pub full_records_per_second: f64,
    /// Records the incremental run imported.
    pub incremental_records: i64,
    /// Its throughput.
    pub incremental_records_per_second: f64,
}

/// What the destination saw for one account.
#[derive(Debug, Serialize)]
pub struct DestinationSummary {
    /// Account name.
    pub account: String,
    /// POST /record requests.
    pub requests: u64,
    /// Records received.
    pub records_received: u64,
    /// Records stored (one per id).
    pub distinct_ids: usize,
    /// Records received for an id already stored (updates of modified contacts included).
    pub duplicates_received: u64,
}

/// The demo's outcome.
#[derive(Debug, Serialize)]
pub struct DemoReport {
    /// Nothing missing, nothing stale.
    pub ok: bool,
    /// The demo database (dropped at the end unless kept).
    pub database: String,
    /// Wall time of the demo, database creation excluded.
    pub elapsed_secs: f64,
    /// Per list.
    pub lists: Vec<ListVerification>,
    /// Per account.
    pub destinations: Vec<DestinationSummary>,
    /// The full runs as they finished.
    pub full_runs: Vec<RunProgress>,
    /// The incremental runs as they finished.
    pub incremental_runs: Vec<RunProgress>,
}

impl DemoReport {
    /// Compares the destination with Mailchimp for every list.
    pub fn build(
        database: &str,
        sim: &Sim,
        demo_lists: &[DemoList],
        full: &[RunProgress],
        incremental: &[RunProgress],
        elapsed: Duration,
    ) -> Self {
        let mailchimp = sim.mailchimp();
        let destination = sim.destination();
        let run_of = |runs: &[RunProgress], list_id: i64| {
            runs.iter()
                .find(|r| r.list_id == list_id)
                .map_or((0, 0.0), |r| (r.records_imported, r.records_per_second))
        };
        let lists: Vec<ListVerification> = demo_lists
            .iter()
            .map(|l| {
                let expected = mailchimp.expected_records(&l.mailchimp_list_id);
                let v = destination.verify(&l.destination_key, &expected);
                let (full_records, full_rate) = run_of(full, l.list_id);
                let (incr_records, incr_rate) = run_of(incremental, l.list_id);
                ListVerification {
                    account: l.account.clone(),
                    list: l.mailchimp_list_id.clone(),
                    expected: v.expected,
                    delivered: v.delivered,
                    missing: v.missing.len(),
                    stale: v.stale.len(),
                    missing_examples: v.missing.into_iter().take(EXAMPLES).collect(),
                    stale_examples: v.stale.into_iter().take(EXAMPLES).collect(),
                    full_records,
                    full_records_per_second: full_rate,
                    incremental_records: incr_records,
                    incremental_records_per_second: incr_rate,
                }
            })
            .collect();
        let mut destinations: Vec<DestinationSummary> = Vec::new();
        for l in demo_lists {
            if destinations.iter().any(|d| d.account == l.account) {
                continue;
            }
            let stats = destination.stats(&l.destination_key);
            destinations.push(DestinationSummary {
                account: l.account.clone(),
                requests: stats.requests,
                records_received: stats.records_received,
                distinct_ids: stats.distinct_ids,
                duplicates_received: stats.duplicates_received,
            });
        }
        DemoReport {
            ok: lists.iter().all(|l| l.missing == 0 && l.stale == 0),
            database: database.to_owned(),
            elapsed_secs: elapsed.as_secs_f64(),
            lists,
            destinations,
            full_runs: full.to_vec(),
            incremental_runs: incremental.to_vec(),
        }
    }

    /// Prints the verification tables (or the whole report as JSON).
    pub fn write<W: Write>(&self, out: &mut W, format: Format) -> anyhow::Result<()> {
        if format == Format::Json {
            return output::write_json(out, self);
        }
        writeln!(out, "\n== verification: Mailchimp now vs. the destination")?;
        let mut t = output::table([
            "account",
            "list",
            "expected",
            "delivered",
            "missing",
            "stale",
            "full run rec/s",
            "incremental records",
        ]);
        for l in &self.lists {
            t.add_row(vec![
                l.account.clone(),
                l.list.clone(),
                l.expected.to_string(),
                l.delivered.to_string(),
                l.missing.to_string(),
                l.stale.to_string(),
                format!("{:.0}", l.full_records_per_second),
                l.incremental_records.to_string(),
            ]);
        }
        output::write_table(out, &t)?;
        let mut d = output::table([
            "account",
            "requests",
            "records received",
            "distinct ids",
            "duplicates received",
        ]);
        for s in &self.destinations {
            d.add_row(vec![
                s.account.clone(),
                s.requests.to_string(),
                s.records_received.to_string(),
                s.distinct_ids.to_string(),
                s.duplicates_received.to_string(),
            ]);
        }
        output::write_table(out, &d)?;
        writeln!(
            out,
            "duplicates received = records sent again for an id already stored: the updates of \
             modified contacts, plus any retried batch (harmless: the destination upserts by id)"
        )?;
        let expected: usize = self.lists.iter().map(|l| l.expected).sum();
        let missing: usize = self.lists.iter().map(|l| l.missing).sum();
        let stale: usize = self.lists.iter().map(|l| l.stale).sum();
        let verdict = if self.ok { "OK" } else { "FAILED" };
        writeln!(
            out,
            "{verdict}: {expected} records expected, {missing} missing, {stale} stale ({} total)",
            output::age(self.elapsed_secs)
        )?;
        Ok(())
    }

    /// Fails when a record is missing or stale anywhere.
    pub fn require_complete(&self) -> anyhow::Result<()> {
        if self.ok {
            return Ok(());
        }
        let bad: Vec<String> = self
            .lists
            .iter()
            .filter(|l| l.missing > 0 || l.stale > 0)
            .map(|l| {
                format!(
                    "{}/{}: {} missing, {} stale",
                    l.account, l.list, l.missing, l.stale
                )
            })
            .collect();
        bail!("verification failed: {}", bad.join("; "))
    }
}
