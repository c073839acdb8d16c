//! One list's members in insertion order, and the mutations the control API applies to them.
//!
//! Mutations pick members spread evenly over the list (from a per-list seeded RNG) and stamp
//! `last_changed` with the current second of Mailchimp's clock (ours plus
//! `clock_offset_secs`). Modified and archived members keep their place in insertion order;
//! deleted members are removed; added members go to the end. With a visibility delay, a change
//! is queued and applied only once the delay has passed: until then requests see the member as
//! it was (a new member not at all, a deleted one still), as Mailchimp does with bulk changes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::members::{first_name, last_name, mix, ListMeta, Member, MemberDefect, Status};
use super::selection::{SelectionCache, SelectionKey};
use crate::record::Record;

/// Mailchimp's clock and how late its changes become visible.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Clock {
    /// Mailchimp's clock minus ours, in seconds.
    pub offset_secs: i64,
    /// How long after it is made a change becomes visible.
    pub delay: Duration,
}

impl Clock {
    /// The current second on Mailchimp's clock.
    fn now(&self) -> i64 {
        chrono::Utc::now().timestamp() + self.offset_secs
    }
}

/// A change waiting to become visible.
#[derive(Debug)]
struct Pending {
    visible_at: Instant,
    change: Change,
}

#[derive(Debug)]
enum Change {
    /// The member with this `seq` now looks like this (appended when new).
    Upsert(Member),
    /// The member with this `seq` is gone.
    Delete(u32),
}

/// A list and its members.
#[derive(Debug)]
pub(crate) struct ListData {
    pub meta: Arc<ListMeta>,
    pub members: Vec<Member>,
    next_seq: u32,
    rng: StdRng,
    clock: Clock,
    /// Changes not visible yet, oldest first (one delay for all, so in visibility order).
    pending: VecDeque<Pending>,
    /// Positions of recent filtered selections; cleared by every mutation.
    selections: SelectionCache,
}

impl ListData {
    /// A list with `n` generated members.
    pub(crate) fn new(meta: ListMeta, n: usize, clock: Clock) -> ListData {
        let members = meta.generate(n);
        let rng = StdRng::seed_from_u64(mix(meta.seed, 0x0017_A7E5));
        ListData {
            next_seq: u32::try_from(members.len()).unwrap_or(u32::MAX),
            meta: Arc::new(meta),
            members,
            rng,
            clock,
            pending: VecDeque::new(),
            selections: SelectionCache::default(),
        }
    }

    /// Whether a queued change has become visible (then [`ListData::settle`] applies it).
    pub(crate) fn has_due(&self) -> bool {
        self.pending
            .front()
            .is_some_and(|p| p.visible_at <= Instant::now())
    }

    /// Applies the queued changes whose delay has passed.
    pub(crate) fn settle(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        while self.pending.front().is_some_and(|p| p.visible_at <= now) {
            if let Some(p) = self.pending.pop_front() {
                due.push(p.change);
            }
        }
        self.apply(due);
    }

    /// Changes made now: applied at once, or queued for the visibility delay.
    fn record(&mut self, changes: Vec<Change>) {
        if self.clock.delay.is_zero() {
            self.apply(changes);
            return;
        }
        let visible_at = Instant::now() + self.clock.delay;
        self.pending.extend(
            changes
                .into_iter()
                .map(|change| Pending { visible_at, change }),
        );
    }

