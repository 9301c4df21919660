//! Two `loginsrv` processes on one PostgreSQL schema as one service, each with
//! a scripted gate linked to it and a game-server port: logins through
//! either, a duplicate login across instances (−3, and the first client
//! kicked on the other instance's gate), the lockout counted across them,
//! the SS_OPENSESSION of a selection made through instance 1 reaching a
//! DBServer connected only to instance 2, a soft-out reported to instance 2
//! ending a session held by instance 1, and kill -9 of one instance: new
//! logins through the other, and its sessions gone within
//! `instance_expiry_secs`.
//!
//! Needs `DATABASE_URL` (a `postgres://` URL); skips with a message otherwise.
//! Each run has its own schema, so runs never see each other.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use bytes::BytesMut;
use common::{assert_reply, loginsrv_toml, Backend, Db, Gate, REPLY_TIMEOUT};
use loginsrv::code;
use mir2_proto::game::{GameFramer, GameKind, IdSet};
use mir2_proto::ids::MsgKind;
use mir2_proto::Dialect;
use testkit::process::Spawned;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Short, so the dead instance's rows go within the test's step.
const EXPIRY_SECS: u64 = 3;

/// A `loginsrv` process and the addresses it bound.
struct Instance {
    process: Spawned,
    gates: SocketAddr,
    game: SocketAddr,
}

fn spawn(config: &Path) -> Instance {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loginsrv"));
    cmd.arg("--config")
        .arg(config)
        .args(["--admin", "", "--log-format", "json"])
        .env("RUST_LOG", "info");
    let mut process = Spawned::logs(cmd);
    let (mut gates, mut game) = (None, None);
    process.wait_for_json("both listening lines", |v| {
        let f = &v["fields"];
        match f["message"].as_str() {
            Some("LoginSrv listening for gates") => {
                gates = f["local_addr"].as_str().map(|a| a.parse().unwrap());
            }
            Some("LoginSrv listening for game servers") => {
                game = f["addr"].as_str().map(|a| a.parse().unwrap());
            }
            _ => {}
        }
        gates.zip(game)
    });
    Instance {
        process,
        gates: gates.unwrap(),
        game: game.unwrap(),
    }
}

/// A scripted DBServer (index 99: receives every session).
struct DbServer {
    stream: TcpStream,
    framer: GameFramer,
    buf: BytesMut,
}

impl DbServer {
    async fn connect(addr: SocketAddr) -> DbServer {
        let mut s = DbServer {
            stream: TcpStream::connect(addr).await.unwrap(),
            framer: GameFramer::new(64 * 1024),
            buf: BytesMut::new(),
        };
        s.send(GameKind::ServerInfo, "alpha/99/0").await;
        let keepalive = s.next(GameKind::KeepAlive).await;
        assert_eq!(keepalive, "0");
        s
    }

    async fn send(&mut self, kind: GameKind, fields: &str) {
        let msg = format!("({}/{fields})", IdSet::Hundred.id(kind));
        self.stream
            .write_all(&mir2_proto::text::gbk_encode(&msg).unwrap())
            .await
            .unwrap();
    }

    /// The fields of the next message of `kind` (others are skipped).
    async fn next(&mut self, kind: GameKind) -> String {
        let prefix = format!("{}/", IdSet::Hundred.id(kind));
        loop {
            if let Some(f) = self.framer.next_frame(&mut self.buf).unwrap() {
                let text = mir2_proto::text::gbk_decode(&f).unwrap();
                if let Some(fields) = text.strip_prefix(&prefix) {
                    return fields.to_owned();
                }
                continue;
            }
            let n = tokio::time::timeout(REPLY_TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("a game-server message in time")
                .unwrap();
            assert!(n > 0, "LoginSrv closed the DBServer's connection");
        }
    }
}

/// Rows of the dead instance still in the database: (instances, sessions).
async fn rows_of(pool: &sqlx::PgPool, slot: i64) -> (i64, i64) {
    let instances: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM loginsrv_instances WHERE slot = $1")
            .bind(slot)
            .fetch_one(pool)
            .await
            .unwrap();
    let sessions: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM online_sessions WHERE instance_id NOT IN \
         (SELECT instance_id FROM loginsrv_instances WHERE slot <> $1)",
    )
    .bind(slot)
    .fetch_one(pool)
    .await
    .unwrap();
    (instances, sessions)
}

