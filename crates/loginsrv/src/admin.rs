//! The LoginSrv's side of the operator's console: its status, its metric
//! names, and the account endpoints
//!
//! - `GET /api/accounts/{name}`: exists, locked until when, online on which
//!   gate and server (never a password or a hash);
//! - `POST /api/accounts/{name}/unlock`: lift a lockout;
//! - `POST /api/accounts/{name}/kick`: end its session (the gate is told
//!   with `%+-`, as on a duplicate login).
//!
//! A standalone LoginSrv serves them on its own `[admin] listen`; the gate
//! with the embedded LoginSrv mounts [`Console::routes`] on its console, so
//! one port serves both. The token check is the serving console's.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use console::events::Events;
use console::html::{self, card, duration, figure, Table};
use console::prometheus::{Described, Kind};
use console::ApiError;
use serde::Serialize;
use serde_json::json;

use crate::config::ConfigError;
use crate::{validate, ServerState};
use mir2_proto::link::ServerFrame;

/// `[admin]`: the LoginSrv's console. A standalone LoginSrv serves it (the
/// binary starts it, see [`crate::RunningServer::start_console`]); embedded
/// in the gate, its endpoints are the gate console's and this table is unused.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// `IP:PORT` of the console; "" turns it off, port 0 picks a free port.
    pub listen: String,
    /// Bearer token for requests that change state; required when `listen`
    /// is not a loopback address.
    pub token: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:5501".to_owned(),
            token: String::new(),
        }
    }
}

impl AdminConfig {
    /// The console's address, `None` when it is off; the error names the key.
    pub fn addr(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        console::listen::check(&self.listen, &self.token).map_err(|p| ConfigError {
            key: format!("admin.{}", p.key),
            problem: p.problem,
        })
    }
}

/// Install the Prometheus recorder (if none is yet) and describe the
/// LoginSrv's metrics; call before the server starts.
pub fn install_metrics() {
    if console::prometheus::install() {
        describe_metrics();
    }
}

/// Console refusals for a wrong or missing token (standalone console).
pub const UNAUTHORIZED: &str = "loginsrv_admin_unauthorized_total";
/// Console connections closed at accept because 64 were open.
pub const CONNECTIONS_REFUSED: &str = "loginsrv_admin_connections_refused_total";
/// Account actions taken through the console, by `action`.
pub const ACTIONS: &str = "loginsrv_admin_actions_total";

use console::prometheus::described as d;

use Kind::{Counter, Gauge, Histogram};

/// Every metric the LoginSrv emits (the README lists the same names).
pub const METRICS: &[Described] = &[
    d(
        "loginsrv_logins_total",
        Counter,
        "result",
        "Login attempts by result: ok, wrong_password, no_account, locked, duplicate.",
    ),
    d(
        "loginsrv_accounts_created_total",
        Counter,
        "",
        "Accounts registered.",
    ),
    d(
        "loginsrv_sessions_issued_total",
        Counter,
        "",
        "Server-selection session ids issued.",
    ),
    d(
        "loginsrv_hash_seconds",
        Histogram,
        "op",
        "Time of one Argon2id hash or verification, queueing for a hash slot included.",
    ),
    d(
        "loginsrv_db_query_seconds",
        Histogram,
        "query",
        "Time of one database query.",
    ),
    d(
        "loginsrv_db_errors_total",
        Counter,
        "",
        "Database queries that failed.",
    ),
    d("loginsrv_gates", Gauge, "", "Gate links connected."),
    d(
        "loginsrv_clients",
        Gauge,
        "",
        "Client sessions open on all gates.",
    ),
    d(
        "loginsrv_accounts_online",
        Gauge,
        "",
        "Accounts logged in now.",
    ),
    d(
        "loginsrv_messages_total",
        Counter,
        "kind",
        "Client messages handled, by kind.",
    ),
    d(
        "loginsrv_rejected_total",
        Counter,
        "reason",
        "Requests and links refused, by reason.",
    ),
    d(
        UNAUTHORIZED,
        Counter,
        "",
        "Console requests refused for a wrong or missing token.",
    ),
    d(
        CONNECTIONS_REFUSED,
        Counter,
        "",
        "Console connections closed at accept (64 already open).",
    ),
    d(
        ACTIONS,
        Counter,
        "action",
        "Account actions taken through the console (unlock, kick, reload).",
    ),
    d(
        crate::METRIC_RELOAD_FAILURES,
        Counter,
        "",
        "Configuration reloads refused because the new file was invalid (the running configuration stayed).",
    ),
];

