//! Reading one range of a run losslessly while its members change, at about one read per member.
//!
//! A range `[lo, hi)` is read page after page at increasing offsets, without `sort_field`: in
//! Mailchimp's insertion order, which is stable (a modified member keeps its place). During the
//! run the range only loses members: one that changes gets a `last_changed` at or after the run's
//! `until` and leaves every range of the run (assumption A1 of [`crate::window`]). Positions can
//! therefore only move down, by the number of members removed below them.
//!
//! **Invariant.** Let the *rank* of a member be its place in insertion order. After every step,
//! every member of the range with a rank up to the highest rank read so far, and still in the
//! range, has been read.
//!
//! **Anchoring.** The next page is requested at `frontier - OVERLAP`. If its first member is one
//! already read, that member's rank is at most the highest rank read; every member not read yet
//! has a higher rank and so comes after it in this response or in a later one: the invariant
//! holds with the page's last member as the new highest rank. Positions may have moved down by up
//! to `OVERLAP - 1` between two reads without any extra request. When the first member is one not
//! read yet (more removals below the frontier than that), members may have slid below the
//! requested offset: the reader reads downwards (`[q - e, q)`, growing `e`) until a read starts
//! with a member already read, or at offset 0. Each such read ends where the previous one began
//! (positions only move down), so nothing between them is skipped.
//!
//! **When ids cannot tell** (the member was read longer ago than the [`RECENT`] ids kept, or the
//! job resumed from a checkpoint that keeps only the last [`TAIL`]), counts do: the range's size
//! fell by `d` since the last read, so positions moved down by at most `d`, and a read that starts
//! `d + OVERLAP` below the frontier starts with a member already read. That is sound while A1
//! holds.
//!
//! **The end.** A short page ends the range: its own snapshot holds nothing past it. A full
//! page that reaches `total_items` ends it only if the range did not shrink at that read, and
//! never at a reader's first read (nothing to compare its count with):
//! Mailchimp does not promise that `total_items` is counted in the page's snapshot, and counted
//! after removals the page did not see, it can fall to the page's end while members remain past
//! it. The next read then finds them (by anchoring or reading down, as above), for the price of
//! one or a few small requests, only when members left during the last page.
//!
//! **Growth.** Under A1 a range never grows. A read that finds the range larger than the last one
//! did means members entered (a change became visible late, or Mailchimp's clock is off by more
//! than the lag): a *window event*. The range is then read again from offset 0 (what was read
//! stays delivered), at most [`MAX_RESTARTS`] times, then [`ReadError::NotFrozen`].
//!
//! **Cost.** Without changes: one request per 1000 members and `OVERLAP` extra members per page.
//! With changes: the members that slid below the frontier are read again once, plus a bounded
//! overshoot of the estimate `e` (removals pro rata of the read part, plus a margin). Members read
//! twice are not delivered twice (the reader remembers the last [`RECENT`] ids).
//!
//! The reader holds at most one page plus the downward reads of one step, and [`RECENT`] ids.

use std::collections::VecDeque;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde::{Deserialize, Serialize};

use crate::window::PAGE_SIZE;

/// A set of [`member_key`]s. The keys are SipHash values already, so hashing them again with
/// SipHash (std's default) only cost time: the sets took ~7 % of a worker's CPU on a full sync.
type KeySet = std::collections::HashSet<u64, foldhash::fast::RandomState>;

/// Members requested again below the frontier on every page: removals below the frontier
/// between two reads, up to `OVERLAP - 1`, cost no extra request.
pub const OVERLAP: u64 = 3;

/// Ids of the most recently read members kept to anchor reads and skip re-read members.
pub const RECENT: usize = 8192;

/// Ids kept in a checkpoint, to anchor the first read after a resume.
pub const TAIL: usize = 64;

/// Re-reads of a range from its start after growth, before giving up.
pub const MAX_RESTARTS: u32 = 3;

/// Keys of a lane's first members that the lane before it stops at.
pub const HEADS: usize = 16;

/// A member's identity for anchoring: a hash of its id (of its bytes when it has none).
pub fn member_key(identity: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    identity.hash(&mut h);
    h.finish()
}

/// Something a range source returns, with the identity the reader anchors on.
pub trait Keyed {
    /// [`member_key`] of the member.
    fn key(&self) -> u64;
}

/// One response of a [`RangeSource`].
#[derive(Debug)]
pub struct SourcePage<T> {
    /// The members at the requested positions, in insertion order.
    pub items: Vec<T>,
    /// The size of the whole range when the page was read.
    pub total: u64,
}

