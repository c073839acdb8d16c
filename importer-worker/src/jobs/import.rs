//! `import_window`: read one page of the run's window from Mailchimp (losslessly, see
//! `importer_core::window`), give the Mailchimp slot back, map, and post to the destination.
//!
//! The slot is held only while Mailchimp requests are in flight: posting to the destination
//! happens after `release_slot`, so a slow destination does not cut Mailchimp throughput.

use std::collections::HashSet;
use std::time::Instant;

use importer_core::mailchimp::{MailchimpAccount, MailchimpError, Member, MembersQuery};
use importer_core::mapping::{self, Record};
use importer_core::queue::{self, ClaimedJob, Completion, Handoff, RejectedRecord};
use importer_core::window::{self, Page, PageArgs, PageSource};
use tokio::sync::mpsc;

use super::{credentials, JobContext, JobError};

/// Reads pages of one window from Mailchimp, recording request metrics.
struct MailchimpPages<'a> {
    account: &'a MailchimpAccount,
    args: &'a PageArgs,
}

impl PageSource for MailchimpPages<'_> {
    type Item = Member;
    type Error = MailchimpError;

    async fn fetch(&self, offset: u64, count: u64) -> Result<Page<Member>, MailchimpError> {
        let query = MembersQuery {
            list_id: self.args.list_id.clone(),
            count: count as u32,
            offset,
            since_last_changed: self.args.window.since_param(),
            before_last_changed: Some(self.args.window.before_param()),
            sort: None,
            status: None,
            include_last_changed: false,
        };
        let started = Instant::now();
        let result = self.account.members(&query).await;
        let status = match &result {
            Ok(_) => "200".to_owned(),
            Err(e) => status_label(e.status(), e.kind()),
        };
        metrics::histogram!("importer_mailchimp_request_duration_seconds", "status" => status)
            .record(started.elapsed().as_secs_f64());
        let page = result?;
        Ok(Page {
            items: page.members,
            total: page.total_items,
        })
    }
}

/// Imports the page the job names.
pub async fn run(ctx: &JobContext, job: &ClaimedJob) -> Result<Completion, JobError> {
    let args: PageArgs = serde_json::from_value(job.args.clone())
        .map_err(|e| JobError::Permanent(format!("malformed import_window args: {e}")))?;
    let creds = credentials::load(ctx, job.account_id).await?;
    let read = window::read_page(
        &MailchimpPages {
            account: &creds.mailchimp,
            args: &args,
        },
        &args,
    )
    .await?;
    if read.removed > 0 {
        tracing::info!(
            removed = read.removed,
            requests = read.requests,
            "members left the window mid-run; gap re-read"
        );
    }
    // Mailchimp is done for this job: pass the slot on before the destination round trip.
    give_back_slot(ctx, job).await?;

    let (records, rejections) = mapping::map_page(read.items);
    let records = if read.requests > 1 {
        dedupe(records)
    } else {
        records
    };
    let started = Instant::now();
    let posted = ctx
        .destination
        .post_records(&creds.destination_url, &creds.destination_key, &records)
        .await;
    let status = match &posted {
        Ok(_) => "200".to_owned(),
        Err(e) => status_label(e.status(), e.kind()),
    };
    metrics::histogram!("importer_destination_request_duration_seconds", "status" => status)
        .record(started.elapsed().as_secs_f64());
    posted?;
    Ok(Completion {
        records_imported: records.len() as i64,
        rejected: rejections
            .into_iter()
            .map(|r| RejectedRecord {
                reason: r.reason.to_string(),
                member_id: r.member_id,
                email: r.email,
                member: r.member,
            })
            .collect(),
        children: Vec::new(),
        members_total: None,
    })
}

/// Hands the job's Mailchimp slot to the next waiting job of the account (run by this worker) when
/// this process has room for it, else releases it for any claimer.
async fn give_back_slot(ctx: &JobContext, job: &ClaimedJob) -> Result<(), JobError> {
    let permit = match ctx.stopping.is_cancelled() {
        true => None,
        false => ctx.capacity.clone().try_acquire_owned().ok(),
    };
    let Some(permit) = permit else {
        if !queue::release_slot(&ctx.pool, job.fence()).await? {
            return Err(JobError::Fenced);
        }
        ctx.slot_freed.notify_one();
        return Ok(());
    };
    match queue::handoff_slot(&ctx.pool, job.fence(), &ctx.worker_id, ctx.lease).await? {
        Handoff::Fenced => Err(JobError::Fenced),
        Handoff::Released => {
            ctx.slot_freed.notify_one();
            Ok(())
        }
        Handoff::Next(next) => {
            if let Err(mpsc::error::SendError((next, _))) = ctx.handoff.send((next, permit)) {
                // The claim loop is gone (shutdown): give the job straight back.
                queue::release(&ctx.pool, &[next.fence()]).await?;
            }
            Ok(())
        }
    }
}

/// The `status` label of a request metric: the HTTP status when the server answered, else the
/// error class (`timeout`, `connect`, …).
fn status_label(status: Option<u16>, kind: &'static str) -> String {
    status.map_or_else(|| kind.to_owned(), |s| s.to_string())
}

/// Drops the records a gap re-read fetched twice (the destination would upsert them anyway;
/// this only saves the bytes).
fn dedupe(records: Vec<Record>) -> Vec<Record> {
    let mut seen = HashSet::with_capacity(records.len());
    records
        .into_iter()
        .filter(|r| seen.insert(r.id.clone()))
        .collect()
}
