//! `logingate import-ini`: sample files of both formats (a GBK one among
//! them) through the real binary, the output parsed by the gate's own loader,
//! validated, and a gate started from it against a scripted LoginSrv.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;
use logingate::app::Gate;
use logingate::config::{Config, Dialect, Role};
use tokio::io::AsyncWriteExt;

const BIN: &str = env!("CARGO_BIN_EXE_logingate");

/// Runs `import-ini` on `bytes` written to a file; returns the TOML.
fn import(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Config.ini");
    std::fs::write(&file, bytes).unwrap();
    let out = Command::new(BIN)
        .arg("import-ini")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 TOML")
}

/// The imported text as the gate loads it, validated.
fn load(toml: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gate.toml");
    std::fs::write(&file, toml).unwrap();
    let c = Config::load(&file).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    c.validate().unwrap_or_else(|e| panic!("{e}\n{toml}"));
    c
}

/// Starts the imported gate, checks its open, data and close frames.
async fn runs_against(srv: &Srv, mut config: Config, open_letter: char) {
    // Tests run side by side: the console on a free port, not the default 7001.
    config.admin.listen = "127.0.0.1:0".into();
    let gate = Gate::start(config).await.expect("imported config starts");
    let mut link = srv.accept().await;
    assert!(gate.wait_link_up(STEP).await);
    let mut client = connect(gate_addr(&gate)).await;
    let open = link.text().await;
    let id = open_id(&open);
    assert_eq!(open, format!("%{open_letter}{id}/127.0.0.1/127.0.0.1$"));
    client.write_all(LOGIN).await.unwrap();
    assert_eq!(
        link.text().await,
        format!("%A{id}/{}$", String::from_utf8_lossy(LOGIN))
    );
    drop(client);
    assert_eq!(link.text().await, format!("%X{id}$"));
    gate.shutdown().await;
}

#[tokio::test]
async fn a_delphi_logingate_config_ini_starts_a_gate_with_its_values() {
    let srv = Srv::bind().await;
    let ini = format!(
        "[LoginGate]\r\nTitle=Mir\r\nServerAddr=127.0.0.1\r\nServerPort={}\r\n\
         GateAddr=127.0.0.1\r\nGatePort=0\r\nShowLogLevel=3\r\nBlockMethod=0\r\n\
         MaxConnOfIPaddr=50\r\nKeepConnectTimeOut=30000\r\nAttackLevel=2\r\n\
         DynamicIPDisMode=0\r\nSkin=blue\r\n",
        srv.addr().port()
    );
    let toml = import(ini.as_bytes());
    assert!(
        toml.contains("# ServerAddr=127.0.0.1, ServerPort="),
        "{toml}"
    );
    assert!(toml.contains("Skin=blue: unknown key"), "{toml}");
    assert!(toml.contains("Title=Mir:"), "{toml}");
    let c = load(&toml);
    assert_eq!(c.role, Role::Login);
    assert_eq!(c.server.addr, vec![srv.addr()]);
    assert_eq!(c.server.dialect, Dialect::Delphi);
    assert_eq!(c.gate.listen, vec!["127.0.0.1:0".parse().unwrap()]);
    assert_eq!(c.gate.max_conn_per_ip, 100, "MaxConnOfIPaddr × AttackLevel");
    assert_eq!(c.gate.conn_rate_per_ip, 20);
    assert_eq!(c.gate.idle_timeout_secs, 60, "30 000 ms × 2");
    assert_eq!(c.gate.max_packet_bytes, 720);
    assert_eq!(c.block_list_path(), None, "BlockMethod 0 keeps no list");
    runs_against(&srv, c, 'O').await;
}

