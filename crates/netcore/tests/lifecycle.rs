//! Timers, slow readers, close from another task, shutdown with data in flight.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use netcore::{CloseReason, SendError};
use testkit::eventually;
use testkit::net::{read_to_end, stays_open};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_closed_at_first_packet_timeout_active_one_kept() {
    let mut cfg = config("life_first_");
    cfg.first_packet_timeout = Some(Duration::from_millis(200));
    let h = start(cfg).await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(h.addr).await.unwrap();
    let mut active = TcpStream::connect(h.addr).await.unwrap();
    active.write_all(b"hi\n").await.unwrap();
    let mut echo = [0u8; 3];
    active.read_exact(&mut echo).await.unwrap();
    let (data, _) = read_to_end(&mut silent).await;
    assert!(data.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "not before the timeout"
    );
    eventually("reason recorded", || h.handler.closed() == 1).await;
    assert_eq!(h.handler.reasons_of(CloseReason::FirstPacketTimeout), 1);
    assert_eq!(h.counter("closed_total", Some("first_packet_timeout")), 1);
    // The active session is past its first packet and there is no idle timeout.
    assert!(stays_open(&mut active, Duration::from_millis(300)).await);
    drop(active);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_closes_only_the_idle_session() {
    let mut cfg = config("life_idle_");
    cfg.first_packet_timeout = Some(Duration::from_secs(5));
    cfg.idle_timeout = Some(Duration::from_millis(250));
    let h = start(cfg).await;
    let mut idle = TcpStream::connect(h.addr).await.unwrap();
    let mut busy = TcpStream::connect(h.addr).await.unwrap();
    idle.write_all(b"once\n").await.unwrap();
    let started = Instant::now();
    // The busy one keeps talking every 50 ms for 600 ms: more than twice the idle timeout.
    let busy_task = tokio::spawn(async move {
        let mut buf = [0u8; 5];
        for _ in 0..12 {
            busy.write_all(b"ping\n").await.unwrap();
            busy.read_exact(&mut buf).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        busy
    });
    let (data, _) = read_to_end(&mut idle).await;
    assert_eq!(data, b"once\n");
    // The first packet brought the deadline forward from 5 s to 250 ms.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "idle deadline applied after the first packet"
    );
    let mut busy = busy_task.await.unwrap();
    assert!(
        stays_open(&mut busy, Duration::from_millis(10)).await,
        "busy session survived"
    );
    assert_eq!(h.handler.reasons_of(CloseReason::IdleTimeout), 1);
    assert_eq!(h.handler.closed(), 1);
    drop(busy);
    h.stop().await;
}

/// Writes `chunk` every 50 ms until the server closes the connection (or 30 s pass).
fn trickle(mut stream: TcpStream, chunk: &'static [u8]) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for _ in 0..600 {
            if stream.write_all(chunk).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_without_a_whole_message_do_not_end_the_first_packet_deadline() {
    let mut cfg = config("life_first_partial_");
    cfg.first_packet_timeout = Some(Duration::from_millis(200));
    cfg.idle_timeout = Some(Duration::from_secs(60));
    let h = start(cfg).await;
    // The echo handler reports these bytes as part of a line, never a whole one.
    let writer = trickle(TcpStream::connect(h.addr).await.unwrap(), b"x");
    eventually("trickling client closed", || h.handler.closed() == 1).await;
    assert_eq!(h.handler.reasons_of(CloseReason::FirstPacketTimeout), 1);
    assert_eq!(h.counter("closed_total", Some("first_packet_timeout")), 1);
    writer.abort();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_without_a_whole_message_do_not_restart_the_idle_deadline() {
    let mut cfg = config("life_idle_partial_");
    cfg.first_packet_timeout = Some(Duration::from_secs(60));
    cfg.idle_timeout = Some(Duration::from_millis(250));
    let h = start(cfg).await;
    let mut client = TcpStream::connect(h.addr).await.unwrap();
    client.write_all(b"once\n").await.unwrap();
    let mut echo = [0u8; 5];
    client.read_exact(&mut echo).await.unwrap();
    let writer = trickle(client, b"x");
    eventually("trickling client closed", || h.handler.closed() == 1).await;
    assert_eq!(h.handler.reasons_of(CloseReason::IdleTimeout), 1);
    writer.abort();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_that_never_reads_is_closed_as_slow_reader_while_others_flow() {
    let mut cfg = config("life_slow_");
    cfg.max_outbound_bytes = 64 * 1024;
    let h = start(cfg).await;

    // Small client receive buffer so the server-side queue fills quickly.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let slow = socket.connect(h.addr).await.unwrap();
    let (_slow_rd, mut slow_wr) = slow.into_split();
    let flooder = tokio::spawn(async move {
        let line = [b'x'; 1023]
            .iter()
            .copied()
            .chain([b'\n'])
            .collect::<Vec<u8>>();
        let mut sent = 0usize;
        // Bounded: the server must give up long before 256 MiB.
        while sent < 256 << 20 {
            if slow_wr.write_all(&line).await.is_err() {
                return true;
            }
            sent += line.len();
        }
        false
    });

    let mut good = TcpStream::connect(h.addr).await.unwrap();
    for i in 0..2000 {
        let msg = format!("msg {i}\n");
        good.write_all(msg.as_bytes()).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        good.read_exact(&mut back).await.unwrap();
        assert_eq!(back, msg.as_bytes());
    }
    assert!(
        tokio::time::timeout(Duration::from_secs(20), flooder)
            .await
            .unwrap()
            .unwrap(),
        "the slow reader was disconnected"
    );
    eventually("slow reader closed", || {
        h.handler.reasons_of(CloseReason::SlowReader) == 1
    })
    .await;
    assert!(h.counter("queue_overflows_total", None) >= 1);
    assert_eq!(h.counter("closed_total", Some("slow_reader")), 1);
    assert!(
        stays_open(&mut good, Duration::from_millis(50)).await,
        "the good one is untouched"
    );
    drop(good);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_from_another_task_flushes_then_closes_and_refuses_sends() {
    let h = start(config("life_kick_")).await;
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    eventually("opened", || h.sessions.len() == 1).await;
    let id = h.sessions.ids()[0];
    let session = h.sessions.get(id).expect("lookup by id");
    assert_eq!(session.peer(), c.local_addr().unwrap());
    session.send(Bytes::from_static(b"goodbye ")).unwrap();
    session.send(Bytes::from_static(b"now")).unwrap();
    session.close(CloseReason::Kicked);
    session.close(CloseReason::Shutdown);
    assert_eq!(
        session.send(Bytes::from_static(b"late")),
        Err(SendError::Closed)
    );
    let (data, clean) = read_to_end(&mut c).await;
    assert_eq!(data, b"goodbye now");
    assert!(clean, "graceful close ends with FIN, not RST");
    eventually("closed", || h.handler.closed() == 1).await;
    assert_eq!(
        h.handler.reasons_of(CloseReason::Kicked),
        1,
        "first reason wins"
    );
    assert!(h.sessions.get(id).is_none());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_from_inside_the_handler_flushes_the_reply() {
    let h = start(config("life_selfkick_")).await;
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    c.write_all(b"last words\n!KICK\n").await.unwrap();
    let (data, clean) = read_to_end(&mut c).await;
    assert_eq!(data, b"last words\n");
    assert!(clean);
    eventually("closed", || h.handler.closed() == 1).await;
    assert_eq!(h.handler.reasons_of(CloseReason::Kicked), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_data_in_flight() {
    // Larger than what the kernel buffers on loopback, so most of it is still in our queue.
    const BIG: usize = 16 << 20;
    let mut cfg = config("life_shutdown_");
    cfg.max_outbound_bytes = 32 << 20;
    cfg.shutdown_flush_timeout = Duration::from_secs(10);
    let h = start(cfg).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut c = socket.connect(h.addr).await.unwrap();
        c.write_all(format!("!BIG {BIG}\n").as_bytes())
            .await
            .unwrap();
        clients.push(c);
    }
    // Wait until every session has queued its reply (the clients have not read a byte).
    eventually("replies queued", || {
        h.handler
            .big_queued
            .load(std::sync::atomic::Ordering::SeqCst)
            == 4
    })
    .await;
    let written_before = h.counter("bytes_out_total", None);
    assert!(
        written_before < (4 * BIG) as u64 / 2,
        "most bytes are still queued: {written_before}"
    );
    h.token.cancel();
    let expected = big_pattern(BIG);
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| tokio::spawn(async move { read_to_end(&mut c).await }))
        .collect();
    for reader in readers {
        let (data, clean) = reader.await.unwrap();
        assert_eq!(data.len(), BIG, "every queued byte arrived");
        assert!(data == expected);
        assert!(clean);
    }
    let handler = h.stop().await;
    assert_eq!(handler.reasons_of(CloseReason::Shutdown), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_idle_sessions_returns_and_closes_each_once() {
    let h = start(config("life_shutdown_idle_")).await;
    let mut clients = Vec::new();
    for _ in 0..50 {
        clients.push(TcpStream::connect(h.addr).await.unwrap());
    }
    eventually("opened", || h.handler.opened() == 50).await;
    let sessions = h.sessions.clone();
    let handler = h.stop().await;
    assert_eq!(handler.reasons_of(CloseReason::Shutdown), 50);
    assert!(sessions.is_empty());
    for mut c in clients {
        let (data, clean) = read_to_end(&mut c).await;
        assert!(data.is_empty() && clean);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_tail_that_fills_the_buffer_is_a_protocol_error() {
    let mut cfg = config("life_bufull_");
    cfg.read_buffer_bytes = 64;
    let h = start(cfg).await;
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    c.write_all(&[b'a'; 100]).await.unwrap();
    let (data, _) = read_to_end(&mut c).await;
    assert!(data.is_empty());
    eventually("closed", || h.handler.closed() == 1).await;
    assert_eq!(
        h.handler
            .reasons_of(CloseReason::Protocol("read_buffer_full")),
        1
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_on_a_peer_that_never_reads_after_the_flush_timeout() {
    let mut cfg = config("life_shutdown_stuck_");
    cfg.max_outbound_bytes = 32 << 20;
    cfg.shutdown_flush_timeout = Duration::from_millis(300);
    let h = start(cfg).await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(h.addr).await.unwrap();
    stuck.write_all(b"!BIG 16777216\n").await.unwrap();
    eventually("reply queued", || {
        h.handler
            .big_queued
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1
    })
    .await;
    let started = Instant::now();
    // `stop` cancels and waits for `run` (which would hang if the flush were unbounded).
    let handler = h.stop().await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "the flush was attempted: {took:?}"
    );
    assert_eq!(handler.reasons_of(CloseReason::Shutdown), 1);
    drop(stuck); // never read a byte
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_configured_durations_do_not_panic() {
    let mut cfg = config("life_huge_");
    cfg.first_packet_timeout = Some(Duration::MAX);
    cfg.idle_timeout = Some(Duration::MAX);
    cfg.shutdown_flush_timeout = Duration::MAX;
    let h = start(cfg).await;
    h.admission
        .block("127.0.0.9/32".parse().unwrap(), Some(Duration::MAX));
    assert!(h.admission.is_blocked("127.0.0.9".parse().unwrap()));
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    c.write_all(b"still fine\n").await.unwrap();
    let mut back = [0u8; 11];
    c.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"still fine\n");
    let session = h.sessions.get(h.sessions.ids()[0]).unwrap();
    session.send(Bytes::from_static(b"bye")).unwrap();
    session.close(CloseReason::Kicked);
    let (data, clean) = read_to_end(&mut c).await;
    assert_eq!(data, b"bye");
    assert!(clean);
    drop(c); // the server waits (here: unboundedly, as configured) for our FIN
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defer_accept_keeps_silent_connections_out_of_user_space() {
    let mut cfg = config("life_defer_");
    cfg.defer_accept = Some(Duration::from_secs(5));
    let h = start(cfg).await;
    // The handshake completes (connect succeeds) but nothing reaches accept yet.
    let silent = TcpStream::connect(h.addr).await.unwrap();
    let mut talker = TcpStream::connect(h.addr).await.unwrap();
    talker.write_all(b"hi\n").await.unwrap();
    let mut echo = [0u8; 3];
    talker.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"hi\n");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        h.handler.opened(),
        1,
        "only the connection that sent data was opened"
    );
    drop(silent);
    drop(talker);
    h.stop().await;
}

/// Strict limits shorten the first-message deadline for new connections, but an
/// allow-listed source keeps the configured one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_first_packet_deadline_spares_allow_listed_sources() {
    let mut cfg = config("life_strict_fp_");
    cfg.first_packet_timeout = Some(Duration::from_secs(60));
    let h = start(cfg).await;
    h.admission
        .replace_allow_list(vec!["127.0.0.1/32".parse().unwrap()]);
    h.admission.set_strict(Some(netcore::StrictLimits {
        max_conn_per_ip: 0,
        first_packet_timeout: Some(Duration::from_millis(150)),
        allow_listed_only: false,
    }));
    let mut green = TcpStream::connect(h.addr).await.unwrap();
    let other = TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = other.connect(h.addr).await.unwrap();
    let (data, _) = read_to_end(&mut other).await;
    assert!(data.is_empty());
    eventually("strict deadline closed the other source", || {
        h.handler.reasons_of(CloseReason::FirstPacketTimeout) == 1
    })
    .await;
    // Connected first, so the strict deadline would have closed it already.
    assert!(stays_open(&mut green, Duration::from_millis(300)).await);
    assert_eq!(h.handler.reasons_of(CloseReason::FirstPacketTimeout), 1);
    drop(green);
    h.stop().await;
}
