//! The `loginsrv` binary with its SQLite database on a small tmpfs that fills up:
//! registrations fail with SM_NEWID_FAIL / SERVER_ERROR and an error line, existing
//! accounts still log in, the database passes `PRAGMA integrity_check`, and
//! registrations work again once space returns, without a restart.
//!
//! Mounting needs root; skips with a message otherwise. The mount is removed on every
//! exit path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Gate;
use mir2_proto::ids::MsgKind;
use mir2_proto::Dialect;

/// SM_NEWID_FAIL's recog when the server could not complete the request.
const SERVER_ERROR: i32 = -5;

/// A tmpfs of a few MiB, unmounted when dropped.
struct SmallDisk {
    /// Mount point (inside a temporary directory).
    path: PathBuf,
    /// Owns the mount point directory.
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk { path, _dir: dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes zeros to `path` until the filesystem refuses more.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    // The last partial block, byte-sized writes until nothing fits.
    while f.write_all(&block[..512]).is_ok() {}
    while f.write_all(&block[..1]).is_ok() {}
    let _ = f.sync_all();
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn spawn(cfg: &Path, db: &Path, lines: Arc<Mutex<Vec<String>>>) -> (Child, SocketAddr) {
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
            lines.lock().unwrap().push(line);
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

async fn integrity(db: &Path) -> String {
    use sqlx::Connection as _;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let (verdict,): (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    verdict
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_fails_registrations_cleanly_and_recovers() {
    let Some(disk) = SmallDisk::mount("4m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("loginsrv.toml");
    std::fs::write(
        &cfg,
        "[security]\nargon2_m_kib = 8\nargon2_t = 1\nhashes_per_ip_per_minute = 0\n",
    )
    .unwrap();
    let db = disk.path.join("accounts.db");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (mut child, addr) = spawn(&cfg, &db, Arc::clone(&lines)).await;
    let mut gate = Gate::connect(addr, Dialect::Delphi).await;
    gate.open(1).await;
    for n in 0..20 {
        let r = gate.register(1, &format!("before{n}"), "pw1234").await;
        assert_eq!(r.kind(), Some(MsgKind::SmNewIdSuccess));
    }

    let filler = disk.path.join("filler");
    fill(&filler);
    let mut refused = 0;
    // WAL space already allocated may take a few more rows before the disk says no.
    for n in 0..100 {
        let r = gate.register(1, &format!("during{n}"), "pw1234").await;
        match r.kind() {
            Some(MsgKind::SmNewIdSuccess) => {}
            Some(MsgKind::SmNewIdFail) => {
                assert_eq!(
                    r.header.recog, SERVER_ERROR,
                    "a full disk is a server error"
                );
                refused += 1;
            }
            other => panic!("unexpected reply {other:?}"),
        }
    }
    assert!(refused > 0, "registrations fail on a full disk");
    assert!(
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("account insert failed") && l.contains("full")),
        "the failure is logged with its cause: {:#?}",
        lines.lock().unwrap()
    );
    for n in 0..20 {
        let id = 100 + n;
        gate.open(id).await;
        let r = gate.login(id, &format!("before{n}"), "pw1234").await;
        assert_eq!(
            r.kind(),
            Some(MsgKind::SmPassOkSelectServer),
            "existing accounts log in on a full disk"
        );
        gate.close(id).await;
    }

    std::fs::remove_file(&filler).unwrap();
    let r = gate.register(1, "after", "pw1234").await;
    assert_eq!(
        r.kind(),
        Some(MsgKind::SmNewIdSuccess),
        "registrations resume when space returns"
    );
    gate.open(2).await;
    assert_eq!(
        gate.login(2, "after", "pw1234").await.kind(),
        Some(MsgKind::SmPassOkSelectServer)
    );
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert_eq!(integrity(&db).await, "ok");
    drop(disk);
}
