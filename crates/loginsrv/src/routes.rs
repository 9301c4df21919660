//! Game servers offered after login, their SelGates and the session ids
//! handed out for them.
//!
//! A session id is what the client presents to the SelGate / game server,
//! so it is random (not a counter), at least 2 (DBServer and M2Server reject
//! lower ids), and unique among live ids: among this instance's by the
//! ticket table, among instances sharing a database because each id is
//! congruent to its issuer's slot modulo `store::SLOTS`. Without game servers it expires
//! after `session_ttl_secs`; with them it lives until a game server soft-outs
//! it or a newer login of the account closes it, as in the Delphi LoginSrv.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::Rng as _;

use crate::config::{AddrRoute, SelGate, ServerRoute};
use crate::store::SLOTS;

/// Status numbers the Delphi LoginSrv (`TFrmMasSoc.ServerStatus`) sends in
/// the server list: load against the configured limit.
pub mod status {
    /// 空闲 idle: at most half full.
    pub const IDLE: u8 = 1;
    /// 良好 good: at most 80 % full.
    pub const GOOD: u8 = 2;
    /// 繁忙 busy: below the limit.
    pub const BUSY: u8 = 3;
    /// 满员 full.
    pub const FULL: u8 = 4;
}

/// Delphi's thresholds: ≤ max/2 idle, ≤ max − max/5 good, < max busy, else
/// full. Full is tested first: with Delphi's order a server of capacity < 5
/// would show "good" while refusing everyone.
pub fn status_for(used: u32, capacity: u32) -> u8 {
    if used >= capacity {
        status::FULL
    } else if used <= capacity / 2 {
        status::IDLE
    } else if used <= capacity - capacity / 5 {
        status::GOOD
    } else {
        status::BUSY
    }
}

/// A live session id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// Account key it was issued to.
    pub account: String,
    /// Index into the server list.
    pub server: usize,
    /// SelGate the client was sent to.
    pub selgate: SocketAddr,
    /// When it stops being valid.
    pub expires: Instant,
}

/// Result of a server selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Go to `selgate` with `session_id`.
    Ok {
        /// The SelGate chosen round-robin.
        selgate: SocketAddr,
        /// Random positive id.
        session_id: i32,
    },
    /// No server by that name.
    Unknown,
    /// The server has `capacity` live session ids.
    Full,
}

/// Smallest session id: DBServer and M2Server reject ids below 2.
pub const MIN_SESSION_ID: i32 = 2;

/// [`SLOTS`] as a session id; ids are at least this, so at least [`MIN_SESSION_ID`].
const SLOTS_I32: i32 = SLOTS as i32;

/// Servers, their round-robin cursors and the live session ids.
pub struct Routes {
    /// How long an id stays valid; `None` = until ended (game servers report the end).
    ttl: Option<Duration>,
    /// This instance's slot: every id issued is congruent to it modulo `store::SLOTS`.
    slot: i32,
    /// Mutable state behind one short-held lock.
    state: Mutex<RouteState>,
}

struct RouteState {
    /// Configured servers in list order; replaced by a reload.
    servers: Vec<ServerRoute>,
    /// Per-gate SelGate lists (`[[routes]]`), tried before the server's own.
    addr_routes: Vec<AddrRoute>,
    /// Live ids.
    tickets: HashMap<i32, Ticket>,
    /// Ids in issue order (= expiry order, the TTL is fixed) for O(1) purging.
    expiry: VecDeque<(Instant, i32)>,
    /// Live ids per server (index as `servers`).
    used: Vec<u32>,
    /// Next SelGate per server.
    cursor: Vec<usize>,
    /// Next SelGate per `[[routes]]` entry.
    route_cursor: Vec<usize>,
    /// Each account's live id: selecting again replaces it, so one account
    /// cannot eat a server's capacity by selecting in a loop.
    by_account: HashMap<String, i32>,
}

impl Routes {
    /// Build from the (validated) server list; ids expire after `ttl`.
    pub fn new(servers: Vec<ServerRoute>, ttl: Duration) -> Routes {
        Routes::build(servers, Vec::new(), Some(ttl))
    }

