//! Counters the application can read back: accepted sockets, opened sessions, closes
//! and refusals by reason label.
//!
//! The `metrics` facade cannot be read back (a recorder may not even be installed),
//! so the core keeps its own figures and the application's stats line and console read
//! them here instead of counting the same events a second time. Each label has a fixed
//! slot, chosen when the server is bound from the core's labels and
//! [`Handler::LABELS`](crate::Handler::LABELS): counting is a binary search in a sorted
//! array and one atomic add, no lock and no allocation on the close path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::metrics::reject;
use crate::proxy::label as proxy;
use crate::reason::CloseReason;

/// The label a count falls under when it is in no table (a handler label missing from
/// [`Handler::LABELS`](crate::Handler::LABELS)).
pub const OTHER: &str = "other";

/// Close labels the core itself produces.
const CORE_CLOSES: &[&str] = &[
    "peer_closed",
    "error",
    "first_packet_timeout",
    "idle_timeout",
    "slow_reader",
    "kicked",
    "shutdown",
    crate::conn::READ_BUFFER_FULL,
];

/// Refusal labels the core itself produces.
const CORE_REFUSALS: &[&str] = &[
    reject::BLOCKED,
    reject::RATE_LIMITED,
    reject::MAX_CONNECTIONS,
    reject::PER_IP_LIMIT,
    reject::NOT_ALLOW_LISTED,
    reject::SOCKET_SETUP,
    proxy::HEADER_MISSING,
    proxy::HEADER_INVALID,
    proxy::HEADER_TIMEOUT,
    proxy::LOCAL,
    proxy::SOURCE_NOT_ALLOWED,
    "shutdown",
];

/// One counter per label of a fixed, sorted label set.
struct ReasonTable {
    /// The labels, sorted and unique; `counts[i]` counts `labels[i]`.
    labels: Box<[&'static str]>,
    /// One counter per label.
    counts: Box<[AtomicU64]>,
    /// Events whose label is not in `labels`.
    other: AtomicU64,
}

impl ReasonTable {
    fn new(core: &[&'static str], app: &[&'static str]) -> Self {
        let mut labels: Vec<&'static str> = core.iter().chain(app).copied().collect();
        labels.sort_unstable();
        labels.dedup();
        ReasonTable {
            counts: labels.iter().map(|_| AtomicU64::new(0)).collect(),
            labels: labels.into_boxed_slice(),
            other: AtomicU64::new(0),
        }
    }

    fn slot(&self, label: &str) -> &AtomicU64 {
        match self.labels.binary_search(&label) {
            Ok(i) => &self.counts[i],
            Err(_) => &self.other,
        }
    }

    fn add(&self, label: &str) {
        self.slot(label).fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self, label: &str) -> u64 {
        self.slot(label).load(Ordering::Relaxed)
    }

    /// Every label counted at least once, with its count.
    fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.labels
            .iter()
            .zip(self.counts.iter())
            .map(|(label, n)| (*label, n.load(Ordering::Relaxed)))
            .chain(std::iter::once((OTHER, self.other.load(Ordering::Relaxed))))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

struct Inner {
    /// Sockets taken from the kernel, before admission.
    accepted: AtomicU64,
    /// Sessions the handler accepted (`on_open` returned Ok).
    opened: AtomicU64,
    /// Closes of opened sessions, by [`CloseReason::as_str`].
    closes: ReasonTable,
    /// Connections refused before or at `on_open`, by label.
    refusals: ReasonTable,
}

/// The server's readable counters (a cheap handle; every clone reads the same figures).
#[derive(Clone)]
pub struct Counts {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counts")
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

/// The counters at one moment; [`CountsSnapshot::since`] turns two into an interval.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountsSnapshot {
    /// Sockets accepted.
    pub accepted: u64,
    /// Sessions opened.
    pub opened: u64,
    /// Closes by reason (labels never counted are left out).
    pub closes: BTreeMap<&'static str, u64>,
    /// Refusals by reason (labels never counted are left out).
    pub refusals: BTreeMap<&'static str, u64>,
}

impl CountsSnapshot {
    /// What happened between `earlier` and `self` (labels with no event left out).
    pub fn since(&self, earlier: &CountsSnapshot) -> CountsSnapshot {
        let diff = |now: &BTreeMap<&'static str, u64>, then: &BTreeMap<&'static str, u64>| {
            now.iter()
                .map(|(k, n)| (*k, n.saturating_sub(then.get(k).copied().unwrap_or(0))))
                .filter(|(_, n)| *n > 0)
                .collect()
        };
        CountsSnapshot {
            accepted: self.accepted.saturating_sub(earlier.accepted),
            opened: self.opened.saturating_sub(earlier.opened),
            closes: diff(&self.closes, &earlier.closes),
            refusals: diff(&self.refusals, &earlier.refusals),
        }
    }

