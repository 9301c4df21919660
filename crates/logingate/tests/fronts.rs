//! The gate behind a real HAProxy speaking the PROXY protocol (`send-proxy` and
//! `send-proxy-v2`), clients bound to distinct loopback addresses: the LoginSrv sees
//! each client's own address, limits and blocks hit the client and not HAProxy, health
//! checks create no session; and without a trusted front nobody can claim an address.
//! HAProxy tests print "skipped: haproxy not installed" and pass when it is absent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use logingate::config::{Dialect, ProxyProtocol};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// HAProxy in the foreground (`-db`) on an ephemeral loopback port; killed on drop.
struct HaProxy {
    /// The haproxy process.
    child: Child,
    /// Where clients connect.
    addr: SocketAddr,
    /// Holds the generated haproxy.cfg.
    _dir: tempfile::TempDir,
}

impl HaProxy {
    /// `None` when haproxy is not installed.
    fn start(gate: SocketAddr, send_proxy: &str) -> Option<HaProxy> {
        if Command::new("haproxy").arg("-v").output().is_err() {
            println!("skipped: haproxy not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("haproxy.cfg");
        // The port is free when we let it go; another process may take it before
        // HAProxy binds, in which case HAProxy exits and we try another one.
        for _ in 0..10 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            std::fs::write(&cfg, haproxy_cfg(port, gate, send_proxy)).unwrap();
            let mut child = Command::new("haproxy")
                .arg("-db")
                .arg("-f")
                .arg(&cfg)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn haproxy");
            let deadline = std::time::Instant::now() + STEP;
            while std::time::Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break; // bind failed: next port
                }
                if is_listening(port) {
                    return Some(HaProxy {
                        child,
                        addr: SocketAddr::from(([127, 0, 0, 1], port)),
                        _dir: dir,
                    });
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("haproxy did not start");
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// TCP mode; the gate is the only server, with HAProxy's TCP health checks, which
/// carry the PROXY header too (`check-send-proxy`: v2 LOCAL, v1 UNKNOWN).
fn haproxy_cfg(port: u16, gate: SocketAddr, send_proxy: &str) -> String {
    format!(
        "global\n    maxconn 200\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\
         frontend clients\n    bind 127.0.0.1:{port}\n    default_backend gate\n\
         backend gate\n    server gate {gate} {send_proxy} check check-send-proxy inter 100ms\n"
    )
}

/// Whether something listens on 127.0.0.1:`port` (read from /proc, so probing does
/// not open a connection that HAProxy would relay to the gate).
fn is_listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == want && f[3] == "0A"
        })
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A client bound to `source` before connecting.
async fn connect_from(source: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let s = tokio::time::timeout(STEP, socket.connect(to))
        .await
        .expect("connect in time")
        .unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// The open frame for `ip` (Wemade: `%O<id>/<ip>$`); returns the id.
async fn open_from(link: &mut SrvConn, ip: IpAddr) -> u32 {
    let frame = link.text().await;
    let id = open_id(&frame);
    assert_eq!(
        frame,
        format!("%O{id}/{ip}$"),
        "open frame names the client"
    );
    id
}

async fn behind_haproxy(mode: ProxyProtocol, send_proxy: &str) {
    let (gate, _srv, mut link) = gate_with_srv(
        |c| {
            c.gate.proxy_protocol = mode;
            c.gate.trusted_proxies = vec!["127.0.0.1".into()];
            c.gate.max_conn_per_ip = 1;
            c.gate.temp_block_secs = 60;
        },
        Dialect::Wemade,
    )
    .await;
    let Some(haproxy) = HaProxy::start(gate_addr(&gate), send_proxy) else {
        gate.shutdown().await;
        return;
    };
    // Health checks are running (every 100 ms) and must announce nothing.
    link.expect_silence(Duration::from_millis(400)).await;

    // Each client's own address, though all arrive from HAProxy's 127.0.0.1.
    let mut a = connect_from(loopback(2), haproxy.addr).await;
    let id_a = open_from(&mut link, loopback(2)).await;
    let mut b = connect_from(loopback(3), haproxy.addr).await;
    let id_b = open_from(&mut link, loopback(3)).await;
    a.write_all(&client_msg(1)).await.unwrap();
    assert_eq!(
        link.text().await,
        format!("%A{id_a}/{}$", String::from_utf8(client_msg(1)).unwrap())
    );

    // The per-IP cap (1) holds per client, not for HAProxy (already 2 connections).
    let mut a2 = connect_from(loopback(2), haproxy.addr).await;
    assert!(
        read_to_close(&mut a2).await.is_empty(),
        "second from 127.0.0.2 refused"
    );
    let mut c = connect_from(loopback(4), haproxy.addr).await;
    let id_c = open_from(&mut link, loopback(4)).await;
    assert_eq!(gate.admission().connections_from(loopback(2)), 1);
    assert_eq!(gate.admission().connections_from(loopback(1)), 0);

    // A %+B blocks the client's address, not HAProxy's.
    link.send(format!("%+B{id_a}$").as_bytes()).await;
    assert!(read_to_close(&mut a).await.is_empty());
    assert_eq!(link.text().await, format!("%X{id_a}$"));
    assert!(gate.admission().is_blocked(loopback(2)));
    assert!(!gate.admission().is_blocked(loopback(1)));
    let mut a3 = connect_from(loopback(2), haproxy.addr).await;
    assert!(
        read_to_close(&mut a3).await.is_empty(),
        "blocked client refused"
    );
    let mut d = connect_from(loopback(5), haproxy.addr).await;
    let id_d = open_from(&mut link, loopback(5)).await;

    // Still exactly the three sessions; closing them closes theirs only.
    assert_eq!(gate.sessions().len(), 3);
    for (client, id) in [(&mut b, id_b), (&mut c, id_c), (&mut d, id_d)] {
        client.shutdown().await.unwrap();
        assert_eq!(link.text().await, format!("%X{id}$"));
    }
    link.expect_silence(Duration::from_millis(300)).await;
    drop(haproxy);
    gate.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_haproxy_send_proxy_v1() {
    behind_haproxy(ProxyProtocol::V1, "send-proxy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_haproxy_send_proxy_v2() {
    behind_haproxy(ProxyProtocol::V2, "send-proxy-v2").await;
}

/// A front's own connection (v2 LOCAL, as health checks send) is no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_local_from_the_front_creates_no_session() {
    let (gate, _srv, mut link) = gate_with_srv(
        |c| {
            c.gate.proxy_protocol = ProxyProtocol::Any;
            c.gate.trusted_proxies = vec!["127.0.0.1".into()];
        },
        Dialect::Wemade,
    )
    .await;
    let mut front = connect_from(loopback(1), gate_addr(&gate)).await;
    front
        .write_all(&netcore::proxy::header::encode_local().unwrap())
        .await
        .unwrap();
    assert!(read_to_close(&mut front).await.is_empty());
    link.expect_silence(Duration::from_millis(200)).await;
    assert!(gate.sessions().is_empty());
    gate.shutdown().await;
}

/// A direct client cannot claim an address: its `PROXY` line is bytes of its stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_header_from_an_untrusted_address_is_not_believed() {
    let (gate, _srv, mut link) = gate_with_srv(
        |c| {
            c.gate.proxy_protocol = ProxyProtocol::V1;
            c.gate.trusted_proxies = vec!["127.0.0.1".into()];
        },
        Dialect::Wemade,
    )
    .await;
    let mut forger = connect_from(loopback(6), gate_addr(&gate)).await;
    let id = open_from(&mut link, loopback(6)).await;
    forger
        .write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 7000\r\n")
        .await
        .unwrap();
    assert!(read_to_close(&mut forger).await.is_empty());
    assert_eq!(link.text().await, format!("%X{id}$"));
    assert_eq!(gate.counts().closed("forbidden_byte"), 1);
    link.expect_silence(Duration::from_millis(200)).await;
    gate.shutdown().await;
}

/// With `allow_sources`, an outsider is refused before any session exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_sources_refuses_outsiders_before_any_session() {
    let (gate, _srv, mut link) = gate_with_srv(
        |c| c.gate.allow_sources = vec!["127.0.0.7/32".into()],
        Dialect::Wemade,
    )
    .await;
    let mut outsider = connect_from(loopback(8), gate_addr(&gate)).await;
    assert!(read_to_close(&mut outsider).await.is_empty());
    link.expect_silence(Duration::from_millis(200)).await;
    assert!(gate.sessions().is_empty());
    let _insider = connect_from(loopback(7), gate_addr(&gate)).await;
    open_from(&mut link, loopback(7)).await;
    gate.shutdown().await;
}
