//! Reference Legend of Mir 2 LoginSrv.
//!
//! Gates connect over the `%…$` link (any of the four presets, PROTOCOL.md §4); each
//! client on a gate gets its own task so a slow hash or query for one player
//! never delays another. Accounts live in SQLite (default) or PostgreSQL,
//! passwords as Argon2id hashes.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let server = loginsrv::start(loginsrv::Config::default()).await?;
//! println!("gates connect to {}", server.local_addr());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod admin;
mod client;
mod cluster;
pub mod config;
pub mod dblock;
pub mod game;
mod gate;
mod handlers;
mod hasher;
pub mod import_delphi;
mod online;
mod reject;
pub mod routes;
mod store;
mod summary;
mod timing;
pub mod validate;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mir2_proto::ids::IdTable;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{Config, ConfigError, SecurityConfig, ServerRoute};
pub use game::GameServerView;
pub use handlers::code;

/// Slots of the per-IP hash budget table: 4 MiB, and room for about 130,000
/// addresses at once before the least-used buckets are recycled.
const HASH_BUDGET_SLOTS: usize = 131_072;
/// The server-wide state every gate and client task reads.
pub(crate) struct ServerState {
    /// Effective configuration; replaced whole by a reload (readers load it where
    /// they use it, so live keys reach the next message, gate or selection).
    pub config: arc_swap::ArcSwap<Config>,
    /// Message ids of the client build served.
    pub ids: IdTable,
    /// Accounts.
    pub store: store::Store,
    /// Argon2id with the configured cost.
    pub hasher: hasher::Hasher,
    /// Accounts logged in now.
    pub online: online::Online,
    /// Servers and issued session ids.
    pub routes: routes::Routes,
    /// Source of client tokens (unique per client in this process, unlike gate ids).
    pub next_client_token: AtomicU64,
    /// Per-client-IP budget for Argon2 work (`None` = unlimited): one address
    /// cannot monopolise the hashing CPU. Fixed memory whatever the number of
    /// addresses, so a flood of sources cannot grow it. Rebuilt when a reload
    /// changes `security.hashes_per_ip_per_minute`.
    pub hash_budget: arc_swap::ArcSwapOption<limits::RateTable<std::net::IpAddr>>,
    /// Connected game servers, when `[game_servers]` is on.
    pub game: Option<game::GameServers>,
    /// What the summary log line reads.
    pub summary: summary::Summary,
    /// This instance's row in the shared database.
    pub cluster: cluster::Cluster,
}

/// A LoginSrv serving gates.
pub struct RunningServer {
    /// Bound listen address (the real port when configured with port 0).
    local_addr: SocketAddr,
    /// Applies reloads.
    live: Arc<Live>,
    /// Cancels the accept loop and every gate link.
    cancel: CancellationToken,
    /// The accept loop, gate readers/writers and client tasks.
    tracker: TaskTracker,
    /// For closing the database after the tasks end.
    state: Arc<ServerState>,
    /// The console's view of this server (one per server, so its events persist).
    admin: admin::Console,
    /// The console's HTTP server, once [`RunningServer::start_console`] ran.
    console: Option<console::Running>,
    /// Bound game-server port, when `[game_servers]` is on.
    game_addr: Option<SocketAddr>,
    /// Cancelled when this instance must stop (its row in the shared database is gone).
    fatal: CancellationToken,
    /// The SQLite file's lock, released when the server is dropped.
    _db_lock: Option<dblock::DbLock>,
}

impl RunningServer {
    fn grace(&self) -> Duration {
        Duration::from_secs(self.state.config.load().shutdown_grace_secs)
    }
}

/// Open the database (migrating it), bind the listener and serve gates.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    start_with_lock(config, None).await
}

