//! `plan_run`: find what is left of the run's window, count it, split it into `last_changed`
//! ranges and enqueue one `import_window` job per range, in the transaction that completes the
//! plan job. Empty gaps are recorded as covered at once (a run with nothing to read completes).
//!
//! Planning costs one one-member request per gap (its count and earliest second), one per range
//! boundary (twice for a single gap whose boundaries, guessed before the count, came out far
//! from even, as on a large list's first full sync), and once per process and Mailchimp host one
//! more to learn whether `since_last_changed` is inclusive (see `importer_core::window`). Those
//! requests run in parallel on Mailchimp slots the plan job borrows from its account
//! (`queue::borrow_slots`), so planning takes about two request latencies whatever the number of
//! ranges.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use importer_core::mailchimp::{MailchimpAccount, Probe, SinceRule};
use importer_core::queue::{self, ClaimedJob, Completion, Cost, Interval, JobKind, NewJob};
use importer_core::runs;
use importer_core::window::{
    guess_is_uneven, probe_offsets, range_count, share_ranges, split_gap, Range, RangeArgs,
    RANGES_PER_SLOT, RANGE_MEMBERS,
};

use super::{credentials, read, JobContext, JobError};

/// Plans the run the job belongs to.
pub(super) async fn run(ctx: &JobContext, job: &ClaimedJob) -> Result<Completion, JobError> {
    let run_id = job
        .run_id
        .ok_or_else(|| JobError::Permanent("plan_run job without a run".to_owned()))?;
    let (run, list) = super::run_and_list(ctx, run_id).await?;
    let creds = credentials::load(ctx, job.account_id).await?;
    let planner = Planner {
        ctx,
        job,
        mailchimp: &creds.mailchimp,
        list_id: &list.mailchimp_list_id,
    };
    let gaps: Vec<Range> = runs::gaps(&ctx.pool, run_id)
        .await?
        .into_iter()
        .map(|g| Range { lo: g.lo, hi: g.hi })
        .collect();
    let estimate = runs::last_members_total(&ctx.pool, run.list_id, run.mode, run.id)
        .await?
        .map(|n| u64::try_from(n).unwrap_or(0));
    let full = run.since.is_none();
    let result = planner
        .plan(&gaps, creds.max_concurrency, estimate, full)
        .await;
    // Borrowed slots go back whatever happened (a lost fence has none left to give).
    queue::return_slots(&ctx.pool, job.fence()).await?;
    let plan = result?;
    tracing::info!(
        members = plan.members,
        gaps = gaps.len(),
        ranges = plan.ranges.len(),
        requests = plan.requests,
        "window planned"
    );
    let children = plan
        .ranges
        .iter()
        .map(|range| {
            let args = RangeArgs {
                list_id: list.mailchimp_list_id.clone(),
                range: *range,
                progress: None,
                lane: None,
                stop_lane: None,
                stop_offset: None,
                since_inclusive: None,
            };
            Ok(NewJob {
                kind: JobKind::ImportWindow,
                args: serde_json::to_value(args)
                    .map_err(|e| JobError::Permanent(format!("encoding range args: {e}")))?,
                account_id: job.account_id,
                run_id: Some(run_id),
                max_attempts: job.max_attempts,
                run_after: None,
            })
        })
        .collect::<Result<Vec<_>, JobError>>()?;
    Ok(Completion {
        children,
        members_total: Some(i64::try_from(plan.members).unwrap_or(i64::MAX)),
        covered: plan.empty,
        cost: Cost {
            members_read: i64::try_from(plan.requests).unwrap_or(0),
            requests: i64::try_from(plan.requests).unwrap_or(0),
            window_events: 0,
        },
        ..Completion::default()
    })
}

/// What planning decided.
struct Plan {
    /// Members counted in the gaps.
    members: u64,
    /// The ranges to read, in `last_changed` order.
    ranges: Vec<Range>,
    /// Gaps with no member: covered now.
    empty: Vec<Interval>,
    /// Mailchimp requests made.
    requests: u64,
}

/// One planning request.
enum Ask {
    /// The size of gap `gap` and its earliest second.
    Count { gap: usize },
    /// The second of the member at `offset` of gap `gap`, in `last_changed` order.
    Boundary { gap: usize, offset: u64 },
    /// Whether `since_last_changed = s` returns members stamped `s` itself.
    SinceRule { second: DateTime<Utc> },
}

/// What a planning request found.
enum Answer {
    Count {
        gap: usize,
        probe: Probe,
    },
    Boundary {
        gap: usize,
        at: Option<DateTime<Utc>>,
    },
    Learned,
}

struct Planner<'a> {
    ctx: &'a JobContext,
    job: &'a ClaimedJob,
    mailchimp: &'a MailchimpAccount,
    list_id: &'a str,
}

