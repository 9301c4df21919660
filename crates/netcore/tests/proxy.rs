//! PROXY protocol from trusted fronts on real loopback sockets: the carried address is
//! the session's peer and the address admission judges; untrusted peers' headers are
//! plain bytes; bad, missing, late and LOCAL headers never reach `on_open`.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use netcore::proxy::{header, Version};
use netcore::{IpNet, ProxyConfig, ProxyProtocol};
use testkit::eventually;
use testkit::net::{connect_from, is_rejected, refused, try_connect_from};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FRONT: [u8; 4] = [127, 0, 0, 1];
const DIRECT: [u8; 4] = [127, 0, 0, 2];

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A server trusting 127.0.0.1 as a front speaking `protocol`.
fn fronted(prefix: &'static str, protocol: ProxyProtocol) -> netcore::Config {
    let mut cfg = config(prefix);
    cfg.proxy = ProxyConfig {
        protocol,
        trusted: vec!["127.0.0.1/32".parse().unwrap()],
        header_timeout: Duration::from_secs(10),
    };
    cfg
}

fn header_for(version: Version, client: &str, h: &Harness) -> Vec<u8> {
    header::encode(version, addr(client), h.addr).unwrap()
}

/// The peer of the only live session.
fn only_peer(h: &Harness) -> SocketAddr {
    let live = h.handler.live.lock();
    assert_eq!(live.len(), 1, "one live session");
    live.values().next().unwrap().peer()
}

