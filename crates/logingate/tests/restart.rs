//! Zero-downtime restart of the real binary under load: 200 clients in the middle
//! of a conversation and a connection storm while SIGUSR2 hands the listeners to a
//! new process; and the same with a new process that cannot start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use logingate::config::Dialect;
use testkit::echo::EchoSrv;
use testkit::process::Spawned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_logingate");
/// Clients holding a conversation across the restart.
const TALKERS: usize = 200;
/// Concurrent connect loops of the storm.
const STORM: usize = 8;

/// The gate's config file for `srv`, with a pid file in `dir`.
fn write_config(dir: &Path, srv: SocketAddr) -> (PathBuf, PathBuf) {
    let mut c = test_config(srv, Dialect::Wemade);
    c.gate.max_connections = 4 * TALKERS;
    c.gate.new_accounts_per_ip_per_hour = 0;
    c.gate.drain_timeout_secs = 15;
    c.gate.restart_ready_timeout_secs = 10;
    // "link: up" is logged at the LoginSrv's first frame, its first heartbeat reply.
    c.server.heartbeat_secs = 1;
    let pid = dir.join("gate.pid");
    c.gate.pid_file = pid.to_str().unwrap().to_owned();
    let file = dir.join("gate.toml");
    std::fs::write(&file, c.to_toml()).unwrap();
    (file, pid)
}

/// Start the binary; returns it once its startup line named the listener and the
/// link is up.
async fn start(config: &Path) -> (Spawned, SocketAddr) {
    let (gate, addrs) = testkit::process::start_gate(BIN, config, "link: up").await;
    (gate, addrs.listen)
}

/// Reads the gate's log (both processes write to it) until a line contains `needle`.
async fn wait_line(mut gate: Spawned, needle: &'static str) -> (Spawned, String) {
    tokio::task::spawn_blocking(move || {
        let line = gate.wait_for(needle, |l| l.contains(needle).then(|| l.to_owned()));
        (gate, line)
    })
    .await
    .unwrap()
}

/// The echo LoginSrv's answer to a client message.
fn reply_to(msg: &[u8]) -> Vec<u8> {
    let mut r = b"#".to_vec();
    r.extend_from_slice(&msg[2..]);
    r
}

/// One round trip on `stream`; the error says what went wrong.
async fn round_trip(stream: &mut TcpStream, n: i32) -> Result<(), String> {
    let msg = client_msg(n);
    stream
        .write_all(&msg)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let want = reply_to(&msg);
    let mut got = vec![0u8; want.len()];
    tokio::time::timeout(STEP, stream.read_exact(&mut got))
        .await
        .map_err(|_| "no reply in time".to_owned())?
        .map_err(|e| format!("read: {e}"))?;
    if got != want {
        return Err(format!("corrupt reply {:?}", String::from_utf8_lossy(&got)));
    }
    Ok(())
}

