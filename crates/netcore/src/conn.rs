//! One task per session: it owns the socket and the handler state, reads in order,
//! writes the queue, runs the timers, and calls `on_close` exactly once.
//!
//! `on_close` takes the state by value and only this task owns it, so a second call
//! is impossible by construction (CIOCPServer could notify a close from two threads).
//! There is one reader, so bytes reach `on_data` in order without CIOCPServer's
//! sequence numbers and out-of-order list.
//!
//! The task waits with one `poll_fn` over the socket's readiness (`poll_read_ready`,
//! `poll_write_ready`: tokio keeps those wakers in the socket's own slot), the
//! session's waker slot and one [`Timer`], boxed only while armed. No other future is
//! held across an await, which keeps the per-session task small (see
//! `session_future_stays_small`).
//!
//! Both timers measure the time since the last whole message, as `on_data` reports it
//! ([`Progress`]): bytes alone do not count, so a peer sending one byte, or a message a
//! byte at a time, is still closed at the first-packet (then idle) deadline.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::admission::Permit;
use crate::reason::CloseReason;
use crate::server::Core;
use crate::session::Session;
use crate::timer::Timer;
use crate::{Handler, Progress};

/// Most queued chunks handed to one `writev`.
const MAX_IOVECS: usize = 64;
/// Longest wait a deadline is set to; configured durations beyond it are clamped.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// `at + wait`, saturating at `FAR_FUTURE` so no configured duration can overflow.
fn after(at: Instant, wait: Duration) -> Instant {
    at.checked_add(wait.min(FAR_FUTURE))
        .unwrap_or(at + FAR_FUTURE)
}

/// Close label when the handler leaves a whole receive buffer pending.
pub(crate) const READ_BUFFER_FULL: &str = "read_buffer_full";

/// Everything a session task owns. Dropping it (also when a handler panics) takes the
/// session out of the registry, lowers the gauge and gives back the admission slots,
/// so none of the counts can drift.
struct Conn<H: Handler> {
    /// Registry, handler, pool, metrics, config.
    core: Arc<Core<H>>,
    /// The socket; only this task reads or writes it.
    stream: TcpStream,
    /// The handle other tasks also hold.
    session: Session,
    /// Whether `on_open` accepted it (only then it counts as active).
    opened: bool,
}

impl<H: Handler> Conn<H> {
    /// Out of the registry: `Sessions::get` no longer finds it. Idempotent.
    fn deregister(&self) {
        self.core.sessions.remove(self.session.id());
    }
}

impl<H: Handler> Drop for Conn<H> {
    fn drop(&mut self) {
        // Before `stream` (dropped after this body) closes the descriptor.
        self.session.detach_socket();
        self.deregister();
        self.session.forget_waker();
        if self.opened {
            self.core.metrics.active.decrement(1.0);
        }
        self.core.admission.release(self.session.peer().ip());
    }
}

/// What woke the session task.
enum Event {
    /// Bytes were queued on an empty queue, or a close was requested.
    Woken,
    /// The socket is readable (or hit EOF / an error, which the read reports).
    Readable,
    /// The socket accepts writes again.
    Writable,
    /// The session's timer fired.
    Timer,
}

/// Runs a registered session to the end.
///
/// Written as a function returning an `async move` block (not an `async fn`): an async
/// fn keeps its arguments twice in the future (the argument slots and the moved-in
/// locals); a block's captures are stored once. Same for `drive` and `finish_gracefully`.
pub(crate) fn serve<H: Handler>(
    core: Arc<Core<H>>,
    stream: TcpStream,
    session: Session,
    permit: Permit,
) -> impl Future<Output = ()> + Send {
    permit.hand_over(); // from here on `Conn::drop` releases the slots
    let mut conn = Conn {
        core,
        stream,
        session,
        opened: false,
    };
    async move {
        let Some(mut state) = open(&mut conn) else {
            return;
        };
        // From here senders may write replies straight to the socket (see `Session::send`).
        conn.session
            .attach_socket(std::os::fd::AsRawFd::as_raw_fd(&conn.stream));
        // The session's only timer: first-packet / idle deadline, then the flush deadline.
        let mut timer = Timer::default();
        let mut rx: Option<BytesMut> = None;
        let reason = drive(&conn, &mut state, &mut rx, &mut timer).await;
        if close(&conn, state, rx, reason) {
            let flush_deadline = after(Instant::now(), conn.core.config.shutdown_flush_timeout);
            timer.set(Some(flush_deadline));
            finish_gracefully(&conn, &mut timer).await;
        }
        conn.session.outbound().discard();
    }
}