    fn apply(&mut self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        self.changed();
        let mut index: HashMap<u32, usize> = self
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.seq, i))
            .collect();
        let mut doomed = vec![false; self.members.len()];
        for change in changes {
            match change {
                Change::Upsert(m) => match index.get(&m.seq) {
                    Some(&i) if !doomed.get(i).copied().unwrap_or(false) => self.members[i] = m,
                    Some(_) => {}
                    None => {
                        index.insert(m.seq, self.members.len());
                        self.members.push(m);
                        doomed.push(false);
                    }
                },
                Change::Delete(seq) => {
                    if let Some(&i) = index.get(&seq) {
                        doomed[i] = true;
                    }
                }
            }
        }
        let mut i = 0;
        self.members.retain(|_| {
            i += 1;
            !doomed[i - 1]
        });
    }

    /// The positions of selection `key`, computed by `compute` unless cached. Called under the
    /// list's read lock, so a cached entry always belongs to the current members.
    pub(crate) fn cached(
        &self,
        key: SelectionKey,
        compute: impl FnOnce() -> Vec<u32>,
    ) -> Arc<Vec<u32>> {
        self.selections.get_or_compute(key, compute)
    }

    /// Forgets cached selections; every mutation calls it (it holds the write lock).
    fn changed(&mut self) {
        self.selections.clear();
    }

    /// Up to `n` positions among `candidates`, evenly spread from a random start.
    fn spread(&mut self, candidates: &[usize], n: usize) -> Vec<usize> {
        let n = n.min(candidates.len());
        if n == 0 {
            return Vec::new();
        }
        let step = candidates.len() / n;
        let start = self.rng.gen_range(0..step);
        (0..n).map(|i| candidates[start + i * step]).collect()
    }

    fn positions(&mut self, n: usize, pick: impl Fn(&Member) -> bool) -> Vec<usize> {
        let candidates: Vec<usize> = (0..self.members.len())
            .filter(|&i| pick(&self.members[i]))
            .collect();
        self.spread(&candidates, n)
    }

    /// Changes the names (and for some the status) of `n` non-archived members.
    pub(crate) fn modify(&mut self, n: usize) -> Vec<String> {
        let now = self.clock.now();
        let positions = self.positions(n, |m| m.status != Status::Archived);
        let mut ids = Vec::with_capacity(positions.len());
        let mut changes = Vec::with_capacity(positions.len());
        for i in positions {
            let toggle = self.rng.gen_bool(0.3);
            let meta = Arc::clone(&self.meta);
            let mut m = self.members[i];
            // New names until they differ, so the change is visible in the mapped record.
            let before = (m.first, m.last);
            for _ in 0..64 {
                m.revision = m.revision.wrapping_add(1);
                (m.first, m.last) = meta.names(m.seq, m.revision);
                if (m.first, m.last) != before {
                    break;
                }
            }
            if toggle {
                m.status = match m.status {
                    Status::Subscribed => Status::Unsubscribed,
                    Status::Unsubscribed => Status::Subscribed,
                    other => other,
                };
            }
            m.last_changed = now;
            ids.push(hex::encode(m.id));
            changes.push(Change::Upsert(m));
        }
        self.record(changes);
        ids
    }

    /// Changes the interests and tags of `n` members, moving their `last_changed` to now, with
    /// nothing we map changing (what a tag or a group change does in Mailchimp).
    pub(crate) fn touch(&mut self, n: usize) -> Vec<String> {
        let now = self.clock.now();
        let positions = self.positions(n, |_| true);
        let mut ids = Vec::with_capacity(positions.len());
        let mut changes = Vec::with_capacity(positions.len());
        for i in positions {
            let mut m = self.members[i];
            m.last_changed = now;
            m.touches = m.touches.wrapping_add(1);
            ids.push(hex::encode(m.id));
            changes.push(Change::Upsert(m));
        }
        self.record(changes);
        ids
    }

    /// Appends `n` new members signed up now.
    pub(crate) fn add(&mut self, n: usize) -> Vec<String> {
        let now = self.clock.now();
        let mut ids = Vec::with_capacity(n);
        let mut changes = Vec::with_capacity(n);
        for _ in 0..n {
            let seq = self.next_seq;
            self.next_seq = self.next_seq.saturating_add(1);
            let status = if self.rng.gen_bool(0.9) {
                Status::Subscribed
            } else {
                Status::Pending
            };
            let opt = if status == Status::Pending { 0 } else { now };
            let m = self.meta.member(seq, status, now, opt, now);
            ids.push(hex::encode(m.id));
            changes.push(Change::Upsert(m));
        }
        self.record(changes);
        ids
    }

    /// Permanently deletes `n` members.
    pub(crate) fn delete(&mut self, n: usize) -> Vec<String> {
        let positions = self.positions(n, |_| true);
        let ids = positions
            .iter()
            .map(|&i| hex::encode(self.members[i].id))
            .collect();
        let changes = positions
            .iter()
            .map(|&i| Change::Delete(self.members[i].seq))
            .collect();
        self.record(changes);
        ids
    }

    /// Archives `n` members that are not archived yet.
    pub(crate) fn archive(&mut self, n: usize) -> Vec<String> {
        let now = self.clock.now();
        let positions = self.positions(n, |m| m.status != Status::Archived);
        let mut ids = Vec::with_capacity(positions.len());
        let mut changes = Vec::with_capacity(positions.len());
        for i in positions {
            let mut m = self.members[i];
            m.status = Status::Archived;
            m.last_changed = now;
            ids.push(hex::encode(m.id));
            changes.push(Change::Upsert(m));
        }
        self.record(changes);
        ids
    }

    /// Serves `n` members broken in the way `defect` says (nothing else about them changes);
    /// returns their ids.
    pub(crate) fn corrupt(&mut self, n: usize, defect: MemberDefect) -> Vec<String> {
        self.changed();
        let positions = self.positions(n, |m| m.defect.is_none());
        positions
            .into_iter()
            .map(|i| {
                self.members[i].defect = Some(defect);
                hex::encode(self.members[i].id)
            })
            .collect()
    }

    /// Every current member as the destination should hold it (CONTRACTS.md mapping); broken
    /// members are rejected records, not expected there.
    pub(crate) fn expected(&self) -> Vec<Record> {
        self.members
            .iter()
            .filter(|m| m.defect.is_none())
            .map(|m| Record {
                id: hex::encode(m.id),
                firstname: first_name(m.first).to_owned(),
                lastname: last_name(m.last).to_owned(),
                email: self.meta.email(m.seq),
                status: m.status.as_str().to_owned(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(n: usize) -> ListData {
        ListData::new(ListMeta::new(3, "l1", "k", "us1"), n, Clock::default())
    }

    #[test]
    fn modified_members_keep_their_place_and_change_their_record() {
        let mut l = list(100);
        let before = l.expected();
        let ids = l.modify(10);
        assert_eq!(ids.len(), 10);
        let after = l.expected();
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(b.id, a.id, "insertion order is stable");
            assert_eq!(ids.contains(&a.id), b != a);
        }
    }

    #[test]
    fn delete_removes_and_add_appends() {
        let mut l = list(50);
        let gone = l.delete(5);
        assert_eq!(l.members.len(), 45);
        assert!(l.expected().iter().all(|r| !gone.contains(&r.id)));
        let new = l.add(3);
        let tail: Vec<String> = l.expected()[45..].iter().map(|r| r.id.clone()).collect();
        assert_eq!(tail, new);
    }

    #[test]
    fn changes_are_stamped_on_mailchimps_clock_and_visible_after_the_delay() {
        let clock = Clock {
            offset_secs: -3600,
            delay: Duration::from_millis(200),
        };
        let mut l = ListData::new(ListMeta::new(3, "l1", "k", "us1"), 100, clock);
        let before = l.expected();
        let ids = l.modify(5);
        l.add(2);
        l.delete(1);
        assert_eq!(l.expected(), before, "nothing is visible yet");
        assert!(!l.has_due());
        std::thread::sleep(Duration::from_millis(250));
        assert!(l.has_due());
        l.settle();
        assert_eq!(l.members.len(), 101);
        let stamped: Vec<i64> = l
            .members
            .iter()
            .filter(|m| ids.contains(&hex::encode(m.id)))
            .map(|m| m.last_changed)
            .collect();
        let ours = chrono::Utc::now().timestamp();
        assert!(stamped
            .iter()
            .all(|&t| (ours - 3600 - 2..=ours - 3600).contains(&t)));
    }

    #[test]
    fn touched_members_keep_their_record() {
        let mut l = list(50);
        let before = l.expected();
        let ids = l.touch(10);
        assert_eq!(ids.len(), 10);
        assert_eq!(l.expected(), before);
    }

    #[test]
    fn archive_sets_the_status_once() {
        let mut l = list(30);
        let total = l
            .members
            .iter()
            .filter(|m| m.status != Status::Archived)
            .count();
        assert_eq!(l.archive(1000).len(), total);
        assert!(l.archive(1).is_empty());
    }
}
