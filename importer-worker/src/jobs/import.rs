//! `import_window`: read one `last_changed` range of the run's window from Mailchimp, page after
//! page, losslessly (`importer_core::range_reader`), map the members and post them to the
//! destination.
//!
//! Pages are pipelined: while page k is posted and checkpointed, page k+1 is already being read,
//! so the job's Mailchimp slot is busy with back-to-back requests and at most two pages are in
//! memory. After each delivered page the job checkpoints (its reader's position, its records and
//! rejections, counted on the run): a retry resumes there. The slot is given back before the last
//! page is posted, so the destination's latency never holds Mailchimp capacity idle at the end.

use importer_core::lanes;
use importer_core::ledger::{Delivery, ListLedger};
use importer_core::mailchimp::{
    MailchimpAccount, MailchimpError, Member, MembersQuery, PageMember, SinceRule,
};
use importer_core::mapping::{self, Record};
use importer_core::queue::{
    self, Checkpoint, CheckpointOutcome, ClaimedJob, Completion, Cost, Handoff, JobKind, NewJob,
    RejectedRecord,
};
use importer_core::range_reader::{member_key, Keyed, RangeReader, RangeSource, SourcePage};
use importer_core::rejection::Rejection;
use importer_core::window::{LaneStart, Placement, Range, RangeArgs, PAGE_SIZE};
use std::time::Duration;

use super::credentials::{self, Credentials};
use super::{read, status_label, JobContext, JobError};

/// One position of a range read: what Mailchimp sent there and the key the reader anchors on.
pub(super) struct RangeMember {
    pub(super) entry: PageMember,
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
pub(super) struct MailchimpRange<'a> {
    pub(super) account: &'a MailchimpAccount,
    pub(super) list_id: &'a str,
    pub(super) range: Range,
    pub(super) rule: SinceRule,
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
        let page = read(|| self.account.members(&query)).await?;
        Ok(SourcePage {
            items: page.members.into_iter().map(RangeMember::new).collect(),
            total: page.total_items,
        })
    }
}

/// One read page, mapped, waiting to be posted and checkpointed.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) records: Vec<Record>,
    pub(super) rejected: Vec<RejectedRecord>,
    pub(super) cost: Cost,
    /// The job's arguments with the reader's position after this page.
    pub(super) args: serde_json::Value,
    /// A lane split off since the last checkpoint: enqueued in the transaction that records
    /// `args` naming it as this job's stop, so no retry can read the lane's share again.
    children: Vec<NewJob>,
    /// One per mapped member (posted or not), for the ledger.
    pub(super) deliveries: Vec<Delivery>,
    /// Mapped members not posted: the destination already holds their record.
    pub(super) unchanged: i64,
}

/// Members a reader must have left before it hands half of them to a lane: the lane then starts
/// at least a page ahead. A lane is only split off for an idle slot, which claims it at once, so
/// it has read its first members (where this job stops) about when this job has read that page;
/// a job that gets there first waits for them (`Lanes::resolve_stop`), and nothing is read
/// twice. Two pages, not more: the ranges of a plan differ by up to a bulk import's second (a
/// few thousand members, which no `last_changed` boundary can split), and at four pages the
/// jobs with two or three pages left when the first slots went idle finished alone (200,000
/// members: 80 % of C×P/L at four pages, 85 % at two; RESULTS.md).
const SPLIT_MIN_MEMBERS: u64 = 2 * PAGE_SIZE;

/// How long a job close to the start of the lane it stops at waits for that lane's first read
/// before it takes the lane back, if nobody has claimed it.
const HEADS_WAIT: Duration = Duration::from_secs(2);

/// How long it waits, once per lane, for a lane that was claimed but has not read yet, before
/// reading on
/// (then what lies past the lane's start is read twice, harmlessly).
const HEADS_GIVE_UP: Duration = Duration::from_secs(20);

