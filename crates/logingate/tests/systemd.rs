//! The systemd units in `dist/` pass `systemd-analyze verify` (with the binaries
//! this build produced in place of `/usr/bin/…`), and keep the settings the gate's
//! reload and restart rely on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_logingate");
const UNITS: [&str; 3] = ["logingate.service", "loginsrv.service", "logingate.socket"];

fn dist() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../dist"))
}

#[test]
fn units_keep_notify_reload_and_restart_settings() {
    let gate = std::fs::read_to_string(dist().join("logingate.service")).unwrap();
    for line in [
        "Type=notify",
        "NotifyAccess=all",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ExecStart=/usr/bin/logingate --config /etc/logingate/logingate.toml",
        "User=mir2",
        "ReadWritePaths=/var/lib/logingate",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(
            gate.lines().any(|l| l == line),
            "logingate.service lacks {line}"
        );
    }
    let srv = std::fs::read_to_string(dist().join("loginsrv.service")).unwrap();
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ExecStart=/usr/bin/loginsrv --config /etc/loginsrv/loginsrv.toml",
        "ReadWritePaths=/var/lib/loginsrv",
    ] {
        assert!(
            srv.lines().any(|l| l == line),
            "loginsrv.service lacks {line}"
        );
    }
    let socket = std::fs::read_to_string(dist().join("logingate.socket")).unwrap();
    assert!(socket.contains("FileDescriptorName=gate"));
}

#[test]
fn units_pass_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: systemd-analyze is not installed (Debian package systemd)");
        return;
    }
    // The units name the installed paths; verify checks that each command exists.
    let built = Path::new(BIN).parent().unwrap();
    let loginsrv = built.join("loginsrv");
    let loginsrv = if loginsrv.exists() {
        loginsrv
    } else {
        // Built by `cargo test --workspace`; for this crate alone any executable
        // stands in, as only the unit's syntax and paths are checked.
        Path::new(BIN).to_path_buf()
    };
    let dir = tempfile::tempdir().unwrap();
    for unit in UNITS {
        let text = std::fs::read_to_string(dist().join(unit))
            .unwrap()
            .replace("/usr/bin/logingate", BIN)
            .replace("/usr/bin/loginsrv", loginsrv.to_str().unwrap());
        std::fs::write(dir.path().join(unit), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(UNITS.iter().map(|u| dir.path().join(u)))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warns: {stderr}"
    );
}
