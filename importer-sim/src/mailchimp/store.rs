//! One list's members in insertion order, and the mutations the control API applies to them.
//!
//! Mutations pick members spread evenly over the list (from a per-list seeded RNG) and stamp
//! `last_changed` with the current second. Modified and archived members keep their place in
//! insertion order; deleted members are removed; added members go to the end.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::members::{first_name, last_name, mix, ListMeta, Member, Status};
use super::query::SelectionKey;
use crate::lock;
use crate::record::Record;

/// Filtered selections kept per list (each up to 4 bytes per member).
const CACHED_SELECTIONS: usize = 4;

/// A list and its members.
#[derive(Debug)]
pub(crate) struct ListData {
    pub meta: Arc<ListMeta>,
    pub members: Vec<Member>,
    next_seq: u32,
    rng: StdRng,
    /// Positions of recent filtered selections; cleared by every mutation.
    selections: Mutex<VecDeque<(SelectionKey, Arc<Vec<u32>>)>>,
}

/// The current second.
fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl ListData {
    /// A list with `n` generated members.
    pub(crate) fn new(meta: ListMeta, n: usize) -> ListData {
        let members = meta.generate(n);
        let rng = StdRng::seed_from_u64(mix(meta.seed, 0x0017_A7E5));
        ListData {
            next_seq: u32::try_from(members.len()).unwrap_or(u32::MAX),
            meta: Arc::new(meta),
            members,
            rng,
            selections: Mutex::default(),
        }
    }

    /// The positions of selection `key`, computed by `compute` unless cached. Called under the
    /// list's read lock, so a cached entry always belongs to the current members.
    pub(crate) fn cached(
        &self,
        key: SelectionKey,
        compute: impl FnOnce() -> Vec<u32>,
    ) -> Arc<Vec<u32>> {
        if let Some((_, hit)) = lock(&self.selections).iter().find(|(k, _)| *k == key) {
            return Arc::clone(hit);
        }
        // Computed outside the cache lock so concurrent pages of other windows do not wait.
        let positions = Arc::new(compute());
        let mut cache = lock(&self.selections);
        if cache.len() >= CACHED_SELECTIONS {
            cache.pop_front();
        }
        cache.push_back((key, Arc::clone(&positions)));
        positions
    }

    /// Forgets cached selections; every mutation calls it (it holds the write lock).
    fn changed(&mut self) {
        self.selections
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
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
        self.changed();
        let now = now();
        let positions = self.positions(n, |m| m.status != Status::Archived);
        let mut ids = Vec::with_capacity(positions.len());
        for i in positions {
            let toggle = self.rng.gen_bool(0.3);
            let meta = Arc::clone(&self.meta);
            let m = &mut self.members[i];
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
        }
        ids
    }

    /// Appends `n` new members signed up now.
    pub(crate) fn add(&mut self, n: usize) -> Vec<String> {
        self.changed();
        let now = now();
        let mut ids = Vec::with_capacity(n);
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
            self.members.push(m);
        }
        ids
    }

    /// Permanently deletes `n` members.
    pub(crate) fn delete(&mut self, n: usize) -> Vec<String> {
        self.changed();
        let positions = self.positions(n, |_| true);
        let ids = positions
            .iter()
            .map(|&i| hex::encode(self.members[i].id))
            .collect();
        let mut doomed = vec![false; self.members.len()];
        for i in positions {
            doomed[i] = true;
        }
        let mut index = 0;
        self.members.retain(|_| {
            index += 1;
            !doomed[index - 1]
        });
        ids
    }

    /// Archives `n` members that are not archived yet.
    pub(crate) fn archive(&mut self, n: usize) -> Vec<String> {
        self.changed();
        let now = now();
        let positions = self.positions(n, |m| m.status != Status::Archived);
        positions
            .into_iter()
            .map(|i| {
                let m = &mut self.members[i];
                m.status = Status::Archived;
                m.last_changed = now;
                hex::encode(m.id)
            })
            .collect()
    }

    /// Every current member as the destination should hold it (CONTRACTS.md mapping).
    pub(crate) fn expected(&self) -> Vec<Record> {
        self.members
            .iter()
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
        ListData::new(ListMeta::new(3, "l1", "k", "us1"), n)
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