    /// Servers, per-gate routes, and ids that expire after `ttl` or, for
    /// `None`, live until [`Routes::end_session`] or [`Routes::take_account_session`].
    /// Without a TTL the game servers' counts, not live ids, bound a server.
    pub fn build(
        servers: Vec<ServerRoute>,
        addr_routes: Vec<AddrRoute>,
        ttl: Option<Duration>,
    ) -> Routes {
        let n = servers.len();
        let r = addr_routes.len();
        Routes {
            ttl,
            slot: 0,
            state: Mutex::new(RouteState {
                servers,
                addr_routes,
                tickets: HashMap::new(),
                expiry: VecDeque::new(),
                used: vec![0; n],
                cursor: vec![0; n],
                route_cursor: vec![0; r],
                by_account: HashMap::new(),
            }),
        }
    }

    /// Issue ids congruent to `slot` modulo `store::SLOTS` (the instance's slot).
    pub fn with_slot(mut self, slot: i64) -> Routes {
        self.slot = i32::try_from(slot.rem_euclid(SLOTS)).unwrap_or(0);
        self
    }

    /// The configured servers in list order.
    pub fn servers(&self) -> Vec<ServerRoute> {
        self.state.lock().servers.clone()
    }

    /// Puts a reloaded server list and per-gate routes in force. A server keeps its
    /// live ids, count and cursor by name (a changed capacity applies to the next
    /// selection); ids of a server no longer listed stay valid until they end but
    /// count against nothing.
    pub fn replace(&self, servers: Vec<ServerRoute>, addr_routes: Vec<AddrRoute>) {
        let mut st = self.state.lock();
        let index_of = |name: &str| servers.iter().position(|s| s.name == name);
        let moved: Vec<Option<usize>> = st.servers.iter().map(|s| index_of(&s.name)).collect();
        let mut used = vec![0; servers.len()];
        let mut cursor = vec![0; servers.len()];
        for (old, new) in moved.iter().enumerate() {
            if let Some(new) = *new {
                used[new] = st.used.get(old).copied().unwrap_or(0);
                cursor[new] = st.cursor.get(old).copied().unwrap_or(0);
            }
        }
        for t in st.tickets.values_mut() {
            t.server = moved.get(t.server).copied().flatten().unwrap_or(usize::MAX);
        }
        st.route_cursor = vec![0; addr_routes.len()];
        st.used = used;
        st.cursor = cursor;
        st.servers = servers;
        st.addr_routes = addr_routes;
    }

    /// The SM_PASSOK_SELECTSERVER list: (count, `name/status/…/`), status from live ids.
    pub fn server_list(&self) -> (u16, String) {
        self.server_list_by(|_, s, used| status_for(used, s.capacity))
    }

    /// The list with each status from `status(index, server, live ids)`.
    pub fn server_list_by(&self, status: impl Fn(usize, &ServerRoute, u32) -> u8) -> (u16, String) {
        let mut st = self.state.lock();
        st.purge(Instant::now());
        let mut body = String::new();
        for (i, s) in st.servers.iter().enumerate() {
            let used = st.used.get(i).copied().unwrap_or(0);
            body.push_str(&s.name);
            body.push('/');
            body.push_str(&status(i, s, used).to_string());
            body.push('/');
        }
        (u16::try_from(st.servers.len()).unwrap_or(u16::MAX), body)
    }

    /// End the account's live session, if any (a newer login or selection replaces it).
    pub fn take_account_session(&self, account: &str) -> Option<(i32, Ticket)> {
        let mut st = self.state.lock();
        st.purge(Instant::now());
        let id = st.by_account.remove(account)?;
        st.revoke(id).map(|t| (id, t))
    }

    /// End session `id` if it was issued to `account` (a game server's soft-out).
    pub fn end_session(&self, id: i32, account: &str) -> Option<Ticket> {
        let mut st = self.state.lock();
        st.purge(Instant::now());
        if st.tickets.get(&id).is_none_or(|t| t.account != account) {
            return None;
        }
        let t = st.revoke(id)?;
        if st.by_account.get(account) == Some(&id) {
            st.by_account.remove(account);
        }
        Some(t)
    }

    /// The name of server `index`.
    pub fn server_name(&self, index: usize) -> Option<String> {
        self.state.lock().servers.get(index).map(|s| s.name.clone())
    }

