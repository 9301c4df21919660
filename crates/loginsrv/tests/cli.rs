//! The `loginsrv` binary: config errors exit 2 naming the key,
//! `--print-config`, and a confirmed registration surviving `kill -9`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{assert_reply, Gate};
use mir2_proto::ids::MsgKind;
use mir2_proto::Dialect;
use testkit::process::Spawned;

fn loginsrv() -> Command {
    Command::new(env!("CARGO_BIN_EXE_loginsrv"))
}

#[test]
fn print_config_shows_defaults_and_overrides() {
    let out = loginsrv()
        .args([
            "--print-config",
            "--listen",
            "127.0.0.1:5511",
            "--database",
            "/tmp/x.db",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("listen = \"127.0.0.1:5511\""), "{text}");
    assert!(text.contains("database = \"/tmp/x.db\""), "{text}");
    assert!(text.contains("argon2_m_kib = 19456"), "{text}");
    assert!(text.contains("[[servers]]"), "{text}");
    // The printed config is itself a valid config file.
    loginsrv::Config::from_toml(&text).unwrap();
}

#[test]
fn bad_config_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (body, key) in [
        ("[security]\nlockout_secs = 0\n", "security.lockout_secs"),
        ("allow_gates = [\"not-a-net\"]\n", "allow_gates"),
        ("[ids]\nCM_IDPASSWORD = 2002\n", "ids.CM_IDPASSWORD"),
        (
            "[security]\nargon2_m_kib = 4294967295\n",
            "security.argon2_m_kib",
        ),
        (
            "[[servers]]\nname = \"x\"\nselgates = []\n",
            "servers[0].selgates",
        ),
        (
            "[[servers]]\nname = \"x\"\nselgates = [\"*1.2.3.4:7100\"]\n",
            "servers[0].selgates",
        ),
        (
            "[[servers]]\nname = \"x\"\nselgates = [\"1.2.3.4:7100\"]\npublic_addr = \"x.example\"\n",
            "servers[0].public_addr",
        ),
        ("[game_servers]\nlisten = \"nowhere\"\n", "game_servers.listen"),
        ("[game_servers]\nid_set = \"7\"\n", "game_servers.id_set"),
        (
            "[game_servers]\nkeepalive_timeout_secs = 0\n",
            "game_servers.keepalive_timeout_secs",
        ),
        ("[game_servers]\nallow = []\n", "game_servers.allow"),
        (
            "[[servers]]\nname = \"x\"\nselgates = [\"1.2.3.4:7100\"]\n\
             [[routes]]\ngate = \"10.0.0.5\"\nserver = \"y\"\nselgates = [\"1.2.3.4:7100\"]\n",
            "routes[0].server",
        ),
        (
            "[[servers]]\nname = \"x\"\nselgates = [\"1.2.3.4:7100\"]\n\
             [[routes]]\ngate = \"10.0.0.5\"\nserver = \"x\"\nselgates = [\"1.2.3.4\"]\n",
            "routes[0].selgates",
        ),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, body).unwrap();
        let out = loginsrv().arg("--config").arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{body}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{body}: {err}");
    }
    let out = loginsrv()
        .args(["--config", "/nonexistent/loginsrv.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn runtime_errors_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("loginsrv.toml");
    std::fs::write(&cfg, "[security]\nargon2_m_kib = 8\nargon2_t = 1\n").unwrap();
    // The database cannot be created: its directory does not exist.
    let missing = dir.path().join("no-such-dir").join("accounts.db");
    let out = loginsrv()
        .arg("--config")
        .arg(&cfg)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--database",
        ])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // The listen address is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = loginsrv()
        .arg("--config")
        .arg(&cfg)
        .arg("--listen")
        .arg(taken.local_addr().unwrap().to_string())
        .arg("--database")
        .arg(dir.path().join("accounts.db"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("binding"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_registration_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("accounts.db");
    let cfg = dir.path().join("loginsrv.toml");
    std::fs::write(&cfg, "[security]\nargon2_m_kib = 8\nargon2_t = 1\n").unwrap();
    let mut cmd = loginsrv();
    cmd.arg("--config")
        .arg(&cfg)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--database",
        ])
        .arg(&db)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let mut server = Spawned::logs(cmd);
    // The startup log line names the bound address.
    let (server, addr) = tokio::task::spawn_blocking(move || {
        let addr: std::net::SocketAddr = server.wait_for("listening line", |line| {
            let rest = line.split("local_addr=").nth(1)?;
            Some(rest.split_whitespace().next()?.parse().unwrap())
        });
        (server, addr)
    })
    .await
    .unwrap();

    let mut gate = Gate::connect(addr, Dialect::Delphi).await;
    gate.open(1).await;
    assert_reply(
        &gate.register(1, "durable", "pw1234").await,
        MsgKind::SmNewIdSuccess,
        0,
    );
    // SIGKILL right after the confirmation: no chance to flush anything.
    let lines = server.kill();
    assert!(
        lines.iter().any(|l| l.contains("account created")),
        "{lines:#?}"
    );

    let mut config = common::config(&common::Db::new(common::Backend::Sqlite).await.unwrap());
    config.database = db.display().to_string();
    let server = common::start(config).await;
    let mut gate = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    gate.open(1).await;
    assert_reply(
        &gate.login(1, "durable", "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    server.shutdown().await;
}

/// The summary line: logins and failures per interval and since start, gates
/// connected, in plain text (no colour codes) when the log is not a terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_line_counts_logins_failures_and_gates_without_colour() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("accounts.db");
    let cfg = dir.path().join("loginsrv.toml");
    std::fs::write(
        &cfg,
        "stats_log_secs = 1\n[security]\nargon2_m_kib = 8\nargon2_t = 1\n",
    )
    .unwrap();
    let mut cmd = loginsrv();
    cmd.arg("--config")
        .arg(&cfg)
        .args(["--listen", "127.0.0.1:0", "--admin", "", "--database"])
        .arg(&db)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR");
    let server = Spawned::logs(cmd);
    let (server, addr) = tokio::task::spawn_blocking(move || {
        let mut server = server;
        let addr: std::net::SocketAddr = server.wait_for("listening line", |line| {
            let rest = line.split("local_addr=").nth(1)?;
            Some(rest.split_whitespace().next()?.parse().unwrap())
        });
        (server, addr)
    })
    .await
    .unwrap();
    let mut gate = Gate::connect(addr, Dialect::Delphi).await;
    gate.open(1).await;
    assert_reply(
        &gate.register(1, "summed", "pw1234").await,
        MsgKind::SmNewIdSuccess,
        0,
    );
    assert_reply(
        &gate.login(1, "summed", "wrong").await,
        MsgKind::SmPasswdFail,
        loginsrv::code::WRONG_PASSWORD,
    );
    assert_reply(
        &gate.login(1, "summed", "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    let mut server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.wait_for("a summary with both logins", |line| {
            (line.contains(" summary ")
                && line.contains("total_logins=1")
                && line.contains("total_login_failures=1"))
            .then_some(())
        });
        server
    })
    .await
    .unwrap();
    let line = server.seen.last().unwrap().clone();
    assert!(
        line.contains("gates=1") && line.contains("online=1"),
        "{line}"
    );
    assert!(line.contains("interval_secs=1"), "{line}");
    assert!(
        server.seen.iter().all(|l| !l.contains('\x1b')),
        "colour codes in a log that is no terminal: {:?}",
        server.seen
    );
    server.terminate();
    assert_eq!(server.exit_status().code(), Some(0));
}
