//! `soak`: `gate-echo` that also disrupts, and keeps a ledger of every session.
//!
//! Answers data frames and heartbeats like `gate-echo`, and on its own
//! schedule does what a LoginSrv does to a gate over hours: orders kicks and
//! temporary blocks of live sessions, and drops the link (the gate must
//! notice, close that link's clients and reconnect). Every frame is checked
//! against a ledger of the link connection it arrived on: a second open, or
//! data or a close for a session that is not open, is counted as a violation.
//! The soak driver reads the counters from the stats file.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mir2_proto::link::{self, GateFrame, LinkError, LinkFramer, ServerFrame};
use mir2_proto::Dialect;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{Instant, Interval};

use super::gate_echo::write_stats_file;

/// Read buffer per link; the gate batches many frames per write.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// How often the stats file is rewritten.
const STATS_EVERY: Duration = Duration::from_millis(500);

/// When the LoginSrv side disrupts; `None` never.
#[derive(Debug, Clone, Copy)]
pub struct Disruptions {
    /// A kick of one live session.
    pub kick_every: Option<Duration>,
    /// A temporary block of one live session's address.
    pub block_every: Option<Duration>,
    /// Closing the link connection.
    pub link_kill_every: Option<Duration>,
}

/// Counters shared by every link task.
#[derive(Clone, Default)]
pub struct SoakStats(Arc<Counters>);

#[derive(Default)]
struct Counters {
    /// Link connections accepted (1 + reconnects).
    links: AtomicU64,
    /// Link connections this side closed on purpose.
    link_kills: AtomicU64,
    /// Open frames that opened a session.
    opens: AtomicU64,
    /// Close frames that closed an open session.
    closes: AtomicU64,
    /// Sessions still open when their link connection ended: the gate closes
    /// them itself and, by design, sends no close frame on the next link.
    forgotten: AtomicU64,
    /// Sessions open right now, over every link connection.
    open_now: AtomicI64,
    /// Data frames answered.
    data: AtomicU64,
    /// Heartbeats answered.
    heartbeats: AtomicU64,
    /// Kick orders sent.
    kicks: AtomicU64,
    /// Temporary block orders sent.
    blocks: AtomicU64,
    /// An open frame for a session already open on this connection.
    double_opens: AtomicU64,
    /// A data frame for a session not open on this connection.
    unopened_data: AtomicU64,
    /// A close frame for a session not open on this connection (second close included).
    unopened_closes: AtomicU64,
    /// Frames that did not parse.
    bad_frames: AtomicU64,
}

impl SoakStats {
    pub fn to_json(&self) -> String {
        let c = &self.0;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "links": get(&c.links),
            "link_kills": get(&c.link_kills),
            "opens": get(&c.opens),
            "closes": get(&c.closes),
            "forgotten": get(&c.forgotten),
            "open_now": c.open_now.load(Ordering::Relaxed),
            "data": get(&c.data),
            "heartbeats": get(&c.heartbeats),
            "kicks": get(&c.kicks),
            "blocks": get(&c.blocks),
            "double_opens": get(&c.double_opens),
            "unopened_data": get(&c.unopened_data),
            "unopened_closes": get(&c.unopened_closes),
            "bad_frames": get(&c.bad_frames),
        })
        .to_string()
    }
}

pub async fn serve(
    listener: TcpListener,
    dialect: Dialect,
    max_frame_bytes: usize,
    plan: Disruptions,
    stats: SoakStats,
    stats_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    if let Some(path) = stats_file {
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(STATS_EVERY);
            loop {
                tick.tick().await;
                write_stats_file(&path, &stats.to_json());
            }
        });
    }
    // One epoch per scheduled kill: every link task alive at that moment ends.
    let (kill_tx, kill_rx) = watch::channel(0u64);
    if let Some(every) = plan.link_kill_every {
        tokio::spawn(async move {
            let mut tick = later_interval(every);
            loop {
                tick.tick().await;
                kill_tx.send_modify(|epoch| *epoch += 1);
            }
        });
    }
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                eprintln!("soak backend: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        stats.0.links.fetch_add(1, Ordering::Relaxed);
        let stats = stats.clone();
        let mut kill = kill_rx.clone();
        kill.mark_unchanged();
        tokio::spawn(async move {
            let mut ledger = HashSet::new();
            let r = serve_link(
                stream,
                dialect,
                max_frame_bytes,
                plan,
                &stats,
                &mut ledger,
                kill,
            )
            .await;
            let left = ledger.len() as u64;
            stats.0.forgotten.fetch_add(left, Ordering::Relaxed);
            stats.0.open_now.fetch_sub(left as i64, Ordering::Relaxed);
            if let Err(e) = r {
                eprintln!("soak backend: link from {peer} closed: {e}");
            }
        });
    }
}

