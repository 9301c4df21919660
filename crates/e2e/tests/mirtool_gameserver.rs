//! `mirtool gameserver` (the binary) on a real LoginSrv's game-server port,
//! with a real gate in front: a `mirtool login` selection shows up as
//! `open …` at the double, and its soft-out comes back as `close …`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::time::Duration;

use e2e::{gate_config, linked_gate, mirtool_command};
use logingate::config::Dialect;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selection_opens_at_the_game_server_and_soft_out_closes_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = loginsrv::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database: dir.path().join("accounts.db").display().to_string(),
        security: loginsrv::SecurityConfig::test_speed(),
        ..loginsrv::Config::default()
    };
    config.game_servers.listen = "127.0.0.1:0".into();
    let srv = loginsrv::start(config).await.expect("LoginSrv starts");
    let (gate, _) = linked_gate(gate_config(Some(srv.local_addr()), Dialect::Delphi)).await;

    let mut double = mirtool_command()
        .args(["gameserver", "--loginsrv"])
        .arg(srv.game_servers_addr().unwrap().to_string())
        .args(["--name", "demo", "--index", "0", "--online", "7"])
        .args(["--soft-out-after", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mirtool gameserver runs");
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let stdout = double.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !srv
        .game_servers()
        .iter()
        .any(|v| v.name.as_deref() == Some("demo"))
    {
        assert!(tokio::time::Instant::now() < deadline, "the double reports");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(srv.game_servers()[0].online, 7);

    let addr = gate.local_addrs()[0].to_string();
    let login = tokio::task::spawn_blocking(move || {
        mirtool_command()
            .args([
                "login",
                "--addr",
                &addr,
                "--user",
                "hero1",
                "--password",
                "pw1234",
            ])
            .arg("--register")
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let out = String::from_utf8_lossy(&login.stdout).to_string();
    assert_eq!(login.status.code(), Some(0), "{out}");
    assert!(
        out.contains("demo (idle 空闲)"),
        "live status from the count: {out}"
    );
    let last = out.lines().last().unwrap_or_default();
    let sid = last.rsplit(' ').next().unwrap();

    let mut seen = Vec::new();
    let want_open = format!("open hero1 {sid} from 127.0.0.1");
    let want_close = format!("close hero1 {sid}");
    while !seen.contains(&want_close) {
        let line = tokio::time::timeout_at(deadline, lines.recv())
            .await
            .expect("lines in time")
            .expect("double still running");
        seen.push(line);
    }
    assert!(seen.contains(&want_open), "{seen:?}");
    assert_eq!(
        srv.session_account(sid.parse().unwrap()),
        None,
        "soft-out ended it"
    );
    double.kill().unwrap();
    let _ = double.wait();
    gate.shutdown().await;
    srv.shutdown().await;
}
