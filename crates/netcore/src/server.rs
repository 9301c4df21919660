//! The server: binds, runs the accept loops, and shuts down in order.
//!
//! Shutdown (after `shutdown_token().cancel()`): the accept loops stop; the registry
//! refuses new sessions and closes every live one with `Shutdown`; each session task
//! calls `on_close`, flushes within `shutdown_flush_timeout` and closes; `run` returns
//! when the task tracker has seen every session task end.
//!
//! Draining (after `accept_token().cancel()`): only the accept loops stop and this
//! process closes its copies of the listeners; sessions carry on until they end or
//! the shutdown token is cancelled. A process that handed its listeners to a successor
//! (which accepts from the same kernel queues) drains this way.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use limits::LogLimiter;
use tokio::io::unix::AsyncFd;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::config::Config;
use crate::counts::Counts;
use crate::metrics::Metrics;
use crate::pool::BufferPool;
use crate::registry::Sessions;
use crate::session::SendLimits;
use crate::tuning::{Timeouts, Tuning};
use crate::Handler;

/// Everything the accept loops and session tasks share.
pub(crate) struct Core<H: Handler> {
    /// The limits.
    pub(crate) config: Config,
    /// The application.
    pub(crate) handler: Arc<H>,
    /// Live sessions by id.
    pub(crate) sessions: Sessions,
    /// Block list, rate and concurrency caps.
    pub(crate) admission: Admission,
    /// Source allow list and trusted fronts.
    pub(crate) sources: crate::proxy::Sources,
    /// Receive buffers shared by all sessions.
    pub(crate) pool: BufferPool,
    /// Metric handles.
    pub(crate) metrics: Metrics,
    /// Queue bound and overflow counter handed to every session.
    pub(crate) send_limits: Arc<SendLimits>,
    /// First-packet and idle deadlines in force (changed by `Tuning`).
    pub(crate) timeouts: Arc<Timeouts>,
    /// Keeps rejection and error logs to one line per reason per second.
    pub(crate) log_limit: LogLimiter<&'static str>,
    /// Tracks session tasks so shutdown can wait for all of them.
    pub(crate) tracker: TaskTracker,
    /// Cancelled to start the shutdown.
    pub(crate) token: CancellationToken,
    /// Cancelled to stop accepting only (a child of `token`).
    pub(crate) accept_stop: CancellationToken,
}

impl<H: Handler> Core<H> {
    /// Counts and (rate-limited) logs a rejected connection.
    pub(crate) fn reject(&self, reason: &'static str, peer: SocketAddr) {
        self.metrics.rejected(reason);
        if let Some(suppressed) = self.log_limit.check_for(reason) {
            tracing::info!(%peer, reason, suppressed, "connection rejected");
        }
    }

    pub(crate) fn log_error(&self, what: &'static str, error: &io::Error) {
        if let Some(suppressed) = self.log_limit.check_for(what) {
            tracing::warn!(what, %error, suppressed, "listener error");
        }
    }

    /// Sleeps unless shutdown starts first; true when it did.
    pub(crate) async fn pause(&self, wait: Duration) -> bool {
        tokio::select! {
            () = self.token.cancelled() => true,
            () = tokio::time::sleep(wait) => false,
        }
    }
}

/// A bound server; `run` serves until the shutdown token is cancelled.
pub struct Server<H: Handler> {
    /// Shared with every task.
    core: Arc<Core<H>>,
    /// Bound listeners, moved into accept loops by `run`.
    listeners: Vec<AsyncFd<StdListener>>,
    /// Actual bound addresses (ephemeral ports resolved).
    local_addrs: Vec<SocketAddr>,
}

impl<H: Handler> std::fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addrs", &self.local_addrs)
            .finish()
    }
}

impl<H: Handler> Server<H> {
    /// Binds every `config.listen` address. Must be called inside a tokio runtime.
    pub async fn bind(config: Config, handler: Arc<H>) -> io::Result<Self> {
        Self::bind_with_registry(config, handler, Sessions::new(), Vec::new()).await
    }

    /// Serves `inherited` listening sockets (handed over by a predecessor or by systemd
    /// socket activation; used as they are, never re-bound) and binds every
    /// `config.listen` address besides. `config.listen` may be empty when `inherited`
    /// is not. The bound addresses list the inherited ones first.
    pub async fn bind_inherited(
        config: Config,
        handler: Arc<H>,
        inherited: Vec<StdListener>,
    ) -> io::Result<Self> {
        Self::bind_with_registry(config, handler, Sessions::new(), inherited).await
    }

