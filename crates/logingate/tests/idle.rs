//! `first_packet_timeout_secs` means "no whole message yet" and
//! `idle_timeout_secs` "no whole message for this long": a client cannot hold
//! its slot with lone `*` acks, a bare `#`, or by trickling one byte of a
//! message at a time (slowloris).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use logingate::config::Dialect;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Writes, or a message per tick: 12 ticks of 250 ms, three times the idle
/// timeout. Returns whether the gate cut the client off meanwhile.
async fn keep_sending(c: &mut TcpStream, mut chunk: impl FnMut(usize) -> Vec<u8>) -> bool {
    for n in 0..12 {
        if c.write_all(&chunk(n)).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

#[tokio::test]
async fn bytes_without_a_whole_message_are_closed_at_the_first_packet_timeout() {
    let (gate, _srv, mut link) = gate_with_srv(
        |c| {
            c.gate.first_packet_timeout_secs = 1;
            // Far beyond the test's patience: only the first-packet deadline can close them.
            c.gate.idle_timeout_secs = 600;
        },
        Dialect::Wemade,
    )
    .await;
    let addr = gate_addr(&gate);
    let mut good = connect(addr).await;
    let id_good = link.open_id().await;
    let mut cut = Vec::new();
    for bytes in [&b"*"[..], b"#", b"#1<<<"] {
        let mut c = connect(addr).await;
        link.open_id().await;
        c.write_all(bytes).await.unwrap();
        cut.push(c);
    }
    good.write_all(&client_msg(1)).await.unwrap();
    assert!(link.text().await.starts_with(&format!("%A{id_good}/")));
    for c in &mut cut {
        assert!(read_to_close(c).await.is_empty());
    }
    assert_eq!(
        gate.counts().closed("first_packet_timeout"),
        3,
        "{:?}",
        gate.counts().snapshot().closes
    );
    // A client that sent a whole message is past its first packet.
    expect_open(&mut good, Duration::from_millis(200)).await;
    assert_eq!(gate.counts().closed("first_packet_timeout"), 3);
}

#[tokio::test]
async fn acks_and_trickled_bytes_do_not_keep_a_client_alive() {
    let (gate, _srv, mut link) = gate_with_srv(
        |c| {
            c.gate.idle_timeout_secs = 1;
            c.gate.first_packet_timeout_secs = 1;
        },
        Dialect::Wemade,
    )
    .await;
    let addr = gate_addr(&gate);

    // One whole message, then only `*`.
    let mut acks = connect(addr).await;
    let id_acks = link.open_id().await;
    // One whole message, then trickles another, a byte per tick.
    let mut slow = connect(addr).await;
    let id_slow = link.open_id().await;
    // A real client: a whole message per tick.
    let mut good = connect(addr).await;
    let id_good = link.open_id().await;

    let (acks_cut, slow_cut, good_cut) = tokio::join!(
        keep_sending(&mut acks, |n| if n == 0 {
            client_msg(100)
        } else {
            b"*".to_vec()
        }),
        keep_sending(&mut slow, |n| if n == 0 {
            [client_msg(200), b"#1".to_vec()].concat()
        } else {
            b"<".to_vec()
        }),
        keep_sending(&mut good, |n| client_msg(n as i32)),
    );
    assert!(acks_cut, "a client sending only `*` was kept");
    assert!(slow_cut, "a client trickling one message was kept");
    assert!(!good_cut, "a client sending whole messages was cut off");
    assert_eq!(
        gate.counts().closed("idle_timeout"),
        2,
        "{:?}",
        gate.counts().snapshot().closes
    );

    let mut closed = Vec::new();
    let mut good_msgs = 0;
    while good_msgs < 12 || closed.len() < 2 {
        let f = link.text().await;
        if f.starts_with(&format!("%A{id_good}/")) {
            good_msgs += 1;
        } else if f.starts_with("%X") {
            closed.push(f);
        }
    }
    closed.sort();
    let mut want = vec![format!("%X{id_acks}$"), format!("%X{id_slow}$")];
    want.sort();
    assert_eq!(closed, want);
}
