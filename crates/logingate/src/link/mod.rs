//! A TCP link to one LoginSrv: connect, batch writes, heartbeat, route
//! replies, detect death, reconnect with backoff. Split by concern:
//!
//! - this module: the sessions' handle ([`Link`]), the pending buffer and
//!   the generations;
//! - [`supervisor`]: connect, backoff, linger, why a connection ended;
//! - [`writer`]: batching the pending buffer into socket writes;
//! - [`reader`]: framing server bytes and acting on each frame through
//!   [`Dispatch`];
//! - [`stats`]: the link's counters and metric names;
//! - [`history`]: up/down changes and the heartbeat round trip, for the console;
//! - [`set`]: the gate's backends, one [`Link`] each, and which one a new
//!   client goes to ([`select`]).
//!
//! Nothing here is global: a gate with several LoginSrvs runs one [`Link`]
//! and one [`run`] per backend, each with its own address, frame table,
//! heartbeat, generations and counters. A session keeps the [`Link`] it
//! opened on for life, so its messages cost what they cost with one backend.
//!
//! Sessions never touch the socket. They append encoded frames to one shared
//! buffer and a single writer swaps the buffer out and writes it whole, so
//! under load one `write` carries many frames.
//!
//! Link generations: every successful connect starts a new generation. A
//! session remembers the generation its open frame went out on; its data and
//! close frames are only sent on that same generation. When a link drops, the
//! LoginSrv forgets every session of it, so the gate closes them all
//! (`server_lost`) and sends no close frame for them on the next link.
//!
//! A link counts as answered (logged `link: up`, gauge `gate_link_up`) at
//! the first valid frame of a connection: a LoginSrv that accepts and closes
//! at once (a wrong port, or a gate address it does not allow) never looks up.
//! Clients may open as soon as the socket connects.
//!
//! Liveness: only heartbeat replies (`%++$`, or any `%+x$` that is not a kick
//! or block, as in the Delphi servers) reset the dead timer. A LoginSrv that
//! still answers clients but no longer answers heartbeats is treated as dead,
//! which is what the Delphi gates do; data alone proves little since a wedged
//! server may still flush old replies.

mod history;
mod reader;
pub mod select;
mod set;
mod stats;
mod supervisor;
mod writer;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mir2_proto::link::{self as wire, Frames};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::config::Config;
use history::History;
use stats::{Count, LinkCounters};

pub use history::LinkChange;
pub use reader::{Dispatch, Undelivered};
pub use set::LinkSet;
pub use stats::{metric, LinkTotals};
pub use supervisor::run;

/// Identifies one connection of a link; 0 is never used.
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

/// Where one link connects and its timing and size limits, from `[server]`.
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
    /// Client messages forwarded without a single reply within
    /// `silent_window` that make the link warn of a wrong dialect (0 = never).
    pub silent_replies_warn: u64,
    /// The window of `silent_replies_warn`.
    pub silent_window: Duration,
    /// The config key that sets this link's dialect and its value, named by
    /// the wrong-dialect warning (e.g. `server.backends[1].dialect = "delphi"`).
    pub dialect_key: String,
}

/// The link's timing, which a configuration reload may change while it runs: the
/// reader re-arms its heartbeat and dead timers at once, the supervisor uses the new
/// backoff ceiling and connect bound from its next attempt on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkTiming {
    /// Interval of `%--$`.
    pub heartbeat: Duration,
    /// No heartbeat reply for this long = dead.
    pub dead_after: Duration,
    /// Backoff ceiling.
    pub reconnect_max: Duration,
    /// Bound on one connect attempt.
    pub connect_timeout: Duration,
}

impl LinkTiming {
    /// The timing of `config`'s `[server]` section.
    pub fn from_config(config: &Config) -> Self {
        let s = &config.server;
        LinkTiming {
            heartbeat: Duration::from_secs(s.heartbeat_secs),
            dead_after: Duration::from_secs(s.dead_after_secs),
            reconnect_max: Duration::from_secs(s.reconnect_max_secs),
            connect_timeout: Duration::from_secs(s.connect_timeout_secs),
        }
    }
}

