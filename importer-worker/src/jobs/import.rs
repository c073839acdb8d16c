//! `import_window`: read one `last_changed` range of the run's window from Mailchimp, page after
//! page, losslessly (`importer_core::range_reader`), map the members and post them to the
//! destination.
//!
//! Pages are pipelined: while page k is posted and checkpointed, page k+1 is already being read,
//! so the job's Mailchimp slot is busy with back-to-back requests and at most two pages are in
//! memory. After each delivered page the job checkpoints (its reader's position, its records and
//! rejections, counted on the run): a retry resumes there. The slot is given back before the last
//! page is posted, so the destination's latency never holds Mailchimp capacity idle at the end.

use importer_core::mailchimp::{
    MailchimpAccount, MailchimpError, Member, MembersQuery, PageMember, SinceRule,
};
use importer_core::mapping::{self, Record};
use importer_core::queue::{
    self, Checkpoint, ClaimedJob, Completion, Cost, Handoff, RejectedRecord,
};
use importer_core::range_reader::{member_key, Keyed, RangeReader, RangeSource, SourcePage};
use importer_core::rejection::Rejection;
use importer_core::window::{Placement, Range, RangeArgs};
use tokio::sync::mpsc;

use super::credentials::{self, Credentials};
use super::{status_label, timed, JobContext, JobError};

/// One position of a range read: what Mailchimp sent there and the key the reader anchors on.
struct RangeMember {
    entry: PageMember,
    key: u64,
}

impl Keyed for RangeMember {
    fn key(&self) -> u64 {
        self.key
    }
}

impl RangeMember {
    fn new(entry: PageMember) -> RangeMember {
        let key = match &entry {
            Ok(m) => member_key(m.id.as_deref().unwrap_or_default().as_bytes()),
            Err(r) => match &r.member_id {
                Some(id) => member_key(id.as_bytes()),
                None => member_key(r.excerpt.as_bytes()),
            },
        };
        RangeMember { entry, key }
    }
}

/// Reads pages of one range in insertion order, with the `since` form fixed for the job.
struct MailchimpRange<'a> {
    account: &'a MailchimpAccount,
    list_id: &'a str,
    range: Range,
    rule: SinceRule,
}

impl RangeSource for MailchimpRange<'_> {
    type Item = RangeMember;
    type Error = MailchimpError;

    async fn fetch(
        &self,
        offset: u64,
        count: u64,
    ) -> Result<SourcePage<RangeMember>, MailchimpError> {
        let (since, before) = self.range.query_bounds(self.rule);
        let query = MembersQuery {
            count: u32::try_from(count).unwrap_or(1000),
            offset,
            since_last_changed: since,
            before_last_changed: Some(before),
            ..MembersQuery::new(self.list_id)
        };
        let page = timed(self.account.members(&query)).await?;
        Ok(SourcePage {
            items: page.members.into_iter().map(RangeMember::new).collect(),
            total: page.total_items,
        })
    }
}

/// One read page, mapped, waiting to be posted and checkpointed.
#[derive(Default)]
struct Batch {
    records: Vec<Record>,
    rejected: Vec<RejectedRecord>,
    cost: Cost,
    /// The job's arguments with the reader's position after this page.
    args: serde_json::Value,
}

/// Imports the range the job names.
pub async fn run(ctx: &JobContext, job: &ClaimedJob) -> Result<Completion, JobError> {
    let args: RangeArgs = serde_json::from_value(job.args.clone())
        .map_err(|e| JobError::Permanent(format!("malformed import_window args: {e}")))?;
    let creds = credentials::load(ctx, job.account_id).await?;
    let source = MailchimpRange {
        account: &creds.mailchimp,
        list_id: &args.list_id,
        range: args.range,
        rule: creds.mailchimp.since_rule(),
    };
    let mut reader = RangeReader::resume(args.progress.as_ref());
    let mut pending: Option<Batch> = None;
    loop {
        let (read, delivered) = tokio::join!(
            reader.step(&source),
            deliver(ctx, job, &creds, pending.take())
        );
        delivered?;
        let step = read?;
        let mut batch = classify(&creds.mailchimp, &args.range, step.fresh);
        batch.cost.members_read += i64::try_from(step.members_read).unwrap_or(i64::MAX);
        batch.cost.requests += i64::try_from(step.requests).unwrap_or(i64::MAX);
        batch.cost.window_events += i32::try_from(step.events).unwrap_or(i32::MAX);
        if batch.cost.window_events > 0 {
            metrics::counter!("importer_window_events_total", "kind" => "range_grew")
                .increment(step.events.into());
            tracing::warn!(
                events = step.events,
                "the range grew while it was read (Mailchimp's clock or visibility is off by more than the sync lag); reading it again"
            );
        }
        metrics::counter!("importer_mailchimp_members_read_total").increment(step.members_read);
        if reader.is_done() {
            give_back_slot(ctx, job).await?;
            // Counted in the metrics when the completion is recorded (`jobs::settle`).
            post(ctx, &creds, &batch.records).await?;
            return Ok(Completion {
                records_imported: batch.records.len() as i64,
                rejected: batch.rejected,
                covered: vec![args.range.interval()],
                cost: batch.cost,
                ..Completion::default()
            });
        }
        let progress = RangeArgs {
            progress: Some(reader.progress()),
            ..args.clone()
        };
        batch.args = serde_json::to_value(progress)
            .map_err(|e| JobError::Permanent(format!("encoding range progress: {e}")))?;
        pending = Some(batch);
    }
}

