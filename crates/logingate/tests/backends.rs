//! A gate linked to several LoginSrvs: clients spread by live sessions, a
//! lost backend closes only its own sessions, a restarted one takes clients
//! again, per-backend dialects; and what a link tells of a LoginSrv that
//! refuses the gate or reads none of its frames.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use logingate::app::Gate;
use logingate::config::{BackendConfig, Config, Dialect};
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Every frame one link connection carried, in order.
type Frames = Arc<Mutex<Vec<String>>>;

/// A scripted LoginSrv connection run in the background: it sends `%++$`
/// at once (so the link counts as answered), answers heartbeats, optionally
/// echoes each client message back as a reply, and records every frame.
struct Backend {
    frames: Frames,
    task: JoinHandle<()>,
}

impl Backend {
    fn run(mut conn: SrvConn, echo: bool) -> Backend {
        let frames: Frames = Arc::default();
        let record = frames.clone();
        let task = tokio::spawn(async move {
            conn.send(b"%++$").await;
            loop {
                let f = match tokio::time::timeout(Duration::from_secs(60), conn.frame_or_eof())
                    .await
                {
                    Ok(Some(f)) => String::from_utf8(f).unwrap(),
                    _ => return,
                };
                if f == "%--$" {
                    conn.send(b"%++$").await;
                } else if echo && (f.starts_with("%A") || f.starts_with("%D")) {
                    let slash = f.find('/').unwrap();
                    let reply = format!("%{}/{}", &f[2..slash], &f[slash + 1..]);
                    conn.send(reply.as_bytes()).await;
                }
                record.lock().push(f);
            }
        });
        Backend { frames, task }
    }

    /// Ids of the open and close frames so far, with how often each came.
    fn opens_and_closes(&self) -> (BTreeMap<u32, u32>, BTreeMap<u32, u32>) {
        opens_and_closes(&self.frames)
    }

    /// Stop answering: the connection closes (a LoginSrv killed).
    async fn kill(self) -> Frames {
        self.task.abort();
        let _ = self.task.await;
        self.frames
    }
}

/// Ids of the open and close frames in `frames`, with how often each came.
fn opens_and_closes(frames: &Frames) -> (BTreeMap<u32, u32>, BTreeMap<u32, u32>) {
    {
        let (mut opens, mut closes) = (BTreeMap::new(), BTreeMap::new());
        for f in frames.lock().iter() {
            let id = |s: &str| -> u32 {
                s[2..]
                    .trim_end_matches('$')
                    .split('/')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            if f.starts_with("%O") || f.starts_with("%N") || f.starts_with("%L") {
                *opens.entry(id(f)).or_default() += 1;
            } else if f.starts_with("%X") || f.starts_with("%C") {
                *closes.entry(id(f)).or_default() += 1;
            }
        }
        (opens, closes)
    }
}

/// Frames read by [`Backend`]: like `SrvConn::frame`, `None` at EOF.
trait FrameOrEof {
    async fn frame_or_eof(&mut self) -> Option<Vec<u8>>;
}

impl FrameOrEof for SrvConn {
    async fn frame_or_eof(&mut self) -> Option<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'$') {
                return Some(self.buf.split_to(end + 1).to_vec());
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

fn two_backends(a: SocketAddr, b: SocketAddr) -> Config {
    let mut c = test_config(a, Dialect::Wemade);
    c.server.addr = vec![a, b];
    c
}

/// Connect `n` clients at once and wait until the gate has opened all of them
/// on a link.
async fn connect_many(gate: &Gate, n: usize) -> Vec<TcpStream> {
    let before = gate.links().live_sessions();
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(connect(gate_addr(gate)).await);
    }
    eventually("clients opened", || {
        gate.links().live_sessions() == before + n
    })
    .await;
    clients
}

/// Connect `n` clients one after the other, each opened before the next
/// connects (so each choice sees the one before); session ids follow their order.
async fn connect_one_by_one(gate: &Gate, n: usize) -> Vec<TcpStream> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.extend(connect_many(gate, 1).await);
    }
    clients
}

