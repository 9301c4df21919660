//! The token bucket, as the generic cell rate algorithm (GCRA).
//!
//! A bucket of `burst` tokens refilled at one token per `interval` is fully described by
//! one number, its theoretical arrival time (TAT): the time at which the bucket would be
//! full again. An event at `now` conforms when taking a token would not push the TAT more
//! than `burst × interval` past `now`. One `u64` per bucket, no refill arithmetic, no
//! floating point.

use std::time::Duration;

/// A steady rate with a burst allowance: the parameters of one token bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Nanoseconds between two events at the steady rate (the emission interval).
    interval_ns: u64,
    /// How far past now a bucket's TAT may run: `burst × interval`.
    tolerance_ns: u64,
}

impl Rate {
    /// `count` events per `period` on average, and up to `burst` at once.
    ///
    /// `count` 0 is taken as 1 and `burst` 0 as `count` (callers that mean "unlimited"
    /// hold no limiter at all). A rate finer than one event per nanosecond is clamped
    /// to that.
    pub fn new(count: u32, period: Duration, burst: u32) -> Rate {
        let count = count.max(1);
        let burst = if burst == 0 { count } else { burst };
        let interval_ns = u64::try_from(period.as_nanos() / u128::from(count))
            .unwrap_or(u64::MAX)
            .max(1);
        Rate {
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(u64::from(burst)),
        }
    }

    /// Applies one event at `now_ns` to the bucket whose TAT is `*tat` (both on the
    /// caller's clock, in nanoseconds). Returns whether the event conforms; only a
    /// conforming event takes a token, so refused events do not deepen the debt.
    ///
    /// A new bucket starts with `*tat <= now_ns` (full).
    pub(crate) fn conform(&self, tat: &mut u64, now_ns: u64) -> bool {
        match Self::debt(*tat, now_ns).checked_add(self.interval_ns) {
            Some(debt) if debt <= self.tolerance_ns => {
                *tat = now_ns.saturating_add(debt);
                true
            }
            _ => false,
        }
    }

    /// How far the bucket with this TAT is from full at `now_ns` (0 = full): the
    /// information a table would lose by forgetting it.
    pub(crate) fn debt(tat: u64, now_ns: u64) -> u64 {
        tat.saturating_sub(now_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn burst_then_steady_rate() {
        let rate = Rate::new(10, Duration::from_secs(1), 5);
        let mut tat = 0;
        let t0 = 1_000 * MS;
        assert_eq!((0..20).filter(|_| rate.conform(&mut tat, t0)).count(), 5);
        // 10/s: one more token every 100 ms.
        assert!(!rate.conform(&mut tat, t0 + 99 * MS));
        assert!(rate.conform(&mut tat, t0 + 100 * MS));
        assert!(!rate.conform(&mut tat, t0 + 150 * MS));
    }

    #[test]
    fn per_minute_budget() {
        let rate = Rate::new(2, Duration::from_secs(60), 0);
        let mut tat = 0;
        assert!(rate.conform(&mut tat, 0));
        assert!(rate.conform(&mut tat, 0));
        assert!(!rate.conform(&mut tat, 29_999 * MS));
        assert!(rate.conform(&mut tat, 30_000 * MS));
    }

    #[test]
    fn degenerate_parameters_stay_usable() {
        // count 0 is one per period; a rate finer than 1/ns still limits the burst.
        let rate = Rate::new(0, Duration::from_secs(1), 0);
        let mut tat = 0;
        assert!(rate.conform(&mut tat, 0));
        assert!(!rate.conform(&mut tat, 0));
        let fast = Rate::new(u32::MAX, Duration::from_nanos(1), 3);
        let mut tat = 0;
        assert_eq!((0..10).filter(|_| fast.conform(&mut tat, 0)).count(), 3);
        let slow = Rate::new(1, Duration::MAX, 1);
        let mut tat = 0;
        assert!(slow.conform(&mut tat, 0));
        assert!(
            !slow.conform(&mut tat, 3_600 * 1_000 * MS),
            "saturates, never wraps"
        );
    }

    proptest! {
        /// Over any span of time, the bucket admits at most `burst` plus one event per
        /// interval elapsed: the definition of a token bucket.
        #[test]
        fn never_admits_more_than_burst_plus_rate(
            count in 1u32..50,
            burst in 0u32..20,
            gaps_ms in proptest::collection::vec(0u64..120, 1..200),
        ) {
            let rate = Rate::new(count, Duration::from_secs(1), burst);
            let burst = u64::from(if burst == 0 { count } else { burst });
            let mut tat = 0;
            let mut now = 0;
            let mut admitted = Vec::new();
            for gap in gaps_ms {
                now += gap * MS;
                if rate.conform(&mut tat, now) {
                    admitted.push(now);
                }
            }
            for (i, &from) in admitted.iter().enumerate() {
                for (j, &to) in admitted.iter().enumerate().skip(i) {
                    let events = (j - i + 1) as u64;
                    prop_assert!(events <= burst + (to - from) / rate.interval_ns);
                }
            }
        }

        /// A source that never exceeds the steady rate is never refused, whatever its
        /// history once the bucket has had time to refill.
        #[test]
        fn steady_sender_is_always_admitted(
            count in 1u32..1000,
            burst in 0u32..20,
            slack_ns in proptest::collection::vec(0u64..1_000_000, 1..200),
        ) {
            let rate = Rate::new(count, Duration::from_secs(1), burst);
            let mut tat = 0;
            let mut now = 0;
            for slack in slack_ns {
                now += rate.interval_ns + slack;
                prop_assert!(rate.conform(&mut tat, now));
            }
        }
    }
}
