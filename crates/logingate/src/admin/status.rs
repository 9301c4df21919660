//! The facts the status page and `GET /api/status` show, gathered in one
//! pass from copies of shared state (no lock is held while rendering).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use netcore::{Block, BlockKind};
use serde::Serialize;

use super::GateView;
use crate::link::{Link, LinkChange, LinkTotals};

/// Source IPs shown by live session count.
const TOP_IPS: usize = 10;
/// Blocks listed on the page (the counts cover all of them).
const BLOCKS_SHOWN: usize = 50;
/// Events listed.
const EVENTS_SHOWN: usize = 30;

/// Everything the status page shows.
#[derive(Debug, Serialize)]
pub struct Status {
    /// `logingate`.
    pub program: &'static str,
    /// Crate version.
    pub version: &'static str,
    /// Seconds since the gate started.
    pub uptime_secs: u64,
    /// When it started (Unix seconds).
    pub started_unix: u64,
    /// Client listeners.
    pub listen: Vec<String>,
    /// The console's own address.
    pub admin: String,
    /// Live sessions and their rates.
    pub sessions: SessionCounts,
    /// The LoginSrv links taken together (up while any is).
    pub link: LinkStatus,
    /// Each backend link, in configuration order.
    pub backends: Vec<LinkStatus>,
    /// Closes since start, by reason.
    pub closes: BTreeMap<&'static str, u64>,
    /// Clients refused since start, by reason: at admission (blocked, rate_limited,
    /// per_ip_limit, max_connections, not_allow_listed, source_not_allowed, proxy_*)
    /// and at open (server_unavailable, server_busy).
    pub refusals: BTreeMap<&'static str, u64>,
    /// Attack mode.
    pub attack: AttackStatus,
    /// Source IPs with the most live sessions.
    pub top_ips: Vec<IpCount>,
    /// Blocks in force.
    pub blocks: BlockCounts,
    /// Recent kicks, blocks, reloads and link changes, newest first.
    pub events: Vec<EventView>,
    /// The console itself.
    pub console: ConsoleStatus,
    /// The embedded LoginSrv, when it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loginsrv: Option<serde_json::Value>,
}

/// Session figures.
#[derive(Debug, Serialize)]
pub struct SessionCounts {
    /// Live now.
    pub live: usize,
    /// `gate.max_connections`.
    pub max: usize,
    /// Sessions opened per second over the last sample.
    pub opened_per_sec: f64,
    /// Sessions closed per second over the last sample.
    pub closed_per_sec: f64,
}

/// Link figures, of one backend or of all.
#[derive(Debug, Serialize)]
pub struct LinkStatus {
    /// Where the link connects (all backends, comma-separated, in the summary).
    pub server: String,
    /// Link dialect.
    pub dialect: String,
    /// Whether the LoginSrv runs in-process.
    pub embedded: bool,
    /// Connected now (any backend, in the summary).
    pub up: bool,
    /// The LoginSrv has sent a valid frame on this connection.
    pub answered: bool,
    /// Sessions open on the link.
    pub sessions: usize,
    /// Connections the LoginSrv closed at once (wrong port, gate not allowed).
    pub early_closes: u64,
    /// Windows of client messages without a reply (wrong dialect?).
    pub silent: u64,
    /// Seconds since the last up/down change.
    pub since_secs: Option<u64>,
    /// Connects so far (1 + reconnects).
    pub connects: u64,
    /// Frames written.
    pub frames: u64,
    /// Frames per socket write.
    pub frames_per_write: f64,
    /// LoginSrv orders for no live session.
    pub replies_dropped: u64,
    /// Bad LoginSrv frames.
    pub parse_errors: u64,
    /// Last heartbeat round trip, milliseconds.
    pub heartbeat_rtt_ms: Option<f64>,
    /// Up/down changes, newest first.
    pub history: Vec<EventView>,
}

/// Attack mode's state and the figures that drive it.
#[derive(Debug, Serialize)]
pub struct AttackStatus {
    /// On now.
    pub on: bool,
    /// `automatic`, `forced_on` or `forced_off`.
    pub mode: &'static str,
    /// New connections per second (all sources) over the last sample.
    pub conn_rate: f64,
    /// `gate.attack`: the thresholds and the limits in force while on.
    pub config: crate::attack::AttackConfig,
}

