//! The frame table against a scripted LoginSrv: `[server.frames]` overrides
//! from a config file, which block letter means temporary, and the gate
//! address written into open frames.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use logingate::config::{Config, Dialect};
use mir2_proto::link::BlockLetter;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn overridden_letters_from_a_config_file_are_written() {
    let text = "[server]\ndialect = \"delphi\"\n[server.frames]\nopen = \"Q\"\ndata = \"W\"\nclose = \"E\"\n";
    let overrides = Config::from_toml(text, Path::new("x"))
        .unwrap()
        .server
        .frames;
    let (gate, _srv, mut link) =
        gate_with_srv(|c| c.server.frames = overrides, Dialect::Delphi).await;
    let mut client = connect(gate_addr(&gate)).await;
    let open = link.text().await;
    assert!(open.starts_with("%Q"), "{open}");
    let id: u32 = open[2..open.find('/').unwrap()].parse().unwrap();
    assert_eq!(open, format!("%Q{id}/127.0.0.1/127.0.0.1$"));
    client.write_all(LOGIN).await.unwrap();
    assert_eq!(
        link.text().await,
        format!("%W{id}/{}$", String::from_utf8_lossy(LOGIN))
    );
    drop(client);
    assert_eq!(link.text().await, format!("%E{id}$"));
}

#[tokio::test]
async fn gate_addr_is_the_gate_ip_of_open_frames() {
    for d in [Dialect::Delphi, Dialect::HappyM2, Dialect::Ldx] {
        let (gate, _srv, mut link) = gate_with_srv(
            |c| c.server.gate_addr = Some("203.0.113.9".parse().unwrap()),
            d,
        )
        .await;
        let _client = connect(gate_addr(&gate)).await;
        let open = link.text().await;
        let id = open_id(&open);
        let letter = char::from(d.frames().open);
        assert_eq!(open, format!("%{letter}{id}/127.0.0.1/203.0.113.9$"), "{d}");
    }
}

/// `%+T` from the LoginSrv is a permanent block (recorded in the block list
/// file) by default, and a temporary one (not recorded) when the table says
/// `T` is temporary; `%+B` the other way round.
#[tokio::test]
async fn block_letter_meaning_follows_the_table() {
    for (temporary, letter, recorded) in [
        (BlockLetter::B, 'T', true),
        (BlockLetter::B, 'B', false),
        (BlockLetter::T, 'T', false),
        (BlockLetter::T, 'B', true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("blocked.txt");
        let path = file.to_str().unwrap().to_owned();
        let (gate, _srv, mut link) = gate_with_srv(
            |c| {
                c.gate.block_list_file = path;
                c.server.frames.temporary_block = Some(temporary);
            },
            Dialect::HappyM2,
        )
        .await;
        let mut client = connect(gate_addr(&gate)).await;
        let id = link.open_id().await;
        link.send(format!("%+{letter}{id}$").as_bytes()).await;
        assert!(read_to_close(&mut client).await.is_empty());
        assert_eq!(link.text().await, format!("%C{id}$"));
        assert!(gate.admission().is_blocked("127.0.0.1".parse().unwrap()));
        if recorded {
            eventually("permanent block recorded", || {
                std::fs::read_to_string(&file).is_ok_and(|t| t.contains("127.0.0.1"))
            })
            .await;
        } else {
            // A temporary block is never written to the file.
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(
                std::fs::read_to_string(&file).map_or(true, |t| !t.contains("127.0.0.1")),
                "temporary {temporary:?}, %+{letter} recorded"
            );
        }
    }
}
