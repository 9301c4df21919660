//! A game client on a real socket to a real gate: mirtool's login client,
//! with every failure a panic and every reply kept whatever its kind, so a
//! test asserts each one.

use std::net::SocketAddr;

use mir2_proto::ids::MsgKind;
use mirtool::login::conn::Conn;
use mirtool::login::Failure;

use testkit::gate::{user_records, Reply, IDS};
use testkit::STEP;

pub struct Client {
    /// mirtool's connection: framing, check digits and deadlines.
    conn: Conn,
}

impl Client {
    pub async fn connect(gate: SocketAddr) -> Client {
        let conn = Conn::connect(&gate.to_string(), IDS.clone(), STEP, Default::default())
            .await
            .expect("connect to gate");
        Client { conn }
    }

    pub async fn send(&mut self, kind: MsgKind, recog: i32, parts: &[&[u8]]) {
        self.conn
            .send(kind, recog, parts)
            .await
            .expect("write to gate");
    }

    /// Next reply, or `None` when the gate closed the connection.
    pub async fn try_reply(&mut self) -> Option<Reply> {
        match self.conn.next().await {
            Ok(r) => Some(Reply {
                header: r.header,
                body: r.body,
            }),
            Err(Failure::Ended(_)) => None,
            Err(e) => panic!("a reply or the end of the connection: {e:?}"),
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