fn live(gate: &Gate) -> Vec<usize> {
    gate.links()
        .links()
        .iter()
        .map(|l| l.live_sessions())
        .collect()
}

async fn answered(gate: &Gate) {
    eventually("every link answered", || {
        gate.links().links().iter().all(|l| l.is_answered())
    })
    .await;
}

#[tokio::test]
async fn new_clients_go_to_the_backend_with_the_fewest_sessions() {
    let (srv_a, srv_b) = (Srv::bind().await, Srv::bind().await);
    let gate = start_gate(two_backends(srv_a.addr(), srv_b.addr())).await;
    let a = Backend::run(srv_a.accept().await, false);
    let b = Backend::run(srv_b.accept().await, false);
    answered(&gate).await;

    let mut clients = connect_one_by_one(&gate, 10).await;
    assert_eq!(live(&gate), [5, 5], "ties alternate");

    // Four of A's clients leave: the next four clients all go to A.
    eventually("open frames", || a.opens_and_closes().0.len() == 5).await;
    let (a_opens, _) = a.opens_and_closes();
    let a_ids: Vec<u32> = a_opens.keys().copied().collect();
    let first = gate.sessions().ids().iter().map(|s| s.get()).min().unwrap();
    let mut left = 0;
    let mut kept = Vec::new();
    for (i, c) in clients.drain(..).enumerate() {
        let id = first + i as u32;
        if left < 4 && a_ids.contains(&id) {
            drop(c);
            left += 1;
        } else {
            kept.push(c);
        }
    }
    assert_eq!(left, 4);
    eventually("closes seen", || live(&gate) == [1, 5]).await;
    let _more = connect_one_by_one(&gate, 4).await;
    assert_eq!(live(&gate), [5, 5]);
    eventually("close frames", || a.opens_and_closes().1.len() == 4).await;
    let (_, a_closes) = a.opens_and_closes();
    assert_eq!(a_closes.len(), 4);
    let (b_opens, b_closes) = b.opens_and_closes();
    assert_eq!((b_opens.len(), b_closes.len()), (5, 0));
    gate.shutdown().await;
}

#[tokio::test]
async fn a_killed_backend_closes_only_its_sessions_and_takes_clients_again_after_restart() {
    const CLIENTS: usize = 500;
    let (srv_a, srv_b) = (Srv::bind().await, Srv::bind().await);
    let a_addr = srv_a.addr();
    let gate = start_gate(two_backends(a_addr, srv_b.addr())).await;
    let a = Backend::run(srv_a.accept().await, false);
    let b = Backend::run(srv_b.accept().await, false);
    answered(&gate).await;

    let clients = connect_many(&gate, CLIENTS).await;
    let spread = live(&gate);
    // Opens racing each other may both see the same counts; least-sessions
    // corrects it at once.
    assert!(spread[0].abs_diff(spread[1]) <= 20, "{spread:?}");
    let (on_a, on_b) = (spread[0], spread[1]);
    eventually("every open frame arrived", || {
        a.opens_and_closes().0.len() + b.opens_and_closes().0.len() == CLIENTS
    })
    .await;

    // Kill A (its listener too, so the link cannot come back yet).
    drop(srv_a);
    let a_first = a.kill().await;
    eventually("A's sessions closed", || gate.sessions().len() == on_b).await;
    assert_eq!(gate.counts().closed("server_lost"), on_a as u64);
    assert!(!gate.links().links()[0].is_up());
    assert_eq!(live(&gate), [0, on_b], "B's sessions untouched");
    // Every client of A sees its connection end (ids follow the connect order).
    let (a_opens, _) = opens_and_closes(&a_first);
    let first = gate.sessions().ids().iter().map(|s| s.get()).min().unwrap();
    let first = first.min(*a_opens.keys().next().unwrap());
    let mut still_open = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        if a_opens.contains_key(&(first + i as u32)) {
            assert!(read_to_close(&mut c).await.is_empty());
        } else {
            still_open.push(c);
        }
    }
    assert_eq!(still_open.len(), on_b);

    // While A is down, new clients go to B.
    let more = connect_many(&gate, 20).await;
    assert_eq!(live(&gate), [0, on_b + 20]);

    // Restart A: it gets new clients again (it has the fewest).
    let srv_a = Srv::bind_at(a_addr).await;
    let a2 = Backend::run(srv_a.accept().await, false);
    answered(&gate).await;
    let after = connect_many(&gate, 10).await;
    assert_eq!(live(&gate), [10, on_b + 20]);

    // Orderly shutdown: every session still open sends its close frame to
    // the backend that got its open.
    gate.shutdown().await;
    drop((still_open, more, after));
    let b_frames = b.kill().await;
    let a2_frames = a2.kill().await;
    let (a_opens, a_closes) = opens_and_closes(&a_first);
    let (b_opens, b_closes) = opens_and_closes(&b_frames);
    let (a2_opens, a2_closes) = opens_and_closes(&a2_frames);
    assert_eq!(a_opens.len(), on_a);
    assert!(
        a_closes.is_empty(),
        "no close frame for a lost link's sessions"
    );
    assert_eq!(b_opens.len(), on_b + 20);
    assert_eq!(
        b_opens, b_closes,
        "every open on B closed exactly once on B"
    );
    assert_eq!(a2_opens.len(), 10);
    assert_eq!(
        a2_opens, a2_closes,
        "every open on A's new link closed on it"
    );
    assert!(
        a_opens
            .keys()
            .all(|id| !b_opens.contains_key(id) && !a2_opens.contains_key(id)),
        "a session belongs to one link"
    );
}

