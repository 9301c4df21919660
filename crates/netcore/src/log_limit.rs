//! At most one log line per reason per second, carrying the count it stood for,
//! so a flood of rejections cannot flood the log.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

const WINDOW: Duration = Duration::from_secs(1);

/// Per-reason log throttle.
#[derive(Default)]
pub(crate) struct LogLimiter {
    /// reason -> (start of the current window, events suppressed in it).
    windows: Mutex<HashMap<&'static str, (Option<Instant>, u64)>>,
}

impl LogLimiter {
    /// Returns `Some(suppressed)` when a line may be logged now; `suppressed` is how
    /// many events of this reason were silenced since the last line.
    pub(crate) fn admit(&self, reason: &'static str) -> Option<u64> {
        let now = Instant::now();
        let mut windows = self.windows.lock();
        // Labels are &'static str chosen by code, so the map stays small.
        let entry = windows.entry(reason).or_insert((None, 0));
        if entry
            .0
            .is_none_or(|start| now.duration_since(start) >= WINDOW)
        {
            let suppressed = entry.1;
            *entry = (Some(now), 0);
            Some(suppressed)
        } else {
            entry.1 += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_window_then_reports_suppressed() {
        let limiter = LogLimiter::default();
        assert_eq!(limiter.admit("x"), Some(0));
        assert_eq!(limiter.admit("x"), None);
        assert_eq!(limiter.admit("x"), None);
        assert_eq!(limiter.admit("y"), Some(0), "reasons are independent");
        {
            let mut w = limiter.windows.lock();
            let e = w.get_mut("x").expect("entry");
            e.0 = e.0.and_then(|t| t.checked_sub(WINDOW));
        }
        assert_eq!(limiter.admit("x"), Some(2));
    }
}
