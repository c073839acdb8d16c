//! What `since_last_changed` means on a given Mailchimp: strict (`>`, documented) or inclusive
//! (`>=`, seen). The sync engine is correct under both by asking for one second more than it
//! needs while the rule is not known to be inclusive; this module remembers, per base URL and
//! process, what was seen, so that the extra second (possibly a bulk import of thousands of
//! members) is read at most until the rule is known. An inclusive finding is trusted for
//! [`INCLUSIVE_TTL`] only, and a later strict finding replaces it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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

/// How long an inclusive finding is trusted. Proof of an inclusive server does not prove it
/// stays inclusive (a reconfigured or replaced server behind the same URL), and sending `since =
/// lo` to a strict one skips the members of second `lo` with nothing to show it. So the finding
/// expires: a run's ranges start within minutes of its plan, and after expiry the strict form,
/// correct under both rules, is used until a plan learns the rule again (the price is one extra
/// second read per range, as before anything was learned).
pub(crate) const INCLUSIVE_TTL: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Copy)]
struct Learned {
    rule: SinceRule,
    at: Instant,
}

/// The rule of one base URL, shared by every account handle of it.
#[derive(Debug, Clone, Default)]
pub(crate) struct SinceCell(Arc<Mutex<Option<Learned>>>);

impl SinceCell {
    pub(crate) fn get(&self) -> SinceRule {
        self.get_at(Instant::now())
    }

    fn get_at(&self, now: Instant) -> SinceRule {
        match *self.0.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(Learned {
                rule: SinceRule::Inclusive,
                at,
            }) if now.saturating_duration_since(at) > INCLUSIVE_TTL => SinceRule::Unknown,
            Some(learned) => learned.rule,
            None => SinceRule::Unknown,
        }
    }

    /// What a plan's probe found replaces what was known: strict (no member at `since`
    /// itself) is always safe to act on, and inclusive is fresh proof.
    pub(crate) fn learn(&self, rule: SinceRule) {
        self.learn_at(rule, Instant::now());
    }

    fn learn_at(&self, rule: SinceRule, at: Instant) {
        if rule != SinceRule::Unknown {
            *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Learned { rule, at });
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
    fn a_finding_is_shared_per_base_url_and_the_latest_one_counts() {
        let rules = SinceRules::default();
        let a = rules.for_base_url("https://us6.api.mailchimp.com/3.0");
        let b = rules.for_base_url("https://us6.api.mailchimp.com/3.0");
        assert_eq!(a.get(), SinceRule::Unknown);
        a.learn(SinceRule::Strict);
        assert_eq!(b.get(), SinceRule::Strict);
        b.learn(SinceRule::Inclusive);
        assert_eq!(a.get(), SinceRule::Inclusive);
        // A server that turned strict behind the same URL: the strict form is used again.
        a.learn(SinceRule::Strict);
        assert_eq!(b.get(), SinceRule::Strict);
        a.learn(SinceRule::Unknown);
        assert_eq!(
            b.get(),
            SinceRule::Strict,
            "nothing learned changes nothing"
        );
        let other = rules.for_base_url("http://127.0.0.1:1/3.0");
        assert_eq!(other.get(), SinceRule::Unknown);
    }

    /// Regression: an inclusive finding was final for the life of the process, so a server
    /// behind the same URL that became strict had the members of every range's first second
    /// skipped, silently.
    #[test]
    fn an_inclusive_finding_expires_and_the_strict_form_comes_back() {
        let cell = SinceCell::default();
        let t0 = Instant::now();
        cell.learn_at(SinceRule::Inclusive, t0);
        assert_eq!(cell.get_at(t0 + INCLUSIVE_TTL), SinceRule::Inclusive);
        let later = t0 + INCLUSIVE_TTL + Duration::from_secs(1);
        assert_eq!(cell.get_at(later), SinceRule::Unknown);
        cell.learn_at(SinceRule::Strict, later);
        assert_eq!(cell.get_at(later + INCLUSIVE_TTL * 4), SinceRule::Strict);
    }
}
