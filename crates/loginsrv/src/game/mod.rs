//! The game-server port (PROTOCOL.md §7): M2Servers and DBServers connect,
//! report their online counts, receive every session issued for them, and
//! report when a player leaves.
//!
//! [`GameServers`] is the registry of connections (routing, counts, status);
//! `conn` runs one connection. Each connection has its own bounded outbound
//! queue filled without waiting, so a server that stops reading is closed
//! instead of holding up logins or other servers.

pub mod config;
mod conn;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use mir2_proto::game::{write_message, GameKind, IdSet};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub(crate) use conn::accept_loop;

use crate::reject::reject;
use crate::routes::status_for;
use crate::ServerState;

/// The server index a DBServer reports: never counted as players, receives every session.
pub const DBSERVER_INDEX: i32 = 99;

/// Pay flag sent in SS_OPENSESSION: this LoginSrv has no billing, every session is paid up.
pub const PAY_FLAG: u8 = 1;
/// Pay mode sent in SS_OPENSESSION: 5 = none (no account or IP time is charged).
pub const PAY_MODE: u8 = 5;

/// Frames queued for one game server before it counts as stalled and is closed.
const OUTBOUND_QUEUE: usize = 1024;

/// What the status page and metrics show of one connected game server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GameServerView {
    /// Where it connects from.
    pub peer: SocketAddr,
    /// The name it reported (`None` until its first SS_SERVERINFO).
    pub name: Option<String>,
    /// The index it reported (99 = a DBServer).
    pub index: i32,
    /// Its last reported online count.
    pub online: u32,
    /// When it last reported.
    pub last_report: Option<SystemTime>,
    /// Silent longer than `keepalive_timeout_secs`: its count is not used.
    pub timed_out: bool,
}

impl GameServerView {
    /// Index 99: a DBServer.
    pub fn is_dbserver(&self) -> bool {
        self.index == DBSERVER_INDEX
    }
}

/// One connection as the registry keeps it.
struct Conn {
    /// Source address, for logs and the view.
    peer: SocketAddr,
    /// Reported name; `None` until the first report (such a connection gets every message).
    name: Option<String>,
    /// Reported index.
    index: i32,
    /// Reported online count.
    online: u32,
    /// Monotonic time of the last report, for the timeout.
    last_report: Option<Instant>,
    /// Wall-clock time of the last report, for display.
    last_report_wall: Option<SystemTime>,
    /// The connection's writer queue.
    tx: mpsc::Sender<Bytes>,
    /// Closes the connection (a stalled writer).
    close: CancellationToken,
}

impl Conn {
    fn live(&self, now: Instant, timeout: Duration) -> bool {
        self.last_report
            .is_some_and(|at| now.saturating_duration_since(at) < timeout)
    }
}

/// The registry of game-server connections.
pub struct GameServers {
    /// Numbering of the deployment.
    ids: IdSet,
    /// `keepalive_timeout_secs`.
    timeout: Duration,
    /// Connection id → connection.
    conns: Mutex<HashMap<u64, Conn>>,
    /// Source of connection ids.
    next_id: AtomicU64,
}