impl LinkOptions {
    /// These options with `timing` instead of their own.
    pub(crate) fn with_timing(&self, timing: LinkTiming) -> LinkOptions {
        LinkOptions {
            heartbeat: timing.heartbeat,
            dead_after: timing.dead_after,
            reconnect_max: timing.reconnect_max,
            connect_timeout: timing.connect_timeout,
            ..self.clone()
        }
    }

    /// Options from the config, linking to `addr`; `dialect_key` names the
    /// key and value of the link's dialect for the wrong-dialect warning.
    pub fn from_config(config: &Config, addr: SocketAddr, dialect_key: String) -> Self {
        let s = &config.server;
        LinkOptions {
            addr,
            heartbeat: Duration::from_secs(s.heartbeat_secs),
            dead_after: Duration::from_secs(s.dead_after_secs),
            reconnect_max: Duration::from_secs(s.reconnect_max_secs),
            connect_timeout: Duration::from_secs(s.connect_timeout_secs),
            max_frame_bytes: s.max_frame_bytes,
            silent_replies_warn: s.silent_replies_warn,
            silent_window: Duration::from_secs(s.silent_window_secs),
            dialect_key,
        }
    }
}

/// The sessions' side of one link: a cheap clone of a shared handle.
#[derive(Clone)]
pub struct Link {
    /// State shared by the sessions and this link's task.
    state: Arc<LinkState>,
}

/// Everything one link's sessions and its task share.
struct LinkState {
    /// Where the backend listens.
    addr: SocketAddr,
    /// `addr` as text: the `backend` label of its metrics.
    backend: String,
    /// The frame table every frame of this link is written and read with.
    frames: Frames,
    /// Bound on pending bytes for open and data frames.
    max_pending: usize,
    /// Frames waiting for the writer, and the generation they belong to.
    pending: Mutex<PendingFrames>,
    /// Wakes the writer when the buffer goes from empty to non-empty.
    wake: Notify,
    /// This link's counters.
    counters: LinkCounters,
    /// Up/down changes and the last heartbeat round trip.
    history: History,
    /// Sessions open on this link now (`PendingFrames::sessions.len()`),
    /// read without the lock to pick the least loaded backend.
    live: AtomicUsize,
    /// Whether the LoginSrv sent a valid frame on the current connection.
    answered: AtomicBool,
    /// Timing set at run time ([`Link::retime`]); `None` = the options `run` got.
    timing: tokio::sync::watch::Sender<Option<LinkTiming>>,
}

/// Encoded frames not yet written, under the lock that also guards the
/// generation, so no frame can be appended to a connection that is gone.
struct PendingFrames {
    /// Encoded frames not yet handed to the socket.
    buf: BytesMut,
    /// How many frames `buf` holds (batching metric).
    frames: u64,
    /// Generation of the live connection; `None` while down.
    generation: Option<Generation>,
    /// Ids of the sessions opened on this connection and not closed yet:
    /// the ones to close when it drops (and only those).
    sessions: HashSet<u32>,
    /// Client messages queued since the link was created, for the
    /// wrong-dialect check (read once per window by the reader).
    data_frames: u64,
}

impl Link {
    /// A link handle to the backend at `backend` writing `frames` (a
    /// [`mir2_proto::Dialect`] or a table), down until [`run`] connects it.
    pub fn new(backend: SocketAddr, frames: impl AsRef<Frames>, max_pending: usize) -> Self {
        Link {
            state: Arc::new(LinkState {
                addr: backend,
                backend: backend.to_string(),
                frames: *frames.as_ref(),
                max_pending,
                pending: Mutex::new(PendingFrames {
                    buf: BytesMut::with_capacity(writer::BATCH_START_BYTES),
                    frames: 0,
                    generation: None,
                    sessions: HashSet::new(),
                    data_frames: 0,
                }),
                wake: Notify::new(),
                counters: LinkCounters::new(),
                history: History::default(),
                live: AtomicUsize::new(0),
                answered: AtomicBool::new(false),
                timing: tokio::sync::watch::Sender::new(None),
            }),
        }
    }