/// Imports the range (or the lane of a range) the job names.
pub(super) async fn run(ctx: &JobContext, job: &ClaimedJob) -> Result<Completion, JobError> {
    let args: RangeArgs = serde_json::from_value(job.args.clone())
        .map_err(|e| JobError::Permanent(format!("malformed import_window args: {e}")))?;
    let creds = credentials::load(ctx, job.account_id).await?;
    let ledger = match job.run_id {
        Some(run_id) => ListLedger::of_run(&ctx.pool, run_id).await?,
        None => None,
    };
    let out = Outlet {
        ctx,
        job,
        creds: &creds,
        ledger,
    };
    let source = MailchimpRange {
        account: &creds.mailchimp,
        list_id: &args.list_id,
        range: args.range,
        rule: resume_rule(&args, creds.mailchimp.since_rule()),
    };
    let mut reader = match (&args.progress, &args.lane) {
        (Some(progress), _) => RangeReader::resume(Some(progress)),
        // A lane's earlier attempt may have recorded its heads (the reader before it then
        // stops at them) and failed before its first checkpoint: start at those heads.
        (None, Some(lane)) => match lanes::heads(&ctx.pool, lane.id).await.map_err(db)? {
            Some(heads) if !heads.is_empty() => RangeReader::lane_again(lane.offset, heads),
            _ => RangeReader::lane(lane.offset),
        },
        (None, None) => RangeReader::default(),
    };
    let mut lanes = Lanes {
        stop: args.stop_lane,
        stop_offset: args.stop_offset,
        split: None,
        stop_known: None,
        heads_recorded: args.lane.is_none() || args.progress.is_some(),
        waited_out: None,
    };
    let mut pending: Option<Batch> = None;
    let mut capacity: Option<Capacity> = None;
    loop {
        lanes.resolve_stop(ctx, &mut reader).await?;
        if lanes.can_split(&reader) {
            let at = Frontier {
                offset: reader.frontier(),
                left: lanes.left(&reader),
            };
            let share = capacity.and_then(|c| c.split_off(at.left));
            if let Some(lane) = lanes.split(ctx, job, &args, at, share).await? {
                let batch = pending.get_or_insert_with(Batch::default);
                batch.children.push(lane);
                batch.args = resume_args(&args, &reader, &lanes, source.rule)?;
            }
        }
        if reader.is_done() {
            // The stop was already read past: what is pending is the last of this job's work.
            give_back_slot(ctx, job).await?;
            let mut batch = pending.take().unwrap_or_default();
            out.post(&mut batch).await?;
            return Ok(finish(&args, &lanes, batch));
        }
        let (read, delivered) = tokio::join!(reader.step(&source), out.deliver(pending.take()));
        if let Some(seen) = delivered? {
            lanes.enqueued(&seen.children);
            capacity = Some(seen.capacity);
        }
        let step = read?;
        lanes.record_heads(ctx, &args, &reader).await?;
        let mut batch = classify(&creds.mailchimp, &args.range, step.fresh);
        batch.cost.members_read += i64::try_from(step.members_read).unwrap_or(i64::MAX);
        batch.cost.requests += i64::try_from(step.requests).unwrap_or(i64::MAX);
        batch.cost.window_events += i32::try_from(step.events).unwrap_or(i32::MAX);
        if step.events > 0 {
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
            out.post(&mut batch).await?;
            return Ok(finish(&args, &lanes, batch));
        }
        batch.args = resume_args(&args, &reader, &lanes, source.rule)?;
        pending = Some(batch);
    }
}

/// The job's arguments as a checkpoint stores them: where the reader stands and where it stops.
/// The `since_last_changed` form of this job: the one its checkpoint was read with when it
/// resumes (regression: a resume in a process that knew the rule differently counted the extra
/// second, saw the range grow and failed the run), else what this process knows now.
fn resume_rule(args: &RangeArgs, known: SinceRule) -> SinceRule {
    match (&args.progress, args.since_inclusive) {
        (Some(_), Some(true)) => SinceRule::Inclusive,
        (Some(_), Some(false)) => SinceRule::Strict,
        _ => known,
    }
}

fn resume_args(
    args: &RangeArgs,
    reader: &RangeReader,
    lanes: &Lanes,
    rule: SinceRule,
) -> Result<serde_json::Value, JobError> {
    let progress = RangeArgs {
        progress: Some(reader.progress()),
        stop_lane: lanes.stop,
        stop_offset: lanes.stop_offset,
        since_inclusive: Some(rule == SinceRule::Inclusive),
        ..args.clone()
    };
    serde_json::to_value(progress)
        .map_err(|e| JobError::Permanent(format!("encoding range progress: {e}")))
}

