//! Simulators of the Mailchimp Marketing API (list members) and of the destination records API,
//! with fault injection, for tests, the demo, benchmarks and docker-compose.
//!
//! [`start`] serves both on `127.0.0.1:0`; the returned [`Sim`] gives their URLs and handles to
//! their state ([`MailchimpSim`], [`DestinationSim`]) to seed data, inject faults and inspect
//! what arrived. CONTRACTS.md is the spec of both APIs.

mod config;
mod destination;
mod mailchimp;
mod record;
mod server;

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use config::{
    ChurnStep, DestinationSimConfig, MailchimpSimConfig, SeedAccount, SeedList, SimConfig,
};
pub use destination::{Damage, DestinationFaults, DestinationSim, DestinationStats, Verification};
pub use mailchimp::{KeyStats, MailchimpFaults, MailchimpSim, MemberDefect};
pub use record::{ExpectedRecord, Record, StoredRecord};
pub use server::{start, start_on, Sim};

// State stays consistent even if a holder panicked (every critical section is a few plain
// assignments), so poisoning is ignored rather than turned into a panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}