#[tokio::test]
async fn each_backend_speaks_its_own_dialect() {
    let (srv_a, srv_b) = (Srv::bind().await, Srv::bind().await);
    let mut c = test_config(srv_a.addr(), Dialect::Delphi);
    c.server.addr = Vec::new();
    c.server.backends = vec![
        BackendConfig {
            addr: srv_a.addr(),
            dialect: Some(Dialect::Wemade),
            frames: Default::default(),
        },
        BackendConfig {
            addr: srv_b.addr(),
            dialect: Some(Dialect::HappyM2),
            frames: Default::default(),
        },
    ];
    let gate = start_gate(c).await;
    let a = Backend::run(srv_a.accept().await, true);
    let b = Backend::run(srv_b.accept().await, true);
    answered(&gate).await;
    let mut clients = connect_one_by_one(&gate, 2).await;
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(&client_msg(i as i32)).await.unwrap();
    }
    // Each backend echoes the message back as a reply in its own dialect.
    for c in &mut clients {
        let msg = read_n(c, client_msg(0).len()).await;
        assert!(msg.starts_with(b"#1"), "{msg:?}");
    }
    let a_frames = a.frames.lock().clone();
    let b_frames = b.frames.lock().clone();
    assert!(
        a_frames[0].starts_with("%O") && a_frames[0].matches('/').count() == 1,
        "{a_frames:?}"
    );
    assert!(a_frames[1].starts_with("%A"), "{a_frames:?}");
    assert!(
        b_frames[0].starts_with("%N") && b_frames[0].matches('/').count() == 2,
        "{b_frames:?}"
    );
    assert!(b_frames[1].starts_with("%D"), "{b_frames:?}");
    gate.shutdown().await;
}

#[tokio::test]
async fn with_no_backend_up_clients_are_refused() {
    let (srv_a, srv_b) = (Srv::bind().await, Srv::bind().await);
    let gate = start_gate(two_backends(srv_a.addr(), srv_b.addr())).await;
    let a = Backend::run(srv_a.accept().await, false);
    let b = Backend::run(srv_b.accept().await, false);
    answered(&gate).await;
    drop((srv_a, srv_b));
    a.kill().await;
    b.kill().await;
    eventually("both links down", || !gate.links().is_up()).await;
    let mut c = connect(gate_addr(&gate)).await;
    assert!(is_rejected(&mut c).await);
    assert_eq!(gate.counts().refused("server_unavailable"), 1);
}

#[tokio::test]
async fn the_link_is_up_at_the_loginsrv_s_first_frame() {
    let (gate, _srv, mut link) = gate_with_srv(|_| {}, Dialect::Wemade).await;
    assert!(gate.link().is_up(), "connected: clients may open");
    assert!(!gate.link().is_answered());
    link.send(b"%++$").await;
    eventually("answered", || gate.link().is_answered()).await;
    assert_eq!(gate.link().stats().early_closes, 0);
}

