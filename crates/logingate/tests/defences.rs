//! Flood and bot defences through real sockets: each test drives one enforcement from
//! its own loopback source addresses (127.0.0.N) and checks the punishment it earns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;
use logingate::config::Dialect;
use logingate::punish::{PunishConfig, Punishment};
use mir2_proto::MsgHeader;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A connection to `addr` from the loopback address `from`.
async fn connect_from(from: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(ip(from), 0))?;
    let s = tokio::time::timeout(Duration::from_secs(5), socket.connect(addr))
        .await
        .map_err(|_| std::io::Error::other("connect timed out"))??;
    s.set_nodelay(true)?;
    Ok(s)
}

/// A client message with `ident` and no body.
fn msg(ident: u16) -> Vec<u8> {
    let mut m = b"#3".to_vec();
    m.extend_from_slice(&MsgHeader::new(ident, 0, 0, 0, 0).encode());
    m.push(b'!');
    m
}

/// The default punishment table (tests' configs start with disconnect-only).
fn defaults(c: &mut logingate::config::Config) {
    c.gate.punish = PunishConfig::default();
}

#[tokio::test]
async fn http_request_is_labelled_and_temp_blocks_its_source() {
    let (gate, _srv, _link) = gate_with_srv(defaults, Dialect::Wemade).await;
    let addr = gate_addr(&gate);
    let mut c = connect_from("127.0.0.2", addr).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_to_close(&mut c).await.is_empty());
    eventually("http_request close", || {
        gate.counts().closed("http_request") == 1
    })
    .await;
    assert_eq!(gate.counts().closed("forbidden_byte"), 0);
    assert!(gate.admission().is_blocked(ip("127.0.0.2")));
    assert!(!gate.admission().is_blocked(ip("127.0.0.3")));
    // A request line split across reads is recognised too.
    let mut c = connect_from("127.0.0.3", addr).await.unwrap();
    c.write_all(b"PO").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.write_all(b"ST /login HTTP/1.1\r\n").await.unwrap();
    assert!(read_to_close(&mut c).await.is_empty());
    eventually("second http_request", || {
        gate.counts().closed("http_request") == 2
    })
    .await;
}

#[tokio::test]
async fn registrations_over_the_per_ip_limit_are_not_forwarded() {
    let (gate, _srv, mut link) = gate_with_srv(
        |c| {
            defaults(c);
            c.gate.new_accounts_per_ip_per_hour = 2;
        },
        Dialect::Wemade,
    )
    .await;
    let addr = gate_addr(&gate);
    let add = msg(2002);
    let header = String::from_utf8(add[2..18].to_vec()).unwrap();
    let mut c = connect_from("127.0.0.4", addr).await.unwrap();
    link.open_id().await;
    for _ in 0..3 {
        c.write_all(&add).await.unwrap();
    }
    assert!(read_to_close(&mut c).await.is_empty());
    eventually("new_accounts close", || {
        gate.counts().closed("new_accounts") == 1
    })
    .await;
    assert!(gate.admission().is_blocked(ip("127.0.0.4")));
    let mut forwarded = 0;
    loop {
        let frame = link.text().await;
        if frame.contains(&header) {
            forwarded += 1;
        } else {
            break; // the close frame
        }
    }
    assert_eq!(forwarded, 2, "the third registration reached the LoginSrv");
}

#[tokio::test]
async fn connect_rate_offenders_are_blocked_but_allow_listed_sources_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let allow = dir.path().join("allow.txt");
    std::fs::write(&allow, "127.0.0.6\n").unwrap();
    let path = allow.to_str().unwrap().to_owned();
    let (gate, _srv, _link) = gate_with_srv(
        |c| {
            defaults(c);
            c.gate.conn_rate_per_ip = 2;
            c.gate.max_conn_per_ip = 2;
            c.gate.allow_list_file = path;
        },
        Dialect::Wemade,
    )
    .await;
    let addr = gate_addr(&gate);
    let mut held = Vec::new();
    for _ in 0..6 {
        for from in ["127.0.0.5", "127.0.0.6"] {
            if let Ok(c) = connect_from(from, addr).await {
                held.push(c);
            }
        }
    }
    eventually("rate offender blocked", || {
        gate.admission().is_blocked(ip("127.0.0.5"))
    })
    .await;
    assert!(!gate.admission().is_blocked(ip("127.0.0.6")));
    eventually("six allow-listed sessions", || {
        gate.admission().connections_from(ip("127.0.0.6")) == 6
    })
    .await;
    assert!(gate.admission().connections_from(ip("127.0.0.5")) <= 2);
}

#[tokio::test]
async fn silent_connections_are_punished_as_empty_connections() {
    let (gate, _srv, _link) = gate_with_srv(
        |c| {
            c.gate.first_packet_timeout_secs = 1;
            c.gate.punish.empty_connection = Punishment::TempBlock;
        },
        Dialect::Wemade,
    )
    .await;
    let mut c = connect_from("127.0.0.7", gate_addr(&gate)).await.unwrap();
    c.write_all(b"#").await.unwrap(); // bytes, but no whole message
    assert!(read_to_close(&mut c).await.is_empty());
    eventually("blocked", || gate.admission().is_blocked(ip("127.0.0.7"))).await;
}

#[tokio::test]
async fn attack_mode_enters_under_a_connect_flood_and_leaves_when_calm() {
    let (gate, _srv, _link) = gate_with_srv(
        |c| {
            c.gate.attack.enter_conn_rate = 30;
            c.gate.attack.exit_conn_rate = 5;
            c.gate.attack.exit_after_secs = 1;
            c.gate.attack.max_conn_per_ip = 1;
        },
        Dialect::Wemade,
    )
    .await;
    let addr = gate_addr(&gate);
    let mut held = Vec::new();
    let flood_until = tokio::time::Instant::now() + Duration::from_secs(5);
    while !gate.attack().is_on() {
        assert!(
            tokio::time::Instant::now() < flood_until,
            "attack mode never entered"
        );
        for n in 10..30 {
            if let Ok(c) = connect_from(&format!("127.0.1.{n}"), addr).await {
                held.push(c);
            }
        }
        held.truncate(200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(held);
    // While on, a second connection from one source is refused.
    let before = gate.admission().connections_from(ip("127.0.2.1"));
    assert_eq!(before, 0);
    let _a = connect_from("127.0.2.1", addr).await.unwrap();
    eventually("first admitted", || {
        gate.admission().connections_from(ip("127.0.2.1")) == 1
    })
    .await;
    let mut b = connect_from("127.0.2.1", addr).await.unwrap();
    if gate.attack().is_on() {
        assert!(read_to_close(&mut b).await.is_empty(), "strict per-IP cap");
    }
    let calm_until = tokio::time::Instant::now() + Duration::from_secs(10);
    while gate.attack().is_on() {
        assert!(
            tokio::time::Instant::now() < calm_until,
            "attack mode never left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _c = connect_from("127.0.2.2", addr).await.unwrap();
    let _d = connect_from("127.0.2.2", addr).await.unwrap();
    eventually("configured cap again", || {
        gate.admission().connections_from(ip("127.0.2.2")) == 2
    })
    .await;
}
