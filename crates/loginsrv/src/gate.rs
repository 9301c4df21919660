//! Gate links: accept, allow-list, per-gate reader and writer.
//!
//! A plain tokio listener rather than `netcore`: gates are few, trusted-ish
//! and long-lived, and every message needs async database work, which
//! netcore's synchronous `Handler` would have to hand off to a task anyway.
//! The reader parses `%…$` frames and routes each client's bytes to that
//! client's own task (ordered per client, concurrent across clients); the
//! writer batches replies into as few writes as possible.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mir2_proto::link::{self, BlockLetter, Frames, GateFrame, LinkFramer, ServerFrame};
use mir2_proto::Dialect;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::reject::reject;
use crate::session;
use crate::Shared;

/// Bytes gathered into one write to the gate.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// Initial read buffer per gate.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// Something to send to a gate.
#[derive(Debug)]
pub enum Outbound {
    /// `%<id>/<data>$`: a whole `#…!` reply for client `id`.
    Reply {
        /// Gate's client id.
        id: u32,
        /// Encoded server packet.
        data: Bytes,
    },
    /// `%+-<id>$`: close client `id`.
    Kick {
        /// Gate's client id.
        id: u32,
    },
    /// `%++$`.
    HeartbeatReply,
}

/// A handle to one gate link, cloned into its client tasks.
#[derive(Clone)]
pub struct GateLink {
    /// Where the gate connects from (for logs).
    peer: SocketAddr,
    /// The writer task's queue.
    tx: mpsc::Sender<Outbound>,
}

impl GateLink {
    /// Queue a frame; `false` if the link is gone.
    pub async fn send(&self, out: Outbound) -> bool {
        self.tx.send(out).await.is_ok()
    }

    /// Queue a frame without waiting; `false` if the link is gone or
    /// backed up. For frames to *another* gate (kicks), so one stalled gate
    /// cannot hold up a session on a different one.
    pub fn try_send(&self, out: Outbound) -> bool {
        self.tx.try_send(out).is_ok()
    }

    /// The gate's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

fn dialect_to_u8(d: Dialect) -> u8 {
    match d {
        Dialect::Wemade => 0,
        Dialect::Delphi => 1,
        Dialect::HappyM2 => 2,
        Dialect::Ldx => 3,
    }
}

fn dialect_from_u8(v: u8) -> Dialect {
    match v {
        0 => Dialect::Wemade,
        2 => Dialect::HappyM2,
        3 => Dialect::Ldx,
        _ => Dialect::Delphi,
    }
}

/// Accept gates until `cancel`.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let gates = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer) = tokio::select! {
            () = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if !shared
            .config
            .allow_gates
            .iter()
            .any(|net| net.contains(&peer.ip()))
        {
            reject(
                "gate_not_allowed",
                format_args!("gate {peer} is not in allow_gates"),
            );
            continue;
        }
        if gates.load(Ordering::Relaxed) >= shared.config.max_gates {
            reject(
                "too_many_gates",
                format_args!("gate {peer} refused: max_gates reached"),
            );
            continue;
        }
        let _ = stream.set_nodelay(true);
        gates.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("loginsrv_gates").increment(1.0);
        let (shared, cancel, gates, t) = (
            shared.clone(),
            cancel.clone(),
            gates.clone(),
            tracker.clone(),
        );
        tracker.spawn(async move {
            tracing::info!(%peer, "gate connected");
            let reason = serve_gate(stream, peer, shared, cancel, t).await;
            tracing::info!(%peer, reason, "gate disconnected");
            gates.fetch_sub(1, Ordering::Relaxed);
            metrics::gauge!("loginsrv_gates").decrement(1.0);
        });
    }
}

/// One gate link: returns why it ended.
async fn serve_gate(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) -> &'static str {
    let (mut rd, wr) = stream.into_split();
    let dialect = Arc::new(AtomicU8::new(dialect_to_u8(shared.config.default_dialect)));
    let (tx, rx) = mpsc::channel(shared.config.gate_outbound_queue);
    let link_done = cancel.child_token();
    let idle = Duration::from_secs(shared.config.gate_idle_timeout_secs);
    tracker.spawn(write_loop(
        wr,
        rx,
        dialect.clone(),
        shared.config.temporary_block,
        link_done.clone(),
        idle,
    ));
    let link = GateLink { peer, tx };
    let shared_max_clients = shared.config.max_clients_per_gate;
    let mut reader = GateReader {
        shared,
        link,
        dialect,
        live: Arc::new(Semaphore::new(shared_max_clients)),
        clients: HashMap::new(),
        tracker,
    };
    let mut framer = LinkFramer::new(reader.shared.config.max_link_frame_bytes);
    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let reason = loop {
        if let Err(reason) = reader.drain(&mut framer, &mut buf).await {
            break reason;
        }
        tokio::select! {
            () = link_done.cancelled() => break "shutdown or write failure",
            r = tokio::time::timeout(idle, rd.read_buf(&mut buf)) => match r {
                Ok(Ok(0)) => break "closed by gate",
                Ok(Ok(_)) => {}
                Ok(Err(_)) => break "read error",
                Err(_) => {
                    reject("gate_idle", format_args!("gate {peer} silent for {idle:?}"));
                    break "idle timeout";
                }
            },
        }
    };
    // Dropping the client senders lets each client task finish its queue and end.
    reader.clients.clear();
    link_done.cancel();
    reason
}