/// Register the LoginSrv's metric descriptions with the installed recorder.
pub fn describe_metrics() {
    console::prometheus::describe(METRICS);
}

/// The LoginSrv as its console sees it; cheap to clone.
#[derive(Clone)]
pub struct Console {
    /// Store, online accounts, routes, config.
    shared: Arc<ServerState>,
    /// For the uptime.
    started: Instant,
    /// Wall-clock start.
    started_at: SystemTime,
    /// Where gates connect.
    listen: std::net::SocketAddr,
    /// Unlocks and kicks done through the console.
    events: Arc<Events>,
    /// The standalone console's bound address (unset when embedded).
    admin_addr: Arc<std::sync::OnceLock<std::net::SocketAddr>>,
    /// Re-reads and applies the configuration (`POST /api/reload` on the standalone
    /// console); unset when embedded (the gate's console reloads the gate).
    reload: Arc<std::sync::OnceLock<ReloadHook>>,
}

/// Reads the configuration again and applies it.
pub type ReloadHook = Arc<dyn Fn() -> bootstrap::config::ReloadOutcome + Send + Sync>;

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("listen", &self.listen)
            .finish()
    }
}

/// Sessions in use on one game server.
#[derive(Debug, Serialize)]
pub struct ServerUse {
    /// Server name.
    pub name: String,
    /// Live session ids.
    pub sessions: u32,
    /// Its capacity.
    pub capacity: u32,
}

/// One event.
#[derive(Debug, Serialize)]
pub struct EventView {
    /// Unix seconds.
    pub at_unix: u64,
    /// Seconds ago.
    pub ago_secs: u64,
    /// `unlock` or `kick`.
    pub kind: &'static str,
    /// What happened.
    pub detail: String,
}

/// The LoginSrv's status.
#[derive(Debug, Serialize)]
pub struct LoginStatus {
    /// `loginsrv`.
    pub program: &'static str,
    /// Crate version.
    pub version: &'static str,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// When it started (Unix seconds).
    pub started_unix: u64,
    /// Where gates connect.
    pub listen: String,
    /// The standalone console's address ("" when embedded in the gate's).
    pub admin: String,
    /// `sqlite` or `postgres`.
    pub database: &'static str,
    /// Accounts logged in now.
    pub accounts_online: usize,
    /// Live session ids per game server.
    pub servers: Vec<ServerUse>,
    /// Recent unlocks and kicks, newest first.
    pub events: Vec<EventView>,
}

fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn unix_now() -> i64 {
    i64::try_from(unix(SystemTime::now())).unwrap_or(i64::MAX)
}

impl Console {
    pub(crate) fn new(shared: Arc<ServerState>, listen: std::net::SocketAddr) -> Self {
        Console {
            shared,
            started: Instant::now(),
            started_at: SystemTime::now(),
            listen,
            events: Arc::new(Events::default()),
            admin_addr: Arc::default(),
            reload: Arc::default(),
        }
    }

    pub(crate) fn set_reload(&self, hook: ReloadHook) {
        let _ = self.reload.set(hook);
    }

    pub(crate) fn set_admin_addr(&self, addr: std::net::SocketAddr) {
        let _ = self.admin_addr.set(addr);
    }

