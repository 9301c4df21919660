//! Why a session ended, and why a send was refused.

use std::io;

/// Why a session was closed. The first reason recorded wins; later ones are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed its side (read returned 0). Closed hard: nothing can be flushed.
    PeerClosed,
    /// A socket error. Closed hard.
    Error(io::ErrorKind),
    /// Connected but sent nothing within `Config::first_packet_timeout`.
    FirstPacketTimeout,
    /// Sent nothing for `Config::idle_timeout`.
    IdleTimeout,
    /// The outbound queue passed `Config::max_outbound_bytes`. Closed hard: the peer is not reading.
    SlowReader,
    /// Closed on purpose by the application (an admin or the backend).
    Kicked,
    /// The server is shutting down.
    Shutdown,
    /// The handler rejected the byte stream; the label names the rule (e.g. `"forbidden_byte"`).
    Protocol(&'static str),
}

impl CloseReason {
    /// Stable label for logs and the `closed_total{reason}` metric.
    pub fn as_str(&self) -> &'static str {
        match self {
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::Error(_) => "error",
            CloseReason::FirstPacketTimeout => "first_packet_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::SlowReader => "slow_reader",
            CloseReason::Kicked => "kicked",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Protocol(label) => label,
        }
    }

    /// Whether queued bytes are still worth flushing: not when the peer is gone,
    /// the socket is broken, or the peer is the reason the queue is full.
    pub(crate) fn flushes(&self) -> bool {
        !matches!(
            self,
            CloseReason::PeerClosed | CloseReason::Error(_) | CloseReason::SlowReader
        )
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Error(kind) => write!(f, "error ({kind})"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// Why `Session::send` refused the bytes. A refused send is never silent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The session is closing or closed; nothing more is accepted.
    #[error("session closed")]
    Closed,
    /// The bytes would push the outbound queue past `max_outbound_bytes`;
    /// the session is now closed with `CloseReason::SlowReader`.
    #[error("outbound queue full; session closed as slow reader")]
    QueueFull,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_stable() {
        assert_eq!(CloseReason::PeerClosed.as_str(), "peer_closed");
        assert_eq!(CloseReason::Error(io::ErrorKind::Other).as_str(), "error");
        assert_eq!(
            CloseReason::FirstPacketTimeout.as_str(),
            "first_packet_timeout"
        );
        assert_eq!(CloseReason::IdleTimeout.as_str(), "idle_timeout");
        assert_eq!(CloseReason::SlowReader.as_str(), "slow_reader");
        assert_eq!(CloseReason::Kicked.as_str(), "kicked");
        assert_eq!(CloseReason::Shutdown.as_str(), "shutdown");
        assert_eq!(CloseReason::Protocol("oversize").as_str(), "oversize");
    }

    #[test]
    fn only_soft_reasons_flush() {
        assert!(!CloseReason::PeerClosed.flushes());
        assert!(!CloseReason::SlowReader.flushes());
        assert!(!CloseReason::Error(io::ErrorKind::BrokenPipe).flushes());
        assert!(CloseReason::Kicked.flushes());
        assert!(CloseReason::Shutdown.flushes());
        assert!(CloseReason::Protocol("x").flushes());
    }
}
