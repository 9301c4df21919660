//! What the real `logingate` binary tells an operator in its log: the stats line
//! (interval and totals, every refusal class by reason), one line per closed
//! session with `log_connections`, and local timestamps with their offset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::*;
use serde_json::Value;
use testkit::process::Spawned;

const BIN: &str = env!("CARGO_BIN_EXE_logingate");

/// A config file for a gate in front of `server`, JSON logs, stats every second,
/// plus `extra` (top-level keys first, then tables).
fn config_file(dir: &std::path::Path, server: SocketAddr, top: &str, gate: &str) -> String {
    let path = dir.join("gate.toml");
    let text = format!(
        "log_format = \"json\"\n{top}\n\
         [gate]\nlisten = [\"127.0.0.1:0\"]\nconn_rate_per_ip = 0\nstats_log_secs = 1\n{gate}\n\
         [gate.punish]\nper_ip_cap = \"disconnect\"\nconn_rate = \"disconnect\"\n\
         [gate.attack]\nenter_conn_rate = 0\n\
         [server]\naddr = \"{server}\"\ndialect = \"delphi\"\n\
         [admin]\nlisten = \"\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn message(v: &Value) -> &str {
    v["fields"]["message"].as_str().unwrap_or_default()
}

/// Runs `wait` on the blocking pool (the log reader blocks) and hands the child back.
async fn blocking<T: Send + 'static>(
    mut gate: Spawned,
    wait: impl FnOnce(&mut Spawned) -> T + Send + 'static,
) -> (Spawned, T) {
    tokio::task::spawn_blocking(move || {
        let v = wait(&mut gate);
        (gate, v)
    })
    .await
    .unwrap()
}

