//! Wiring: embedded LoginSrv (if any), one link per backend, netcore server,
//! block list, the live reload, the zero-downtime restart and the orderly shutdown.

use std::future::Future as _;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use netcore::{Admission, Counts, CountsSnapshot, Server, Sessions};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{info, warn};

use crate::admin::{self, Console, GateView};
use crate::attack::{self, AttackMode};
use crate::client::GateHandler;
#[cfg(feature = "embedded")]
use crate::config::Backend;
use crate::config::{optional_secs, Config};
use crate::dispatch::NetDispatch;
#[cfg(feature = "embedded")]
use crate::embedded::Embedded;
use crate::handover::{self, Inherited};
use crate::link::{self, Link, LinkOptions, LinkSet};
use crate::punish::{Offence, Punisher};
use crate::reload::{self, Reloader};
use crate::role::{Role, ROLE_METRIC};
use console::events::Events;

/// A running gate; tests start one in-process with [`Gate::start`].
pub struct Gate {
    /// Addresses the listeners are bound to (ephemeral ports resolved).
    local_addrs: Vec<SocketAddr>,
    /// The backend links (state, stats), in configuration order.
    links: Arc<LinkSet>,
    /// The client handler (logins forwarded).
    handler: Arc<GateHandler>,
    /// netcore's accepts, opens, closes and refusals by reason.
    counts: Counts,
    /// Live sessions.
    sessions: Sessions,
    /// Admission control (blocks).
    admission: Admission,
    /// Kicks, blocks and reloads, for the console.
    events: Arc<Events>,
    /// The operator's console, unless `admin.listen` is "".
    console: Option<Console>,
    /// Attack mode (state, forcing).
    attack: Arc<AttackMode>,
    /// Starts netcore's orderly shutdown; cancels on drop, so a gate dropped
    /// without `shutdown` does not leave tasks behind.
    server_stop: DropGuard,
    /// Stops the link (after a final flush), the block list watcher and the
    /// stats line; cancels on drop too.
    link_stop: DropGuard,
    /// netcore's accept/session loop; ends when every session had on_close.
    server_task: JoinHandle<()>,
    /// One task per backend link.
    link_tasks: Vec<JoinHandle<()>>,
    /// The in-process LoginSrv when `[server] addr` is absent.
    #[cfg(feature = "embedded")]
    embedded: Option<Embedded>,
    /// What the gate fronts.
    role: Role,
    /// Applies configuration reloads (and knows the configuration in force).
    reloader: Arc<Reloader>,
    /// Stops accepting only, for the drain after a restart.
    accept_stop: CancellationToken,
    /// Duplicates of the client listeners and the console's, with their
    /// `LISTEN_FDNAMES` names, handed to a successor on restart.
    handover_fds: Vec<(OwnedFd, &'static str)>,
}

/// What a gate is started with besides its configuration.
#[derive(Default)]
pub struct Startup {
    /// Re-reads the configuration on reload; `None` = reload re-applies the running one.
    pub source: Option<reload::Source>,
    /// Sockets handed over by a predecessor or by systemd.
    pub inherited: Inherited,
    /// The installed log subscriber's filter, for `log_filter` reloads.
    pub log: Option<Arc<bootstrap::LogControl>>,
    /// Accept only once the link is up. A successor sets it: until it is ready its
    /// predecessor accepts from the same sockets, and a client it took while its own
    /// link was down would be refused (`server_unavailable`).
    pub accept_once_linked: bool,
}

/// Time the link's final flush gets even when closing sessions used up the
/// grace period: close frames are what the LoginSrv needs most.
const LINK_FLUSH_MIN: Duration = Duration::from_secs(1);

/// Room in the receive buffer beyond the longest message.
const READ_BUFFER_SLACK: usize = 1024;
/// Smallest receive buffer.
const READ_BUFFER_MIN: usize = 8 * 1024;

/// The netcore configuration for the gate's `[gate]` section.
pub(crate) fn core_config(config: &Config) -> netcore::Config {
    let g = &config.gate;
    netcore::Config {
        listen: g.listen.clone(),
        backlog: g.backlog,
        max_connections: g.max_connections,
        max_conn_per_ip: g.max_conn_per_ip,
        conn_rate_per_ip: g.conn_rate_per_ip,
        conn_burst_per_ip: g.conn_rate_per_ip,
        first_packet_timeout: optional_secs(g.first_packet_timeout_secs),
        defer_accept: optional_secs(g.defer_accept_secs),
        idle_timeout: optional_secs(g.idle_timeout_secs),
        max_outbound_bytes: g.max_outbound_bytes,
        // A partial message may stay in the buffer: room for the longest.
        read_buffer_bytes: (g.max_packet_bytes + READ_BUFFER_SLACK).max(READ_BUFFER_MIN),
        shutdown_flush_timeout: Duration::from_secs(g.shutdown_grace_secs),
        metrics_prefix: "gate_",
        proxy: netcore::ProxyConfig {
            protocol: g.proxy_protocol,
            trusted: config.trusted_proxies(),
            header_timeout: Duration::from_secs(g.proxy_header_timeout_secs),
        },
        allow_sources: config.allow_sources(),
        ..netcore::Config::default()
    }
}

impl Gate {
    /// Start everything; returns once the listeners are bound (the link
    /// connects in the background: see [`Gate::wait_link_up`]).
    pub async fn start(config: Config) -> anyhow::Result<Gate> {
        Self::start_with(config, Startup::default()).await
    }