#[tokio::test]
async fn a_gbk_selgate_config_ini_starts_a_selgate() {
    let srv = Srv::bind().await;
    // "Title=传奇选人网关" in GBK: not valid UTF-8.
    let (title, _, unmappable) = encoding_rs::GBK.encode("传奇选人网关");
    assert!(!unmappable);
    let mut ini = b"[SelGate]\r\nTitle=".to_vec();
    ini.extend_from_slice(&title);
    ini.extend_from_slice(
        format!(
            "\r\nServerAddr=127.0.0.1\r\nServerPort={}\r\nGateAddr=127.0.0.1\r\nGatePort=0\r\n\
             BlockMethod=2\r\nDynamicIPDisMode=1\r\n",
            srv.addr().port()
        )
        .as_bytes(),
    );
    assert!(std::str::from_utf8(&ini).is_err());
    let toml = import(&ini);
    assert!(
        toml.contains("Title=传奇选人网关"),
        "decoded as GBK:\n{toml}"
    );
    assert!(
        toml.contains("# gate_addr = "),
        "DynamicIPDisMode note:\n{toml}"
    );
    let dir = tempfile::tempdir().unwrap();
    // The permanent block list is kept beside the config, as the Delphi gate did.
    let toml = toml.replace(
        "block_list_file = \"BlockIPList.txt\"",
        &format!(
            "block_list_file = {:?}",
            dir.path().join("BlockIPList.txt").to_str().unwrap()
        ),
    );
    let c = load(&toml);
    assert_eq!(c.role, Role::SelGate);
    assert_eq!(c.server.addr, vec![srv.addr()]);
    // The classic SelGate's defaults: AttackLevel 1.
    assert_eq!(c.gate.max_conn_per_ip, 10);
    assert_eq!(c.gate.conn_rate_per_ip, 5);
    assert_eq!(c.gate.idle_timeout_secs, 60);
    assert_eq!(c.gate.max_packet_bytes, 100);
    assert!(c.block_list_path().is_some());
    // Keys the file does not set take the SelGate defaults.
    assert_eq!(
        c.gate.max_packets_per_sec,
        Role::SelGate.defaults().gate.max_packets_per_sec
    );
    // CM_QUERYCHR-sized messages pass: LOGIN is 31 bytes.
    runs_against(&srv, c, 'O').await;
}

#[tokio::test]
async fn an_openmir2_config_conf_starts_a_gate_with_its_values() {
    let srv = Srv::bind().await;
    let conf = format!(
        "[LoginGate]\nCount=1\nServerAddr1=127.0.0.1\nServerPort1={}\nGateAddr1=127.0.0.1\nGatePort1=0\n\
         [Integer]\nClientTimeOutTime=30000\nMaxConnectOfIP=7\nCheckNewIDOfIP=5\n\
         NomClientPacketSize=600\nMaxClientPacketCount=2\n\
         [Switch]\nKickOverSpeed=1\nDefenceCCPacket=1\nCheckNullSession=1\n\
         [Method]\nBlockIPMethod=1\n",
        srv.addr().port()
    );
    let toml = import(conf.as_bytes());
    assert!(toml.contains("MaxClientPacketCount=2:"), "{toml}");
    assert!(toml.contains("# MaxConnectOfIP=7"), "{toml}");
    let c = load(&toml);
    assert_eq!(c.role, Role::Login);
    assert_eq!(c.server.addr, vec![srv.addr()]);
    assert_eq!(c.gate.idle_timeout_secs, 30);
    assert_eq!(c.gate.max_conn_per_ip, 7);
    assert_eq!(c.gate.max_packet_bytes, 600);
    assert_eq!(c.gate.new_accounts_per_ip_per_hour, 5);
    assert_eq!(
        c.gate.punish,
        logingate::punish::PunishConfig::all(logingate::punish::Punishment::TempBlock)
    );
    runs_against(&srv, c, 'O').await;
}

#[test]
fn unreadable_and_foreign_files_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.ini");
    let big = dir.path().join("big.ini");
    let mut text = b"[LoginGate]\n".to_vec();
    text.resize(logingate::import_ini::MAX_INI_BYTES + 1, b';');
    std::fs::write(&big, &text).unwrap();
    let foreign = dir.path().join("other.ini");
    std::fs::write(&foreign, "[Desktop]\nIcon=x\n").unwrap();
    for (file, want) in [
        (missing.as_path(), "cannot read"),
        (dir.path(), "cannot read"),
        (big.as_path(), "larger than"),
        (foreign.as_path(), "[LoginGate]"),
    ] {
        let out = Command::new(BIN)
            .arg("import-ini")
            .arg(file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", file.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{}: {err}", file.display());
        assert!(out.stdout.is_empty());
    }
}
