//! What happens after a handler attempt fails: another attempt after an
//! exponential backoff with jitter, or, after the last attempt, the event is
//! dead. Pure arithmetic; the executor (src/execution/executor.rs) supplies
//! the random number.

use std::time::Duration;

/// A workflow's retry policy (`webhook_set_retry`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: never retried).
    pub max_attempts: u32,
    /// The delay before the second attempt; it doubles for each one after.
    pub base_delay: Duration,
    /// No delay is longer than this.
    pub max_delay: Duration,
    /// No delay is shorter than this (the server's floor, see [`RetryLimits`]).
    pub min_delay: Duration,
}

/// What the server allows any workflow's retry policy, whatever the
/// workflow asks for: a superuser's floor on every delay and ceiling on the
/// attempts, so that a failing handler cannot be made to run again and again
/// at the cost of everyone else's executors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryLimits {
    pub min_delay: Duration,
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(3600),
            min_delay: Duration::ZERO,
        }
    }
}

/// After a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AfterFailure {
    /// Run the event again after this delay.
    RetryIn(Duration),
    /// That was the last attempt.
    Dead,
}

impl RetryPolicy {
    /// The policy as the server's limits allow it: at most their attempts,
    /// and no delay under their floor.
    pub fn within(self, limits: RetryLimits) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts.clamp(1, limits.max_attempts.max(1)),
            base_delay: self.base_delay.max(limits.min_delay),
            max_delay: self.max_delay.max(limits.min_delay),
            min_delay: self.min_delay.max(limits.min_delay),
        }
    }

    /// `attempt` is the number of the attempt that failed (1 for the first);
    /// `jitter` is uniform in `[0, 1)`. The delay is drawn from the upper half
    /// of the exponential step (`[d/2, d)`), so that events that failed
    /// together (a table briefly locked) do not all come back at once, while
    /// the delay still grows with every attempt.
    pub fn after_failure(&self, attempt: u32, jitter: f64) -> AfterFailure {
        if attempt >= self.max_attempts {
            return AfterFailure::Dead;
        }
        let doublings = attempt.saturating_sub(1).min(40);
        let step = self
            .base_delay
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(self.max_delay)
            .min(self.max_delay);
        let jitter = jitter.clamp(0.0, 1.0);
        AfterFailure::RetryIn(step.mul_f64(0.5 + jitter / 2.0).max(self.min_delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32, base_ms: u64, max_ms: u64) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(base_ms),
            max_delay: Duration::from_millis(max_ms),
            min_delay: Duration::ZERO,
        }
    }

    #[test]
    fn the_servers_limits_hold_whatever_the_workflow_asks() {
        let limits = RetryLimits {
            min_delay: Duration::from_millis(500),
            max_attempts: 3,
        };
        // One microsecond, a thousand times: three attempts, never sooner
        // than the floor, jitter or not.
        let greedy = RetryPolicy {
            max_attempts: 1000,
            base_delay: Duration::from_micros(1),
            max_delay: Duration::from_micros(1),
            min_delay: Duration::ZERO,
        }
        .within(limits);
        for jitter in [0.0, 0.5, 0.999] {
            assert_eq!(
                greedy.after_failure(1, jitter),
                AfterFailure::RetryIn(Duration::from_millis(500))
            );
        }
        assert!(matches!(
            greedy.after_failure(2, 0.0),
            AfterFailure::RetryIn(_)
        ));
        assert_eq!(greedy.after_failure(3, 0.0), AfterFailure::Dead);
        // A policy inside the limits is unchanged.
        let modest = policy(2, 1000, 60_000);
        assert_eq!(modest.within(limits).max_attempts, 2);
        assert_eq!(
            modest.within(limits).after_failure(1, 0.0),
            modest.after_failure(1, 0.0)
        );
    }

    #[test]
    fn last_attempt_is_dead() {
        let p = policy(3, 1000, 60_000);
        assert!(matches!(p.after_failure(1, 0.0), AfterFailure::RetryIn(_)));
        assert!(matches!(p.after_failure(2, 0.0), AfterFailure::RetryIn(_)));
        assert_eq!(p.after_failure(3, 0.0), AfterFailure::Dead);
        assert_eq!(p.after_failure(4, 0.0), AfterFailure::Dead);
        assert_eq!(
            policy(1, 1000, 1000).after_failure(1, 0.5),
            AfterFailure::Dead
        );
    }

    #[test]
    fn delay_doubles_within_jitter_bounds() {
        let p = policy(10, 1000, 3_600_000);
        for (attempt, step_ms) in [(1, 1000u64), (2, 2000), (3, 4000), (4, 8000)] {
            assert_eq!(
                p.after_failure(attempt, 0.0),
                AfterFailure::RetryIn(Duration::from_millis(step_ms / 2))
            );
            let AfterFailure::RetryIn(high) = p.after_failure(attempt, 0.999_999) else {
                panic!("retried")
            };
            assert!(high < Duration::from_millis(step_ms), "{high:?}");
            assert!(high > Duration::from_millis(step_ms * 99 / 100), "{high:?}");
        }
    }

    #[test]
    fn delay_is_capped_and_never_overflows() {
        let p = policy(u32::MAX, 1000, 60_000);
        assert_eq!(
            p.after_failure(30, 0.0),
            AfterFailure::RetryIn(Duration::from_millis(30_000))
        );
        assert_eq!(
            p.after_failure(1_000_000, 0.0),
            AfterFailure::RetryIn(Duration::from_millis(30_000))
        );
        let huge = RetryPolicy {
            max_attempts: 100,
            base_delay: Duration::from_secs(u64::MAX / 4),
            max_delay: Duration::from_secs(u64::MAX / 2),
            min_delay: Duration::ZERO,
        };
        assert!(matches!(
            huge.after_failure(50, 0.3),
            AfterFailure::RetryIn(_)
        ));
    }

    #[test]
    fn out_of_range_jitter_is_clamped() {
        let p = policy(5, 1000, 60_000);
        assert_eq!(
            p.after_failure(1, -3.0),
            AfterFailure::RetryIn(Duration::from_millis(500))
        );
        assert_eq!(
            p.after_failure(1, 7.0),
            AfterFailure::RetryIn(Duration::from_millis(1000))
        );
    }
}
