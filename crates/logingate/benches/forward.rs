//! Forwarding throughput and link batching, in-process on loopback:
//! N clients ⇄ gate ⇄ echo LoginSrv (answers every `%A` with a reply).
//!
//! `cargo bench -p logingate --bench forward -- [clients] [window] [seconds] [process]`
//! Each client keeps `window` messages in flight (writes them in one go and
//! waits for all replies). Reports messages/s (round trips), frames per link
//! write and round-trip latency of a window. CPU per message: in-process
//! (default) it is the whole process (clients + gate + echo server); with
//! `process` the gate runs as the real `logingate` binary and its own CPU is
//! read from /proc, giving the gate's cost alone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use logingate::app::Gate;
use logingate::config::Config;
use mir2_proto::link::{self as wire, Dialect, GateFrame, LinkFramer};
use mir2_proto::MsgHeader;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An echo LoginSrv: every client message comes back as a server message.
async fn echo_login_server(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        stream.set_nodelay(true).unwrap();
        tokio::spawn(async move {
            let (mut rd, mut wr) = stream.into_split();
            let mut buf = BytesMut::with_capacity(64 * 1024);
            let mut out = BytesMut::with_capacity(64 * 1024);
            let mut framer = LinkFramer::new(64 * 1024);
            loop {
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                while let Ok(Some(body)) = framer.next_frame(&mut buf) {
                    match wire::parse_gate_frame(Dialect::Delphi, body) {
                        Ok(GateFrame::Data { id, data }) => {
                            // "#1<hdr><body>!" -> "#<hdr><body>!"
                            let mut reply = Vec::with_capacity(data.len());
                            reply.push(b'#');
                            reply.extend_from_slice(data.get(2..).unwrap_or_default());
                            wire::write_reply(Dialect::Delphi, &mut out, id, &reply);
                        }
                        Ok(GateFrame::Heartbeat) => {
                            wire::write_heartbeat_reply(Dialect::Delphi, &mut out)
                        }
                        _ => {}
                    }
                }
                if !out.is_empty() && wr.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
            }
        });
    }
}

