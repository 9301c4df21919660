//! The whole login path: game client → real logingate → real LoginSrv, all
//! in-process on loopback, in each gate dialect; and the gate's embedded
//! LoginSrv (no `[server] addr`) with its SQLite file surviving a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::client::Client;
use e2e::{gate_config, linked_gate, loginsrv_config};
use logingate::config::Dialect;
use loginsrv::code;
use mir2_proto::ids::MsgKind;
use testkit::db::{Backend, Db};
use testkit::gate::assert_reply;

async fn full_flow(backend: Backend, dialect: Dialect) {
    let Some(db) = Db::new(backend).await else {
        return;
    };
    let server = loginsrv::start(loginsrv_config(&db))
        .await
        .expect("LoginSrv starts");
    let (gate, addr) = linked_gate(gate_config(Some(server.local_addr()), dialect)).await;
    let user = db.account("gate");

    let mut a = Client::connect(addr).await;
    a.send(MsgKind::CmProtocol, 20_020_522, &[]).await;
    assert_reply(&a.reply().await, MsgKind::SmCertificationSuccess, 0);
    assert_reply(
        &a.register(&user, "pw1234").await,
        MsgKind::SmNewIdSuccess,
        0,
    );
    assert_reply(
        &a.register(&user, "pw1234").await,
        MsgKind::SmNewIdFail,
        code::NEWID_EXISTS,
    );
    assert_reply(
        &a.login(&user, "bad").await,
        MsgKind::SmPasswdFail,
        code::WRONG_PASSWORD,
    );
    assert_reply(
        &a.login(&db.account("none"), "x").await,
        MsgKind::SmPasswdFail,
        code::NO_ACCOUNT,
    );
    let ok = a.login(&user, "pw1234").await;
    assert_reply(&ok, MsgKind::SmPassOkSelectServer, 0);
    assert_eq!(ok.body_text(), "alpha/1/传奇/1/");

    // A second client logging in to the same account: told -3, and the
    // first client's connection is closed by the gate on the LoginSrv's kick.
    let mut b = Client::connect(addr).await;
    assert_reply(
        &b.login(&user, "pw1234").await,
        MsgKind::SmPasswdFail,
        code::ALREADY_ONLINE,
    );
    assert!(a.try_reply().await.is_none(), "first client kicked");
    let mut ok = false;
    for _ in 0..50 {
        let r = b.login(&user, "pw1234").await;
        if r.kind() == Some(MsgKind::SmPassOkSelectServer) {
            ok = true;
            break;
        }
        assert_reply(&r, MsgKind::SmPasswdFail, code::ALREADY_ONLINE);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "retry after the kick logs in");
    let sel = b.select("alpha").await;
    assert_eq!(sel.kind(), Some(MsgKind::SmSelectServerOk));
    let sid = sel.header.recog;
    assert_eq!(sel.body_text(), format!("127.0.0.1/7100/{sid}"));
    assert_eq!(server.session_account(sid), Some(user.to_ascii_lowercase()));

    gate.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_delphi_gate() {
    full_flow(Backend::Sqlite, Dialect::Delphi).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wemade_gate() {
    full_flow(Backend::Sqlite, Dialect::Wemade).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_happym2_gate() {
    full_flow(Backend::Sqlite, Dialect::HappyM2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_delphi_gate() {
    full_flow(Backend::Postgres, Dialect::Delphi).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_loginsrv_persists_in_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("state");
    let mut gc = gate_config(None, Dialect::Wemade);
    gc.data_dir = data_dir.clone();
    // Test-speed Argon2 through the [embedded] pass-through table.
    gc.embedded = toml::from_str("[security]\nargon2_m_kib = 8\nargon2_t = 1\n").unwrap();

    let (gate, addr) = linked_gate(gc.clone()).await;
    assert!(
        data_dir.join("accounts.db").exists(),
        "database created in data_dir"
    );
    let mut c = Client::connect(addr).await;
    assert_reply(
        &c.register("embed1", "pw1234").await,
        MsgKind::SmNewIdSuccess,
        0,
    );
    let ok = c.login("embed1", "pw1234").await;
    assert_reply(&ok, MsgKind::SmPassOkSelectServer, 0);
    assert_eq!(ok.body_text(), "demo/1/");
    let sel = c.select("demo").await;
    assert!(
        sel.body_text().starts_with("127.0.0.1/7100/"),
        "{}",
        sel.body_text()
    );
    drop(c);
    gate.shutdown().await;

    let (gate, addr) = linked_gate(gc).await;
    let mut c = Client::connect(addr).await;
    assert_reply(
        &c.login("embed1", "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    gate.shutdown().await;
}