/// Reads pages of one range at current positions (Mailchimp in production).
pub trait RangeSource {
    /// A member.
    type Item: Keyed;
    /// The source's error.
    type Error;
    /// Fetches current positions `[offset, offset + count)`, `1 <= count <= PAGE_SIZE`.
    fn fetch(
        &self,
        offset: u64,
        count: u64,
    ) -> impl Future<Output = Result<SourcePage<Self::Item>, Self::Error>> + Send;
}

/// Where a reader stands, as stored in the job's arguments after each delivered page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Position just past the last member read, as of the last read.
    pub offset: u64,
    /// The range's size at the last read; `None` right after a restart (no read of the range
    /// since). A resumed reader took the stored 0 for a size and saw the range grow (regression:
    /// a job retried from that checkpoint failed for good at the restart limit). Stored as 0
    /// still, so that checkpoints written before and workers of the version before read the
    /// same: a checkpoint never stores a read size of 0 (a read of an empty range ends it).
    #[serde(with = "unknown_as_zero")]
    pub total: Option<u64>,
    /// Times the range was read again from its start after it grew.
    pub restarts: u32,
    /// Keys of the last members read (at most [`TAIL`]), to anchor the next read.
    pub tail: Vec<u64>,
    /// Where this reader's lane starts, when it is a lane split off another reader.
    #[serde(default)]
    pub lane_start: Option<u64>,
}

/// `Progress::total` on disk: `None` as 0, and 0 as `None`.
mod unknown_as_zero {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(total: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(total.unwrap_or(0))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Ok(Some(u64::deserialize(d)?).filter(|&n| n > 0))
    }
}

/// Why a range could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError<E> {
    /// The source failed.
    #[error(transparent)]
    Source(E),
    /// The range kept growing: changes become visible later than the sync lag allows.
    #[error("the range grew while it was read, {restarts} times: Mailchimp's clock or visibility is off by more than the sync lag")]
    NotFrozen {
        /// Restarts made.
        restarts: u32,
    },
}

/// What one step read.
#[derive(Debug)]
pub struct Step<T> {
    /// Members not read before by this reader, in the order read.
    pub fresh: Vec<T>,
    /// Members the source returned (re-reads included).
    pub members_read: u64,
    /// Requests made.
    pub requests: u64,
    /// Window events seen (the range grew).
    pub events: u32,
    /// The whole range has been read.
    pub done: bool,
}

/// The ids read most recently, with set lookup.
#[derive(Debug, Default)]
struct Recent {
    order: VecDeque<u64>,
    set: KeySet,
}

impl Recent {
    fn contains(&self, key: u64) -> bool {
        self.set.contains(&key)
    }

