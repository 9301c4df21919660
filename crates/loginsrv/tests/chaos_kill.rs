//! `kill -9` of the `loginsrv` binary while several gate links register accounts at
//! once, then a restart on the same database: every registration it acknowledged is
//! there (counted, and each logs in), and the ones in flight either exist whole or
//! not at all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Gate;
use mir2_proto::ids::MsgKind;
use mir2_proto::Dialect;

/// Concurrent gate links, each registering one account after another.
const LINKS: usize = 4;
/// SM_PASSWD_FAIL's recog for an account that does not exist.
const NO_ACCOUNT: i32 = 0;

/// Kills the server when the test ends, however it ends.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary on `db` and returns it with its bound address.
async fn spawn(cfg: &Path, db: &Path) -> (Child, SocketAddr) {
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_loginsrv"))
            .arg("--config")
            .arg(cfg)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--database",
            ])
            .arg(db)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("local_addr=").nth(1) {
                let _ = tx.send(
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
    });
    let addr = tokio::task::spawn_blocking(move || {
        rx.recv_timeout(Duration::from_secs(30))
            .expect("listening line")
    })
    .await
    .unwrap()
    .parse()
    .unwrap();
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_registrations_survive_kill_9_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("accounts.db");
    let cfg = dir.path().join("loginsrv.toml");
    std::fs::write(
        &cfg,
        "[security]\nargon2_m_kib = 8\nargon2_t = 1\nhashes_per_ip_per_minute = 0\n",
    )
    .unwrap();
    let (mut child, addr) = spawn(&cfg, &db).await;

    // Each link registers until the server dies; it records what was acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let mut links = Vec::new();
    let acknowledged = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for link in 0..LINKS {
        let stop = Arc::clone(&stop);
        let acknowledged = Arc::clone(&acknowledged);
        links.push(tokio::spawn(async move {
            let mut gate = Gate::connect(addr, Dialect::Delphi).await;
            gate.open(1).await;
            let mut acked = Vec::new();
            let mut sent = Vec::new();
            for n in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let account = format!("k{link}n{n}");
                sent.push(account.clone());
                // The helper panics when the link closes; running each exchange as its
                // own task turns the kill into a join error that ends this link.
                let name = account.clone();
                let exchange = tokio::spawn(async move {
                    let reply = gate.register(1, &name, "pw1234").await;
                    (gate, reply)
                });
                let Ok((back, reply)) = exchange.await else {
                    break;
                };
                gate = back;
                assert_eq!(reply.kind(), Some(MsgKind::SmNewIdSuccess), "{account}");
                acked.push(account);
                acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            (acked, sent)
        }));
    }
    // Let the links get going (the first acknowledgements, however slow the
    // machine), then SIGKILL mid-stream.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while acknowledged.load(Ordering::Relaxed) < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "registrations acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    let mut sent = Vec::new();
    for l in links {
        let (a, s) = l.await.unwrap();
        acked.extend(a);
        sent.extend(s);
    }
    assert!(
        !acked.is_empty(),
        "registrations were acknowledged before the kill"
    );

    let (_child, addr) = spawn(&cfg, &db).await;
    let mut gate = Gate::connect(addr, Dialect::Delphi).await;
    for (i, account) in acked.iter().enumerate() {
        let id = u32::try_from(i).unwrap() + 1;
        gate.open(id).await;
        let r = gate.login(id, account, "pw1234").await;
        assert_eq!(
            r.kind(),
            Some(MsgKind::SmPassOkSelectServer),
            "acknowledged account {account} logs in after kill -9 ({} acknowledged)",
            acked.len()
        );
        gate.close(id).await;
    }
    // Unacknowledged ones are whole or absent: a login is either accepted or "no such
    // account", never an error from a half-written row.
    let base = u32::try_from(acked.len()).unwrap() + 1;
    for (i, account) in sent.iter().filter(|a| !acked.contains(a)).enumerate() {
        let id = base + u32::try_from(i).unwrap();
        gate.open(id).await;
        let r = gate.login(id, account, "pw1234").await;
        let ok = r.kind() == Some(MsgKind::SmPassOkSelectServer);
        let absent = r.kind() == Some(MsgKind::SmPasswdFail) && r.header.recog == NO_ACCOUNT;
        assert!(ok || absent, "in-flight {account}: {:?}", r.header);
        gate.close(id).await;
    }
    eprintln!(
        "kill -9 under load: {} acknowledged, all present; {} in flight",
        acked.len(),
        sent.len() - acked.len()
    );
}
