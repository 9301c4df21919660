//! Recent notable events (kicks, blocks, unlocks, reloads) for the
//! operator's status page: a fixed-size ring, newest last.

use std::collections::VecDeque;
use std::time::{Instant, SystemTime};

use parking_lot::Mutex;

/// Events kept; older ones fall off.
pub const KEPT: usize = 64;

/// One event.
#[derive(Debug, Clone)]
pub struct Event {
    /// Wall-clock time, for the JSON (`at_unix`).
    pub at: SystemTime,
    /// Monotonic time, for "how long ago".
    pub when: Instant,
    /// A short word: `kick`, `block`, `unblock`, `unlock`, `reload`.
    pub kind: &'static str,
    /// What happened, for a person (addresses, who ordered it).
    pub detail: String,
}

/// The ring; appending takes its lock for one push.
#[derive(Debug, Default)]
pub struct Events {
    /// Newest last, at most [`KEPT`].
    ring: Mutex<VecDeque<Event>>,
}

impl Events {
    /// Record an event now.
    pub fn push(&self, kind: &'static str, detail: String) {
        let event = Event {
            at: SystemTime::now(),
            when: Instant::now(),
            kind,
            detail,
        };
        let mut ring = self.ring.lock();
        if ring.len() >= KEPT {
            ring.pop_front();
        }
        ring.push_back(event);
    }

    /// A copy of the events, oldest first.
    pub fn snapshot(&self) -> Vec<Event> {
        self.ring.lock().iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest() {
        let e = Events::default();
        for i in 0..KEPT + 5 {
            e.push("kick", i.to_string());
        }
        let all = e.snapshot();
        assert_eq!(all.len(), KEPT);
        assert_eq!(all[0].detail, "5");
        assert_eq!(all[KEPT - 1].detail, (KEPT + 4).to_string());
    }
}