/// An interval whose first tick is one period from now (not at once).
fn later_interval(every: Duration) -> Interval {
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// The next tick, or never.
async fn tick(interval: &mut Option<Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Some live session of this link, a different one each call.
fn pick(ledger: &HashSet<u32>, cursor: &mut usize) -> Option<u32> {
    if ledger.is_empty() {
        return None;
    }
    *cursor = cursor.wrapping_add(7919);
    ledger.iter().nth(*cursor % ledger.len()).copied()
}

async fn serve_link(
    mut stream: TcpStream,
    dialect: Dialect,
    max_frame_bytes: usize,
    plan: Disruptions,
    stats: &SoakStats,
    ledger: &mut HashSet<u32>,
    mut kill: watch::Receiver<u64>,
) -> anyhow::Result<()> {
    let c = &stats.0;
    let mut framer = LinkFramer::new(max_frame_bytes);
    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let mut out = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let mut kicks = plan.kick_every.map(later_interval);
    let mut blocks = plan.block_every.map(later_interval);
    let mut cursor = 0usize;
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(READ_BUFFER_BYTES);
        }
        tokio::select! {
            r = stream.read_buf(&mut buf) => {
                let n = r?;
                if n == 0 {
                    return Ok(());
                }
                read_frames(&mut framer, &mut buf, &mut out, dialect, c, ledger)?;
            }
            () = tick(&mut kicks) => {
                if let Some(id) = pick(ledger, &mut cursor) {
                    link::write_server_frame(dialect, &ServerFrame::Kick { id }, &mut out);
                    c.kicks.fetch_add(1, Ordering::Relaxed);
                }
            }
            () = tick(&mut blocks) => {
                if let Some(id) = pick(ledger, &mut cursor) {
                    let order = ServerFrame::Block { id, permanent: false };
                    link::write_server_frame(dialect, &order, &mut out);
                    c.blocks.fetch_add(1, Ordering::Relaxed);
                }
            }
            r = kill.changed() => {
                if r.is_ok() {
                    c.link_kills.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
    }
}

/// Every whole frame in `buf`: checked against the ledger, answered into `out`.
fn read_frames(
    framer: &mut LinkFramer,
    buf: &mut BytesMut,
    out: &mut BytesMut,
    dialect: Dialect,
    c: &Counters,
    ledger: &mut HashSet<u32>,
) -> anyhow::Result<()> {
    let bump = |a: &AtomicU64| a.fetch_add(1, Ordering::Relaxed);
    loop {
        let body = match framer.next_frame(buf) {
            Ok(Some(body)) => body,
            Ok(None) => return Ok(()),
            Err(e @ LinkError::TooLong { .. }) => anyhow::bail!("{e}"),
            Err(_) => {
                bump(&c.bad_frames);
                continue;
            }
        };
        match link::parse_gate_frame(dialect, body) {
            Ok(GateFrame::Data { id, data }) => {
                if !ledger.contains(&id) {
                    bump(&c.unopened_data);
                }
                link::write_reply(dialect, out, id, &data);
                bump(&c.data);
            }
            Ok(GateFrame::Heartbeat) => {
                link::write_heartbeat_reply(dialect, out);
                bump(&c.heartbeats);
            }
            Ok(GateFrame::Open { id, .. }) => {
                if ledger.insert(id) {
                    bump(&c.opens);
                    c.open_now.fetch_add(1, Ordering::Relaxed);
                } else {
                    bump(&c.double_opens);
                }
            }
            Ok(GateFrame::Close { id }) => {
                if ledger.remove(&id) {
                    bump(&c.closes);
                    c.open_now.fetch_sub(1, Ordering::Relaxed);
                } else {
                    bump(&c.unopened_closes);
                }
            }
            Err(_) => {
                bump(&c.bad_frames);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_visits_many_sessions() {
        let ledger: HashSet<u32> = (0..100).collect();
        let mut cursor = 0;
        let picked: HashSet<u32> = (0..50).filter_map(|_| pick(&ledger, &mut cursor)).collect();
        assert!(picked.len() > 10, "{picked:?}");
        assert_eq!(pick(&HashSet::new(), &mut cursor), None);
    }

    #[test]
    fn ledger_counts_violations() {
        let c = Counters::default();
        let mut ledger = HashSet::new();
        let mut framer = LinkFramer::new(4096);
        let mut out = BytesMut::new();
        let mut buf = BytesMut::from(&b"%O1/1.2.3.4$%O1/1.2.3.4$%A1/#x!$%X1$%X1$%A2/#y!$"[..]);
        read_frames(
            &mut framer,
            &mut buf,
            &mut out,
            Dialect::Wemade,
            &c,
            &mut ledger,
        )
        .ok();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        assert_eq!(get(&c.opens), 1);
        assert_eq!(get(&c.double_opens), 1);
        assert_eq!(get(&c.closes), 1);
        assert_eq!(get(&c.unopened_closes), 1);
        assert_eq!(get(&c.unopened_data), 1);
        assert_eq!(get(&c.data), 2);
        assert_eq!(c.open_now.load(Ordering::Relaxed), 0);
        assert!(ledger.is_empty());
    }
}
