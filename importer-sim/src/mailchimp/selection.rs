//! What identifies a filtered and sorted set of a list's members ([`SelectionKey`]), and the
//! per-list cache of their positions ([`SelectionCache`]).
//!
//! Below both `query.rs` (which computes selections) and `store.rs` (which owns a cache per
//! list and clears it on every mutation), so neither has to know the other's internals.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use super::members::Status;
use crate::lock;

/// Filtered selections kept per list (each up to 4 bytes per member): one per range a run reads
/// in parallel, and then some.
const CACHED_SELECTIONS: usize = 64;

/// A `sort_field` of the members endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SortField {
    TimestampOpt,
    TimestampSignup,
    LastChanged,
}

/// The filter and order of a query: equal keys select the same members from one list version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SelectionKey {
    /// `since_last_changed`, in nanoseconds.
    pub since: Option<i64>,
    /// `before_last_changed`, in nanoseconds.
    pub before: Option<i64>,
    /// `status`.
    pub status: Option<Status>,
    /// `sort_field` and whether `sort_dir` is `DESC`.
    pub sort: Option<(SortField, bool)>,
    /// Whether `since_last_changed` includes its own second.
    pub inclusive_since: bool,
}

/// Positions of recent selections of one list, oldest first.
#[derive(Debug, Default)]
pub(crate) struct SelectionCache {
    entries: Mutex<VecDeque<(SelectionKey, Arc<Vec<u32>>)>>,
}

impl SelectionCache {
    /// The positions of selection `key`, computed by `compute` unless cached.
    pub(crate) fn get_or_compute(
        &self,
        key: SelectionKey,
        compute: impl FnOnce() -> Vec<u32>,
    ) -> Arc<Vec<u32>> {
        if let Some((_, hit)) = lock(&self.entries).iter().find(|(k, _)| *k == key) {
            return Arc::clone(hit);
        }
        // Computed outside the cache lock so concurrent pages of other windows do not wait.
        let positions = Arc::new(compute());
        let mut cache = lock(&self.entries);
        if cache.len() >= CACHED_SELECTIONS {
            cache.pop_front();
        }
        cache.push_back((key, Arc::clone(&positions)));
        positions
    }

    /// Forgets every selection; `&mut` because the list's owner holds its write lock then.
    pub(crate) fn clear(&mut self) {
        self.entries
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
