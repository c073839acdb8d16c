//! `audit_list`: compare a list in Mailchimp with its ledger, heal what is missing or stale,
//! record what was deleted (`importer_core::list_audit` holds the rules and the SQL).
//!
//! Phases, each checkpointed so a retry resumes where the last one stopped:
//! 1. **scan**: every member changed before the audit's `until`, ids and `last_changed` only,
//!    read losslessly in insertion order (`RangeReader`, as the sync reads a range);
//! 2. **since**: every member changed since `until` (present, left to the next sync);
//! 3. **heal**: the missing and stale members, read in full in spans of `last_changed` (a new
//!    span when more than a page of members lies between two of them), mapped and posted with
//!    their ledger entries; then the audit concludes and the job completes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use importer_core::ledger::ListLedger;
use importer_core::list_audit::{self, Concluded, Healing, Needed};
use importer_core::mailchimp::{MailchimpAccount, MailchimpError, MembersQuery, Stamp};
use importer_core::queue::{self, CheckpointOutcome, ClaimedJob, Completion, Cost};
use importer_core::range_reader::{
    member_key, Keyed, Progress, RangeReader, RangeSource, SourcePage,
};
use importer_core::window::{Range, PAGE_SIZE};
use serde::{Deserialize, Serialize};

use super::credentials;
use super::import::{classify, MailchimpRange, Outlet, RangeMember};
use super::{read, JobContext, JobError};

/// Where an audit job stands, stored in its arguments.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AuditArgs {
    run_id: i64,
    #[serde(default)]
    phase: Phase,
    /// The reader's position in the current pass.
    #[serde(default)]
    progress: Option<Progress>,
    /// Needed members up to this position (of [`Needed::position`]) are done.
    #[serde(default)]
    healed_through: i64,
    #[serde(default)]
    healing: Healing,
    /// Post every member before the cursor again, whatever the ledger says.
    #[serde(default)]
    redeliver: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Phase {
    #[default]
    Scan,
    Since,
    Heal,
}

/// One position of a scan: a member's stamp (none without an id) and its anchoring key.
struct Seen {
    stamp: Option<Stamp>,
    key: u64,
}

impl Keyed for Seen {
    fn key(&self) -> u64 {
        self.key
    }
}

/// Reads ids and `last_changed` of the members changed in `[since, before)`.
struct StampSource<'a> {
    account: &'a MailchimpAccount,
    list_id: &'a str,
    since: Option<DateTime<Utc>>,
    before: Option<DateTime<Utc>>,
    /// Response bytes so far.
    bytes: AtomicI64,
}

impl RangeSource for StampSource<'_> {
    type Item = Seen;
    type Error = MailchimpError;

    async fn fetch(&self, offset: u64, count: u64) -> Result<SourcePage<Seen>, MailchimpError> {
        let query = MembersQuery {
            count: u32::try_from(count).unwrap_or(1000),
            offset,
            since_last_changed: self.since,
            before_last_changed: self.before,
            ..MembersQuery::new(self.list_id)
        };
        let page = read(|| self.account.member_stamps(&query)).await?;
        self.bytes
            .fetch_add(page.body_bytes as i64, Ordering::Relaxed);
        let items = page
            .stamps
            .into_iter()
            .enumerate()
            .map(|(i, stamp)| {
                let key = match &stamp {
                    Some(s) => member_key(s.id.as_bytes()),
                    // Keeps its place; keyed by position, so it never anchors on another.
                    None => member_key(format!("\0no id at {}", offset + i as u64).as_bytes()),
                };
                Seen { stamp, key }
            })
            .collect();
        Ok(SourcePage {
            items,
            total: page.total_items,
        })
    }
}

