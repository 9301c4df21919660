//! LoginSrv blocks across sessions of one IP: regression tests from the
//! adversarial review (each failed before its fix).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use logingate::config::DialectName;

const LOCALHOST: &str = "127.0.0.1";

/// A later `%+B` (temporary) for the same IP must not turn an earlier
/// `%+T` (permanent) block into one that expires; repeated `%+T` for the
/// same IP records it in the block list file once.
#[tokio::test]
async fn permanent_block_is_neither_downgraded_nor_recorded_twice() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blocked.txt");
    let path = file.to_str().unwrap().to_owned();
    let (gate, _srv, mut link) = gate_with_srv(
        |c| {
            c.gate.block_list_file = path;
            c.gate.temp_block_secs = 1;
        },
        DialectName::Wemade,
    )
    .await;
    let addr = gate_addr(&gate);
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        clients.push(connect(addr).await);
        ids.push(link.open_id().await);
    }
    // Two permanent blocks for one session, one for another session of the
    // same IP, then a temporary block for a third.
    link.send(format!("%+T{0}$%+T{0}$%+T{1}$%+B{2}$", ids[0], ids[1], ids[2]).as_bytes())
        .await;
    for c in &mut clients {
        assert!(read_to_close(c).await.is_empty());
    }
    let ip: IpAddr = LOCALHOST.parse().unwrap();
    // Past the temporary block's 1 s: the permanent one must still hold.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        gate.admission().is_blocked(ip),
        "a temporary block replaced the permanent one"
    );
    let mut refused = connect(addr).await;
    assert!(read_to_close(&mut refused).await.is_empty());

    let lines = || {
        std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("127.0.0.1 #"))
            .count()
    };
    eventually("block recorded", || lines() >= 1).await;
    // Give any duplicate append time to land.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lines(), 1, "{:?}", std::fs::read_to_string(&file));
}
