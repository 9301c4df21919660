//! The LoginSrv link: heartbeats, death, reconnect after a LoginSrv restart,
//! bad server frames, and the shutdown's close frames.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use logingate::app::Gate;
use logingate::config::Dialect;
use tokio::io::AsyncWriteExt;

fn fast_heartbeat(c: &mut logingate::config::Config) {
    c.server.heartbeat_secs = 1;
    c.server.dead_after_secs = 2;
}

#[tokio::test]
async fn silent_server_is_declared_dead_and_clients_dropped() {
    let (gate, srv, mut link) = gate_with_srv(fast_heartbeat, Dialect::Delphi).await;
    let mut client = connect(gate_addr(&gate)).await;
    let id = link.open_id().await;
    let t0 = tokio::time::Instant::now();
    assert_eq!(link.frame().await, b"%--$");
    // No reply: the gate gives up after dead_after_secs and drops everyone
    // (no close frame: the link that knew the session is gone).
    let rest = link.frames_until_eof().await;
    assert!(rest.iter().all(|f| f == "%--$"), "{rest:?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
    assert!(read_to_close(&mut client).await.is_empty());
    assert_eq!(gate.counts().closed("server_lost"), 1);

    // And reconnects; the old session is not mentioned on the new link.
    let mut link2 = srv.accept().await;
    assert!(gate.wait_link_up(STEP).await);
    let _c2 = connect(gate_addr(&gate)).await;
    let id2 = link2.open_id().await;
    assert_ne!(id2, id);
}

#[tokio::test]
async fn answered_heartbeats_keep_the_link() {
    let (gate, _srv, mut link) = gate_with_srv(fast_heartbeat, Dialect::Wemade).await;
    // Three heartbeats answered (Wemade style, 0x00 after) span longer than
    // dead_after_secs, and the link stays.
    // Wemade's reply with its NUL, Delphi's, and an unlisted `%+x$` (the
    // Delphi gates count any of those as a reply).
    for reply in [&b"%++$\0"[..], b"%++$", b"%+x$"] {
        assert_eq!(link.frame().await, b"%--$");
        link.send(reply).await;
    }
    assert!(gate.link().is_up());
    assert_eq!(gate.link().stats().connects, 1);
    assert!(gate.link().stats().heartbeats >= 3);
}

#[tokio::test]
async fn restarted_login_server_is_reconnected_and_service_resumes() {
    let srv = Srv::bind().await;
    let addr = srv.addr();
    let gate = Gate::start(test_config(addr, Dialect::Delphi))
        .await
        .unwrap();
    let mut link = srv.accept().await;
    assert!(gate.wait_link_up(STEP).await);
    let mut client = connect(gate_addr(&gate)).await;
    let id = link.open_id().await;

    // The LoginSrv dies.
    drop(link);
    drop(srv);
    assert!(read_to_close(&mut client).await.is_empty());
    eventually("link down", || !gate.link().is_up()).await;
    // While down, clients are refused.
    let mut refused = connect(gate_addr(&gate)).await;
    assert!(read_to_close(&mut refused).await.is_empty());

    // Back on the same port.
    let srv = Srv::bind_at(addr).await;
    let mut link = srv.accept().await;
    assert!(gate.wait_link_up(STEP).await);
    let mut client = connect(gate_addr(&gate)).await;
    let id2 = link.open_id().await;
    assert!(id2 > id);
    client.write_all(LOGIN).await.unwrap();
    assert_eq!(
        link.text().await,
        format!("%A{id2}/{}$", String::from_utf8_lossy(LOGIN))
    );
    link.send(format!("%{id2}/").as_bytes()).await;
    link.send(REPLY).await;
    link.send(b"$").await;
    assert_eq!(read_n(&mut client, REPLY.len()).await, REPLY);
    assert_eq!(gate.link().stats().connects, 2);
    assert_eq!(gate.counts().closed("server_lost"), 1);
}

#[tokio::test]
async fn bad_server_frames_are_skipped_and_an_overlong_one_resets_the_link() {
    let (gate, srv, mut link) =
        gate_with_srv(|c| c.server.max_frame_bytes = 64, Dialect::Delphi).await;
    let mut client = connect(gate_addr(&gate)).await;
    let id = link.open_id().await;

    // Junk, NULs, unknown commands and bad ids between good frames.
    let mut mixed = b"\0\0garbage%Zzz$%12x/#a!$%/#b!$".to_vec();
    mixed.extend_from_slice(format!("%{id}/#ok!$\0").as_bytes());
    link.send(&mixed).await;
    assert_eq!(read_n(&mut client, 4).await, b"#ok!");
    assert_eq!(gate.link().stats().parse_errors, 3);
    assert!(gate.link().is_up());

    // A frame that never ends within max_frame_bytes: reset, reconnect.
    let mut long = format!("%{id}/#").into_bytes();
    long.extend_from_slice(&[b'<'; 100]);
    link.send(&long).await;
    let after = link.frames_until_eof().await;
    assert!(after.is_empty(), "{after:?}");
    assert!(read_to_close(&mut client).await.is_empty());
    let _link2 = srv.accept().await;
    assert!(gate.wait_link_up(STEP).await);
}

#[tokio::test]
async fn shutdown_sends_every_close_frame_then_ends_the_link() {
    let (gate, _srv, mut link) = gate_with_srv(|_| {}, Dialect::HappyM2).await;
    let mut clients = Vec::new();
    let mut ids = BTreeSet::new();
    for _ in 0..5 {
        clients.push(connect(gate_addr(&gate)).await);
        ids.insert(link.open_id().await);
    }
    let started = tokio::time::Instant::now();
    let stopping = tokio::spawn(gate.shutdown());
    let frames = link.frames_until_eof().await;
    // The LoginSrv closes its side in turn; the gate has been waiting for it.
    drop(link);
    stopping.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let closed: BTreeSet<u32> = frames
        .iter()
        .map(|f| {
            f.strip_prefix("%C")
                .and_then(|r| r.strip_suffix('$'))
                .expect("only close frames")
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(frames.len(), 5, "exactly one close frame each");
    assert_eq!(closed, ids);
    for c in &mut clients {
        assert!(read_to_close(c).await.is_empty());
    }
}

#[tokio::test]
async fn a_stalled_login_server_makes_the_gate_shed_clients_not_memory() {
    // A LoginSrv that stops reading: small receive buffer, never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let srv = Srv {
        listener: socket.listen(16).unwrap(),
    };
    let mut config = test_config(srv.addr(), Dialect::Delphi);
    config.gate.max_packet_bytes = 2048;
    config.server.max_link_buffer_bytes = 16 * 1024;
    let gate = Gate::start(config).await.unwrap();
    let mut link = srv.accept().await;
    assert!(gate.wait_link_up(STEP).await);

    let mut client = connect(gate_addr(&gate)).await;
    let mut msg = b"#1".to_vec();
    msg.extend_from_slice(&[b'<'; 2000]);
    msg.push(b'!');
    // Push until the gate refuses: its link buffer is full.
    let mut sent = 0usize;
    while gate.counts().closed("server_busy") == 0 {
        match tokio::time::timeout(STEP, client.write_all(&msg)).await {
            Ok(Ok(())) => sent += 1,
            Ok(Err(_)) => break,
            Err(_) => panic!("gate stopped reading the client instead of closing it"),
        }
        assert!(sent < 100_000, "never refused");
    }
    eventually("server_busy close", || {
        gate.counts().closed("server_busy") == 1
    })
    .await;
    assert!(gate.link().is_up(), "the link itself is fine");

    // Once the LoginSrv reads again, it sees only whole frames: the open,
    // whole data frames, then the close.
    let id = link.open_id().await;
    let data = format!("%A{id}/{}$", String::from_utf8_lossy(&msg));
    let mut forwarded = 0;
    loop {
        let f = link.text().await;
        if f == data {
            forwarded += 1;
            continue;
        }
        assert_eq!(f, format!("%X{id}$"));
        break;
    }
    assert!(forwarded > 0 && forwarded < sent, "{forwarded} of {sent}");
}

/// A LoginSrv that stops reading must not let client churn grow the gate's
/// link buffer: once it is over `max_link_buffer_bytes`, new clients are
/// refused (`server_busy`) instead of queueing more open frames.
#[tokio::test]
async fn full_link_buffer_refuses_new_clients() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let srv = Srv {
        listener: socket.listen(16).unwrap(),
    };
    let mut config = test_config(srv.addr(), Dialect::Delphi);
    config.gate.max_packet_bytes = 2048;
    config.server.max_link_buffer_bytes = 16 * 1024;
    let gate = Gate::start(config).await.unwrap();
    let _link = srv.accept().await;
    assert!(gate.wait_link_up(STEP).await);

    let mut msg = b"#1".to_vec();
    msg.extend_from_slice(&[b'<'; 2000]);
    msg.push(b'!');
    // Each round: a newcomer, which floods until the gate closes it as
    // server_busy. Once the kernel's socket buffers are full too (the
    // LoginSrv reads nothing), the pending buffer stays full and the next
    // newcomer must be refused rather than queue another open frame.
    for round in 0.. {
        assert!(
            round < 3000,
            "newcomers never refused: unbounded link buffer"
        );
        let opened_before = gate.sessions().len();
        let mut c = connect(gate_addr(&gate)).await;
        eventually("newcomer accepted or refused", || {
            gate.sessions().len() > opened_before || gate.counts().refused("server_busy") > 0
        })
        .await;
        if gate.counts().refused("server_busy") > 0 {
            assert!(read_to_close(&mut c).await.is_empty());
            break;
        }
        let busy_before = gate.counts().closed("server_busy");
        for _ in 0..100_000 {
            if gate.counts().closed("server_busy") > busy_before {
                break;
            }
            match tokio::time::timeout(STEP, c.write_all(&msg)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => panic!("gate stopped reading the client instead of closing it"),
            }
        }
        eventually("server_busy close", || {
            gate.counts().closed("server_busy") > busy_before
        })
        .await;
    }
    assert_eq!(gate.counts().refused("server_busy"), 1);
    assert!(gate.link().is_up(), "the link itself is fine");
}