/// [`start`], taking over the SQLite lock through `inherited_lock` (a descriptor
/// of the lock file a predecessor handed down, see [`RunningServer::sqlite_lock`])
/// instead of taking it anew.
pub async fn start_with_lock(
    config: Config,
    inherited_lock: Option<std::os::fd::OwnedFd>,
) -> anyhow::Result<RunningServer> {
    config.validate()?;
    let ids = config.id_table()?;
    let hasher = hasher::Hasher::new(&config.security)?;
    let db_lock = lock_sqlite(&config, inherited_lock).await?;
    let store = store::Store::open(&config.database, config.db_max_connections).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the gate listener on {}", config.listen))?;
    let local_addr = listener.local_addr()?;
    let cluster =
        cluster::Cluster::join(&store, &local_addr.to_string(), config.instance_expiry_secs)
            .await
            .context("registering in loginsrv_instances")?;
    let game_listener = match config.game_servers.listen_addr() {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the game-server listener on {addr}"))?,
        ),
        None => None,
    };
    let game_addr = game_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    // With game servers, a session lives until they end it; without, it expires.
    let routes = routes::Routes::build(
        config.servers.clone(),
        config.routes.clone(),
        game_addr
            .is_none()
            .then(|| Duration::from_secs(config.session_ttl_secs)),
    )
    .with_slot(cluster.slot);
    let game = game_addr.map(|_| {
        game::GameServers::new(
            config.game_servers.id_set,
            Duration::from_secs(config.game_servers.keepalive_timeout_secs),
        )
    });
    if let Some(addr) = game_addr {
        tracing::info!(%addr, id_set = config.game_servers.id_set.as_str(), "LoginSrv listening for game servers");
    }
    tracing::info!(
        %local_addr,
        database = store.backend(),
        servers = config.servers.len(),
        "LoginSrv listening for gates"
    );
    let hash_budget = hash_budget(&config);
    let state = Arc::new(ServerState {
        config: arc_swap::ArcSwap::from_pointee(config),
        ids,
        store,
        hasher,
        online: online::Online::default(),
        routes,
        next_client_token: AtomicU64::new(1),
        hash_budget: arc_swap::ArcSwapOption::new(hash_budget),
        game,
        summary: summary::Summary::default(),
        cluster,
    });
    let cancel = CancellationToken::new();
    let fatal = CancellationToken::new();
    let tracker = TaskTracker::new();
    if state.config.load().stats_log_secs > 0 {
        tracker.spawn(summary::run(
            state.clone(),
            Duration::from_secs(state.config.load().stats_log_secs),
            cancel.clone(),
        ));
    }
    tracker.spawn(cluster::heartbeat(
        state.clone(),
        cancel.clone(),
        fatal.clone(),
    ));
    tracker.spawn(cluster::listen(state.clone(), cancel.clone()));
    tracker.spawn(gate::accept_loop(
        listener,
        state.clone(),
        cancel.clone(),
        tracker.clone(),
    ));
    let admin = admin::Console::new(Arc::clone(&state), local_addr);
    let started = state.config.load_full();
    if let Some(listener) = game_listener {
        tracker.spawn(game::accept_loop(
            listener,
            state.clone(),
            cancel.clone(),
            tracker.clone(),
        ));
    }
    Ok(RunningServer {
        local_addr,
        live: Arc::new(Live {
            state: Arc::clone(&state),
            started,
            guard: std::sync::OnceLock::new(),
        }),
        cancel,
        tracker,
        state,
        admin,
        console: None,
        game_addr,
        fatal,
        _db_lock: db_lock,
    })
}

/// SQLite: take the file's lock (waiting `sqlite_lock_wait_secs`), so a
/// second instance on the same file is refused before it touches it.
async fn lock_sqlite(
    config: &Config,
    inherited: Option<std::os::fd::OwnedFd>,
) -> anyhow::Result<Option<dblock::DbLock>> {
    let Some(path) = store::sqlite_path(&config.database)? else {
        return Ok(None);
    };
    let wait = Duration::from_secs(config.sqlite_lock_wait_secs);
    let lock = tokio::task::spawn_blocking(move || match inherited {
        Some(fd) => dblock::DbLock::adopt(&path, fd, wait),
        None => dblock::DbLock::acquire_with_timeout(&path, wait),
    })
    .await
    .context("waiting for the SQLite lock")??;
    tracing::debug!(lock = %lock.path().display(), "SQLite database locked for this process");
    Ok(Some(lock))
}

impl RunningServer {
    /// The SQLite lock file's descriptor (none on PostgreSQL), for a program that
    /// hands this server's database over to its successor on a restart.
    pub fn sqlite_lock(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self._db_lock.as_ref().map(dblock::DbLock::as_fd)
    }

    /// The address gates connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Live session ids handed out for server `name` (what a SelGate would check against).
    pub fn sessions_in_use(&self, name: &str) -> u32 {
        self.state.routes.used(name)
    }

    /// The account a live session id was issued to.
    pub fn session_account(&self, session_id: i32) -> Option<String> {
        self.state.routes.ticket(session_id).map(|t| t.account)
    }

    /// The address game servers connect to, when `[game_servers]` is on.
    pub fn game_servers_addr(&self) -> Option<SocketAddr> {
        self.game_addr
    }

    /// Every connected game server (name, index, online count, last report).
    pub fn game_servers(&self) -> Vec<GameServerView> {
        self.state
            .game
            .as_ref()
            .map(game::GameServers::views)
            .unwrap_or_default()
    }

    /// Resolves when this instance must stop: its row in `loginsrv_instances`
    /// was removed by another instance (it stalled past `instance_expiry_secs`).
    pub async fn failed(&self) {
        self.fatal.cancelled().await;
    }

    /// This instance's slot among the instances sharing the database.
    pub fn instance_slot(&self) -> i64 {
        self.state.cluster.slot
    }

    /// The console's view of this LoginSrv (status, account endpoints), for
    /// a program that serves them on its own console (the gate).
    pub fn console(&self) -> admin::Console {
        self.admin.clone()
    }

