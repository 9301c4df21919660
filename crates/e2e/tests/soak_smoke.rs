//! `mirtool bench soak` end to end at a hundredth of its population: the
//! gate, the scripted LoginSrv and the clients as real processes on
//! loopback, three link drops, kicks and blocks, in about half a minute.
//!
//! The gate is the `logingate` binary cargo builds next to this test for the
//! gate's own integration tests (`cargo test --workspace`); run alone with
//! `cargo test -p e2e`, without that binary, the test says so and skips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use e2e::mirtool_command;

/// The run takes ~25 s; past this it is hung, not slow.
const HANG: Duration = Duration::from_secs(55);

#[test]
fn a_small_soak_passes_and_writes_its_files() {
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().and_then(std::path::Path::parent).unwrap();
    let gate = target.join(format!("logingate{}", std::env::consts::EXE_SUFFIX));
    if !gate.exists() {
        println!(
            "note: {} not built (cargo test --workspace builds it); soak smoke skipped",
            gate.display()
        );
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let mut child = mirtool_command()
        .args(["bench", "soak", "--duration", "20s", "--scale", "0.01"])
        .args([
            "--sample-secs",
            "2",
            "--link-kill-secs",
            "6",
            "--name",
            "smoke",
        ])
        .arg("--gate-bin")
        .arg(&gate)
        .arg("--output-dir")
        .arg(out.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mirtool bench soak");
    let deadline = Instant::now() + HANG;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mirtool bench soak still running after {HANG:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "soak failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("Result: **PASS**"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("smoke.json")).unwrap())
            .unwrap();
    assert_eq!(json["pass"], true);
    let last = json["samples"].as_array().and_then(|s| s.last()).unwrap();
    assert!(
        last["backend"]["link_kills"].as_u64().unwrap() >= 2,
        "{last}"
    );
    assert!(last["backend"]["kicks"].as_u64().unwrap() > 0, "{last}");
    assert_eq!(last["backend"]["open_now"], 0, "every session closed");
    let svg = std::fs::read_to_string(out.path().join("smoke.svg")).unwrap();
    assert!(svg.starts_with("<svg") || svg.contains("<svg"), "an SVG");
    assert!(out.path().join("smoke.md").exists());
}