/// Bytes of a session future for handler `H`. Tokio stores it in the task's cell,
/// which it aligns (and so rounds) to 128 bytes on x86-64: with the cell's own ~100
/// bytes, a future of at most 280 bytes keeps an idle session's task at 384 bytes
/// instead of 512. Exposed so applications can hold their handler state to that.
pub fn session_future_bytes<H: Handler>() -> usize {
    fn output_size<A, B, C, D, R>(_: fn(A, B, C, D) -> R) -> usize {
        std::mem::size_of::<R>()
    }
    output_size(serve::<H>)
}

/// Asks the handler; `None` when it rejected the session (counted, no `on_close`).
fn open<H: Handler>(conn: &mut Conn<H>) -> Option<H::State> {
    let core = &conn.core;
    match core.handler.on_open(&conn.session) {
        Ok(state) => {
            conn.opened = true;
            core.metrics.opened();
            core.metrics.active.increment(1.0);
            Some(state)
        }
        Err(label) => {
            conn.session.close_with(CloseReason::Protocol(label));
            core.reject(label, conn.session.peer());
            None
        }
    }
}

/// Deregisters, returns the buffer, tells the handler (the only `on_close` call site).
/// Returns whether the queue should still be flushed.
fn close<H: Handler>(
    conn: &Conn<H>,
    state: H::State,
    rx: Option<BytesMut>,
    reason: CloseReason,
) -> bool {
    let core = &conn.core;
    if let Some(buf) = rx {
        core.pool.give(conn.session.id().get(), buf);
    }
    // Gone from the registry before the handler hears of the close.
    conn.deregister();
    // Counted first, so whatever the handler signals from `on_close` already
    // sees the close in the metrics.
    core.metrics.closed(reason);
    core.handler.on_close(state, &conn.session, reason);
    tracing::debug!(id = %conn.session.id(), peer = %conn.session.peer(), %reason, "session closed");
    reason.flushes()
}

/// The I/O loop; returns the winning close reason.
///
/// Only `last_message` and the arguments live across the await; the rest happens in plain
/// functions so it takes no room in the session's future.
#[allow(clippy::manual_async_fn)] // deliberate, see `serve`
fn drive<'a, H: Handler>(
    conn: &'a Conn<H>,
    state: &'a mut H::State,
    rx: &'a mut Option<BytesMut>,
    timer: &'a mut Timer,
) -> impl Future<Output = CloseReason> + 'a {
    async move {
        // When the last whole message arrived; `None` until the first one.
        let mut last_message: Option<Instant> = None;
        if let Some(timeout) = first_packet_limit(conn) {
            timer.set(Some(after(Instant::now(), timeout)));
        }
        loop {
            let write_blocked = match close_or_flush(conn) {
                Ok(blocked) => blocked,
                Err(reason) => return reason,
            };
            let event = wait(conn, write_blocked, timer).await;
            if let Err(reason) = on_event(conn, state, rx, &mut last_message, timer, event) {
                return reason;
            }
        }
    }
}

/// The first-message deadline of this session's source under the limits in force.
fn first_packet_limit<H: Handler>(conn: &Conn<H>) -> Option<Duration> {
    let configured = conn.core.timeouts.first_packet();
    conn.core
        .admission
        .first_packet_timeout(conn.session.peer().ip(), configured)
}

