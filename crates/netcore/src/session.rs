//! The `Session` handle: any task may queue bytes on a session or close it.
//!
//! The outbound side is a byte-bounded `VecDeque<Bytes>` under a small mutex, next to
//! the waker of the session's own task. Unlike CIOCPServer's `SendText`, which
//! allocated a buffer per send and failed silently, a send either lands in the queue
//! (and will be written in order, coalesced with its neighbours) or returns an error.
//!
//! A send that finds the queue empty first tries the socket itself, non-blocking, from
//! the sending task (the gate's link reader, typically): when the kernel takes every
//! byte, the reply costs one system call and no wake-up, scheduler round or poll of the
//! session task. Whatever the socket does not take (full, partial write, error) goes to
//! the queue and wakes the task, exactly as before, so order, the byte bound, the
//! slow-reader close and error handling stay in one place. The write happens under the
//! queue lock, which the session task also holds while it writes, so the two never
//! interleave.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::os::fd::RawFd;
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
    /// The socket, for direct writes by senders; [`NO_SOCKET`] until the task attaches
    /// it and again before the task closes it. Only read under this lock, which is what
    /// keeps the descriptor alive while a sender writes to it. A bare `RawFd`, not an
    /// `Option`, so it packs beside `woken` (the whole `Shared` stays in a smaller
    /// allocator size class, which idle memory per session measures).
    socket: RawFd,
}

/// `Outbound::socket` when senders must not write directly.
const NO_SOCKET: RawFd = -1;

impl Default for Outbound {
    fn default() -> Self {
        Outbound {
            chunks: VecDeque::new(),
            bytes: 0,
            close: None,
            woken: false,
            waker: None,
            socket: NO_SOCKET,
        }
    }
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

/// One non-blocking `send(2)` of `data` to `fd`; the bytes the kernel took (0 when it
/// took none, would block, or failed: the queue and the session task deal with those).
#[allow(unsafe_code)]
fn write_now(fd: RawFd, data: &[u8]) -> usize {
    // SAFETY: `fd` comes from `Outbound::socket`, read under the queue lock that the
    // caller still holds; the session task clears that field under the same lock before
    // it closes the descriptor, so `fd` is open and still this session's socket for the
    // whole call. `data` is a live slice of exactly `data.len()` bytes that the kernel
    // only reads during the call. MSG_DONTWAIT keeps the call from blocking; MSG_NOSIGNAL
    // turns a reset peer into EPIPE instead of SIGPIPE.
    let rc = unsafe {
        libc::send(
            fd,
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    usize::try_from(rc).unwrap_or(0)
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
    /// The server's `bytes_out_total`, for bytes a sender writes directly.
    pub(crate) bytes_out: Counter,
}

impl SendLimits {
    pub(crate) fn new(max_outbound_bytes: usize, overflows: Counter, bytes_out: Counter) -> Self {
        SendLimits {
            max_outbound_bytes: AtomicUsize::new(max_outbound_bytes),
            overflows,
            bytes_out,
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
        let data = if was_empty {
            let fd = out.socket;
            match (fd != NO_SOCKET).then(|| write_now(fd, &data)) {
                Some(written) if written == data.len() => {
                    drop(out);
                    self.count_direct(written);
                    return Ok(());
                }
                Some(0) | None => data,
                Some(written) => {
                    self.count_direct(written);
                    data.slice(written..)
                }
            }
        } else {
            data
        };
        out.bytes += data.len();
        out.chunks.push_back(data);
        // A non-empty queue is already the task's business: it drains until empty or
        // until the socket blocks (then it waits for writability, not for us).
        let waker = if was_empty { out.wake() } else { None };
        drop(out);
        wake(waker);
        Ok(())
    }

    fn count_direct(&self, written: usize) {
        self.shared.limits.bytes_out.increment(written as u64);
        self.add_bytes_out(written);
    }

    /// Lets senders write to `socket` directly while the queue is empty. The session
    /// task calls it once the socket is registered and must call
    /// [`Session::detach_socket`] before it closes the descriptor.
    pub(crate) fn attach_socket(&self, socket: RawFd) {
        self.shared.out.lock().socket = socket;
    }

    /// Ends direct writes: after this returns no sender touches the descriptor.
    pub(crate) fn detach_socket(&self) {
        self.shared.out.lock().socket = NO_SOCKET;
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
        let limits = SendLimits::new(max, Counter::noop(), Counter::noop());
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
    fn shared_state_stays_small() {
        // One per session, idle ones included: 216 bytes plus the `Arc` counts is the
        // allocator's 240-byte class; 8 more bytes would cost 16 per session.
        let size = std::mem::size_of::<Shared>();
        assert!(size <= 216, "session state grew to {size} bytes");
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
