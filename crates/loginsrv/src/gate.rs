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
use std::sync::atomic::{AtomicU8, Ordering};
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

use crate::client::Client;
use crate::reject::reject;
use crate::ServerState;

/// Bytes gathered into one write to the gate.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// Initial read buffer per gate.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// A handle to one gate link, cloned into its client tasks.
#[derive(Clone)]
pub struct GateLink {
    /// Where the gate connects from (for logs).
    peer: SocketAddr,
    /// The writer task's queue.
    tx: mpsc::Sender<ServerFrame>,
}

impl GateLink {
    /// Queue a frame; `false` if the link is gone.
    pub async fn send(&self, out: ServerFrame) -> bool {
        self.tx.send(out).await.is_ok()
    }

    /// Queue a frame without waiting; `false` if the link is gone or
    /// backed up. For frames to *another* gate (kicks), so one stalled gate
    /// cannot hold up a client on a different one.
    pub fn try_send(&self, out: ServerFrame) -> bool {
        self.tx.try_send(out).is_ok()
    }

    /// The gate's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

/// Gate links open now: the number `max_gates` is checked against, published as
/// the `loginsrv_gates` gauge under the same lock so the two never disagree.
#[derive(Default)]
struct GateCount {
    /// Links open.
    open: parking_lot::Mutex<usize>,
}

impl GateCount {
    /// Count one more link unless `max` are open.
    fn enter(&self, max: usize) -> bool {
        let mut open = self.open.lock();
        if *open >= max {
            return false;
        }
        *open += 1;
        metrics::gauge!("loginsrv_gates").set(*open as f64);
        true
    }

    /// A link ended.
    fn leave(&self) {
        let mut open = self.open.lock();
        *open = open.saturating_sub(1);
        metrics::gauge!("loginsrv_gates").set(*open as f64);
    }
}

/// Accept gates until `cancel`.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    state: Arc<ServerState>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let gates = Arc::new(GateCount::default());
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
        if !state
            .config
            .load()
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
        if !gates.enter(state.config.load().max_gates) {
            reject(
                "too_many_gates",
                format_args!("gate {peer} refused: max_gates reached"),
            );
            continue;
        }
        let _ = stream.set_nodelay(true);
        let (state, cancel, gates, t) = (
            state.clone(),
            cancel.clone(),
            gates.clone(),
            tracker.clone(),
        );
        tracker.spawn(async move {
            tracing::info!(%peer, "gate connected");
            state.summary.gate_connected();
            let reason = serve_gate(stream, peer, state.clone(), cancel, t).await;
            tracing::info!(%peer, reason, "gate disconnected");
            state.summary.gate_disconnected();
            gates.leave();
        });
    }
}

/// One gate link: returns why it ended.
async fn serve_gate(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<ServerState>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) -> &'static str {
    let (mut rd, wr) = stream.into_split();
    // A reload reaches the next gate link; this one keeps the settings it started with.
    let config = state.config.load_full();
    let dialect = Arc::new(AtomicU8::new(config.default_dialect.to_u8()));
    let (tx, rx) = mpsc::channel(config.gate_outbound_queue);
    let link_done = cancel.child_token();
    let idle = Duration::from_secs(config.gate_idle_timeout_secs);
    tracker.spawn(write_loop(
        wr,
        rx,
        dialect.clone(),
        config.temporary_block,
        link_done.clone(),
        idle,
    ));
    let link = GateLink { peer, tx };
    let max_clients = config.max_clients_per_gate;
    let mut framer = LinkFramer::new(config.max_link_frame_bytes);
    let mut reader = GateReader {
        state,
        link,
        dialect,
        live: Arc::new(Semaphore::new(max_clients)),
        clients: HashMap::new(),
        tracker,
    };
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
    state: Arc<ServerState>,
    /// This link's writer handle.
    link: GateLink,
    /// The link's dialect, learnt from frames; read by the writer.
    dialect: Arc<AtomicU8>,
    /// One permit per live client task on this gate (`max_clients_per_gate`).
    live: Arc<Semaphore>,
    /// Open clients: gate id → that client's task queue.
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
            let new = d.to_u8();
            if self.dialect.swap(new, Ordering::Relaxed) != new {
                tracing::info!(peer = %self.link.peer, dialect = %d, "gate dialect detected");
            }
        }
        match frame {
            GateFrame::Heartbeat => {
                self.link.send(ServerFrame::HeartbeatReply).await;
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
            // The old client's task ends; the id now names the new client.
            reject(
                "duplicate_open",
                format_args!("gate {} reopened client {id}", self.link.peer),
            );
        }
        // Permits count live client *tasks*, not map entries: a closed
        // client still finishing a hash keeps its permit until it ends.
        let Ok(permit) = self.live.clone().try_acquire_owned() else {
            reject(
                "too_many_clients",
                format_args!(
                    "gate {} client {id}: max_clients_per_gate reached",
                    self.link.peer
                ),
            );
            self.link.send(ServerFrame::Kick { id }).await;
            return;
        };
        let (tx, rx) = mpsc::channel(self.state.config.load().client_queue_messages);
        self.clients.insert(id, tx);
        let client = Client::new(self.state.clone(), self.link.clone(), id, client_ip);
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
    mut rx: mpsc::Receiver<ServerFrame>,
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
        let d = Dialect::from_u8(dialect.load(Ordering::Relaxed)).unwrap_or(Dialect::Delphi);
        let frames = Frames {
            temporary_block,
            ..*d.frames()
        };
        link::write_server_frame(frames, &first, &mut out);
        while out.len() < WRITE_BATCH_BYTES {
            match rx.try_recv() {
                Ok(m) => link::write_server_frame(frames, &m, &mut out),
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
