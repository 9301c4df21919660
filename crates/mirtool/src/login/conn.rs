//! A client connection to a LoginGate: `#<digit><header><body>!` out,
//! `#<header><body>!` back, every read and write under a deadline.

use std::time::Duration;

use bytes::BytesMut;
use mir2_proto::ids::{IdTable, MsgKind};
use mir2_proto::packet::{write_client_packet, Packet};
use mir2_proto::{ClientFramer, MsgHeader};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::Failure;

/// Largest reply accepted from the gate (real ones are under 500 bytes).
const MAX_REPLY_BYTES: usize = 8 * 1024;

/// What [`Conn::reply`] refuses with on SM_OUTOFCONNECTION (the login
/// command words it in the operator's language).
pub const OUT_OF_CONNECTION: &str = "the gate is closing the connection (SM_OUTOFCONNECTION)";

/// One decoded reply.
pub struct Reply {
    /// The message kind, if the id table knows it.
    pub kind: Option<MsgKind>,
    /// Its header (recog carries reason codes and the session id).
    pub header: MsgHeader,
    /// The decoded body bytes.
    pub body: Vec<u8>,
}

/// The connection and the per-build id table.
pub struct Conn {
    /// Socket to the gate.
    stream: TcpStream,
    /// Ids of the client build imitated.
    ids: IdTable,
    /// Per-step deadline.
    timeout: Duration,
    /// Check digit counter (1..9 cycling, like real clients).
    seq: u8,
    /// Splits the gate's byte stream into messages.
    framer: ClientFramer,
    /// Bytes read but not yet framed.
    buf: BytesMut,
    /// Whether any reply arrived: a close before the first one is the
    /// gate refusing the connection, a later one ends a session.
    answered: bool,
}

impl Conn {
    /// Connect within `timeout`.
    pub async fn connect(
        addr: &str,
        ids: IdTable,
        timeout: Duration,
        proxy: crate::proxy::ProxyArgs,
    ) -> Result<Conn, Failure> {
        let mut stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                Failure::Connection(format!("connecting to {addr} timed out after {timeout:?}"))
            })?
            .map_err(|e| Failure::Connection(format!("cannot connect to {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        proxy.send_header(&mut stream).await.map_err(|e| {
            Failure::Connection(format!("cannot send the PROXY header to {addr}: {e}"))
        })?;
        Ok(Conn {
            stream,
            ids,
            timeout,
            seq: 0,
            framer: ClientFramer::new(MAX_REPLY_BYTES),
            buf: BytesMut::with_capacity(1024),
            answered: false,
        })
    }

    /// A connection already made (e.g. from a chosen source address).
    pub fn from_stream(stream: TcpStream, ids: IdTable, timeout: Duration) -> Conn {
        Conn {
            stream,
            ids,
            timeout,
            seq: 0,
            framer: ClientFramer::new(MAX_REPLY_BYTES),
            buf: BytesMut::with_capacity(1024),
            answered: false,
        }
    }

    /// Whether the gate has sent any reply on this connection.
    pub fn answered(&self) -> bool {
        self.answered
    }

    /// Send one message; body parts are 6-bit encoded separately.
    pub async fn send(
        &mut self,
        kind: MsgKind,
        recog: i32,
        parts: &[&[u8]],
    ) -> Result<(), Failure> {
        self.seq = self.seq % 9 + 1;
        let header = MsgHeader::new(self.ids.id(kind), recog, 0, 0, 0);
        let mut out = BytesMut::new();
        write_client_packet(&mut out, Some(self.seq), &header, parts);
        tokio::time::timeout(self.timeout, self.stream.write_all(&out))
            .await
            .map_err(|_| Failure::Connection(format!("sending {} timed out", kind.name())))?
            // The gate closed first (a refused connection is closed at once).
            .map_err(|e| Failure::Ended(format!("sending {}: {e}", kind.name())))
    }

    /// The next reply whose kind is in `expect`; others are skipped, except
    /// SM_OUTOFCONNECTION which ends the session. One deadline covers the skipped ones.
    pub async fn reply(&mut self, expect: &[MsgKind]) -> Result<Reply, Failure> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let reply = self.next_before(deadline).await?;
            if reply.kind == Some(MsgKind::SmOutOfConnection) {
                return Err(Failure::Refused(OUT_OF_CONNECTION.into()));
            }
            if reply.kind.is_some_and(|k| expect.contains(&k)) {
                return Ok(reply);
            }
            eprintln!(
                "  (ignoring unexpected message ident {})",
                reply.header.ident
            );
        }
    }

    /// The next reply, whatever its kind, within the per-step deadline.
    /// [`Failure::Ended`] when the gate closed or reset the connection first.
    pub async fn next(&mut self) -> Result<Reply, Failure> {
        self.next_before(tokio::time::Instant::now() + self.timeout)
            .await
    }

    async fn next_before(&mut self, deadline: tokio::time::Instant) -> Result<Reply, Failure> {
        loop {
            if let Some(frame) = self
                .framer
                .decode(&mut self.buf)
                .map_err(|e| Failure::Connection(format!("bad bytes from the gate: {e}")))?
            {
                let packet = Packet::parse(frame)
                    .map_err(|e| Failure::Connection(format!("bad reply: {e}")))?;
                let body = packet
                    .body_decoded()
                    .map_err(|e| Failure::Connection(format!("bad reply body: {e}")))?;
                self.answered = true;
                return Ok(Reply {
                    kind: self.ids.kind(packet.header.ident),
                    header: packet.header,
                    body,
                });
            }
            let n = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| Failure::Connection(format!("no reply within {:?}", self.timeout)))?
                .map_err(|e| Failure::Ended(format!("reading the reply: {e}")))?;
            if n == 0 {
                return Err(Failure::Ended("the gate closed the connection".into()));
            }
        }
    }
}
