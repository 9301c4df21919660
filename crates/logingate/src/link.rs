//! The one TCP link to the LoginSrv: connect, batch writes, heartbeat,
//! route replies, detect death, reconnect with backoff.
//!
//! Sessions never touch the socket. They append encoded frames to one shared
//! buffer ([`Link`]) and a single writer swaps the buffer out and writes it
//! whole, so under load one `write` carries many frames.
//!
//! Link generations: every successful connect starts a new generation. A
//! session remembers the generation its open frame went out on; its data and
//! close frames are only sent on that same generation. When a link drops, the
//! LoginSrv forgets every session of it, so the gate closes them all
//! (`server_lost`) and sends no close frame for them on the next link.
//!
//! Liveness: only heartbeat replies (`%++$`, or any `%+x$` that is not a kick
//! or block, as in the Delphi servers) reset the dead timer. A LoginSrv that
//! still answers clients but no longer answers heartbeats is treated as dead,
//! which is what the Delphi gates do; data alone proves little since a wedged
//! server may still flush old replies.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mir2_proto::link::{self as wire, Dialect, LinkError, LinkFramer, ServerFrame};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::ratelog::LogLimiter;

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
}

/// Identifies one connection of the link; 0 is never used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(u64);

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The link is down or was re-established since the session opened.
    Down,
    /// The pending buffer is full (`max_link_buffer_bytes`).
    Busy,
}

/// What the link reader does with the LoginSrv's orders; the gate implements
/// it over the netcore registry, tests can implement it over anything.
pub trait Dispatch: Send + Sync + 'static {
    /// Queue `data` (one `#…!` as sent by the LoginSrv) for client `id`.
    /// `Err(label)` when it could not be delivered (counted by label).
    fn deliver(&self, id: u32, data: Bytes) -> Result<(), &'static str>;
    /// Flush what is queued for `id`, then close it.
    fn kick(&self, id: u32) -> Result<(), &'static str>;
    /// Kick `id` and block its IP (temporarily or permanently).
    fn block(&self, id: u32, permanent: bool) -> Result<(), &'static str>;
    /// The link dropped: every session opened on it is gone at the LoginSrv.
    fn link_lost(&self);
}

/// Timing and size limits of the link task, from `[server]`.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// Where the LoginSrv listens for gates.
    pub addr: SocketAddr,
    /// Interval of `%--$`.
    pub heartbeat: Duration,
    /// No heartbeat reply for this long = dead.
    pub dead_after: Duration,
    /// Backoff ceiling.
    pub reconnect_max: Duration,
    /// Bound on one connect attempt.
    pub connect_timeout: Duration,
    /// Longest server frame.
    pub max_frame_bytes: usize,
}

impl LinkOptions {
    /// Options from the config, linking to `addr`.
    pub fn from_config(config: &Config, addr: SocketAddr) -> Self {
        let s = &config.server;
        LinkOptions {
            addr,
            heartbeat: Duration::from_secs(s.heartbeat_secs),
            dead_after: Duration::from_secs(s.dead_after_secs),
            reconnect_max: Duration::from_secs(s.reconnect_max_secs),
            connect_timeout: Duration::from_secs(s.connect_timeout_secs),
            max_frame_bytes: s.max_frame_bytes,
        }
    }
}

/// Counters of one link, readable without a metrics recorder (tests, bench).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
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
}

/// The sessions' side of the link: a cheap clone of a shared handle.
#[derive(Clone)]
pub struct Link {
    /// State shared with the link task.
    shared: Arc<Shared>,
}

struct Shared {
    /// Dialect every frame is written in.
    dialect: Dialect,
    /// Bound on pending bytes for data frames.
    max_pending: usize,
    /// Frames waiting for the writer, and the generation they belong to.
    pending: Mutex<Pending>,
    /// Wakes the writer when the buffer goes from empty to non-empty.
    wake: Notify,
    /// Frames handed to the socket (batching numerator).
    frames: AtomicU64,
    /// Socket writes (batching denominator).
    writes: AtomicU64,
    /// Successful connects.
    connects: AtomicU64,
    /// Replies, kicks and blocks that found no live session.
    replies_dropped: AtomicU64,
    /// Server frames that failed to parse.
    parse_errors: AtomicU64,
    /// Heartbeats queued.
    heartbeats: AtomicU64,
}

