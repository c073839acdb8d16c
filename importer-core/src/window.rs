//! The sync window and how a run splits it into ranges (DESIGN.md section 6).
//!
//! A run covers the members whose `last_changed` lies in `[since, until)`. `until` is frozen by
//! `importer.create_runs` from the database clock minus the sync lag, so every change stamped
//! before `until` was visible before the run started (assumption A1 below), and every change made
//! during the run is stamped at or after `until` and leaves the window instead of entering it.
//!
//! **Planning.** The plan job asks the database what is left of the window (`importer.run_gaps`:
//! the window minus the list's coverage), counts each gap with one sorted one-member request
//! (which also tells the gap's earliest second), and splits large gaps into ranges of whole
//! seconds `[lo, hi)` at boundaries found by one-member probes at evenly spaced offsets in
//! `last_changed` order ([`probe_offsets`], [`split_gap`]). A probe is ~60 bytes. The probes run in
//! parallel on slots the plan job borrows from its account. Boundaries do not need to be exact:
//! ranges partition the window by seconds whatever the probes answer, so a probe that raced a
//! change only makes ranges less even.
//!
//! **Reading.** Each range is one `import_window` job that reads its range page after page in
//! Mailchimp's insertion order, losslessly, while members leave it: see
//! [`crate::range_reader`] for the argument. A range only loses members (they change and leave),
//! so the cost of compensating is bounded by the range's own removals, not by every removal of
//! the window as with offset paging over the whole window.
//!
//! **Completion.** A finished range records its interval in `importer.coverage`; the list's
//! cursor moves over the contiguous covered prefix only (`importer.advance_cursor`), so a failed
//! run keeps its completed ranges and the next run reads only the gaps.
//!
//! **What is assumed of Mailchimp, and what happens when it fails:**
//! - A1: a change is visible through the API within the sync lag of its `last_changed`, on
//!   Mailchimp's clock, which is within the lag of ours. If not, a late member can enter a range
//!   after it was read past. Detected when a range's count grows between two reads (the range is
//!   re-read from its start, up to [`crate::range_reader::MAX_RESTARTS`] times, then the job fails
//!   and the run cannot complete: the cursor stays), and counted in `runs.window_events` and in
//!   `importer_window_events_total`. A growth hidden by an equal number of removals between two
//!   reads of the same range is not detectable from counts; the lag is the defence.
//! - A2: without `sort_field`, members come in insertion order, and that order is stable: a
//!   modified member keeps its place (CONTRACTS.md). The reader relies on it.
//! - A3: `since_last_changed` is strict or inclusive (CONTRACTS.md); until the rule is known to be
//!   inclusive the engine sends one second early ([`Range::query_bounds`]), which is right under
//!   both, and skips members of that earlier second.
//! - A4: `last_changed` has one-second resolution; boundaries are whole seconds.
//! - Tie order inside a second is not assumed anywhere: probes only need *some* member's second.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::{Deserialize, Serialize};

use crate::mailchimp::SinceRule;
use crate::queue::Interval;
use crate::range_reader::Progress;

/// Members per Mailchimp request (Mailchimp's maximum `count`).
pub const PAGE_SIZE: u64 = 1000;

/// A gap is split into ranges of at least about this many members. Each range costs a probe
/// (~2/3 of a page's latency) and, on average, half a page more than its members need (its last
/// page is partial): 20 pages per range keep both near 2.5 % of the reads.
pub const RANGE_MEMBERS: u64 = 20_000;

/// Ranges per Mailchimp slot of the account, at most. One is enough: a range job that sees idle
/// slots of its account hands half of what it has left to a new lane
/// ([`crate::range_reader::RangeReader`]), so slots that finish early take part of the largest
/// ranges instead of idling; more ranges would only cost more probes and partial pages.
pub const RANGES_PER_SLOT: usize = 1;

/// The `[since, until)` window of `last_changed` a run covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Inclusive lower bound; `None` for a full sync.
    pub since: Option<DateTime<Utc>>,
    /// Exclusive upper bound, frozen at run creation.
    pub until: DateTime<Utc>,
}

/// A `[lo, hi)` range of whole seconds of `last_changed`; `lo = None` is the start of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// Inclusive lower bound.
    pub lo: Option<DateTime<Utc>>,
    /// Exclusive upper bound.
    pub hi: DateTime<Utc>,
}

impl Range {
    /// The `since_last_changed` and `before_last_changed` to send for this range under `rule`.
    /// `before` is strict (documented). `since` is `lo` when the server is known to be
    /// inclusive, else one second earlier: strict then means `>= lo` exactly, and an inclusive
    /// server also returns the second before `lo`, which the reader skips. A full sync sends no
    /// `since` at all (a date far in the past has made Mailchimp hang).
    pub fn query_bounds(&self, rule: SinceRule) -> (Option<DateTime<Utc>>, DateTime<Utc>) {
        let since = self.lo.map(|lo| match rule {
            SinceRule::Inclusive => lo,
            SinceRule::Unknown | SinceRule::Strict => lo - ChronoDuration::seconds(1),
        });
        (since, self.hi)
    }

