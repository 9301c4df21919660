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
