//! The `Session` handle: any task may queue bytes on a session or close it.
//!
//! The outbound side is a byte-bounded `VecDeque<Bytes>` under a small mutex, next to
//! the waker of the session's own task. Unlike CIOCPServer's `SendText`, which
//! allocated a buffer per send and failed silently, a send either lands in the queue
//! (and will be written in order, coalesced with its neighbours) or returns an error.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use metrics::Counter;
use parking_lot::{Mutex, MutexGuard};

use crate::reason::{CloseReason, SendError};

/// Session id: 1..=i32::MAX, handed out in increasing order; after the space wraps,
/// ids still live are skipped, so a live id is never given to a second session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(u32);

impl SessionId {
    /// Largest id; it fits an `i32` because the Mir2 link and Delphi peers use signed ints.
    pub const MAX: u32 = i32::MAX as u32;

    /// The numeric id.
    pub fn get(self) -> u32 {
        self.0
    }

    pub(crate) fn new(raw: u32) -> Self {
        debug_assert!((1..=Self::MAX).contains(&raw));
        SessionId(raw)
    }
}

impl From<SessionId> for u32 {
    fn from(id: SessionId) -> u32 {
        id.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The outbound queue and the close decision, under one lock so that "closed"
/// and "accepts bytes" can never disagree.
#[derive(Default)]
pub(crate) struct Outbound {
    /// Bytes waiting to be written, in send order.
    pub(crate) chunks: VecDeque<Bytes>,
    /// Sum of `chunks` lengths: the bound is on bytes, not on messages.
    pub(crate) bytes: usize,
    /// First close reason recorded; once set, sends are refused.
    pub(crate) close: Option<CloseReason>,
    /// Set when the task has news (bytes on an empty queue, or a close); cleared when it looks.
    woken: bool,
    /// The session task's waker while it waits. A plain slot instead of a `Notify`: one
    /// waiter only, and the wait future then costs the task nothing.
    waker: Option<Waker>,
}

impl Outbound {
    /// Drops `written` bytes from the front after a (possibly partial) write.
    pub(crate) fn consume(&mut self, mut written: usize) {
        self.bytes = self.bytes.saturating_sub(written);
        while written > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if written >= front.len() {
                written -= front.len();
                self.chunks.pop_front();
            } else {
                let _ = front.split_to(written);
                written = 0;
            }
        }
        self.release_if_empty();
    }

    /// Flags news for the task; the waker is returned to be woken outside the lock.
    fn wake(&mut self) -> Option<Waker> {
        self.woken = true;
        self.waker.take()
    }

    /// Frees everything queued (hard close).
    pub(crate) fn discard(&mut self) {
        self.chunks = VecDeque::new();
        self.bytes = 0;
    }

    /// An idle session holds no queue memory: the spine is freed once drained
    /// (one small allocation per burst, against 128+ bytes kept by every idle session).
    fn release_if_empty(&mut self) {
        if self.chunks.is_empty() && self.chunks.capacity() > 0 {
            self.chunks = VecDeque::new();
        }
    }
}

fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// State shared between a session's task and every `Session` handle.
pub(crate) struct Shared {
    /// Registry key and the id the application talks about.
    id: SessionId,
    /// Remote address, for logs and the application's per-IP policy.
    peer: SocketAddr,
    /// Local address the peer connected to (which listener, for multi-homed gates).
    local: SocketAddr,
    /// Outbound queue, close decision and the task's waker.
    out: Mutex<Outbound>,
    /// Lock-free copy of `out.close.is_some()` for `is_closed`.
    closed: AtomicBool,
    /// Queue bound and overflow counter, shared by all sessions of a server.
    limits: Arc<SendLimits>,
    /// When the session was registered, for its age.
    opened_at: Instant,
    /// Bytes read from the peer (the task adds, anyone reads).
    bytes_in: AtomicU64,
    /// Bytes written to the peer.
    bytes_out: AtomicU64,
    /// Protocol messages, as the handler reports them with `record_messages`.
    messages: AtomicU64,
}

/// One session's counters at one moment: what an operator's listing shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionStats {
    /// Time since the session was registered.
    pub age: Duration,
    /// Bytes read from the peer.
    pub bytes_in: u64,
    /// Bytes written to the peer.
    pub bytes_out: u64,
    /// Messages the handler reported.
    pub messages: u64,
    /// Bytes queued for the peer and not yet written.
    pub queued_bytes: usize,
}

