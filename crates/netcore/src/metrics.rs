//! Counter handles, registered once per server so the hot path is one atomic add.
//!
//! Names (prefix = `Config::metrics_prefix`):
//! `accepted_total`, `rejected_total{reason}`, `opened_total`, `active` (gauge),
//! `closed_total{reason}`, `bytes_in_total`, `bytes_out_total`, `queue_overflows_total`.

use std::sync::Arc;

use metrics::{Counter, Gauge, SharedString};

use crate::counts::Counts;
use crate::reason::CloseReason;

/// Rejection labels used by the core itself (the handler adds its own via `on_open`).
pub(crate) mod reject {
    pub const BLOCKED: &str = "blocked";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const MAX_CONNECTIONS: &str = "max_connections";
    pub const PER_IP_LIMIT: &str = "per_ip_limit";
    pub const NOT_ALLOW_LISTED: &str = "not_allow_listed";
    /// The accepted socket could not be set up (options, registration with the reactor).
    pub const SOCKET_SETUP: &str = "socket_setup";
}

/// The server's metric handles, and the same events in the readable [`Counts`].
pub(crate) struct Metrics {
    /// Sockets handed over by the kernel, before admission.
    accepted: Counter,
    /// Sessions whose handler accepted them (`on_open` returned Ok).
    opened: Counter,
    /// Live sessions (registered, not yet closed).
    pub active: Gauge,
    /// Bytes read from peers.
    pub bytes_in: Counter,
    /// Bytes written to peers.
    pub bytes_out: Counter,
    /// Sends refused because the outbound queue was full.
    pub queue_overflows: Counter,
    /// Name of the labelled rejection counter, shared so a lookup does not allocate.
    rejected_name: SharedString,
    /// Name of the labelled close counter.
    closed_name: SharedString,
    /// The figures the application reads back.
    pub counts: Counts,
}

impl Metrics {
    pub(crate) fn new(prefix: &str, labels: &[&'static str]) -> Self {
        let name = |suffix: &str| SharedString::from(Arc::<str>::from(format!("{prefix}{suffix}")));
        Metrics {
            accepted: metrics::counter!(name("accepted_total")),
            opened: metrics::counter!(name("opened_total")),
            active: metrics::gauge!(name("active")),
            bytes_in: metrics::counter!(name("bytes_in_total")),
            bytes_out: metrics::counter!(name("bytes_out_total")),
            queue_overflows: metrics::counter!(name("queue_overflows_total")),
            rejected_name: name("rejected_total"),
            closed_name: name("closed_total"),
            counts: Counts::new(labels),
        }
    }

    pub(crate) fn accepted(&self) {
        self.counts.count_accepted();
        self.accepted.increment(1);
    }

    pub(crate) fn opened(&self) {
        self.counts.count_opened();
        self.opened.increment(1);
    }

    pub(crate) fn rejected(&self, reason: &'static str) {
        self.counts.count_refusal(reason);
        metrics::counter!(self.rejected_name.clone(), "reason" => reason).increment(1);
    }

    pub(crate) fn closed(&self, reason: CloseReason) {
        self.counts.count_close(reason);
        metrics::counter!(self.closed_name.clone(), "reason" => reason.as_str()).increment(1);
    }
}
