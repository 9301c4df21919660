//! The game-server port with scripted M2Server and DBServer connections on
//! real sockets: live status and limits, the SS_OPENSESSION bytes of both id
//! sets, duplicate login and soft-out, the allow-list, framing torture, a
//! silent server timing out, per-gate `[[routes]]` and `public_addr`.
//! Each account test runs on SQLite and, with `DATABASE_URL`, on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{assert_reply, config, start, Backend, Db, Gate, REPLY_TIMEOUT};
use loginsrv::code;
use loginsrv::config::{AddrRoute, GameServersConfig, IdSet};
use loginsrv::{Config, RunningServer};
use mir2_proto::game::GameFramer;
use mir2_proto::ids::MsgKind;
use mir2_proto::Dialect;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Backend::Sqlite).await } )+
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Backend::Postgres).await } )+
        }
    };
}

both_backends!(
    status_follows_counts_and_limit,
    open_session_bytes_hundred_set,
    open_session_bytes_thousand_set,
    duplicate_login_closes_the_old_session,
    soft_out_frees_the_account,
);

fn game_config(db: &Db, ids: IdSet) -> Config {
    Config {
        game_servers: GameServersConfig {
            listen: "127.0.0.1:0".into(),
            id_set: ids,
            max_frame_bytes: 256,
            ..GameServersConfig::default()
        },
        ..config(db)
    }
}

/// A scripted M2Server or DBServer.
struct GameServer {
    stream: TcpStream,
    framer: GameFramer,
    buf: BytesMut,
    ids: IdSet,
}