#[tokio::test]
async fn a_loginsrv_that_closes_at_once_is_counted_as_refusing_the_gate() {
    let srv = Srv::bind().await;
    let gate = start_gate(test_config(srv.addr(), Dialect::Delphi)).await;
    drop(srv.accept().await);
    eventually("early close counted", || {
        gate.link().stats().early_closes == 1
    })
    .await;
    // A LoginSrv that answered first and then closed is an ordinary loss.
    let mut conn = srv.accept().await;
    conn.send(b"%++$").await;
    eventually("answered", || gate.link().is_answered()).await;
    drop(conn);
    eventually("down", || !gate.link().is_up()).await;
    srv.accept().await;
    assert_eq!(gate.link().stats().early_closes, 1);
}

fn silent_check(c: &mut Config) {
    c.server.heartbeat_secs = 1;
    c.server.dead_after_secs = 3;
    c.server.silent_replies_warn = 5;
    c.server.silent_window_secs = 1;
}

/// Ten client messages in one write, then `windows` silence windows.
async fn ten_messages_then_wait(gate: &Gate, windows: u64) {
    let mut client = connect(gate_addr(gate)).await;
    let burst: Vec<u8> = (0..10).flat_map(client_msg).collect();
    client.write_all(&burst).await.unwrap();
    tokio::time::sleep(Duration::from_secs(windows) + Duration::from_millis(300)).await;
    drop(client);
}

#[tokio::test]
async fn a_loginsrv_that_reads_no_client_message_is_reported_once_per_window() {
    let srv = Srv::bind().await;
    let mut c = test_config(srv.addr(), Dialect::Wemade);
    silent_check(&mut c);
    let gate = start_gate(c).await;
    // Answers heartbeats, ignores data: a LoginSrv of another dialect.
    let _deaf = Backend::run(srv.accept().await, false);
    answered(&gate).await;
    ten_messages_then_wait(&gate, 2).await;
    let silent = gate.link().stats().silent;
    assert!(silent >= 1, "reported");
    // Nothing more forwarded: no more warnings, and the link stays up.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(gate.link().stats().silent, silent);
    assert!(gate.link().is_up());
}

#[tokio::test]
async fn a_loginsrv_that_answers_clients_is_not_reported_silent() {
    let srv = Srv::bind().await;
    let mut c = test_config(srv.addr(), Dialect::Wemade);
    silent_check(&mut c);
    let gate = start_gate(c).await;
    let _echo = Backend::run(srv.accept().await, true);
    answered(&gate).await;
    ten_messages_then_wait(&gate, 2).await;
    assert_eq!(gate.link().stats().silent, 0);
}

#[tokio::test]
async fn a_selgate_spreads_clients_over_several_dbservers() {
    let (srv_a, srv_b) = (Srv::bind().await, Srv::bind().await);
    let mut c = logingate::config::Role::SelGate.defaults();
    let tuned = test_config(srv_a.addr(), Dialect::Delphi);
    c.gate = tuned.gate;
    c.admin = tuned.admin;
    c.server.addr = vec![srv_a.addr(), srv_b.addr()];
    c.server.reconnect_max_secs = 1;
    let gate = start_gate(c).await;
    let a = Backend::run(srv_a.accept().await, true);
    let b = Backend::run(srv_b.accept().await, true);
    answered(&gate).await;
    let _clients = connect_one_by_one(&gate, 4).await;
    assert_eq!(live(&gate), [2, 2]);
    // Both DBServers get the SelGate's (Delphi) open frames, with the gate IP.
    eventually("open frames", || {
        a.opens_and_closes().0.len() == 2 && b.opens_and_closes().0.len() == 2
    })
    .await;
    for frames in [&a.frames, &b.frames] {
        let f = frames.lock();
        assert!(
            f.iter()
                .all(|f| !f.starts_with("%O") || f.matches('/').count() == 2),
            "{f:?}"
        );
    }
    gate.shutdown().await;
}
