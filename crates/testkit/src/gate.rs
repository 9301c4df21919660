//! A scripted gate: one `%…$` link to a LoginSrv over a real socket,
//! opening, feeding and closing client sessions by hand, with the client
//! operations (register, login, select) and their decoded replies.

use std::net::{IpAddr, SocketAddr};

use bytes::BytesMut;
use mir2_proto::ids::{IdTable, MsgKind};
use mir2_proto::link::{self, LinkFramer, ServerFrame};
use mir2_proto::packet::{write_client_packet, Packet};
use mir2_proto::records::{UserEntry, UserEntryAdd};
use mir2_proto::{ClientFramer, Dialect, MsgHeader};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The Delphi message ids every test client speaks.
pub static IDS: std::sync::LazyLock<IdTable> = std::sync::LazyLock::new(IdTable::delphi);

/// How long a test waits for any one reply.
pub const REPLY_TIMEOUT: std::time::Duration = crate::STEP;

/// A decoded reply to one client.
#[derive(Debug, Clone)]
pub struct Reply {
    pub header: MsgHeader,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn kind(&self) -> Option<MsgKind> {
        IDS.kind(self.header.ident)
    }
    pub fn body_text(&self) -> String {
        mir2_proto::text::gbk_decode(&self.body).expect("GBK body")
    }
}

/// A scripted gate on one link.
pub struct Gate {
    pub stream: TcpStream,
    pub dialect: Dialect,
    framer: LinkFramer,
    buf: BytesMut,
    /// Frames read but not yet asked for.
    backlog: Vec<ServerFrame>,
    /// Next check digit per test.
    seq: u8,
}

impl Gate {
    pub async fn connect(addr: SocketAddr, dialect: Dialect) -> Gate {
        let stream = TcpStream::connect(addr).await.expect("connect to LoginSrv");
        Gate::on(stream, dialect)
    }