impl GameServer {
    async fn connect(srv: &RunningServer, ids: IdSet) -> GameServer {
        let addr: SocketAddr = srv.game_servers_addr().expect("game port on");
        GameServer {
            stream: TcpStream::connect(addr)
                .await
                .expect("connect to port 5600"),
            framer: GameFramer::new(64 * 1024),
            buf: BytesMut::new(),
            ids,
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next whole frame body as text.
    async fn frame(&mut self) -> String {
        loop {
            if let Some(f) = self.framer.next_frame(&mut self.buf).expect("framed") {
                return mir2_proto::text::gbk_decode(&f).expect("GBK");
            }
            let n = tokio::time::timeout(REPLY_TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("frame in time")
                .expect("read");
            assert!(n > 0, "LoginSrv closed the game-server connection");
        }
    }

    /// SS_SERVERINFO, then its SS_KEEPALIVE total (skipping session frames, returned too).
    async fn report(&mut self, name: &str, index: i32, online: u32) -> (u64, Vec<String>) {
        let msg = format!("({}/{name}/{index}/{online})", self.ids.id(kind::INFO));
        self.write(&mir2_proto::text::gbk_encode(&msg).unwrap())
            .await;
        self.keepalive().await
    }

    async fn keepalive(&mut self) -> (u64, Vec<String>) {
        let prefix = format!("{}/", self.ids.id(kind::KEEPALIVE));
        let mut other = Vec::new();
        loop {
            let f = self.frame().await;
            if let Some(total) = f.strip_prefix(&prefix) {
                return (total.parse().expect("numeric total"), other);
            }
            other.push(f);
        }
    }

    async fn closed_by_server(&mut self) -> bool {
        let mut tmp = [0u8; 256];
        loop {
            match tokio::time::timeout(REPLY_TIMEOUT, self.stream.read(&mut tmp)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

mod kind {
    pub use mir2_proto::game::GameKind;
    pub const INFO: GameKind = GameKind::ServerInfo;
    pub const KEEPALIVE: GameKind = GameKind::KeepAlive;
}

/// The status digits of an SM_PASSOK_SELECTSERVER body `name/status/…/`.
fn statuses(r: &common::Reply) -> Vec<String> {
    let body = r.body_text();
    let parts: Vec<&str> = body.split('/').collect();
    parts
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| c[1].to_owned())
        .collect()
}

async fn status_follows_counts_and_limit(backend: Backend) {
    let Some(db) = Db::new(backend).await else {
        return;
    };
    let srv = start(game_config(&db, IdSet::Hundred)).await;
    let mut gate = Gate::connect(srv.local_addr(), Dialect::Delphi).await;
    let (a, b) = (db.account("ann"), db.account("ben"));
    gate.open(1).await;
    gate.open(2).await;
    gate.register(1, &a, "pw1234").await;
    gate.register(2, &b, "pw1234").await;
    // alpha: max 10; 传奇: max 1 (tests/common).
    let r = gate.login(1, &a, "pw1234").await;
    assert_reply(&r, MsgKind::SmPassOkSelectServer, 0);
    assert_eq!(statuses(&r), ["0", "0"], "no game server connected");

    let mut m2 = GameServer::connect(&srv, IdSet::Hundred).await;
    let mut dbs = GameServer::connect(&srv, IdSet::Hundred).await;
    assert_eq!(m2.report("alpha", 0, 3).await.0, 3);
    assert_eq!(
        dbs.report("alpha", 99, 500).await.0,
        3,
        "a DBServer is never counted"
    );
    let r = gate.login(1, &a, "pw1234").await;
    assert_eq!(statuses(&r), ["1", "0"]);

    assert_eq!(m2.report("alpha", 0, 10).await.0, 10);
    let r = gate.login(1, &a, "pw1234").await;
    assert_eq!(statuses(&r), ["4", "0"]);
    // Full (10 of 10) is shown, but only above the maximum is a selection refused.
    let ok = gate.select(1, "alpha").await;
    assert_eq!(ok.kind(), Some(MsgKind::SmSelectServerOk), "{ok:?}");
    m2.report("alpha", 0, 11).await;
    assert_reply(
        &gate.login(2, &b, "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    assert_reply(&gate.select(2, "alpha").await, MsgKind::SmStartFail, 0);
    let views = srv.game_servers();
    assert_eq!(views.len(), 2);
    assert!(views
        .iter()
        .any(|v| v.index == 0 && v.online == 11 && !v.timed_out));
    assert!(views
        .iter()
        .any(|v| v.is_dbserver() && v.name.as_deref() == Some("alpha")));
}

async fn open_session_bytes(backend: Backend, ids: IdSet) {
    let Some(db) = Db::new(backend).await else {
        return;
    };
    let srv = start(game_config(&db, ids)).await;
    let mut m2 = GameServer::connect(&srv, ids).await;
    let mut other = GameServer::connect(&srv, ids).await;
    let mut db1 = GameServer::connect(&srv, ids).await;
    let mut db2 = GameServer::connect(&srv, ids).await;
    m2.report("alpha", 0, 1).await;
    other.report("传奇", 0, 0).await;
    db1.report("alpha", 99, 0).await;
    db2.report("传奇", 99, 0).await;

    let mut gate = Gate::connect(srv.local_addr(), Dialect::Delphi).await;
    let user = db.account("cat");
    gate.open(1).await;
    gate.register(1, &user, "pw1234").await;
    gate.login(1, &user, "pw1234").await;
    let ok = gate.select(1, "alpha").await;
    assert_eq!(ok.kind(), Some(MsgKind::SmSelectServerOk), "{ok:?}");
    let sid = ok.header.recog;
    assert!(sid >= 2);
    assert!(ok.body_text().ends_with(&format!("/{sid}")));
    let open = ids.id(mir2_proto::game::GameKind::OpenSession);
    let want = format!("{open}/{user}/{sid}/1/5/192.0.2.7");
    assert_eq!(m2.frame().await, want, "the game server of that name");
    assert_eq!(db1.frame().await, want, "every DBServer");
    assert_eq!(db2.frame().await, want, "every DBServer, whatever its name");
    // The server of another name got nothing before its next keepalive.
    let (_, before) = other.report("传奇", 0, 0).await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(srv.session_account(sid).as_deref(), Some(user.as_str()));
}

async fn open_session_bytes_hundred_set(backend: Backend) {
    open_session_bytes(backend, IdSet::Hundred).await;
}

async fn open_session_bytes_thousand_set(backend: Backend) {
    open_session_bytes(backend, IdSet::Thousand).await;
}

/// Log in and select alpha on a fresh client; the client then leaves the gate.
async fn select_and_leave(gate: &mut Gate, id: u32, user: &str) -> i32 {
    gate.open(id).await;
    assert_reply(
        &gate.login(id, user, "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    let ok = gate.select(id, "alpha").await;
    assert_eq!(ok.kind(), Some(MsgKind::SmSelectServerOk), "{ok:?}");
    gate.close(id).await;
    ok.header.recog
}

async fn duplicate_login_closes_the_old_session(backend: Backend) {
    let Some(db) = Db::new(backend).await else {
        return;
    };
    let srv = start(game_config(&db, IdSet::Hundred)).await;
    let mut m2 = GameServer::connect(&srv, IdSet::Hundred).await;
    m2.report("alpha", 0, 0).await;
    let mut gate = Gate::connect(srv.local_addr(), Dialect::Delphi).await;
    let user = db.account("dan");
    gate.open(9).await;
    gate.register(9, &user, "pw1234").await;
    let sid = select_and_leave(&mut gate, 1, &user).await;
    assert!(m2.frame().await.starts_with(&format!("100/{user}/{sid}/")));
    // The player is in the game; the session outlives the gate client.
    assert_eq!(srv.session_account(sid).as_deref(), Some(user.as_str()));

    gate.open(2).await;
    assert_reply(
        &gate.login(2, &user, "pw1234").await,
        MsgKind::SmPasswdFail,
        code::ALREADY_ONLINE,
    );
    assert_eq!(m2.frame().await, format!("101/{user}/{sid}"));
    assert_eq!(srv.session_account(sid), None);
    // The retry gets in.
    assert_reply(
        &gate.login(2, &user, "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
}

async fn soft_out_frees_the_account(backend: Backend) {
    let Some(db) = Db::new(backend).await else {
        return;
    };
    let srv = start(game_config(&db, IdSet::Thousand)).await;
    let mut m2 = GameServer::connect(&srv, IdSet::Thousand).await;
    let mut dbs = GameServer::connect(&srv, IdSet::Thousand).await;
    m2.report("alpha", 0, 0).await;
    dbs.report("alpha", 99, 0).await;
    let mut gate = Gate::connect(srv.local_addr(), Dialect::Delphi).await;
    let user = db.account("eve");
    gate.open(9).await;
    gate.register(9, &user, "pw1234").await;
    let sid = select_and_leave(&mut gate, 1, &user).await;
    m2.frame().await;
    dbs.frame().await;
    // A wrong account does not end someone else's session.
    m2.write(format!("(1020/someone/{sid})").as_bytes()).await;
    m2.write(format!("(1020/{user}/{sid})").as_bytes()).await;
    assert_eq!(m2.frame().await, format!("1010/{user}/{sid}"));
    assert_eq!(dbs.frame().await, format!("1010/{user}/{sid}"));
    assert_eq!(srv.session_account(sid), None);
    gate.open(2).await;
    assert_reply(
        &gate.login(2, &user, "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_outside_allow_are_closed_unread() {
    let db = Db::new(Backend::Sqlite).await.unwrap();
    let mut c = game_config(&db, IdSet::Hundred);
    c.game_servers.allow = vec!["10.0.0.0/8".parse().unwrap()];
    let srv = start(c).await;
    let mut gs = GameServer::connect(&srv, IdSet::Hundred).await;
    let _ = gs.stream.write_all(b"(103/alpha/0/5)").await;
    assert!(gs.closed_by_server().await);
    assert!(srv.game_servers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_torture() {
    let db = Db::new(Backend::Sqlite).await.unwrap();
    let srv = start(game_config(&db, IdSet::Hundred)).await;
    let mut a = GameServer::connect(&srv, IdSet::Hundred).await;
    let mut b = GameServer::connect(&srv, IdSet::Hundred).await;
    // Split byte by byte.
    for byte in b"(103/alpha/0/4)" {
        a.write(&[*byte]).await;
        a.stream.flush().await.unwrap();
    }
    assert_eq!(a.keepalive().await.0, 4);
    // Many per write, with junk, a malformed ident, bad fields and an unknown ident between.
    let gbk_name = mir2_proto::text::gbk_encode("(103/传奇/0/2)").unwrap();
    let mut burst = b"junk\r\n(abc/1)(103/alpha/x/y)(555/1)(104/9)".to_vec();
    burst.extend_from_slice(&gbk_name);
    burst.extend_from_slice(b"\xff\xfe(103/alpha/0/6)");
    b.write(&burst).await;
    assert_eq!(b.keepalive().await.0, 4 + 2);
    assert_eq!(b.keepalive().await.0, 4 + 6, "renamed to alpha");
    // Over-long: that connection is closed, the other is untouched.
    let long = format!("(103/{})", "x".repeat(300));
    b.write(long.as_bytes()).await;
    assert!(b.closed_by_server().await);
    assert_eq!(a.report("alpha", 0, 5).await.0, 5);
    let views = srv.game_servers();
    assert_eq!(views.len(), 1, "{views:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_times_out_and_leaves_counts_and_status() {
    let db = Db::new(Backend::Sqlite).await.unwrap();
    let mut c = game_config(&db, IdSet::Hundred);
    c.game_servers.keepalive_timeout_secs = 1;
    let srv = start(c).await;
    let mut gate = Gate::connect(srv.local_addr(), Dialect::Delphi).await;
    let (user, other) = (db.account("fay"), db.account("gus"));
    gate.open(1).await;
    gate.register(1, &user, "pw1234").await;
    gate.open(2).await;
    gate.register(2, &other, "pw1234").await;

    // alpha holds 10: the silent server alone puts it above the maximum.
    let mut silent = GameServer::connect(&srv, IdSet::Hundred).await;
    let mut live = GameServer::connect(&srv, IdSet::Hundred).await;
    assert_eq!(silent.report("alpha", 0, 11).await.0, 11);
    assert_eq!(live.report("alpha", 1, 2).await.0, 13);
    assert_eq!(statuses(&gate.login(1, &user, "pw1234").await), ["4", "0"]);
    assert_reply(&gate.select(1, "alpha").await, MsgKind::SmStartFail, 0);

    // The live server keeps reporting; the total drops the silent one once
    // it has been quiet for the timeout.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if live.report("alpha", 1, 2).await.0 == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the silent server never timed out"
        );
    }
    let views = srv.game_servers();
    assert!(
        views
            .iter()
            .any(|v| v.index == 0 && v.online == 11 && v.timed_out),
        "shown, as timed out: {views:?}"
    );
    assert!(
        views.iter().any(|v| v.index == 1 && !v.timed_out),
        "{views:?}"
    );
    assert_eq!(statuses(&gate.login(1, &user, "pw1234").await), ["1", "0"]);
    let ok = gate.select(1, "alpha").await;
    assert_eq!(ok.kind(), Some(MsgKind::SmSelectServerOk), "{ok:?}");

    // With every alpha server silent, alpha is shown as down (0).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !srv.game_servers().iter().all(|v| v.timed_out) {
        assert!(Instant::now() < deadline, "the live server never timed out");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(statuses(&gate.login(2, &other, "pw1234").await), ["0", "0"]);
    // A report brings it back.
    assert_eq!(silent.report("alpha", 0, 3).await.0, 3);
    assert_eq!(statuses(&gate.login(2, &other, "pw1234").await), ["1", "0"]);
}

/// The `ip/port` of an SM_SELECTSERVER_OK body `ip/port/sessionId`.
fn selgate_of(r: &common::Reply) -> String {
    assert_eq!(r.kind(), Some(MsgKind::SmSelectServerOk), "{r:?}");
    let body = r.body_text();
    let (addr, _sid) = body.rsplit_once('/').expect("ip/port/sessionId");
    addr.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_pick_selgates_by_gate_and_public_addr_keeps_the_port() {
    let db = Db::new(Backend::Sqlite).await.unwrap();
    let mut c = config(&db);
    let routed: IpAddr = "127.0.0.2".parse().unwrap();
    c.allow_gates = vec!["127.0.0.0/8".parse().unwrap()];
    // alpha's own SelGates are 127.0.0.1:7100 and :7101 (tests/common).
    c.servers[0].public_addr = "203.0.113.9".into();
    c.routes = vec![AddrRoute {
        gate: routed,
        public: "198.51.100.1".into(),
        server: "alpha".into(),
        selgates: vec![
            "10.1.1.1:7000".parse().unwrap(),
            "*10.1.1.9:7000".parse().unwrap(),
            "10.1.1.2:7001".parse().unwrap(),
        ],
    }];
    let srv = start(c).await;
    let mut plain = Gate::connect(srv.local_addr(), Dialect::Delphi).await;
    let mut via = Gate::connect_from(srv.local_addr(), routed, Dialect::Delphi).await;
    let (a, b) = (db.account("gil"), db.account("hal"));
    plain.open(1).await;
    plain.register(1, &a, "pw1234").await;
    assert_reply(
        &plain.login(1, &a, "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    via.open(1).await;
    via.register(1, &b, "pw1234").await;
    assert_reply(
        &via.login(1, &b, "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );

    // Interleaved: each side's round-robin is its own.
    let mut got_plain = Vec::new();
    let mut got_via = Vec::new();
    for _ in 0..3 {
        got_plain.push(selgate_of(&plain.select(1, "alpha").await));
        got_via.push(selgate_of(&via.select(1, "alpha").await));
    }
    assert_eq!(
        got_plain,
        ["203.0.113.9/7100", "203.0.113.9/7101", "203.0.113.9/7100"],
        "the server's own SelGates, IP replaced by public_addr"
    );
    assert_eq!(
        got_via,
        ["10.1.1.1/7000", "10.1.1.2/7001", "10.1.1.1/7000"],
        "the route's enabled SelGates, as written"
    );
    // The route is for alpha only: 传奇 through the same gate is the server's own.
    assert_eq!(selgate_of(&via.select(1, "传奇").await), "127.0.0.2/7200");
}