/// What every session's `send` needs from the server; one shared copy.
pub(crate) struct SendLimits {
    /// Per-session byte bound of the outbound queue; changes at run time (`Tuning`).
    pub(crate) max_outbound_bytes: AtomicUsize,
    /// Counts sends refused for a full queue.
    pub(crate) overflows: Counter,
}

impl SendLimits {
    pub(crate) fn new(max_outbound_bytes: usize, overflows: Counter) -> Self {
        SendLimits {
            max_outbound_bytes: AtomicUsize::new(max_outbound_bytes),
            overflows,
        }
    }

    pub(crate) fn max_outbound_bytes(&self) -> usize {
        self.max_outbound_bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn set_max_outbound_bytes(&self, bytes: usize) {
        self.max_outbound_bytes.store(bytes, Ordering::Relaxed);
    }
}

/// Handle to one session; cheap to clone, usable from any task.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.shared.id)
            .field("peer", &self.shared.peer)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Session {
    pub(crate) fn new(
        id: SessionId,
        peer: SocketAddr,
        local: SocketAddr,
        limits: Arc<SendLimits>,
    ) -> Self {
        Session {
            shared: Arc::new(Shared {
                id,
                peer,
                local,
                out: Mutex::new(Outbound::default()),
                closed: AtomicBool::new(false),
                limits,
                opened_at: Instant::now(),
                bytes_in: AtomicU64::new(0),
                bytes_out: AtomicU64::new(0),
                messages: AtomicU64::new(0),
            }),
        }
    }

    /// The session id.
    pub fn id(&self) -> SessionId {
        self.shared.id
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.shared.peer
    }

    /// The local address the peer connected to.
    pub fn local(&self) -> SocketAddr {
        self.shared.local
    }

    /// Counts `n` protocol messages of this session (only the handler knows what a
    /// message is); read back through [`Session::stats`].
    pub fn record_messages(&self, n: u64) {
        self.shared.messages.fetch_add(n, Ordering::Relaxed);
    }

    /// The session's counters now. Only the queue length takes the queue lock.
    pub fn stats(&self) -> SessionStats {
        let s = &self.shared;
        SessionStats {
            age: s.opened_at.elapsed(),
            bytes_in: s.bytes_in.load(Ordering::Relaxed),
            bytes_out: s.bytes_out.load(Ordering::Relaxed),
            messages: s.messages.load(Ordering::Relaxed),
            queued_bytes: s.out.lock().bytes,
        }
    }

    pub(crate) fn add_bytes_in(&self, n: usize) {
        self.shared.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_bytes_out(&self, n: usize) {
        self.shared.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Queues `data` for the peer. Refused with `Closed` once the session is closing;
    /// with `QueueFull` when it would exceed `max_outbound_bytes`, which also closes
    /// the session as `SlowReader` (a peer that does not read cannot be helped by waiting).
    pub fn send(&self, data: Bytes) -> Result<(), SendError> {
        let mut out = self.shared.out.lock();
        if out.close.is_some() {
            return Err(SendError::Closed);
        }
        if data.is_empty() {
            return Ok(());
        }
        if out.bytes.saturating_add(data.len()) > self.shared.limits.max_outbound_bytes() {
            out.close = Some(CloseReason::SlowReader);
            out.discard();
            self.shared.closed.store(true, Ordering::Release);
            let waker = out.wake();
            drop(out);
            self.shared.limits.overflows.increment(1);
            wake(waker);
            return Err(SendError::QueueFull);
        }
        let was_empty = out.chunks.is_empty();
        out.bytes += data.len();
        out.chunks.push_back(data);
        // A non-empty queue is already the task's business: it drains until empty or
        // until the socket blocks (then it waits for writability, not for us).
        let waker = if was_empty { out.wake() } else { None };
        drop(out);
        wake(waker);
        Ok(())
    }

    /// Asks the session to close: reading stops, what is queued is flushed (bounded by
    /// `shutdown_flush_timeout`), then the socket closes. The first reason wins.
    pub fn close(&self, reason: CloseReason) {
        self.close_with(reason);
    }

    /// True once a close reason is recorded (the session refuses sends from then on).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// The winning close reason, if any.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared.out.lock().close
    }

    /// Records `reason` unless one is already set; returns the winning reason.
    pub(crate) fn close_with(&self, reason: CloseReason) -> CloseReason {
        let mut out = self.shared.out.lock();
        let winner = *out.close.get_or_insert(reason);
        if !winner.flushes() {
            out.discard();
        }
        self.shared.closed.store(true, Ordering::Release);
        let waker = out.wake();
        drop(out);
        wake(waker);
        winner
    }

    /// When the session was registered.
    pub(crate) fn opened_at(&self) -> Instant {
        self.shared.opened_at
    }

    /// Wakes the session task without news for the peer, so it re-reads the limits in
    /// force (after `Tuning::apply`).
    pub(crate) fn nudge(&self) {
        let waker = self.shared.out.lock().wake();
        wake(waker);
    }

    /// Ready once something was queued or a close was requested since the last call.
    pub(crate) fn poll_woken(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut out = self.shared.out.lock();
        if std::mem::take(&mut out.woken) {
            return Poll::Ready(());
        }
        if !out.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            out.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Drops the stored waker so handles outliving the task do not pin its memory.
    pub(crate) fn forget_waker(&self) {
        let waker = self.shared.out.lock().waker.take();
        drop(waker);
    }

    pub(crate) fn outbound(&self) -> MutexGuard<'_, Outbound> {
        self.shared.out.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(max: usize) -> Session {
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let limits = SendLimits::new(max, Counter::noop());
        Session::new(SessionId::new(1), addr, addr, Arc::new(limits))
    }

    #[test]
    fn queue_is_bounded_in_bytes_and_overflow_closes() {
        let s = session(10);
        assert_eq!(s.send(Bytes::from_static(b"12345")), Ok(()));
        assert_eq!(s.send(Bytes::from_static(b"12345")), Ok(()));
        assert_eq!(s.outbound().bytes, 10);
        assert_eq!(s.send(Bytes::from_static(b"x")), Err(SendError::QueueFull));
        assert!(s.is_closed());
        assert_eq!(s.close_reason(), Some(CloseReason::SlowReader));
        assert_eq!(s.outbound().bytes, 0, "a slow reader's queue is freed");
        assert_eq!(s.send(Bytes::from_static(b"x")), Err(SendError::Closed));
    }

    #[test]
    fn first_close_reason_wins_and_soft_close_keeps_queue() {
        let s = session(100);
        s.send(Bytes::from_static(b"bye")).expect("queued");
        s.close(CloseReason::Kicked);
        s.close(CloseReason::Shutdown);
        assert_eq!(s.close_reason(), Some(CloseReason::Kicked));
        assert_eq!(s.outbound().bytes, 3, "kept for the flush");
        assert_eq!(s.send(Bytes::from_static(b"x")), Err(SendError::Closed));
    }

    #[test]
    fn consume_handles_partial_writes() {
        let s = session(100);
        s.send(Bytes::from_static(b"abc")).expect("queued");
        s.send(Bytes::from_static(b"defg")).expect("queued");
        let mut out = s.outbound();
        out.consume(4);
        assert_eq!(out.bytes, 3);
        assert_eq!(out.chunks.front().map(|b| &b[..]), Some(&b"efg"[..]));
        out.consume(3);
        assert!(out.chunks.is_empty());
        assert_eq!(out.bytes, 0);
    }
}
