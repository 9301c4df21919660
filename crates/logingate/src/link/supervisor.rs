//! One link's lifetime: connect with a bound, serve the connection until it
//! fails, say why, back off, reconnect; on stop, flush and linger.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::reader::{self, Dispatch, ReaderLogs};
use super::stats::{metric, Count};
use super::{writer, Generation, Link, LinkOptions};

/// Why a connection of the link ended.
#[derive(Debug)]
pub(super) enum DownReason {
    /// The LoginSrv closed the connection.
    ClosedByServer,
    /// A socket error.
    Io(io::Error),
    /// No heartbeat reply within `dead_after`.
    Dead(Duration),
    /// A server frame exceeded `max_frame_bytes`.
    FrameTooLong(usize),
    /// Orderly shutdown after the final flush.
    Stopped,
}

impl DownReason {
    /// Place of this reason in the `gate_link_down_total` labels.
    fn index(&self) -> usize {
        match self {
            DownReason::ClosedByServer => 0,
            DownReason::Io(_) => 1,
            DownReason::Dead(_) => 2,
            DownReason::FrameTooLong(_) => 3,
            DownReason::Stopped => 4,
        }
    }
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownReason::ClosedByServer => f.write_str("closed by the LoginSrv"),
            DownReason::Io(e) => write!(f, "socket error: {e}"),
            DownReason::Dead(d) => write!(f, "no heartbeat reply for {} s", d.as_secs()),
            DownReason::FrameTooLong(max) => {
                write!(
                    f,
                    "LoginSrv frame longer than {max} bytes (server.max_frame_bytes)"
                )
            }
            DownReason::Stopped => f.write_str("gate shutting down"),
        }
    }
}

/// First reconnect delay; doubles up to `reconnect_max`.
const BACKOFF_START: Duration = Duration::from_millis(500);
/// How long a stopping link waits for the LoginSrv to close its side.
const LINGER: Duration = Duration::from_secs(1);
/// A LoginSrv that closes a connection this soon, before sending any frame,
/// refused the gate rather than failed: the hint names the usual causes.
const EARLY_CLOSE: Duration = Duration::from_secs(1);

impl DownReason {
    /// Whether the LoginSrv ended the connection (EOF or reset), not us.
    fn by_peer(&self) -> bool {
        match self {
            DownReason::ClosedByServer => true,
            DownReason::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
            ),
            _ => false,
        }
    }
}

/// Run the link until `stop` is cancelled: connect, serve, reconnect.
///
/// On `stop` the writer flushes what is pending (close frames of the
/// shutdown) and half-closes the socket before this returns.
pub async fn run(
    link: Link,
    opts: LinkOptions,
    dispatch: Arc<dyn Dispatch>,
    stop: CancellationToken,
) {
    supervise(&link, &opts, &*dispatch, &stop).await;
    link.counters().publish(link.backend());
}

