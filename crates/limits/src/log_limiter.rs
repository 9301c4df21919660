//! A log line that peers can trigger at will (a refused connection, a bad frame) is
//! allowed a few times per window; the rest are counted, and the next line that gets
//! through reports how many were suppressed before it. Counters still see every event:
//! only the log is thinned.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// One key's current window.
struct Window {
    /// When the window began (at the first event after the previous one ended).
    start: Instant,
    /// Lines let through in this window.
    allowed: u32,
    /// Lines refused since the last one let through (across windows).
    suppressed: u64,
}

/// Allows `lines` log lines per `window`, for each key separately.
///
/// `K = ()` is one stream of lines ([`LogLimiter::check`]); a key such as a reason label
/// gives every reason its own budget ([`LogLimiter::check_for`]), so a flood of one kind
/// cannot hide another. Keys must come from a closed set chosen by code (labels, not
/// addresses): the limiter keeps one small entry per key ever seen.
pub struct LogLimiter<K = ()> {
    /// Lines allowed per window and key (0 = none).
    lines: u32,
    /// Length of a window.
    window: Duration,
    /// Each key's current window; `const`-constructible, so a limiter can be a `static`.
    windows: Mutex<BTreeMap<K, Window>>,
}

impl<K> std::fmt::Debug for LogLimiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogLimiter")
            .field("lines", &self.lines)
            .field("window", &self.window)
            .finish()
    }
}

impl<K: Ord> LogLimiter<K> {
    /// A limiter allowing `lines` lines per `window` for each key.
    pub const fn new(lines: u32, window: Duration) -> Self {
        LogLimiter {
            lines,
            window,
            windows: Mutex::new(BTreeMap::new()),
        }
    }

    /// `Some(suppressed)` when a line for `key` may be logged now (`suppressed` = lines
    /// for `key` dropped since the last one logged, worth mentioning in it), `None`
    /// when it must be dropped.
    pub fn check_for(&self, key: K) -> Option<u64> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: K, now: Instant) -> Option<u64> {
        let mut windows = self.windows.lock();
        let w = windows.entry(key).or_insert(Window {
            start: now,
            allowed: 0,
            suppressed: 0,
        });
        if now.saturating_duration_since(w.start) >= self.window {
            w.start = now;
            w.allowed = 0;
        }
        if w.allowed < self.lines {
            w.allowed += 1;
            Some(std::mem::take(&mut w.suppressed))
        } else {
            w.suppressed += 1;
            None
        }
    }
}

impl LogLimiter {
    /// [`LogLimiter::check_for`] for a limiter without keys.
    pub fn check(&self) -> Option<u64> {
        self.check_for(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn allows_a_burst_then_counts_the_rest() {
        let l = LogLimiter::new(3, SECOND);
        let t0 = Instant::now();
        assert_eq!(l.check_at((), t0), Some(0));
        assert_eq!(l.check_at((), t0), Some(0));
        assert_eq!(l.check_at((), t0), Some(0));
        assert_eq!(l.check_at((), t0), None);
        assert_eq!(l.check_at((), t0 + SECOND / 2), None);
        // The next window reports the two dropped lines.
        assert_eq!(l.check_at((), t0 + SECOND), Some(2));
        assert_eq!(l.check_at((), t0 + SECOND), Some(0));
    }

    #[test]
    fn keys_are_independent_and_report_their_own_count() {
        let l = LogLimiter::new(1, SECOND);
        let t0 = Instant::now();
        assert_eq!(l.check_at("x", t0), Some(0));
        assert_eq!(l.check_at("x", t0), None);
        assert_eq!(l.check_at("x", t0), None);
        assert_eq!(l.check_at("y", t0), Some(0), "keys are independent");
        assert_eq!(l.check_at("x", t0 + SECOND), Some(2));
        assert_eq!(l.check_at("y", t0 + SECOND), Some(0));
    }

    #[test]
    fn the_window_starts_at_the_first_event_after_the_last_one() {
        let l = LogLimiter::new(1, SECOND);
        let t0 = Instant::now();
        assert_eq!(l.check_at((), t0), Some(0));
        // Quiet for a long time, then a burst: one line at its start, not at the
        // second boundaries of the clock.
        let t1 = t0 + 10 * SECOND + SECOND / 2;
        assert_eq!(l.check_at((), t1), Some(0));
        assert_eq!(l.check_at((), t1 + SECOND / 2), None);
        assert_eq!(l.check_at((), t1 + SECOND), Some(1));
    }

    #[test]
    fn zero_lines_logs_nothing_and_a_static_works() {
        static QUIET: LogLimiter = LogLimiter::new(0, SECOND);
        assert_eq!(QUIET.check(), None);
        assert_eq!(QUIET.check(), None);
    }
}
