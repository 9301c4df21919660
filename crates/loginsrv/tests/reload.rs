//! Live reload of the real binary (SIGHUP and `POST /api/reload`), and
//! `--check-config`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use common::{assert_reply, Backend, Db, Gate};
use mir2_proto::ids::MsgKind;
use mir2_proto::Dialect;
use testkit::http::post;
use testkit::process::Spawned;

const BIN: &str = env!("CARGO_BIN_EXE_loginsrv");

fn toml(db: &Db, servers: &str) -> String {
    let base = testkit::db::loginsrv_toml(db);
    let cut = base.find("[[servers]]").unwrap();
    format!(
        "{}[admin]\nlisten = \"127.0.0.1:0\"\n\n{servers}",
        &base[..cut]
    )
}

/// The binary on `config`; returns it with its gate and console addresses.
async fn start(config: &Path) -> (Spawned, SocketAddr, SocketAddr) {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let mut srv = Spawned::logs(cmd);
    tokio::task::spawn_blocking(move || {
        let field = |line: &str, name: &str| -> SocketAddr {
            let start = line.find(name).unwrap() + name.len();
            let end = line[start..].find(' ').map_or(line.len(), |e| start + e);
            line[start..end].parse().unwrap()
        };
        let gates = srv.wait_for("the gate listener", |l| {
            l.contains("listening for gates")
                .then(|| field(l, "local_addr="))
        });
        let admin = srv.wait_for("the console", |l| {
            l.contains("console listening").then(|| field(l, "admin="))
        });
        (srv, gates, admin)
    })
    .await
    .unwrap()
}

async fn hangup(srv: Spawned) -> (Spawned, String) {
    let sent = Command::new("kill")
        .args(["-HUP", &srv.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let mut srv = srv;
    tokio::task::spawn_blocking(move || {
        let line = srv.wait_for("the reload's outcome", |l| {
            (l.contains("config reloaded") || l.contains("config reload refused"))
                .then(|| l.to_owned())
        });
        (srv, line)
    })
    .await
    .unwrap()
}

/// The server list a fresh login on client `id` is offered.
async fn server_list(gate: &mut Gate, id: u32, user: &str) -> String {
    gate.open(id).await;
    let ok = gate.login(id, user, "pw1234").await;
    assert_reply(&ok, MsgKind::SmPassOkSelectServer, ok.header.recog);
    let list = ok.body_text();
    gate.close(id).await;
    list
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_replaces_the_server_list_and_a_bad_file_changes_nothing() {
    let db = Db::new(Backend::Sqlite).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("loginsrv.toml");
    let alpha = "[[servers]]\nname = \"alpha\"\nselgates = [\"127.0.0.1:7100\"]\n";
    std::fs::write(&file, toml(&db, alpha)).unwrap();
    let (srv, gates, admin) = start(&file).await;
    let mut gate = Gate::connect(gates, Dialect::Delphi).await;
    let user = db.account("reload");
    gate.open(1).await;
    assert_reply(
        &gate.register(1, &user, "pw1234").await,
        MsgKind::SmNewIdSuccess,
        0,
    );
    gate.close(1).await;
    let list = server_list(&mut gate, 2, &user).await;
    assert!(list.contains("alpha/") && !list.contains("beta/"), "{list}");

    let both = format!(
        "{alpha}\n[[servers]]\nname = \"beta\"\nselgates = [\"127.0.0.1:7200\"]\nmax_users = 5\n"
    );
    std::fs::write(&file, toml(&db, &both)).unwrap();
    let (srv, line) = hangup(srv).await;
    assert!(line.contains("config reloaded"), "{line}");
    let list = server_list(&mut gate, 3, &user).await;
    assert!(list.contains("alpha/") && list.contains("beta/"), "{list}");

    let bad = format!("mystery = 1\n{}", toml(&db, alpha));
    std::fs::write(&file, &bad).unwrap();
    let (srv, line) = hangup(srv).await;
    assert!(line.contains("config reload refused"), "{line}");
    assert!(line.contains("mystery"), "{line}");
    let list = server_list(&mut gate, 4, &user).await;
    assert!(
        list.contains("beta/"),
        "the refused file changed nothing: {list}"
    );

    // The console: a restart-only key is reported, the server list applied.
    let moved = toml(&db, alpha).replace(
        "listen = \"127.0.0.1:0\"\ndatabase",
        "listen = \"127.0.0.1:1\"\ndatabase",
    );
    std::fs::write(&file, moved).unwrap();
    let r = post(admin, "/api/reload", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let outcome = &r.json()["config"];
    assert_eq!(
        outcome["restart_required"],
        serde_json::json!(["listen"]),
        "{outcome}"
    );
    assert_eq!(
        outcome["applied"],
        serde_json::json!(["servers"]),
        "{outcome}"
    );
    let list = server_list(&mut gate, 5, &user).await;
    assert!(!list.contains("beta/"), "{list}");
    std::fs::write(&file, &bad).unwrap();
    let r = post(admin, "/api/reload", "").await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.json()["config"]["error"]["key"], "mystery");

    srv.terminate();
    let mut srv = srv;
    let status = tokio::task::spawn_blocking(move || srv.exit_status())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn check_config_exits_0_for_a_good_file_and_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("loginsrv.toml");
    std::fs::write(&file, "max_gates = 3\n").unwrap();
    testkit::process::assert_check_config(BIN, &file, None);
    for (text, key) in [
        ("max_gates = 0\n", "max_gates"),
        (
            "[security]\nmin_password_len = 99\n",
            "security.min_password_len",
        ),
        ("nonsense = true\n", "nonsense"),
    ] {
        std::fs::write(&file, text).unwrap();
        testkit::process::assert_check_config(BIN, &file, Some(key));
    }
}
