//! The real binary: `--role`, the effective frame table in `--print-config`,
//! and exit code 2 naming the key for frame letters that could collide.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use logingate::config::{Config, Dialect, Role};

const BIN: &str = env!("CARGO_BIN_EXE_logingate");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn print_config_writes_the_effective_frame_table() {
    let out = run(&[
        "--server",
        "127.0.0.1:5500",
        "--dialect",
        "ldx",
        "--print-config",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        "[server.frames]",
        "open = \"L\"",
        "data = \"D\"",
        "close = \"X\"",
        "open_gate_ip = true",
        "nul_after_reply = false",
        "block_frames = false",
        "temporary_block = \"B\"",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}:\n{text}");
    }
    let c = Config::from_toml(&text, Path::new("stdout")).unwrap();
    assert_eq!(c.server.dialect, Dialect::Ldx);
    assert_eq!(c.server.link_frames(), *Dialect::Ldx.frames());
}

#[test]
fn colliding_frame_letters_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (table, key) in [
        ("open = \"-\"", "server.frames.open"),
        ("data = \"+\"", "server.frames.data"),
        ("close = \"7\"", "server.frames.close"),
        ("data = \"%\"", "server.frames.data"),
        ("open = \"/\"", "server.frames.open"),
        // The delphi preset's open letter is O.
        ("close = \"O\"", "server.frames.close"),
        ("open = \"OO\"", "open"),
    ] {
        let file = dir.path().join("gate.toml");
        std::fs::write(
            &file,
            format!("[server]\naddr = \"127.0.0.1:5500\"\ndialect = \"delphi\"\n[server.frames]\n{table}\n"),
        )
        .unwrap();
        let out = run(&["--config", file.to_str().unwrap(), "--print-config"]);
        assert_eq!(out.status.code(), Some(2), "{table}: {}", stderr(&out));
        assert!(stderr(&out).contains(key), "{table}: {}", stderr(&out));
    }
}

#[test]
fn gate_addr_needs_a_table_that_sends_it() {
    let out = run(&[
        "--server",
        "127.0.0.1:5500",
        "--dialect",
        "wemade",
        "--print-config",
    ]);
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gate.toml");
    std::fs::write(
        &file,
        "[server]\naddr = \"127.0.0.1:5500\"\ngate_addr = \"203.0.113.9\"\n",
    )
    .unwrap();
    let out = run(&[
        "--config",
        file.to_str().unwrap(),
        "--dialect",
        "wemade",
        "--print-config",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`server.gate_addr`"),
        "{}",
        stderr(&out)
    );
    let out = run(&[
        "--config",
        file.to_str().unwrap(),
        "--dialect",
        "delphi",
        "--print-config",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let c = Config::from_toml(&String::from_utf8(out.stdout).unwrap(), Path::new("x")).unwrap();
    assert_eq!(c.server.gate_addr, Some("203.0.113.9".parse().unwrap()));
}

#[test]
fn selgate_role_takes_selgate_defaults_and_needs_a_dbserver() {
    let out = run(&["--role", "selgate", "--print-config"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("`server.addr`") && err.contains("DBServer"),
        "{err}"
    );

    let out = run(&[
        "--role",
        "selgate",
        "--server",
        "127.0.0.1:5100",
        "--print-config",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let c = Config::from_toml(&String::from_utf8(out.stdout).unwrap(), Path::new("x")).unwrap();
    assert_eq!(c.role, Role::SelGate);
    assert_eq!(c.gate.listen, vec!["0.0.0.0:7100".parse().unwrap()]);
    assert_eq!(c.server.dialect, Dialect::Delphi);
    assert_eq!(c.gate, Role::SelGate.defaults().gate);

    // A file's keys win over the role's defaults; the flag wins over the file's role.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gate.toml");
    std::fs::write(
        &file,
        "role = \"login\"\n[gate]\nmax_packets_per_sec = 3\n[server]\naddr = \"127.0.0.1:5100\"\n",
    )
    .unwrap();
    let out = run(&[
        "--config",
        file.to_str().unwrap(),
        "--role",
        "selgate",
        "--print-config",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let c = Config::from_toml(&String::from_utf8(out.stdout).unwrap(), Path::new("x")).unwrap();
    assert_eq!(c.role, Role::SelGate);
    assert_eq!(c.gate.max_packets_per_sec, 3);
    assert_eq!(
        c.gate.max_conn_per_ip,
        Role::SelGate.defaults().gate.max_conn_per_ip
    );
}

/// The embedded LoginSrv detects the presets' frames only: other letters
/// need an external LoginSrv of that build.
#[cfg(feature = "embedded")]
#[test]
fn the_embedded_loginsrv_takes_preset_letters_only() {
    let mut c = Config::default();
    c.server.frames.open = Some(b'Q');
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("`server.frames`"), "{err}");
    c.server.addr = vec!["127.0.0.1:5500".parse().unwrap()];
    c.validate().unwrap();
    // A pinned preset (what --print-config writes) is a preset.
    let mut c = Config::default();
    c.server.dialect = Dialect::Ldx;
    c.pin_frames();
    c.validate().unwrap();
}
