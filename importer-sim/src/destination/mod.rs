//! The destination records API simulator: keys, stored records, faults and verification.
//!
//! Records are stored per destination key, one per `id` (last write wins). The HTTP side is
//! in `api.rs` (`POST /record` and the `/_sim` control routes).

mod api;
mod validate;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::config::DestinationSimConfig;
use crate::lock;
use crate::mailchimp::MailchimpSim;
use crate::record::{ExpectedRecord, Record, StoredRecord};

/// Fault switches of the destination; `Default` injects nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DestinationFaults {
    /// Share of requests answered 500 or 503 (nothing stored).
    pub error_rate: f64,
    /// Share of requests that store all but the last record and answer `accepted = sent - 1`.
    pub short_count_rate: f64,
    /// Share of requests that sleep `hang` before being processed normally.
    pub hang_rate: f64,
    /// How long a hanging request sleeps.
    #[serde(rename = "hang_ms", with = "crate::config::millis")]
    pub hang: Duration,
}

/// What [`DestinationSim::damage`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Damage {
    /// Records removed.
    pub dropped: Vec<String>,
    /// Records whose first name was changed.
    pub altered: Vec<String>,
}

/// Counters of one destination key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationStats {
    /// Authenticated `POST /record` requests (valid or not).
    pub requests: u64,
    /// Records in valid batches that reached storage (a short count's dropped record included).
    pub records_received: u64,
    /// Records stored now (one per id).
    pub distinct_ids: usize,
    /// Records stored for an id that was already stored.
    pub duplicates_received: u64,
}

/// Stored records compared with an expected set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Number of expected records.
    pub expected: usize,
    /// Expected ids present at the destination (with any values).
    pub delivered: usize,
    /// Expected ids not stored.
    pub missing: Vec<String>,
    /// Expected ids stored with different values.
    pub stale: Vec<String>,
    /// Stored ids that were not expected.
    pub unexpected: Vec<String>,
}

impl Verification {
    /// True when every expected record is stored with its expected values.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.stale.is_empty()
    }
}

/// What one `POST /record` does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Fault {
    None,
    Error { unavailable: bool },
    ShortCount,
    Hang(Duration),
}

#[derive(Debug, Default)]
struct KeyStore {
    records: HashMap<String, Record>,
    stats: DestinationStats,
}

/// Handle to the destination simulator's state (cheap to clone).
#[derive(Clone, Debug)]
pub struct DestinationSim {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: DestinationSimConfig,
    keys: Mutex<HashMap<String, KeyStore>>,
    faults: Mutex<(DestinationFaults, StdRng)>,
    mailchimp: Option<MailchimpSim>,
}

impl DestinationSim {
    /// An empty destination; `mailchimp` enables `GET /_sim/verify?mailchimp_list=…`.
    pub fn new(seed: u64, config: DestinationSimConfig, mailchimp: Option<MailchimpSim>) -> Self {
        DestinationSim {
            inner: Arc::new(Inner {
                config,
                keys: Mutex::default(),
                faults: Mutex::new((
                    DestinationFaults::default(),
                    StdRng::seed_from_u64(seed ^ 0xDE57),
                )),
                mailchimp,
            }),
        }
    }

    /// The axum router of `POST /record` and the control API.
    pub fn router(&self) -> Router {
        api::routes().with_state(self.clone())
    }

    /// The switches this simulator runs with.
    pub fn config(&self) -> &DestinationSimConfig {
        &self.inner.config
    }

    /// Registers a destination key.
    pub fn add_key(&self, key: &str) {
        lock(&self.inner.keys).entry(key.to_owned()).or_default();
    }

    fn has_key(&self, key: &str) -> bool {
        lock(&self.inner.keys).contains_key(key)
    }

    /// Replaces the fault switches.
    pub fn set_faults(&self, faults: DestinationFaults) {
        lock(&self.inner.faults).0 = faults;
    }

    /// The current fault switches.
    pub fn faults(&self) -> DestinationFaults {
        lock(&self.inner.faults).0.clone()
    }

    fn draw(&self) -> Fault {
        let mut guard = lock(&self.inner.faults);
        let (faults, rng) = &mut *guard;
        let roll: f64 = rng.gen();
        if roll < faults.error_rate {
            return Fault::Error {
                unavailable: rng.gen_bool(0.5),
            };
        }
        if roll < faults.error_rate + faults.short_count_rate {
            return Fault::ShortCount;
        }
        if roll < faults.error_rate + faults.short_count_rate + faults.hang_rate {
            return Fault::Hang(faults.hang);
        }
        Fault::None
    }

