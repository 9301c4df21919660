//! One client of a gate (one gate id on one gate link): its task, framing,
//! and replies. What each message means and does lives in `handlers`.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use mir2_proto::ids::MsgKind;
use mir2_proto::link::ServerFrame;
use mir2_proto::packet::{write_server_packet, Packet};
use mir2_proto::{ClientFramer, MsgHeader};
use tokio::sync::mpsc;

use crate::gate::GateLink;
use crate::handlers::Command;
use crate::reject::reject;
use crate::ServerState;

/// A reply to send: message kind, recog, series and plain (not yet 6-bit) body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    /// Which message (mapped to the client build's id).
    pub kind: MsgKind,
    /// Header recog (reason codes, session id).
    pub recog: i32,
    /// Header series (server count).
    pub series: u16,
    /// Body bytes before encoding; empty for none.
    pub body: Vec<u8>,
}

impl Reply {
    /// A reply without body.
    pub fn code(kind: MsgKind, recog: i32) -> Reply {
        Reply {
            kind,
            recog,
            series: 0,
            body: Vec::new(),
        }
    }
}

/// State of one client.
pub(crate) struct Client {
    /// Server-wide state.
    pub server: Arc<ServerState>,
    /// The gate this client is on.
    pub gate: GateLink,
    /// The gate's id for this client.
    pub id: u32,
    /// Client address as reported by the gate (for logs and the per-IP hash budget).
    pub ip: IpAddr,
    /// Unique in this process; tells this client from a later one with the same gate id.
    pub token: u64,
    /// Account key after a successful CM_IDPASSWORD (until kicked or closed).
    pub account: Option<String>,
    /// Whether a CM_PROTOCOL on this connection announced a build of at least
    /// `min_client_version`; until then (and after an older one) only CM_PROTOCOL is
    /// served. Always true when no minimum is configured.
    pub version_passed: bool,
    /// Splits the gate's bytes into `#…!` messages.
    framer: ClientFramer,
    /// Bytes of a message split across frames.
    pending: BytesMut,
}

impl Client {
    /// The client with gate id `id`.
    pub fn new(server: Arc<ServerState>, gate: GateLink, id: u32, ip: IpAddr) -> Client {
        let token = server.next_client_token.fetch_add(1, Ordering::Relaxed);
        let framer = ClientFramer::new(server.config.load().max_client_message_bytes);
        let version_passed = server.config.load().min_client_version <= 0;
        Client {
            server,
            gate,
            id,
            ip,
            token,
            account: None,
            version_passed,
            framer,
            pending: BytesMut::new(),
        }
    }

    /// Process this client's messages in order until the gate closes it.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Bytes>) {
        metrics::gauge!("loginsrv_clients").increment(1.0);
        while let Some(data) = rx.recv().await {
            self.pending.extend_from_slice(&data);
            loop {
                match self.framer.decode(&mut self.pending) {
                    Ok(Some(frame)) => self.message(frame).await,
                    Ok(None) => break,
                    Err(e) => {
                        reject(e.reason(), format_args!("{}: {e}", self.who()));
                        // A framer error ends its stream: start afresh at the next '#'.
                        self.pending.clear();
                        self.framer =
                            ClientFramer::new(self.server.config.load().max_client_message_bytes);
                        break;
                    }
                }
            }
        }
        if let Some(key) = self.account.take() {
            self.release_account(&key).await;
        }
        metrics::gauge!("loginsrv_clients").decrement(1.0);
    }

    /// This client no longer holds `key` (it closed, or logged in as another
    /// account). With game servers a session id it was issued lives on in
    /// `online_sessions` until a game server ends it.
    pub async fn release_account(&self, key: &str) {
        self.server.online.release(key, self.token);
        let keep_session = self.server.game.is_some();
        if let Err(e) = self
            .server
            .store
            .release_online(
                key,
                self.server.cluster.instance_id,
                self.token,
                keep_session,
            )
            .await
        {
            self.db_error("online release", &e);
        }
    }

    /// For log lines: gate, id and client address.
    pub fn who(&self) -> String {
        format!("gate {} client {} ({})", self.gate.peer(), self.id, self.ip)
    }

    /// Count and log a failed database (or hasher) operation.
    pub fn db_error(&self, what: &str, e: &dyn std::fmt::Display) {
        metrics::counter!("loginsrv_db_errors_total").increment(1);
        tracing::error!(error = %e, "{}: {what} failed", self.who());
    }

    /// One whole `#…!` message: read it, carry it out, answer it.
    async fn message(&mut self, frame: Bytes) {
        let packet = match Packet::parse(frame) {
            Ok(p) => p,
            Err(e) => {
                reject("bad_packet", format_args!("{}: {e}", self.who()));
                return;
            }
        };
        let ident = packet.header.ident;
        let Some(kind) = self.server.ids.kind(ident) else {
            reject(
                "unknown_ident",
                format_args!("{}: ident {ident}", self.who()),
            );
            return;
        };
        if !self.version_passed && kind != MsgKind::CmProtocol {
            reject(
                "client_version_refused",
                format_args!(
                    "{}: {} before a CM_PROTOCOL of build >= min_client_version",
                    self.who(),
                    kind.name()
                ),
            );
            return;
        }
        metrics::counter!("loginsrv_messages_total", "kind" => kind.name()).increment(1);
        let reply = match Command::parse(kind, &packet, &self.server.config.load()) {
            Ok(command) => Some(command.apply(self).await),
            Err(refused) => {
                reject(
                    refused.why.reason,
                    format_args!("{} {}: {}", self.who(), kind.name(), refused.why.detail),
                );
                refused.reply
            }
        };
        if let Some(reply) = reply {
            self.send(reply).await;
        }
    }

    /// Encode and queue a reply to this client.
    pub async fn send(&self, r: Reply) {
        let header = MsgHeader::new(self.server.ids.id(r.kind), r.recog, 0, 0, r.series);
        let mut out = BytesMut::with_capacity(MsgHeader::ENCODED_LEN + 2 + r.body.len() * 2);
        if r.body.is_empty() {
            write_server_packet(&mut out, &header, &[]);
        } else {
            write_server_packet(&mut out, &header, &[&r.body]);
        }
        self.gate
            .send(ServerFrame::Data {
                id: self.id,
                data: out.freeze(),
            })
            .await;
    }
}
