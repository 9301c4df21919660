//! The client side of a socket under test: connect (from any loopback
//! address), read what arrives, and tell a close, a rejection and an open,
//! silent connection apart. Every wait is bounded by [`STEP`].

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

use crate::STEP;

/// Connect with Nagle off (tests write small messages and wait for replies).
pub async fn connect(addr: SocketAddr) -> TcpStream {
    let s = tokio::time::timeout(STEP, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Connects from `source` (any 127.0.0.0/8 address works on Linux loopback).
pub async fn try_connect_from(source: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(to).await
}

pub async fn connect_from(source: [u8; 4], to: SocketAddr) -> TcpStream {
    try_connect_from(source, to).await.expect("connect")
}

/// Read exactly `n` bytes.
pub async fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    tokio::time::timeout(STEP, s.read_exact(&mut v))
        .await
        .expect("data in time")
        .unwrap();
    v
}

/// Reads until EOF or error; returns what arrived and whether it ended in a clean EOF.
pub async fn read_to_end(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(STEP, stream.read(&mut buf))
            .await
            .expect("the peer closes the connection in time")
        {
            Ok(0) => return (all, true),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(_) => return (all, false),
        }
    }
}

/// Read until the peer closes the connection (EOF or reset); returns what arrived first.
pub async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    read_to_end(s).await.0
}

/// True when the server refused the connection: admission resets it (possibly before
/// `connect` returns), the handler's rejection closes it without a byte.
pub async fn refused(conn: std::io::Result<TcpStream>) -> bool {
    match conn {
        Ok(mut stream) => is_rejected(&mut stream).await,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// True when the server closed the connection without sending anything (a rejection).
pub async fn is_rejected(stream: &mut TcpStream) -> bool {
    read_to_close(stream).await.is_empty()
}

/// True when the connection is still open after `wait` (nothing to read, no EOF).
pub async fn stays_open(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut one = [0u8; 1];
    tokio::time::timeout(wait, stream.read(&mut one))
        .await
        .is_err()
}

/// The connection stays open and silent for `d`.
pub async fn expect_open(s: &mut TcpStream, d: Duration) {
    let mut b = [0u8; 64];
    if let Ok(r) = tokio::time::timeout(d, s.read(&mut b)).await {
        panic!("expected an open, silent connection, got {r:?}");
    }
}