/// Re-arms the timer after a wake-up, so limits changed at run time reach a waiting
/// session: before the first message the first-packet deadline is recomputed from the
/// session's start (earlier or later); after it, only an earlier idle deadline is
/// armed (a later one is found when the armed one fires).
fn retime<H: Handler>(conn: &Conn<H>, last_message: Option<Instant>, timer: &mut Timer) {
    match last_message {
        None => {
            let opened = Instant::from_std(conn.session.opened_at());
            let deadline = first_packet_limit(conn).map(|limit| after(opened, limit));
            if deadline != timer.deadline() {
                timer.set(deadline);
            }
        }
        Some(at) => {
            if let Some(idle) = conn.core.timeouts.idle() {
                let deadline = after(at, idle);
                if timer.deadline().is_none_or(|armed| deadline < armed) {
                    timer.set(Some(deadline));
                }
            }
        }
    }
}

/// The recorded close reason if any, else writes what is queued; `Ok(true)` = socket full.
fn close_or_flush<H: Handler>(conn: &Conn<H>) -> Result<bool, CloseReason> {
    if let Some(reason) = conn.session.close_reason() {
        return Err(reason);
    }
    flush(&conn.core, &conn.stream, &conn.session)
        .map_err(|e| conn.session.close_with(CloseReason::Error(e.kind())))
}

/// Waits for the first of: news from other tasks, readable, writable (only when a write
/// blocked), the timer. Socket wakers live in the socket's own slots, so this future
/// holds nothing but its three captures.
fn wait<'a, H: Handler>(
    conn: &'a Conn<H>,
    write_blocked: bool,
    timer: &'a mut Timer,
) -> impl Future<Output = io::Result<Event>> + 'a {
    poll_fn(move |cx| {
        if conn.session.poll_woken(cx).is_ready() {
            return Poll::Ready(Ok(Event::Woken));
        }
        let event = if let Poll::Ready(r) = conn.stream.poll_read_ready(cx) {
            r.map(|()| Event::Readable)
        } else if let Some(Poll::Ready(r)) = write_blocked.then(|| conn.stream.poll_write_ready(cx))
        {
            r.map(|()| Event::Writable)
        } else if timer.poll_expired(cx).is_ready() {
            Ok(Event::Timer)
        } else {
            return Poll::Pending;
        };
        // The task is about to run the handler, whose own sends must not wake the
        // task again (the loop flushes right after): drop the registered waker.
        conn.session.forget_waker();
        Poll::Ready(event)
    })
}

/// Acts on one event; `Err` ends the session with that (winning) reason.
///
/// The timer is re-armed only when it fires (or when the first message brings the
/// deadline forward), never on every message: activity is a timestamp compared at expiry.
fn on_event<H: Handler>(
    conn: &Conn<H>,
    state: &mut H::State,
    rx: &mut Option<BytesMut>,
    last_message: &mut Option<Instant>,
    timer: &mut Timer,
    event: io::Result<Event>,
) -> Result<(), CloseReason> {
    let session = &conn.session;
    let idle_timeout = conn.core.timeouts.idle();
    match event {
        Err(e) => Err(session.close_with(CloseReason::Error(e.kind()))),
        // The loop top closes or flushes.
        Ok(Event::Woken) => {
            retime(conn, *last_message, timer);
            Ok(())
        }
        Ok(Event::Writable) => Ok(()),
        Ok(Event::Readable) => {
            let progress = read_and_dispatch(&conn.core, &conn.stream, session, state, rx)
                .map_err(|reason| session.close_with(reason))?;
            if progress == Progress::Message {
                let now = Instant::now();
                if last_message.is_none() {
                    // Past the first message: from now on the idle deadline applies.
                    match idle_timeout {
                        None => timer.set(None),
                        Some(idle) => {
                            let next = after(now, idle);
                            if timer.deadline().is_none_or(|armed| next < armed) {
                                timer.set(Some(next));
                            }
                        }
                    }
                }
                *last_message = Some(now);
            }
            Ok(())
        }
        Ok(Event::Timer) => {
            let now = Instant::now();
            match (*last_message, idle_timeout) {
                // Only the first-packet deadline is armed before the first message.
                (None, _) => Err(session.close_with(CloseReason::FirstPacketTimeout)),
                (Some(at), Some(idle)) if now >= after(at, idle) => {
                    Err(session.close_with(CloseReason::IdleTimeout))
                }
                (Some(at), Some(idle)) => {
                    timer.set(Some(after(at, idle)));
                    Ok(())
                }
                (Some(_), None) => {
                    timer.set(None);
                    Ok(())
                }
            }
        }
    }
}