    /// Adds `key`; returns whether it was new.
    fn insert(&mut self, key: u64) -> bool {
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > RECENT {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    fn tail(&self) -> Vec<u64> {
        let skip = self.order.len().saturating_sub(TAIL);
        self.order.iter().skip(skip).copied().collect()
    }
}

/// Reads one range (or one lane of it) step by step; see the module docs for why nothing is
/// lost.
///
/// **Lanes.** A reader with much left to read can hand the second half of it to a new reader
/// (a lane starting at an offset, [`RangeReader::lane`]) and then stop where that lane starts:
/// at the first of the lane's first members ([`HEADS`] keys, [`RangeReader::set_stop`]) that it
/// meets. The lane's first read needs no anchor: it starts wherever the range stands then, and the
/// reader before it covers every member of lower rank, up to the lane's first member, by its own
/// invariant. If every head left the range before the reader got there, it reads on to the end
/// of the range: more reads, nothing lost. Lanes let idle slots take part of a long range.
#[derive(Debug, Default)]
pub struct RangeReader {
    offset: u64,
    total: Option<u64>,
    restarts: u32,
    recent: Recent,
    done: bool,
    /// Where this lane starts (`None`: offset 0, the whole range).
    lane_start: Option<u64>,
    /// The next read starts a lane: exactly at `offset`, no anchor needed.
    fresh_start: bool,
    /// The keys of the next lane's first members, once known.
    stop: Option<KeySet>,
    /// Where the next lane started (its offset then: its first member is at most there now),
    /// so the page that reaches it asks for no more than that.
    stop_at: Option<u64>,
    /// A page asked up to `stop_at` met none of the stop keys (they left): read full pages.
    stop_missed: bool,
    /// The keys of this lane's first members, after its first read.
    heads: Option<Vec<u64>>,
}

impl RangeReader {
    /// A reader at the start of its range, or where `progress` says it stood.
    pub fn resume(progress: Option<&Progress>) -> RangeReader {
        let mut reader = RangeReader::default();
        if let Some(p) = progress {
            reader.offset = p.offset;
            reader.total = p.total;
            reader.restarts = p.restarts;
            reader.lane_start = p.lane_start;
            for key in &p.tail {
                reader.recent.insert(*key);
            }
        }
        reader
    }

    /// A new lane of a range, starting at `offset` (see the type's docs).
    pub fn lane(offset: u64) -> RangeReader {
        RangeReader {
            offset,
            lane_start: Some(offset),
            fresh_start: true,
            ..RangeReader::default()
        }
    }

    /// A lane read again from its start because its first attempt ended before its first
    /// checkpoint, after recording `heads` ([`RangeReader::heads`]): the reader before it may
    /// already stop at them. So this reader is not fresh: it starts at the lowest of those heads
    /// still in the range, wherever removals below `offset` moved it (its first read anchors on
    /// them, reading down when they slid below `offset`), never at whatever is at `offset` now.
    /// If every head left, it reads down to the range's start: more reads, nothing lost.
    pub fn lane_again(offset: u64, heads: Vec<u64>) -> RangeReader {
        RangeReader {
            offset,
            lane_start: Some(offset),
            heads: Some(heads),
            ..RangeReader::default()
        }
    }

    /// Where the reader stands now.
    pub fn progress(&self) -> Progress {
        Progress {
            offset: self.offset,
            total: self.total,
            restarts: self.restarts,
            tail: self.recent.tail(),
            lane_start: self.lane_start,
        }
    }

    /// Whether the whole range (or lane) has been read.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Members left between the frontier and the end of the range, as of the last read.
    pub fn remaining(&self) -> u64 {
        self.total.unwrap_or(0).saturating_sub(self.offset)
    }

    /// The position just past the last member read, as of the last read.
    pub fn frontier(&self) -> u64 {
        self.offset
    }

    /// The keys of this lane's first members, once its first read is done (for the reader
    /// before it to stop at). `None` before that, and for a reader that is not a lane.
    pub fn heads(&self) -> Option<&[u64]> {
        self.heads.as_deref()
    }

    /// Stops this reader where the next lane starts: at the first of `heads` it meets. If it
    /// has already read one of them, it is done now. An empty `heads` (the lane found nothing)
    /// changes nothing: the reader reads to the end.
    pub fn set_stop(&mut self, heads: &[u64], at: Option<u64>) {
        if heads.is_empty() {
            return;
        }
        if heads.iter().any(|k| self.recent.contains(*k)) {
            self.done = true;
        }
        self.stop = Some(heads.iter().copied().collect());
        self.stop_at = at;
        self.stop_missed = false;
    }

    /// Whether the stop of this reader is known (see [`RangeReader::set_stop`]).
    pub fn has_stop(&self) -> bool {
        self.stop.is_some()
    }

    /// Reads the next page (and, when members slid below it, what slid), returning the members
    /// not read before. Errors: [`ReadError::Source`] (retry later from [`Self::progress`]),
    /// [`ReadError::NotFrozen`].
    pub async fn step<S: RangeSource>(
        &mut self,
        source: &S,
    ) -> Result<Step<S::Item>, ReadError<S::Error>> {
        let frontier = self.offset;
        let fresh_start = std::mem::take(&mut self.fresh_start);
        let q = if fresh_start {
            frontier
        } else {
            frontier.saturating_sub(OVERLAP)
        };
        // Up to the next lane's start when it is near: members past it are the lane's.
        let limit = match (&self.stop, self.stop_at) {
            (Some(_), Some(at)) if !self.stop_missed => {
                Some((at.saturating_sub(q) + OVERLAP + 1).clamp(1, PAGE_SIZE))
            }
            _ => None,
        };
        let count = limit.unwrap_or(PAGE_SIZE);
        let mut main = source.fetch(q, count).await.map_err(ReadError::Source)?;
        if fresh_start && self.heads.is_none() {
            self.heads = Some(main.items.iter().take(HEADS).map(Keyed::key).collect());
        }
        let mut step = Step {
            fresh: Vec::new(),
            members_read: main.items.len() as u64,
            requests: 1,
            events: 0,
            done: false,
        };
        if self.grew(main.total) {
            return self.restart(step, main.items);
        }
        // Positions `[q, q + page_len)` were read, whatever is dropped from the page below.
        let page_len = main.items.len() as u64;
        let before = self.total.unwrap_or(main.total);
        let shrunk = before.saturating_sub(main.total);
        // Whether the count is known not to have moved since the last read: never at a
        // reader's first read, whose count has nothing to compare with.
        let settled = self.total.is_some() && shrunk == 0;
        // A lane's own first members anchor it too: whatever comes before one of them belongs
        // to the reader before the lane (members slid down past the lane's start).
        let own: KeySet = match (self.lane_start, &self.heads) {
            (Some(_), Some(heads)) if !fresh_start => heads.iter().copied().collect(),
            _ => KeySet::default(),
        };
        // A lane read again ([`RangeReader::lane_again`]) has read none of its heads: one found
        // first in a read may have lower ones below it, still in the range, where the reader
        // before it stops. A head with a non-head member before it in the same read is the
        // lowest left (heads were consecutive members, and none can enter between them).
        let strict = self.recent.order.is_empty();
        let own_at = |items: &[S::Item], start: u64| {
            items
                .iter()
                .position(|m| own.contains(&m.key()))
                .filter(|&at| at > 0 || start == 0 || !strict)
        };
        let mut anchored = q == 0
            || fresh_start
            || main
                .items
                .first()
                .is_some_and(|m| self.recent.contains(m.key()));
        if !anchored {
            if let Some(at) = own_at(&main.items, q) {
                main.items.drain(..at);
                anchored = true;
            }
        }
        let mut below = Vec::new();
        let mut shrunk_now = shrunk;
        if !anchored {
            let mut low = q;
            // Removals pro rata of the part already read, with a margin: usually enough.
            let estimate = shrunk.saturating_mul(frontier) / before.max(1);
            let mut back = estimate + estimate / 4 + OVERLAP;
            'search: loop {
                // Read [low - back, low) top down, in pages; anchored when the lowest read starts
                // with a member already read (or one of this lane's first members).
                let target = low.saturating_sub(back);
                while low > target {
                    let start = low.saturating_sub(PAGE_SIZE).max(target);
                    let gap = source
                        .fetch(start, low - start)
                        .await
                        .map_err(ReadError::Source)?;
                    step.requests += 1;
                    step.members_read += gap.items.len() as u64;
                    if gap.total > main.total {
                        below.extend(gap.items);
                        below.extend(main.items);
                        return self.restart(step, below);
                    }
                    // Members may go on leaving while the reader reads down: the shift is
                    // bounded by the drop in count up to this read, not up to the main read.
                    shrunk_now = shrunk_now.max(before.saturating_sub(gap.total));
                    let mut gap_items = gap.items;
                    let mut first_seen = gap_items
                        .first()
                        .is_some_and(|m| self.recent.contains(m.key()));
                    if let Some(at) = own_at(&gap_items, start) {
                        gap_items.drain(..at);
                        first_seen = true;
                    }
                    below.extend(gap_items);
                    low = start;
                    // Counts prove it when ids cannot: positions moved down by at most `shrunk`
                    // (known only with an earlier count: not for a lane read again).
                    let by_count = self.total.is_some()
                        && frontier - start >= shrunk_now + OVERLAP
                        && frontier - start > self.recent.order.len() as u64;
                    if start == 0 || first_seen || by_count {
                        break 'search;
                    }
                }
                back = back.saturating_mul(2);
            }
        }
        // Not the page's length after a lane's own first members cut it: a cut page is not the
        // range's end (regression: a lane read again ended after its first page).
        let read = page_len;
        self.offset = q + read;
        self.total = Some(main.total);
        // A full page that reaches `total` ends the range only when the count is settled. The
        // contract does not say `total_items` is counted in the page's snapshot: counted after
        // a removal, it can fall to the page's end while the page's snapshot still had members
        // past it, which the next read (and its search down) finds.
        self.done = read < count || (q + read >= main.total && settled);
        if let Some(stop) = &self.stop {
            // Everything from the next lane's first member on is that lane's.
            if below.iter().any(|m| stop.contains(&m.key())) {
                self.done = true;
            }
            if let Some(at) = main.items.iter().position(|m| stop.contains(&m.key())) {
                main.items.truncate(at);
                self.done = true;
            } else if limit.is_some_and(|l| l < PAGE_SIZE) {
                // Asked up to where the lane began, and no first member of it is there: they
                // have all left. Read on in full pages to the end of the range.
                self.stop_missed = true;
                self.done = q + read >= main.total && settled;
            }
        }
        step.done = self.done;
        for m in below.into_iter().chain(main.items) {
            if self.recent.insert(m.key()) {
                step.fresh.push(m);
            }
        }
        Ok(step)
    }

    /// Whether a read of size `total` shows the range grew since the last read.
    fn grew(&self, total: u64) -> bool {
        self.total.is_some_and(|before| total > before)
    }

    /// The range grew: what was read is still delivered, and the range is read again from 0.
    fn restart<T: Keyed, E>(
        &mut self,
        mut step: Step<T>,
        items: Vec<T>,
    ) -> Result<Step<T>, ReadError<E>> {
        self.restarts += 1;
        if self.restarts > MAX_RESTARTS {
            return Err(ReadError::NotFrozen {
                restarts: self.restarts - 1,
            });
        }
        self.offset = self.lane_start.unwrap_or(0);
        self.fresh_start = self.lane_start.is_some();
        self.total = None;
        step.events += 1;
        for m in items {
            if self.recent.insert(m.key()) {
                step.fresh.push(m);
            }
        }
        Ok(step)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashSet;
    use std::sync::Mutex;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    struct M(u32);

    impl Keyed for M {
        fn key(&self) -> u64 {
            member_key(&self.0.to_le_bytes())
        }
    }

    /// A range in insertion order; before the i-th fetch, `changes[i]` is applied: removals at
    /// given positions, or members entering at given positions.
    struct Range {
        members: Mutex<Vec<u32>>,
        changes: Mutex<VecDeque<Change>>,
        next_new: Mutex<u32>,
    }

    enum Change {
        Remove(Vec<usize>),
        Enter(Vec<usize>),
        /// Removals while the request runs: the page comes from before them, `total` after.
        RemoveDuringRead(Vec<usize>),
    }

    impl Range {
        fn new(n: u32, changes: Vec<Change>) -> Range {
            Range {
                members: Mutex::new((0..n).collect()),
                changes: Mutex::new(changes.into()),
                next_new: Mutex::new(1_000_000),
            }
        }
    }

    impl RangeSource for Range {
        type Item = M;
        type Error = std::convert::Infallible;
        async fn fetch(&self, offset: u64, count: u64) -> Result<SourcePage<M>, Self::Error> {
            let mut members = self.members.lock().unwrap();
            let mut during_read = Vec::new();
            match self.changes.lock().unwrap().pop_front() {
                Some(Change::Remove(at)) => remove_at(&mut members, at),
                Some(Change::RemoveDuringRead(at)) => during_read = at,
                Some(Change::Enter(at)) => {
                    let mut next = self.next_new.lock().unwrap();
                    for p in at {
                        let at = p.min(members.len());
                        members.insert(at, *next);
                        *next += 1;
                    }
                }
                None => {}
            }
            let start = (offset as usize).min(members.len());
            let end = (start + count as usize).min(members.len());
            let items = members[start..end].iter().map(|&m| M(m)).collect();
            remove_at(&mut members, during_read);
            Ok(SourcePage {
                items,
                total: members.len() as u64,
            })
        }
    }

    fn remove_at(members: &mut Vec<u32>, mut at: Vec<usize>) {
        at.sort_unstable_by(|a, b| b.cmp(a));
        at.dedup();
        for p in at {
            if p < members.len() {
                members.remove(p);
            }
        }
    }

    /// Reads the whole range; returns (every member delivered, requests, members read).
    async fn read_all(range: &Range, reader: &mut RangeReader) -> (Vec<u32>, u64, u64) {
        let (mut got, mut requests, mut read) = (Vec::new(), 0, 0);
        while !reader.is_done() {
            let step = reader.step(range).await.unwrap();
            got.extend(step.fresh.iter().map(|m| m.0));
            requests += step.requests;
            read += step.members_read;
        }
        (got, requests, read)
    }

    fn assert_all_current_delivered_from(range: &Range, got: &[u32], from: u32) {
        let got: HashSet<u32> = got.iter().copied().collect();
        for m in range.members.lock().unwrap().iter().filter(|&&m| m >= from) {
            assert!(
                got.contains(m),
                "member {m} still in the range was never read"
            );
        }
    }

    fn assert_all_current_delivered(range: &Range, got: &[u32]) {
        let got: HashSet<u32> = got.iter().copied().collect();
        for m in range.members.lock().unwrap().iter() {
            assert!(
                got.contains(m),
                "member {m} still in the range was never read"
            );
        }
    }

    #[tokio::test]
    async fn a_range_without_changes_costs_one_request_per_page_and_a_few_overlaps() {
        let range = Range::new(10_000, vec![]);
        let mut reader = RangeReader::default();
        let (got, requests, read) = read_all(&range, &mut reader).await;
        assert_eq!(got.len(), 10_000);
        assert_eq!(
            got.iter().collect::<HashSet<_>>().len(),
            10_000,
            "no duplicates"
        );
        assert!(requests <= 11, "{requests} requests");
        assert!(read <= 10_000 + 11 * OVERLAP, "{read} read");
    }

    #[tokio::test]
    async fn removals_below_the_frontier_are_recovered_by_reading_downwards() {
        // After 3 pages, 700 members below the frontier leave at once.
        let mut changes: Vec<Change> = (0..3).map(|_| Change::Remove(vec![])).collect();
        changes.push(Change::Remove((0..700).map(|i| i * 4).collect()));
        let range = Range::new(8_000, changes);
        let mut reader = RangeReader::default();
        let (got, requests, read) = read_all(&range, &mut reader).await;
        assert_all_current_delivered(&range, &got);
        assert!(requests <= 8 + 3, "{requests} requests");
        assert!(read <= 8_000 + 700 + 300, "{read} read");
    }

    /// Regression: `total_items` counted after removals that the page did not see yet fell to
    /// the page's end, and the range ended with the members past that page never read.
    #[tokio::test]
    async fn a_total_counted_after_removals_the_page_missed_does_not_end_the_range() {
        // The third read (offsets 1994..2994 of 3000) is served from before 600 members below
        // it leave, its total (2400) from after.
        let changes = vec![
            Change::Remove(vec![]),
            Change::Remove(vec![]),
            Change::RemoveDuringRead((0..600).collect()),
        ];
        let range = Range::new(3_000, changes);
        let mut reader = RangeReader::default();
        let (got, requests, _) = read_all(&range, &mut reader).await;
        assert_all_current_delivered(&range, &got);
        assert!(requests <= 3 + 10, "{requests} requests");
    }

    /// Regression: the same at a reader's first read, which had no earlier count to compare
    /// with and took the page's end for the range's.
    #[tokio::test]
    async fn a_first_read_whose_total_was_counted_after_removals_does_not_end_the_range() {
        // 1,200 members; the first read is served from before 400 of its own leave, its total
        // (800) from after.
        let changes = vec![Change::RemoveDuringRead((0..400).collect())];
        let range = Range::new(1_200, changes);
        let mut reader = RangeReader::default();
        let (got, requests, _) = read_all(&range, &mut reader).await;
        assert_all_current_delivered(&range, &got);
        assert!(requests <= 1 + 10, "{requests} requests");
    }

    #[tokio::test]
    async fn removals_right_at_the_frontier_cannot_hide_a_member() {
        // Every read is preceded by the removal of the members just below and at the frontier.
        let changes: Vec<Change> = (0..40)
            .map(|i| {
                let f = (i * 1000usize).saturating_sub(3 * i);
                Change::Remove((f.saturating_sub(5)..f + 2).collect())
            })
            .collect();
        let range = Range::new(12_000, changes);
        let mut reader = RangeReader::default();
        let (got, _, _) = read_all(&range, &mut reader).await;
        assert_all_current_delivered(&range, &got);
    }

    /// Members leaving below a lane's start shift the lane down, and many leaving above it
    /// make the estimate of that shift too large: the lane reads down to its own first members,
    /// never into the part of the reader before it.
    #[tokio::test]
    async fn a_lane_shifted_down_reads_back_to_its_own_start_and_no_further() {
        let range = Range::new(10_000, vec![]);
        let mut lane = RangeReader::lane(6_000);
        let first = lane.step(&range).await.unwrap();
        assert_eq!(first.fresh.first().map(|m| m.0), Some(6_000));
        // A few members below the lane's start leave, and 1,500 far above its frontier.
        range
            .changes
            .lock()
            .unwrap()
            .push_back(Change::Remove((0..10).chain(8_000..9_500).collect()));
        let mut got: Vec<u32> = first.fresh.iter().map(|m| m.0).collect();
        while !lane.is_done() {
            let step = lane.step(&range).await.unwrap();
            got.extend(step.fresh.iter().map(|m| m.0));
        }
        assert!(
            got.iter().all(|&m| m >= 6_000),
            "read into the part before the lane"
        );
        assert_all_current_delivered_from(&range, &got, 6_000);
    }

    /// The heads a lane starting at `offset` records at its first read.
    async fn first_attempt_heads(range: &Range, offset: u64) -> Vec<u64> {
        let mut first_attempt = RangeReader::lane(offset);
        first_attempt.step(range).await.unwrap();
        first_attempt.heads().unwrap().to_vec()
    }

    /// Regression: a lane whose first attempt recorded its heads and then failed before its
    /// first checkpoint was read again from whatever stood at its offset by then, while the
    /// reader before it stopped at the recorded heads: members that slid below the offset in
    /// between were read by neither.
    #[tokio::test]
    async fn a_lane_read_again_before_its_first_checkpoint_starts_at_its_recorded_heads() {
        let range = Range::new(10_000, vec![]);
        let mut parent = RangeReader::default();
        let mut got = Vec::new();
        for _ in 0..2 {
            let step = parent.step(&range).await.unwrap();
            got.extend(step.fresh.iter().map(|m| m.0));
        }
        // The lane's first attempt: reads a page, records its heads, dies undelivered.
        let heads = first_attempt_heads(&range, 6_000).await;
        parent.set_stop(&heads, Some(6_000));
        // 50 members below the lane's start leave before the lane is read again.
        range
            .changes
            .lock()
            .unwrap()
            .push_back(Change::Remove((3_000..3_050).collect()));
        let mut again = RangeReader::lane_again(6_000, heads);
        let (lane_got, _, _) = read_all(&range, &mut again).await;
        let (parent_got, _, _) = read_all(&range, &mut parent).await;
        got.extend(parent_got);
        got.extend(lane_got);
        assert_all_current_delivered(&range, &got);
    }

    /// Regression: a page cut at the lane's own first members counted as a short page, the
    /// range's end, so a lane read again stopped after its first page.
    #[tokio::test]
    async fn a_lane_read_again_without_churn_reads_from_its_heads_to_the_end() {
        let range = Range::new(10_000, vec![]);
        let heads = first_attempt_heads(&range, 6_000).await;
        let mut again = RangeReader::lane_again(6_000, heads);
        let (got, requests, _) = read_all(&range, &mut again).await;
        assert_eq!(got.first(), Some(&6_000));
        assert_eq!(
            got.len(),
            4_000,
            "from its first head to the end, once each"
        );
        assert!(requests <= 5, "{requests} requests");
    }

    /// Regression: reading down after a resume (ids cannot tell: only the checkpoint's tail is
    /// known), the proof by count used the drop in count up to the main read; members that
    /// left during the reads down moved the rest further, and the search stopped too high.
    #[tokio::test]
    async fn removals_during_the_reads_down_count_in_the_proof_by_count() {
        let mut changes: Vec<Change> = (0..3).map(|_| Change::Remove(vec![])).collect();
        changes.push(Change::Remove((0..400).collect()));
        changes.push(Change::Remove((0..200).collect()));
        let range = Range::new(3_000, changes);
        let mut first = RangeReader::default();
        let mut got = Vec::new();
        for _ in 0..3 {
            let step = first.step(&range).await.unwrap();
            got.extend(step.fresh.iter().map(|m| m.0));
        }
        let mut resumed = RangeReader::resume(Some(&first.progress()));
        let (rest, _, _) = read_all(&range, &mut resumed).await;
        got.extend(rest);
        assert_all_current_delivered(&range, &got);
    }

    #[tokio::test]
    async fn a_checkpoint_resumes_without_losing_or_rereading_the_range() {
        let range = Range::new(5_000, vec![]);
        let mut first = RangeReader::default();
        let step = first.step(&range).await.unwrap();
        let mut got: Vec<u32> = step.fresh.iter().map(|m| m.0).collect();
        let saved = first.progress();
        assert_eq!(saved.tail.len(), TAIL);
        // Members leave below the frontier while the job is down.
        range
            .changes
            .lock()
            .unwrap()
            .push_back(Change::Remove((0..200).collect()));
        let mut resumed = RangeReader::resume(Some(&saved));
        let (rest, _, read) = read_all(&range, &mut resumed).await;
        got.extend(rest);
        assert_all_current_delivered(&range, &got);
        assert!(read < 4_000 + 400, "resume re-read {read}");
    }

    #[tokio::test]
    async fn a_range_that_grows_is_read_again_then_refused() {
        let changes = vec![
            Change::Remove(vec![]),
            Change::Enter(vec![10]),
            Change::Remove(vec![]),
        ];
        let range = Range::new(3_000, changes);
        let mut reader = RangeReader::default();
        let mut events = 0;
        let mut got = Vec::new();
        while !reader.is_done() {
            let step = reader.step(&range).await.unwrap();
            events += step.events;
            got.extend(step.fresh.iter().map(|m| m.0));
        }
        assert_eq!(events, 1);
        assert_all_current_delivered(&range, &got);

        let always = Range::new(3_000, (0..50).map(|i| Change::Enter(vec![i])).collect());
        let mut reader = RangeReader::default();
        let err = loop {
            match reader.step(&always).await {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert!(matches!(err, ReadError::NotFrozen { restarts } if restarts == MAX_RESTARTS));
    }

    /// Regression: a checkpoint taken just after a restart stored the range's size as 0, so
    /// the reader resumed from it saw the range grow at its first read, restarted again, and at
    /// the restart limit failed on every retry from that checkpoint.
    #[tokio::test]
    async fn a_reader_resumed_just_after_a_restart_sees_no_growth() {
        let range = Range::new(3_000, vec![Change::Remove(vec![]), Change::Enter(vec![10])]);
        let mut reader = RangeReader::default();
        let first = reader.step(&range).await.unwrap();
        let second = reader.step(&range).await.unwrap();
        assert_eq!((first.events, second.events), (0, 1), "the range grew once");
        let saved = reader.progress();
        assert_eq!(saved.total, None, "no read since the restart");
        let mut resumed = RangeReader::resume(Some(&saved));
        let mut events = 0;
        let mut got: Vec<u32> = first
            .fresh
            .iter()
            .chain(&second.fresh)
            .map(|m| m.0)
            .collect();
        while !resumed.is_done() {
            let step = resumed.step(&range).await.unwrap();
            events += step.events;
            got.extend(step.fresh.iter().map(|m| m.0));
        }
        assert_eq!(
            events, 0,
            "the resumed reader took a range that did not change for one that grew"
        );
        assert_all_current_delivered(&range, &got);
    }

    /// The stored form of a checkpoint's size stays what the version before wrote and reads:
    /// unknown is 0, and a stored 0 (written just after a restart) is unknown.
    #[test]
    fn a_checkpoint_stores_an_unknown_size_as_zero() {
        let unknown = Progress::default();
        let json = serde_json::to_value(&unknown).unwrap();
        assert_eq!(json["total"], 0);
        let known = Progress {
            total: Some(7),
            ..Progress::default()
        };
        assert_eq!(serde_json::to_value(&known).unwrap()["total"], 7);
        let old: Progress =
            serde_json::from_str(r#"{"offset":5,"total":0,"restarts":1,"tail":[]}"#).unwrap();
        assert_eq!((old.offset, old.total, old.restarts), (5, None, 1));
    }

    /// A range split in lanes at several points while it is read (and while members leave):
    /// every member is read by some lane.
    #[tokio::test]
    async fn lanes_split_off_a_reader_cover_the_range_together() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        for seed in 0..20u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let changes: Vec<Change> = (0..200)
                .map(|_| {
                    Change::Remove(
                        (0..rng.gen_range(0..30))
                            .map(|_| rng.gen_range(0..9000))
                            .collect(),
                    )
                })
                .collect();
            let range = Range::new(12_000, changes);
            let mut readers = vec![RangeReader::default()];
            let mut got = Vec::new();
            let mut pending_stops: Vec<(usize, usize)> = Vec::new(); // (reader, lane)
            let mut rounds = 0;
            while readers.iter().any(|r| !r.is_done()) {
                rounds += 1;
                assert!(rounds < 500);
                for i in 0..readers.len() {
                    if readers[i].is_done() {
                        continue;
                    }
                    let step = readers[i].step(&range).await.unwrap();
                    got.extend(step.fresh.iter().map(|m| m.0));
                    // A reader with much left hands half of it to a new lane, sometimes.
                    if !readers[i].is_done() && readers[i].remaining() > 3_000 && rng.gen_bool(0.3)
                    {
                        let r = &readers[i];
                        let mid = r.frontier() + r.remaining() / 2;
                        readers.push(RangeReader::lane(mid));
                        pending_stops.retain(|(reader, _)| *reader != i);
                        pending_stops.push((i, readers.len() - 1));
                    }
                }
                // Stops become known once the lane has read (as through the database).
                pending_stops.retain(|&(reader, lane)| match readers[lane].heads() {
                    Some(heads) => {
                        let heads = heads.to_vec();
                        let at = readers[lane].lane_start;
                        readers[reader].set_stop(&heads, at);
                        false
                    }
                    None => true,
                });
            }
            assert!(readers.len() > 1, "seed {seed} made lanes");
            assert_all_current_delivered(&range, &got);
        }
    }

    /// Random removal schedules, including bursts bigger than the recent-id window.
    #[tokio::test]
    async fn no_member_is_lost_under_random_removals() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        for seed in 0..60u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let n = rng.gen_range(1..20_000u32);
            let mut alive = n as usize;
            let changes: Vec<Change> = (0..60)
                .map(|_| {
                    let k = match rng.gen_range(0..10) {
                        0 => rng.gen_range(0..alive.max(1)),
                        1..=3 => rng.gen_range(0..50),
                        _ => 0,
                    };
                    let at: Vec<usize> = (0..k).map(|_| rng.gen_range(0..alive.max(1))).collect();
                    alive = alive.saturating_sub(k);
                    Change::Remove(at)
                })
                .collect();
            let range = Range::new(n, changes);
            let mut reader = RangeReader::default();
            let (got, _, _) = read_all(&range, &mut reader).await;
            assert_all_current_delivered(&range, &got);
        }
    }
}
