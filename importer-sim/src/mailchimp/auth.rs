//! API keys: extraction from the request, the registry, and the per-key connection limit.
//!
//! Mailchimp accepts HTTP Basic (any user, the key as password), `Bearer <key>` and
//! `OAuth <token>`. Each registered key counts its requests in flight; a request that would
//! exceed `max_connections_per_key` is refused with 429 and never enters the handler.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::{header, HeaderMap};
use base64::Engine;
use serde::{Deserialize, Serialize};

/// Request counters of one API key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStats {
    /// Authenticated requests received (including those answered 429).
    pub requests: u64,
    /// Highest number of requests in flight at once since the last reset.
    pub peak_concurrency: usize,
    /// Requests answered 429 (connection limit or injected burst).
    pub responses_429: u64,
    /// Requests in flight now.
    pub in_flight: usize,
    /// Members returned by member requests (re-reads included).
    pub members_returned: u64,
}

/// A registered key with its counters.
#[derive(Debug, Default)]
pub(crate) struct KeyEntry {
    pub revoked: AtomicBool,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    requests: AtomicU64,
    responses_429: AtomicU64,
    members_returned: AtomicU64,
}

impl KeyEntry {
    /// Counts a request and takes a connection slot, or `None` when `max` are in flight.
    pub(crate) fn acquire(self: &Arc<Self>, max: usize) -> Option<Slot> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        // A compare-and-swap loop, so a refused request never inflates the count others see.
        let mut current = self.in_flight.load(Ordering::Acquire);
        loop {
            if current >= max {
                return None;
            }
            match self.in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        self.peak.fetch_max(current + 1, Ordering::AcqRel);
        Some(Slot {
            key: Arc::clone(self),
        })
    }

    /// Counts the members of a members page served.
    pub(crate) fn count_members(&self, n: usize) {
        self.members_returned.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts a 429 answer.
    pub(crate) fn count_429(&self) {
        self.responses_429.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> KeyStats {
        KeyStats {
            requests: self.requests.load(Ordering::Relaxed),
            peak_concurrency: self.peak.load(Ordering::Acquire),
            responses_429: self.responses_429.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Acquire),
            members_returned: self.members_returned.load(Ordering::Relaxed),
        }
    }

    /// Zeroes the counters; the peak restarts from what is in flight now.
    pub(crate) fn reset(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.responses_429.store(0, Ordering::Relaxed);
        self.members_returned.store(0, Ordering::Relaxed);
        self.peak
            .store(self.in_flight.load(Ordering::Acquire), Ordering::Release);
    }
}

/// A connection slot of one key, released on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    key: Arc<KeyEntry>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.key.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The key a request carries: `Ok(None)` when there is none, `Err` when the header is garbled
/// (answered like an invalid key).
pub(crate) fn request_key(headers: &HeaderMap) -> Result<Option<String>, ()> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ())?.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    let key = match scheme.to_ascii_lowercase().as_str() {
        "basic" => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| ())?;
            let decoded = String::from_utf8(decoded).map_err(|_| ())?;
            // Any user name; the key is the password.
            match decoded.split_once(':') {
                Some((_, key)) => key.to_owned(),
                None => String::new(),
            }
        }
        "bearer" | "oauth" => rest.to_owned(),
        _ => return Err(()),
    };
    Ok(if key.is_empty() { None } else { Some(key) })
}

/// The data centre suffix of a key (`us6` for `…-us6`), `us1` when it has none.
pub(crate) fn key_dc(key: &str) -> &str {
    match key.rsplit_once('-') {
        Some((_, dc)) if !dc.is_empty() => dc,
        _ => "us1",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use axum::http::HeaderValue;

    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn basic_bearer_and_oauth_carry_the_key() {
        let basic = base64::engine::general_purpose::STANDARD.encode("anystring:abc-us6");
        assert_eq!(
            request_key(&headers(&format!("Basic {basic}"))),
            Ok(Some("abc-us6".into()))
        );
        assert_eq!(
            request_key(&headers("Bearer abc-us6")),
            Ok(Some("abc-us6".into()))
        );
        assert_eq!(request_key(&headers("OAuth tok")), Ok(Some("tok".into())));
        assert_eq!(request_key(&HeaderMap::new()), Ok(None));
        assert_eq!(request_key(&headers("Digest x")), Err(()));
    }

    #[test]
    fn slots_stop_at_the_maximum_and_free_on_drop() {
        let key = Arc::new(KeyEntry::default());
        let slots: Vec<_> = (0..3).map(|_| key.acquire(3).unwrap()).collect();
        assert!(key.acquire(3).is_none());
        drop(slots);
        assert!(key.acquire(3).is_some());
        assert_eq!(key.stats().peak_concurrency, 3);
        assert_eq!(key.stats().requests, 5);
    }
}
