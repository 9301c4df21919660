//! Data path: echo on loopback, order, many sessions, ids.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use netcore::CloseReason;
use testkit::eventually;
use testkit::net::read_to_end;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoes_lines_and_closes_once_on_peer_close() {
    let h = start(config("echo_basic_")).await;
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    c.write_all(b"hello\nwor").await.unwrap();
    c.write_all(b"ld\n").await.unwrap();
    let mut got = vec![0u8; 12];
    c.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"hello\nworld\n");
    assert_eq!(h.sessions.len(), 1);
    drop(c);
    eventually("peer close seen", || h.handler.closed() == 1).await;
    assert_eq!(h.handler.reasons_of(CloseReason::PeerClosed), 1);
    assert_eq!(h.counter("closed_total", Some("peer_closed")), 1);
    assert_eq!(h.counter("bytes_in_total", None), 12);
    assert_eq!(h.counter("bytes_out_total", None), 12);
    let handler = h.stop().await;
    assert_eq!(handler.opened(), 1);
}

/// A live session's own counters and the registry snapshot, as an operator's listing reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_lists_live_sessions_with_their_counters() {
    let h = start(config("echo_stats_")).await;
    let mut a = TcpStream::connect(h.addr).await.unwrap();
    let _b = TcpStream::connect(h.addr).await.unwrap();
    a.write_all(b"one\ntwo\n").await.unwrap();
    let mut got = vec![0u8; 8];
    a.read_exact(&mut got).await.unwrap();
    eventually("both registered", || h.sessions.snapshot().len() == 2).await;
    let local = a.local_addr().unwrap();
    let snapshot = h.sessions.snapshot();
    let mine = snapshot.iter().find(|s| s.peer() == local).expect("listed");
    // The task counts a write right after the system call: the reply may be read first.
    eventually("write counted", || mine.stats().bytes_out == 8).await;
    let stats = mine.stats();
    assert_eq!((stats.bytes_in, stats.bytes_out, stats.messages), (8, 8, 2));
    assert_eq!(stats.queued_bytes, 0);
    let other = snapshot.iter().find(|s| s.peer() != local).expect("listed");
    assert_eq!(other.stats().bytes_in, 0);
    assert!(stats.age <= Duration::from_secs(60));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_error_closes_with_its_label() {
    let h = start(config("echo_quit_")).await;
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    c.write_all(b"!QUIT\n").await.unwrap();
    let (_, clean) = read_to_end(&mut c).await;
    assert!(clean);
    eventually("closed", || h.handler.closed() == 1).await;
    assert_eq!(h.handler.reasons_of(CloseReason::Protocol("quit")), 1);
    assert_eq!(h.counter("closed_total", Some("quit")), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_many_messages_in_order() {
    const SESSIONS: usize = 1000;
    const MESSAGES: usize = 1000;
    let h = start(config("echo_many_")).await;
    let addr = h.addr;
    let mut clients = Vec::with_capacity(SESSIONS);
    for c in 0..SESSIONS {
        clients.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut rd, mut wr) = stream.into_split();
            let writer = tokio::spawn(async move {
                let mut batch = Vec::with_capacity(MESSAGES * 12);
                for m in 0..MESSAGES {
                    batch.extend_from_slice(format!("{c}:{m}\n").as_bytes());
                }
                // Several writes so frames straddle reads on the server.
                for chunk in batch.chunks(997) {
                    wr.write_all(chunk).await.unwrap();
                }
                wr
            });
            let mut expected = Vec::with_capacity(MESSAGES * 12);
            for m in 0..MESSAGES {
                expected.extend_from_slice(format!("{c}:{m}\n").as_bytes());
            }
            let mut got = vec![0u8; expected.len()];
            rd.read_exact(&mut got).await.unwrap();
            assert!(
                got == expected,
                "session {c}: echo out of order or incomplete"
            );
            let _wr = writer.await.unwrap();
        }));
    }
    for client in clients {
        tokio::time::timeout(Duration::from_secs(40), client)
            .await
            .unwrap()
            .unwrap();
    }
    eventually("all closed", || h.handler.closed() == SESSIONS).await;
    let handler = h.stop().await;
    assert_eq!(handler.opened(), SESSIONS);
}