/// Where a reader stands, for sizing a lane split off it.
#[derive(Debug, Clone, Copy)]
struct Frontier {
    offset: u64,
    left: u64,
}

/// What the last checkpoint saw of the account's Mailchimp slots.
#[derive(Debug, Clone, Copy)]
struct Capacity {
    idle_slots: i64,
}

impl Capacity {
    /// How many of the `left` members this job has to read it should hand to a new lane, if
    /// any: half of them, when slots of its account are idle (nothing waits for them). Lanes
    /// made ahead of need, for a job that only looks like it will end last, were tried and
    /// dropped: they wait in the queue while their parent reaches them, and under churn they
    /// cost more re-reads than the tail they save.
    fn split_off(&self, left: u64) -> Option<u64> {
        (left >= SPLIT_MIN_MEMBERS && self.idle_slots > 0).then_some(left / 2)
    }
}

/// The completion of a range job: its range is covered only if it read the range alone.
fn finish(args: &RangeArgs, lanes: &Lanes, batch: Batch) -> Completion {
    let alone = args.reads_whole_range() && lanes.stop.is_none();
    Completion {
        records_imported: batch.records.len() as i64,
        records_unchanged: batch.unchanged,
        ledger: batch.deliveries,
        rejected: batch.rejected,
        covered: if alone {
            vec![args.range.interval()]
        } else {
            Vec::new()
        },
        cost: batch.cost,
        children: batch.children,
        ..Completion::default()
    }
}

/// A lane this job split off: its job once enqueued, and the stop (and its offset) it
/// inherited, which this job takes back with it.
#[derive(Debug, Clone, Copy)]
struct Split {
    job: Option<i64>,
    stop: Option<i64>,
    stop_offset: Option<u64>,
}

/// The lanes a range job takes part in: the one it stops at, and its own (see
/// `importer_core::range_reader`).
struct Lanes {
    /// The lane this job stops at.
    stop: Option<i64>,
    /// Where that lane started (an estimate: positions drift as members leave).
    stop_offset: Option<u64>,
    /// The last lane this job split off, while it may still be taken back.
    split: Option<Split>,
    /// The lane whose heads the reader already stops at.
    stop_known: Option<i64>,
    /// Whether this job's own lane heads are recorded (or it is not a lane).
    heads_recorded: bool,
    /// The stop lane this job waited [`HEADS_GIVE_UP`] for without seeing it read.
    waited_out: Option<i64>,
}

impl Lanes {
    /// Members between the reader's frontier and where it stops (the range's end, or the start
    /// of the lane it stops at).
    fn left(&self, reader: &RangeReader) -> u64 {
        let end = reader.frontier() + reader.remaining();
        self.stop_offset
            .map_or(end, |stop| stop.min(end))
            .saturating_sub(reader.frontier())
    }

    /// Whether the reader may share: it is not done and no split of it is still starting (one
    /// lane at a time: the next split waits until the last one has read its first page).
    fn can_split(&self, reader: &RangeReader) -> bool {
        let starting = self.stop.is_some() && self.stop_known != self.stop;
        !starting && !reader.is_done()
    }

    /// Whether a reader at `frontier` waits for the first read of `lane`, the lane it stops at,
    /// before reading on: near the lane's start (moments after the lane is claimed it has read)
    /// rather than read into it, since what lies past its start would be read twice; and only
    /// until it has waited [`HEADS_GIVE_UP`] for that lane once.
    fn waits_for_heads(&self, lane: i64, frontier: u64) -> bool {
        self.waited_out != Some(lane)
            && self.stop_offset.is_some_and(|at| frontier + PAGE_SIZE > at)
    }