impl GameServers {
    /// An empty registry.
    pub fn new(ids: IdSet, timeout: Duration) -> GameServers {
        GameServers {
            ids,
            timeout,
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    /// Numbering of the deployment.
    pub fn ids(&self) -> IdSet {
        self.ids
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.conns.lock().len()
    }

    fn register(&self, peer: SocketAddr, tx: mpsc::Sender<Bytes>, close: CancellationToken) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.conns.lock().insert(
            id,
            Conn {
                peer,
                name: None,
                index: 0,
                online: 0,
                last_report: None,
                last_report_wall: None,
                tx,
                close,
            },
        );
        metrics::gauge!("loginsrv_game_servers").increment(1.0);
        id
    }

    fn unregister(&self, id: u64) {
        if let Some(c) = self.conns.lock().remove(&id) {
            metrics::gauge!("loginsrv_game_servers").decrement(1.0);
            if let Some(name) = c.name {
                metrics::gauge!("loginsrv_game_server_online", "name" => name, "index" => c.index.to_string())
                    .set(0.0);
            }
        }
    }

    /// Record an SS_SERVERINFO; returns the total online over live game servers (DBServers excluded).
    fn report(&self, id: u64, name: String, index: i32, online: u32) -> u64 {
        let mut conns = self.conns.lock();
        if let Some(c) = conns.get_mut(&id) {
            metrics::gauge!("loginsrv_game_server_online", "name" => name.clone(), "index" => index.to_string())
                .set(f64::from(online));
            c.name = Some(name);
            c.index = index;
            c.online = online;
            c.last_report = Some(Instant::now());
            c.last_report_wall = Some(SystemTime::now());
        }
        let now = Instant::now();
        conns
            .values()
            .filter(|c| c.index != DBSERVER_INDEX && c.live(now, self.timeout))
            .map(|c| u64::from(c.online))
            .sum()
    }

    /// Players on game servers named `name` that reported within the timeout;
    /// `None` when there is none.
    pub fn online(&self, name: &str) -> Option<u32> {
        let now = Instant::now();
        let conns = self.conns.lock();
        let mut live = conns.values().filter(|c| {
            c.index != DBSERVER_INDEX
                && c.name.as_deref() == Some(name)
                && c.live(now, self.timeout)
        });
        let first = live.next()?;
        Some(live.fold(first.online, |sum, c| sum.saturating_add(c.online)))
    }

    /// Server-list status: 0 when no game server of that name is live, else by load.
    pub fn status(&self, name: &str, max_users: u32) -> u8 {
        self.online(name)
            .map_or(0, |online| status_for(online, max_users))
    }

    /// Whether a selection of `name` must be refused: more players than `max_users`.
    pub fn over_limit(&self, name: &str, max_users: u32) -> bool {
        self.online(name).is_some_and(|n| n > max_users)
    }

    /// Every connection, for the status page.
    pub fn views(&self) -> Vec<GameServerView> {
        let now = Instant::now();
        let mut v: Vec<GameServerView> = self
            .conns
            .lock()
            .values()
            .map(|c| GameServerView {
                peer: c.peer,
                name: c.name.clone(),
                index: c.index,
                online: c.online,
                last_report: c.last_report_wall,
                timed_out: c.last_report.is_some() && !c.live(now, self.timeout),
            })
            .collect();
        v.sort_by(|a, b| (&a.name, a.index, a.peer).cmp(&(&b.name, b.index, b.peer)));
        v
    }

    /// Queue one frame to connection `id`.
    fn send_to(&self, id: u64, kind: GameKind, fields: &[&[u8]]) {
        let Some(frame) = self.frame(kind, fields) else {
            return;
        };
        if let Some(c) = self.conns.lock().get(&id) {
            deliver(c, frame, kind);
        }
    }

    /// Send to the game servers named `server`, every one not yet named, and
    /// every DBServer (the Delphi LoginSrv's routing). Returns how many were queued.
    pub fn send_to_server(&self, server: &str, kind: GameKind, fields: &[&[u8]]) -> usize {
        let Some(frame) = self.frame(kind, fields) else {
            return 0;
        };
        let conns = self.conns.lock();
        conns
            .values()
            .filter(|c| {
                c.index == DBSERVER_INDEX || c.name.is_none() || c.name.as_deref() == Some(server)
            })
            .filter(|c| deliver(c, frame.clone(), kind))
            .count()
    }

    fn frame(&self, kind: GameKind, fields: &[&[u8]]) -> Option<Bytes> {
        let mut out = BytesMut::new();
        match write_message(&mut out, self.ids.id(kind), fields) {
            Ok(()) => Some(out.freeze()),
            Err(e) => {
                reject(e.reason(), format_args!("{} not sent: {e}", kind.name()));
                None
            }
        }
    }

    /// SS_OPENSESSION for a selection: `account/sessionId/payFlag/payMode/clientIP`.
    pub fn open_session(
        &self,
        server: &str,
        account: &str,
        session_id: i32,
        client: IpAddr,
    ) -> usize {
        let account = gbk(account);
        let (sid, ip) = (session_id.to_string(), client.to_string());
        let (flag, mode) = (PAY_FLAG.to_string(), PAY_MODE.to_string());
        self.send_to_server(
            server,
            GameKind::OpenSession,
            &[
                &account,
                sid.as_bytes(),
                flag.as_bytes(),
                mode.as_bytes(),
                ip.as_bytes(),
            ],
        )
    }

    /// SS_CLOSESESSION to the holder of a session: `account/sessionId`.
    pub fn close_session(&self, server: &str, account: &str, session_id: i32) -> usize {
        let account = gbk(account);
        let sid = session_id.to_string();
        self.send_to_server(server, GameKind::CloseSession, &[&account, sid.as_bytes()])
    }
}

/// Account keys are checked to be GBK-representable at registration.
fn gbk(account: &str) -> Vec<u8> {
    mir2_proto::text::gbk_encode(account).unwrap_or_else(|_| account.as_bytes().to_vec())
}

/// Queue without waiting; a full queue means the server stopped reading: close it.
fn deliver(c: &Conn, frame: Bytes, kind: GameKind) -> bool {
    match c.tx.try_send(frame) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            reject(
                "game_server_stalled",
                format_args!(
                    "game server {}: {} not queued, closing it",
                    c.peer,
                    kind.name()
                ),
            );
            c.close.cancel();
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// End the account's live session on this instance (a newer selection
/// replaces it): its id and server, for the close to be sent everywhere.
pub(crate) fn take_account_session(state: &ServerState, account: &str) -> Option<(i32, String)> {
    state.game.as_ref()?;
    let (id, ticket) = state.routes.take_account_session(account)?;
    let server = state.routes.server_name(ticket.server)?.to_owned();
    Some((id, server))
}
