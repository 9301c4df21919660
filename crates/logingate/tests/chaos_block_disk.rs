//! A `%+T` permanent block when the block list file's disk is full: the block still
//! applies in memory, and the file is left as it was, never with a cut-off line (a
//! line cut inside an address can name another address, e.g. 127.0.0.12 → 127.0.0.1).
//!
//! Mounting a small tmpfs needs root; skips with a message otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use logingate::config::Dialect;
use tokio::net::TcpSocket;

/// The client's source address: one whose text has a shorter address as its prefix.
const CLIENT_IP: &str = "127.0.0.12";

/// A tmpfs unmounted when dropped.
struct SmallDisk {
    /// Mount point.
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

/// Writes to `path` until the filesystem refuses even one more byte.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    while f.write_all(&block[..1]).is_ok() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_block_on_a_full_disk_applies_and_leaves_the_file_whole() {
    let Some(disk) = SmallDisk::mount("1m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    // The file ends exactly len("127.0.0.1") bytes short of a page: a write that the
    // full disk cuts at the page end would leave "127.0.0.1" as its last line.
    let file = disk.path.join("blocked.txt");
    let cut = "127.0.0.1".len();
    let mut text = String::from("# static blocks\n");
    text.push_str(&"#".repeat(4096 - cut - text.len() - 1));
    text.push('\n');
    assert_eq!(text.len(), 4096 - cut);
    std::fs::write(&file, &text).unwrap();
    fill(&disk.path.join("filler"));

    let path = file.to_str().unwrap().to_owned();
    let (gate, _srv, mut link) =
        gate_with_srv(|c| c.gate.block_list_file = path, Dialect::Delphi).await;
    let addr = gate_addr(&gate);
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(CLIENT_IP.parse().unwrap(), 0))
        .unwrap();
    let mut client = tokio::time::timeout(STEP, socket.connect(addr))
        .await
        .unwrap()
        .unwrap();
    let id = link.open_id().await;
    link.send(format!("%+T{id}$").as_bytes()).await;
    assert!(read_to_close(&mut client).await.is_empty());

    let ip: IpAddr = CLIENT_IP.parse().unwrap();
    assert!(
        gate.admission().is_blocked(ip),
        "the block applies in memory"
    );
    // The failed append has run (it is off the link reader, on the blocking pool).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        text,
        "the file is left whole when the disk is full"
    );
    assert!(
        !gate.admission().is_blocked("127.0.0.1".parse().unwrap()),
        "no other address is blocked"
    );
    gate.shutdown().await;
    drop(disk);
}
