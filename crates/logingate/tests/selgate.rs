//! `role = "selgate"` end to end: a scripted DBServer on the link, a client
//! asking for its characters with CM_QUERYCHR, the classic SelGate bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use logingate::app::Gate;
use logingate::config::{Config, Dialect, Role};
use mir2_proto::{codec, MsgHeader};
use tokio::io::AsyncWriteExt;

/// CM_QUERYCHR: list the account's characters (body `account/sessionId`).
const CM_QUERYCHR: u16 = 100;
/// SM_QUERYCHR: the character list.
const SM_QUERYCHR: u16 = 520;

fn message(prefix: &[u8], ident: u16, recog: i32, body: &[u8]) -> Vec<u8> {
    let mut m = prefix.to_vec();
    m.extend_from_slice(&MsgHeader::new(ident, recog, 0, 0, 0).encode());
    m.extend_from_slice(&codec::encode(body));
    m.push(b'!');
    m
}

#[tokio::test]
async fn a_selgate_relays_a_character_query_to_the_dbserver() {
    let db = Srv::bind().await;
    // A SelGate config file: only the DBServer and a loopback listener.
    let text = format!(
        "role = \"selgate\"\n[gate]\nlisten = [\"127.0.0.1:0\"]\nmax_conn_per_ip = 0\nconn_rate_per_ip = 0\n\
         [server]\naddr = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        db.addr()
    );
    let config = Config::from_toml(&text, Path::new("selgate.toml")).unwrap();
    assert_eq!(config.role, Role::SelGate);
    assert_eq!(
        config.server.dialect,
        Dialect::Delphi,
        "the classic SelGate's frames"
    );
    assert_eq!(config.gate.max_packets_per_sec, 10);
    let gate = Gate::start(config).await.unwrap();
    assert_eq!(gate.role(), Role::SelGate);
    let mut link = db.accept().await;
    assert!(gate.wait_link_up(STEP).await);

    let mut client = connect(gate_addr(&gate)).await;
    let open = link.text().await;
    let id = open_id(&open);
    assert_eq!(open, format!("%O{id}/127.0.0.1/127.0.0.1$"));

    let query = message(b"#1", CM_QUERYCHR, 0, b"player01/12345");
    client.write_all(&query).await.unwrap();
    assert_eq!(
        link.text().await,
        format!("%A{id}/{}$", String::from_utf8_lossy(&query))
    );

    // One character: name/job/hair/level/sex, as the DBServer lists them.
    let chars = message(b"#", SM_QUERYCHR, 1, b"Warrior/0/1/22/0/");
    let mut reply = format!("%{id}/").into_bytes();
    reply.extend_from_slice(&chars);
    reply.push(b'$');
    link.send(&reply).await;
    assert_eq!(read_n(&mut client, chars.len()).await, chars);

    drop(client);
    assert_eq!(link.text().await, format!("%X{id}$"));
    link.expect_silence(Duration::from_millis(100)).await;
    gate.shutdown().await;
}

#[tokio::test]
async fn a_selgate_without_a_dbserver_address_is_refused() {
    let config = Role::SelGate.defaults();
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("`server.addr`"), "{err}");
    assert!(err.contains("selgate"), "{err}");
    assert!(Gate::start(config).await.is_err());
}