    /// Serve the console on `[admin] listen` (the `loginsrv` binary does;
    /// an embedding program mounts [`RunningServer::console`] instead).
    /// Returns the bound address, `None` when the console is off. Call
    /// [`admin::install_metrics`] before [`start`] for `/metrics` to see
    /// every metric.
    pub async fn start_console(&mut self) -> anyhow::Result<Option<SocketAddr>> {
        let admin_config = self.state.config.load_full().admin.clone();
        let Some(addr) = admin_config.addr()? else {
            return Ok(None);
        };
        admin::install_metrics();
        let guard = console::Guard::new(&admin_config.token, admin::UNAUTHORIZED);
        let _ = self.live.guard.set(guard.clone());
        let app = self.admin.standalone_router(guard);
        let running = console::Running::start(addr, app, admin::CONNECTIONS_REFUSED)
            .await
            .with_context(|| format!("cannot listen on admin.listen {addr}"))?;
        let bound = running.local_addr();
        self.admin.set_admin_addr(bound);
        tracing::info!(admin = %bound, "LoginSrv console listening");
        self.console = Some(running);
        Ok(Some(bound))
    }

    /// Applies a reloaded configuration (validated again here): the server list and
    /// capacities, allowed gates, security limits, the console token and every other
    /// key read where it is used take effect for the next message, gate or selection;
    /// restart-only keys ([`config::RESTART_ONLY`]) are reported, not applied. A
    /// refused configuration changes nothing.
    pub fn reload(&self, new: Config) -> bootstrap::config::ReloadOutcome {
        self.live.apply(new)
    }

    /// Serves `POST /api/reload` on the standalone console with `source` (which
    /// reads the configuration again); without it the endpoint does not exist.
    pub fn reload_from(&self, source: Box<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>) {
        let live = Arc::clone(&self.live);
        self.admin.set_reload(Arc::new(move || match source() {
            Ok(config) => live.apply(config),
            Err(e) => refuse(e),
        }));
    }

    /// Stop accepting, close every gate link, let in-flight messages finish
    /// (bounded by `shutdown_grace_secs`) and close the database.
    pub async fn shutdown(mut self) {
        if let Some(console) = self.console.take() {
            console.shutdown().await;
        }
        self.cancel.cancel();
        self.tracker.close();
        let grace = self.grace();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("LoginSrv shutdown: tasks still busy after {grace:?}");
        }
        if let Err(e) = self
            .state
            .store
            .deregister_instance(self.state.cluster.instance_id)
            .await
        {
            tracing::warn!(error = %e, "LoginSrv shutdown: instance row not removed");
        }
        self.state.store.close().await;
        tracing::info!("LoginSrv stopped");
    }
}

/// Reloads refused because the new file was invalid.
pub const METRIC_RELOAD_FAILURES: &str = "loginsrv_config_reload_failures_total";

/// Counts and logs a refused reload.
pub fn refuse(e: ConfigError) -> bootstrap::config::ReloadOutcome {
    metrics::counter!(METRIC_RELOAD_FAILURES).increment(1);
    tracing::error!(key = %e.key, problem = %e.problem, "config reload refused; the running configuration is kept");
    bootstrap::config::ReloadOutcome::refused(e)
}

/// The per-IP hash budget of `config` (`None` = unlimited).
fn hash_budget(config: &Config) -> Option<Arc<limits::RateTable<std::net::IpAddr>>> {
    let per_ip = config.security.hashes_per_ip_per_minute;
    (per_ip > 0).then(|| {
        let per_minute = limits::Rate::new(per_ip, Duration::from_secs(60), per_ip);
        Arc::new(limits::RateTable::new(per_minute, HASH_BUDGET_SLOTS))
    })
}

/// What a reload changes, shared by the server and its console's reload endpoint.
struct Live {
    /// The state whose configuration is replaced.
    state: Arc<ServerState>,
    /// The configuration the server started with: what restart-only keys are compared with.
    started: Arc<Config>,
    /// The standalone console's token check, once it runs.
    guard: std::sync::OnceLock<console::Guard>,
}

impl Live {
    fn apply(&self, new: Config) -> bootstrap::config::ReloadOutcome {
        if let Err(e) = new.validate() {
            return refuse(e);
        }
        let old = self.state.config.load_full();
        let restart_required: Vec<String> = bootstrap::config::changed_keys(&*self.started, &new)
            .into_iter()
            .filter(|k| config::is_restart_only(k))
            .collect();
        let applied: Vec<String> = bootstrap::config::changed_keys(&*old, &new)
            .into_iter()
            .filter(|k| !config::is_restart_only(k))
            .collect();
        if (new.servers != old.servers) || (new.routes != old.routes) {
            self.state
                .routes
                .replace(new.servers.clone(), new.routes.clone());
        }
        if new.security.hashes_per_ip_per_minute != old.security.hashes_per_ip_per_minute {
            self.state.hash_budget.store(hash_budget(&new));
        }
        if new.admin.token != old.admin.token {
            if let Some(guard) = self.guard.get() {
                guard.set_token(&new.admin.token);
            }
        }
        self.state.config.store(Arc::new(new));
        for key in &restart_required {
            tracing::warn!(key = %key, "config reload: changed; applies on restart");
        }
        tracing::info!(applied = ?applied, restart_required = ?restart_required, "config reloaded");
        bootstrap::config::ReloadOutcome::applied(applied, restart_required)
    }
}
