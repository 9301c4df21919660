//! Limits that change while the server runs (a configuration reload): the caps and
//! connect rate of admission, the first-packet and idle deadlines, the outbound bound.
//!
//! Each is one atomic (or, for the rate table, one pointer swap) read where it is
//! used, so a new value reaches new connections at their next check and live sessions
//! at their next event; [`Tuning::apply`] also wakes every live session so a lowered
//! deadline is armed at once rather than when the old one would have fired. Lowering a
//! cap closes nobody: it refuses new connections until the count is under it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::admission::Admission;
use crate::config::Config;
use crate::registry::Sessions;
use crate::session::SendLimits;

/// The limits [`Tuning::apply`] replaces; the rest of [`Config`] is fixed at bind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveLimits {
    /// `Config::max_connections`.
    pub max_connections: usize,
    /// `Config::max_conn_per_ip`.
    pub max_conn_per_ip: u32,
    /// `Config::conn_rate_per_ip`; a changed rate starts every source with a full bucket.
    pub conn_rate_per_ip: u32,
    /// `Config::conn_burst_per_ip`.
    pub conn_burst_per_ip: u32,
    /// `Config::first_packet_timeout`.
    pub first_packet_timeout: Option<Duration>,
    /// `Config::idle_timeout`.
    pub idle_timeout: Option<Duration>,
    /// `Config::max_outbound_bytes`.
    pub max_outbound_bytes: usize,
}

impl LiveLimits {
    /// The live limits of `config`.
    pub fn of(config: &Config) -> Self {
        LiveLimits {
            max_connections: config.max_connections,
            max_conn_per_ip: config.max_conn_per_ip,
            conn_rate_per_ip: config.conn_rate_per_ip,
            conn_burst_per_ip: config.conn_burst_per_ip,
            first_packet_timeout: config.first_packet_timeout,
            idle_timeout: config.idle_timeout,
            max_outbound_bytes: config.max_outbound_bytes,
        }
    }
}

/// Sentinel of [`Timeouts`]: no deadline.
const NONE: u64 = u64::MAX;

fn to_ms(d: Option<Duration>) -> u64 {
    d.map_or(NONE, |d| u64::try_from(d.as_millis()).unwrap_or(NONE - 1))
}

fn from_ms(ms: u64) -> Option<Duration> {
    (ms != NONE).then(|| Duration::from_millis(ms))
}

/// The session deadlines in force, read by every session task at its events.
pub(crate) struct Timeouts {
    /// First-packet deadline in milliseconds, `NONE` for none.
    first_packet_ms: AtomicU64,
    /// Idle deadline in milliseconds, `NONE` for none.
    idle_ms: AtomicU64,
}

impl Timeouts {
    pub(crate) fn new(config: &Config) -> Self {
        Timeouts {
            first_packet_ms: AtomicU64::new(to_ms(config.first_packet_timeout)),
            idle_ms: AtomicU64::new(to_ms(config.idle_timeout)),
        }
    }

    pub(crate) fn first_packet(&self) -> Option<Duration> {
        from_ms(self.first_packet_ms.load(Ordering::Relaxed))
    }

    pub(crate) fn idle(&self) -> Option<Duration> {
        from_ms(self.idle_ms.load(Ordering::Relaxed))
    }
}

/// Handle that changes a running server's [`LiveLimits`]; cheap to clone.
#[derive(Clone)]
pub struct Tuning {
    /// Read by the session tasks.
    pub(crate) timeouts: Arc<Timeouts>,
    /// Read by every `Session::send`.
    pub(crate) send_limits: Arc<SendLimits>,
    /// Caps and the connect rate.
    pub(crate) admission: Admission,
    /// Woken after a change so each session re-arms its deadline.
    pub(crate) sessions: Sessions,
}

impl std::fmt::Debug for Tuning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tuning").finish_non_exhaustive()
    }
}

impl Tuning {
    /// Puts `limits` in force for new connections and live sessions alike. Refused,
    /// changing nothing, when a value could not have been bound either.
    pub fn apply(&self, limits: &LiveLimits) -> Result<(), &'static str> {
        if limits.max_connections == 0 {
            return Err("max_connections must be > 0");
        }
        if limits.max_outbound_bytes == 0 {
            return Err("max_outbound_bytes must be > 0");
        }
        self.admission.set_limits(limits);
        self.send_limits
            .set_max_outbound_bytes(limits.max_outbound_bytes);
        self.timeouts
            .first_packet_ms
            .store(to_ms(limits.first_packet_timeout), Ordering::Relaxed);
        self.timeouts
            .idle_ms
            .store(to_ms(limits.idle_timeout), Ordering::Relaxed);
        self.sessions.nudge_all();
        Ok(())
    }

    /// The limits in force now.
    pub fn current(&self) -> LiveLimits {
        let (max_connections, max_conn_per_ip, conn_rate_per_ip, conn_burst_per_ip) =
            self.admission.limits();
        LiveLimits {
            max_connections,
            max_conn_per_ip,
            conn_rate_per_ip,
            conn_burst_per_ip,
            first_packet_timeout: self.timeouts.first_packet(),
            idle_timeout: self.timeouts.idle(),
            max_outbound_bytes: self.send_limits.max_outbound_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_trip_and_none_stays_none() {
        for d in [None, Some(Duration::ZERO), Some(Duration::from_secs(7))] {
            assert_eq!(from_ms(to_ms(d)), d);
        }
        assert_eq!(
            from_ms(to_ms(Some(Duration::MAX))),
            Some(Duration::from_millis(NONE - 1))
        );
    }
}