    /// Gives the reader the heads of the lane it stops at, once that lane has read them.
    async fn resolve_stop(
        &mut self,
        ctx: &JobContext,
        reader: &mut RangeReader,
    ) -> Result<(), JobError> {
        let Some(lane) = self.stop.filter(|l| self.stop_known != Some(*l)) else {
            return Ok(());
        };
        let near = self.waits_for_heads(lane, reader.frontier());
        let started = tokio::time::Instant::now();
        loop {
            if let Some(heads) = lanes::heads(&ctx.pool, lane).await.map_err(db)? {
                reader.set_stop(&heads, self.stop_offset);
                self.stop_known = Some(lane);
                return Ok(());
            }
            if !near || ctx.stopping.is_cancelled() {
                return Ok(());
            }
            if started.elapsed() >= HEADS_GIVE_UP {
                // Once per lane: after that the reader reads on and only looks for the heads
                // (regression: it waited again before every page, 20 s each, for a lane whose
                // worker was killed before its first read).
                self.waited_out = Some(lane);
                tracing::info!(lane, "lane claimed but not read in time: reading on");
                return Ok(());
            }
            if started.elapsed() >= HEADS_WAIT {
                // Nobody has started the lane yet (no worker has room): take it back and read
                // on. A lane already claimed is about to read: keep waiting for it.
                if let Some(Split {
                    job: Some(job),
                    stop,
                    stop_offset,
                }) = self.split
                {
                    if lanes::withdraw(&ctx.pool, lane, job).await.map_err(db)? {
                        tracing::info!(lane, "lane not started in time: taken back");
                        self.split = None;
                        self.stop = stop;
                        self.stop_offset = stop_offset;
                        self.stop_known = None;
                        return Ok(());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Records this lane's first members, as soon as they are read.
    async fn record_heads(
        &mut self,
        ctx: &JobContext,
        args: &RangeArgs,
        reader: &RangeReader,
    ) -> Result<(), JobError> {
        if self.heads_recorded {
            return Ok(());
        }
        if let (Some(lane), Some(heads)) = (args.lane, reader.heads()) {
            let stored = lanes::record_heads(&ctx.pool, lane.id, heads)
                .await
                .map_err(db)?;
            if stored != heads {
                // An earlier attempt recorded its heads late (it had stalled past its lease):
                // the reader before this lane stops at those, so this lane must start there.
                // Nothing of this attempt is delivered yet; the retry reads from them.
                return Err(JobError::Retryable {
                    message: "an earlier attempt of this lane recorded other first members; reading again from those".to_owned(),
                    retry_after: None,
                });
            }
            self.heads_recorded = true;
        }
        Ok(())
    }

    /// Hands the last `share` members of what the reader has left (as of `at`) to a new lane,
    /// which the next free slot takes; this job then stops where that lane starts. Returns the
    /// lane's job, for the caller to enqueue with the next checkpoint (whose arguments name the
    /// new stop): enqueued on its own, a retry of this job from an older checkpoint would read
    /// the lane's share a second time.
    async fn split(
        &mut self,
        ctx: &JobContext,
        job: &ClaimedJob,
        args: &RangeArgs,
        at: Frontier,
        share: Option<u64>,
    ) -> Result<Option<NewJob>, JobError> {
        let (Some(run_id), Some(share)) = (job.run_id, share) else {
            return Ok(None);
        };
        let left = at.left;
        let offset = at.offset + left - share.min(left);
        let lane = lanes::create(&ctx.pool, run_id, offset).await.map_err(db)?;
        let child = RangeArgs {
            progress: None,
            lane: Some(LaneStart { id: lane, offset }),
            // The new lane ends where this job was to end.
            stop_lane: self.stop,
            stop_offset: self.stop_offset,
            ..args.clone()
        };
        let child = NewJob {
            kind: JobKind::ImportWindow,
            args: serde_json::to_value(child)
                .map_err(|e| JobError::Permanent(format!("encoding lane args: {e}")))?,
            account_id: job.account_id,
            run_id: Some(run_id),
            max_attempts: job.max_attempts,
            run_after: None,
        };
        self.split = Some(Split {
            job: None,
            stop: self.stop,
            stop_offset: self.stop_offset,
        });
        tracing::info!(
            lane,
            offset,
            left,
            "half of this range's rest handed to a new lane (idle slots, or this job would finish last)"
        );
        metrics::counter!("importer_range_splits_total").increment(1);
        self.stop = Some(lane);
        self.stop_offset = Some(offset);
        Ok(Some(child))
    }

    /// Notes the job of the lane split off last, once its checkpoint has enqueued it.
    fn enqueued(&mut self, children: &[i64]) {
        if let (Some(split), Some(&job)) = (self.split.as_mut(), children.last()) {
            split.job = Some(job);
        }
    }
}

fn db(error: lanes::LaneError) -> JobError {
    JobError::Retryable {
        message: error.to_string(),
        retry_after: None,
    }
}

/// Maps the members read for the first time: a member of the second before the range (what an
/// inclusive `since` adds) is skipped and teaches the rule; a member stamped at or after the
/// range's end is a window event (delivered all the same: it is current data).
pub(super) fn classify(
    account: &MailchimpAccount,
    range: &Range,
    fresh: Vec<RangeMember>,
) -> Batch {
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
        let last_changed = member.last_changed_secs();
        match last_changed.map(|s| range.place(s)) {
            Some(Placement::Before) => {
                account.learn_since_rule(SinceRule::Inclusive);
                continue;
            }
            Some(Placement::After) => outside += 1,
            Some(Placement::Inside) | None => {}
        }
        match mapping::map_member(member) {
            Ok(record) => {
                batch.deliveries.push(Delivery::of(&record, last_changed));
                batch.records.push(record);
            }
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

/// What a checkpoint saw and did.
pub(super) struct Delivered {
    capacity: Capacity,
    /// Ids of the jobs it enqueued (a lane split off).
    children: Vec<i64>,
}

/// Where a range job's batches go: the destination, then a checkpoint with the ledger.
pub(super) struct Outlet<'a> {
    pub(super) ctx: &'a JobContext,
    pub(super) job: &'a ClaimedJob,
    pub(super) creds: &'a Credentials,
    /// The ledger of the run's list (`None`: a job without a run posts everything).
    pub(super) ledger: Option<ListLedger>,
}

impl Outlet<'_> {
    /// Posts the members of `batch` whose record the destination does not hold yet (per the
    /// ledger), counting the others as unchanged.
    async fn post(&self, batch: &mut Batch) -> Result<(), JobError> {
        if let Some(ledger) = &self.ledger {
            let same = ledger.unchanged(&self.ctx.pool, &batch.deliveries).await?;
            if !same.is_empty() {
                batch.records.retain(|r| !same.contains(&r.id));
                batch.unchanged = batch.deliveries.len() as i64 - batch.records.len() as i64;
            }
        }
        post(self.ctx, self.creds, &batch.records).await
    }

    /// Posts a batch and checkpoints it (nothing to do for `None`); returns the account's idle
    /// slots as the checkpoint saw them, and the jobs it enqueued.
    pub(super) async fn deliver(
        &self,
        batch: Option<Batch>,
    ) -> Result<Option<Delivered>, JobError> {
        let Some(mut batch) = batch else {
            return Ok(None);
        };
        self.post(&mut batch).await?;
        let checkpoint = Checkpoint {
            args: batch.args.clone(),
            records_imported: batch.records.len() as i64,
            records_unchanged: batch.unchanged,
            ledger: std::mem::take(&mut batch.deliveries),
            rejected: batch.rejected.clone(),
            cost: batch.cost,
            children: std::mem::take(&mut batch.children),
        };
        match queue::checkpoint(&self.ctx.pool, self.job.fence(), &checkpoint).await? {
            CheckpointOutcome::Fenced => Err(JobError::Fenced),
            CheckpointOutcome::Recorded {
                idle_slots,
                children,
            } => {
                count_delivered(&batch);
                Ok(Some(Delivered {
                    capacity: Capacity { idle_slots },
                    children,
                }))
            }
        }
    }
}

fn count_delivered(batch: &Batch) {
    metrics::counter!("importer_records_imported_total").increment(batch.records.len() as u64);
    metrics::counter!("importer_records_rejected_total").increment(batch.rejected.len() as u64);
    metrics::counter!("importer_records_unchanged_total").increment(batch.unchanged as u64);
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
    let permit = match ctx.stopping.is_cancelled() || ctx.health.faulted().is_some() {
        true => None,
        false => ctx.dispatcher.permits(1).pop(),
    };
    let (Some(permit), Some(me)) = (permit, ctx.me.upgrade()) else {
        if !queue::release_slot(&ctx.pool, job.fence()).await? {
            return Err(JobError::Fenced);
        }
        ctx.dispatcher.slot_freed.notify_one();
        return Ok(());
    };
    // In a tracked task of its own: if this job is stopped while the handoff is in flight, the
    // handoff still ends with the next job started or released, never leased to nobody, and
    // the worker does not return from shutdown before it has (with a plain `tokio::spawn`,
    // `run` could return while the next job was still leased: the regression test
    // `a_stopped_worker_holds_no_lease_whenever_it_stops`).
    let (fence, from) = (job.fence(), job.id);
    ctx.dispatcher
        .spawn_tracked(hand_over(me, fence, from, permit))
        .await
        .unwrap_or_else(|e| {
            Err(JobError::Retryable {
                message: format!("slot handoff task failed: {e}"),
                retry_after: None,
            })
        })
}

/// Hands `fence`'s slot to the next waiting job of the account and starts that job here (or
/// releases it when the worker is stopping).
async fn hand_over(
    ctx: std::sync::Arc<JobContext>,
    fence: queue::Fence,
    from: i64,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<(), JobError> {
    let asked_at = tokio::time::Instant::now();
    match queue::handoff_slot(&ctx.pool, fence, &ctx.worker_id, ctx.lease).await? {
        Handoff::Fenced => Err(JobError::Fenced),
        Handoff::Released => {
            ctx.dispatcher.slot_freed.notify_one();
            Ok(())
        }
        Handoff::Next(next) => {
            job_line!(debug, next, from_job = from, "received by slot handoff");
            let refused = if ctx.stopping.is_cancelled() {
                Some(next)
            } else {
                ctx.dispatcher
                    .start(ctx.clone(), next, permit, asked_at)
                    .err()
            };
            if let Some(next) = refused {
                queue::release(&ctx.pool, &[next.fence()]).await?;
                ctx.dispatcher.slot_freed.notify_one();
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn args(progress: bool, since_inclusive: Option<bool>) -> RangeArgs {
        RangeArgs {
            list_id: "l".into(),
            range: Range {
                lo: None,
                hi: chrono::Utc
                    .timestamp_opt(1_700_000_000, 0)
                    .single()
                    .unwrap_or_default(),
            },
            progress: progress.then(importer_core::range_reader::Progress::default),
            lane: None,
            stop_lane: None,
            stop_offset: None,
            since_inclusive,
        }
    }

    /// Regression: a reader whose stop lane was claimed but never read (its worker killed
    /// before the lane's first page) waited [`HEADS_GIVE_UP`] again before each of its pages
    /// past the lane's start. It waits once per lane, then reads on.
    #[test]
    fn a_reader_waits_out_a_silent_lane_once() {
        let mut lanes = Lanes {
            stop: Some(7),
            stop_offset: Some(5_000),
            split: None,
            stop_known: None,
            heads_recorded: true,
            waited_out: None,
        };
        assert!(
            !lanes.waits_for_heads(7, 1_000),
            "far from the lane's start"
        );
        assert!(lanes.waits_for_heads(7, 4_500));
        assert!(lanes.waits_for_heads(7, 9_000), "past it, never waited out");
        lanes.waited_out = Some(7);
        assert!(!lanes.waits_for_heads(7, 4_500));
        assert!(!lanes.waits_for_heads(7, 9_000));
        lanes.stop = Some(8);
        assert!(
            lanes.waits_for_heads(8, 4_500),
            "another lane is waited for again"
        );
    }

    /// Regression: a job resumed in a process that knew the rule differently read with the
    /// other `since` form, counted a different set and took it for a range that grew.
    #[test]
    fn a_resumed_job_keeps_the_since_form_of_its_checkpoint() {
        let cases = [
            (true, Some(true), SinceRule::Unknown, SinceRule::Inclusive),
            (true, Some(false), SinceRule::Inclusive, SinceRule::Strict),
            (true, None, SinceRule::Inclusive, SinceRule::Inclusive),
            (false, Some(true), SinceRule::Unknown, SinceRule::Unknown),
            (false, None, SinceRule::Strict, SinceRule::Strict),
        ];
        for (progress, stored, known, expected) in cases {
            assert_eq!(
                resume_rule(&args(progress, stored), known),
                expected,
                "{progress} {stored:?} {known:?}"
            );
        }
    }
}