/// Maps the members read for the first time: a member of the second before the range (what an
/// inclusive `since` adds) is skipped and teaches the rule; a member stamped at or after the
/// range's end is a window event (delivered all the same: it is current data).
fn classify(account: &MailchimpAccount, range: &Range, fresh: Vec<RangeMember>) -> Batch {
    let mut batch = Batch::default();
    let mut outside = 0u32;
    for item in fresh {
        let member: Member = match item.entry {
            Ok(m) => m,
            Err(rejection) => {
                batch.rejected.push(rejected(*rejection));
                continue;
            }
        };
        match member.last_changed_secs().map(|s| range.place(s)) {
            Some(Placement::Before) => {
                account.learn_since_rule(SinceRule::Inclusive);
                continue;
            }
            Some(Placement::After) => outside += 1,
            Some(Placement::Inside) | None => {}
        }
        match mapping::map_member(member) {
            Ok(record) => batch.records.push(record),
            Err(rejection) => batch.rejected.push(rejected(*rejection)),
        }
    }
    if outside > 0 {
        metrics::counter!("importer_window_events_total", "kind" => "member_after_range")
            .increment(outside.into());
        tracing::warn!(
            members = outside,
            "Mailchimp returned members stamped at or after the range's end (its filter and its values disagree)"
        );
        batch.cost.window_events += i32::try_from(outside).unwrap_or(i32::MAX);
    }
    batch
}

fn rejected(r: Rejection) -> RejectedRecord {
    RejectedRecord {
        code: r.reason.code(),
        reason: r.reason.to_string(),
        member_id: r.member_id,
        email: r.email,
        member: r.member,
        excerpt: r.excerpt,
    }
}

/// Posts a batch and checkpoints it (nothing to do for `None`).
async fn deliver(
    ctx: &JobContext,
    job: &ClaimedJob,
    creds: &Credentials,
    batch: Option<Batch>,
) -> Result<(), JobError> {
    let Some(batch) = batch else {
        return Ok(());
    };
    post(ctx, creds, &batch.records).await?;
    let checkpoint = Checkpoint {
        args: batch.args.clone(),
        records_imported: batch.records.len() as i64,
        rejected: batch.rejected.clone(),
        cost: batch.cost,
    };
    if !queue::checkpoint(&ctx.pool, job.fence(), &checkpoint).await? {
        return Err(JobError::Fenced);
    }
    count_delivered(&batch);
    Ok(())
}

fn count_delivered(batch: &Batch) {
    metrics::counter!("importer_records_imported_total").increment(batch.records.len() as u64);
    metrics::counter!("importer_records_rejected_total").increment(batch.rejected.len() as u64);
}

/// Posts records to the destination, timed.
async fn post(ctx: &JobContext, creds: &Credentials, records: &[Record]) -> Result<(), JobError> {
    if records.is_empty() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let posted = ctx
        .destination
        .post_records(&creds.destination_url, &creds.destination_key, records)
        .await;
    let status = match &posted {
        Ok(_) => "200".to_owned(),
        Err(e) => status_label(e.status(), e.kind()),
    };
    metrics::histogram!("importer_destination_request_duration_seconds", "status" => status)
        .record(started.elapsed().as_secs_f64());
    posted?;
    Ok(())
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