async fn slot_of(pool: &sqlx::PgPool, listen: SocketAddr) -> i64 {
    sqlx::query_scalar("SELECT slot FROM loginsrv_instances WHERE listen = $1")
        .bind(listen.to_string())
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_are_one_service() {
    let Some(db) = Db::new(Backend::Postgres).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("loginsrv.toml");
    let toml = loginsrv_toml(&db).replacen(
        "\n[security]",
        &format!("instance_expiry_secs = {EXPIRY_SECS}\n\n[security]"),
        1,
    ) + "\n[game_servers]\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(&config, toml).unwrap();
    let one = spawn(&config);
    let two = spawn(&config);
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let (slot1, slot2) = (
        slot_of(&pool, one.gates).await,
        slot_of(&pool, two.gates).await,
    );
    assert_ne!(slot1, slot2, "each instance has its own slot");

    let mut g1 = Gate::connect(one.gates, Dialect::Delphi).await;
    let mut g2 = Gate::connect(two.gates, Dialect::Delphi).await;
    let mut dbserver = DbServer::connect(two.game).await;
    let [dup, locked, player, survivor] = ["dup", "lock", "play", "surv"].map(|a| db.account(a));
    for (id, user) in [&dup, &locked, &player, &survivor].into_iter().enumerate() {
        let id = u32::try_from(id).unwrap() + 1;
        g1.open(id).await;
        assert_reply(
            &g1.register(id, user, "pw1234").await,
            MsgKind::SmNewIdSuccess,
            0,
        );
    }

    // Logins through either instance; a duplicate across them is −3, and the
    // first client is kicked on instance 1's gate.
    assert_reply(
        &g1.login(1, &dup, "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    g2.open(11).await;
    assert_reply(
        &g2.login(11, &dup, "pw1234").await,
        MsgKind::SmPasswdFail,
        code::ALREADY_ONLINE,
    );
    g1.kicked(1).await;
    g1.close(1).await;
    assert_reply(
        &g2.login(11, &dup, "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );

    // The lockout (3 failures in the test config) counts guesses on both.
    g2.open(12).await;
    assert_reply(
        &g1.login(2, &locked, "wrong1").await,
        MsgKind::SmPasswdFail,
        code::WRONG_PASSWORD,
    );
    assert_reply(
        &g2.login(12, &locked, "wrong2").await,
        MsgKind::SmPasswdFail,
        code::WRONG_PASSWORD,
    );
    assert_reply(
        &g1.login(2, &locked, "wrong3").await,
        MsgKind::SmPasswdFail,
        code::LOCKED,
    );
    assert_reply(
        &g2.login(12, &locked, "pw1234").await,
        MsgKind::SmPasswdFail,
        code::LOCKED,
    );

    // A selection through instance 1 reaches the DBServer on instance 2,
    // with the session id the client got.
    assert_reply(
        &g1.login(3, &player, "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    let selected = g1.select(3, "alpha").await;
    assert_eq!(
        selected.kind(),
        Some(MsgKind::SmSelectServerOk),
        "{selected:?}"
    );
    let session = selected.header.recog;
    assert_eq!(
        i64::from(session) % 64,
        slot1,
        "the id carries instance 1's slot"
    );
    let open = dbserver.next(GameKind::OpenSession).await;
    assert_eq!(
        open,
        format!("{}/{session}/1/5/192.0.2.7", player.to_ascii_lowercase())
    );

    // The player goes on to the game; a soft-out reported to instance 2 ends
    // the session instance 1 issued, and the account may log in again.
    g1.close(3).await;
    let in_game = "SELECT COUNT(*) FROM online_sessions \
                   WHERE account_key = $1 AND token IS NULL AND session_id = $2";
    let deadline = tokio::time::Instant::now() + testkit::STEP;
    loop {
        let n: i64 = sqlx::query_scalar(in_game)
            .bind(player.to_ascii_lowercase())
            .bind(i64::from(session))
            .fetch_one(&pool)
            .await
            .unwrap();
        if n == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "login client closed in time"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    dbserver
        .send(
            GameKind::SoftOutSession,
            &format!("{}/{session}", player.to_ascii_lowercase()),
        )
        .await;
    let close = dbserver.next(GameKind::CloseSession).await;
    assert_eq!(close, format!("{}/{session}", player.to_ascii_lowercase()));
    g2.open(13).await;
    assert_reply(
        &g2.login(13, &player, "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );

    // kill -9 instance 1 while it holds a login: new logins succeed through
    // instance 2, and the dead instance's rows go within the expiry.
    assert_reply(
        &g1.login(4, &survivor, "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    assert_eq!(rows_of(&pool, slot1).await.0, 1);
    one.process.kill();
    let late = db.account("late");
    g2.open(14).await;
    assert_reply(
        &g2.register(14, &late, "pw1234").await,
        MsgKind::SmNewIdSuccess,
        0,
    );
    assert_reply(
        &g2.login(14, &late, "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    let deadline = tokio::time::Instant::now() + testkit::STEP;
    while rows_of(&pool, slot1).await != (0, 0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead instance's rows outlived instance_expiry_secs"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    g2.open(15).await;
    assert_reply(
        &g2.login(15, &survivor, "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    drop(two);
}
