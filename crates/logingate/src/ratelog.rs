//! Rate limit for log lines a peer can trigger at will (bad frames, unknown
//! ids), so a flood cannot flood the log. Counters still see every event.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Allows at most `per_window` lines per second; says how many were dropped.
pub struct LogLimiter {
    /// Lines allowed per one-second window.
    per_window: u32,
    /// Current window; `None` until the first event.
    window: Mutex<Option<Window>>,
}

struct Window {
    /// When this window began.
    start: Instant,
    /// Lines allowed so far in it.
    allowed: u32,
    /// Lines refused since the last allowed one.
    suppressed: u64,
}

const WINDOW: Duration = Duration::from_secs(1);

impl LogLimiter {
    /// A limiter allowing `per_window` lines a second.
    pub const fn new(per_window: u32) -> Self {
        LogLimiter {
            per_window,
            window: Mutex::new(None),
        }
    }

    /// `Some(suppressed)` when this line may be logged (`suppressed` = lines
    /// dropped before it, worth mentioning), `None` when it must be dropped.
    pub fn check(&self) -> Option<u64> {
        let now = Instant::now();
        let mut guard = self.window.lock();
        let w = guard.get_or_insert(Window {
            start: now,
            allowed: 0,
            suppressed: 0,
        });
        if now.duration_since(w.start) >= WINDOW {
            w.start = now;
            w.allowed = 0;
        }
        if w.allowed < self.per_window {
            w.allowed += 1;
            Some(std::mem::take(&mut w.suppressed))
        } else {
            w.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_counts_the_rest() {
        let l = LogLimiter::new(3);
        assert_eq!(l.check(), Some(0));
        assert_eq!(l.check(), Some(0));
        assert_eq!(l.check(), Some(0));
        assert_eq!(l.check(), None);
        assert_eq!(l.check(), None);
        // Force the window over and see the two dropped lines reported.
        if let Some(w) = l.window.lock().as_mut() {
            w.start -= WINDOW;
        }
        assert_eq!(l.check(), Some(2));
    }
}
