//! Counters of one link and their metric names: each count is kept once,
//! in one atomic of [`LinkCounters`]; every series carries the link's
//! `backend` label (the LoginSrv's address). The stats line and tests read them
//! through [`LinkTotals`]; [`LinkCounters::publish`] hands what changed to
//! the `metrics` facade, whose counters cannot be read back.

use std::sync::atomic::{AtomicU64, Ordering};

use mir2_proto::link::LinkError;

/// Metric names of the link (also listed in the README).
pub mod metric {
    /// Frames handed to the socket.
    pub const FRAMES: &str = "gate_link_frames_total";
    /// `write` batches; frames / writes = batching efficiency.
    pub const WRITES: &str = "gate_link_writes_total";
    /// Bytes written to the LoginSrv.
    pub const BYTES_OUT: &str = "gate_link_bytes_out_total";
    /// Frames received from the LoginSrv.
    pub const FRAMES_IN: &str = "gate_link_frames_in_total";
    /// 1 while the link is up.
    pub const UP: &str = "gate_link_up";
    /// Successful connects.
    pub const CONNECTS: &str = "gate_link_connects_total";
    /// Link losses, by `reason`.
    pub const DOWNS: &str = "gate_link_down_total";
    /// Server frames that did not parse, by `reason`.
    pub const PARSE_ERRORS: &str = "gate_link_parse_errors_total";
    /// Bytes skipped between server frames (0x00 padding, junk).
    pub const JUNK_BYTES: &str = "gate_link_junk_bytes_total";
    /// Replies / kicks that found no session to act on, by `reason`.
    pub const REPLIES_DROPPED: &str = "gate_link_replies_dropped_total";
    /// Pending bytes thrown away when a link dropped.
    pub const DISCARDED_BYTES: &str = "gate_link_discarded_bytes_total";
    /// Heartbeats sent.
    pub const HEARTBEATS: &str = "gate_link_heartbeats_total";
    /// Heartbeat sent to its reply (histogram).
    pub const HEARTBEAT_RTT: &str = "gate_link_heartbeat_rtt_seconds";
    /// Connections the LoginSrv closed within a second, before any frame
    /// (a wrong port, or a gate address it does not allow).
    pub const EARLY_CLOSES: &str = "gate_link_early_closes_total";
    /// Windows in which client messages went out and no reply came back
    /// (`server.silent_replies_warn`: likely a wrong dialect).
    pub const SILENT: &str = "gate_link_silent_total";
    /// Sessions open on the link (gauge).
    pub const SESSIONS: &str = "gate_link_sessions";
    /// The label every link series carries.
    pub const BACKEND_LABEL: &str = "backend";
}

/// A counter without labels, by its place in [`LinkCounters`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Count {
    /// [`metric::FRAMES`].
    Frames,
    /// [`metric::WRITES`].
    Writes,
    /// [`metric::BYTES_OUT`].
    BytesOut,
    /// [`metric::FRAMES_IN`].
    FramesIn,
    /// [`metric::CONNECTS`].
    Connects,
    /// [`metric::HEARTBEATS`].
    Heartbeats,
    /// [`metric::JUNK_BYTES`].
    JunkBytes,
    /// [`metric::DISCARDED_BYTES`].
    DiscardedBytes,
    /// [`metric::EARLY_CLOSES`].
    EarlyCloses,
    /// [`metric::SILENT`].
    Silent,
}

/// Names of the [`Count`] counters, in their order.
const PLAIN: [&str; 10] = [
    metric::FRAMES,
    metric::WRITES,
    metric::BYTES_OUT,
    metric::FRAMES_IN,
    metric::CONNECTS,
    metric::HEARTBEATS,
    metric::JUNK_BYTES,
    metric::DISCARDED_BYTES,
    metric::EARLY_CLOSES,
    metric::SILENT,
];