    /// Closes of every reason together.
    pub fn closed(&self) -> u64 {
        self.closes.values().sum()
    }

    /// Refusals of every reason together.
    pub fn refused(&self) -> u64 {
        self.refusals.values().sum()
    }
}

impl Counts {
    /// Zeroed counters for the core's labels and the application's `labels`.
    pub(crate) fn new(labels: &[&'static str]) -> Self {
        Counts {
            inner: Arc::new(Inner {
                accepted: AtomicU64::new(0),
                opened: AtomicU64::new(0),
                closes: ReasonTable::new(CORE_CLOSES, labels),
                refusals: ReasonTable::new(CORE_REFUSALS, labels),
            }),
        }
    }

    pub(crate) fn count_accepted(&self) {
        self.inner.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_opened(&self) {
        self.inner.opened.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_close(&self, reason: CloseReason) {
        self.inner.closes.add(reason.as_str());
    }

    pub(crate) fn count_refusal(&self, label: &str) {
        self.inner.refusals.add(label);
    }

    /// Sockets accepted so far.
    pub fn accepted(&self) -> u64 {
        self.inner.accepted.load(Ordering::Relaxed)
    }

    /// Sessions opened so far.
    pub fn opened(&self) -> u64 {
        self.inner.opened.load(Ordering::Relaxed)
    }

    /// Sessions closed so far with `label` (a [`CloseReason::as_str`] label).
    pub fn closed(&self, label: &str) -> u64 {
        self.inner.closes.get(label)
    }

    /// Connections refused so far with `label`.
    pub fn refused(&self, label: &str) -> u64 {
        self.inner.refusals.get(label)
    }

    /// Every counter now.
    pub fn snapshot(&self) -> CountsSnapshot {
        CountsSnapshot {
            accepted: self.accepted(),
            opened: self.opened(),
            closes: self.inner.closes.snapshot(),
            refusals: self.inner.refusals.snapshot(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_and_application_labels_get_a_slot_each() {
        let counts = Counts::new(&["server_busy", "flooding", "kicked"]);
        counts.count_close(CloseReason::Protocol("flooding"));
        counts.count_close(CloseReason::Kicked);
        counts.count_close(CloseReason::Protocol(crate::conn::READ_BUFFER_FULL));
        counts.count_refusal("server_busy");
        counts.count_refusal(reject::RATE_LIMITED);
        counts.count_refusal("made_up");
        let s = counts.snapshot();
        assert_eq!(
            s.closes,
            BTreeMap::from([("flooding", 1), ("kicked", 1), ("read_buffer_full", 1)])
        );
        assert_eq!(
            s.refusals,
            BTreeMap::from([("rate_limited", 1), ("server_busy", 1), (OTHER, 1)])
        );
        assert_eq!(counts.refused("per_ip_limit"), 0);
    }

    #[test]
    fn every_core_close_label_has_a_slot() {
        let counts = Counts::new(&[]);
        for why in [
            CloseReason::PeerClosed,
            CloseReason::Error(std::io::ErrorKind::Other),
            CloseReason::FirstPacketTimeout,
            CloseReason::IdleTimeout,
            CloseReason::SlowReader,
            CloseReason::Kicked,
            CloseReason::Shutdown,
        ] {
            counts.count_close(why);
        }
        let s = counts.snapshot();
        assert_eq!(s.closes.get(OTHER), None, "{s:?}");
        assert_eq!(s.closed(), 7);
    }

    #[test]
    fn an_interval_is_the_difference_of_two_snapshots() {
        let counts = Counts::new(&[]);
        counts.count_accepted();
        counts.count_refusal(reject::BLOCKED);
        let first = counts.snapshot();
        counts.count_accepted();
        counts.count_accepted();
        counts.count_opened();
        counts.count_refusal(reject::PER_IP_LIMIT);
        let interval = counts.snapshot().since(&first);
        assert_eq!(interval.accepted, 2);
        assert_eq!(interval.opened, 1);
        assert_eq!(interval.refusals, BTreeMap::from([("per_ip_limit", 1)]));
        assert_eq!(interval.refused(), 1);
    }
}
