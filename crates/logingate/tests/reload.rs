//! Live reload of the real binary (SIGHUP and `POST /api/reload`), and
//! `--check-config`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::*;
use logingate::config::{Config, Dialect};
use testkit::http::{get, post};
use testkit::process::Spawned;

const BIN: &str = env!("CARGO_BIN_EXE_logingate");

/// Start the binary with `config`; returns it with its client and console addresses
/// once the link is connected.
async fn start(config: &Path) -> (Spawned, SocketAddr, SocketAddr) {
    let (gate, addrs) = testkit::process::start_gate(BIN, config, "link: connected").await;
    (gate, addrs.listen, addrs.admin.expect("the console runs"))
}

fn hangup(gate: &Spawned) {
    // SAFETY: kill(2) with a plain pid and signal number.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(gate.id() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(rc, 0);
}

/// Sends SIGHUP and returns the reload's log line (accepted or refused).
async fn reload(gate: Spawned) -> (Spawned, String) {
    hangup(&gate);
    let mut gate = gate;
    tokio::task::spawn_blocking(move || {
        let line = gate.wait_for("the reload's outcome", |l| {
            (l.contains("config reloaded") || l.contains("config reload refused"))
                .then(|| l.to_owned())
        });
        (gate, line)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_lower_cap_and_a_new_block_list_and_refuses_a_bad_file() {
    let srv = Srv::bind().await;
    let dir = tempfile::tempdir().unwrap();
    let blocks = dir.path().join("blocks.txt");
    std::fs::write(&blocks, "127.0.0.2\n").unwrap();
    let mut c = test_config(srv.addr(), Dialect::Wemade);
    c.admin.listen = "127.0.0.1:0".into();
    let file = dir.path().join("gate.toml");
    std::fs::write(&file, c.to_toml()).unwrap();
    let (gate, addr, admin) = start(&file).await;
    let mut link = srv.accept().await;

    let mut first = connect(addr).await;
    let mut second = connect(addr).await;
    let ids = [link.open_id().await, link.open_id().await];

    // A lower per-IP cap: the two live sessions stay, the third is refused.
    c.gate.max_conn_per_ip = 2;
    std::fs::write(&file, c.to_toml()).unwrap();
    let (gate, line) = reload(gate).await;
    assert!(line.contains("config reloaded"), "{line}");
    assert!(line.contains("gate.max_conn_per_ip"), "{line}");
    let mut third = connect(addr).await;
    assert!(is_rejected(&mut third).await, "over the reloaded cap");
    expect_open(&mut first, STEP / 10).await;
    expect_open(&mut second, STEP / 10).await;

    // A block list file set by the reload is read at once.
    c.gate.block_list_file = blocks.to_str().unwrap().to_owned();
    c.gate.block_list_poll_secs = 3600;
    std::fs::write(&file, c.to_toml()).unwrap();
    let (gate, line) = reload(gate).await;
    assert!(line.contains("gate.block_list_file"), "{line}");
    let mut blocked = connect_from([127, 0, 0, 2], addr).await;
    assert!(
        is_rejected(&mut blocked).await,
        "listed in the new block file"
    );

    // An invalid file changes nothing and names the key.
    let mut bad = c.to_toml();
    bad.push_str("\n[nonsense]\nkey = 1\n");
    bad = bad.replace("max_conn_per_ip = 2", "max_conn_per_ip = 9");
    std::fs::write(&file, &bad).unwrap();
    let (gate, line) = reload(gate).await;
    assert!(line.contains("config reload refused"), "{line}");
    assert!(line.contains("key=nonsense"), "{line}");
    let mut still = connect(addr).await;
    assert!(is_rejected(&mut still).await, "the cap of 2 stays");
    let mut blocked = connect_from([127, 0, 0, 2], addr).await;
    assert!(is_rejected(&mut blocked).await, "the block list stays");

    // The console's reload: restart-only keys are reported, the rest applied.
    let mut changed: Config = c.clone();
    changed.gate.listen = vec!["127.0.0.1:1".parse().unwrap()];
    changed.gate.max_conn_per_ip = 0;
    std::fs::write(&file, changed.to_toml()).unwrap();
    let r = post(admin, "/api/reload", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let outcome = &r.json()["config"];
    assert_eq!(outcome["ok"], true, "{outcome}");
    assert_eq!(
        outcome["restart_required"],
        serde_json::json!(["gate.listen"])
    );
    assert_eq!(
        outcome["applied"],
        serde_json::json!(["gate.max_conn_per_ip"])
    );
    let mut fourth = connect(addr).await;
    let id = link.open_id().await;
    assert!(!ids.contains(&id));
    expect_open(&mut fourth, STEP / 10).await;
    std::fs::write(&file, &bad).unwrap();
    let r = post(admin, "/api/reload", "").await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.json()["config"]["error"]["key"], "nonsense");
    let metrics = get(admin, "/metrics").await.body;
    assert!(
        metrics.contains("gate_config_reload_failures_total 2"),
        "{metrics}"
    );

    gate.terminate();
    let mut gate = gate;
    let status = tokio::task::spawn_blocking(move || gate.exit_status())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn check_config_exits_0_for_a_good_file_and_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[gate]\nmax_conn_per_ip = 3\n[server]\naddr = \"127.0.0.1:5500\"\n",
    )
    .unwrap();
    testkit::process::assert_check_config(BIN, &good, None);
    for (text, key) in [
        ("[gate]\nmax_conections = 3\n", "gate.max_conections"),
        (
            "[server]\naddr = \"127.0.0.1:5500\"\nheartbeat_secs = 0\n",
            "server.heartbeat_secs",
        ),
        ("log_filter = \"netcore=loud\"\n", "log_filter"),
    ] {
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, text).unwrap();
        testkit::process::assert_check_config(BIN, &bad, Some(key));
    }
}

/// A gate started in-process: the reloaded per-session limits reach a session
/// that is already open, and the link re-arms its heartbeat at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_sessions_and_the_link_take_the_reloaded_limits() {
    let (gate, _srv, mut link) = gate_with_srv(|_| {}, Dialect::Wemade).await;
    let mut client = connect(gate_addr(&gate)).await;
    let id = link.open_id().await;
    use tokio::io::AsyncWriteExt;
    client.write_all(&client_msg(1)).await.unwrap();
    assert!(link
        .frame_no_hb()
        .await
        .starts_with(format!("%A{id}/").as_bytes()));

    let mut smaller = gate.config();
    smaller.gate.max_packet_bytes = 20;
    smaller.server.heartbeat_secs = 1;
    smaller.server.dead_after_secs = 60;
    smaller.gate.listen = vec!["127.0.0.1:1".parse().unwrap()];
    let outcome = gate.apply_config(smaller);
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(outcome.restart_required, ["gate.listen"]);
    for key in ["gate.max_packet_bytes", "server.heartbeat_secs"] {
        assert!(
            outcome.applied.iter().any(|k| k == key),
            "{key}: {outcome:?}"
        );
    }
    // The heartbeat was 30 s: only the reload can bring one within STEP.
    assert_eq!(link.frame().await, b"%--$");
    client.write_all(&client_msg(2)).await.unwrap();
    assert!(read_to_close(&mut client).await.is_empty());
    eventually("closed as oversize", || {
        gate.counts().closed("oversize") == 1
    })
    .await;

    let mut refused = gate.config();
    refused.server.heartbeat_secs = 0;
    let outcome = gate.apply_config(refused);
    assert!(!outcome.ok);
    assert_eq!(outcome.error.unwrap().key, "server.heartbeat_secs");
    assert_eq!(
        gate.config().server.heartbeat_secs,
        1,
        "a refused config changes nothing"
    );
    gate.shutdown().await;
}