/// One non-blocking read into the session's pooled buffer, then the handler, whose
/// verdict is returned (`Partial` when nothing was read). The buffer goes back to the
/// pool as soon as the handler leaves nothing pending, so an idle session holds none.
fn read_and_dispatch<H: Handler>(
    core: &Core<H>,
    stream: &TcpStream,
    session: &Session,
    state: &mut H::State,
    rx: &mut Option<BytesMut>,
) -> Result<Progress, CloseReason> {
    let cap = core.pool.buffer_bytes();
    let buf = rx.get_or_insert_with(|| core.pool.take(session.id().get()));
    let room = cap.saturating_sub(buf.len());
    if buf.capacity() - buf.len() < room {
        buf.reserve(room); // reclaims in place when the handler kept no slice of it
    }
    let read = match read_once(stream, &mut (&mut *buf).limit(room), room) {
        Ok(0) => return Err(CloseReason::PeerClosed),
        Ok(n) => n,
        Err(e)
            if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted =>
        {
            release_if_drained(core, session, rx);
            return Ok(Progress::Partial);
        }
        Err(e) => return Err(CloseReason::Error(e.kind())),
    };
    core.metrics.bytes_in.increment(read as u64);
    session.add_bytes_in(read);
    let progress = core.handler.on_data(state, session, buf)?;
    if buf.len() >= cap {
        return Err(CloseReason::Protocol(READ_BUFFER_FULL));
    }
    release_if_drained(core, session, rx);
    Ok(progress)
}