async fn echo_line(stream: &mut TcpStream, line: &[u8]) {
    stream.write_all(line).await.unwrap();
    let mut back = vec![0; line.len()];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut back))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(back, line);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_header_names_the_peer_and_bytes_after_it_are_delivered() {
    let h = start(fronted("px_ok_", ProxyProtocol::Any)).await;
    for (version, client) in [
        (Version::V1, "192.0.2.7:40000"),
        (Version::V2, "[2001:db8::7]:40001"),
        (Version::V2, "[::ffff:192.0.2.8]:40002"),
    ] {
        let mut front = connect_from(FRONT, h.addr).await;
        // Header and the client's first bytes in one write: nothing may be lost.
        let mut first = header_for(version, client, &h);
        first.extend_from_slice(b"hello\n");
        front.write_all(&first).await.unwrap();
        let mut back = [0u8; 6];
        tokio::time::timeout(Duration::from_secs(10), front.read_exact(&mut back))
            .await
            .expect("the bytes after the header are echoed")
            .unwrap();
        assert_eq!(&back, b"hello\n");
        let expected = addr(client);
        let expected = SocketAddr::new(expected.ip().to_canonical(), expected.port());
        assert_eq!(only_peer(&h), expected, "{version:?}");
        echo_line(&mut front, b"more\n").await;
        drop(front);
        eventually("closed", || h.handler.live.lock().is_empty()).await;
    }
    assert_eq!(h.counter("opened_total", None), 3);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_trickled_byte_by_byte_is_read_whole() {
    let h = start(fronted("px_trickle_", ProxyProtocol::Any)).await;
    for version in [Version::V1, Version::V2] {
        let mut front = connect_from(FRONT, h.addr).await;
        front.set_nodelay(true).unwrap();
        let header = header_for(version, "192.0.2.9:5000", &h);
        let (last, most) = header.split_last().unwrap();
        let opened = h.handler.opened();
        for byte in most {
            front.write_all(&[*byte]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            h.handler.opened(),
            opened,
            "no session before the header is whole"
        );
        front.write_all(&[*last]).await.unwrap();
        echo_line(&mut front, b"after\n").await;
        assert_eq!(only_peer(&h), addr("192.0.2.9:5000"));
        drop(front);
        eventually("closed", || h.handler.live.lock().is_empty()).await;
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_peer_is_judged_by_its_own_address_and_its_header_is_data() {
    let h = start(fronted("px_untrusted_", ProxyProtocol::Any)).await;
    let mut direct = connect_from(DIRECT, h.addr).await;
    // The echo handler returns whole lines: the forged header comes back as data.
    echo_line(&mut direct, b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 7000\r\n").await;
    assert_eq!(only_peer(&h).ip(), std::net::IpAddr::from(DIRECT));
    drop(direct);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_missing_and_truncated_headers_are_refused_before_on_open() {
    let h = start(fronted("px_bad_", ProxyProtocol::V1)).await;
    let cases: [(&[u8], &str); 5] = [
        (b"hello\n", "proxy_header_missing"),
        (
            b"PROXY TCP4 192.0.2.7 10.0.0.1 040000 7000\r\nhello\n",
            "proxy_header_invalid",
        ),
        (&[b'P'; 1][..], "proxy_header_invalid"),
        (
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c",
            "proxy_header_invalid",
        ),
        (b"", "proxy_header_missing"),
    ];
    for (i, (bytes, reason)) in cases.iter().enumerate() {
        let mut front = connect_from(FRONT, h.addr).await;
        front.write_all(bytes).await.unwrap();
        if *bytes == b"P" || bytes.is_empty() {
            // Truncated / nothing at all: the front gives up and closes its side.
            front.shutdown().await.unwrap();
        }
        assert!(is_rejected(&mut front).await, "case {i}");
        eventually("counted", || h.counter("rejected_total", Some(reason)) >= 1).await;
    }
    assert_eq!(h.counter("rejected_total", Some("proxy_header_missing")), 2);
    assert_eq!(h.counter("rejected_total", Some("proxy_header_invalid")), 3);
    assert_eq!(
        h.handler.opened(),
        0,
        "no refused connection reached on_open"
    );
    assert_eq!(h.counter("accepted_total", None), 5);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_front_connection_times_out() {
    let mut cfg = fronted("px_timeout_", ProxyProtocol::V2);
    cfg.proxy.header_timeout = Duration::from_millis(200);
    let h = start(cfg).await;
    let mut front = connect_from(FRONT, h.addr).await;
    front
        .write_all(&header_for(Version::V2, "192.0.2.7:1", &h)[..10])
        .await
        .unwrap();
    assert!(is_rejected(&mut front).await);
    assert_eq!(h.counter("rejected_total", Some("proxy_header_timeout")), 1);
    assert_eq!(h.handler.opened(), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_and_unknown_headers_close_quietly_without_a_session() {
    let h = start(fronted("px_local_", ProxyProtocol::Any)).await;
    for bytes in [
        header::encode_local().unwrap(),
        b"PROXY UNKNOWN\r\n".to_vec(),
    ] {
        let mut front = connect_from(FRONT, h.addr).await;
        front.write_all(&bytes).await.unwrap();
        assert!(is_rejected(&mut front).await);
    }
    // A header naming the front's own connection (HAProxy's v1 health checks).
    let mut front = connect_from(FRONT, h.addr).await;
    let own = front.local_addr().unwrap();
    front
        .write_all(&header::encode(Version::V1, own, h.addr).unwrap())
        .await
        .unwrap();
    assert!(is_rejected(&mut front).await);
    eventually("counted", || {
        h.counter("rejected_total", Some("proxy_local")) == 3
    })
    .await;
    assert_eq!(h.handler.opened(), 0);
    // A relayed client whose address happens to equal the front's end (client and
    // front on one host) connected to the front, not to us: a session.
    let mut front = connect_from(FRONT, h.addr).await;
    let own = front.local_addr().unwrap();
    let relayed = header::encode(Version::V1, own, addr("127.0.0.1:1")).unwrap();
    front.write_all(&relayed).await.unwrap();
    echo_line(&mut front, b"more\n").await;
    assert_eq!(only_peer(&h), own);
    drop(front);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_sources_refuses_outsiders_before_anything_else() {
    let mut cfg = fronted("px_allow_", ProxyProtocol::V1);
    cfg.allow_sources = vec!["127.0.0.1/32".parse().unwrap()];
    let h = start(cfg).await;
    assert!(refused(try_connect_from(DIRECT, h.addr).await).await);
    assert_eq!(h.counter("rejected_total", Some("source_not_allowed")), 1);
    assert_eq!(h.handler.opened(), 0);
    let mut front = connect_from(FRONT, h.addr).await;
    let mut first = header_for(Version::V1, "127.0.0.2:9", &h);
    first.extend_from_slice(b"in\n");
    front.write_all(&first).await.unwrap();
    let mut back = [0u8; 3];
    tokio::time::timeout(Duration::from_secs(10), front.read_exact(&mut back))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(
        only_peer(&h),
        addr("127.0.0.2:9"),
        "the carried address is not re-checked"
    );
    drop(front);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_judges_the_carried_address_and_exempts_the_front() {
    let mut cfg = fronted("px_adm_", ProxyProtocol::V2);
    cfg.max_conn_per_ip = 1;
    // Two connections per client address per burst, one live at a time.
    cfg.conn_rate_per_ip = 1;
    cfg.conn_burst_per_ip = 2;
    let h = start(cfg).await;
    h.admission
        .block(IpNet::from(std::net::IpAddr::from([192, 0, 2, 66])), None);
    let via_front = |client: &'static str| {
        let header = header_for(Version::V2, client, &h);
        let to = h.addr;
        async move {
            let mut s = connect_from(FRONT, to).await;
            s.write_all(&header).await.unwrap();
            s
        }
    };
    // Four clients through one front, from one front address: all admitted.
    let mut held = Vec::new();
    for client in [
        "192.0.2.1:1",
        "192.0.2.2:1",
        "192.0.2.3:1",
        "[::ffff:192.0.2.4]:1",
    ] {
        let mut s = via_front(client).await;
        echo_line(&mut s, b"x\n").await;
        held.push(s);
    }
    assert_eq!(h.handler.opened(), 4);
    assert_eq!(
        h.admission.connections_from("127.0.0.1".parse().unwrap()),
        0
    );
    assert_eq!(
        h.admission.connections_from("192.0.2.4".parse().unwrap()),
        1
    );
    // Per-IP cap and rate apply to the client; the block list too.
    let mut again = via_front("192.0.2.1:2").await;
    assert!(is_rejected(&mut again).await);
    let mut blocked = via_front("192.0.2.66:1").await;
    assert!(is_rejected(&mut blocked).await);
    drop(held.remove(0));
    eventually("192.0.2.1 released", || {
        h.admission.connections_from("192.0.2.1".parse().unwrap()) == 0
    })
    .await;
    let mut too_soon = via_front("192.0.2.1:3").await;
    assert!(
        is_rejected(&mut too_soon).await,
        "rate limit of the client's address"
    );
    assert_eq!(h.counter("rejected_total", Some("per_ip_limit")), 1);
    assert_eq!(h.counter("rejected_total", Some("blocked")), 1);
    assert_eq!(h.counter("rejected_total", Some("rate_limited")), 1);
    assert_eq!(h.handler.opened(), 4);
    drop(held);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_headers_are_bounded_by_max_connections_and_end_on_shutdown() {
    let mut cfg = fronted("px_cap_", ProxyProtocol::V1);
    cfg.max_connections = 2;
    cfg.proxy.header_timeout = Duration::from_secs(3600);
    let h = start(cfg).await;
    let _a = connect_from(FRONT, h.addr).await;
    let _b = connect_from(FRONT, h.addr).await;
    eventually("two accepted", || h.counter("accepted_total", None) == 2).await;
    assert!(refused(try_connect_from(FRONT, h.addr).await).await);
    assert_eq!(h.counter("rejected_total", Some("max_connections")), 1);
    // Shutdown does not wait for the header timeout.
    h.stop().await;
}

#[tokio::test]
async fn contradictory_settings_are_refused_at_bind() {
    let mut cfg = config("px_cfg_");
    cfg.proxy.trusted = vec!["10.0.0.0/8".parse().unwrap()];
    let err = netcore::Server::bind(cfg, std::sync::Arc::new(Echo::default()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("proxy.trusted"), "{err}");
    let mut cfg = config("px_cfg2_");
    cfg.proxy.protocol = ProxyProtocol::V2;
    let err = netcore::Server::bind(cfg, std::sync::Arc::new(Echo::default()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("proxy.trusted is empty"), "{err}");
}
