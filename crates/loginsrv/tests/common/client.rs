//! A game client on a real socket to a real gate.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use bytes::BytesMut;
use mir2_proto::ids::MsgKind;
use mir2_proto::packet::{write_client_packet, Packet};
use mir2_proto::{ClientFramer, MsgHeader};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::{user_records, Reply, IDS, REPLY_TIMEOUT};

pub struct Client {
    stream: TcpStream,
    seq: u8,
    framer: ClientFramer,
    buf: BytesMut,
}

impl Client {
    pub async fn connect(gate: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(gate).await.expect("connect to gate"),
            seq: 0,
            framer: ClientFramer::new(8192),
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, kind: MsgKind, recog: i32, parts: &[&[u8]]) {
        self.seq = self.seq % 9 + 1;
        let mut out = BytesMut::new();
        let header = MsgHeader::new(IDS.id(kind), recog, 0, 0, 0);
        write_client_packet(&mut out, Some(self.seq), &header, parts);
        self.stream.write_all(&out).await.expect("write to gate");
    }

    /// Next reply, or `None` when the gate closed the connection.
    pub async fn try_reply(&mut self) -> Option<Reply> {
        loop {
            if let Some(frame) = self
                .framer
                .decode(&mut self.buf)
                .expect("gate sends valid bytes")
            {
                let p = Packet::parse(frame).expect("reply parses");
                let body = p.body_decoded().expect("body decodes");
                return Some(Reply {
                    header: p.header,
                    body,
                });
            }
            let n = tokio::time::timeout(REPLY_TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("reply in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
        }
    }

    pub async fn reply(&mut self) -> Reply {
        self.try_reply()
            .await
            .expect("a reply, not a closed connection")
    }

    pub async fn register(&mut self, account: &str, password: &str) -> Reply {
        let (e, a) = user_records(account, password);
        self.send(MsgKind::CmAddNewUser, 0, &[&e, &a]).await;
        self.reply().await
    }

    pub async fn login(&mut self, account: &str, password: &str) -> Reply {
        self.send(
            MsgKind::CmIdPassword,
            0,
            &[format!("{account}/{password}").as_bytes()],
        )
        .await;
        self.reply().await
    }

    pub async fn select(&mut self, server: &str) -> Reply {
        let name = mir2_proto::text::gbk_encode(server).unwrap();
        self.send(MsgKind::CmSelectServer, 0, &[&name]).await;
        self.reply().await
    }
}
