//! `mirtool encode` / `mirtool decode` run as real processes.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn mirtool(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mirtool"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mirtool");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.unwrap_or_default())
        .expect("write stdin");
    drop(pipe);
    child.wait_with_output().expect("mirtool output")
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn decodes_the_login_example() {
    let out = mirtool(&["decode", "#1<<<<<I@C<<<<<<<<YSIaX^ylTSIo!"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_lines(&out);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["seq"], 1);
    assert_eq!(v[0]["ident"], 2001);
    assert_eq!(v[0]["ident_name"], "CM_IDPASSWORD");
    assert_eq!(v[0]["recog"], 0);
    assert_eq!(v[0]["body"], "user/pass");
    assert_eq!(v[0]["body_hex"], "757365722f70617373");
}

#[test]
fn decodes_server_packets_from_stdin() {
    let input = b"#JO<<<=D><<<<<<<<HODsG_<jH>tmGoXmH?<kHODoI?P!\r\n\n#{{{{{{X=<<<<<<<<!\n";
    let out = mirtool(&["decode"], Some(input));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_lines(&out);
    assert_eq!(v.len(), 2, "blank lines are skipped");
    assert_eq!(v[0]["seq"], serde_json::Value::Null);
    assert_eq!(v[0]["ident_name"], "SM_SELECTSERVER_OK");
    assert_eq!(v[0]["recog"], 12345);
    assert_eq!(v[0]["body"], "127.0.0.1/7100/12345");
    assert_eq!(v[1]["ident"], 503);
    assert_eq!(v[1]["recog"], -1);
    assert_eq!(v[1]["body"], "");
}

#[test]
fn encode_then_decode_roundtrips() {
    let enc = mirtool(
        &[
            "encode",
            "--ident",
            "SM_PASSOK_SELECTSERVER",
            "--recog",
            "-3",
            "--param",
            "7",
            "--tag",
            "8",
            "--series",
            "2",
            "--body",
            "传奇一区/1/传奇二区/0/",
            "--seq",
            "4",
        ],
        None,
    );
    assert!(
        enc.status.success(),
        "{}",
        String::from_utf8_lossy(&enc.stderr)
    );
    let packet = String::from_utf8(enc.stdout).unwrap();
    assert!(
        packet.starts_with("#4") && packet.ends_with("!\n"),
        "{packet:?}"
    );
    let dec = mirtool(&["decode", packet.trim_end()], None);
    assert!(
        dec.status.success(),
        "{}",
        String::from_utf8_lossy(&dec.stderr)
    );
    let v = json_lines(&dec);
    assert_eq!(v[0]["seq"], 4);
    assert_eq!(v[0]["ident"], 529);
    assert_eq!(v[0]["ident_name"], "SM_PASSOK_SELECTSERVER");
    assert_eq!(
        (v[0]["recog"].clone(), v[0]["param"].clone()),
        (serde_json::json!(-3), serde_json::json!(7))
    );
    assert_eq!(
        (v[0]["tag"].clone(), v[0]["series"].clone()),
        (serde_json::json!(8), serde_json::json!(2))
    );
    assert_eq!(v[0]["body"], "传奇一区/1/传奇二区/0/");
}

#[test]
fn encode_matches_the_protocol_example_and_honours_id_overrides() {
    let out = mirtool(
        &[
            "encode",
            "--ident",
            "CM_IDPASSWORD",
            "--seq",
            "1",
            "--body",
            "user/pass",
        ],
        None,
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "#1<<<<<I@C<<<<<<<<YSIaX^ylTSIo!\n"
    );
    let out = mirtool(
        &[
            "encode",
            "--ident",
            "CM_GETBACKPASSWORD",
            "--id",
            "CM_GETBACKPASSWORD=2010",
        ],
        None,
    );
    let packet = String::from_utf8(out.stdout).unwrap();
    let dec = mirtool(
        &[
            "decode",
            "--id",
            "CM_GETBACKPASSWORD=2010",
            packet.trim_end(),
        ],
        None,
    );
    let v = json_lines(&dec);
    assert_eq!(
        (v[0]["ident"].clone(), v[0]["ident_name"].clone()),
        (serde_json::json!(2010), "CM_GETBACKPASSWORD".into())
    );
}

#[test]
fn bad_input_exits_2_naming_the_offset() {
    // '$' at offset 14 (inside the header) would inject a link frame.
    let out = mirtool(&["decode", "#1<<<<<I@C<<<<$<<<<!"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("offset 14") && err.contains("0x24"), "{err}");

    // A bad char in the body is reported at its offset within the whole packet.
    let out = mirtool(&["decode", "#1<<<<<I@C<<<<<<<<YS\u{7f}aX^ylTSIo!"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("offset 20"), "{err}");

    for (packet, what) in [
        ("1<<<<<I@C<<<<<<<<!", "offset 0"),
        ("#1<<<!", "short"),
        ("#1<<<<<I@C<<<<<<<<Y!", "offset 18"),
    ] {
        let out = mirtool(&["decode", packet], None);
        assert_eq!(out.status.code(), Some(2), "{packet}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(what), "{packet}: {err}");
    }

    // Good packets still print; the exit code reports the bad one.
    let out = mirtool(
        &["decode"],
        Some(b"#1<<<<<I@C<<<<<<<<YSIaX^ylTSIo!\n#\xff\n"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json_lines(&out).len(), 1);
}

#[test]
fn encode_rejects_unknown_names_and_unmappable_text() {
    let out = mirtool(&["encode", "--ident", "CM_NOPE"], None);
    assert_eq!(out.status.code(), Some(2));
    let out = mirtool(&["encode", "--ident", "2001", "--body", "😀"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("GBK"));
}
