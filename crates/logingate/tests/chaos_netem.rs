//! The LoginSrv link through a faulty network: the scripted LoginSrv listens inside a
//! network namespace this test creates, reached over a veth pair on private test
//! addresses, and `tc` qdiscs on both veth ends add delay, loss, reordering (netem, or
//! tbf and a tiny pfifo where the kernel lacks netem) and then a blackhole. Clients must
//! only ever get their own replies; the blackhole must be detected by heartbeat and the
//! link must come back once it clears.
//!
//! Needs root and `ip`/`tc` (iproute2); skips with a message otherwise. The namespace
//! (and with it the veth pair) is deleted on every exit path.
#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code)]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use logingate::config::Dialect;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Clients per fault phase, each sending `ROUNDS` messages one after another.
const CLIENTS: usize = 16;
const ROUNDS: usize = 4;

/// Runs `ip`/`tc` with `args`; true on success.
fn run(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn must(cmd: &str, args: &[&str]) {
    assert!(run(cmd, args), "{cmd} {}", args.join(" "));
}

/// A namespace with one veth end inside it; deleting the namespace removes both ends.
struct Netns {
    /// Namespace name, unique per test process.
    name: String,
    /// The veth end left in the root namespace (the gate's side).
    outer: String,
    /// The veth end moved into the namespace (the LoginSrv's side).
    inner: String,
    /// The LoginSrv's address inside the namespace.
    inner_ip: Ipv4Addr,
}

impl Netns {
    /// Creates the namespace and the veth pair 10.200.N.1/30 – 10.200.N.2/30.
    fn create() -> Option<Netns> {
        let pid = std::process::id();
        let net = u8::try_from(pid % 250).unwrap();
        let ns = Netns {
            name: format!("mir2chaos{pid}"),
            outer: format!("m2c{}o", pid % 100_000),
            inner: format!("m2c{}i", pid % 100_000),
            inner_ip: Ipv4Addr::new(10, 200, net, 2),
        };
        if !run("ip", &["netns", "add", &ns.name]) {
            return None;
        }
        let outer_cidr = format!("10.200.{net}.1/30");
        let inner_cidr = format!("{}/30", ns.inner_ip);
        must(
            "ip",
            &[
                "link", "add", &ns.outer, "type", "veth", "peer", "name", &ns.inner,
            ],
        );
        must("ip", &["link", "set", &ns.inner, "netns", &ns.name]);
        must("ip", &["addr", "add", &outer_cidr, "dev", &ns.outer]);
        must("ip", &["link", "set", &ns.outer, "up"]);
        ns.exec(&["ip", "addr", "add", &inner_cidr, "dev", &ns.inner]);
        ns.exec(&["ip", "link", "set", &ns.inner, "up"]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        Some(ns)
    }

    fn exec(&self, cmd: &[&str]) {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(cmd);
        must("ip", &args);
    }

    /// Sets the same root qdisc (`tc` words after `root`) on both veth ends.
    fn qdisc(&self, spec: &[&str]) -> bool {
        let mut outer = vec!["qdisc", "replace", "dev", &self.outer, "root"];
        outer.extend_from_slice(spec);
        let mut inner = vec![
            "netns",
            "exec",
            &self.name,
            "tc",
            "qdisc",
            "replace",
            "dev",
            &self.inner,
            "root",
        ];
        inner.extend_from_slice(spec);
        run("tc", &outer) && run("ip", &inner)
    }

    /// A listener bound inside the namespace. setns(2) moves only the calling thread,
    /// so a short-lived thread enters the namespace and binds; the socket stays in
    /// the namespace it was created in, wherever it is used from afterwards.
    fn listen(&self) -> std::net::TcpListener {
        let path = format!("/run/netns/{}", self.name);
        let ip = self.inner_ip;
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let ns = std::fs::File::open(&path).expect("namespace file");
            // SAFETY: the fd is a namespace file open for this call's duration;
            // CLONE_NEWNET asks only for a network namespace switch of this thread.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            let l = std::net::TcpListener::bind(SocketAddr::from((ip, 0))).expect("bind");
            l.set_nonblocking(true).unwrap();
            l
        })
        .join()
        .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        run("ip", &["netns", "del", &self.name]);
        run("ip", &["link", "del", &self.outer]);
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The scripted LoginSrv: answers every heartbeat and echoes each client message as
/// the server message carrying the same number, to the session it came from.
async fn serve(listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut tmp = [0u8; 4096];
            loop {
                let n = match stream.read(&mut tmp).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&tmp[..n]);
                let mut out = Vec::new();
                while let Some(end) = buf.iter().position(|&b| b == b'$') {
                    let frame: Vec<u8> = buf.drain(..=end).collect();
                    let text = String::from_utf8_lossy(&frame).into_owned();
                    if text == "%--$" {
                        out.extend_from_slice(b"%++$");
                    } else if let Some(rest) = text.strip_prefix("%A") {
                        let (id, payload) = rest[..rest.len() - 1].split_once('/').unwrap();
                        let n = (0..100_000)
                            .find(|&n| payload.as_bytes() == client_msg(n).as_slice())
                            .expect("a test message");
                        out.extend_from_slice(format!("%{id}/").as_bytes());
                        out.extend_from_slice(&server_msg(n));
                        out.push(b'$');
                    }
                }
                if !out.is_empty() && stream.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// `CLIENTS` clients, each sending `ROUNDS` distinct messages and checking that every
/// reply is the one for its own message.
async fn relay_phase(addr: SocketAddr, phase: i32) {
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        tasks.push(tokio::spawn(async move {
            let mut s = connect(addr).await;
            for r in 0..ROUNDS {
                let n = phase * 10_000 + i32::try_from(c * ROUNDS + r).unwrap();
                s.write_all(&client_msg(n)).await.unwrap();
                let want = server_msg(n);
                let mut got = vec![0; want.len()];
                tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut got))
                    .await
                    .expect("reply through the faulty link in time")
                    .expect("client stays connected");
                assert_eq!(got, want, "client {c} got a reply meant for another");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netem_faults_and_a_blackhole_on_the_link() {
    if !is_root() {
        eprintln!("skipped: network namespaces need root");
        return;
    }
    if !run("ip", &["-V"]) || !run("tc", &["-V"]) {
        eprintln!("skipped: ip/tc (iproute2) not installed");
        return;
    }
    let Some(ns) = Netns::create() else {
        eprintln!("skipped: cannot create a network namespace here");
        return;
    };
    // Kernels without sch_netem still have tbf (a slow link: queueing delay, and
    // drops past its latency bound), a tiny pfifo (tail drops under bursts) and the
    // blackhole qdisc; reordering needs netem.
    let netem = ns.qdisc(&["netem", "delay", "1ms"]);
    let faults: Vec<Vec<&str>> = if netem {
        vec![
            vec!["netem", "delay", "40ms", "20ms"],
            vec!["netem", "loss", "3%"],
            vec!["netem", "delay", "10ms", "reorder", "25%", "50%"],
            vec![
                "netem", "delay", "20ms", "10ms", "loss", "2%", "reorder", "10%",
            ],
        ]
    } else {
        eprintln!("netem unavailable (sch_netem): delay and loss via tbf and pfifo, no reordering");
        vec![
            vec!["tbf", "rate", "200kbit", "burst", "4kb", "latency", "300ms"],
            vec!["pfifo", "limit", "8"],
            vec!["tbf", "rate", "100kbit", "burst", "2kb", "latency", "100ms"],
        ]
    };
    let listener = TcpListener::from_std(ns.listen()).unwrap();
    let srv_addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener));

    let mut config = test_config(srv_addr, Dialect::Delphi);
    config.server.heartbeat_secs = 1;
    config.server.dead_after_secs = 5;
    config.server.reconnect_max_secs = 1;
    let gate = start_gate(config).await;
    assert!(gate.wait_link_up(STEP).await, "link up through the veth");
    let addr = gate_addr(&gate);

    for (phase, spec) in (1..).zip(faults) {
        assert!(ns.qdisc(&spec), "tc qdisc {spec:?}");
        eprintln!("link fault: {}", spec.join(" "));
        relay_phase(addr, phase).await;
        assert!(gate.link().is_up(), "the link survives {spec:?}");
    }
    assert_eq!(
        gate.link().stats().connects,
        1,
        "no reconnect under delay/loss/reorder"
    );

    // Blackhole: every packet dropped both ways. Heartbeats go unanswered, the gate
    // declares the link dead and drops its clients.
    assert!(ns.qdisc(&["pfifo"]));
    let mut held = connect(addr).await;
    held.write_all(&client_msg(99_999)).await.unwrap();
    assert_eq!(
        read_n(&mut held, server_msg(99_999).len()).await,
        server_msg(99_999)
    );
    assert!(ns.qdisc(&["blackhole"]));
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        let mut b = [0u8; 64];
        if let Ok(n @ 1..) = held.read(&mut b).await {
            panic!("unexpected bytes during the blackhole: {:?}", &b[..n]);
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "dead link detected by heartbeat, clients dropped"
    );
    assert!(!gate.link().is_up());

    // Cleared: the gate reconnects and serves again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(ns.qdisc(&["pfifo"]));
    assert!(
        gate.wait_link_up(Duration::from_secs(30)).await,
        "the link comes back once the blackhole clears"
    );
    assert!(gate.link().stats().connects >= 2);
    relay_phase(addr, 9).await;
    gate.shutdown().await;
    drop(ns);
}