    /// Issue a session id for `account` on server `name`, for a client that
    /// came through the gate at `gate` (which picks a `[[routes]]` entry).
    pub fn select(&self, account: &str, name: &str, gate: Option<IpAddr>) -> Selection {
        let now = Instant::now();
        let mut st = self.state.lock();
        let Some(index) = st.servers.iter().position(|s| s.name == name) else {
            return Selection::Unknown;
        };
        let Some(server) = st.servers.get(index).cloned() else {
            return Selection::Unknown;
        };
        st.purge(now);
        if let Some(old) = st.by_account.remove(account) {
            st.revoke(old);
        }
        let (Some(used), Some(cursor)) =
            (st.used.get(index).copied(), st.cursor.get(index).copied())
        else {
            return Selection::Unknown;
        };
        if self.ttl.is_some() && used >= server.capacity {
            return Selection::Full;
        }
        let route = gate.and_then(|ip| {
            st.addr_routes
                .iter()
                .position(|r| r.gate == ip && r.server == server.name)
        });
        let selgate = match route {
            Some(r) => {
                let at = st.route_cursor.get(r).copied().unwrap_or(0);
                if let Some(c) = st.route_cursor.get_mut(r) {
                    *c = c.wrapping_add(1);
                }
                st.addr_routes.get(r).and_then(|r| pick(&r.selgates, at))
            }
            None => {
                // The server's cursor moves only for its own list: routed
                // selections must not make other gates' clients skip entries.
                if let Some(c) = st.cursor.get_mut(index) {
                    *c = c.wrapping_add(1);
                }
                pick(&server.selgates, cursor).map(|addr| match server.public_addr.parse() {
                    Ok(ip) => SocketAddr::new(ip, addr.port()),
                    Err(_) => addr,
                })
            }
        };
        let Some(selgate) = selgate else {
            return Selection::Unknown;
        };
        let mut rng = rand::rng();
        let session_id = loop {
            // Live ids are bounded (one per account, or the capacities), far below i32::MAX: this ends.
            let id =
                rng.random_range(1..=(i32::MAX - self.slot) / SLOTS_I32) * SLOTS_I32 + self.slot;
            if !st.tickets.contains_key(&id) {
                break id;
            }
        };
        // Without a TTL the ticket never expires: an `Instant` far ahead stands for that.
        let expires = now + self.ttl.unwrap_or(Duration::from_secs(100 * 365 * 86_400));
        st.tickets.insert(
            session_id,
            Ticket {
                account: account.to_owned(),
                server: index,
                selgate,
                expires,
            },
        );
        if self.ttl.is_some() {
            st.expiry.push_back((expires, session_id));
        }
        st.by_account.insert(account.to_owned(), session_id);
        if let Some(u) = st.used.get_mut(index) {
            *u += 1;
        }
        Selection::Ok {
            selgate,
            session_id,
        }
    }

    /// What a SelGate / game server checks: the live ticket for `session_id`.
    pub fn ticket(&self, session_id: i32) -> Option<Ticket> {
        let now = Instant::now();
        let mut st = self.state.lock();
        st.purge(now);
        st.tickets.get(&session_id).cloned()
    }

    /// The server `account` holds a live session id for, if any.
    pub fn server_of(&self, account: &str) -> Option<String> {
        let mut st = self.state.lock();
        st.purge(Instant::now());
        let id = *st.by_account.get(account)?;
        let index = st.tickets.get(&id)?.server;
        st.servers.get(index).map(|s| s.name.clone())
    }

    /// Live session ids for server `name`.
    pub fn used(&self, name: &str) -> u32 {
        let mut st = self.state.lock();
        let index = st.servers.iter().position(|s| s.name == name);
        st.purge(Instant::now());
        index.and_then(|i| st.used.get(i).copied()).unwrap_or(0)
    }
}

/// The `at`-th enabled entry, cycling.
fn pick(selgates: &[SelGate], at: usize) -> Option<SocketAddr> {
    let enabled: Vec<SocketAddr> = selgates
        .iter()
        .filter(|g| g.enabled)
        .map(|g| g.addr)
        .collect();
    enabled.get(at % enabled.len().max(1)).copied()
}

impl RouteState {
    fn purge(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.expiry.front() {
            if at > now {
                break;
            }
            self.expiry.pop_front();
            // A revoked id may have been drawn again since: only its own expiry counts.
            if self.tickets.get(&id).is_some_and(|t| t.expires == at) {
                if let Some(t) = self.revoke(id) {
                    if self.by_account.get(&t.account) == Some(&id) {
                        self.by_account.remove(&t.account);
                    }
                }
            }
        }
    }

