//! `gate-echo`: a LoginSrv-shaped echo on the gate link.
//!
//! Answers every data frame with a reply frame carrying the same bytes for
//! the same session id, and every heartbeat with a heartbeat reply. Open and
//! close frames are only counted: the connection-storm check compares them
//! with the number of client connections the storm made.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mir2_proto::link::{self, GateFrame, LinkError, LinkFramer};
use mir2_proto::Dialect;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Read buffer per link; the gate batches many frames per write.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Counters of everything the gate sent, shared by every link task.
#[derive(Clone, Default)]
pub struct LinkStats(Arc<Counters>);

#[derive(Default)]
struct Counters {
    /// Link connections accepted (the gate reconnecting shows up here).
    links: AtomicU64,
    /// `%O`/`%N` frames: client sessions the gate opened.
    opens: AtomicU64,
    /// `%X`/`%C` frames: client sessions the gate closed.
    closes: AtomicU64,
    /// `%A`/`%D` frames answered.
    data: AtomicU64,
    /// `%--$` frames answered.
    heartbeats: AtomicU64,
    /// Frames that did not parse (counted, skipped).
    bad_frames: AtomicU64,
    /// Link bytes read.
    bytes_in: AtomicU64,
}

impl LinkStats {
    pub fn to_json(&self) -> String {
        let c = &self.0;
        serde_json::json!({
            "links": c.links.load(Ordering::Relaxed),
            "opens": c.opens.load(Ordering::Relaxed),
            "closes": c.closes.load(Ordering::Relaxed),
            "data": c.data.load(Ordering::Relaxed),
            "heartbeats": c.heartbeats.load(Ordering::Relaxed),
            "bad_frames": c.bad_frames.load(Ordering::Relaxed),
            "bytes_in": c.bytes_in.load(Ordering::Relaxed),
        })
        .to_string()
    }
}

/// Best effort: write to a temporary name and rename, so a reader never sees half a file.
pub fn write_stats_file(path: &Path, json: &str) {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, json).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

pub async fn serve(
    listener: TcpListener,
    dialect: Dialect,
    max_frame_bytes: usize,
    stats: LinkStats,
    stats_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    if let Some(path) = stats_file {
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                write_stats_file(&path, &stats.to_json());
            }
        });
    }
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                eprintln!("gate-echo: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        stats.0.links.fetch_add(1, Ordering::Relaxed);
        let stats = stats.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_link(stream, dialect, max_frame_bytes, &stats).await {
                eprintln!("gate-echo: link from {peer} closed: {e}");
            }
        });
    }
}

async fn serve_link(
    mut stream: TcpStream,
    dialect: Dialect,
    max_frame_bytes: usize,
    stats: &LinkStats,
) -> anyhow::Result<()> {
    let c = &stats.0;
    let mut framer = LinkFramer::new(max_frame_bytes);
    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let mut out = BytesMut::with_capacity(READ_BUFFER_BYTES);
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(READ_BUFFER_BYTES);
        }
        let n = stream.read_buf(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        c.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        let (mut data, mut opens, mut closes, mut heartbeats, mut bad) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        loop {
            let body = match framer.next_frame(&mut buf) {
                Ok(Some(body)) => body,
                Ok(None) => break,
                Err(e @ LinkError::TooLong { .. }) => anyhow::bail!("{e}"),
                Err(_) => {
                    bad += 1;
                    continue;
                }
            };
            match link::parse_gate_frame(dialect, body) {
                Ok(GateFrame::Data { id, data: msg }) => {
                    link::write_reply(dialect, &mut out, id, &msg);
                    data += 1;
                }
                Ok(GateFrame::Heartbeat) => {
                    link::write_heartbeat_reply(dialect, &mut out);
                    heartbeats += 1;
                }
                Ok(GateFrame::Open { .. }) => opens += 1,
                Ok(GateFrame::Close { .. }) => closes += 1,
                Err(_) => bad += 1,
            }
        }
        // Counters once per read, not per frame: they are shared across links.
        c.data.fetch_add(data, Ordering::Relaxed);
        c.opens.fetch_add(opens, Ordering::Relaxed);
        c.closes.fetch_add(closes, Ordering::Relaxed);
        c.heartbeats.fetch_add(heartbeats, Ordering::Relaxed);
        c.bad_frames.fetch_add(bad, Ordering::Relaxed);
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
    }
}
