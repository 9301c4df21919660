//! The real `logingate` binary: `--print-config`, exit code 2 on bad
//! configuration, and SIGTERM → close frames → exit 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use common::*;
use logingate::config::{Config, Dialect};
use testkit::process::Spawned;

const BIN: &str = env!("CARGO_BIN_EXE_logingate");

#[test]
fn print_config_parses_back_with_flags_applied() {
    let out = Command::new(BIN)
        .args([
            "--print-config",
            "--listen",
            "127.0.0.1:7100",
            "--listen",
            "[::1]:7101",
            "--server",
            "127.0.0.1:5600",
            "--dialect",
            "happym2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let c = Config::from_toml(&text, Path::new("stdout")).expect("printed config parses");
    c.validate().unwrap();
    assert_eq!(c.gate.listen.len(), 2);
    assert_eq!(c.server.addr, vec!["127.0.0.1:5600".parse().unwrap()]);
    assert_eq!(c.server.dialect, Dialect::HappyM2);
    assert_eq!(
        c.gate.max_packets_per_sec,
        Config::default().gate.max_packets_per_sec
    );
}

/// `--print-config` output given back with `--config` prints the same
/// text: every key (nested `[embedded]` tables, IPv6 listeners, a set
/// `server.addr`, flags) survives the round trip.
#[test]
fn print_config_round_trips_through_config() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.toml");
    // `data_dir` and `[embedded]` exist only with the embedded LoginSrv.
    let embedded_keys = if cfg!(feature = "embedded") {
        (
            "data_dir = \"/tmp/gate data\"\n",
            "[embedded]\nanswer = 42\n[embedded.db]\nurl = \"sqlite://x.db\"\n\
             [[embedded.servers]]\nname = \"one\"\n",
        )
    } else {
        ("", "")
    };
    std::fs::write(
        &input,
        format!(
            "{}log_format = \"json\"\n\
             [gate]\nlisten = [\"[::]:7000\", \"127.0.0.1:7001\"]\nblock_list_file = \"blocks.txt\"\n\
             max_packets_per_sec = 7\n\
             [server]\naddr = \"[::1]:5500\"\nmax_frame_bytes = 4096\n\
             [admin]\nlisten = \"[::1]:7101\"\ntoken = \"s3cret\"\n{}",
            embedded_keys.0, embedded_keys.1
        ),
    )
    .unwrap();
    let print = |config: &Path, extra: &[&str]| {
        let out = Command::new(BIN)
            .arg("--config")
            .arg(config)
            .arg("--print-config")
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = print(&input, &["--dialect", "delphi"]);
    let printed = dir.path().join("printed.toml");
    std::fs::write(&printed, &first).unwrap();
    let second = print(&printed, &[]);
    assert_eq!(first, second);
    let c = Config::from_toml(&second, Path::new("printed")).unwrap();
    assert_eq!(c.server.dialect, Dialect::Delphi);
    assert_eq!(c.gate.max_packets_per_sec, 7);
    assert_eq!(
        (c.admin.listen.as_str(), c.admin.token.as_str()),
        ("[::1]:7101", "s3cret")
    );
    #[cfg(feature = "embedded")]
    {
        assert_eq!(
            c.embedded.get("answer").and_then(|v| v.as_integer()),
            Some(42)
        );
        assert!(c.embedded.get("servers").is_some_and(|v| v.is_array()));
        assert_eq!(c.data_dir, Path::new("/tmp/gate data"));
    }
}

/// A `--data-dir` that TOML cannot hold is refused (exit 2, key named)
/// instead of printing a config that would not round-trip.
#[cfg(all(unix, feature = "embedded"))]
#[test]
fn non_utf8_data_dir_exits_2() {
    use std::os::unix::ffi::OsStrExt;
    let out = Command::new(BIN)
        .arg("--print-config")
        .arg("--data-dir")
        .arg(std::ffi::OsStr::from_bytes(b"/tmp/\xff"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("data_dir"), "{err}");
}

fn exits_2_naming(config: &str, key: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gate.toml");
    std::fs::write(&file, config).unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .arg("--print-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "config {config:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(key), "stderr {err:?} should name {key}");
}

/// A list file is created empty when missing; one that cannot be read is a
/// configuration error naming its key.
#[test]
fn list_files_missing_are_created_and_unreadable_ones_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let unreadable = dir.path().join("a-directory");
    std::fs::create_dir(&unreadable).unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = dead.local_addr().unwrap();
    drop(dead);
    for key in ["block_list_file", "allow_list_file"] {
        let file = dir.path().join("gate.toml");
        std::fs::write(
            &file,
            format!(
                "[gate]\nlisten = [\"127.0.0.1:0\"]\n{key} = \"{}\"\n[server]\naddr = \"{server}\"\n[admin]\nlisten = \"\"\n",
                unreadable.display()
            ),
        )
        .unwrap();
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{key}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("gate.{key}")), "{err}");
    }
    let missing = dir.path().join("new-blocks.txt");
    let file = dir.path().join("gate.toml");
    std::fs::write(
        &file,
        format!(
            "log_format = \"json\"\n[gate]\nlisten = [\"127.0.0.1:0\"]\nblock_list_file = \"{}\"\n[server]\naddr = \"{server}\"\n[admin]\nlisten = \"\"\n",
            missing.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(&file).env("RUST_LOG", "info");
    let mut gate = Spawned::logs(cmd);
    let named = gate.wait_for_json("startup line", |v| {
        (v["fields"]["message"] == "logingate started")
            .then(|| v["fields"]["block_list_file"].as_str().unwrap().to_owned())
    });
    assert_eq!(named, missing.display().to_string());
    assert_eq!(std::fs::read_to_string(&missing).unwrap(), "");
    gate.terminate();
    assert_eq!(gate.exit_status().code(), Some(0));
}

#[test]
fn bad_configs_exit_2_naming_the_key() {
    exits_2_naming("[server]\nheartbeat_secs = 0\n", "server.heartbeat_secs");
    exits_2_naming(
        "[server]\nheartbeat_secs = 5\ndead_after_secs = 5\n",
        "server.dead_after_secs",
    );
    exits_2_naming("[gate]\nmax_packet_bytes = 10\n", "gate.max_packet_bytes");
    exits_2_naming("[gate]\nmax_conections = 10\n", "max_conections");
    exits_2_naming("[server]\ndialect = \"ipx\"\n", "dialect");
    // The embedded LoginSrv's own keys are checked up front too.
    #[cfg(feature = "embedded")]
    exits_2_naming("[embedded]\nbogus_key = 1\n", "bogus_key");
    // One console: the embedded LoginSrv's endpoints are the gate's.
    #[cfg(feature = "embedded")]
    exits_2_naming(
        "[embedded.admin]\nlisten = \"127.0.0.1:0\"\n",
        "embedded.admin",
    );
    exits_2_naming("[admin]\nlisten = \"0.0.0.0:7001\"\n", "admin.token");
    let out = Command::new(BIN)
        .args(["--dialect", "ipx"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A gate built without the embedded LoginSrv has nothing to link to
/// without `server.addr`, and no `[embedded]` table or `data_dir`.
#[cfg(not(feature = "embedded"))]
#[test]
fn without_the_embedded_loginsrv_a_missing_server_addr_exits_2() {
    exits_2_naming("[gate]\nmax_packets_per_sec = 7\n", "server.addr");
    exits_2_naming(
        "[server]\naddr = \"127.0.0.1:5500\"\n[embedded]\n",
        "embedded",
    );
    exits_2_naming(
        "data_dir = \"x\"\n[server]\naddr = \"127.0.0.1:5500\"\n",
        "data_dir",
    );
    let out = Command::new(BIN).arg("--print-config").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.addr"), "{err}");
    let out = Command::new(BIN)
        .args(["--server", "127.0.0.1:5500", "--print-config"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn flags_exit_2_naming(args: &[&str], key: &str) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--print-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "flags {args:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(key), "stderr {err:?} should name {key}");
}

/// Addresses that could only fail later (a connect loop to port 0, a bind
/// error, a gate linked to itself) are refused up front.
#[test]
fn unusable_addresses_exit_2_naming_the_key() {
    flags_exit_2_naming(&["--server", "127.0.0.1:0"], "server.addr");
    flags_exit_2_naming(
        &[
            "--listen",
            "127.0.0.1:7100",
            "--listen",
            "127.0.0.1:7100",
            "--server",
            "127.0.0.1:5600",
        ],
        "gate.listen",
    );
    flags_exit_2_naming(
        &["--listen", "0.0.0.0:7100", "--server", "127.0.0.1:7100"],
        "server.addr",
    );
    exits_2_naming(
        "[gate]\nlisten = [\"[::1]:7100\", \"[::1]:7100\"]\n[server]\naddr = \"127.0.0.1:5600\"\n",
        "gate.listen",
    );
}

/// Waits for the gate's log to report both its listen address and the link
/// being up, in either order (the link may come up before the startup line is
/// written); returns the listen address.
fn listen_addr_from_log(gate: &mut Spawned) -> SocketAddr {
    let mut addr = None;
    let mut link_up = false;
    gate.wait_for("startup and link-up lines", |line| {
        if line.contains("logingate started") {
            let start = line.find("listen=[").expect("listen field") + "listen=[".len();
            let end = start + line[start..].find(']').expect("end of list");
            addr = Some(line[start..end].parse::<SocketAddr>().expect("address"));
        }
        link_up |= line.contains("link: up");
        (link_up && addr.is_some()).then_some(())
    });
    addr.expect("startup line")
}

#[tokio::test]
async fn sigterm_sends_close_frames_and_exits_0() {
    let srv = Srv::bind().await;
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--server",
        &srv.addr().to_string(),
        "--dialect",
        "delphi",
    ])
    .env("RUST_LOG", "info")
    .env("NO_COLOR", "1");
    let gate = Spawned::logs(cmd);
    let mut link = srv.accept().await;
    // `link: up` waits for the LoginSrv's first frame.
    link.send(b"%++$").await;
    let (mut gate, addr) = tokio::task::spawn_blocking(move || {
        let mut gate = gate;
        let addr = listen_addr_from_log(&mut gate);
        (gate, addr)
    })
    .await
    .unwrap();

    // The gate said the link is up: this client is admitted.
    let mut client = connect(addr).await;
    let id = link.open_id().await;

    gate.terminate();
    let frames = link.frames_until_eof().await;
    assert_eq!(frames, vec![format!("%X{id}$")]);
    drop(link);
    assert!(read_to_close(&mut client).await.is_empty());

    assert_eq!(gate.exit_status().code(), Some(0));
}

#[test]
fn json_logs_and_sigterm_while_the_link_is_down() {
    // Nothing listens on the LoginSrv address: the gate keeps retrying.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = dead.local_addr().unwrap().to_string();
    drop(dead);
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "",
        "--server",
        &server,
        "--log-format",
        "json",
    ])
    .env("RUST_LOG", "info");
    let mut gate = Spawned::logs(cmd);
    let mut started = false;
    let mut connect_failed = false;
    gate.wait_for_json("startup and connect-failure lines", |v| {
        let msg = v["fields"]["message"].as_str().unwrap_or_default();
        if msg == "logingate started" {
            assert_eq!(v["fields"]["server"].as_str(), Some(server.as_str()));
            assert_eq!(v["fields"]["dialect"].as_str(), Some("wemade"));
            started = true;
        } else if msg == "link: connect failed" {
            connect_failed = true;
        }
        (started && connect_failed).then_some(())
    });
    gate.terminate();
    assert_eq!(gate.exit_status().code(), Some(0));
}

#[test]
fn bad_backend_lists_exit_2_naming_the_entry() {
    exits_2_naming(
        "[server]\naddr = [\"127.0.0.1:5500\", \"127.0.0.1:5500\"]\n",
        "`server.addr[1]`",
    );
    exits_2_naming(
        "[[server.backends]]\naddr = \"127.0.0.1:5500\"\n[[server.backends]]\naddr = \"10.0.0.1\"\n",
        "`server.backends[1].addr`",
    );
    // Both forms at once.
    exits_2_naming(
        "[server]\naddr = \"127.0.0.1:5501\"\n[[server.backends]]\naddr = \"127.0.0.1:5500\"\n",
        "`server.backends`",
    );
}

#[test]
fn repeated_server_flags_are_a_backend_list() {
    let out = Command::new(BIN)
        .args([
            "--server",
            "127.0.0.1:5500",
            "--server",
            "127.0.0.1:5501",
            "--print-config",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let c = Config::from_toml(&String::from_utf8_lossy(&out.stdout), Path::new("out")).unwrap();
    assert_eq!(
        c.server.addr,
        vec![
            "127.0.0.1:5500".parse().unwrap(),
            "127.0.0.1:5501".parse::<SocketAddr>().unwrap()
        ]
    );
}

#[tokio::test]
async fn a_loginsrv_that_closes_at_once_gets_the_wrong_port_hint_in_the_log() {
    let srv = Srv::bind().await;
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "",
        "--server",
        &srv.addr().to_string(),
        "--log-format",
        "json",
    ])
    .env("RUST_LOG", "info");
    let mut gate = Spawned::logs(cmd);
    // Accept and close at once, as a LoginSrv does to a gate it does not allow.
    drop(srv.accept().await);
    let waited = tokio::task::spawn_blocking(move || {
        gate.wait_for_json("the early-close hint", |v| {
            let msg = v["fields"]["message"].as_str().unwrap_or_default();
            msg.contains("wrong port, or this gate's address is not allowed by the LoginSrv")
                .then(|| v["level"].as_str().map(str::to_owned))
        });
        let up = gate.seen.iter().any(|l| l.contains("\"link: up\""));
        gate.terminate();
        up
    })
    .await
    .unwrap();
    assert!(!waited, "a LoginSrv that never sent a frame was never up");
}
