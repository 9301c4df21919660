//! `mirtool decode` with an empty packet argument is malformed input.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};

#[test]
fn empty_packet_argument_exits_2_with_one_line() {
    for arg in ["", "   "] {
        let out = Command::new(env!("CARGO_BIN_EXE_mirtool"))
            .args(["decode", arg])
            .stdin(Stdio::null())
            .output()
            .expect("run mirtool");
        assert_eq!(out.status.code(), Some(2), "argument {arg:?}");
        assert!(out.stdout.is_empty(), "nothing on stdout for {arg:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "one line: {err:?}");
        assert!(err.contains("packet 1 is empty"), "{err:?}");
    }
}

#[test]
fn empty_argument_next_to_a_good_packet_still_fails() {
    let out = Command::new(env!("CARGO_BIN_EXE_mirtool"))
        .args(["decode", "#1<<<<<I@C<<<<<<<<YSIaX^ylTSIo!", ""])
        .stdin(Stdio::null())
        .output()
        .expect("run mirtool");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("packet 2 is empty"));
}