    fn count_request(&self, key: &str) {
        if let Some(store) = lock(&self.inner.keys).get_mut(key) {
            store.stats.requests += 1;
        }
    }

    /// Upserts the first `keep` records of a batch; returns how many were stored.
    fn store(&self, key: &str, records: Vec<Record>, keep: usize) -> usize {
        let mut keys = lock(&self.inner.keys);
        let store = keys.entry(key.to_owned()).or_default();
        store.stats.records_received += records.len() as u64;
        let mut stored = 0;
        for record in records.into_iter().take(keep) {
            if store.records.insert(record.id.clone(), record).is_some() {
                store.stats.duplicates_received += 1;
            }
            stored += 1;
        }
        stored
    }

    /// The records stored for `key`, sorted by id.
    pub fn records(&self, key: &str) -> Vec<StoredRecord> {
        let mut records: Vec<Record> = lock(&self.inner.keys)
            .get(key)
            .map(|s| s.records.values().cloned().collect())
            .unwrap_or_default();
        records.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        records
    }

    /// Counters of `key` (zeros for an unknown key).
    pub fn stats(&self, key: &str) -> DestinationStats {
        lock(&self.inner.keys)
            .get(key)
            .map(|s| DestinationStats {
                distinct_ids: s.records.len(),
                ..s.stats.clone()
            })
            .unwrap_or_default()
    }

    /// Injects drift the importer did not cause (a restored backup, a bug at the destination):
    /// drops `drop` stored records of `key` and alters the first name of `alter` others, spread
    /// evenly over the records by id. Counters are untouched. Returns the ids, sorted.
    pub fn damage(&self, key: &str, drop: usize, alter: usize) -> Damage {
        let mut keys = lock(&self.inner.keys);
        let Some(store) = keys.get_mut(key) else {
            return Damage::default();
        };
        let mut ids: Vec<String> = store.records.keys().cloned().collect();
        ids.sort_unstable();
        let want = (drop + alter).min(ids.len());
        let step = ids.len().checked_div(want).unwrap_or(1);
        let picked: Vec<String> = ids.into_iter().step_by(step.max(1)).take(want).collect();
        let mut damage = Damage::default();
        for (i, id) in picked.into_iter().enumerate() {
            if i < drop {
                store.records.remove(&id);
                damage.dropped.push(id);
            } else if let Some(record) = store.records.get_mut(&id) {
                record.firstname = format!("{} (altered)", record.firstname);
                damage.altered.push(id);
            }
        }
        damage.dropped.sort_unstable();
        damage.altered.sort_unstable();
        damage
    }

    /// Forgets the records and counters of `key` (the key stays registered).
    pub fn clear(&self, key: &str) {
        if let Some(store) = lock(&self.inner.keys).get_mut(key) {
            *store = KeyStore::default();
        }
    }

    /// Compares what `key` holds with `expected`; the id lists are sorted.
    pub fn verify(&self, key: &str, expected: &[ExpectedRecord]) -> Verification {
        let keys = lock(&self.inner.keys);
        let empty = HashMap::new();
        let stored = keys.get(key).map_or(&empty, |s| &s.records);
        let mut v = Verification {
            expected: expected.len(),
            ..Verification::default()
        };
        let mut wanted = HashSet::with_capacity(expected.len());
        for e in expected {
            wanted.insert(e.id.as_str());
            match stored.get(&e.id) {
                None => v.missing.push(e.id.clone()),
                Some(s) => {
                    v.delivered += 1;
                    if s != e {
                        v.stale.push(e.id.clone());
                    }
                }
            }
        }
        v.unexpected = stored
            .keys()
            .filter(|id| !wanted.contains(id.as_str()))
            .cloned()
            .collect();
        v.missing.sort_unstable();
        v.stale.sort_unstable();
        v.unexpected.sort_unstable();
        v
    }

    /// Verifies `key` against the current members of a list of the in-process Mailchimp
    /// simulator; `None` when there is none or the list is unknown.
    pub fn verify_list(&self, key: &str, list_id: &str) -> Option<Verification> {
        let mailchimp = self.inner.mailchimp.as_ref()?;
        if !mailchimp.has_list(list_id) {
            return None;
        }
        Some(self.verify(key, &mailchimp.expected_records(list_id)))
    }
}