    /// A gate whose link comes from `source` (another loopback address, e.g.
    /// 127.0.0.2): what the LoginSrv matches `[[routes]]` and `allow_gates` against.
    pub async fn connect_from(addr: SocketAddr, source: IpAddr, dialect: Dialect) -> Gate {
        let socket = match source {
            IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .expect("socket");
        socket
            .bind(SocketAddr::new(source, 0))
            .expect("bind the gate's source address");
        let stream = socket.connect(addr).await.expect("connect to LoginSrv");
        Gate::on(stream, dialect)
    }

    fn on(stream: TcpStream, dialect: Dialect) -> Gate {
        Gate {
            stream,
            dialect,
            framer: LinkFramer::new(64 * 1024),
            buf: BytesMut::new(),
            backlog: Vec::new(),
            seq: 0,
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .await
            .expect("write to LoginSrv");
    }

    pub async fn open(&mut self, id: u32) {
        let mut b = BytesMut::new();
        link::write_open(
            self.dialect,
            &mut b,
            id,
            IpAddr::from([192, 0, 2, 7]),
            IpAddr::from([127, 0, 0, 1]),
        );
        self.write(&b).await;
    }

    pub async fn close(&mut self, id: u32) {
        let mut b = BytesMut::new();
        link::write_close(self.dialect, &mut b, id);
        self.write(&b).await;
    }

    pub async fn heartbeat(&mut self) {
        let mut b = BytesMut::new();
        link::write_heartbeat(self.dialect, &mut b);
        self.write(&b).await;
    }

    /// Send one client message (`#d<hdr><body parts>!`) for client `id`.
    pub async fn send(&mut self, id: u32, kind: MsgKind, recog: i32, parts: &[&[u8]]) {
        self.seq = self.seq.wrapping_add(1);
        let header = MsgHeader::new(IDS.id(kind), recog, 0, 0, 0);
        let mut msg = BytesMut::new();
        write_client_packet(&mut msg, Some(self.seq), &header, parts);
        self.send_raw(id, &msg).await;
    }

    /// Send a message with a raw ident (for per-build id tables).
    pub async fn send_ident(&mut self, id: u32, ident: u16, parts: &[&[u8]]) {
        self.seq = self.seq.wrapping_add(1);
        let mut msg = BytesMut::new();
        write_client_packet(
            &mut msg,
            Some(self.seq),
            &MsgHeader::new(ident, 0, 0, 0, 0),
            parts,
        );
        self.send_raw(id, &msg).await;
    }

    /// Send raw client bytes for client `id`.
    pub async fn send_raw(&mut self, id: u32, data: &[u8]) {
        let mut b = BytesMut::new();
        link::write_data(self.dialect, &mut b, id, data);
        self.write(&b).await;
    }

    /// Raw bytes as they arrive (for dialect checks).
    pub async fn read_raw(&mut self) -> Vec<u8> {
        let mut tmp = vec![0u8; 4096];
        let n = tokio::time::timeout(REPLY_TIMEOUT, self.stream.read(&mut tmp))
            .await
            .expect("reply in time")
            .expect("read");
        tmp.truncate(n);
        tmp
    }

    /// Next frame matching `want`, keeping others for later.
    pub async fn frame(&mut self, mut want: impl FnMut(&ServerFrame) -> bool) -> ServerFrame {
        if let Some(i) = self.backlog.iter().position(&mut want) {
            return self.backlog.remove(i);
        }
        let deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
        loop {
            while let Some(body) = self
                .framer
                .next_frame(&mut self.buf)
                .expect("well-formed link")
            {
                let f = link::parse_server_frame(self.dialect, body).expect("server frame parses");
                if want(&f) {
                    return f;
                }
                self.backlog.push(f);
            }
            let n = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .expect("frame in time")
                .expect("read from LoginSrv");
            assert!(
                n > 0,
                "LoginSrv closed the link; backlog {:?}",
                self.backlog
            );
        }
    }

    /// The next reply to client `id`.
    pub async fn reply(&mut self, id: u32) -> Reply {
        let f = self
            .frame(|f| matches!(f, ServerFrame::Data { id: i, .. } if *i == id))
            .await;
        let ServerFrame::Data { data, .. } = f else {
            unreachable!()
        };
        let mut b = BytesMut::from(&data[..]);
        let frame = ClientFramer::new(8192)
            .decode(&mut b)
            .expect("valid reply")
            .expect("whole reply");
        assert!(b.is_empty(), "one message per frame");
        let p = Packet::parse(frame).expect("reply parses");
        let body = p.body_decoded().expect("reply body decodes");
        Reply {
            header: p.header,
            body,
        }
    }

    /// Wait for `%+-<id>$`.
    pub async fn kicked(&mut self, id: u32) {
        self.frame(|f| matches!(f, ServerFrame::Kick { id: i } if *i == id))
            .await;
    }

    /// Whether the server closed the link (read returns 0) within the timeout.
    pub async fn closed_by_server(&mut self) -> bool {
        let mut tmp = [0u8; 256];
        loop {
            match tokio::time::timeout(REPLY_TIMEOUT, self.stream.read(&mut tmp)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    // ---- client operations

    pub async fn register(&mut self, id: u32, account: &str, password: &str) -> Reply {
        let (e, a) = user_records(account, password);
        self.send(id, MsgKind::CmAddNewUser, 0, &[&e, &a]).await;
        self.reply(id).await
    }

    pub async fn login(&mut self, id: u32, account: &str, password: &str) -> Reply {
        let body = format!("{account}/{password}");
        self.send(id, MsgKind::CmIdPassword, 0, &[body.as_bytes()])
            .await;
        self.reply(id).await
    }

    pub async fn select(&mut self, id: u32, server: &str) -> Reply {
        let name = mir2_proto::text::gbk_encode(server).unwrap();
        self.send(id, MsgKind::CmSelectServer, 0, &[&name]).await;
        self.reply(id).await
    }
}

/// Recovery answers used by `user_records`.
pub const QUIZ1: &str = "pet";
pub const ANSWER1: &str = "cat";
pub const QUIZ2: &str = "city";
pub const ANSWER2: &str = "北京";
pub const BIRTHDAY: &str = "1990/01/01";

/// TUserEntry + TUserEntryAdd bytes for a registration.
pub fn user_records(account: &str, password: &str) -> (Vec<u8>, Vec<u8>) {
    let e = UserEntry {
        account: account.into(),
        password: password.into(),
        user_name: "张三".into(),
        ss_no: "110101199001011234".get(..14).unwrap().into(),
        phone: "555-0100".into(),
        quiz: QUIZ1.into(),
        answer: ANSWER1.into(),
        email: "p@example.com".into(),
    };
    let a = UserEntryAdd {
        quiz2: QUIZ2.into(),
        answer2: ANSWER2.into(),
        birthday: BIRTHDAY.into(),
        mobile_phone: "13800000000".into(),
        memo: "".into(),
        memo2: "".into(),
    };
    (
        e.to_bytes().unwrap().to_vec(),
        a.to_bytes().unwrap().to_vec(),
    )
}

pub fn assert_reply(r: &Reply, kind: MsgKind, recog: i32) {
    assert_eq!(r.kind(), Some(kind), "reply {r:?}");
    assert_eq!(r.header.recog, recog, "recog of {r:?}");
}
