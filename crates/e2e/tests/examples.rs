//! The example configurations under `dist/examples/`, started by the real
//! programs: each one as shipped, with only what a test on loopback must
//! change (listen addresses to 127.0.0.1:0, data to a temporary directory,
//! the front's and the LoginSrv's addresses to loopback), must come up and
//! serve a player's registration, login and server selection through
//! `mirtool login`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Instant;

use e2e::{mirtool, sibling_binary, strings};
use testkit::process::Spawned;
use testkit::STEP;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../dist/examples")
        .join(name)
}

/// The example parsed, `edit` applied, written into `dir`.
fn rewritten(name: &str, dir: &Path, edit: impl FnOnce(&mut toml::Table)) -> PathBuf {
    let text = std::fs::read_to_string(example(name)).unwrap();
    let mut table: toml::Table = text.parse().unwrap();
    edit(&mut table);
    let path = dir.join(name);
    std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
    path
}

/// `table[a][b]…[key] = value`, creating the tables on the way.
fn set(table: &mut toml::Table, path: &[&str], value: impl Into<toml::Value>) {
    let (key, parents) = path.split_last().unwrap();
    let mut t = table;
    for p in parents {
        t = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .unwrap();
    }
    t.insert(key.to_string(), value.into());
}

fn loopback_listeners(t: &mut toml::Table) {
    set(t, &["gate", "listen"], vec!["127.0.0.1:0"]);
    set(t, &["admin", "listen"], "127.0.0.1:0");
}

/// The field `name=VALUE` of a text log line, VALUE up to the next space.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    Some(line[start..].split(' ').next().unwrap_or_default())
}

/// `e2e-logingate --config FILE`, once it has said where it listens.
fn start_gate(config: &Path) -> (Spawned, SocketAddr) {
    let mut cmd = sibling_binary("e2e-logingate");
    cmd.arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let mut gate = Spawned::logs(cmd);
    let addr = gate.wait_for("the gate's startup line", |line| {
        if !line.contains("logingate started") {
            return None;
        }
        let listen = field(line, "listen")?;
        Some(
            listen
                .trim_matches(|c| c == '[' || c == ']')
                .parse()
                .unwrap(),
        )
    });
    (gate, addr)
}

async fn login(addr: SocketAddr, extra: &[&str]) -> Output {
    let mut args = strings(&["login", "--addr", &addr.to_string(), "--timeout-secs", "5"]);
    args.extend(strings(extra));
    mirtool(args).await
}

/// Waits until the gate answers through its LoginSrv (an unknown account is
/// refused by the LoginSrv itself), then registers, logs in and selects.
async fn serves_a_login(addr: SocketAddr, extra: &[&str]) {
    let deadline = Instant::now() + STEP;
    loop {
        let mut args = vec!["--user", "nobody1", "--password", "pw1234"];
        args.extend(extra);
        let o = login(addr, &args).await;
        let out = String::from_utf8_lossy(&o.stdout);
        if o.status.code() == Some(1) && out.contains("no such account") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gate never answered through its LoginSrv: {out} {}",
            String::from_utf8_lossy(&o.stderr)
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut args = vec!["--user", "player1", "--password", "pw1234", "--register"];
    args.extend(extra);
    let o = login(addr, &args).await;
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("account player1 created"), "{out}");
    assert!(out.contains("selected demo: SelGate "), "{out}");
}

#[test]
fn every_example_is_a_valid_config_as_shipped() {
    for name in [
        "one-box.toml",
        "external-loginsrv.toml",
        "behind-proxy.toml",
    ] {
        let o = sibling_binary("e2e-logingate")
            .arg("--config")
            .arg(example(name))
            .arg("--print-config")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let printed = String::from_utf8_lossy(&o.stdout);
        // With the embedded LoginSrv its keys are printed in effect.
        if name != "external-loginsrv.toml" {
            assert!(printed.contains("[embedded.security]"), "{name}: {printed}");
            assert!(
                printed.contains("argon2_m_kib = 19456  # "),
                "{name}: {printed}"
            );
        }
    }
    let o = sibling_binary("e2e-loginsrv")
        .arg("--config")
        .arg(example("loginsrv.toml"))
        .arg("--print-config")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_box_serves_a_login() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = rewritten("one-box.toml", dir.path(), |t| {
        loopback_listeners(t);
        set(t, &["data_dir"], data.display().to_string());
        set(t, &["embedded", "game_servers", "listen"], "127.0.0.1:0");
    });
    let (gate, addr) = start_gate(&config);
    serves_a_login(addr, &[]).await;
    assert!(data.join("accounts.db").exists(), "accounts in data_dir");
    drop(gate);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_in_front_of_a_loginsrv_process_serves_a_login() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("accounts.db");
    let srv_config = rewritten("loginsrv.toml", dir.path(), |t| {
        set(t, &["listen"], "127.0.0.1:0");
        set(t, &["database"], format!("sqlite://{}", db.display()));
        set(t, &["game_servers", "listen"], "127.0.0.1:0");
        set(t, &["admin", "listen"], "127.0.0.1:0");
    });
    let mut cmd = sibling_binary("e2e-loginsrv");
    cmd.arg("--config")
        .arg(&srv_config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let mut srv = Spawned::logs(cmd);
    let srv_addr: SocketAddr = srv.wait_for("the LoginSrv's gate listener", |line| {
        line.contains("LoginSrv listening for gates")
            .then(|| field(line, "local_addr").unwrap().parse().unwrap())
    });
    let config = rewritten("external-loginsrv.toml", dir.path(), |t| {
        loopback_listeners(t);
        set(t, &["server", "addr"], srv_addr.to_string());
    });
    let (gate, addr) = start_gate(&config);
    serves_a_login(addr, &[]).await;
    assert!(db.exists(), "the account is in the LoginSrv's database");
    drop(gate);
    drop(srv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_front_serves_a_login() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = rewritten("behind-proxy.toml", dir.path(), |t| {
        loopback_listeners(t);
        set(t, &["data_dir"], data.display().to_string());
        // mirtool plays the front, from loopback.
        set(t, &["gate", "trusted_proxies"], vec!["127.0.0.1"]);
        set(t, &["gate", "allow_sources"], vec!["127.0.0.1"]);
    });
    let (gate, addr) = start_gate(&config);
    let front = ["--proxy", "v2", "--proxy-source", "198.51.100.7"];
    serves_a_login(addr, &front).await;
    // Without the header the front's connection is refused.
    let o = login(addr, &["--user", "player1", "--password", "pw1234"]).await;
    assert_eq!(o.status.code(), Some(2));
    drop(gate);
}
