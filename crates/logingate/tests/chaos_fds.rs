//! The real `logingate` binary under a low RLIMIT_NOFILE (set by `prlimit`) and more
//! clients than it has descriptors for: it leaves the excess unaccepted, keeps serving
//! the clients it holds, accepts again once they leave, and logs the accept failure at
//! most once per interval.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_logingate");
/// Descriptors the gate may hold: a dozen for itself, the rest for clients.
const NOFILE: u32 = 40;
/// Clients offered at once, well over what NOFILE leaves room for.
const OFFERED: usize = 90;

/// Kills the gate when the test ends, however it ends.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have_prlimit() -> bool {
    Command::new("prlimit")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Every frame until the link stays quiet for `quiet`.
async fn frames_until_quiet(link: &mut SrvConn, quiet: Duration) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(quiet, link.frame_no_hb()).await {
            Ok(f) => out.push(String::from_utf8(f).unwrap()),
            Err(_) => return out,
        }
    }
}

/// `(kind, id, payload)` of a gate frame `%<kind><id>[/<payload>]$`.
fn parse_frame(f: &str) -> (char, u32, String) {
    let kind = f[1..].chars().next().unwrap();
    let rest = &f[2..f.len() - 1];
    let (id, payload) = rest.split_once('/').unwrap_or((rest, ""));
    (kind, id.parse().unwrap(), payload.to_owned())
}