/// One non-blocking read of at most `room` bytes. A short read means the kernel's
/// receive queue is empty (the socket is edge-triggered), so it also clears the
/// socket's read readiness: the next wait parks at once instead of paying a `recv`
/// that can only return `EAGAIN`, which halves the receive calls of a session that
/// gets one message at a time. The readiness cleared is the one observed before the
/// read, so an edge that arrived meanwhile is kept (as tokio's own `poll_read` does;
/// `try_read_buf` alone clears only on `WouldBlock`).
fn read_once(stream: &TcpStream, buf: &mut impl BufMut, room: usize) -> io::Result<usize> {
    let mut drained = None;
    let outcome = stream.try_io(Interest::READABLE, || {
        let n = stream.try_read_buf(buf)?;
        if n > 0 && n < room {
            drained = Some(n);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match drained {
        Some(n) => Ok(n),
        None => outcome,
    }
}

fn release_if_drained<H: Handler>(core: &Core<H>, session: &Session, rx: &mut Option<BytesMut>) {
    if rx.as_ref().is_some_and(BytesMut::is_empty) {
        if let Some(buf) = rx.take() {
            core.pool.give(session.id().get(), buf);
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
                session.add_bytes_out(written);
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
/// reset that would destroy the bytes we just sent. Bounded by `timer`'s deadline.
#[allow(clippy::manual_async_fn)] // deliberate, see `serve`
fn finish_gracefully<'a, H: Handler>(
    conn: &'a Conn<H>,
    timer: &'a mut Timer,
) -> impl Future<Output = ()> + 'a {
    async move {
        let (core, stream, session) = (&*conn.core, &conn.stream, &conn.session);
        let had_output = !session.outbound().chunks.is_empty();
        loop {
            match flush(core, stream, session) {
                Ok(false) => break,
                Ok(true) => {}
                Err(_) => return,
            }
            let writable = poll_fn(|cx| {
                if timer.poll_expired(cx).is_ready() {
                    return Poll::Ready(false);
                }
                stream.poll_write_ready(cx).map(|r| r.is_ok())
            })
            .await;
            if !writable {
                return; // deadline passed or socket failed: the rest is dropped
            }
        }
        if !had_output {
            return;
        }
        if socket2::SockRef::from(stream)
            .shutdown(std::net::Shutdown::Write)
            .is_err()
        {
            return;
        }
        loop {
            let readable = poll_fn(|cx| {
                if timer.poll_expired(cx).is_ready() {
                    return Poll::Ready(false);
                }
                stream.poll_read_ready(cx).map(|r| r.is_ok())
            })
            .await;
            if !readable || discard_input(stream) {
                return;
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Server};

    struct Nop;
    impl Handler for Nop {
        type State = ();
        fn on_open(&self, _: &Session) -> Result<(), &'static str> {
            Ok(())
        }
        fn on_data(
            &self,
            _: &mut (),
            _: &Session,
            buf: &mut BytesMut,
        ) -> Result<Progress, CloseReason> {
            buf.clear();
            Ok(Progress::Message)
        }
        fn on_close(&self, _: (), _: &Session, _: CloseReason) {}
    }

    /// The session future is allocated once per connection; keep it small.
    #[tokio::test]
    async fn session_future_stays_small() {
        let config = Config {
            listen: vec!["127.0.0.1:0".parse().expect("addr")],
            ..Config::default()
        };
        let server = Server::bind(config, Arc::new(Nop)).await.expect("bind");
        let core = server.core();
        let addr = server.local_addrs()[0];
        let client = std::net::TcpStream::connect(addr).expect("connect");
        client.set_nonblocking(true).expect("nonblocking");
        let stream = TcpStream::from_std(client).expect("register");
        let permit = core.admission.admit(addr.ip()).expect("admit");
        let session = core
            .sessions
            .register(|id| Session::new(id, addr, addr, Arc::clone(&core.send_limits)))
            .expect("registry open");
        let future = serve(Arc::clone(&core), stream, session, permit);
        let size = std::mem::size_of_val(&future);
        println!("session future: {size} bytes");
        assert!(size <= 200, "session future grew to {size} bytes");
        assert_eq!(size, session_future_bytes::<Nop>());
    }

    /// Consumes whole lines, leaves a partial one pending; counts bytes seen.
    #[derive(Default)]
    struct Lines {
        seen: std::sync::atomic::AtomicUsize,
    }
    impl Handler for Lines {
        type State = ();
        fn on_open(&self, _: &Session) -> Result<(), &'static str> {
            Ok(())
        }
        fn on_data(
            &self,
            _: &mut (),
            _: &Session,
            buf: &mut BytesMut,
        ) -> Result<Progress, CloseReason> {
            self.seen
                .store(buf.len(), std::sync::atomic::Ordering::SeqCst);
            match buf.iter().rposition(|&b| b == b'\n') {
                Some(nl) => {
                    let _ = buf.split_to(nl + 1);
                    Ok(Progress::Message)
                }
                None => Ok(Progress::Partial),
            }
        }
        fn on_close(&self, _: (), _: &Session, _: CloseReason) {}
    }

    async fn until(what: &str, mut cond: impl FnMut() -> bool) {
        for _ in 0..2000 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("timed out: {what}");
    }

    /// The receive buffer is held only while the handler leaves bytes pending.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_session_holds_no_receive_buffer() {
        use std::sync::atomic::Ordering;
        use tokio::io::AsyncWriteExt;
        let config = Config {
            listen: vec!["127.0.0.1:0".parse().expect("addr")],
            metrics_prefix: "unit_pool_",
            ..Config::default()
        };
        let handler = Arc::new(Lines::default());
        let server = Server::bind(config, Arc::clone(&handler))
            .await
            .expect("bind");
        let core = server.core();
        let addr = server.local_addrs()[0];
        let token = server.shutdown_token();
        let run = tokio::spawn(server.run());
        let mut client = TcpStream::connect(addr).await.expect("connect");

        client.write_all(b"whole\n").await.expect("write");
        until("buffer back in the pool", || {
            handler.seen.load(Ordering::SeqCst) == 6 && core.pool.free_len() == 1
        })
        .await;
        client.write_all(b"part").await.expect("write");
        until("buffer held for the partial line", || {
            handler.seen.load(Ordering::SeqCst) == 4 && core.pool.free_len() == 0
        })
        .await;
        client.write_all(b"ial\n").await.expect("write");
        until("partial line completed, buffer returned", || {
            handler.seen.load(Ordering::SeqCst) == 8 && core.pool.free_len() == 1
        })
        .await;
        token.cancel();
        run.await.expect("run");
    }
}
