//! How long to wait before trying a failing host again: capped exponential
//! backoff with jitter, in one place (kube-rs' error policy).
//!
//! The n-th failure in a row waits between half and all of
//! `min(cap, base * 2^(n-1))`, so hosts that failed together do not all
//! come back at the same moment.

use std::time::Duration;

/// The backoff policy.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The span after the first failure; it doubles with each failure
    /// after.
    pub base: Duration,
    /// The longest span, however many failures.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(5),
            cap: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The delay before the next try after `failures` failures in a row
    /// (at least 1), with `jitter` in `0.0..1.0` choosing where in the
    /// upper half of the span it falls.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let exponent = failures.saturating_sub(1).min(30);
        let span = self
            .base
            .checked_mul(1u32 << exponent)
            .unwrap_or(self.cap)
            .min(self.cap);
        span / 2 + span.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
    }

    /// `delay` with a random jitter.
    pub fn next(&self, failures: u32) -> Duration {
        self.delay(failures, fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_stay_within_half_of_it() {
        let backoff = Backoff {
            base: Duration::from_secs(5),
            cap: Duration::from_secs(60),
        };
        let spans = [5, 10, 20, 40, 60, 60, 60];
        for (i, span) in spans.iter().enumerate() {
            let failures = i as u32 + 1;
            let span = Duration::from_secs(*span);
            assert_eq!(backoff.delay(failures, 0.0), span / 2, "{failures}");
            assert_eq!(backoff.delay(failures, 1.0), span, "{failures}");
            for _ in 0..100 {
                let delay = backoff.next(failures);
                assert!(delay >= span / 2 && delay <= span, "{failures}: {delay:?}");
            }
        }
        assert_eq!(backoff.delay(u32::MAX, 1.0), Duration::from_secs(60));
    }
}