/// Runs the audit the job names.
pub(super) async fn run(ctx: &JobContext, job: &ClaimedJob) -> Result<Completion, JobError> {
    let mut args: AuditArgs = serde_json::from_value(job.args.clone())
        .map_err(|e| JobError::Permanent(format!("malformed audit_list args: {e}")))?;
    let (run, list) = super::run_and_list(ctx, args.run_id).await?;
    let creds = credentials::load(ctx, job.account_id).await?;
    let account = &creds.mailchimp;
    let list_id = list.mailchimp_list_id.as_str();

    while args.phase != Phase::Heal {
        // Strictly after `until` needs `since = until - 1s` on a strict server; an inclusive
        // one also returns that second, whose members the scan has already seen.
        let (since, before, after_until) = match args.phase {
            Phase::Scan => (None, Some(run.until), false),
            _ => (Some(run.until - chrono::Duration::seconds(1)), None, true),
        };
        let source = StampSource {
            account,
            list_id,
            since,
            before,
            bytes: AtomicI64::new(0),
        };
        let mut reader = RangeReader::resume(args.progress.as_ref());
        while !reader.is_done() {
            let step = reader.step(&source).await?;
            let stamps: Vec<Stamp> = step.fresh.into_iter().filter_map(|s| s.stamp).collect();
            list_audit::record_seen(&ctx.pool, run.id, &stamps, after_until).await?;
            args.healing.requests += step.requests as i64;
            args.healing.bytes += source.bytes.swap(0, Ordering::Relaxed);
            args.progress = Some(reader.progress());
            if reader.is_done() {
                args.progress = None;
                args.phase = match args.phase {
                    Phase::Scan => Phase::Since,
                    _ => Phase::Heal,
                };
            }
            let cost = Cost {
                members_read: step.members_read as i64,
                requests: step.requests as i64,
                window_events: step.events as i32,
            };
            if args.phase == Phase::Heal {
                // What drift there is, counted once before healing begins.
                let needed = list_audit::needed(&ctx.pool, run.id, args.redeliver).await?;
                args.healing.stale = needed.iter().filter(|n| n.stale).count() as i64;
                args.healing.missing = needed.len() as i64 - args.healing.stale;
            }
            checkpoint(ctx, job, &args, cost).await?;
        }
    }

    // Redelivering distrusts the ledger: nothing is skipped as unchanged.
    let ledger = match args.redeliver {
        true => None,
        false => ListLedger::of_run(&ctx.pool, run.id).await?,
    };
    let out = Outlet {
        ctx,
        job,
        creds: &creds,
        ledger,
    };
    let needed = list_audit::needed(&ctx.pool, run.id, args.redeliver).await?;
    let left: Vec<Needed> = needed
        .into_iter()
        .filter(|n| n.position > args.healed_through)
        .collect();
    for span in spans(&left) {
        heal_span(&out, account, list_id, span, &mut args).await?;
    }

    match list_audit::conclude(
        &ctx.pool,
        job.fence(),
        run.id,
        &args.healing,
        args.redeliver,
    )
    .await?
    {
        Concluded::Fenced => Err(JobError::Fenced),
        Concluded::Result(result) => {
            for (kind, n) in [
                ("missing", result.missing),
                ("stale", result.stale),
                ("healed", result.healed),
                ("deferred", result.deferred),
                ("rejected", result.rejected),
                ("deleted", result.deleted_new),
            ] {
                metrics::counter!("importer_audit_members_total", "result" => kind)
                    .increment(n.max(0) as u64);
            }
            metrics::counter!("importer_audit_unhealed_total")
                .increment(result.unhealed.max(0) as u64);
            job_line!(
                info,
                job,
                members = result.members_seen,
                missing = result.missing,
                stale = result.stale,
                healed = result.healed,
                deferred = result.deferred,
                deleted = result.deleted,
                deleted_new = result.deleted_new,
                bytes_per_member = result.bytes_per_member(),
                "audit concluded"
            );
            Ok(Completion::default())
        }
    }
}

/// Groups needed members (by position) into spans read together: a new span starts when
/// more than a page of other members lies between two needed ones.
fn spans(needed: &[Needed]) -> Vec<&[Needed]> {
    let mut spans = Vec::new();
    let mut start = 0;
    for i in 1..needed.len() {
        if needed[i].position - needed[i - 1].position > PAGE_SIZE as i64 {
            spans.push(&needed[start..i]);
            start = i;
        }
    }
    if start < needed.len() {
        spans.push(&needed[start..]);
    }
    spans
}

/// Reads one span in full, delivers its needed members (with their ledger entries) and counts
/// them: healed, rejected, or deferred when they changed since the scan.
async fn heal_span(
    out: &Outlet<'_>,
    account: &MailchimpAccount,
    list_id: &str,
    span: &[Needed],
    args: &mut AuditArgs,
) -> Result<(), JobError> {
    let (Some(first), Some(last)) = (span.first(), span.last()) else {
        return Ok(());
    };
    let range = Range {
        lo: Some(first.last_changed),
        hi: last.last_changed + chrono::Duration::seconds(1),
    };
    let source = MailchimpRange {
        account,
        list_id,
        range,
        rule: account.since_rule(),
    };
    let wanted: HashSet<&str> = span.iter().map(|n| n.member_id.as_str()).collect();
    let mut found = 0i64;
    let mut reader = RangeReader::default();
    while !reader.is_done() {
        let step = reader.step(&source).await?;
        let mine: Vec<RangeMember> = step
            .fresh
            .into_iter()
            .filter(|m| {
                let id = match &m.entry {
                    Ok(member) => member.id.as_deref(),
                    Err(rejection) => rejection.member_id.as_deref(),
                };
                id.is_some_and(|id| wanted.contains(id))
            })
            .collect();
        found += mine.len() as i64;
        let mut batch = classify(account, &range, mine);
        batch.cost = Cost {
            members_read: step.members_read as i64,
            requests: step.requests as i64,
            window_events: 0,
        };
        args.healing.requests += step.requests as i64;
        args.healing.healed += batch.deliveries.len() as i64;
        args.healing.rejected += batch.rejected.len() as i64;
        if reader.is_done() {
            args.healing.deferred += span.len() as i64 - found;
            args.healed_through = last.position;
        }
        batch.args = encode(args)?;
        out.deliver(Some(batch)).await?;
    }
    Ok(())
}

async fn checkpoint(
    ctx: &JobContext,
    job: &ClaimedJob,
    args: &AuditArgs,
    cost: Cost,
) -> Result<(), JobError> {
    let checkpoint = queue::Checkpoint {
        args: encode(args)?,
        cost,
        ..queue::Checkpoint::default()
    };
    match queue::checkpoint(&ctx.pool, job.fence(), &checkpoint).await? {
        CheckpointOutcome::Fenced => Err(JobError::Fenced),
        CheckpointOutcome::Recorded { .. } => Ok(()),
    }
}

fn encode(args: &AuditArgs) -> Result<serde_json::Value, JobError> {
    serde_json::to_value(args)
        .map_err(|e| JobError::Permanent(format!("encoding audit progress: {e}")))
}