/// A client that keeps talking until `stop`, then closes; returns its rounds.
async fn talker(addr: SocketAddr, k: i32, stop: Arc<AtomicBool>) -> Result<i32, String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut round = 0;
    loop {
        round_trip(&mut s, k * 100_000 + round).await?;
        round += 1;
        if stop.load(Ordering::Acquire) {
            return Ok(round);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Connect, one round trip, close, again, until `stop`; counts successes and
/// records every failure.
async fn storm(
    addr: SocketAddr,
    k: i32,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
) {
    let mut n = 0;
    while !stop.load(Ordering::Acquire) {
        let result = async {
            let mut s = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            round_trip(&mut s, 1_000_000_000 + k * 10_000_000 + n).await
        }
        .await;
        match result {
            Ok(()) => {
                done.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => failures.lock().unwrap().push(e),
        }
        n += 1;
    }
}

/// The load: talkers connected and talking, the storm running.
struct Load {
    talkers: Vec<tokio::task::JoinHandle<Result<i32, String>>>,
    storm: Vec<tokio::task::JoinHandle<()>>,
    stop_talk: Arc<AtomicBool>,
    stop_storm: Arc<AtomicBool>,
    storm_done: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
}

impl Load {
    async fn start(addr: SocketAddr, echo: &EchoSrv) -> Load {
        let stop_talk = Arc::new(AtomicBool::new(false));
        let talkers: Vec<_> = (0..TALKERS as i32)
            .map(|k| tokio::spawn(talker(addr, k, Arc::clone(&stop_talk))))
            .collect();
        eventually("every talker opened", || {
            echo.links().first().map_or(0, |l| l.opened()) >= TALKERS
        })
        .await;
        let stop_storm = Arc::new(AtomicBool::new(false));
        let storm_done = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let storm = (0..STORM as i32)
            .map(|k| {
                tokio::spawn(storm(
                    addr,
                    k,
                    Arc::clone(&stop_storm),
                    Arc::clone(&storm_done),
                    Arc::clone(&failures),
                ))
            })
            .collect();
        Load {
            talkers,
            storm,
            stop_talk,
            stop_storm,
            storm_done,
            failures,
        }
    }

    /// Stops the talkers (each closes after its current round) and checks each
    /// talked through without a fault.
    async fn end_talk(&mut self) {
        self.stop_talk.store(true, Ordering::Release);
        for t in self.talkers.drain(..) {
            let rounds = t.await.unwrap().unwrap_or_else(|e| panic!("talker: {e}"));
            assert!(rounds > 0);
        }
    }

    /// Stops the storm; returns how many storm connections were served.
    async fn end_storm(&mut self) -> u64 {
        self.stop_storm.store(true, Ordering::Release);
        for s in self.storm.drain(..) {
            s.await.unwrap();
        }
        let failures = self.failures.lock().unwrap();
        assert!(failures.is_empty(), "storm failures: {failures:?}");
        self.storm_done.load(Ordering::Relaxed)
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a plain pid and signal number.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr2_under_load_hands_over_without_a_failed_connect_and_drains() {
    let echo = EchoSrv::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, pid_file) = write_config(dir.path(), echo.addr());
    let (gate, addr) = start(&config).await;
    let old = gate.id();
    eventually("pid file written", || {
        logingate::handover::read_pid_file(&pid_file).ok() == Some(old)
    })
    .await;
    let mut load = Load::start(addr, &echo).await;
    let before = load.storm_done.load(Ordering::Relaxed);
    eventually("the storm is served", || {
        load.storm_done.load(Ordering::Relaxed) > before + 20
    })
    .await;

    signal(old, libc::SIGUSR2);
    let (gate, _) = wait_line(gate, "restart: the new process is ready").await;
    eventually("the new process took the pid file over", || {
        logingate::handover::read_pid_file(&pid_file).is_ok_and(|p| p != old)
    })
    .await;
    let new = logingate::handover::read_pid_file(&pid_file).unwrap();
    assert_eq!(echo.links().len(), 2, "the new process opened its own link");
    // The storm now reaches the new process only.
    let at_handover = echo.links()[1].opened();
    eventually("the new process serves the storm", || {
        echo.links()[1].opened() > at_handover + 20
    })
    .await;

    // The talkers were on the old process all along and still are; once they end,
    // the drain ends and the old process exits 0.
    load.end_talk().await;
    let mut gate = gate;
    let status = tokio::task::spawn_blocking(move || gate.exit_status())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let served = load.end_storm().await;
    assert!(served > 40, "storm served {served}");

    let old_link = echo.links()[0].clone();
    eventually("the old link closed", || echo.links()[0].ended).await;
    assert!(old_link.opened() >= TALKERS, "{old_link:?}");
    assert!(
        echo.links()[0].balanced(),
        "old link: every open has exactly one close"
    );

    // The new process serves a client, then stops in order.
    let mut client = TcpStream::connect(addr).await.unwrap();
    round_trip(&mut client, 7).await.unwrap();
    drop(client);
    signal(new, libc::SIGTERM);
    eventually("the new process removed its pid file", || {
        !pid_file.exists()
    })
    .await;
    eventually("the new link closed", || echo.links()[1].ended).await;
    let new_link = echo.links()[1].clone();
    assert!(
        new_link.balanced(),
        "new link: {:?}",
        new_link.sessions.values().filter(|&&n| n != 1).count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_process_that_fails_to_start_interrupts_nothing() {
    let echo = EchoSrv::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, pid_file) = write_config(dir.path(), echo.addr());
    let (gate, addr) = start(&config).await;
    let old = gate.id();
    let mut load = Load::start(addr, &echo).await;
    // The successor reads the file again: now it cannot start (exit 2).
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.insert_str(0, "no_such_key = 1\n");
    std::fs::write(&config, text).unwrap();

    signal(old, libc::SIGUSR2);
    let (gate, line) = wait_line(gate, "restart failed").await;
    assert!(line.contains("exited before it was ready"), "{line}");
    let before = load.storm_done.load(Ordering::Relaxed);
    eventually("the old process still accepts", || {
        load.storm_done.load(Ordering::Relaxed) > before + 20
    })
    .await;
    assert_eq!(logingate::handover::read_pid_file(&pid_file).unwrap(), old);
    load.end_talk().await;
    load.end_storm().await;
    assert_eq!(echo.links().len(), 1, "no second link");

    gate.terminate();
    let mut gate = gate;
    let status = tokio::task::spawn_blocking(move || gate.exit_status())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    eventually("the link closed", || echo.links()[0].ended).await;
    assert!(echo.links()[0].balanced());
    assert!(!pid_file.exists());
}