/// User + system CPU of a process, from /proc (Linux).
fn cpu_of(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" of the command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // CLK_TCK is 100 on every Linux this runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// Where the clients connect, and how to read the gate's counters.
enum GateUnderTest {
    /// In this process.
    InProcess(Box<Gate>),
    /// The real binary; its JSON log lines arrive on `logs`.
    Process {
        child: std::process::Child,
        logs: std::sync::mpsc::Receiver<serde_json::Value>,
        _config: tempfile::NamedTempFile,
    },
}

fn gate_config(srv: SocketAddr, stats_log_secs: u64) -> Config {
    let mut config = Config::default();
    config.gate.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.gate.max_conn_per_ip = 0;
    config.gate.conn_rate_per_ip = 0;
    config.gate.max_connections = 100_000;
    config.gate.max_packets_per_sec = 1_000_000;
    config.gate.stats_log_secs = stats_log_secs;
    config.server.addr = vec![srv];
    config.server.dialect = Dialect::Delphi;
    // The console runs, as in production, on a free port.
    config.admin.listen = "127.0.0.1:0".into();
    config
}

/// Start the binary, return it with its listen address.
fn spawn_gate_binary(srv: SocketAddr) -> (GateUnderTest, SocketAddr) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, gate_config(srv, 1).to_toml().as_bytes()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_logingate"))
        .arg("--config")
        .arg(file.path())
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, logs) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let mut addr = None;
    let mut up = false;
    while addr.is_none() || !up {
        let v = logs
            .recv_timeout(Duration::from_secs(10))
            .expect("gate logs");
        match v["fields"]["message"].as_str() {
            Some("logingate started") => {
                let list = v["fields"]["listen"].as_str().unwrap();
                addr = Some(list.trim_matches(|c| c == '[' || c == ']').parse().unwrap());
            }
            Some("link: up") => up = true,
            _ => {}
        }
    }
    let gate = GateUnderTest::Process {
        child,
        logs,
        _config: file,
    };
    (gate, addr.unwrap())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nums: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let clients = nums.first().copied().unwrap_or(200) as usize;
    let window = nums.get(1).copied().unwrap_or(8) as usize;
    let secs = nums.get(2).copied().unwrap_or(5);
    let as_process = args.iter().any(|a| a == "process");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let srv_addr = listener.local_addr().unwrap();
        tokio::spawn(echo_login_server(listener));

        let (gate, addr) = if as_process {
            spawn_gate_binary(srv_addr)
        } else {
            let gate = Gate::start(gate_config(srv_addr, 0)).await.unwrap();
            assert!(gate.wait_link_up(Duration::from_secs(5)).await);
            let addr = gate.local_addrs()[0];
            (GateUnderTest::InProcess(Box::new(gate)), addr)
        };
        let pid = match &gate {
            GateUnderTest::InProcess(_) => "self".to_owned(),
            GateUnderTest::Process { child, .. } => child.id().to_string(),
        };

        let done = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for c in 0..clients {
            let done = done.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                s.set_nodelay(true).unwrap();
                let hdr = MsgHeader::new(2001, c as i32, 0, 0, 0).encode();
                let mut msgs = Vec::new();
                let mut want = Vec::new();
                for _ in 0..window {
                    msgs.extend_from_slice(b"#1");
                    msgs.extend_from_slice(&hdr);
                    msgs.extend_from_slice(b"YSIaX^ylTSIo!");
                    want.push(b'#');
                    want.extend_from_slice(&hdr);
                    want.extend_from_slice(b"YSIaX^ylTSIo!");
                }
                let mut got = vec![0u8; want.len()];
                let mut hist = hdrhistogram::Histogram::<u64>::new(3).unwrap();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    s.write_all(&msgs).await.unwrap();
                    s.read_exact(&mut got).await.unwrap();
                    assert_eq!(got, want, "client {c} got someone else's reply");
                    hist.record(t.elapsed().as_micros() as u64).unwrap();
                    done.fetch_add(window as u64, Ordering::Relaxed);
                }
                hist
            }));
        }
        let cpu0 = cpu_of(&pid);
        let t0 = Instant::now();
        let s0 = match &gate {
            GateUnderTest::InProcess(g) => Some(g.link().stats()),
            GateUnderTest::Process { .. } => None,
        };
        let mut hist = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        for t in tasks {
            hist.add(t.await.unwrap()).unwrap();
        }
        let elapsed = t0.elapsed();
        let cpu = cpu_of(&pid).zip(cpu0).map(|(a, b)| a.saturating_sub(b));
        let msgs = done.load(Ordering::Relaxed);

        let (frames, writes, whose_cpu) = match gate {
            GateUnderTest::InProcess(g) => {
                let (s0, s1) = (s0.unwrap_or_default(), g.link().stats());
                (*g).shutdown().await;
                (
                    s1.frames - s0.frames,
                    s1.writes - s0.writes,
                    "whole process (clients + gate + echo)",
                )
            }
            GateUnderTest::Process {
                mut child,
                logs,
                _config,
            } => {
                // The link stats line (every second) carries cumulative link counters.
                tokio::time::sleep(Duration::from_millis(1100)).await;
                let mut last = (0, 0);
                while let Ok(v) = logs.try_recv() {
                    if v["fields"]["message"].as_str() == Some("link stats") {
                        last = (
                            v["fields"]["frames"].as_u64().unwrap_or(0),
                            v["fields"]["writes"].as_u64().unwrap_or(0),
                        );
                    }
                }
                let _ = Command::new("kill").args(["-TERM", &pid]).status();
                let _ = child.wait();
                (last.0, last.1, "gate process alone")
            }
        };
        println!(
            "clients {clients}, window {window}, {secs} s, gate {}",
            if as_process { "process" } else { "in-process" }
        );
        println!(
            "round trips: {msgs} in {:.2} s = {:.0} msgs/s",
            elapsed.as_secs_f64(),
            msgs as f64 / elapsed.as_secs_f64()
        );
        println!(
            "link: {frames} frames in {writes} writes = {:.1} frames/write",
            frames as f64 / writes.max(1) as f64
        );
        println!(
            "window round trip: p50 {} us, p99 {} us, max {} us",
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.99),
            hist.max()
        );
        if let Some(cpu) = cpu {
            println!(
                "CPU, {whose_cpu}: {:.2} s = {:.2} us/msg",
                cpu.as_secs_f64(),
                cpu.as_secs_f64() * 1e6 / msgs.max(1) as f64
            );
        }
    });
}
