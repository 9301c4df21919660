//! `netcore`: a TCP connection core on tokio — the Linux descendant of the classic
//! Windows completion-port server (CIOCPServer). It knows nothing of any protocol.
//!
//! * Listeners with SO_REUSEADDR and a configured backlog; several addresses per core.
//! * Admission before any per-connection memory: block list (static + run-time, CIDR),
//!   per-IP rate (fixed-memory table), global and per-IP concurrency caps.
//! * Fronts: a source allow list, and the PROXY protocol (v1/v2) from trusted proxies,
//!   whose header names the client the session and admission then see (`proxy`).
//! * A registry of sessions with ids 1..=i32::MAX, O(1) lookup from any task.
//! * One task per session: in-order reads into pooled buffers held only while bytes are
//!   pending, a byte-bounded outbound queue written with vectored writes, first-message
//!   and idle timers at O(1) cost (driven by whole messages, as the handler reports
//!   them), and `on_close` exactly once.
//! * Orderly shutdown: stop accepting, close every session, flush, wait for all tasks.
//!
//! The known defects of CIOCPServer, the completion-port design this core descends from, are impossible here by construction:
//! * lost out-of-order read buffers — there is one reader per socket, so data is in
//!   order and there is no out-of-order list to lose from;
//! * unlocked counters — counts live in atomics or under the lock that changes the
//!   state they count, and admission slots are released by a guard's `Drop`;
//! * double close notifications — `on_close` consumes the handler state, which only
//!   the session task owns, so it cannot run twice;
//! * silently dropped sends — `Session::send` returns an error for every byte it refuses.
//!
//! See the crate README for the mapping table, knobs, metrics and measurements.

mod admission;
mod config;
mod conn;
mod counts;
mod listener;
mod metrics;
mod pool;
pub mod proxy;
mod reason;
mod registry;
mod server;
mod session;
mod timer;
mod tuning;

pub use admission::{Admission, Block, BlockKind, RejectObserver, StrictLimits};
pub use config::Config;
pub use conn::session_future_bytes;
pub use counts::{Counts, CountsSnapshot};
pub use ipnet::IpNet;
pub use proxy::{ProxyConfig, ProxyProtocol};
pub use reason::{CloseReason, SendError};
pub use registry::Sessions;
pub use server::Server;
pub use session::{Session, SessionId, SessionStats};
pub use tokio_util::sync::CancellationToken;
pub use tuning::{LiveLimits, Tuning};

use bytes::BytesMut;

/// What [`Handler::on_data`] made of the bytes: the one notion of activity both session
/// timers use (`first_packet_timeout`, `idle_timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// At least one whole message: the session is past its first packet and not idle.
    Message,
    /// No whole message (part of one, or bytes the protocol does not count, such as
    /// keep-alive noise): no timer moves, so trickled bytes cannot hold a slot.
    Partial,
}

/// The application's side of a session. One `Handler` serves all sessions; per-session
/// protocol state lives in `State`, owned by the session's task.
pub trait Handler: Send + Sync + 'static {
    /// Per-session protocol state.
    type State: Send + 'static;

    /// Every label the handler refuses a session with (`on_open`) or closes one with
    /// (`CloseReason::Protocol`): each gets a fixed counter in [`Counts`], read back by
    /// [`Server::counts`]. A label missing here is counted as `other`.
    const LABELS: &'static [&'static str] = &[];

    /// A new session, already registered (so `Sessions::close_all` cannot miss it).
    /// `Err(label)` rejects it: counted as `rejected_total{reason=label}`, socket closed,
    /// and `on_close` is not called.
    fn on_open(&self, session: &Session) -> Result<Self::State, &'static str>;

    /// Bytes arrived, in order. Consume whole frames from the front of `buf` and leave a
    /// partial tail; a tail that fills the whole receive buffer closes the session as
    /// `Protocol("read_buffer_full")`. `Err(reason)` closes the session.
    ///
    /// The result says whether a whole message arrived, which only the protocol knows:
    /// it is what ends the first-packet deadline and restarts the idle one.
    fn on_data(
        &self,
        state: &mut Self::State,
        session: &Session,
        buf: &mut BytesMut,
    ) -> Result<Progress, CloseReason>;

    /// The session ended; called exactly once per session `on_open` accepted, whoever
    /// closed it. The session is already out of the registry and refuses sends.
    fn on_close(&self, state: Self::State, session: &Session, reason: CloseReason);
}
