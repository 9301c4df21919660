//! The operator's console on `[admin] listen`: `GET /metrics` (Prometheus),
//! `GET /` (status page), `GET /api/status`, the session, block, allow-list and
//! attack-mode API, and
//! with the embedded LoginSrv its account endpoints on the same port.
//!
//! Handlers read copies: the registry is locked per shard only to copy
//! session handles, admission's block list under its read lock to copy the
//! entries, the counters are atomics. Nothing here can hold up a session.
//!
//! - [`api`]: the JSON endpoints;
//! - [`status`]: the facts the page and `/api/status` share;
//! - [`page`]: the HTML;
//! - [`metrics`]: metric names and help texts.

pub mod api;
pub mod metrics;
pub mod page;
pub mod status;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use axum::routing::{delete, get, post};
use axum::Router;
use netcore::{Admission, Sessions};
use parking_lot::Mutex;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::client::GateHandler;
use crate::link::LinkSet;
use console::events::Events;

/// How often the session rates are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// What the console reads and acts on; built by [`crate::app::Gate::start`].
pub struct GateView {
    /// Monotonic start time, for the uptime.
    pub started: Instant,
    /// Wall-clock start time.
    pub started_at: SystemTime,
    /// Client listeners.
    pub listen: Vec<SocketAddr>,
    /// The console's bound address, set once it listens.
    pub admin_addr: OnceLock<SocketAddr>,
    /// Whether the LoginSrv runs in-process.
    pub embedded: bool,
    /// Each backend's dialect, as configured, in the order of `links`.
    pub dialects: Vec<String>,
    /// `gate.max_connections`.
    pub max_connections: usize,
    /// The backend links (state, counters, history).
    pub links: Arc<LinkSet>,
    /// Logins forwarded.
    pub handler: Arc<GateHandler>,
    /// Accepts, opens, closes and refusals by reason (netcore's counts).
    pub counts: netcore::Counts,
    /// Live sessions.
    pub sessions: Sessions,
    /// Blocks.
    pub admission: Admission,
    /// Kicks, blocks, reloads.
    pub events: Arc<Events>,
    /// `gate.block_list_file`, if set; replaced by a reload.
    pub block_file: Arc<arc_swap::ArcSwapOption<PathBuf>>,
    /// `gate.allow_list_file`, if set.
    pub allow_file: Option<PathBuf>,
    /// Attack mode (state, forcing).
    pub attack: Arc<crate::attack::AttackMode>,
    /// Re-reads and applies the configuration (`POST /api/reload`); unset for a
    /// gate without a console.
    pub reload: OnceLock<Arc<dyn Fn() -> crate::reload::Outcome + Send + Sync>>,
    /// The token check (and its refusal count).
    pub guard: console::Guard,
    /// Session rates from the sampler.
    pub rates: Mutex<Rates>,
    /// The embedded LoginSrv's console side, when it runs.
    #[cfg(feature = "embedded")]
    pub loginsrv: Option<loginsrv::admin::Console>,
}

/// Sessions opened and closed per second over the last sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rates {
    /// Opens per second.
    pub opened_per_sec: f64,
    /// Closes per second.
    pub closed_per_sec: f64,
}

impl GateView {
    /// `gate.block_list_file` in force.
    pub fn block_file(&self) -> Option<PathBuf> {
        self.block_file.load_full().map(|p| (*p).clone())
    }

    /// The embedded LoginSrv's status, when it runs.
    fn loginsrv_status(&self) -> Option<serde_json::Value> {
        #[cfg(feature = "embedded")]
        if let Some(l) = &self.loginsrv {
            return serde_json::to_value(l.status()).ok();
        }
        None
    }

    /// Sessions closed so far and opened so far.
    fn totals(&self) -> (u64, u64) {
        let counts = self.counts.snapshot();
        (counts.closed(), counts.opened)
    }
}

/// Install the Prometheus recorder and describe the gate's metrics; call
/// before anything registers metric handles (the netcore server does at bind).
pub fn install_metrics() {
    if console::prometheus::install() {
        console::prometheus::describe(metrics::GATE);
        #[cfg(feature = "embedded")]
        loginsrv::admin::describe_metrics();
    }
}

/// A running console; dropping it stops it.
pub struct Console {
    /// The HTTP server.
    running: console::Running,
    /// A duplicate of the listening socket, handed to a successor on restart.
    listener: std::net::TcpListener,
    /// Stops the rate sampler.
    _sampler: DropGuard,
}

impl Console {
    /// Serve the console for `view` on `addr`, or on `inherited` (a listening socket
    /// handed over by the previous process) when given.
    pub async fn start(
        addr: SocketAddr,
        inherited: Option<std::net::TcpListener>,
        view: Arc<GateView>,
    ) -> std::io::Result<Console> {
        let listener = match inherited {
            Some(listener) => listener,
            None => std::net::TcpListener::bind(addr)?,
        };
        let kept = listener.try_clone()?;
        let running =
            console::Running::start_on(listener, router(&view), metrics::CONNECTIONS_REFUSED)?;
        let _ = view.admin_addr.set(running.local_addr());
        let stop = CancellationToken::new();
        tokio::spawn(sample(view, stop.clone()));
        Ok(Console {
            running,
            listener: kept,
            _sampler: stop.drop_guard(),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.running.local_addr()
    }

    /// A duplicate of the listening socket (close-on-exec).
    pub fn listener_fd(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        self.listener.as_fd().try_clone_to_owned()
    }

    /// Stop serving.
    pub async fn shutdown(self) {
        self.running.shutdown().await;
    }
}

/// Every route of the gate's console.
fn router(view: &Arc<GateView>) -> Router {
    let routes = Router::new()
        .route("/", get(page::index))
        .route("/metrics", get(console::prometheus::scrape))
        .route("/api/status", get(api::status))
        .route("/api/sessions", get(api::sessions))
        .route("/api/sessions/{id}/kick", post(api::kick))
        .route("/api/blocks", get(api::blocks).post(api::block))
        .route("/api/blocks/{*net}", delete(api::unblock))
        .route("/api/reload", post(api::reload))
        .route("/api/attack", post(api::attack))
        .route("/api/allow", get(api::allow_list).post(api::allow))
        .route("/api/allow/{*net}", delete(api::disallow))
        .with_state(Arc::clone(view));
    #[cfg(feature = "embedded")]
    let routes = match &view.loginsrv {
        Some(l) => routes.merge(l.routes()),
        None => routes,
    };
    console::finish(routes, view.guard.clone())
}

/// Session rates, once a second.
async fn sample(view: Arc<GateView>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = (Instant::now(), view.totals());
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let now = Instant::now();
        let totals = view.totals();
        let secs = now.duration_since(last.0).as_secs_f64();
        if secs > 0.0 {
            let per_sec =
                |new: u64, old: u64| (new.saturating_sub(old) as f64 / secs * 10.0).round() / 10.0;
            *view.rates.lock() = Rates {
                closed_per_sec: per_sec(totals.0, last.1 .0),
                opened_per_sec: per_sec(totals.1, last.1 .1),
            };
        }
        last = (now, totals);
    }
}
