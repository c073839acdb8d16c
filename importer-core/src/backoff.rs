//! Retry delays: exponential backoff with jitter, and honouring a server's Retry-After.
//!
//! The nominal delay of attempt `n` (1 = the first failure) is `base * factor^(n-1)`, capped at
//! `max`. Jitter spreads retries of jobs that failed together (an outage) so they do not come
//! back as a herd:
//! - [`Jitter::Equal`] (the default for retries): uniformly in `[nominal/2, nominal]`, so a
//!   retry never comes back sooner than half the nominal delay;
//! - [`Jitter::Full`] (snoozes): uniformly in `[0, nominal]`, the best spread when waiting is
//!   only about not colliding again;
//! - [`Jitter::None`]: exactly the nominal delay (tests, deterministic tools).
//!
//! A server's Retry-After is taken as is (it knows better than our guess), capped by
//! [`RetryPolicy`](crate::queue::RetryPolicy) (default [`MAX_RETRY_AFTER`]) so a wrong header
//! cannot park a job for days.

use std::time::Duration;

use rand::Rng;

/// The default longest Retry-After honoured ([`crate::queue::RetryPolicy::max_retry_after`]).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How a delay is randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// No randomness: the nominal delay.
    None,
    /// Uniform in `[0, nominal]`.
    Full,
    /// Uniform in `[nominal/2, nominal]`.
    Equal,
}

/// An exponential backoff policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Nominal delay after the first failure.
    pub base: Duration,
    /// Growth per further failure (2.0 doubles).
    pub factor: f64,
    /// Cap of the nominal delay.
    pub max: Duration,
    /// How the delay is randomised.
    pub jitter: Jitter,
}

impl Default for Backoff {
    /// Retries: 5 s, 10 s, 20 s, … capped at 10 min, equal jitter.
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(5),
            factor: 2.0,
            max: Duration::from_secs(600),
            jitter: Jitter::Equal,
        }
    }
}

impl Backoff {
    /// Snoozes after Mailchimp's own 429 without a Retry-After: 1 s, 2 s, … capped at 30 s,
    /// full jitter.
    pub fn snooze() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(30),
            jitter: Jitter::Full,
        }
    }

    /// The nominal (un-jittered) delay after failed attempt `attempt` (1-based; lower values
    /// count as 1): `base * factor^(attempt-1)`, capped at `max`.
    pub fn nominal(&self, attempt: i32) -> Duration {
        let exponent = attempt.max(1) - 1;
        let secs = self.base.as_secs_f64() * self.factor.max(1.0).powi(exponent);
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(secs.max(0.0))
        }
    }

    /// The jittered delay after failed attempt `attempt`.
    pub fn delay(&self, attempt: i32) -> Duration {
        self.delay_with(attempt, &mut rand::thread_rng())
    }

    /// [`Backoff::delay`] with a caller's random source (deterministic tests).
    pub fn delay_with<R: Rng + ?Sized>(&self, attempt: i32, rng: &mut R) -> Duration {
        let nominal = self.nominal(attempt);
        match self.jitter {
            Jitter::None => nominal,
            Jitter::Full => nominal.mul_f64(rng.gen_range(0.0..=1.0)),
            Jitter::Equal => {
                let half = nominal / 2;
                half + half.mul_f64(rng.gen_range(0.0..=1.0))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_and_is_capped() {
        let b = Backoff {
            base: Duration::from_secs(5),
            factor: 2.0,
            max: Duration::from_secs(60),
            jitter: Jitter::None,
        };
        let delays: Vec<u64> = (1..=6).map(|a| b.delay(a).as_secs()).collect();
        assert_eq!(delays, vec![5, 10, 20, 40, 60, 60]);
        assert_eq!(b.delay(0), Duration::from_secs(5));
        assert_eq!(b.delay(i32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn equal_jitter_stays_between_half_and_the_nominal_delay() {
        let b = Backoff::default();
        let mut seen_below_nominal = false;
        for attempt in 1..=12 {
            let nominal = b.nominal(attempt);
            for _ in 0..200 {
                let d = b.delay(attempt);
                assert!(d >= nominal / 2 && d <= nominal, "{d:?} vs {nominal:?}");
                seen_below_nominal |= d < nominal;
            }
        }
        assert!(seen_below_nominal, "jitter never changed a delay");
        assert_eq!(b.nominal(100), b.max);
    }

    #[test]
    fn full_jitter_stays_within_the_nominal_delay_and_spreads() {
        let b = Backoff::snooze();
        let delays: Vec<Duration> = (0..500).map(|_| b.delay(3)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(4)));
        assert!(delays.iter().any(|d| *d < Duration::from_secs(1)));
        assert!(delays.iter().any(|d| *d > Duration::from_secs(3)));
    }
}