    /// The status now.
    pub fn status(&self) -> LoginStatus {
        let routes = &self.shared.routes;
        let mut events: Vec<_> = self.events.snapshot();
        events.reverse();
        LoginStatus {
            program: "loginsrv",
            version: env!("CARGO_PKG_VERSION"),
            uptime_secs: self.started.elapsed().as_secs(),
            started_unix: unix(self.started_at),
            listen: self.listen.to_string(),
            admin: self
                .admin_addr
                .get()
                .map_or_else(String::new, ToString::to_string),
            database: self.shared.store.backend(),
            accounts_online: self.shared.online.len(),
            servers: routes
                .servers()
                .iter()
                .map(|s| ServerUse {
                    name: s.name.clone(),
                    sessions: routes.used(&s.name),
                    capacity: s.capacity,
                })
                .collect(),
            events: events
                .into_iter()
                .map(|e| EventView {
                    at_unix: unix(e.at),
                    ago_secs: e.when.elapsed().as_secs(),
                    kind: e.kind,
                    detail: e.detail,
                })
                .collect(),
        }
    }

    /// The account endpoints, without the token check (the serving console adds it).
    pub fn routes(&self) -> Router {
        Router::new()
            .route("/api/accounts/{name}", get(account))
            .route("/api/accounts/{name}/unlock", post(unlock))
            .route("/api/accounts/{name}/kick", post(kick))
            .with_state(self.clone())
    }

    /// Everything a standalone LoginSrv's console serves, token check included.
    pub fn standalone_router(&self, guard: console::Guard) -> Router {
        let own = Router::new()
            .route("/", get(index))
            .route("/metrics", get(console::prometheus::scrape))
            .route("/api/status", get(status))
            .route("/api/reload", post(reload))
            .with_state(self.clone());
        console::finish(own.merge(self.routes()), guard)
    }

    /// The LoginSrv's card on a status page (escaped HTML).
    pub fn page_section(&self) -> String {
        section(&self.status())
    }

    fn action(&self, name: &'static str, detail: String) {
        metrics::counter!(ACTIONS, "action" => name).increment(1);
        tracing::info!(action = name, "console: {detail}");
        self.events.push(name, format!("{detail} (console)"));
    }
}