    /// [`Gate::start`] with a reload source, inherited sockets and a log control.
    /// Inherited client sockets are served as they are; each configured address one
    /// of them already serves (the same address, or any port of the same IP for a
    /// configured port 0) is not bound again, the others are.
    pub async fn start_with(config: Config, startup: Startup) -> anyhow::Result<Gate> {
        config.validate()?;
        let Startup {
            source,
            inherited,
            log,
            accept_once_linked,
        } = startup;
        config.prepare_list_files()?;
        let admin_addr = config.admin.addr()?;
        if admin_addr.is_some() {
            // Before anything registers metric handles (the server does at bind).
            admin::install_metrics();
        }
        #[cfg(feature = "embedded")]
        let embedded = match config.server.is_external() {
            true => None,
            false => Some(Embedded::start(&config, inherited.db_lock).await?),
        };
        #[allow(unused_mut)]
        let mut backends = config.server.backend_list();
        #[cfg(feature = "embedded")]
        if let Some(e) = &embedded {
            backends = vec![Backend {
                addr: e.addr(),
                dialect: config.server.dialect,
                frames: config.server.link_frames(),
                addr_key: "server.addr".to_owned(),
                dialect_key: "server.dialect".to_owned(),
            }];
        }
        // Validation refuses a missing address in a gate without the embedded LoginSrv.
        let links = backends
            .iter()
            .map(|b| Link::new(b.addr, b.frames, config.server.max_link_buffer_bytes))
            .collect();
        let links = Arc::new(
            LinkSet::new(links).context("server.addr is required: no LoginSrv to link to")?,
        );
        let punisher = Arc::new(Punisher::new(
            config.gate.punish,
            Duration::from_secs(config.gate.temp_block_secs),
            config.block_list_path(),
        ));
        let handler = Arc::new(GateHandler::new(
            Arc::clone(&links),
            &config,
            Arc::clone(&punisher),
        ));
        let mut core = core_config(&config);
        let handed = adopt(&mut core.listen, inherited.gate);
        let read_buffer = core.read_buffer_bytes;
        let server = match Server::bind_inherited(core, handler.clone(), handed).await {
            Ok(server) => server,
            Err(e) => {
                #[cfg(feature = "embedded")]
                if let Some(embedded) = embedded {
                    embedded.shutdown().await;
                }
                return Err(e)
                    .with_context(|| format!("cannot listen on {:?}", config.gate.listen));
            }
        };
        let local_addrs = server.local_addrs();
        let counts = server.counts();
        let sessions = server.sessions();
        let admission = server.admission();
        let server_stop = server.shutdown_token();
        let accept_stop = server.accept_token();
        let tuning = server.tuning();
        let mut handover_fds: Vec<(OwnedFd, &'static str)> = server
            .listener_fds()
            .context("duplicating the listeners")?
            .into_iter()
            .map(|fd| (fd, handover::GATE_FD_NAME))
            .collect();
        #[cfg(feature = "embedded")]
        if let Some(lock) = embedded.as_ref().and_then(Embedded::sqlite_lock) {
            let fd = lock
                .try_clone_to_owned()
                .context("duplicating the SQLite lock")?;
            handover_fds.push((fd, handover::DB_LOCK_FD_NAME));
        }
        let link_stop = CancellationToken::new();
        let events = Arc::new(Events::default());
        handler.attach(admission.clone());
        // Refusals at connect (per-IP cap, connect rate) are offences too.
        let observer = Arc::clone(&punisher);
        admission.on_reject(Box::new(move |admission, ip, label| {
            if let Some(offence) = Offence::from_label(label) {
                observer.punish(admission, ip, offence);
            }
        }));
        let attack = Arc::new(AttackMode::new(config.gate.attack));
        tokio::spawn(attack::run(
            Arc::clone(&attack),
            admission.clone(),
            link_stop.clone(),
        ));

        let block_file = config.block_list_path();
        let console_block_file = Arc::new(arc_swap::ArcSwapOption::from(
            block_file.clone().map(Arc::new),
        ));
        let guard = console::Guard::new(&config.admin.token, admin::metrics::UNAUTHORIZED);

        let mut view_slot: Option<Arc<GateView>> = None;
        let console = match admin_addr {
            None => None,
            Some(addr) => {
                let view = Arc::new(GateView {
                    started: Instant::now(),
                    started_at: SystemTime::now(),
                    listen: local_addrs.clone(),
                    admin_addr: std::sync::OnceLock::new(),
                    embedded: cfg!(feature = "embedded") && !config.server.is_external(),
                    dialects: backends.iter().map(|b| b.dialect.to_string()).collect(),
                    max_connections: config.gate.max_connections,
                    links: Arc::clone(&links),
                    handler: handler.clone(),
                    counts: counts.clone(),
                    sessions: sessions.clone(),
                    admission: admission.clone(),
                    events: events.clone(),
                    block_file: Arc::clone(&console_block_file),
                    allow_file: config.allow_list_path(),
                    attack: Arc::clone(&attack),
                    guard: guard.clone(),
                    reload: std::sync::OnceLock::new(),
                    rates: Default::default(),
                    #[cfg(feature = "embedded")]
                    loginsrv: embedded.as_ref().map(Embedded::console),
                });
                match Console::start(addr, inherited.admin, Arc::clone(&view)).await {
                    Ok(console) => {
                        view_slot = Some(view);
                        Some(console)
                    }
                    Err(e) => {
                        #[cfg(feature = "embedded")]
                        if let Some(embedded) = embedded {
                            embedded.shutdown().await;
                        }
                        return Err(anyhow::Error::new(e)
                            .context(format!("cannot listen on admin.listen {addr}")));
                    }
                }
            }
        };

        if let Some(console) = &console {
            let fd = console
                .listener_fd()
                .context("duplicating the console listener")?;
            handover_fds.push((fd, handover::ADMIN_FD_NAME));
        }

        let dispatch = Arc::new(NetDispatch::new(
            sessions.clone(),
            admission.clone(),
            Duration::from_secs(config.gate.temp_block_secs),
            block_file,
            events.clone(),
        ));
        let reloader = Arc::new(Reloader::new(
            config.clone(),
            source,
            reload::Parts {
                tuning,
                handler: Arc::clone(&handler),
                punisher: Arc::clone(&punisher),
                dispatch: Arc::clone(&dispatch),
                attack: Arc::clone(&attack),
                admission: admission.clone(),
                links: Arc::clone(&links),
                guard: console.is_some().then_some(guard),
                console_block_file: console.is_some().then_some(console_block_file),
                log,
                stop: link_stop.clone(),
                max_packet_bytes_fit: read_buffer.saturating_sub(READ_BUFFER_SLACK),
            },
        ));
        // A gate started from a value has no file to re-read: its console's reload
        // re-reads the block list only.
        if let Some(view) = view_slot.filter(|_| reloader.has_source()) {
            let hook = Arc::clone(&reloader);
            let _ = view.reload.set(Arc::new(move || hook.reload()));
        }
        let link_tasks = links
            .links()
            .iter()
            .zip(&backends)
            .map(|(link, b)| {
                let dialect_key = format!("{} = \"{}\"", b.dialect_key, b.dialect);
                tokio::spawn(link::run(
                    link.clone(),
                    LinkOptions::from_config(&config, b.addr, dialect_key),
                    dispatch.clone(),
                    link_stop.clone(),
                ))
            })
            .collect();
        let server_task = if accept_once_linked {
            let (links, stop) = (Arc::clone(&links), server_stop.clone());
            tokio::spawn(async move {
                while !links.is_up() && !stop.is_cancelled() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                server.run().await;
            })
        } else {
            tokio::spawn(server.run())
        };
        if let Some(every) = optional_secs(config.gate.stats_log_secs) {
            tokio::spawn(log_stats(
                every,
                StatsSources {
                    links: Arc::clone(&links),
                    handler: handler.clone(),
                    counts: counts.clone(),
                    sessions: sessions.clone(),
                    attack: Arc::clone(&attack),
                    role: config.role,
                },
                link_stop.clone(),
            ));
        }

        let role = config.role;
        metrics::gauge!(ROLE_METRIC, "role" => role.as_str()).set(1.0);
        let g = &config.gate;
        let admin = console
            .as_ref()
            .map_or_else(|| "off".to_owned(), |c| c.local_addr().to_string());
        info!(
            role = %role,
            listen = ?local_addrs,
            admin = %admin,
            server = %backends.iter().map(|b| b.addr.to_string()).collect::<Vec<_>>().join(", "),
            embedded = cfg!(feature = "embedded") && !config.server.is_external(),
            dialect = %backends.iter().map(|b| b.dialect.as_str()).collect::<Vec<_>>().join(", "),
            gate_addr = ?config.server.gate_addr,
            max_connections = g.max_connections,
            max_conn_per_ip = g.max_conn_per_ip,
            conn_rate_per_ip = g.conn_rate_per_ip,
            max_packet_bytes = g.max_packet_bytes,
            max_packets_per_sec = g.max_packets_per_sec,
            max_outbound_bytes = g.max_outbound_bytes,
            first_packet_timeout_secs = g.first_packet_timeout_secs,
            idle_timeout_secs = g.idle_timeout_secs,
            proxy_protocol = %g.proxy_protocol,
            trusted_proxies = g.trusted_proxies.len(),
            allow_sources = g.allow_sources.len(),
            heartbeat_secs = config.server.heartbeat_secs,
            dead_after_secs = config.server.dead_after_secs,
            block_list_file = %absolute(config.block_list_path()),
            allow_list_file = %absolute(config.allow_list_path()),
            "logingate started"
        );
        Ok(Gate {
            local_addrs,
            links,
            handler,
            counts,
            sessions,
            admission,
            events,
            console,
            attack,
            server_stop: server_stop.drop_guard(),
            link_stop: link_stop.drop_guard(),
            server_task,
            link_tasks,
            #[cfg(feature = "embedded")]
            embedded,
            role,
            reloader,
            accept_stop,
            handover_fds,
        })
    }

    /// Reads the configuration again and applies it (see [`crate::reload`]).
    pub async fn reload(&self) -> reload::Outcome {
        let reloader = Arc::clone(&self.reloader);
        match tokio::task::spawn_blocking(move || reloader.reload()).await {
            Ok(outcome) => outcome,
            Err(e) => self.reloader.apply(Err(crate::config::ConfigError::new(
                "config",
                format!("reload task failed: {e}"),
            ))),
        }
    }

    /// Applies `config` as a reload would (for a gate started from a value).
    pub fn apply_config(&self, config: Config) -> reload::Outcome {
        self.reloader.apply(Ok(config))
    }

    /// The configuration in force.
    pub fn config(&self) -> Config {
        self.reloader.current()
    }

    /// Starts a successor with the listeners and waits until it is ready (then this
    /// gate should [`Gate::drain`]); on failure the successor is gone and this gate
    /// carries on accepting.
    pub async fn hand_over(&self) -> Result<u32, handover::NotReady> {
        let fds: Vec<_> = self
            .handover_fds
            .iter()
            .map(|(fd, name)| (fd.as_raw_fd(), *name))
            .collect();
        let timeout = Duration::from_secs(self.config().gate.restart_ready_timeout_secs);
        let successor = handover::spawn(&fds)?;
        info!(
            pid = successor.child.id(),
            "restart: new process started; waiting until it is ready"
        );
        successor.wait_ready(timeout).await
    }

    /// After a hand-over: stop accepting (the successor accepts from the same
    /// sockets) and keep serving the live sessions on this gate's link until they
    /// end, `gate.drain_timeout_secs` passes or `cut` completes (a stop signal);
    /// then [`Gate::shutdown`] closes the rest, each with its close frame.
    pub async fn drain(&mut self, cut: impl std::future::Future<Output = ()>) {
        self.accept_stop.cancel();
        if let Some(console) = self.console.take() {
            console.shutdown().await;
        }
        let timeout = Duration::from_secs(self.config().gate.drain_timeout_secs);
        info!(
            sessions = self.sessions.len(),
            timeout_secs = timeout.as_secs(),
            "draining: no longer accepting"
        );
        let deadline = tokio::time::Instant::now() + timeout;
        let sessions = self.sessions.clone();
        let emptied = async move {
            while !sessions.is_empty() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            () = emptied => {}
            () = cut => info!("stop signal: ending the drain"),
        }
        if self.sessions.is_empty() {
            info!("drained: every session ended");
        } else {
            warn!(
                sessions = self.sessions.len(),
                "closing the sessions still open"
            );
        }
    }

    /// Bound listener addresses.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// What the gate fronts (LoginSrv or DBServer).
    pub fn role(&self) -> Role {
        self.role
    }

    /// The LoginSrv (or DBServer) address of the first backend.
    pub fn server_addr(&self) -> SocketAddr {
        self.links.first().addr()
    }

    /// The first backend's link (the only one of a single-backend gate).
    pub fn link(&self) -> &Link {
        self.links.first()
    }

    /// Every backend link, in configuration order.
    pub fn links(&self) -> &LinkSet {
        &self.links
    }

    /// The client handler (logins forwarded).
    pub fn handler(&self) -> &GateHandler {
        &self.handler
    }

    /// Accepts, opens, closes and refusals by reason since start (netcore's counts).
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Live sessions.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Admission control.
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// Recent kicks, blocks and reloads.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// The console's bound address, when it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.console.as_ref().map(Console::local_addr)
    }

