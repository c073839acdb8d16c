//! The Mailchimp simulator: its state behind a cheap handle, and its HTTP router.
//!
//! Serves `/3.0/...` (the API) and `/_sim/...` (the control API, see `control.rs`) on one port.

mod api;
mod auth;
mod churn;
mod control;
mod faults;
mod fields;
mod json;
mod member_parts;
mod member_seed;
mod member_view;
mod members;
mod page;
mod problem;
mod query;
mod selection;
mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use md5::{Digest, Md5};

pub use auth::KeyStats;
pub use faults::MailchimpFaults;
pub use members::MemberDefect;

use crate::config::{ChurnStep, MailchimpSimConfig};
use crate::record::ExpectedRecord;
use crate::{read, write};
use auth::KeyEntry;
use churn::ChurnState;
use faults::FaultState;
use members::ListMeta;
use store::{Clock, ListData};

/// Handle to the Mailchimp simulator's state (cheap to clone).
#[derive(Clone, Debug)]
pub struct MailchimpSim {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    seed: u64,
    config: MailchimpSimConfig,
    keys: RwLock<HashMap<String, Arc<KeyEntry>>>,
    key_counter: AtomicU64,
    lists: RwLock<HashMap<String, Arc<RwLock<ListData>>>>,
    faults: FaultState,
    churn: ChurnState,
    request_counter: AtomicU64,
}

impl MailchimpSim {
    /// An empty simulator (no keys, no lists).
    pub fn new(seed: u64, config: MailchimpSimConfig) -> MailchimpSim {
        MailchimpSim {
            inner: Arc::new(Inner {
                seed,
                keys: RwLock::default(),
                key_counter: AtomicU64::new(0),
                lists: RwLock::default(),
                faults: FaultState::new(seed),
                churn: ChurnState::new(config.churn.clone()),
                config,
                request_counter: AtomicU64::new(0),
            }),
        }
    }

    /// The axum router of the API and the control API.
    pub fn router(&self) -> Router {
        api::routes()
            .merge(control::routes())
            .fallback(api::not_found)
            .with_state(self.clone())
    }

    /// The switches this simulator runs with.
    pub fn config(&self) -> &MailchimpSimConfig {
        &self.inner.config
    }

    /// Registers and returns a new key `<32 hex>-<dc>`, deterministic from the seed and a counter.
    pub fn new_api_key(&self, dc: &str) -> String {
        let n = self.inner.key_counter.fetch_add(1, Ordering::Relaxed);
        let digest = Md5::digest(format!("api-key:{}:{n}", self.inner.seed).as_bytes());
        let key = format!("{}-{dc}", hex::encode(digest));
        self.add_api_key(&key);
        key
    }

    /// Registers `key` (again valid if it was revoked).
    pub fn add_api_key(&self, key: &str) {
        let mut keys = write(&self.inner.keys);
        let entry = keys.entry(key.to_owned()).or_default();
        entry.revoked.store(false, Ordering::Release);
    }

    /// Revokes `key`: its requests get 401 "API Key Invalid".
    pub fn revoke_api_key(&self, key: &str) {
        if let Some(entry) = read(&self.inner.keys).get(key) {
            entry.revoked.store(true, Ordering::Release);
        }
    }

    /// The entry of a registered, valid key.
    fn valid_key(&self, key: &str) -> Option<Arc<KeyEntry>> {
        read(&self.inner.keys)
            .get(key)
            .filter(|e| !e.revoked.load(Ordering::Acquire))
            .cloned()
    }

    /// Creates (or replaces) list `list_id` owned by `api_key` with `members` generated members.
    /// Registers `api_key` if it is unknown.
    pub fn create_list(&self, api_key: &str, list_id: &str, members: usize) {
        if !read(&self.inner.keys).contains_key(api_key) {
            self.add_api_key(api_key);
        }
        let meta = ListMeta::new(self.inner.seed, list_id, api_key, auth::key_dc(api_key));
        let clock = Clock {
            offset_secs: self.inner.config.clock_offset_secs,
            delay: self.inner.config.visibility_delay,
        };
        let list = ListData::new(meta, members, clock);
        write(&self.inner.lists).insert(list_id.to_owned(), Arc::new(RwLock::new(list)));
    }

    fn list(&self, list_id: &str) -> Option<Arc<RwLock<ListData>>> {
        read(&self.inner.lists).get(list_id).cloned()
    }

    /// True when `list_id` exists.
    pub fn has_list(&self, list_id: &str) -> bool {
        self.list(list_id).is_some()
    }

    /// Current member count of a list, as the API shows it now (`None`: unknown list).
    pub fn member_count(&self, list_id: &str) -> Option<usize> {
        self.list(list_id).map(|l| settled(&l).members.len())
    }

