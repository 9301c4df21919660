//! What an operator asks about a link besides its counters: when it went up
//! or down and why, and how long the LoginSrv takes to answer a heartbeat.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

/// Changes kept per link.
const KEPT: usize = 32;

/// The link went up or down.
#[derive(Debug, Clone)]
pub struct LinkChange {
    /// Wall-clock time.
    pub at: SystemTime,
    /// Monotonic time, for "how long ago".
    pub when: Instant,
    /// Up (connected) or down.
    pub up: bool,
    /// Where it connected, or why it went down.
    pub detail: String,
}

/// Up/down history and the last heartbeat round trip of one link.
#[derive(Debug, Default)]
pub(crate) struct History {
    /// Newest last, at most [`KEPT`].
    changes: Mutex<VecDeque<LinkChange>>,
    /// Last heartbeat round trip in microseconds; 0 = none measured yet.
    rtt_micros: AtomicU64,
}

impl History {
    pub(crate) fn record(&self, up: bool, detail: String) {
        let mut changes = self.changes.lock();
        if changes.len() >= KEPT {
            changes.pop_front();
        }
        changes.push_back(LinkChange {
            at: SystemTime::now(),
            when: Instant::now(),
            up,
            detail,
        });
    }

    pub(crate) fn changes(&self) -> Vec<LinkChange> {
        self.changes.lock().iter().cloned().collect()
    }

    pub(crate) fn set_rtt(&self, rtt: Duration) {
        let micros = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
        self.rtt_micros.store(micros, Ordering::Relaxed);
    }

    pub(crate) fn rtt(&self) -> Option<Duration> {
        match self.rtt_micros.load(Ordering::Relaxed) {
            0 => None,
            m => Some(Duration::from_micros(m)),
        }
    }
}
