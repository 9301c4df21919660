//! One task per session: it owns the socket and the handler state, reads in order,
//! writes the queue, runs the timers, and calls `on_close` exactly once.
//!
//! `on_close` takes the state by value and only this task owns it, so a second call
//! is impossible by construction (the seed could notify a close from two threads).
//! There is one reader, so bytes reach `on_data` in order without the seed's
//! sequence numbers and out-of-order list.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};

use crate::admission::Permit;
use crate::reason::CloseReason;
use crate::server::Core;
use crate::session::Session;
use crate::Handler;

/// Most queued chunks handed to one `writev`.
const MAX_IOVECS: usize = 64;
/// Deadline used when no timer is configured (never reached in practice).
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// Rejection label when the handler leaves a whole receive buffer pending.
pub(crate) const READ_BUFFER_FULL: &str = "read_buffer_full";

/// Deregisters the session and lowers the gauges even if the handler panics.
struct Registered<'a, H: Handler> {
    /// The core whose registry and gauges to update.
    core: &'a Core<H>,
    /// The session to deregister.
    session: &'a Session,
    /// Whether `on_open` accepted it (only then it counts as active).
    opened: bool,
}

impl<H: Handler> Drop for Registered<'_, H> {
    fn drop(&mut self) {
        self.core.sessions.remove(self.session.id());
        if self.opened {
            self.core.metrics.active.decrement(1.0);
        }
    }
}

/// Runs a registered session to the end.
pub(crate) async fn serve<H: Handler>(
    core: Arc<Core<H>>,
    stream: TcpStream,
    session: Session,
    permit: Permit,
) {
    let _permit = permit; // admission slots are held for the task's whole life
    let mut registered = Registered {
        core: &core,
        session: &session,
        opened: false,
    };
    let mut state = match core.handler.on_open(&session) {
        Ok(state) => state,
        Err(label) => {
            session.close_with(CloseReason::Protocol(label));
            core.reject(label, session.peer());
            return;
        }
    };
    registered.opened = true;
    core.metrics.opened.increment(1);
    core.metrics.active.increment(1.0);

    let mut rx: Option<BytesMut> = None;
    let reason = drive(&core, &stream, &session, &mut state, &mut rx).await;
    if let Some(buf) = rx.take() {
        core.pool.give(buf);
    }
    drop(registered); // gone from the registry before the handler hears of the close
    core.handler.on_close(state, &session, reason);
    core.metrics.closed(reason);
    tracing::debug!(id = %session.id(), peer = %session.peer(), reason = %reason, "session closed");

    if reason.flushes() {
        let deadline = Instant::now() + core.config.shutdown_flush_timeout;
        finish_gracefully(&core, &stream, &session, deadline).await;
    }
    session.outbound().discard();
}