/// Replies to every data frame with the server message of the same number and checks
/// each client gets exactly its own reply.
async fn serve_round(
    link: &mut SrvConn,
    frames: &[String],
    clients: &mut HashMap<usize, TcpStream>,
    opens: &mut HashSet<u32>,
    closes: &mut HashSet<u32>,
) -> usize {
    let mut served = 0;
    for f in frames {
        let (kind, id, payload) = parse_frame(f);
        match kind {
            'O' => assert!(opens.insert(id), "session {id} opened twice"),
            'X' => {
                assert!(opens.contains(&id), "close of unopened session {id}");
                assert!(closes.insert(id), "session {id} closed twice");
            }
            'A' => {
                let n: usize = (0..OFFERED * 4)
                    .find(|&n| {
                        payload.as_bytes() == client_msg(i32::try_from(n).unwrap()).as_slice()
                    })
                    .expect("data frame carries a test message");
                let mut reply = format!("%{id}/").into_bytes();
                reply.extend_from_slice(&server_msg(i32::try_from(n).unwrap()));
                reply.push(b'$');
                link.send(&reply).await;
                // A client that left after sending still has its message relayed
                // once the gate accepts it; only live clients can check the reply.
                if let Some(client) = clients.get_mut(&n) {
                    let want = server_msg(i32::try_from(n).unwrap());
                    assert_eq!(read_n(client, want.len()).await, want, "client {n}");
                    served += 1;
                }
            }
            other => panic!("unexpected frame kind {other} in {f:?}"),
        }
    }
    served
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fd_exhaustion_refuses_the_excess_serves_the_rest_and_recovers() {
    if !have_prlimit() {
        eprintln!("skipped: prlimit (util-linux) is not installed");
        return;
    }
    let srv = Srv::bind().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gate.toml");
    std::fs::write(
        &cfg,
        "[gate]\nmax_conn_per_ip = 0\nconn_rate_per_ip = 0\n\
         [server]\nheartbeat_secs = 30\ndead_after_secs = 60\n",
    )
    .unwrap();
    let mut child = Child(
        Command::new("prlimit")
            .arg(format!("--nofile={NOFILE}:{NOFILE}"))
            .arg(BIN)
            .arg("--config")
            .arg(&cfg)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--server",
            ])
            .arg(srv.addr().to_string())
            .args(["--dialect", "delphi"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = Arc::new(Mutex::new(Vec::<(Instant, String)>::new()));
    let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
    {
        let stderr = child.0.stderr.take().unwrap();
        let lines = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("logingate started") {
                    let start = line.find("listen=[").unwrap() + "listen=[".len();
                    let end = start + line[start..].find(']').unwrap();
                    let _ = tx.send(line[start..end].parse().unwrap());
                }
                lines.lock().unwrap().push((Instant::now(), line));
            }
        });
    }
    let addr = rx.recv_timeout(STEP).expect("startup line");
    let mut link = srv.accept().await;
    let mut opens = HashSet::new();
    let mut closes = HashSet::new();

    // Offer far more clients than the gate has descriptors; each says one message.
    let started = Instant::now();
    let mut clients = HashMap::new();
    for n in 0..OFFERED {
        let mut c = connect(addr).await;
        c.write_all(&client_msg(i32::try_from(n).unwrap()))
            .await
            .unwrap();
        clients.insert(n, c);
    }
    let frames = frames_until_quiet(&mut link, Duration::from_millis(1500)).await;
    let served = serve_round(&mut link, &frames, &mut clients, &mut opens, &mut closes).await;
    assert!(served > 0, "the gate serves clients within its limit");
    assert!(
        served < OFFERED,
        "the excess stays unaccepted under RLIMIT_NOFILE={NOFILE}, yet {served} were served"
    );
    assert_eq!(opens.len(), served, "every admitted client was served");
    assert!(child.0.try_wait().unwrap().is_none(), "the gate is alive");

    // The admitted clients leave: the gate closes them and takes the waiting ones.
    let admitted: Vec<usize> = frames
        .iter()
        .filter(|f| f.starts_with("%A"))
        .map(|f| {
            let (_, _, payload) = parse_frame(f);
            (0..OFFERED)
                .find(|&n| payload.as_bytes() == client_msg(i32::try_from(n).unwrap()).as_slice())
                .unwrap()
        })
        .collect();
    for n in &admitted {
        clients.remove(n);
    }
    let frames = frames_until_quiet(&mut link, Duration::from_millis(1500)).await;
    let second = serve_round(&mut link, &frames, &mut clients, &mut opens, &mut closes).await;
    assert!(
        second > 0,
        "waiting clients are accepted once descriptors free up"
    );

    // Everyone leaves; a fresh batch within the limit is served in full.
    clients.clear();
    let frames = frames_until_quiet(&mut link, Duration::from_millis(1500)).await;
    serve_round(&mut link, &frames, &mut clients, &mut opens, &mut closes).await;
    let fresh: Vec<usize> = (OFFERED..OFFERED + 10).collect();
    for &n in &fresh {
        let mut c = connect(addr).await;
        c.write_all(&client_msg(i32::try_from(n).unwrap()))
            .await
            .unwrap();
        clients.insert(n, c);
    }
    let frames = frames_until_quiet(&mut link, Duration::from_millis(1500)).await;
    let third = serve_round(&mut link, &frames, &mut clients, &mut opens, &mut closes).await;
    assert_eq!(
        third,
        fresh.len(),
        "after recovery every new client is served"
    );
    clients.clear();
    let frames = frames_until_quiet(&mut link, Duration::from_millis(1500)).await;
    serve_round(&mut link, &frames, &mut clients, &mut opens, &mut closes).await;
    assert_eq!(opens, closes, "every open frame closed exactly once");

    // The accept failure was logged, at most once per second of exhaustion.
    let elapsed = started.elapsed().as_secs() + 1;
    let lines = lines.lock().unwrap();
    let accept_errors: Vec<&(Instant, String)> = lines
        .iter()
        .filter(|(_, l)| l.contains("listener error") && l.contains("accept"))
        .collect();
    assert!(
        !accept_errors.is_empty(),
        "EMFILE is logged: {:#?}",
        lines.iter().map(|(_, l)| l).collect::<Vec<_>>()
    );
    assert!(
        accept_errors.len() as u64 <= elapsed,
        "{} accept-error lines in {elapsed} s: the log is rate-limited",
        accept_errors.len()
    );
    assert!(accept_errors
        .iter()
        .any(|(_, l)| l.contains("Too many open files")));
}