impl Planner<'_> {
    /// Counts the gaps and finds range boundaries. With one gap (the usual case), the count
    /// and the boundaries are asked in one round: the boundaries' offsets come from what the
    /// previous run of the same kind counted (`estimate`), or for a first full sync from
    /// [`RANGE_MEMBERS`] per range; probes past the end simply find no member. Ranges that come
    /// out a little uneven are evened out while they are read (lanes); boundaries far from even
    /// ([`guess_is_uneven`]) are probed again once the count is known. With several gaps, or
    /// when the `since_last_changed` rule must be learned, a second round asks for the
    /// boundaries.
    async fn plan(
        &self,
        gaps: &[Range],
        max_ranges: usize,
        estimate: Option<u64>,
        full: bool,
    ) -> Result<Plan, JobError> {
        let rule = self.mailchimp.since_rule();
        let cap = max_ranges.max(1) * RANGES_PER_SLOT;
        let mut requests = 0u64;

        // 1. count every gap (learning its earliest second); with one gap, its boundaries too
        let mut asks: Vec<Ask> = (0..gaps.len()).map(|gap| Ask::Count { gap }).collect();
        let mut guessed: Vec<u64> = Vec::new();
        if gaps.len() == 1 {
            let (ranges, spacing) = match estimate {
                Some(n) => {
                    let k = range_count(n, cap);
                    (k, n / k as u64)
                }
                None if full => (cap, RANGE_MEMBERS),
                None => (1, RANGE_MEMBERS),
            };
            guessed = (1..ranges as u64).map(|j| j * spacing).collect();
            asks.extend(
                guessed
                    .iter()
                    .map(|&offset| Ask::Boundary { gap: 0, offset }),
            );
        }
        let mut answers = self.ask(gaps, rule, asks).await?;
        requests += answers.len() as u64;
        let mut counts = vec![0u64; gaps.len()];
        let mut earliest = None;
        for answer in &answers {
            if let Answer::Count { gap, probe } = answer {
                counts[*gap] = probe.total;
                earliest = earliest.or(probe.last_changed);
            }
        }
        let members: u64 = counts.iter().sum();

        // 2. several gaps: boundaries in proportion to their sizes, and the since rule; or one
        // gap whose guessed boundaries came out far from even: boundaries again at the count
        let mut second: Vec<Ask> = Vec::new();
        if gaps.len() > 1 {
            let shares: Vec<usize> = share_ranges(&counts, cap)
                .into_iter()
                .zip(&counts)
                .map(|(share, &n)| share.min(range_count(n, cap)))
                .collect();
            for (gap, (&n, &share)) in counts.iter().zip(&shares).enumerate() {
                second.extend(
                    probe_offsets(n, share)
                        .into_iter()
                        .map(|offset| Ask::Boundary { gap, offset }),
                );
            }
            if rule == SinceRule::Unknown {
                if let Some(second_at) = earliest {
                    second.push(Ask::SinceRule { second: second_at });
                }
            }
        } else if guess_is_uneven(members, &guessed, cap) {
            let offsets = probe_offsets(members, range_count(members, cap));
            tracing::debug!(
                members,
                guessed = guessed.len(),
                ranges = offsets.len() + 1,
                "guessed range boundaries uneven; probing again"
            );
            answers.retain(|answer| !matches!(answer, Answer::Boundary { .. }));
            second.extend(
                offsets
                    .into_iter()
                    .map(|offset| Ask::Boundary { gap: 0, offset }),
            );
        }
        if !second.is_empty() {
            let more = self.ask(gaps, rule, second).await?;
            requests += more.len() as u64;
            answers.extend(more);
        }

        let mut boundaries: Vec<Vec<DateTime<Utc>>> = vec![Vec::new(); gaps.len()];
        for answer in answers {
            if let Answer::Boundary {
                gap,
                at: Some(second),
            } = answer
            {
                boundaries[gap].push(second);
            }
        }
        let mut ranges = Vec::new();
        let mut empty = Vec::new();
        for ((gap, n), bounds) in gaps.iter().zip(&counts).zip(boundaries) {
            if *n == 0 {
                empty.push(gap.interval());
            } else {
                ranges.extend(split_gap(*gap, bounds));
            }
        }
        Ok(Plan {
            members,
            ranges,
            empty,
            requests,
        })
    }

    /// Asks everything in `asks` in parallel, on borrowed slots.
    async fn ask(
        &self,
        gaps: &[Range],
        rule: SinceRule,
        asks: Vec<Ask>,
    ) -> Result<Vec<Answer>, JobError> {
        let width = self.borrow(asks.len()).await?;
        let asking: Vec<BoxFuture<'_, Result<Answer, JobError>>> = asks
            .into_iter()
            .map(|ask| self.answer(gaps, rule, ask).boxed())
            .collect();
        futures::stream::iter(asking)
            .buffer_unordered(width)
            .try_collect()
            .await
    }

    async fn answer(&self, gaps: &[Range], rule: SinceRule, ask: Ask) -> Result<Answer, JobError> {
        Ok(match ask {
            Ask::Count { gap } => Answer::Count {
                gap,
                probe: self.probe(&gaps[gap], rule, 0).await?,
            },
            Ask::Boundary { gap, offset } => Answer::Boundary {
                gap,
                at: self.probe(&gaps[gap], rule, offset).await?.last_changed,
            },
            Ask::SinceRule { second } => {
                let next = second + ChronoDuration::seconds(1);
                let at_second = read(|| {
                    self.mailchimp
                        .count_members(self.list_id, Some(second), Some(next))
                })
                .await?;
                let learned = if at_second > 0 {
                    SinceRule::Inclusive
                } else {
                    SinceRule::Strict
                };
                tracing::info!(?learned, "since_last_changed rule learned");
                self.mailchimp.learn_since_rule(learned);
                Answer::Learned
            }
        })
    }

    /// Borrows slots so that `parallel` requests can be in flight; returns how many may be.
    async fn borrow(&self, parallel: usize) -> Result<usize, JobError> {
        if parallel <= 1 {
            return Ok(1);
        }
        let want = u32::try_from(parallel - 1).unwrap_or(u32::MAX);
        match queue::borrow_slots(&self.ctx.pool, self.job.fence(), want).await? {
            Some(extra) => Ok(1 + extra as usize),
            None => Err(JobError::Fenced),
        }
    }

    /// The count of `gap` and the second of its member at `offset` in `last_changed` order.
    async fn probe(&self, gap: &Range, rule: SinceRule, offset: u64) -> Result<Probe, JobError> {
        let (since, before) = gap.query_bounds(rule);
        Ok(read(|| {
            self.mailchimp
                .probe(self.list_id, since, Some(before), offset)
        })
        .await?)
    }
}