/// Reader-side state of one gate link.
struct GateReader {
    /// Server-wide state.
    shared: Arc<Shared>,
    /// This link's writer handle.
    link: GateLink,
    /// The link's dialect, learnt from frames; read by the writer.
    dialect: Arc<AtomicU8>,
    /// One permit per live client task on this gate (`max_clients_per_gate`).
    live: Arc<Semaphore>,
    /// Open client sessions: gate id → that client's task queue.
    clients: HashMap<u32, mpsc::Sender<Bytes>>,
    /// Tracks client tasks for orderly shutdown.
    tracker: TaskTracker,
}

impl GateReader {
    /// Handle every whole frame in `buf`; `Err` ends the link.
    async fn drain(
        &mut self,
        framer: &mut LinkFramer,
        buf: &mut BytesMut,
    ) -> Result<(), &'static str> {
        loop {
            match framer.next_frame(buf) {
                Ok(Some(body)) => self.frame(body).await,
                Ok(None) => return Ok(()),
                Err(e) if e.is_fatal() => {
                    reject(e.reason(), format_args!("gate {}: {e}", self.link.peer));
                    return Err("oversize frame");
                }
                Err(e) => reject(e.reason(), format_args!("gate {}: {e}", self.link.peer)),
            }
        }
    }

    async fn frame(&mut self, body: Bytes) {
        let (frame, revealed) = match link::detect_gate_frame(body) {
            Ok(x) => x,
            Err(e) => {
                reject(e.reason(), format_args!("gate {}: {e}", self.link.peer));
                return;
            }
        };
        if let Some(d) = revealed {
            let new = dialect_to_u8(d);
            if self.dialect.swap(new, Ordering::Relaxed) != new {
                tracing::info!(peer = %self.link.peer, dialect = %d, "gate dialect detected");
            }
        }
        match frame {
            GateFrame::Heartbeat => {
                self.link.send(Outbound::HeartbeatReply).await;
            }
            GateFrame::Open { id, client_ip, .. } => self.open(id, client_ip).await,
            GateFrame::Close { id } => {
                self.clients.remove(&id);
            }
            GateFrame::Data { id, data } => match self.clients.get(&id) {
                Some(tx) => match tx.try_send(data) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => reject(
                        "client_queue_full",
                        format_args!("gate {} client {id}: message dropped", self.link.peer),
                    ),
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        self.clients.remove(&id);
                    }
                },
                None => reject(
                    "data_for_unknown_client",
                    format_args!("gate {} client {id} was never opened", self.link.peer),
                ),
            },
        }
    }

    async fn open(&mut self, id: u32, client_ip: std::net::IpAddr) {
        if self.clients.remove(&id).is_some() {
            // The old session's task ends; the id now names the new client.
            reject(
                "duplicate_open",
                format_args!("gate {} reopened client {id}", self.link.peer),
            );
        }
        // Permits count live session *tasks*, not map entries: a closed
        // session still finishing a hash keeps its permit until it ends.
        let Ok(permit) = self.live.clone().try_acquire_owned() else {
            reject(
                "too_many_clients",
                format_args!(
                    "gate {} client {id}: max_clients_per_gate reached",
                    self.link.peer
                ),
            );
            self.link.send(Outbound::Kick { id }).await;
            return;
        };
        let (tx, rx) = mpsc::channel(self.shared.config.client_queue_messages);
        self.clients.insert(id, tx);
        let client = session::Client::new(self.shared.clone(), self.link.clone(), id, client_ip);
        self.tracker.spawn(async move {
            client.run(rx).await;
            drop(permit);
        });
    }
}

/// Write queued frames in batches, in the link's current dialect with the
/// configured block-letter meaning.
async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outbound>,
    dialect: Arc<AtomicU8>,
    temporary_block: BlockLetter,
    done: CancellationToken,
    write_timeout: Duration,
) {
    let mut out = BytesMut::with_capacity(WRITE_BATCH_BYTES);
    loop {
        let first = tokio::select! {
            () = done.cancelled() => break,
            m = rx.recv() => match m { Some(m) => m, None => break },
        };
        let d = dialect_from_u8(dialect.load(Ordering::Relaxed));
        let frames = Frames {
            temporary_block,
            ..*d.frames()
        };
        encode(&frames, first, &mut out);
        while out.len() < WRITE_BATCH_BYTES {
            match rx.try_recv() {
                Ok(m) => encode(&frames, m, &mut out),
                Err(_) => break,
            }
        }
        match tokio::time::timeout(write_timeout, wr.write_all(&out)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::info!(error = %e, "gate write failed");
                break;
            }
            Err(_) => {
                reject(
                    "gate_write_timeout",
                    format_args!("gate not reading for {write_timeout:?}"),
                );
                break;
            }
        }
        out.clear();
    }
    done.cancel();
    let _ = wr.shutdown().await;
}

fn encode(f: &Frames, m: Outbound, out: &mut BytesMut) {
    match m {
        Outbound::Reply { id, data } => link::write_reply(f, out, id, &data),
        Outbound::Kick { id } => link::write_server_frame(f, &ServerFrame::Kick { id }, out),
        Outbound::HeartbeatReply => link::write_heartbeat_reply(f, out),
    }
}