    /// Where the backend listens.
    pub fn addr(&self) -> SocketAddr {
        self.state.addr
    }

    /// The backend's address as text (the `backend` label of its metrics).
    pub fn backend(&self) -> &str {
        &self.state.backend
    }

    /// Sessions open on this link now.
    pub fn live_sessions(&self) -> usize {
        self.state.live.load(Ordering::Relaxed)
    }

    /// Whether the LoginSrv has sent a valid frame on the current connection
    /// (what `link: up` in the log and `gate_link_up` mean).
    pub fn is_answered(&self) -> bool {
        self.state.answered.load(Ordering::Relaxed)
    }

    /// Puts `timing` in force on the running link (see [`LinkTiming`]).
    pub fn retime(&self, timing: LinkTiming) {
        self.state.timing.send_replace(Some(timing));
    }

    /// The frame table in use.
    pub fn frames(&self) -> &Frames {
        &self.state.frames
    }

    /// Whether the link is connected right now.
    pub fn is_up(&self) -> bool {
        self.state.pending.lock().generation.is_some()
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
        let mut p = self.state.pending.lock();
        let generation = p.generation.ok_or(PushError::Down)?;
        if p.buf.len() >= self.state.max_pending {
            return Err(PushError::Busy);
        }
        self.append(&mut p, |f, buf| {
            wire::write_open(f, buf, id, client_ip, gate_ip)
        });
        if p.sessions.insert(id) {
            self.state.live.store(p.sessions.len(), Ordering::Relaxed);
        }
        Ok(generation)
    }

    /// Queue one client message for session `id`.
    pub fn data(&self, generation: Generation, id: u32, data: &[u8]) -> Result<(), PushError> {
        let mut p = self.state.pending.lock();
        if p.generation != Some(generation) {
            return Err(PushError::Down);
        }
        // `%A` + up to 10 id digits + `/` + `$`: a safe upper bound.
        if p.buf.len() + data.len() + 16 > self.state.max_pending {
            return Err(PushError::Busy);
        }
        self.append(&mut p, |f, buf| wire::write_data(f, buf, id, data));
        p.data_frames += 1;
        Ok(())
    }

    /// The session `id` has ended: queue its close frame if it was opened on
    /// the current connection; `false` when that connection is gone (nothing
    /// to close). Called once per successful [`Link::open`].
    pub fn close(&self, generation: Generation, id: u32) -> bool {
        let mut p = self.state.pending.lock();
        if p.sessions.remove(&id) {
            self.state.live.store(p.sessions.len(), Ordering::Relaxed);
        }
        if p.generation != Some(generation) {
            return false;
        }
        self.append(&mut p, |f, buf| wire::write_close(f, buf, id));
        true
    }

    /// Counters so far.
    pub fn stats(&self) -> LinkTotals {
        self.state.counters.totals()
    }

    /// Recent up/down changes, oldest first.
    pub fn history(&self) -> Vec<LinkChange> {
        self.state.history.changes()
    }

    /// The last heartbeat round trip, once one was answered.
    pub fn heartbeat_rtt(&self) -> Option<Duration> {
        self.state.history.rtt()
    }

    fn counters(&self) -> &LinkCounters {
        &self.state.counters
    }

    /// Set this link's series of gauge `name`.
    fn set_gauge(&self, name: &'static str, value: f64) {
        metrics::gauge!(name, stats::metric::BACKEND_LABEL => self.state.backend.clone())
            .set(value);
    }

    fn append(&self, p: &mut PendingFrames, write: impl FnOnce(&Frames, &mut BytesMut)) {
        let was_empty = p.buf.is_empty();
        write(&self.state.frames, &mut p.buf);
        p.frames += 1;
        if was_empty {
            self.state.wake.notify_one();
        }
    }

