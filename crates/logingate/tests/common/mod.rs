//! Test helpers: a scripted LoginSrv (a plain listener reading and writing
//! raw bytes), game clients, and a gate started in-process on loopback.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod http;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use logingate::app::Gate;
use logingate::config::{Config, Dialect};
use mir2_proto::MsgHeader;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long any single expected event may take before the test fails.
pub const STEP: Duration = Duration::from_secs(5);

/// A gate config for tests: loopback, ephemeral port, no per-IP limits (every
/// test client is 127.0.0.1), long heartbeats so frames are deterministic.
pub fn test_config(server: SocketAddr, dialect: Dialect) -> Config {
    let mut c = Config::default();
    c.gate.listen = vec!["127.0.0.1:0".parse().unwrap()];
    c.gate.max_conn_per_ip = 0;
    c.gate.conn_rate_per_ip = 0;
    c.gate.max_packets_per_sec = 10_000;
    // Every test speaks from 127.0.0.1: no block nor attack mode may outlive a test's
    // deliberate offence (tests of those defences turn them back on).
    c.gate.punish = logingate::punish::PunishConfig::all(logingate::punish::Punishment::Disconnect);
    c.gate.attack.enter_conn_rate = 0;
    c.gate.shutdown_grace_secs = 2;
    c.server.addr = Some(server);
    c.server.dialect = dialect;
    c.server.heartbeat_secs = 30;
    c.server.dead_after_secs = 60;
    c.server.reconnect_max_secs = 1;
    // Tests run side by side: no console unless a test asks for one (on port 0).
    c.admin.listen = String::new();
    c
}

/// Start a gate and wait for its link to be up.
pub async fn start_gate(config: Config) -> Gate {
    let gate = Gate::start(config).await.expect("gate starts");
    gate
}

pub fn gate_addr(gate: &Gate) -> SocketAddr {
    gate.local_addrs()[0]
}

/// The scripted LoginSrv's listening side.
pub struct Srv {
    pub listener: TcpListener,
}

