//! Sends from other tasks that find the queue empty are written by the sender itself;
//! what the socket does not take goes through the queue, in order, under the same bound.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::*;
use netcore::{CloseReason, SendError};
use testkit::eventually;
use testkit::net::read_to_end;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

/// One connected client and its session handle.
async fn one_session(h: &Harness) -> (TcpStream, netcore::Session) {
    let c = TcpStream::connect(h.addr).await.unwrap();
    eventually("opened", || h.sessions.len() == 1).await;
    let session = h.sessions.get(h.sessions.ids()[0]).expect("lookup");
    (c, session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_on_an_empty_queue_is_written_before_send_returns() {
    let h = start(config("direct_now_")).await;
    let (mut c, session) = one_session(&h).await;
    for i in 0..100u32 {
        let msg = format!("reply {i}\n");
        session.send(Bytes::from(msg.clone())).unwrap();
        // Written by `send` itself: nothing queued, already counted, no task involved.
        let stats = session.stats();
        assert_eq!(stats.queued_bytes, 0, "reply {i} was queued");
        let mut back = vec![0u8; msg.len()];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(back, msg.as_bytes());
    }
    let total: u64 = (0..100u32)
        .map(|i| format!("reply {i}\n").len() as u64)
        .sum();
    assert_eq!(session.stats().bytes_out, total);
    assert_eq!(h.counter("bytes_out_total", None), total);
    drop(c);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_socket_falls_back_to_the_queue_in_order() {
    let mut cfg = config("direct_order_");
    cfg.max_outbound_bytes = 64 << 20;
    let h = start(cfg).await;
    // A small receive buffer and a client that does not read yet: the kernel soon
    // takes only part of a send, then nothing.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut c = socket.connect(h.addr).await.unwrap();
    eventually("opened", || h.sessions.len() == 1).await;
    let session = h.sessions.get(h.sessions.ids()[0]).expect("lookup");

    // More than the server's send buffer can hold (loopback autotunes it to a few MiB).
    let pattern = big_pattern(16 << 20);
    let sender = {
        let session = session.clone();
        let pattern = pattern.clone();
        // Uneven chunk sizes, so partial writes cut chunks anywhere.
        std::thread::spawn(move || {
            let mut at = 0;
            let mut size = 1;
            while at < pattern.len() {
                let end = (at + size).min(pattern.len());
                session
                    .send(Bytes::copy_from_slice(&pattern[at..end]))
                    .unwrap();
                at = end;
                size = size * 7 % 9973 + 1;
            }
        })
    };
    eventually("the socket filled and the queue took over", || {
        session.stats().queued_bytes > 0
    })
    .await;
    let mut got = vec![0u8; pattern.len()];
    c.read_exact(&mut got).await.unwrap();
    sender.join().unwrap();
    assert!(got == pattern, "every byte once, in send order");
    eventually("queue drained", || session.stats().queued_bytes == 0).await;
    assert_eq!(session.stats().bytes_out, pattern.len() as u64);
    drop(c);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_still_overflows_the_bound() {
    let mut cfg = config("direct_slow_");
    cfg.max_outbound_bytes = 64 * 1024;
    let h = start(cfg).await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let _c = socket.connect(h.addr).await.unwrap();
    eventually("opened", || h.sessions.len() == 1).await;
    let session = h.sessions.get(h.sessions.ids()[0]).expect("lookup");
    let chunk = Bytes::from(vec![b'x'; 1024]);
    let mut refused = None;
    for i in 0..100_000 {
        if let Err(e) = session.send(chunk.clone()) {
            refused = Some((i, e));
            break;
        }
    }
    let (sent, err) = refused.expect("the bound refused a send");
    assert_eq!(err, SendError::QueueFull);
    assert!(sent < 10_000, "refused after {sent} KiB: the bound holds");
    eventually("closed as slow reader", || {
        h.handler.reasons_of(CloseReason::SlowReader) == 1
    })
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_send_reaches_the_socket_after_a_close() {
    let h = start(config("direct_closed_")).await;
    let (mut c, session) = one_session(&h).await;
    session.send(Bytes::from_static(b"before ")).unwrap();
    session.close(CloseReason::Kicked);
    assert_eq!(
        session.send(Bytes::from_static(b"after")),
        Err(SendError::Closed)
    );
    let (data, clean) = read_to_end(&mut c).await;
    assert_eq!(data, b"before ");
    assert!(clean);
    eventually("closed", || h.handler.closed() == 1).await;
    // The handle outlives the task: sends stay refused and touch no descriptor.
    for _ in 0..100 {
        assert_eq!(
            session.send(Bytes::from_static(b"late")),
            Err(SendError::Closed)
        );
    }
    h.stop().await;
}
