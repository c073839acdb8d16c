//! Fault injection on the members endpoint: errors, 429 bursts, hangs, resets, bad bodies.
//!
//! Each members request draws one outcome from a seeded RNG (rates add up; the remainder is a
//! normal answer). A 429 burst answers the next N member requests with 429 before any draw.

use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::lock;

/// Fault switches of the Mailchimp simulator; `Default` injects nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailchimpFaults {
    /// Share of member requests answered 500 or 503 (problem+json).
    pub error_rate: f64,
    /// The next N member requests answer 429.
    pub burst_429: u32,
    /// `Retry-After` seconds of burst 429s; falls back to the config's `retry_after_on_429`.
    pub retry_after: Option<u64>,
    /// Share of member requests that sleep `hang` before answering normally.
    pub hang_rate: f64,
    /// How long a hanging request sleeps.
    #[serde(rename = "hang_ms", with = "crate::config::millis")]
    pub hang: Duration,
    /// Share of member requests whose connection is aborted in the middle of the body.
    pub reset_rate: f64,
    /// Share of member requests answered 200 with a body that is not JSON.
    pub malformed_rate: f64,
    /// Share of member requests answered 200 with the JSON cut in the middle.
    pub truncated_rate: f64,
}

/// What one members request does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Fault {
    None,
    Burst429 { retry_after: Option<u64> },
    Error { unavailable: bool },
    Hang(Duration),
    Reset,
    Malformed,
    Truncated,
}

/// The switches, the remaining burst and the RNG.
#[derive(Debug)]
pub(crate) struct FaultState {
    inner: Mutex<(MailchimpFaults, StdRng)>,
}

impl FaultState {
    pub(crate) fn new(seed: u64) -> FaultState {
        FaultState {
            inner: Mutex::new((
                MailchimpFaults::default(),
                StdRng::seed_from_u64(seed ^ 0xFA17),
            )),
        }
    }

    pub(crate) fn set(&self, faults: MailchimpFaults) {
        lock(&self.inner).0 = faults;
    }

    pub(crate) fn get(&self) -> MailchimpFaults {
        lock(&self.inner).0.clone()
    }

    /// Draws the outcome of one members request.
    pub(crate) fn draw(&self) -> Fault {
        let mut guard = lock(&self.inner);
        let (faults, rng) = &mut *guard;
        if faults.burst_429 > 0 {
            faults.burst_429 -= 1;
            return Fault::Burst429 {
                retry_after: faults.retry_after,
            };
        }
        let roll: f64 = rng.gen();
        let mut edge = faults.error_rate;
        if roll < edge {
            return Fault::Error {
                unavailable: rng.gen_bool(0.5),
            };
        }
        edge += faults.hang_rate;
        if roll < edge {
            return Fault::Hang(faults.hang);
        }
        edge += faults.reset_rate;
        if roll < edge {
            return Fault::Reset;
        }
        edge += faults.malformed_rate;
        if roll < edge {
            return Fault::Malformed;
        }
        edge += faults.truncated_rate;
        if roll < edge {
            return Fault::Truncated;
        }
        Fault::None
    }
}

/// A 200 body that is not JSON: the first `":` becomes `"=`, so parsing fails at once.
pub(crate) fn malform(mut body: Vec<u8>) -> Vec<u8> {
    match body.windows(2).position(|w| w == b"\":") {
        Some(i) => body[i + 1] = b'=',
        None => body.insert(0, b'<'),
    }
    body
}

/// The first half of the body.
pub(crate) fn truncate(mut body: Vec<u8>) -> Vec<u8> {
    body.truncate(body.len() / 2);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_come_before_draws_and_run_out() {
        let state = FaultState::new(1);
        state.set(MailchimpFaults {
            burst_429: 2,
            ..Default::default()
        });
        let burst = Fault::Burst429 { retry_after: None };
        assert_eq!(state.draw(), burst);
        assert_eq!(state.draw(), burst);
        assert_eq!(state.draw(), Fault::None);
    }

    #[test]
    fn malformed_and_truncated_bodies_do_not_parse() {
        let body = br#"{"total_items":5}"#.to_vec();
        assert!(serde_json::from_slice::<serde_json::Value>(&malform(body.clone())).is_err());
        assert!(serde_json::from_slice::<serde_json::Value>(&truncate(body)).is_err());
    }
}