    fn mutate(&self, list_id: &str, f: impl FnOnce(&mut ListData) -> Vec<String>) -> Vec<String> {
        match self.list(list_id) {
            Some(list) => {
                let mut l = write(&list);
                l.settle();
                f(&mut l)
            }
            None => {
                tracing::warn!(list_id, "mutation of an unknown list ignored");
                Vec::new()
            }
        }
    }

    /// Changes names (and some statuses) of `n` members spread over the list, `last_changed` =
    /// now; returns their ids (empty for an unknown list).
    pub fn modify_members(&self, list_id: &str, n: usize) -> Vec<String> {
        self.mutate(list_id, |l| l.modify(n))
    }

    /// Serves `n` members of a list broken as `defect` says, from now on; returns their ids.
    pub fn corrupt_members(&self, list_id: &str, n: usize, defect: MemberDefect) -> Vec<String> {
        self.mutate(list_id, |l| l.corrupt(n, defect))
    }

    /// Moves `last_changed` of `n` members spread over the list to now, with nothing mapped
    /// changing (a re-import of the same data); returns their ids.
    pub fn touch_members(&self, list_id: &str, n: usize) -> Vec<String> {
        self.mutate(list_id, |l| l.touch(n))
    }

    /// Applies one churn step to a list now (shares of its current size); returns the ids it
    /// changed (also kept: [`MailchimpSim::churned`]).
    pub fn churn_list(&self, list_id: &str, step: &ChurnStep) -> Vec<String> {
        let Some(size) = self.member_count(list_id) else {
            return Vec::new();
        };
        let n = |share: f64| (share * size as f64).round() as usize;
        let mut ids = self.modify_members(list_id, n(step.modify));
        ids.extend(self.touch_members(list_id, n(step.touch)));
        ids.extend(self.delete_members(list_id, n(step.delete)));
        ids.extend(self.archive_members(list_id, n(step.archive)));
        ids.extend(self.add_members(list_id, n(step.add)));
        self.inner.churn.log(list_id, &ids);
        ids
    }

    /// Every id the churn plan changed in a list so far.
    pub fn churned(&self, list_id: &str) -> Vec<String> {
        self.inner.churn.changed(list_id)
    }

    /// Replaces the churn plan (and restarts its request counts).
    pub fn set_churn(&self, steps: Vec<ChurnStep>) {
        self.inner.churn.set(steps);
    }

    /// The churn plan.
    pub fn churn(&self) -> Vec<ChurnStep> {
        self.inner.churn.steps()
    }

    /// Adds `n` members at the end of the insertion order, `last_changed` = now; returns ids.
    pub fn add_members(&self, list_id: &str, n: usize) -> Vec<String> {
        self.mutate(list_id, |l| l.add(n))
    }

    /// Permanently deletes `n` members spread over the list; returns their ids.
    pub fn delete_members(&self, list_id: &str, n: usize) -> Vec<String> {
        self.mutate(list_id, |l| l.delete(n))
    }

    /// Archives `n` members spread over the list, `last_changed` = now; returns their ids.
    pub fn archive_members(&self, list_id: &str, n: usize) -> Vec<String> {
        self.mutate(list_id, |l| l.archive(n))
    }

    /// The members of a list the API shows now, mapped as CONTRACTS.md says (empty for an
    /// unknown list). With a visibility delay, changes not visible yet are not in it.
    pub fn expected_records(&self, list_id: &str) -> Vec<ExpectedRecord> {
        self.list(list_id)
            .map(|l| settled(&l).expected())
            .unwrap_or_default()
    }

    /// Replaces the fault switches.
    pub fn set_faults(&self, faults: MailchimpFaults) {
        self.inner.faults.set(faults);
    }

    /// The current fault switches (with what is left of a 429 burst).
    pub fn faults(&self) -> MailchimpFaults {
        self.inner.faults.get()
    }

    /// Counters of `api_key` (zeros for an unknown key).
    pub fn key_stats(&self, api_key: &str) -> KeyStats {
        read(&self.inner.keys)
            .get(api_key)
            .map(|e| e.stats())
            .unwrap_or_default()
    }

    /// Zeroes every key's counters.
    pub fn reset_stats(&self) {
        for entry in read(&self.inner.keys).values() {
            entry.reset();
        }
    }
}

/// The list with every change whose visibility delay has passed applied, read-locked.
fn settled(list: &RwLock<ListData>) -> std::sync::RwLockReadGuard<'_, ListData> {
    if read(list).has_due() {
        write(list).settle();
    }
    read(list)
}