impl Srv {
    pub async fn bind() -> Srv {
        Srv {
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    pub async fn bind_at(addr: SocketAddr) -> Srv {
        Srv {
            listener: TcpListener::bind(addr).await.unwrap(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap()
    }

    /// Accept the gate's link.
    pub async fn accept(&self) -> SrvConn {
        let (stream, _) = tokio::time::timeout(STEP, self.listener.accept())
            .await
            .expect("gate connects to the LoginSrv in time")
            .unwrap();
        SrvConn {
            stream,
            buf: BytesMut::new(),
        }
    }
}

/// One link connection as seen by the scripted LoginSrv.
pub struct SrvConn {
    pub stream: TcpStream,
    pub buf: BytesMut,
}

impl SrvConn {
    /// The next frame, exact bytes from `%` to `$`. The gate writes frames
    /// back to back, so anything else in between is a failure.
    pub async fn frame(&mut self) -> Vec<u8> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'$') {
                assert_eq!(
                    self.buf.first(),
                    Some(&b'%'),
                    "gate wrote bytes outside a frame: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
                let f = self.buf.split_to(end + 1).to_vec();
                return f;
            }
            let n = tokio::time::timeout(STEP, self.stream.read_buf(&mut self.buf))
                .await
                .expect("a frame from the gate in time")
                .unwrap();
            assert!(
                n > 0,
                "link closed while waiting for a frame; have {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// The next frame that is not a heartbeat.
    pub async fn frame_no_hb(&mut self) -> Vec<u8> {
        loop {
            let f = self.frame().await;
            if f != b"%--$" {
                return f;
            }
        }
    }

    /// Next frame as text (the gate only writes ASCII).
    pub async fn text(&mut self) -> String {
        String::from_utf8(self.frame().await).unwrap()
    }

    /// The next frame must be an open frame; returns the session id.
    pub async fn open_id(&mut self) -> u32 {
        let f = self.text().await;
        open_id(&f)
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Nothing arrives for `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        assert!(
            self.buf.is_empty(),
            "unexpected bytes {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        match tokio::time::timeout(d, self.stream.read_buf(&mut self.buf)).await {
            Err(_) => {}
            Ok(r) => panic!(
                "expected silence, got {:?} {:?}",
                r,
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// The gate closes the link (EOF or reset), possibly after more frames;
    /// returns the frames received before the end.
    pub async fn frames_until_eof(&mut self) -> Vec<String> {
        let mut frames = Vec::new();
        loop {
            while let Some(end) = self.buf.iter().position(|&b| b == b'$') {
                frames.push(String::from_utf8(self.buf.split_to(end + 1).to_vec()).unwrap());
            }
            match tokio::time::timeout(STEP, self.stream.read_buf(&mut self.buf))
                .await
                .expect("link ends in time")
            {
                Ok(0) | Err(_) => {
                    assert!(self.buf.is_empty(), "partial frame at EOF");
                    return frames;
                }
                Ok(_) => {}
            }
        }
    }
}

/// The id of an open frame `%O<id>/…$`, `%N<id>/…$` or `%L<id>/…$`.
pub fn open_id(frame: &str) -> u32 {
    assert!(
        ["%O", "%N", "%L"].iter().any(|p| frame.starts_with(p)),
        "not an open frame: {frame:?}"
    );
    let rest = &frame[2..];
    let end = rest.find('/').expect("open frame has '/'");
    rest[..end].parse().expect("numeric id")
}

/// A client message `#1<header>!` whose header carries `n` (so every
/// client's message is distinct).
pub fn client_msg(n: i32) -> Vec<u8> {
    let mut m = b"#1".to_vec();
    m.extend_from_slice(&MsgHeader::new(2001, n, 0, 0, 0).encode());
    m.extend_from_slice(b"YSIaX^ylTSIo!");
    m
}

/// A server message `#<header>!` carrying `n`.
pub fn server_msg(n: i32) -> Vec<u8> {
    let mut m = b"#".to_vec();
    m.extend_from_slice(&MsgHeader::new(530, n, 0, 0, 0).encode());
    m.push(b'!');
    m
}

/// The PROTOCOL.md login example.
pub const LOGIN: &[u8] = b"#1<<<<<I@C<<<<<<<<YSIaX^ylTSIo!";
/// The PROTOCOL.md server reply example.
pub const REPLY: &[u8] = b"#JO<<<=D><<<<<<<<HODsG_<jH>tmGoXmH?<kHODoI?P!";

pub async fn connect(addr: SocketAddr) -> TcpStream {
    let s = tokio::time::timeout(STEP, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Read exactly `n` bytes.
pub async fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    tokio::time::timeout(STEP, s.read_exact(&mut v))
        .await
        .expect("client data in time")
        .unwrap();
    v
}

/// Read until the gate closes the connection; returns what arrived first.
pub async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut all = BytesMut::new();
    loop {
        match tokio::time::timeout(STEP, s.read_buf(&mut all))
            .await
            .expect("gate closes the client in time")
        {
            Ok(0) | Err(_) => return all.chunk().to_vec(),
            Ok(_) => {}
        }
    }
}

/// The connection stays open and silent for `d`.
pub async fn expect_open(s: &mut TcpStream, d: Duration) {
    let mut b = [0u8; 64];
    if let Ok(r) = tokio::time::timeout(d, s.read(&mut b)).await {
        panic!("expected an open, silent connection, got {r:?}");
    }
}

/// Wait until `f` holds, polling; panics after `STEP`.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + STEP;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A gate linked to a fresh scripted LoginSrv, link up.
pub async fn gate_with_srv(
    tune: impl FnOnce(&mut Config),
    dialect: Dialect,
) -> (Gate, Srv, SrvConn) {
    let srv = Srv::bind().await;
    let mut config = test_config(srv.addr(), dialect);
    tune(&mut config);
    let gate = start_gate(config).await;
    let conn = srv.accept().await;
    assert!(gate.wait_link_up(STEP).await, "link up");
    (gate, srv, conn)
}