fn listen_addr(gate: &mut Spawned) -> SocketAddr {
    gate.wait_for_json("startup line", |v| {
        (message(v) == "logingate started").then(|| {
            let listen = v["fields"]["listen"].as_str().unwrap();
            listen
                .trim_matches(|c| c == '[' || c == ']')
                .parse()
                .unwrap()
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_line_counts_every_refusal_class_per_interval_and_since_start() {
    let dir = tempfile::tempdir().unwrap();
    let blocked = dir.path().join("block.txt");
    std::fs::write(&blocked, "127.0.0.3\n").unwrap();
    let srv = Srv::bind().await;
    let path = config_file(
        dir.path(),
        srv.addr(),
        "log_connections = true",
        &format!(
            "max_conn_per_ip = 1\nblock_list_file = \"{}\"",
            blocked.display()
        ),
    );
    let mut cmd = Command::new(BIN);
    cmd.args(["--config", &path]).env("RUST_LOG", "info");
    let (gate, addr) = blocking(Spawned::logs(cmd), listen_addr).await;
    let mut link = srv.accept().await;

    let first = connect_from([127, 0, 0, 1], addr).await;
    let id = link.open_id().await;
    // One slot per IP: the second connection from the same source is refused.
    let mut second = connect_from([127, 0, 0, 1], addr).await;
    assert!(is_rejected(&mut second).await);
    // The block list file names this source.
    let mut third = connect_from([127, 0, 0, 3], addr).await;
    assert!(is_rejected(&mut third).await);
    drop(first);

    let (gate, closed) = blocking(gate, |g| {
        g.wait_for_json("the session's close line", |v| {
            (message(v) == "session closed").then(|| v["fields"].clone())
        })
    })
    .await;
    assert_eq!(closed["session"].as_u64(), Some(u64::from(id)));
    assert!(closed["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(closed["duration"].as_str().unwrap().ends_with('s'));
    assert_eq!(closed["messages"].as_u64(), Some(0));
    assert_eq!(closed["reason"].as_str(), Some("peer_closed"));

    // Totals grow until every event is in; the interval figures of the line that
    // first shows them cannot exceed the totals, and later idle intervals are zero.
    let (gate, totals) = blocking(gate, |g| {
        g.wait_for_json("a stats line with every event", |v| {
            let f = &v["fields"];
            let complete = message(v) == "stats"
                && f["total_refused"].as_u64() == Some(2)
                && f["total_closed"].as_u64() == Some(1);
            complete.then(|| f.clone())
        })
    })
    .await;
    assert_eq!(
        totals["total_refusals"].as_str(),
        Some("blocked:1,per_ip_limit:1")
    );
    assert_eq!(totals["total_closes"].as_str(), Some("peer_closed:1"));
    assert_eq!(totals["total_accepted"].as_u64(), Some(3));
    assert_eq!(totals["total_opened"].as_u64(), Some(1));
    assert_eq!(totals["interval_secs"].as_u64(), Some(1));
    assert_eq!(totals["attack_mode"].as_str(), Some("off"));
    let (gate, idle) = blocking(gate, |g| {
        g.wait_for_json("the next stats line", |v| {
            (message(v) == "stats").then(|| v["fields"].clone())
        })
    })
    .await;
    assert_eq!(idle["refused"].as_u64(), Some(0), "{idle}");
    assert_eq!(idle["refusals"].as_str(), Some("none"));
    assert_eq!(idle["closed"].as_u64(), Some(0));
    assert_eq!(idle["total_refused"].as_u64(), Some(2));
    let (mut gate, ()) = blocking(gate, |g| {
        g.wait_for_json("the link's own line", |v| {
            (message(v) == "link stats" && v["fields"]["up"].as_bool() == Some(true)).then_some(())
        })
    })
    .await;
    gate.terminate();
    assert_eq!(gate.exit_status().code(), Some(0));
}

#[test]
fn local_timestamps_carry_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there: the gate starts and retries the link.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = dead.local_addr().unwrap();
    drop(dead);
    let path = config_file(dir.path(), server, "log_timestamps = \"local\"", "");
    let mut cmd = Command::new(BIN);
    // POSIX TZ: eight hours east of UTC, no daylight saving.
    cmd.args(["--config", &path])
        .env("RUST_LOG", "info")
        .env("TZ", "CST-8");
    let mut gate = Spawned::logs(cmd);
    let stamp = gate.wait_for_json("startup line", |v| {
        (message(v) == "logingate started").then(|| v["timestamp"].as_str().unwrap().to_owned())
    });
    assert!(stamp.ends_with("+08:00"), "{stamp}");
    gate.terminate();
    assert_eq!(gate.exit_status().code(), Some(0));
}

/// The gate's log line about its open-file limit, started under `prlimit` with
/// `soft:hard` descriptors and 1000 connections allowed.
fn nofile_line(soft_hard: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = dead.local_addr().unwrap();
    drop(dead);
    let path = config_file(dir.path(), server, "", "max_connections = 1000");
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={soft_hard}"))
        .args([BIN, "--config", &path])
        .env("RUST_LOG", "info");
    let mut gate = Spawned::logs(cmd);
    let line = gate.wait_for_json("the open-file limit line", |v| {
        message(v).contains("open-file limit").then(|| v.clone())
    });
    // Signal handlers are in place once it has started.
    gate.wait_for_json("startup line", |v| {
        (message(v) == "logingate started").then_some(())
    });
    gate.terminate();
    assert_eq!(gate.exit_status().code(), Some(0));
    line
}

#[test]
fn the_open_file_limit_is_raised_towards_the_hard_limit() {
    let raised = nofile_line("256:4096");
    assert_eq!(raised["level"], "INFO", "{raised}");
    assert_eq!(raised["fields"]["from"].as_u64(), Some(256));
    assert_eq!(raised["fields"]["to"].as_u64(), Some(1000 + 128));
}

#[test]
fn an_open_file_limit_below_max_connections_is_named_with_limit_nofile() {
    // Raised to the hard limit first, then still too low.
    let low = nofile_line("256:512");
    assert_eq!(low["fields"]["message"], "open-file limit raised");
    let warned = nofile_line("512:512");
    assert_eq!(warned["level"], "WARN", "{warned}");
    let text = message(&warned);
    assert!(text.contains("LimitNOFILE=1128"), "{text}");
    assert!(text.contains("gate.max_connections"), "{text}");
    assert_eq!(warned["fields"]["soft"].as_u64(), Some(512));
}
