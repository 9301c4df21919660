//! `loginsrv import-delphi` on Delphi files written here (GBK included): the
//! printed TOML is a config that starts, with the Delphi values in it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delphi_directory_round_trips_into_a_config_that_starts() {
    let dir = tempfile::tempdir().unwrap();
    let gbk = |s: &str| encoding_rs::GBK.encode(s).0.into_owned();
    std::fs::write(
        dir.path().join("Logsrv.ini"),
        "[Server]\r\nGateAddr=0.0.0.0\r\nGatePort=5500\r\nServerAddr=0.0.0.0\r\nServerPort=5600\r\nTestServer=TRUE\r\n[DB]\r\nIdDir=.\\DB\\\r\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("!ServerAddr.txt"),
        "; game servers\n127.0.0.1\n10.0.0.2\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("!UserLimit.txt"),
        gbk("传奇 传奇 2000\n; comment\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("!addrtable.txt"),
        gbk("传奇 一区 10.0.0.5 203.0.113.7 203.0.113.7:7100 *203.0.113.8:7100\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_loginsrv"))
        .arg("import-delphi")
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("TestServer = TRUE: no equivalent"), "{text}");
    assert!(text.contains("IdDir"), "{text}");
    assert!(text.contains("title 一区: no equivalent"), "{text}");
    let mut config = loginsrv::Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config.servers[0].name, "传奇");
    assert_eq!(config.servers[0].capacity, 2000);
    assert_eq!(config.servers[0].selgates.len(), 2);
    assert!(!config.servers[0].selgates[1].enabled);
    assert_eq!(config.routes[0].gate.to_string(), "10.0.0.5");
    assert_eq!(config.game_servers.listen, "0.0.0.0:5600");
    assert_eq!(config.game_servers.allow.len(), 2);
    // Start it on loopback ports.
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.game_servers.listen = "127.0.0.1:0".into();
    config.database = dir.path().join("accounts.db").display().to_string();
    config.security = loginsrv::SecurityConfig::test_speed();
    let srv = loginsrv::start(config)
        .await
        .expect("the imported config starts");
    assert!(srv.game_servers_addr().is_some());
    srv.shutdown().await;

    // Nothing to import: exit 2.
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_loginsrv"))
        .arg("import-delphi")
        .arg(empty.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