struct Pending {
    /// Encoded frames not yet handed to the socket.
    buf: BytesMut,
    /// How many frames `buf` holds (batching metric).
    frames: u64,
    /// Generation of the live connection; `None` while down.
    generation: Option<Generation>,
}

/// Initial capacity of each of the two batch buffers.
const BATCH_START_BYTES: usize = 64 * 1024;
/// A batch buffer grown past this by a burst is freed after its write.
const SPARE_KEEP_BYTES: usize = 1024 * 1024;

static PARSE_LOG: LogLimiter = LogLimiter::new(5);
static DROP_LOG: LogLimiter = LogLimiter::new(5);

impl Link {
    /// A link handle, down until [`run`] connects it.
    pub fn new(dialect: Dialect, max_pending: usize) -> Self {
        Link {
            shared: Arc::new(Shared {
                dialect,
                max_pending,
                pending: Mutex::new(Pending {
                    buf: BytesMut::with_capacity(BATCH_START_BYTES),
                    frames: 0,
                    generation: None,
                }),
                wake: Notify::new(),
                frames: AtomicU64::new(0),
                writes: AtomicU64::new(0),
                connects: AtomicU64::new(0),
                replies_dropped: AtomicU64::new(0),
                parse_errors: AtomicU64::new(0),
                heartbeats: AtomicU64::new(0),
            }),
        }
    }

    /// The dialect in use.
    pub fn dialect(&self) -> Dialect {
        self.shared.dialect
    }

    /// Whether the link is connected right now.
    pub fn is_up(&self) -> bool {
        self.shared.pending.lock().generation.is_some()
    }

    /// Queue the open frame of session `id`; the caller refuses the client
    /// on `Down` (link down) or `Busy` (pending buffer over its bound: a
    /// stalled LoginSrv must not let client churn grow it). Close frames are
    /// always accepted, so pending bytes stay within `max_pending` plus one
    /// close frame per live session.
    pub fn open(
        &self,
        id: u32,
        client_ip: IpAddr,
        gate_ip: IpAddr,
    ) -> Result<Generation, PushError> {
        let mut p = self.shared.pending.lock();
        let generation = p.generation.ok_or(PushError::Down)?;
        if p.buf.len() >= self.shared.max_pending {
            return Err(PushError::Busy);
        }
        self.append(&mut p, |d, buf| {
            wire::write_open(d, buf, id, client_ip, gate_ip)
        });
        Ok(generation)
    }

    /// Queue one client message for session `id`.
    pub fn data(&self, generation: Generation, id: u32, data: &[u8]) -> Result<(), PushError> {
        let mut p = self.shared.pending.lock();
        if p.generation != Some(generation) {
            return Err(PushError::Down);
        }
        // `%A` + up to 10 id digits + `/` + `$`: a safe upper bound.
        if p.buf.len() + data.len() + 16 > self.shared.max_pending {
            return Err(PushError::Busy);
        }
        self.append(&mut p, |d, buf| wire::write_data(d, buf, id, data));
        Ok(())
    }

    /// Queue the close frame of session `id` if it was opened on the current
    /// connection; `false` when that connection is gone (nothing to close).
    pub fn close(&self, generation: Generation, id: u32) -> bool {
        let mut p = self.shared.pending.lock();
        if p.generation != Some(generation) {
            return false;
        }
        self.append(&mut p, |d, buf| wire::write_close(d, buf, id));
        true
    }

    /// Counters so far.
    pub fn stats(&self) -> LinkStats {
        let s = &self.shared;
        LinkStats {
            frames: s.frames.load(Ordering::Relaxed),
            writes: s.writes.load(Ordering::Relaxed),
            connects: s.connects.load(Ordering::Relaxed),
            replies_dropped: s.replies_dropped.load(Ordering::Relaxed),
            parse_errors: s.parse_errors.load(Ordering::Relaxed),
            heartbeats: s.heartbeats.load(Ordering::Relaxed),
        }
    }

    fn append(&self, p: &mut Pending, write: impl FnOnce(Dialect, &mut BytesMut)) {
        let was_empty = p.buf.is_empty();
        write(self.shared.dialect, &mut p.buf);
        p.frames += 1;
        if was_empty {
            self.shared.wake.notify_one();
        }
    }