    /// Where a member stamped `second` (Unix seconds) falls relative to this range.
    pub fn place(&self, second: i64) -> Placement {
        if self.lo.is_some_and(|lo| second < lo.timestamp()) {
            Placement::Before
        } else if second >= self.hi.timestamp() {
            Placement::After
        } else {
            Placement::Inside
        }
    }

    /// This range as a coverage interval.
    pub fn interval(&self) -> Interval {
        Interval {
            lo: self.lo,
            hi: self.hi,
        }
    }
}

/// Where a member's `last_changed` falls relative to a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Before `lo`: the extra second an inclusive `since` returns (not this range's).
    Before,
    /// In `[lo, hi)`.
    Inside,
    /// At or after `hi`: the filter and the value disagree (a window event).
    After,
}

/// Arguments of an `import_window` job: one range of a run's window and, once it has started,
/// where its reader stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeArgs {
    /// Mailchimp audience id.
    pub list_id: String,
    /// The range.
    #[serde(flatten)]
    pub range: Range,
    /// The reader's checkpoint (`None` until the first page is delivered).
    #[serde(default)]
    pub progress: Option<Progress>,
    /// When this job reads a lane split off another: the lane (`importer.range_lanes`).
    #[serde(default)]
    pub lane: Option<LaneStart>,
    /// The lane this job stops at (the last one split off it, or the one its own lane was to
    /// stop at).
    #[serde(default)]
    pub stop_lane: Option<i64>,
    /// Where that lane starts, as an offset when it was split off (positions drift as members
    /// leave: an estimate, used only to size further splits).
    #[serde(default)]
    pub stop_offset: Option<u64>,
    /// The `since_last_changed` form `progress` was read with: `Some(true)` inclusive (`since =
    /// lo`), `Some(false)` the strict form (`since = lo - 1 s`). A resumed job keeps it, since
    /// the other form counts a different set and would look like a range that grew.
    #[serde(default)]
    pub since_inclusive: Option<bool>,
}

/// Where a lane starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneStart {
    /// Its row in `importer.range_lanes`.
    pub id: i64,
    /// The offset of its first read.
    pub offset: u64,
}

impl RangeArgs {
    /// Whether this job reads all of its range alone (no lane split off it, not a lane): only
    /// then does its completion prove the range covered.
    pub fn reads_whole_range(&self) -> bool {
        self.lane.is_none() && self.stop_lane.is_none()
    }
}

/// How many ranges a gap of `members` should become, at most `max_ranges`.
pub fn range_count(members: u64, max_ranges: usize) -> usize {
    let wanted = usize::try_from(members.div_ceil(RANGE_MEMBERS)).unwrap_or(usize::MAX);
    wanted.clamp(1, max_ranges.max(1))
}

/// The offsets (in `last_changed` order) whose members' seconds split a gap of `members` into
/// `ranges` ranges of about equal size.
pub fn probe_offsets(members: u64, ranges: usize) -> Vec<u64> {
    let k = u64::try_from(ranges.max(1)).unwrap_or(1);
    (1..k).map(|j| j * members / k).collect()
}

/// Whether boundaries probed at `offsets` before the count was known split a gap of `members`
/// too unevenly to keep. They do when their largest range holds more than one page per slot
/// beyond an even split into `range_count(members, max_ranges)`: lanes would then even the
/// tail out over more than one page latency of partly idle slots, while probing again costs
/// one one-member request (about two thirds of a page's latency). A first full sync of a list
/// far larger than `max_ranges × RANGE_MEMBERS` is the case this catches.
pub fn guess_is_uneven(members: u64, offsets: &[u64], max_ranges: usize) -> bool {
    let even = members.div_ceil(range_count(members, max_ranges) as u64);
    let mut cuts: Vec<u64> = offsets.iter().copied().filter(|&o| o < members).collect();
    cuts.sort_unstable();
    cuts.push(members);
    let mut lo = 0;
    let mut largest = 0;
    for cut in cuts {
        largest = largest.max(cut - lo);
        lo = cut;
    }
    let slots = u64::try_from(max_ranges.max(1)).unwrap_or(1);
    largest.saturating_sub(even) > slots * PAGE_SIZE
}

/// Splits `gap` at the probed seconds: boundaries outside `(lo, hi)` and repeats are dropped
/// (a probe that fell in the gap's first second, or two probes in one bulk second).
pub fn split_gap(gap: Range, mut boundaries: Vec<DateTime<Utc>>) -> Vec<Range> {
    boundaries.retain(|b| gap.lo.is_none_or(|lo| *b > lo) && *b < gap.hi);
    boundaries.sort_unstable();
    boundaries.dedup();
    let mut ranges = Vec::with_capacity(boundaries.len() + 1);
    let mut lo = gap.lo;
    for b in boundaries {
        ranges.push(Range { lo, hi: b });
        lo = Some(b);
    }
    ranges.push(Range { lo, hi: gap.hi });
    ranges
}