/// Live sessions of one source IP.
#[derive(Debug, Serialize)]
pub struct IpCount {
    /// The address.
    pub ip: String,
    /// Its live sessions.
    pub sessions: u32,
}

/// Block figures.
#[derive(Debug, Serialize)]
pub struct BlockCounts {
    /// From the block list file.
    pub static_count: usize,
    /// Lifting on their own.
    pub temporary_count: usize,
    /// Until removed.
    pub permanent_count: usize,
    /// The first of them: run-time blocks first, soonest to lift first.
    pub list: Vec<BlockView>,
}

/// One block.
#[derive(Debug, Serialize)]
pub struct BlockView {
    /// Address or range.
    pub net: String,
    /// `static`, `temporary` or `permanent`.
    pub kind: &'static str,
    /// Seconds left for a temporary block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secs_left: Option<u64>,
}

/// One event.
#[derive(Debug, Serialize)]
pub struct EventView {
    /// Unix seconds.
    pub at_unix: u64,
    /// Seconds ago.
    pub ago_secs: u64,
    /// `kick`, `block`, `unblock`, `reload`, `link_up`, `link_down`.
    pub kind: &'static str,
    /// What happened.
    pub detail: String,
}

/// The console's own figures.
#[derive(Debug, Serialize)]
pub struct ConsoleStatus {
    /// Whether state changes need a token.
    pub token_set: bool,
    /// Requests refused for a wrong or missing token.
    pub unauthorized: u64,
}

fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn event(at: SystemTime, when: Instant, kind: &'static str, detail: String) -> EventView {
    EventView {
        at_unix: unix(at),
        ago_secs: when.elapsed().as_secs(),
        kind,
        detail,
    }
}

/// A block as the API and the page show it.
pub fn block_view(b: &Block) -> BlockView {
    let (kind, secs_left) = match b.kind {
        BlockKind::Static => ("static", None),
        BlockKind::Permanent => ("permanent", None),
        // Rounded up: a block with 0.4 s left is not over.
        BlockKind::Temporary { remaining } => (
            "temporary",
            Some(remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0)),
        ),
    };
    BlockView {
        net: b.net.to_string(),
        kind,
        secs_left,
    }
}

/// Run-time blocks first (soonest to lift first), then static ones; stable by net.
pub fn sort_blocks(blocks: &mut [Block]) {
    blocks.sort_by_key(|b| {
        let rank = match b.kind {
            BlockKind::Temporary { remaining } => (0, remaining),
            BlockKind::Permanent => (1, std::time::Duration::ZERO),
            BlockKind::Static => (2, std::time::Duration::ZERO),
        };
        (rank, b.net)
    });
}

fn rtt_ms(d: Option<std::time::Duration>) -> Option<f64> {
    d.map(|d| (d.as_secs_f64() * 1e5).round() / 100.0)
}

fn per_write(t: &LinkTotals) -> f64 {
    (t.frames_per_write() * 100.0).round() / 100.0
}

fn history_view(history: &[LinkChange]) -> Vec<EventView> {
    history
        .iter()
        .rev()
        .map(|c| {
            let kind = if c.up { "link_up" } else { "link_down" };
            event(c.at, c.when, kind, c.detail.clone())
        })
        .collect()
}

impl GateView {
    /// One backend link's figures.
    fn link_status(&self, link: &Link, dialect: &str) -> LinkStatus {
        let t = link.stats();
        let history = link.history();
        LinkStatus {
            server: link.backend().to_owned(),
            dialect: dialect.to_owned(),
            embedded: self.embedded,
            up: link.is_up(),
            answered: link.is_answered(),
            sessions: link.live_sessions(),
            early_closes: t.early_closes,
            silent: t.silent,
            since_secs: history.last().map(|c| c.when.elapsed().as_secs()),
            connects: t.connects,
            frames: t.frames,
            frames_per_write: per_write(&t),
            replies_dropped: t.replies_dropped,
            parse_errors: t.parse_errors,
            heartbeat_rtt_ms: rtt_ms(link.heartbeat_rtt()),
            history: history_view(&history),
        }
    }

