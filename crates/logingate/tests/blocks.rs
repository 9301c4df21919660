//! LoginSrv blocks across sessions of one IP: regression tests from the
//! adversarial review (each failed before its fix).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use logingate::config::Dialect;

const LOCALHOST: &str = "127.0.0.1";

/// A later `%+B` (temporary) for the same IP must not turn an earlier
/// `%+T` (permanent) block into one that expires; repeated `%+T` for the
/// same IP records it in the block list file once.
#[tokio::test]
async fn permanent_block_is_neither_downgraded_nor_recorded_twice() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blocked.txt");
    let path = file.to_str().unwrap().to_owned();
    let (gate, _srv, mut link) = gate_with_srv(
        |c| {
            c.gate.block_list_file = path;
            c.gate.temp_block_secs = 1;
        },
        Dialect::Wemade,
    )
    .await;
    let addr = gate_addr(&gate);
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        clients.push(connect(addr).await);
        ids.push(link.open_id().await);
    }
    // Two permanent blocks for one session, one for another session of the
    // same IP, then a temporary block for a third.
    link.send(format!("%+T{0}$%+T{0}$%+T{1}$%+B{2}$", ids[0], ids[1], ids[2]).as_bytes())
        .await;
    for c in &mut clients {
        assert!(read_to_close(c).await.is_empty());
    }
    let ip: IpAddr = LOCALHOST.parse().unwrap();
    // Past the temporary block's 1 s: the permanent one must still hold.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        gate.admission().is_blocked(ip),
        "a temporary block replaced the permanent one"
    );
    let mut refused = connect(addr).await;
    assert!(read_to_close(&mut refused).await.is_empty());

    let lines = || {
        std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("127.0.0.1 #"))
            .count()
    };
    eventually("block recorded", || lines() >= 1).await;
    // Give any duplicate append time to land.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lines(), 1, "{:?}", std::fs::read_to_string(&file));
}

/// Reloading the block list never runs file I/O on the runtime: a file that
/// blocks on read (here a FIFO nobody writes; in the field a hung network
/// mount) must not stall the gate. The gate runs on its own single-threaded
/// runtime so that, were it stalled, this thread still sees it and fails.
#[cfg(target_os = "linux")]
#[test]
fn a_block_list_that_hangs_on_read_does_not_stall_the_gate() {
    use std::io::Read;

    /// Gives a reader stuck on the FIFO its EOF, whatever the outcome.
    struct Unstick(std::path::PathBuf);
    impl Drop for Unstick {
        fn drop(&mut self) {
            // O_RDWR on a FIFO never blocks on Linux; closing it again
            // leaves a blocked reader with EOF.
            let _ = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.0);
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blocked.txt");
    std::fs::write(&file, "10.9.8.7\n").unwrap();
    let path = file.to_str().unwrap().to_owned();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let gate_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (gate, _srv, mut link) = gate_with_srv(
                |c| {
                    c.gate.block_list_file = path;
                    c.gate.block_list_poll_secs = 1;
                },
                Dialect::Wemade,
            )
            .await;
            addr_tx.send(gate_addr(&gate)).unwrap();
            // Answer the one client.
            let id = link.open_id().await;
            link.send(format!("%{id}/{}$", String::from_utf8_lossy(REPLY)).as_bytes())
                .await;
            let _ = stop_rx.await;
        });
    });
    let addr = addr_rx.recv_timeout(STEP).expect("gate started");

    // Swap the file for a FIFO: the next poll sees a new stamp and reads it.
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    std::fs::rename(&fifo, &file).unwrap();
    let _unstick = Unstick(file.clone());
    std::thread::sleep(Duration::from_millis(1500));

    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(STEP)).unwrap();
    let mut got = vec![0; REPLY.len()];
    c.read_exact(&mut got)
        .expect("gate still serves while the block list read hangs");
    assert_eq!(got, REPLY);
    let _ = stop_tx.send(());
    drop(_unstick);
    gate_thread.join().unwrap();
}
