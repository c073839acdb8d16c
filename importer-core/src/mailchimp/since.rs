//! What `since_last_changed` means on a given Mailchimp: strict (`>`, documented) or inclusive
//! (`>=`, seen). The sync engine is correct under both by asking for one second more than it
//! needs while the rule is not known to be inclusive; this module remembers, per base URL and
//! process, what was seen, so that the extra second (possibly a bulk import of thousands of
//! members) is read at most until the rule is known.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// What is known of `since_last_changed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinceRule {
    /// Not known yet: assume strict, which is correct under both rules.
    Unknown,
    /// A probe found no member at `since` itself: strict, or the second was empty meanwhile;
    /// either way the strict form stays correct, so it is kept.
    Strict,
    /// A member at `since` itself came back: inclusive.
    Inclusive,
}

impl SinceRule {
    fn to_u8(self) -> u8 {
        match self {
            SinceRule::Unknown => 0,
            SinceRule::Strict => 1,
            SinceRule::Inclusive => 2,
        }
    }

    fn from_u8(v: u8) -> SinceRule {
        match v {
            1 => SinceRule::Strict,
            2 => SinceRule::Inclusive,
            _ => SinceRule::Unknown,
        }
    }
}

/// The rule of one base URL, shared by every account handle of it.
#[derive(Debug, Clone, Default)]
pub(crate) struct SinceCell(Arc<AtomicU8>);

impl SinceCell {
    pub(crate) fn get(&self) -> SinceRule {
        SinceRule::from_u8(self.0.load(Ordering::Acquire))
    }

    /// Inclusive is proof and wins for good; strict only replaces unknown.
    pub(crate) fn learn(&self, rule: SinceRule) {
        match rule {
            SinceRule::Inclusive => self.0.store(rule.to_u8(), Ordering::Release),
            SinceRule::Strict => {
                let _ = self.0.compare_exchange(
                    SinceRule::Unknown.to_u8(),
                    rule.to_u8(),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
            SinceRule::Unknown => {}
        }
    }
}

/// Every base URL's rule in this process.
#[derive(Debug, Clone, Default)]
pub(crate) struct SinceRules(Arc<Mutex<HashMap<String, SinceCell>>>);

impl SinceRules {
    pub(crate) fn for_base_url(&self, base_url: &str) -> SinceCell {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(base_url.to_owned()).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inclusive_is_final_and_strict_only_fills_unknown() {
        let rules = SinceRules::default();
        let a = rules.for_base_url("https://us6.api.mailchimp.com/3.0");
        let b = rules.for_base_url("https://us6.api.mailchimp.com/3.0");
        assert_eq!(a.get(), SinceRule::Unknown);
        a.learn(SinceRule::Strict);
        assert_eq!(b.get(), SinceRule::Strict);
        b.learn(SinceRule::Inclusive);
        a.learn(SinceRule::Strict);
        assert_eq!(a.get(), SinceRule::Inclusive);
        let other = rules.for_base_url("http://127.0.0.1:1/3.0");
        assert_eq!(other.get(), SinceRule::Unknown);
    }
}