    /// Gather the status now.
    pub fn status(&self) -> Status {
        let links = self.links.links();
        let dialect = |i: usize| self.dialects.get(i).map_or("", String::as_str);
        let backends: Vec<LinkStatus> = links
            .iter()
            .enumerate()
            .map(|(i, l)| self.link_status(l, dialect(i)))
            .collect();
        let mut history: Vec<LinkChange> = links.iter().flat_map(Link::history).collect();
        history.sort_by_key(|c| c.when);
        let since_secs = history.last().map(|c| c.when.elapsed().as_secs());
        let link = self.links.stats();
        let mut dialects: Vec<&str> = Vec::new();
        for d in &self.dialects {
            if !dialects.contains(&d.as_str()) {
                dialects.push(d);
            }
        }
        let sessions = self.sessions.snapshot();
        let mut per_ip: HashMap<IpAddr, u32> = HashMap::new();
        for s in &sessions {
            *per_ip.entry(s.peer().ip().to_canonical()).or_default() += 1;
        }
        let mut top: Vec<(IpAddr, u32)> = per_ip.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(TOP_IPS);

        let mut blocks = self.admission.blocks();
        let count = |f: fn(&BlockKind) -> bool| blocks.iter().filter(|b| f(&b.kind)).count();
        let static_count = count(|k| matches!(k, BlockKind::Static));
        let temporary_count = count(|k| matches!(k, BlockKind::Temporary { .. }));
        let permanent_count = count(|k| matches!(k, BlockKind::Permanent));
        sort_blocks(&mut blocks);

        let link_events = history.iter().map(|c| {
            let kind = if c.up { "link_up" } else { "link_down" };
            (c.when, event(c.at, c.when, kind, c.detail.clone()))
        });
        let mut events: Vec<(Instant, EventView)> = self
            .events
            .snapshot()
            .into_iter()
            .map(|e| (e.when, event(e.at, e.when, e.kind, e.detail)))
            .chain(link_events)
            .collect();
        events.sort_by_key(|e| std::cmp::Reverse(e.0));
        events.truncate(EVENTS_SHOWN);

        let rates = *self.rates.lock();
        let counts = self.counts.snapshot();
        Status {
            program: "logingate",
            version: env!("CARGO_PKG_VERSION"),
            uptime_secs: self.started.elapsed().as_secs(),
            started_unix: unix(self.started_at),
            listen: self.listen.iter().map(ToString::to_string).collect(),
            admin: self
                .admin_addr
                .get()
                .map_or_else(String::new, ToString::to_string),
            sessions: SessionCounts {
                live: sessions.len(),
                max: self.max_connections,
                opened_per_sec: rates.opened_per_sec,
                closed_per_sec: rates.closed_per_sec,
            },
            link: LinkStatus {
                server: links
                    .iter()
                    .map(Link::backend)
                    .collect::<Vec<_>>()
                    .join(", "),
                dialect: dialects.join(", "),
                embedded: self.embedded,
                up: self.links.is_up(),
                answered: links.iter().any(Link::is_answered),
                sessions: self.links.live_sessions(),
                early_closes: link.early_closes,
                silent: link.silent,
                since_secs,
                connects: link.connects,
                frames: link.frames,
                frames_per_write: per_write(&link),
                replies_dropped: link.replies_dropped,
                parse_errors: link.parse_errors,
                heartbeat_rtt_ms: rtt_ms(self.links.heartbeat_rtt()),
                history: history_view(&history),
            },
            backends,
            closes: counts.closes,
            refusals: counts.refusals,
            attack: AttackStatus {
                on: self.attack.is_on(),
                mode: match self.attack.forced() {
                    None => "automatic",
                    Some(true) => "forced_on",
                    Some(false) => "forced_off",
                },
                conn_rate: (self.attack.conn_rate() * 10.0).round() / 10.0,
                config: *self.attack.config(),
            },
            top_ips: top
                .into_iter()
                .map(|(ip, sessions)| IpCount {
                    ip: ip.to_string(),
                    sessions,
                })
                .collect(),
            blocks: BlockCounts {
                static_count,
                temporary_count,
                permanent_count,
                list: blocks.iter().take(BLOCKS_SHOWN).map(block_view).collect(),
            },
            events: events.into_iter().map(|(_, e)| e).collect(),
            console: ConsoleStatus {
                token_set: self.guard.token_set(),
                unauthorized: self.guard.refused(),
            },
            loginsrv: self.loginsrv_status(),
        }
    }
}
