//! Limits changed while the server runs, inherited listeners, and the drain (stop
//! accepting, keep serving).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use netcore::{CloseReason, LiveLimits, Server};
use testkit::eventually;
use testkit::net::{read_to_end, stays_open};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn echo(stream: &mut TcpStream, line: &[u8]) {
    stream.write_all(line).await.unwrap();
    let mut back = vec![0u8; line.len()];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(back, line);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowered_deadlines_reach_sessions_that_are_already_waiting() {
    let _ = snapshotter();
    let handler = Arc::new(Echo::default());
    let server = Server::bind(config("tune_deadlines_"), Arc::clone(&handler))
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    let tuning = server.tuning();
    let token = server.shutdown_token();
    let run = tokio::spawn(server.run());
    let mut talked = TcpStream::connect(addr).await.unwrap();
    echo(&mut talked, b"hi\n").await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    eventually("both open", || handler.opened() == 2).await;
    // Neither has a deadline armed: only the change can close them.
    let mut limits = tuning.current();
    assert_eq!(limits.idle_timeout, None);
    limits.idle_timeout = Some(Duration::from_millis(200));
    limits.first_packet_timeout = Some(Duration::from_millis(200));
    tuning.apply(&limits).unwrap();
    assert_eq!(tuning.current(), limits);
    let (data, _) = read_to_end(&mut talked).await;
    assert!(data.is_empty());
    let (data, _) = read_to_end(&mut silent).await;
    assert!(data.is_empty());
    eventually("both closed", || handler.closed() == 2).await;
    assert_eq!(handler.reasons_of(CloseReason::IdleTimeout), 1);
    assert_eq!(handler.reasons_of(CloseReason::FirstPacketTimeout), 1);
    token.cancel();
    run.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raised_first_packet_deadline_spares_a_waiting_session() {
    let _ = snapshotter();
    let handler = Arc::new(Echo::default());
    let mut cfg = config("tune_raise_");
    cfg.first_packet_timeout = Some(Duration::from_millis(300));
    let server = Server::bind(cfg, Arc::clone(&handler)).await.unwrap();
    let addr = server.local_addrs()[0];
    let tuning = server.tuning();
    let token = server.shutdown_token();
    let run = tokio::spawn(server.run());
    let mut silent = TcpStream::connect(addr).await.unwrap();
    eventually("open", || handler.opened() == 1).await;
    tuning
        .apply(&LiveLimits {
            first_packet_timeout: Some(Duration::from_secs(60)),
            ..tuning.current()
        })
        .unwrap();
    assert!(stays_open(&mut silent, Duration::from_millis(700)).await);
    echo(&mut silent, b"late\n").await;
    token.cancel();
    run.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowered_caps_refuse_new_connections_and_close_nobody() {
    let _ = snapshotter();
    let handler = Arc::new(Echo::default());
    let server = Server::bind(config("tune_caps_"), Arc::clone(&handler))
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    let tuning = server.tuning();
    let token = server.shutdown_token();
    let run = tokio::spawn(server.run());
    let mut a = TcpStream::connect(addr).await.unwrap();
    let mut b = TcpStream::connect(addr).await.unwrap();
    echo(&mut a, b"a\n").await;
    echo(&mut b, b"b\n").await;
    tuning
        .apply(&LiveLimits {
            max_connections: 1,
            ..tuning.current()
        })
        .unwrap();
    let mut c = TcpStream::connect(addr).await.unwrap();
    let (data, _) = read_to_end(&mut c).await;
    assert!(data.is_empty(), "refused over the lowered cap");
    echo(&mut a, b"still\n").await;
    echo(&mut b, b"still\n").await;
    assert!(tuning
        .apply(&LiveLimits {
            max_connections: 0,
            ..tuning.current()
        })
        .is_err());
    assert_eq!(
        tuning.current().max_connections,
        1,
        "a refused change changes nothing"
    );
    token.cancel();
    run.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inherited_listener_is_served_and_a_drain_keeps_sessions() {
    let _ = snapshotter();
    let handler = Arc::new(Echo::default());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = config("tune_inherit_");
    cfg.listen.clear();
    let server = Server::bind_inherited(cfg, Arc::clone(&handler), vec![listener])
        .await
        .unwrap();
    assert_eq!(server.local_addrs(), vec![addr]);
    assert_eq!(server.listener_fds().unwrap().len(), 1);
    let accept = server.accept_token();
    let token = server.shutdown_token();
    let run = tokio::spawn(server.run());
    let mut live = TcpStream::connect(addr).await.unwrap();
    echo(&mut live, b"before\n").await;
    accept.cancel();
    // The listener is closed once its accept loop ended.
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "no longer accepting");
    echo(&mut live, b"after\n").await;
    token.cancel();
    run.await.unwrap();
    assert!(handler.reasons_of(CloseReason::Shutdown) >= 1);
}