/// `reason` labels of [`metric::DOWNS`], indexed by `DownReason::index`.
pub(crate) const DOWN_LABELS: [&str; 5] = [
    "closed_by_server",
    "io_error",
    "dead",
    "frame_too_long",
    "shutdown",
];

/// `reason` labels of [`metric::PARSE_ERRORS`], indexed by [`parse_index`]
/// (the same words as `LinkError::reason`).
const PARSE_LABELS: [&str; 5] = [
    "oversize",
    "malformed",
    "unknown_command",
    "bad_id",
    "bad_ip",
];

/// `reason` labels of [`metric::REPLIES_DROPPED`], indexed by `Undelivered`.
pub(crate) const UNDELIVERED_LABELS: [&str; 3] =
    ["unknown_session", "session_closed", "slow_reader"];

/// Where each group of labelled counters starts in the flat table.
const DOWNS_AT: usize = PLAIN.len();
const PARSE_AT: usize = DOWNS_AT + DOWN_LABELS.len();
const DROPPED_AT: usize = PARSE_AT + PARSE_LABELS.len();
/// Counters of one link in all.
const SERIES: usize = DROPPED_AT + UNDELIVERED_LABELS.len();

/// The counter of a parse error, in [`PARSE_LABELS`] order.
fn parse_index(e: &LinkError) -> usize {
    match e {
        LinkError::TooLong { .. } => 0,
        LinkError::Malformed { .. } => 1,
        LinkError::UnknownCommand { .. } => 2,
        LinkError::BadId(_) => 3,
        LinkError::BadIp => 4,
    }
}

/// Metric name and optional `reason` label of counter `i`.
fn series(i: usize) -> (&'static str, Option<&'static str>) {
    match i {
        i if i < DOWNS_AT => (PLAIN[i], None),
        i if i < PARSE_AT => (metric::DOWNS, Some(DOWN_LABELS[i - DOWNS_AT])),
        i if i < DROPPED_AT => (metric::PARSE_ERRORS, Some(PARSE_LABELS[i - PARSE_AT])),
        i => (
            metric::REPLIES_DROPPED,
            Some(UNDELIVERED_LABELS[i - DROPPED_AT]),
        ),
    }
}

/// Every counter of one link instance: several links keep several of these.
pub(crate) struct LinkCounters {
    /// The counts, in [`series`] order.
    counts: [AtomicU64; SERIES],
    /// What [`LinkCounters::publish`] last gave the facade, so each call
    /// adds only the difference (and several links add up correctly).
    published: [AtomicU64; SERIES],
}

/// Counters of one link at one moment, readable without a metrics recorder
/// (tests, bench, the stats line).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkTotals {
    /// Frames written.
    pub frames: u64,
    /// Socket writes (batches).
    pub writes: u64,
    /// Successful connects so far.
    pub connects: u64,
    /// Replies and kicks for ids with no live session.
    pub replies_dropped: u64,
    /// Server frames that failed to parse.
    pub parse_errors: u64,
    /// Heartbeats sent.
    pub heartbeats: u64,
    /// Connections the LoginSrv closed at once (wrong port or gate not allowed).
    pub early_closes: u64,
    /// Windows with client messages forwarded and no reply (wrong dialect?).
    pub silent: u64,
}

impl LinkTotals {
    /// The sum of two links' counters.
    pub fn plus(&self, o: &LinkTotals) -> LinkTotals {
        LinkTotals {
            frames: self.frames + o.frames,
            writes: self.writes + o.writes,
            connects: self.connects + o.connects,
            replies_dropped: self.replies_dropped + o.replies_dropped,
            parse_errors: self.parse_errors + o.parse_errors,
            heartbeats: self.heartbeats + o.heartbeats,
            early_closes: self.early_closes + o.early_closes,
            silent: self.silent + o.silent,
        }
    }

    /// Frames per socket write (0 before the first write).
    pub fn frames_per_write(&self) -> f64 {
        if self.writes > 0 {
            self.frames as f64 / self.writes as f64
        } else {
            0.0
        }
    }
}