    /// Attack mode: whether it is on, and `force` to override the automatic rule.
    pub fn attack(&self) -> &AttackMode {
        &self.attack
    }

    /// Forces attack mode on or off, or back to automatic (`None`); applies the new
    /// limits at once and logs the change.
    pub fn force_attack(&self, on: Option<bool>) {
        self.attack.apply(&self.admission, self.attack.force(on));
    }

    /// Wait until every backend link is connected; `false` after `timeout`.
    pub async fn wait_link_up(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.links.all_up() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Orderly shutdown: stop accepting, close every session (each sends its
    /// close frame), flush the link, stop the embedded LoginSrv.
    pub async fn shutdown(self) {
        info!(sessions = self.sessions.len(), "logingate shutting down");
        let grace = Duration::from_secs(self.config().gate.shutdown_grace_secs);
        // No kicks or blocks from the console while sessions close.
        if let Some(console) = self.console {
            console.shutdown().await;
        }
        // The whole shutdown fits in the grace period; the link's final
        // flush always gets at least LINK_FLUSH_MIN.
        let deadline = tokio::time::Instant::now() + grace;
        self.server_stop.disarm().cancel();
        if tokio::time::timeout_at(deadline, self.server_task)
            .await
            .is_err()
        {
            warn!("sessions did not finish closing within the grace period");
        }
        self.link_stop.disarm().cancel();
        let link_deadline = deadline.max(tokio::time::Instant::now() + LINK_FLUSH_MIN);
        // The links flush at the same time; one deadline bounds them all.
        for task in self.link_tasks {
            if tokio::time::timeout_at(link_deadline, task).await.is_err() {
                warn!("link did not flush within the grace period");
            }
        }
        #[cfg(feature = "embedded")]
        if let Some(e) = self.embedded {
            e.shutdown().await;
        }
        info!("logingate stopped");
    }
}

/// A configured path as an absolute one for the startup line (relative paths
/// depend on the working directory, `/` under systemd), `none` when unset.
fn absolute(path: Option<std::path::PathBuf>) -> String {
    match path {
        None => "none".to_owned(),
        Some(p) => std::path::absolute(&p).unwrap_or(p).display().to_string(),
    }
}

/// What the stats line reads.
struct StatsSources {
    /// The backend links (their own lines).
    links: Arc<LinkSet>,
    /// Logins forwarded.
    handler: Arc<GateHandler>,
    /// Accepts, opens, closes and refusals.
    counts: Counts,
    /// Live sessions.
    sessions: Sessions,
    /// Attack mode.
    attack: Arc<AttackMode>,
    /// What the gate fronts.
    role: Role,
}

/// The figures of one stats line: since start, or over one interval.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct StatsFigures {
    /// netcore's counts.
    core: CountsSnapshot,
    /// `CM_IDPASSWORD` messages forwarded.
    logins: u64,
}

impl StatsFigures {
    fn since(&self, earlier: &StatsFigures) -> StatsFigures {
        StatsFigures {
            core: self.core.since(&earlier.core),
            logins: self.logins.saturating_sub(earlier.logins),
        }
    }
}

/// `reason:count,reason:count` by descending count, or `none`: one token in a
/// text line, one string in a JSON one.
pub(crate) fn by_reason(counts: &std::collections::BTreeMap<&'static str, u64>) -> String {
    if counts.is_empty() {
        return "none".to_owned();
    }
    let mut sorted: Vec<_> = counts.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    sorted
        .iter()
        .map(|(reason, n)| format!("{reason}:{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Two summary lines every `stats_log_secs`, so an operator without a metrics
/// scraper still sees load and why clients were refused or left: `stats` (clients:
/// the interval's figures, then the totals since start, prefixed `total_`) and
/// `link stats` (one per LoginSrv backend link). The fields are described in the README.
async fn log_stats(every: Duration, src: StatsSources, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let figures = |src: &StatsSources| StatsFigures {
        core: src.counts.snapshot(),
        logins: src.handler.logins_forwarded(),
    };
    let mut last = figures(&src);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let total = figures(&src);
        let interval = total.since(&last);
        info!(
            role = %src.role,
            interval_secs = every.as_secs(),
            sessions = src.sessions.len(),
            attack_mode = if src.attack.is_on() { "on" } else { "off" },
            accepted = interval.core.accepted,
            opened = interval.core.opened,
            logins = interval.logins,
            closed = interval.core.closed(),
            closes = %by_reason(&interval.core.closes),
            refused = interval.core.refused(),
            refusals = %by_reason(&interval.core.refusals),
            total_accepted = total.core.accepted,
            total_opened = total.core.opened,
            total_logins = total.logins,
            total_closed = total.core.closed(),
            total_closes = %by_reason(&total.core.closes),
            total_refused = total.core.refused(),
            total_refusals = %by_reason(&total.core.refusals),
            "stats"
        );
        log_link_stats(&src.links, src.role);
        last = total;
    }
}

/// One `link stats` line per backend link: where sessions are and how each
/// link is, since start.
fn log_link_stats(links: &LinkSet, role: Role) {
    for link in links.links() {
        let s = link.stats();
        info!(
            role = %role,
            backend = link.backend(),
            up = link.is_up(),
            answered = link.is_answered(),
            sessions = link.live_sessions(),
            connects = s.connects,
            frames = s.frames,
            writes = s.writes,
            frames_per_write = format_args!("{:.2}", s.frames_per_write()),
            replies_dropped = s.replies_dropped,
            parse_errors = s.parse_errors,
            early_closes = s.early_closes,
            silent = s.silent,
            "link stats"
        );
    }
}

/// Client listeners handed over that serve a configured address take its place
/// in `listen` (which keeps the addresses still to bind); returns the ones kept.
/// A configured port 0 is served by any handed-over socket of the same IP. Handed
/// sockets no configured address wants are closed (an address removed from
/// `gate.listen`).
fn adopt(
    listen: &mut Vec<SocketAddr>,
    handed: Vec<std::net::TcpListener>,
) -> Vec<std::net::TcpListener> {
    let mut kept = Vec::with_capacity(handed.len());
    let mut unused: Vec<(SocketAddr, std::net::TcpListener)> = Vec::new();
    for listener in handed {
        match listener.local_addr() {
            Ok(addr) => unused.push((addr, listener)),
            Err(e) => warn!(error = %e, "an inherited socket is not a TCP listener; closed"),
        }
    }
    listen.retain(|want| {
        let exact = unused.iter().position(|(have, _)| have == want);
        let any_port = || {
            (want.port() == 0)
                .then(|| unused.iter().position(|(have, _)| have.ip() == want.ip()))
                .flatten()
        };
        match exact.or_else(any_port) {
            Some(i) => {
                kept.push(unused.swap_remove(i).1);
                false
            }
            None => true,
        }
    });
    for (addr, _) in unused {
        warn!(%addr, "an inherited listener is no longer in gate.listen; closed");
    }
    kept
}

/// Run the gate until SIGINT/SIGTERM, then shut down in order. SIGHUP reloads
/// the configuration; SIGUSR2 restarts without downtime (a successor takes the
/// listeners over, this process drains and exits).
pub async fn run(config: Config, startup: Startup) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    bootstrap::fd_limit::raise_for(config.gate.max_connections, "gate.max_connections");
    // Polled once before anything starts, so the handlers are installed: a
    // signal that arrives while the gate starts (the embedded LoginSrv can
    // take a while) stops it in order instead of killing the process.
    let mut stop_signal = std::pin::pin!(bootstrap::shutdown_signal());
    let early = std::future::poll_fn(|cx| Poll::Ready(stop_signal.as_mut().poll(cx))).await;
    if early.is_ready() {
        return Ok(());
    }
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut restart =
        signal(SignalKind::user_defined2()).context("installing the SIGUSR2 handler")?;
    let pid_file = config.pid_file_path();
    let mut startup = startup;
    let ready_pipe = startup.inherited.ready.take();
    startup.accept_once_linked |= ready_pipe.is_some();
    let gate = Gate::start_with(config, startup).await?;
    if let Some(pipe) = ready_pipe {
        // A successor is ready once it can serve logins: listeners bound (above) and
        // its own link up. The predecessor kills it if that takes too long.
        while !gate.wait_link_up(Duration::from_secs(1)).await {}
        handover::signal_ready(pipe).context("telling the previous process this one is ready")?;
        info!("restart: this process took over the listeners");
        bootstrap::notify::main_pid(std::process::id(), "serving (after a restart)");
    } else {
        bootstrap::notify::ready();
    }
    if let Some(path) = &pid_file {
        handover::write_pid_file(path, std::process::id())
            .with_context(|| format!("cannot write gate.pid_file {}", path.display()))?;
    }
    let drain = loop {
        tokio::select! {
            () = &mut stop_signal => break false,
            _ = hangup.recv() => {
                info!("SIGHUP: reloading the configuration");
                bootstrap::notify::reloading();
                let outcome = gate.reload().await;
                bootstrap::notify::reloaded(if outcome.ok { "serving (reloaded)" } else { "serving (reload refused)" });
            }
            _ = restart.recv() => {
                info!("SIGUSR2: restarting without downtime");
                // A stop signal meanwhile wins: the successor, whose pipe then
                // closes, cannot report ready and exits.
                let handed = tokio::select! {
                    r = gate.hand_over() => r,
                    () = &mut stop_signal => break false,
                };
                match handed {
                    Ok(pid) => {
                        info!(successor = pid, "restart: the new process is ready; draining this one");
                        break true;
                    }
                    Err(e) => error_restart(&e),
                }
            }
        }
    };
    let mut gate = gate;
    if drain {
        // After a hand-over the successor is the service: this process must not
        // read as stopping to systemd.
        gate.drain(bootstrap::shutdown_signal()).await;
    } else {
        bootstrap::notify::stopping();
    }
    tokio::select! {
        () = gate.shutdown() => {}
        // An operator who asks twice does not want to wait for the grace period.
        () = bootstrap::shutdown_signal() => warn!("second signal: exiting without waiting for the flush"),
    }
    // After a hand-over the file is the successor's (it writes it once ready).
    if let Some(path) = pid_file.filter(|_| !drain) {
        handover::remove_pid_file(&path);
    }
    Ok(())
}

fn error_restart(e: &handover::NotReady) {
    tracing::error!(error = %e, "restart failed; this process keeps serving and accepting");
}