/// Shares `total_ranges` among gaps in proportion to their members (each non-empty gap gets at
/// least one; empty gaps get none).
pub fn share_ranges(members: &[u64], total_ranges: usize) -> Vec<usize> {
    let sum: u64 = members.iter().sum();
    members
        .iter()
        .map(|&m| {
            if m == 0 {
                return 0;
            }
            let share = (u128::from(m) * total_ranges as u128).div_ceil(u128::from(sum.max(1)));
            usize::try_from(share)
                .unwrap_or(1)
                .max(1)
                .min(range_count(m, total_ranges))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    #[test]
    fn since_is_one_second_early_unless_the_server_is_known_inclusive() {
        let r = Range {
            lo: Some(t(100)),
            hi: t(200),
        };
        assert_eq!(r.query_bounds(SinceRule::Unknown), (Some(t(99)), t(200)));
        assert_eq!(r.query_bounds(SinceRule::Strict), (Some(t(99)), t(200)));
        assert_eq!(r.query_bounds(SinceRule::Inclusive), (Some(t(100)), t(200)));
        let full = Range { lo: None, hi: t(5) };
        assert_eq!(full.query_bounds(SinceRule::Unknown), (None, t(5)));
    }

    #[test]
    fn members_are_placed_by_their_second() {
        let r = Range {
            lo: Some(t(100)),
            hi: t(200),
        };
        assert_eq!(r.place(99), Placement::Before);
        assert_eq!(r.place(100), Placement::Inside);
        assert_eq!(r.place(199), Placement::Inside);
        assert_eq!(r.place(200), Placement::After);
        assert_eq!(Range { lo: None, hi: t(5) }.place(-10), Placement::Inside);
    }

    #[test]
    fn gaps_split_at_distinct_inner_boundaries_only() {
        let gap = Range {
            lo: Some(t(10)),
            hi: t(100),
        };
        let ranges = split_gap(gap, vec![t(50), t(10), t(50), t(30), t(100), t(5)]);
        assert_eq!(
            ranges,
            vec![
                Range {
                    lo: Some(t(10)),
                    hi: t(30)
                },
                Range {
                    lo: Some(t(30)),
                    hi: t(50)
                },
                Range {
                    lo: Some(t(50)),
                    hi: t(100)
                },
            ]
        );
        let full = split_gap(Range { lo: None, hi: t(9) }, vec![t(3)]);
        assert_eq!(full[0], Range { lo: None, hi: t(3) });
        assert_eq!(split_gap(gap, vec![]), vec![gap]);
    }

    #[test]
    fn ranges_are_about_range_members_each_within_the_cap() {
        assert_eq!(range_count(0, 10), 1);
        assert_eq!(range_count(RANGE_MEMBERS, 10), 1);
        assert_eq!(range_count(RANGE_MEMBERS + 1, 10), 2);
        assert_eq!(range_count(10_000_000, 10), 10);
        assert_eq!(probe_offsets(200_000, 4), vec![50_000, 100_000, 150_000]);
        assert!(probe_offsets(5, 1).is_empty());
    }

    #[test]
    fn guessed_boundaries_are_probed_again_only_when_far_from_even() {
        let guess = |slots: u64| -> Vec<u64> { (1..slots).map(|j| j * RANGE_MEMBERS).collect() };
        // a first full sync of 1,000,000 on 10 slots: the last guessed range holds 820,000
        assert!(guess_is_uneven(1_000_000, &guess(10), 10));
        // exactly the guess, or a little more or less: kept
        assert!(!guess_is_uneven(200_000, &guess(10), 10));
        assert!(!guess_is_uneven(205_000, &guess(10), 10));
        assert!(!guess_is_uneven(195_000, &guess(10), 10));
        // probes past the end: fewer ranges, even enough while within a page per slot
        assert!(!guess_is_uneven(30_000, &guess(10), 10));
        assert!(guess_is_uneven(30_000, &guess(2), 2));
        // one range wanted: nothing to even out
        assert!(!guess_is_uneven(900, &guess(10), 10));
        assert!(!guess_is_uneven(0, &[], 1));
    }

    #[test]
    fn ranges_are_shared_in_proportion_to_members() {
        assert_eq!(share_ranges(&[200_000], 10), vec![10]);
        assert_eq!(share_ranges(&[150_000, 50_000, 0], 8), vec![6, 2, 0]);
        assert_eq!(share_ranges(&[5, 395_000], 10), vec![1, 10]);
    }

    #[test]
    fn range_args_round_trip_as_job_arguments() {
        let args = RangeArgs {
            list_id: "l1".into(),
            range: Range {
                lo: None,
                hi: t(1_700_000_000),
            },
            progress: None,
            lane: None,
            stop_lane: None,
            stop_offset: None,
            since_inclusive: None,
        };
        let json = serde_json::to_value(&args).unwrap();
        assert_eq!(json["hi"], "2023-11-14T22:13:20Z");
        assert!(json["lo"].is_null());
        assert_eq!(serde_json::from_value::<RangeArgs>(json).unwrap(), args);
    }
}