    /// Drop a live id and give its capacity back.
    fn revoke(&mut self, id: i32) -> Option<Ticket> {
        let t = self.tickets.remove(&id)?;
        if let Some(u) = self.used.get_mut(t.server) {
            *u = u.saturating_sub(1);
        }
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn routes(capacity: u32, ttl: Duration) -> Routes {
        Routes::new(
            vec![ServerRoute {
                name: "s1".into(),
                selgates: vec![
                    "127.0.0.1:7100".parse().unwrap(),
                    "127.0.0.1:7101".parse().unwrap(),
                    "*127.0.0.1:7102".parse().unwrap(),
                ],
                capacity,
                public_addr: String::new(),
            }],
            ttl,
        )
    }

    #[test]
    fn delphi_status_thresholds() {
        assert_eq!(status_for(0, 10), status::IDLE);
        assert_eq!(status_for(5, 10), status::IDLE);
        assert_eq!(status_for(6, 10), status::GOOD);
        assert_eq!(status_for(8, 10), status::GOOD);
        assert_eq!(status_for(9, 10), status::BUSY);
        assert_eq!(status_for(10, 10), status::FULL);
    }

    #[test]
    fn a_replaced_list_keeps_live_ids_by_name_and_applies_new_capacities() {
        let r = routes(2, Duration::from_secs(60));
        assert!(matches!(r.select("a", "s1", None), Selection::Ok { .. }));
        let mut servers = r.servers();
        servers[0].capacity = 1;
        let mut s0 = servers[0].clone();
        s0.name = "s0".into();
        servers.insert(0, s0);
        r.replace(servers, Vec::new());
        assert_eq!(r.used("s1"), 1, "s1's live id moved with it");
        assert_eq!(r.select("b", "s1", None), Selection::Full);
        assert!(matches!(r.select("b", "s0", None), Selection::Ok { .. }));
        assert_eq!(r.server_of("a").as_deref(), Some("s1"));
        r.replace(r.servers().into_iter().take(1).collect(), Vec::new());
        assert_eq!(r.server_of("a"), None, "s1 is gone");
        assert!(
            r.take_account_session("a").is_some(),
            "its id still ends cleanly"
        );
        assert_eq!(r.used("s0"), 1);
    }

    #[test]
    fn round_robin_capacity_and_unique_ids() {
        let r = routes(3, Duration::from_secs(60));
        let mut ids = Vec::new();
        let mut gates = Vec::new();
        for account in ["a", "b", "c"] {
            match r.select(account, "s1", None) {
                Selection::Ok {
                    selgate,
                    session_id,
                } => {
                    assert!(session_id >= MIN_SESSION_ID);
                    ids.push(session_id);
                    gates.push(selgate.port());
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(gates, vec![7100, 7101, 7100]);
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 3);
        assert_eq!(r.select("d", "s1", None), Selection::Full);
        assert_eq!(r.select("d", "nope", None), Selection::Unknown);
        assert_eq!(r.server_list(), (1, "s1/4/".to_owned()));
        assert!(r.ticket(ids[0]).is_some());
        // Selecting again replaces the account's id instead of taking more capacity.
        let Selection::Ok {
            session_id: again, ..
        } = r.select("a", "s1", None)
        else {
            panic!()
        };
        assert_eq!(r.used("s1"), 3);
        assert_eq!(r.ticket(again).unwrap().account, "a");
        assert_eq!(
            [ids[0], ids[1], ids[2]]
                .iter()
                .filter(|id| r.ticket(**id).is_some())
                .count(),
            2,
            "a's first id was revoked"
        );
    }

    #[test]
    fn ids_carry_the_slot() {
        let r = routes(1000, Duration::from_secs(60)).with_slot(5);
        for account in ["a", "b", "c", "d"] {
            let Selection::Ok { session_id, .. } = r.select(account, "s1", None) else {
                panic!()
            };
            assert!(session_id >= MIN_SESSION_ID);
            assert_eq!(session_id % SLOTS_I32, 5);
        }
    }

    #[test]
    fn ids_expire() {
        let r = routes(1, Duration::from_millis(1));
        let Selection::Ok { session_id, .. } = r.select("a", "s1", None) else {
            panic!()
        };
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(r.ticket(session_id), None);
        assert_eq!(r.used("s1"), 0);
        assert!(matches!(r.select("a", "s1", None), Selection::Ok { .. }));
    }
}