async fn supervise(
    link: &Link,
    opts: &LinkOptions,
    dispatch: &dyn Dispatch,
    stop: &CancellationToken,
) {
    let counters = link.counters();
    let logs = ReaderLogs::new();
    let mut backoff = BACKOFF_START;
    let mut next_generation = 1u64;
    let mut attempt = 0u64;
    link.set_gauge(metric::UP, 0.0);
    loop {
        if stop.is_cancelled() {
            return;
        }
        let retimed = *link.state.timing.borrow();
        let current = retimed.map(|t| opts.with_timing(t));
        let opts = current.as_ref().unwrap_or(opts);
        attempt += 1;
        if attempt == 1 {
            info!(addr = %opts.addr, "link: connecting to LoginSrv");
        }
        let connected = tokio::select! {
            r = tokio::time::timeout(opts.connect_timeout, TcpStream::connect(opts.addr)) => r,
            () = stop.cancelled() => return,
        };
        match connected {
            Ok(Ok(stream)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    warn!(error = %e, "link: cannot set TCP_NODELAY");
                }
                let generation = Generation(next_generation);
                next_generation += 1;
                attempt = 0;
                counters.add(Count::Connects, 1);
                link.mark_up(generation);
                // `link: up` waits for the LoginSrv's first frame (the reader logs it).
                info!(addr = %opts.addr, generation = generation.0, "link: connected, waiting for the LoginSrv's first frame");
                let since = Instant::now();
                let reason = serve(link, opts, dispatch, &logs, stream, generation, stop).await;
                let answered = link.is_answered();
                let (discarded, lost) = link.mark_down();
                link.set_gauge(metric::UP, 0.0);
                link.set_gauge(metric::SESSIONS, 0.0);
                counters.down(reason.index());
                counters.add(Count::DiscardedBytes, discarded as u64);
                let lived = since.elapsed();
                let refused = !answered && lived < EARLY_CLOSE && reason.by_peer();
                if refused {
                    counters.add(Count::EarlyCloses, 1);
                }
                counters.publish(link.backend());
                link.state
                    .history
                    .record(false, format!("{}: {reason}", opts.addr));
                if matches!(reason, DownReason::Stopped) {
                    info!(addr = %opts.addr, "link: down ({reason})");
                    dispatch.link_lost(&lost);
                    return;
                }
                if refused {
                    warn!(
                        addr = %opts.addr,
                        after_ms = lived.as_millis() as u64,
                        sessions = lost.len(),
                        "link: down: the LoginSrv closed the link right after accepting it \
                         ({reason}): wrong port, or this gate's address is not allowed by the LoginSrv"
                    );
                } else if matches!(reason, DownReason::FrameTooLong(_)) {
                    error!(addr = %opts.addr, discarded, sessions = lost.len(), "link: down ({reason}); resetting");
                } else {
                    warn!(addr = %opts.addr, discarded, sessions = lost.len(), "link: down ({reason})");
                }
                dispatch.link_lost(&lost);
                // A link that served a while was healthy: retry quickly.
                if since.elapsed() >= opts.heartbeat {
                    backoff = BACKOFF_START;
                }
            }
            Ok(Err(e)) => {
                warn!(addr = %opts.addr, attempt, error = %e, retry_in_ms = backoff.as_millis() as u64, "link: connect failed")
            }
            Err(_) => {
                warn!(addr = %opts.addr, attempt, retry_in_ms = backoff.as_millis() as u64, "link: connect timed out")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(opts.reconnect_max.max(BACKOFF_START));
    }
}

/// Serve one connection until it fails or `stop` has flushed it.
async fn serve(
    link: &Link,
    opts: &LinkOptions,
    dispatch: &dyn Dispatch,
    logs: &ReaderLogs,
    stream: TcpStream,
    generation: Generation,
    stop: &CancellationToken,
) -> DownReason {
    let (mut rd, wr) = stream.into_split();
    let reason = tokio::select! {
        r = writer::write_loop(link, wr, stop) => r,
        r = reader::read_loop(link, opts, dispatch, logs, &mut rd, generation) => r,
    };
    if matches!(reason, DownReason::Stopped) {
        linger(&mut rd).await;
    }
    reason
}

/// After the final flush and half-close, read (and discard) until the
/// LoginSrv closes too. Closing a socket with unread input makes the kernel
/// send RST, which can destroy the close frames still in flight.
async fn linger(rd: &mut OwnedReadHalf) {
    let mut scratch = [0u8; 4096];
    let drained = tokio::time::timeout(LINGER, async {
        loop {
            match rd.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    if drained.is_err() {
        debug!("link: LoginSrv did not close within the linger time");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::stats::DOWN_LABELS;

    #[test]
    fn down_reasons_have_their_labels() {
        let reasons = [
            (DownReason::ClosedByServer, "closed_by_server"),
            (DownReason::Io(io::ErrorKind::Other.into()), "io_error"),
            (DownReason::Dead(Duration::ZERO), "dead"),
            (DownReason::FrameTooLong(1), "frame_too_long"),
            (DownReason::Stopped, "shutdown"),
        ];
        for (reason, label) in reasons {
            assert_eq!(DOWN_LABELS[reason.index()], label);
        }
    }
}