/// `POST /api/reload`: the configuration file read again and applied; 422 with the
/// key when it is refused.
async fn reload(State(console): State<Console>) -> Response {
    let Some(hook) = console.reload.get().cloned() else {
        return ApiError::conflict("this LoginSrv was not started from a file: nothing to reload")
            .into_response();
    };
    let outcome = match tokio::task::spawn_blocking(move || hook()).await {
        Ok(outcome) => outcome,
        Err(e) => return ApiError::internal(format!("config reload: {e}")).into_response(),
    };
    console.action(
        "reload",
        if outcome.ok {
            format!("config reloaded: {} keys applied", outcome.applied.len())
        } else {
            "config reload refused".to_owned()
        },
    );
    let status = if outcome.ok {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (status, Json(json!({ "config": outcome }))).into_response()
}

fn section(s: &LoginStatus) -> String {
    let mut servers = Table::new(&["server", "#sessions", "#capacity"]);
    for srv in &s.servers {
        servers.row([
            srv.name.clone(),
            srv.sessions.to_string(),
            srv.capacity.to_string(),
        ]);
    }
    let mut events = Table::new(&["when", "event", "detail"]);
    for e in s.events.iter().take(10) {
        events.row([
            format!("{} ago", duration(e.ago_secs)),
            e.kind.to_owned(),
            e.detail.clone(),
        ]);
    }
    let events = if events.is_empty() {
        String::new()
    } else {
        format!(
            "<h2 style=\"margin-top:10px\">Account actions</h2>{}",
            events.render("loginsrv-events", "")
        )
    };
    card(
        "LoginSrv",
        &format!(
            "<div class=\"figs\">{}</div><dl><dt>gates connect to</dt><dd>{}</dd>\
             <dt>database</dt><dd>{}</dd></dl>{}{events}",
            figure("accounts-online", s.accounts_online, "accounts online"),
            html::esc(&s.listen),
            html::esc(s.database),
            servers.render("servers", "no server configured"),
        ),
    )
}

/// `GET /` of a standalone LoginSrv.
async fn index(State(c): State<Console>) -> Html<String> {
    let s = c.status();
    let subtitle = format!(
        "v{} · up {} · gates connect to {}",
        s.version,
        duration(s.uptime_secs),
        s.listen
    );
    Html(html::page("loginsrv", &subtitle, &section(&s)))
}

/// `GET /api/status` of a standalone LoginSrv.
async fn status(State(c): State<Console>) -> Response {
    Json(c.status()).into_response()
}

/// The account key of a name from the path, refused with a 400 naming `name`.
fn key_of(name: &str) -> Result<String, ApiError> {
    validate::account(name).map_err(|e| {
        ApiError::bad_field(
            "name",
            format!("{name:?} is not an account name ({})", e.as_str()),
        )
    })?;
    Ok(validate::account_key(name))
}

fn db_error(e: &sqlx::Error) -> ApiError {
    metrics::counter!("loginsrv_db_errors_total").increment(1);
    tracing::error!(error = %e, "console: database query failed");
    ApiError::internal("database: query failed (see the LoginSrv log)")
}

/// `GET /api/accounts/{name}`.
async fn account(State(c): State<Console>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let key = key_of(&name)?;
    let Some(state) = c.shared.store.state(&key).await.map_err(|e| db_error(&e))? else {
        return Ok(Json(json!({ "account": key, "exists": false })).into_response());
    };
    let now = unix_now();
    let locked = state.locked_until > now;
    let online = c.shared.online.holder(&key).map(|h| {
        json!({
            "gate": h.gate.peer().to_string(),
            "client": h.client,
            "server": c.shared.routes.server_of(&key),
        })
    });
    Ok(Json(json!({
        "account": key,
        "exists": true,
        "locked": locked,
        "locked_until_unix": locked.then_some(state.locked_until),
        "locked_secs_left": locked.then(|| state.locked_until - now),
        "has_recovery": state.has_recovery,
        "online": online,
    }))
    .into_response())
}

/// `POST /api/accounts/{name}/unlock`.
async fn unlock(State(c): State<Console>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let key = key_of(&name)?;
    if !c
        .shared
        .store
        .unlock(&key)
        .await
        .map_err(|e| db_error(&e))?
    {
        return Err(ApiError::not_found(format!("name: no account {key:?}")));
    }
    c.action("unlock", format!("unlocked account {key}"));
    Ok(Json(json!({ "account": key, "unlocked": true })).into_response())
}

/// `POST /api/accounts/{name}/kick`: the account is no longer online here
/// at once; its gate closes the client on `%+-`.
async fn kick(State(c): State<Console>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let key = key_of(&name)?;
    let Some(holder) = c.shared.online.holder(&key) else {
        return Err(ApiError::not_found(format!(
            "name: account {key:?} is not online"
        )));
    };
    let delivered = holder
        .gate
        .try_send(ServerFrame::Kick { id: holder.client });
    c.shared.online.release(&key, holder.token);
    c.action(
        "kick",
        format!(
            "kicked account {key} (gate {} client {}){}",
            holder.gate.peer(),
            holder.client,
            if delivered {
                ""
            } else {
                "; the gate link is gone or backed up"
            }
        ),
    );
    Ok(Json(json!({
        "account": key,
        "kicked": true,
        "gate": holder.gate.peer().to_string(),
        "client": holder.client,
        "delivered": delivered,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        console::prometheus::check_names(METRICS).unwrap_or_else(|name| panic!("{name}"));
    }

    #[test]
    fn readme_lists_every_metric() {
        let readme = include_str!("../README.md");
        for m in METRICS {
            let listed = readme.contains(&format!("`{}`", m.name))
                || readme.contains(&format!("`{}{{", m.name));
            assert!(listed, "README misses {}", m.name);
        }
    }
}