    /// Queue a heartbeat if `generation` is still the live connection.
    fn heartbeat(&self, generation: Generation) {
        let mut p = self.state.pending.lock();
        if p.generation == Some(generation) {
            self.append(&mut p, |f, buf| wire::write_heartbeat(f, buf));
            self.counters().add(Count::Heartbeats, 1);
        }
    }

    /// Start a generation: an empty buffer, sessions may open.
    fn mark_up(&self, generation: Generation) {
        let mut p = self.state.pending.lock();
        p.buf.clear();
        p.frames = 0;
        p.generation = Some(generation);
        self.state.answered.store(false, Ordering::Relaxed);
    }

    /// The LoginSrv sent its first valid frame on this connection.
    fn mark_answered(&self) {
        self.state.answered.store(true, Ordering::Relaxed);
    }

    /// End the generation; returns how many pending bytes were discarded
    /// and the sessions that were open on it (the LoginSrv forgot them).
    fn mark_down(&self) -> (usize, Vec<u32>) {
        let mut p = self.state.pending.lock();
        let discarded = p.buf.len();
        p.buf.clear();
        p.frames = 0;
        p.generation = None;
        let lost: Vec<u32> = p.sessions.drain().collect();
        self.state.live.store(0, Ordering::Relaxed);
        self.state.answered.store(false, Ordering::Relaxed);
        (discarded, lost)
    }

    /// Client messages queued so far.
    fn data_frames(&self) -> u64 {
        self.state.pending.lock().data_frames
    }

    /// Swap the pending buffer with `spare` (empty); returns frames taken.
    fn take(&self, spare: &mut BytesMut) -> u64 {
        let mut p = self.state.pending.lock();
        std::mem::swap(&mut p.buf, spare);
        std::mem::take(&mut p.frames)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use mir2_proto::link::Dialect;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const ADDR: SocketAddr = SocketAddr::new(IP, 5500);

    fn drain(link: &Link) -> (Vec<u8>, u64) {
        let mut spare = BytesMut::new();
        let frames = link.take(&mut spare);
        (spare.to_vec(), frames)
    }

    #[test]
    fn frames_are_batched_in_order() {
        let link = Link::new(ADDR, Dialect::Wemade, 1024);
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
        let link = Link::new(ADDR, Dialect::Delphi, 100);
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

    #[test]
    fn sessions_are_tied_to_their_generation() {
        let link = Link::new(ADDR, Dialect::HappyM2, 1024);
        assert_eq!(
            link.open(1, IP, IP),
            Err(PushError::Down),
            "refused while down"
        );
        link.mark_up(Generation(1));
        let old = link.open(1, IP, IP).unwrap();
        link.data(old, 1, b"#1x!").unwrap();
        let (discarded, lost) = link.mark_down();
        assert!(discarded > 0, "pending bytes discarded");
        assert_eq!(
            lost,
            vec![1],
            "the sessions of the connection are handed back"
        );
        assert_eq!(link.live_sessions(), 0);
        assert_eq!(link.data(old, 1, b"#1x!"), Err(PushError::Down));
        assert!(!link.close(old, 1));
        link.mark_up(Generation(2));
        // The new LoginSrv connection never heard of session 1.
        assert_eq!(link.data(old, 1, b"#1x!"), Err(PushError::Down));
        assert!(!link.close(old, 1));
        assert_eq!(drain(&link), (Vec::new(), 0));
    }

    #[test]
    fn live_sessions_count_opens_until_their_close() {
        let link = Link::new(ADDR, Dialect::Wemade, 1024);
        link.mark_up(Generation(1));
        let g = link.open(1, IP, IP).unwrap();
        link.open(2, IP, IP).unwrap();
        assert_eq!(link.live_sessions(), 2);
        assert!(link.close(g, 1));
        assert_eq!(link.live_sessions(), 1);
        let (_, lost) = link.mark_down();
        assert_eq!(lost, vec![2]);
        // The lost session's own close comes later and finds nothing to send.
        assert!(!link.close(g, 2));
        assert_eq!(link.live_sessions(), 0);
    }
}