/// The I/O loop; returns the winning close reason.
async fn drive<H: Handler>(
    core: &Core<H>,
    stream: &TcpStream,
    session: &Session,
    state: &mut H::State,
    rx: &mut Option<BytesMut>,
) -> CloseReason {
    let config = &core.config;
    let connected_at = Instant::now();
    let mut last_rx: Option<Instant> = None;
    let timers_on = config.first_packet_timeout.is_some() || config.idle_timeout.is_some();
    let deadline = |last_rx: Option<Instant>| match last_rx {
        None => config.first_packet_timeout.map(|t| connected_at + t),
        Some(at) => config.idle_timeout.map(|t| at + t),
    };
    // One timer per session, re-armed only when it fires (or when the first packet
    // brings the deadline forward), never on every packet.
    let timer = sleep_until(deadline(None).unwrap_or(connected_at + FAR_FUTURE));
    tokio::pin!(timer);

    loop {
        if let Some(reason) = session.close_reason() {
            return reason;
        }
        let write_blocked = match flush(core, stream, session) {
            Ok(blocked) => blocked,
            Err(e) => return session.close_with(CloseReason::Error(e.kind())),
        };
        let interest = if write_blocked {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        tokio::select! {
            biased;
            () = session.wake().notified() => {}
            ready = stream.ready(interest) => {
                let ready = match ready {
                    Ok(ready) => ready,
                    Err(e) => return session.close_with(CloseReason::Error(e.kind())),
                };
                if ready.is_readable() || ready.is_read_closed() {
                    match read_and_dispatch(core, stream, session, state, rx) {
                        Ok(true) => {
                            let now = Instant::now();
                            let first = last_rx.is_none();
                            last_rx = Some(now);
                            if first {
                                if let Some(at) = deadline(last_rx) {
                                    if at < timer.deadline() {
                                        timer.as_mut().reset(at);
                                    }
                                }
                            }
                        }
                        Ok(false) => {}
                        Err(reason) => return session.close_with(reason),
                    }
                }
            }
            () = &mut timer, if timers_on => {
                match deadline(last_rx) {
                    Some(at) if Instant::now() >= at => {
                        let reason = if last_rx.is_none() {
                            CloseReason::FirstPacketTimeout
                        } else {
                            CloseReason::IdleTimeout
                        };
                        return session.close_with(reason);
                    }
                    Some(at) => timer.as_mut().reset(at),
                    None => timer.as_mut().reset(Instant::now() + FAR_FUTURE),
                }
            }
        }
    }
}

/// One non-blocking read into the session's pooled buffer, then the handler.
/// `Ok(true)` when bytes arrived. The buffer goes back to the pool as soon as the
/// handler leaves nothing pending, so an idle session holds none.
fn read_and_dispatch<H: Handler>(
    core: &Core<H>,
    stream: &TcpStream,
    session: &Session,
    state: &mut H::State,
    rx: &mut Option<BytesMut>,
) -> Result<bool, CloseReason> {
    let cap = core.pool.buffer_bytes();
    let buf = rx.get_or_insert_with(|| core.pool.take());
    let room = cap.saturating_sub(buf.len());
    if buf.capacity() - buf.len() < room {
        buf.reserve(room); // reclaims in place when the handler kept no slice of it
    }
    let read = match stream.try_read_buf(&mut (&mut *buf).limit(room)) {
        Ok(0) => return Err(CloseReason::PeerClosed),
        Ok(n) => n,
        Err(e)
            if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted =>
        {
            release_if_drained(core, rx);
            return Ok(false);
        }
        Err(e) => return Err(CloseReason::Error(e.kind())),
    };
    core.metrics.bytes_in.increment(read as u64);
    core.handler.on_data(state, session, buf)?;
    if buf.len() >= cap {
        return Err(CloseReason::Protocol(READ_BUFFER_FULL));
    }
    release_if_drained(core, rx);
    Ok(true)
}

fn release_if_drained<H: Handler>(core: &Core<H>, rx: &mut Option<BytesMut>) {
    if rx.as_ref().is_some_and(BytesMut::is_empty) {
        if let Some(buf) = rx.take() {
            core.pool.give(buf);
        }
    }
}

/// Writes as much of the queue as the socket takes, coalescing up to `MAX_IOVECS`
/// chunks per `writev`. Returns `Ok(true)` when bytes remain because the socket is full.
/// The queue lock is held across the non-blocking `writev` so that the bytes and the
/// count stay consistent; senders wait at most for one system call.
fn flush<H: Handler>(core: &Core<H>, stream: &TcpStream, session: &Session) -> io::Result<bool> {
    let mut out = session.outbound();
    loop {
        if out.chunks.is_empty() {
            return Ok(false);
        }
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut count = 0;
        for (slot, chunk) in slices.iter_mut().zip(out.chunks.iter()) {
            *slot = IoSlice::new(chunk);
            count += 1;
        }
        match stream.try_write_vectored(&slices[..count]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => {
                core.metrics.bytes_out.increment(written as u64);
                out.consume(written);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Soft close: flush what was queued, send FIN, and if we flushed anything wait for the
/// peer's FIN while discarding input, so unread input does not turn our close into a
/// reset that would destroy the bytes we just sent. Bounded by `deadline`.
async fn finish_gracefully<H: Handler>(
    core: &Core<H>,
    stream: &TcpStream,
    session: &Session,
    deadline: Instant,
) {
    let had_output = !session.outbound().chunks.is_empty();
    let flushed = tokio::time::timeout_at(deadline, async {
        loop {
            match flush(core, stream, session) {
                Ok(false) => return true,
                Ok(true) => {
                    if stream.writable().await.is_err() {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    if !flushed || !had_output {
        return;
    }
    if socket2::SockRef::from(stream)
        .shutdown(std::net::Shutdown::Write)
        .is_err()
    {
        return;
    }
    let _ = tokio::time::timeout_at(deadline, async {
        loop {
            if stream.readable().await.is_err() || discard_input(stream) {
                return;
            }
        }
    })
    .await;
}

/// Reads and drops pending input; true once the peer closed or the socket failed.
fn discard_input(stream: &TcpStream) -> bool {
    let mut sink = [0u8; 1024];
    loop {
        match stream.try_read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}