impl LinkCounters {
    /// All zero.
    pub(crate) fn new() -> Self {
        LinkCounters {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            published: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn add_at(&self, i: usize, n: u64) {
        self.counts[i].fetch_add(n, Ordering::Relaxed);
    }

    fn get_at(&self, i: usize) -> u64 {
        self.counts[i].load(Ordering::Relaxed)
    }

    /// Add `n` to a plain counter.
    pub(crate) fn add(&self, count: Count, n: u64) {
        self.add_at(count as usize, n);
    }

    /// One link loss, by `DownReason::index`.
    pub(crate) fn down(&self, index: usize) {
        self.add_at(DOWNS_AT + index, 1);
    }

    /// One server frame that did not parse.
    pub(crate) fn parse_error(&self, e: &LinkError) {
        self.add_at(PARSE_AT + parse_index(e), 1);
    }

    /// One order of the LoginSrv that found no session, by `Undelivered`.
    pub(crate) fn undelivered(&self, index: usize) {
        self.add_at(DROPPED_AT + index, 1);
    }

    fn sum(&self, from: usize, to: usize) -> u64 {
        (from..to).map(|i| self.get_at(i)).sum()
    }

    /// The counts right now.
    pub(crate) fn totals(&self) -> LinkTotals {
        LinkTotals {
            frames: self.get_at(Count::Frames as usize),
            writes: self.get_at(Count::Writes as usize),
            connects: self.get_at(Count::Connects as usize),
            replies_dropped: self.sum(DROPPED_AT, SERIES),
            parse_errors: self.sum(PARSE_AT, DROPPED_AT),
            heartbeats: self.get_at(Count::Heartbeats as usize),
            early_closes: self.get_at(Count::EarlyCloses as usize),
            silent: self.get_at(Count::Silent as usize),
        }
    }

    /// Add what changed since the last call to the `metrics` facade, as the
    /// series of `backend`.
    pub(crate) fn publish(&self, backend: &str) {
        for i in 0..SERIES {
            let now = self.get_at(i);
            let before = self.published[i].swap(now, Ordering::Relaxed);
            let delta = now.saturating_sub(before);
            if delta == 0 {
                continue;
            }
            let backend = backend.to_owned();
            match series(i) {
                (name, None) => {
                    metrics::counter!(name, metric::BACKEND_LABEL => backend).increment(delta)
                }
                (name, Some(reason)) => metrics::counter!(
                    name,
                    metric::BACKEND_LABEL => backend,
                    "reason" => reason
                )
                .increment(delta),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_labels_are_the_protocol_crate_s() {
        let errors = [
            LinkError::TooLong { max: 1 },
            LinkError::Malformed { reason: "x" },
            LinkError::UnknownCommand { command: b'?' },
            LinkError::BadId(mir2_proto::link::IdError::Empty),
            LinkError::BadIp,
        ];
        for e in &errors {
            assert_eq!(PARSE_LABELS[parse_index(e)], e.reason());
        }
    }

    #[test]
    fn every_series_is_named_once() {
        let mut seen: Vec<_> = (0..SERIES).map(series).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), SERIES);
        assert_eq!(
            series(Count::DiscardedBytes as usize).0,
            metric::DISCARDED_BYTES
        );
    }

    #[test]
    fn totals_sum_the_labelled_counters() {
        let c = LinkCounters::new();
        c.add(Count::Frames, 3);
        c.add(Count::Writes, 1);
        c.parse_error(&LinkError::BadIp);
        c.parse_error(&LinkError::Malformed { reason: "x" });
        c.undelivered(0);
        c.publish("b");
        c.add(Count::Frames, 2);
        c.publish("b");
        let t = c.totals();
        assert_eq!(
            (t.frames, t.writes, t.parse_errors, t.replies_dropped),
            (5, 1, 2, 1)
        );
        assert_eq!(
            c.published[Count::Frames as usize].load(Ordering::Relaxed),
            5
        );
    }
}