    fn heartbeat(&self, generation: Generation) {
        let mut p = self.shared.pending.lock();
        if p.generation == Some(generation) {
            self.append(&mut p, wire::write_heartbeat);
            self.shared.heartbeats.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(metric::HEARTBEATS).increment(1);
        }
    }

    /// Start a generation: an empty buffer, sessions may open.
    fn mark_up(&self, generation: Generation) {
        let mut p = self.shared.pending.lock();
        p.buf.clear();
        p.frames = 0;
        p.generation = Some(generation);
    }

    /// End the generation; returns how many pending bytes were discarded.
    fn mark_down(&self) -> usize {
        let mut p = self.shared.pending.lock();
        let discarded = p.buf.len();
        p.buf.clear();
        p.frames = 0;
        p.generation = None;
        discarded
    }

    /// Swap the pending buffer with `spare` (empty); returns frames taken.
    fn take(&self, spare: &mut BytesMut) -> u64 {
        let mut p = self.shared.pending.lock();
        std::mem::swap(&mut p.buf, spare);
        std::mem::take(&mut p.frames)
    }
}

/// Why a connection of the link ended.
#[derive(Debug)]
enum DownReason {
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
    fn label(&self) -> &'static str {
        match self {
            DownReason::ClosedByServer => "closed_by_server",
            DownReason::Io(_) => "io_error",
            DownReason::Dead(_) => "dead",
            DownReason::FrameTooLong(_) => "frame_too_long",
            DownReason::Stopped => "shutdown",
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
    let mut backoff = BACKOFF_START;
    let mut next_generation = 1u64;
    let mut attempt = 0u64;
    metrics::gauge!(metric::UP).set(0.0);
    loop {
        if stop.is_cancelled() {
            return;
        }
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
                link.shared.connects.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(metric::CONNECTS).increment(1);
                metrics::gauge!(metric::UP).set(1.0);
                link.mark_up(generation);
                info!(addr = %opts.addr, generation = generation.0, "link: up");
                let since = Instant::now();
                let reason = serve(&link, &opts, &*dispatch, stream, generation, &stop).await;
                let discarded = link.mark_down();
                metrics::gauge!(metric::UP).set(0.0);
                metrics::counter!(metric::DOWNS, "reason" => reason.label()).increment(1);
                metrics::counter!(metric::DISCARDED_BYTES).increment(discarded as u64);
                if matches!(reason, DownReason::Stopped) {
                    info!(addr = %opts.addr, "link: down ({reason})");
                    dispatch.link_lost();
                    return;
                }
                match &reason {
                    DownReason::FrameTooLong(_) => {
                        error!(addr = %opts.addr, discarded, "link: down ({reason}); resetting")
                    }
                    _ => warn!(addr = %opts.addr, discarded, "link: down ({reason})"),
                }
                dispatch.link_lost();
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
    stream: TcpStream,
    generation: Generation,
    stop: &CancellationToken,
) -> DownReason {
    let (mut rd, wr) = stream.into_split();
    let reason = tokio::select! {
        r = write_loop(link, wr, stop) => r,
        r = read_loop(link, opts, dispatch, &mut rd, generation) => r,
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

async fn write_loop(link: &Link, mut wr: OwnedWriteHalf, stop: &CancellationToken) -> DownReason {
    let shared = &link.shared;
    // The buffer last written, kept to be swapped in next: no allocation
    // per batch once both have grown.
    let mut spare = BytesMut::with_capacity(BATCH_START_BYTES);
    loop {
        let stopping = tokio::select! {
            biased;
            () = shared.wake.notified() => false,
            () = stop.cancelled() => true,
        };
        // Let the session tasks that are already runnable append their frames before we
        // take the batch: under load one write then carries many frames (the point of a
        // single link), and when idle this costs one scheduler pass, not a timer.
        tokio::task::yield_now().await;
        spare.clear();
        let frames = link.take(&mut spare);
        if !spare.is_empty() {
            if let Err(e) = wr.write_all(&spare).await {
                return DownReason::Io(e);
            }
            shared.frames.fetch_add(frames, Ordering::Relaxed);
            shared.writes.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(metric::FRAMES).increment(frames);
            metrics::counter!(metric::WRITES).increment(1);
            metrics::counter!(metric::BYTES_OUT).increment(spare.len() as u64);
            // Give back memory after a burst instead of keeping it forever.
            if spare.capacity() > SPARE_KEEP_BYTES {
                spare = BytesMut::with_capacity(BATCH_START_BYTES);
            }
        }
        if stopping {
            if let Err(e) = wr.shutdown().await {
                debug!(error = %e, "link: half-close failed");
            }
            return DownReason::Stopped;
        }
    }
}

async fn read_loop(
    link: &Link,
    opts: &LinkOptions,
    dispatch: &dyn Dispatch,
    rd: &mut OwnedReadHalf,
    generation: Generation,
) -> DownReason {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut framer = LinkFramer::new(opts.max_frame_bytes);
    let mut junk_seen = 0u64;
    let mut heartbeat = tokio::time::interval_at(Instant::now() + opts.heartbeat, opts.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let dead = tokio::time::sleep(opts.dead_after);
    tokio::pin!(dead);
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        tokio::select! {
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => return DownReason::ClosedByServer,
                Err(e) => return DownReason::Io(e),
                Ok(_) => loop {
                    match framer.next_frame(&mut buf) {
                        Ok(Some(body)) => {
                            metrics::counter!(metric::FRAMES_IN).increment(1);
                            if on_frame(link, dispatch, body) {
                                dead.as_mut().reset(Instant::now() + opts.dead_after);
                            }
                        }
                        Ok(None) => break,
                        Err(LinkError::TooLong { max }) => return DownReason::FrameTooLong(max),
                        Err(e) => parse_error(link, &e),
                    }
                    let junk = framer.junk_skipped();
                    if junk > junk_seen {
                        metrics::counter!(metric::JUNK_BYTES).increment(junk - junk_seen);
                        junk_seen = junk;
                    }
                },
            },
            _ = heartbeat.tick() => link.heartbeat(generation),
            () = &mut dead => return DownReason::Dead(opts.dead_after),
        }
    }
}

/// Act on one server frame; `true` when it was a heartbeat reply.
fn on_frame(link: &Link, dispatch: &dyn Dispatch, body: Bytes) -> bool {
    let frame = match wire::parse_server_frame(body) {
        Ok(f) => f,
        Err(e) => {
            parse_error(link, &e);
            return false;
        }
    };
    let (id, outcome) = match frame {
        ServerFrame::HeartbeatReply => return true,
        // An owned copy: a slice would pin the whole read buffer (16 KiB or
        // more) for as long as the reply waits in a client's queue, where
        // netcore accounts only its own few bytes, so clients that never
        // read could hold hundreds of times their `max_outbound_bytes`.
        ServerFrame::Data { id, data } => (id, dispatch.deliver(id, Bytes::copy_from_slice(&data))),
        ServerFrame::Kick { id } => (id, dispatch.kick(id)),
        ServerFrame::Block { id, permanent } => (id, dispatch.block(id, permanent)),
    };
    if let Err(reason) = outcome {
        link.shared.replies_dropped.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(metric::REPLIES_DROPPED, "reason" => reason).increment(1);
        if let Some(suppressed) = DROP_LOG.check() {
            debug!(
                id,
                reason, suppressed, "link: LoginSrv frame for no live session dropped"
            );
        }
    }
    false
}

fn parse_error(link: &Link, e: &LinkError) {
    link.shared.parse_errors.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(metric::PARSE_ERRORS, "reason" => e.reason()).increment(1);
    if let Some(suppressed) = PARSE_LOG.check() {
        warn!(error = %e, suppressed, "link: bad frame from LoginSrv skipped");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn drain(link: &Link) -> (Vec<u8>, u64) {
        let mut spare = BytesMut::new();
        let frames = link.take(&mut spare);
        (spare.to_vec(), frames)
    }

    #[test]
    fn frames_are_batched_in_order() {
        let link = Link::new(Dialect::Wemade, 1024);
        link.mark_up(Generation(1));
        let g = link.open(7, IP, IP).unwrap();
        link.data(g, 7, b"#1abc!").unwrap();
        assert!(link.close(g, 7));
        link.heartbeat(g);
        assert_eq!(
            drain(&link),
            (b"%O7/127.0.0.1$%A7/#1abc!$%X7$%--$".to_vec(), 4)
        );
        assert_eq!(drain(&link), (Vec::new(), 0));
    }

    #[test]
    fn pending_bytes_are_bounded_for_data_and_opens_but_not_closes() {
        let link = Link::new(Dialect::Delphi, 100);
        link.mark_up(Generation(1));
        let g = link.open(1, IP, IP).unwrap();
        let mut opened = vec![1];
        link.data(g, 1, &[b'<'; 50]).unwrap();
        assert_eq!(link.data(g, 1, &[b'<'; 50]), Err(PushError::Busy));
        // Opens fill the rest of the bound, then are refused.
        for id in 2..20 {
            match link.open(id, IP, IP) {
                Ok(_) => opened.push(id),
                Err(e) => assert_eq!(e, PushError::Busy),
            }
        }
        assert!(opened.len() < 19, "opens are bounded");
        assert_eq!(link.open(99, IP, IP), Err(PushError::Busy));
        // Every opened session still gets its close frame.
        for &id in &opened {
            assert!(link.close(g, id));
        }
        let (bytes, frames) = drain(&link);
        assert_eq!(frames, 1 + 2 * opened.len() as u64);
        assert!(bytes.len() > 100);
        // Drained: room again.
        link.data(g, 1, &[b'<'; 50]).unwrap();
        assert!(link.open(100, IP, IP).is_ok());
    }

    /// Records what the link reader hands over.
    #[derive(Default)]
    struct Capture {
        /// (id, payload, whether the payload owned its memory alone).
        delivered: Mutex<Vec<(u32, Bytes, bool)>>,
    }

    impl Dispatch for Capture {
        fn deliver(&self, id: u32, data: Bytes) -> Result<(), &'static str> {
            let unique = data.is_unique();
            self.delivered.lock().push((id, data, unique));
            Ok(())
        }
        fn kick(&self, _: u32) -> Result<(), &'static str> {
            Ok(())
        }
        fn block(&self, _: u32, _: bool) -> Result<(), &'static str> {
            Ok(())
        }
        fn link_lost(&self) {}
    }

    #[tokio::test]
    async fn delivered_replies_do_not_pin_the_read_buffer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let link = Link::new(Dialect::Wemade, 1 << 20);
        let opts = LinkOptions {
            addr: listener.local_addr().unwrap(),
            heartbeat: Duration::from_secs(30),
            dead_after: Duration::from_secs(60),
            reconnect_max: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
            max_frame_bytes: 16 * 1024,
        };
        let capture = Arc::new(Capture::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(link.clone(), opts, capture.clone(), stop.clone()));
        let (mut srv, _) = listener.accept().await.unwrap();
        srv.write_all(b"%7/#abc!$\0%8/#def!$\0").await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while capture.delivered.lock().len() < 2 {
            assert!(Instant::now() < deadline, "replies delivered in time");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let got = capture.delivered.lock().clone();
        assert_eq!(got[0].0, 7);
        assert_eq!(&got[0].1[..], b"#abc!");
        assert_eq!(got[1].0, 8);
        assert_eq!(&got[1].1[..], b"#def!");
        assert!(
            got.iter().all(|(_, _, unique)| *unique),
            "a reply shares the link's read buffer"
        );
        stop.cancel();
        drop(srv);
        task.await.unwrap();
    }

    #[test]
    fn sessions_are_tied_to_their_generation() {
        let link = Link::new(Dialect::HappyM2, 1024);
        assert_eq!(
            link.open(1, IP, IP),
            Err(PushError::Down),
            "refused while down"
        );
        link.mark_up(Generation(1));
        let old = link.open(1, IP, IP).unwrap();
        link.data(old, 1, b"#1x!").unwrap();
        assert!(link.mark_down() > 0, "pending bytes discarded");
        assert_eq!(link.data(old, 1, b"#1x!"), Err(PushError::Down));
        assert!(!link.close(old, 1));
        link.mark_up(Generation(2));
        // The new LoginSrv connection never heard of session 1.
        assert_eq!(link.data(old, 1, b"#1x!"), Err(PushError::Down));
        assert!(!link.close(old, 1));
        assert_eq!(drain(&link), (Vec::new(), 0));
    }
}