    pub(crate) async fn bind_with_registry(
        config: Config,
        handler: Arc<H>,
        sessions: Sessions,
        inherited: Vec<StdListener>,
    ) -> io::Result<Self> {
        validate(&config, inherited.len())?;
        let count = inherited.len() + config.listen.len();
        let mut listeners = Vec::with_capacity(count);
        let mut local_addrs = Vec::with_capacity(count);
        for listener in inherited {
            listener.set_nonblocking(true)?;
            local_addrs.push(listener.local_addr()?);
            listeners.push(crate::listener::register(listener)?);
        }
        for &addr in &config.listen {
            let listener = crate::listener::bind(addr, config.backlog, config.defer_accept)?;
            local_addrs.push(listener.get_ref().local_addr()?);
            listeners.push(listener);
        }
        tracing::info!(addrs = ?local_addrs, max_connections = config.max_connections, "listening");
        let metrics = Metrics::new(config.metrics_prefix, H::LABELS);
        let send_limits = Arc::new(SendLimits::new(
            config.max_outbound_bytes,
            metrics.queue_overflows.clone(),
            metrics.bytes_out.clone(),
        ));
        let token = CancellationToken::new();
        let core = Core {
            timeouts: Arc::new(Timeouts::new(&config)),
            accept_stop: token.child_token(),
            admission: Admission::new(&config),
            sources: crate::proxy::Sources::new(&config),
            pool: BufferPool::new(config.read_buffer_bytes, config.buffer_pool_max),
            metrics,
            send_limits,
            log_limit: LogLimiter::new(1, Duration::from_secs(1)),
            tracker: TaskTracker::new(),
            token,
            sessions,
            handler,
            config,
        };
        Ok(Server {
            core: Arc::new(core),
            listeners,
            local_addrs,
        })
    }

    #[cfg(test)]
    pub(crate) fn core(&self) -> Arc<Core<H>> {
        Arc::clone(&self.core)
    }

    /// The bound addresses, in `config.listen` order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.local_addrs.clone()
    }

    /// The session registry.
    pub fn sessions(&self) -> Sessions {
        self.core.sessions.clone()
    }

    /// Accepts, opens, closes and refusals by reason, as counted so far.
    pub fn counts(&self) -> Counts {
        self.core.metrics.counts.clone()
    }

    /// Admission control (block list at run time).
    pub fn admission(&self) -> Admission {
        self.core.admission.clone()
    }

    /// Cancelling it starts the orderly shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.core.token.clone()
    }

    /// Cancelling it stops accepting and closes this process's listeners, leaving live
    /// sessions running until they end or the shutdown token is cancelled (a drain).
    pub fn accept_token(&self) -> CancellationToken {
        self.core.accept_stop.clone()
    }

    /// Changes the [`LiveLimits`](crate::LiveLimits) of the running server.
    pub fn tuning(&self) -> Tuning {
        Tuning {
            timeouts: Arc::clone(&self.core.timeouts),
            send_limits: Arc::clone(&self.core.send_limits),
            admission: self.core.admission.clone(),
            sessions: self.core.sessions.clone(),
        }
    }

    /// Duplicates of the listening sockets (close-on-exec), in `local_addrs` order, for
    /// handing to a successor process: they stay open after this server stops accepting.
    pub fn listener_fds(&self) -> io::Result<Vec<OwnedFd>> {
        self.listeners
            .iter()
            .map(|l| l.get_ref().as_fd().try_clone_to_owned())
            .collect()
    }

    /// Serves until shutdown; returns once every session has had `on_close` and its task ended.
    pub async fn run(self) {
        let Server {
            core, listeners, ..
        } = self;
        // A JoinSet aborts the accept loops if this future is dropped.
        let mut accept_loops = JoinSet::new();
        for listener in listeners {
            accept_loops.spawn(crate::listener::accept_loop(Arc::clone(&core), listener));
        }
        core.token.cancelled().await;
        while accept_loops.join_next().await.is_some() {}
        let live = core.sessions.len();
        tracing::info!(live, "shutting down");
        core.sessions.begin_shutdown();
        core.tracker.close();
        core.tracker.wait().await;
        tracing::info!("all sessions closed");
    }
}

/// Upper bound for `Config::rate_table_slots` (16 bytes each).
const MAX_RATE_TABLE_SLOTS: usize = 1 << 24;

fn validate(config: &Config, inherited: usize) -> io::Result<()> {
    let invalid = |what: &str| {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            what.to_string(),
        ))
    };
    if config.listen.is_empty() && inherited == 0 {
        return invalid("config.listen is empty");
    }
    if config.max_connections == 0 {
        return invalid("config.max_connections must be > 0");
    }
    if config.read_buffer_bytes < 2 {
        return invalid("config.read_buffer_bytes must be >= 2");
    }
    if config.rate_table_slots > MAX_RATE_TABLE_SLOTS {
        return invalid("config.rate_table_slots must be <= 16,777,216 (512 MiB)");
    }
    if config.max_outbound_bytes == 0 {
        return invalid("config.max_outbound_bytes must be > 0");
    }
    crate::proxy::validate(config)
}
