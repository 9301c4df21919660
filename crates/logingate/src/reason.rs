//! Why clients leave: the gate's own close and refusal labels, and one
//! lock-free count per label.
//!
//! netcore names its own closes (`peer_closed`, `idle_timeout`, …) and the
//! client framer names its errors (`forbidden_byte`, …); the gate adds the
//! labels below. Every label a session can end with is listed in
//! [`CLOSE_LABELS`], so counting a close is a search in a fixed array and an
//! atomic add: no lock on the close path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Client refused because the LoginSrv link is down.
pub const SERVER_UNAVAILABLE: &str = "server_unavailable";
/// More than `max_packets_per_sec` messages in a second.
pub const FLOODING: &str = "flooding";
/// The link's pending buffer is full (a close, or a refusal on open).
pub const SERVER_BUSY: &str = "server_busy";
/// The link the session was opened on dropped.
pub const SERVER_LOST: &str = "server_lost";
/// An HTTP request line (`GET `, `POST `, `HTTP/`…) on the game port: a CC flood
/// or a scanner, not a broken client.
pub const HTTP_REQUEST: &str = "http_request";
/// Over `new_accounts_per_ip_per_hour` or `password_ops_per_ip_per_min`.
pub const NEW_ACCOUNTS: &str = "new_accounts";

/// Every label a gate session can close with (netcore's, the client
/// framer's, the gate's), sorted so a lookup is a binary search.
pub const CLOSE_LABELS: [&str; 15] = [
    "error",
    "first_packet_timeout",
    FLOODING,
    "forbidden_byte",
    HTTP_REQUEST,
    "idle_timeout",
    "kicked",
    NEW_ACCOUNTS,
    "oversize",
    "peer_closed",
    SERVER_BUSY,
    SERVER_LOST,
    "short_packet",
    "shutdown",
    "slow_reader",
];

/// Every label `on_open` refuses a client with, sorted.
pub const REFUSAL_LABELS: [&str; 2] = [SERVER_BUSY, SERVER_UNAVAILABLE];

/// Label counted for a reason missing from the table; a unit test keeps it
/// at zero by checking the table covers every label the gate can produce.
const OTHER: &str = "other";

/// One counter per label of a fixed, sorted label table.
pub struct ReasonCounts {
    /// The labels, sorted; `counts[i]` counts `labels[i]`.
    labels: &'static [&'static str],
    /// One counter per label.
    counts: Box<[AtomicU64]>,
    /// Events whose label is not in `labels`.
    other: AtomicU64,
}

impl ReasonCounts {
    /// Zeroed counters for `labels` (which must be sorted).
    pub fn new(labels: &'static [&'static str]) -> Self {
        debug_assert!(labels.windows(2).all(|w| w[0] < w[1]), "labels sorted");
        ReasonCounts {
            labels,
            counts: labels.iter().map(|_| AtomicU64::new(0)).collect(),
            other: AtomicU64::new(0),
        }
    }

    fn slot(&self, label: &str) -> &AtomicU64 {
        match self.labels.binary_search(&label) {
            Ok(i) => &self.counts[i],
            Err(_) => &self.other,
        }
    }

    /// Close counts by `CloseReason::as_str` label.
    pub fn closes() -> Self {
        Self::new(&CLOSE_LABELS)
    }

    /// Refusal counts by `on_open` label.
    pub fn refusals() -> Self {
        Self::new(&REFUSAL_LABELS)
    }

    /// Count one event with `label`.
    pub fn add(&self, label: &str) {
        self.slot(label).fetch_add(1, Ordering::Relaxed);
    }

    /// How many events had `label` so far.
    pub fn get(&self, label: &str) -> u64 {
        self.slot(label).load(Ordering::Relaxed)
    }

    /// Every label seen so far with its count (labels never seen are left out).
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        let other = self.other.load(Ordering::Relaxed);
        self.labels
            .iter()
            .zip(self.counts.iter())
            .map(|(label, n)| (*label, n.load(Ordering::Relaxed)))
            .chain(std::iter::once((OTHER, other)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mir2_proto::ClientFrameError;
    use netcore::CloseReason;

    #[test]
    fn tables_are_sorted() {
        assert!(CLOSE_LABELS.windows(2).all(|w| w[0] < w[1]));
        assert!(REFUSAL_LABELS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn every_close_label_has_a_counter() {
        let reasons = [
            CloseReason::PeerClosed,
            CloseReason::Error(std::io::ErrorKind::Other),
            CloseReason::FirstPacketTimeout,
            CloseReason::IdleTimeout,
            CloseReason::SlowReader,
            CloseReason::Kicked,
            CloseReason::Shutdown,
            CloseReason::Protocol(FLOODING),
            CloseReason::Protocol(SERVER_BUSY),
            CloseReason::Protocol(SERVER_LOST),
            CloseReason::Protocol(HTTP_REQUEST),
            CloseReason::Protocol(NEW_ACCOUNTS),
            CloseReason::Protocol(ClientFrameError::ForbiddenByte { offset: 0, byte: 0 }.reason()),
            CloseReason::Protocol(ClientFrameError::TooLong { max: 0 }.reason()),
            CloseReason::Protocol(ClientFrameError::TooShort { len: 0 }.reason()),
        ];
        let counts = ReasonCounts::closes();
        for why in reasons {
            counts.add(why.as_str());
        }
        let seen = counts.snapshot();
        assert_eq!(seen.get(OTHER), None, "{seen:?}");
        assert_eq!(seen.len(), reasons.len(), "{seen:?}");
        assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    }

    #[test]
    fn counts_by_label_and_keeps_unknown_ones() {
        let counts = ReasonCounts::refusals();
        counts.add(SERVER_BUSY);
        counts.add(SERVER_BUSY);
        counts.add("made_up");
        assert_eq!(counts.get(SERVER_BUSY), 2);
        assert_eq!(counts.get(SERVER_UNAVAILABLE), 0);
        assert_eq!(
            counts.snapshot(),
            BTreeMap::from([(SERVER_BUSY, 2), (OTHER, 1)])
        );
    }
}
