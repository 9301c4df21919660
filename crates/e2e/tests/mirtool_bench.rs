//! End-to-end checks of `mirtool backend` and `mirtool bench` as real
//! processes on loopback with ephemeral ports.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use e2e::{gate_config, linked_gate, loginsrv_on_sqlite, mirtool_command, strings, Backend};
use logingate::config::Dialect;

fn bench(args: &[&str]) -> (Output, serde_json::Value) {
    let out = mirtool_command()
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .expect("run mirtool bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "bench printed no JSON ({e}): {stdout} / {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, json)
}

/// Runs `mirtool bench ARGS`, killing it (and failing) if it is still running after 20 s.
fn bench_bounded(args: &[&str]) -> Output {
    let mut child = mirtool_command()
        .arg("bench")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mirtool bench");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mirtool bench {args:?} still running after 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn seconds_options_out_of_range_are_refused_naming_the_flag() {
    // Nothing listens there: a run that got past its arguments would only see errors.
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let cases: [(&[&str], &str); 5] = [
        (&["connect", "--duration", "1e18"], "--duration"),
        (&["login", "--duration", "1e18"], "--duration"),
        (&["idle", "--hold", "1e18"], "--hold"),
        (&["relay", "--drain", "1e18"], "--drain"),
        (&["relay", "--connect-timeout=-1"], "--connect-timeout"),
    ];
    for (args, flag) in cases {
        let out = bench_bounded(&[args, &["--target", &free, "--json"]].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("{flag} must be 0..=86400 seconds")),
            "{args:?}: {stderr}"
        );
    }
}

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing or not a count in {v}"))
}

#[test]
fn relay_through_echo_is_clean_and_reports_every_field() {
    let echo = Backend::start(&["--mode", "echo"]);
    let target = echo.addr.to_string();
    let (out, r) = bench(&[
        "relay",
        "--target",
        &target,
        "--clients",
        "10",
        "--duration",
        "1",
        "--label",
        "direct",
    ]);
    assert!(out.status.success(), "relay failed: {r}");
    for key in [
        "scenario",
        "target_label",
        "clients",
        "duration_s",
        "messages",
        "msgs_per_sec",
        "conns_per_sec",
        "latency_us",
        "lost",
        "reordered",
        "corrupted",
        "errors",
    ] {
        assert!(r.get(key).is_some(), "{key} missing from {r}");
    }
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(
            r["latency_us"].get(key).is_some(),
            "latency_us.{key} missing"
        );
    }
    assert_eq!(r["scenario"], "relay");
    assert_eq!(r["target_label"], "direct");
    assert_eq!(n(&r, "clients"), 10);
    assert!(n(&r, "messages") > 100, "{r}");
    assert!(r["msgs_per_sec"].as_f64().unwrap() > 0.0);
    assert!(n(&r["latency_us"], "max") >= n(&r["latency_us"], "p50"));
    assert_eq!(
        (
            n(&r, "lost"),
            n(&r, "reordered"),
            n(&r, "corrupted"),
            n(&r, "errors")
        ),
        (0, 0, 0, 0)
    );
}

#[test]
fn relay_with_depth_and_rate_stays_clean() {
    let echo = Backend::start(&["--mode", "echo"]);
    let target = echo.addr.to_string();
    let (out, r) = bench(&[
        "relay",
        "--target",
        &target,
        "--clients",
        "4",
        "--duration",
        "1",
        "--depth",
        "8",
    ]);
    assert!(out.status.success(), "{r}");
    assert_eq!(n(&r, "depth"), 8);
    let (out, r) = bench(&[
        "relay",
        "--target",
        &target,
        "--clients",
        "4",
        "--duration",
        "1",
        "--rate",
        "400",
    ]);
    assert!(out.status.success(), "{r}");
    // Open loop at 400/s for 1 s: about 400 messages, not "as many as possible".
    let m = n(&r, "messages");
    assert!(
        (300..=420).contains(&m),
        "open loop sent {m} messages at 400/s"
    );
}

/// Echoes like `echo` but flips one low bit of every 5th message body: still
/// in the client alphabet, so only the content check can catch it.
fn corrupting_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut pending = Vec::new();
                let mut count = 0u64;
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(k) = stream.read(&mut buf) else { return };
                    if k == 0 {
                        return;
                    }
                    pending.extend_from_slice(&buf[..k]);
                    while let Some(end) = pending.iter().position(|&b| b == b'!') {
                        let mut msg: Vec<u8> = pending.drain(..=end).collect();
                        count += 1;
                        if count.is_multiple_of(5) && msg.len() > 25 {
                            msg[25] ^= 1;
                        }
                        if stream.write_all(&msg).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn relay_detects_corruption_and_fails() {
    let target = corrupting_server().to_string();
    let (out, r) = bench(&[
        "relay",
        "--target",
        &target,
        "--clients",
        "3",
        "--duration",
        "1",
    ]);
    assert!(
        n(&r, "corrupted") > 0,
        "a flipped body byte went unnoticed: {r}"
    );
    assert_eq!(out.status.code(), Some(1), "a corrupted run must exit 1");
}

#[test]
fn relay_counts_unanswered_messages_as_lost() {
    // Accepts and reads but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let (out, r) = bench(&[
        "relay",
        "--target",
        &target,
        "--clients",
        "2",
        "--duration",
        "0.3",
        "--depth",
        "3",
        "--drain",
        "0.2",
    ]);
    assert_eq!(n(&r, "lost"), 6, "2 clients x depth 3 never answered: {r}");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn connect_storm_smoke() {
    let echo = Backend::start(&["--mode", "echo"]);
    let target = echo.addr.to_string();
    let (out, r) = bench(&[
        "connect",
        "--target",
        &target,
        "--clients",
        "4",
        "--duration",
        "0.5",
    ]);
    assert!(out.status.success(), "{r}");
    assert_eq!(r["scenario"], "connect");
    assert!(n(&r, "connections") > 10, "{r}");
    assert!(r["conns_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(n(&r, "errors"), 0);
    let (out, r) = bench(&[
        "connect",
        "--target",
        &target,
        "--rate",
        "200",
        "--duration",
        "0.5",
    ]);
    assert!(out.status.success(), "{r}");
    assert!(
        (80..=110).contains(&n(&r, "connections")),
        "open loop at 200/s for 0.5 s: {r}"
    );
}

#[test]
fn idle_holds_every_connection_also_across_processes() {
    let echo = Backend::start(&["--mode", "echo"]);
    let target = echo.addr.to_string();
    let (out, r) = bench(&[
        "idle",
        "--target",
        &target,
        "--clients",
        "60",
        "--hold",
        "0.3",
    ]);
    assert!(out.status.success(), "{r}");
    assert_eq!(n(&r, "held"), 60);
    let (out, r) = bench(&[
        "idle",
        "--target",
        &target,
        "--clients",
        "61",
        "--hold",
        "0.3",
        "--procs",
        "2",
    ]);
    assert!(out.status.success(), "{r}");
    assert_eq!(n(&r, "held"), 61, "children's results are summed");
    assert!(String::from_utf8_lossy(&out.stderr).contains("idle: holding 61 connections"));
}

#[test]
fn idle_reports_connections_the_target_drops() {
    // Accepts, then closes everything after 100 ms: nothing is held.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                drop(s);
            });
        }
    });
    let (out, r) = bench(&["idle", "--target", &target, "--clients", "5", "--hold", "1"]);
    assert_eq!(n(&r, "held"), 0, "{r}");
    assert_eq!(n(&r, "errors"), 5);
    assert!(!out.status.success());
}

/// Reads from the link until `want` is a prefix-complete match or the time is up.
fn read_until(stream: &mut TcpStream, want: &[u8]) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while got.len() < want.len() && Instant::now() < deadline {
        if let Ok(k) = stream.read(&mut buf) {
            if k == 0 {
                break;
            }
            got.extend_from_slice(&buf[..k]);
        }
    }
    got
}

fn wait_for_stats(
    path: &std::path::Path,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                if pred(&v) || Instant::now() > deadline {
                    return v;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no stats file at {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn gate_echo_answers_a_scripted_wemade_link_and_counts_frames() {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    let backend = Backend::start(&[
        "--mode",
        "gate-echo",
        "--dialect",
        "wemade",
        "--stats-file",
        stats.to_str().unwrap(),
    ]);
    let mut link = TcpStream::connect(backend.addr).unwrap();
    // Several frames in one write, one split across two writes: a real stream.
    link.write_all(b"%O7/127.0.0.1$%A7/#1<<<<<I@C<<<<<<<<YSIaX^ylTSIo!$%--$%A7/#2<<<<<I")
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    link.write_all(b"@C<<<<<<<<TL!$").unwrap();
    let want: &[u8] = b"%7/#1<<<<<I@C<<<<<<<<YSIaX^ylTSIo!$\0%++$\0%7/#2<<<<<I@C<<<<<<<<TL!$\0";
    assert_eq!(read_until(&mut link, want), want);
    link.write_all(b"%X7$").unwrap();
    let v = wait_for_stats(&stats, |v| v["closes"] == 1);
    assert_eq!(
        (
            n(&v, "opens"),
            n(&v, "closes"),
            n(&v, "data"),
            n(&v, "heartbeats")
        ),
        (1, 1, 2, 1),
        "{v}"
    );
}

#[test]
fn gate_echo_speaks_happym2() {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    let backend = Backend::start(&[
        "--mode",
        "gate-echo",
        "--dialect",
        "happym2",
        "--stats-file",
        stats.to_str().unwrap(),
    ]);
    let mut link = TcpStream::connect(backend.addr).unwrap();
    link.write_all(b"%N3/10.0.0.9/127.0.0.1$%D3/#1<<<<<I@C<<<<<<<<TL!$%C3$")
        .unwrap();
    let want: &[u8] = b"%3/#1<<<<<I@C<<<<<<<<TL!$";
    assert_eq!(read_until(&mut link, want), want);
    let v = wait_for_stats(&stats, |v| v["closes"] == 1);
    assert_eq!(
        (n(&v, "opens"), n(&v, "closes"), n(&v, "data")),
        (1, 1, 1),
        "{v}"
    );
}

#[test]
fn plot_draws_an_svg_from_a_report() {
    let echo = Backend::start(&["--mode", "echo"]);
    let target = echo.addr.to_string();
    let (_, r) = bench(&[
        "relay",
        "--target",
        &target,
        "--clients",
        "2",
        "--duration",
        "0.3",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("r.json");
    let output = dir.path().join("p.svg");
    std::fs::write(&input, r.to_string()).unwrap();
    let st = mirtool_command()
        .args([
            "bench",
            "plot",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let svg = std::fs::read_to_string(&output).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("p99"),
        "not a latency plot"
    );
}

/// The real gate, in process, linked to a `mirtool backend --mode gate-echo` process.
async fn gate_in_front_of(link: SocketAddr) -> logingate::app::Gate {
    let mut c = gate_config(Some(link), Dialect::Wemade);
    c.gate.max_packets_per_sec = 1_000_000;
    linked_gate(c).await.0
}

/// Runs `mirtool bench …` off the reactor (the gate runs on this runtime).
async fn bench_async(args: Vec<String>) -> (Output, serde_json::Value) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        bench(&args)
    })
    .await
    .expect("bench task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_and_storm_through_the_real_gate_deliver_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    let backend = Backend::start(&[
        "--mode",
        "gate-echo",
        "--dialect",
        "wemade",
        "--stats-file",
        stats.to_str().unwrap(),
    ]);
    let gate = gate_in_front_of(backend.addr).await;
    let target = gate.local_addrs()[0].to_string();

    let args = [
        "relay",
        "--target",
        &target,
        "--clients",
        "10",
        "--duration",
        "1",
        "--depth",
        "4",
    ];
    let (out, r) = bench_async(args.iter().map(|s| s.to_string()).collect()).await;
    assert!(out.status.success(), "relay through the gate: {r}");
    assert!(n(&r, "messages") > 100);

    let args = [
        "connect",
        "--target",
        &target,
        "--clients",
        "4",
        "--duration",
        "0.5",
    ];
    let (out, r) = bench_async(args.iter().map(|s| s.to_string()).collect()).await;
    assert!(out.status.success(), "storm through the gate: {r}");
    // Every session the gate opened (10 relay clients + the storm) was announced and closed.
    let sessions = 10 + n(&r, "connections");
    let v =
        tokio::task::spawn_blocking(move || wait_for_stats(&stats, |v| v["closes"] == sessions))
            .await
            .unwrap();
    assert_eq!(
        (n(&v, "opens"), n(&v, "closes")),
        (sessions, sessions),
        "{v}"
    );
    drop(backend);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_flows_through_the_real_gate_and_loginsrv() {
    let (srv, _dir) = loginsrv_on_sqlite(|c| {
        for s in &mut c.servers {
            s.capacity = 1_000_000;
        }
        // Every flow comes from 127.0.0.1: lift the per-IP hash budget.
        c.security.hashes_per_ip_per_minute = 0;
    })
    .await;
    let (gate, _) = linked_gate(gate_config(Some(srv.local_addr()), Dialect::Delphi)).await;
    let target = gate.local_addrs()[0].to_string();

    let args = [
        "login",
        "--target",
        &target,
        "--players",
        "3",
        "--duration",
        "1",
    ];
    let (out, r) = bench_async(args.iter().map(|s| s.to_string()).collect()).await;
    assert!(
        out.status.success(),
        "login flows: {r} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(r["scenario"], "login");
    assert!(n(&r, "messages") >= 3, "every player completes flows: {r}");
    assert_eq!(n(&r, "errors"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_over_prepared_accounts_retries_and_repeats() {
    let (srv, _dir) = loginsrv_on_sqlite(|c| {
        for s in &mut c.servers {
            s.capacity = 1_000_000;
        }
        c.security.hashes_per_ip_per_minute = 0;
    })
    .await;
    let (gate, _) = linked_gate(gate_config(Some(srv.local_addr()), Dialect::Delphi)).await;
    let target = gate.local_addrs()[0].to_string();
    let run = |extra: &[&str]| {
        let mut args = strings(&[
            "login",
            "--target",
            &target,
            "--players",
            "3",
            "--duration",
            "1",
            "--accounts",
            "4",
        ]);
        args.extend(strings(extra));
        bench_async(args)
    };

    // Registered once, up front; the window only logs in and selects.
    let (out, r) = run(&["--prepare"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "prepared logins: {r} {stderr}");
    assert_eq!(r["scenario"], "login");
    assert_eq!(n(&r, "accounts"), 4);
    assert!(n(&r, "messages") >= 3, "every player completes flows: {r}");
    assert_eq!(n(&r, "errors"), 0, "{stderr}");
    // Every flow is one connection, plus one per "already logged in" retry.
    assert_eq!(n(&r, "connections"), n(&r, "messages") + n(&r, "retries"));

    // Preparing again finds the names taken and goes on; without --prepare
    // the same accounts are simply used.
    let (out, r) = run(&["--prepare"]).await;
    assert!(out.status.success(), "prepared twice: {r}");
    let (out, r) = run(&[]).await;
    assert!(out.status.success(), "existing accounts: {r}");
    assert_eq!(n(&r, "errors"), 0);

    // Accounts that were never registered fail every flow.
    let (out, r) = run(&["--account-prefix", "nobody"]).await;
    assert_eq!(out.status.code(), Some(1), "{r}");
    assert_eq!(n(&r, "messages"), 0, "{r}");
    assert!(n(&r, "errors") >= 3, "{r}");
}

#[test]
fn login_account_options_are_checked() {
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let cases: [(&[&str], &str); 3] = [
        (
            &["--players", "5", "--accounts", "4"],
            "--accounts must be at least --players",
        ),
        (
            &["--accounts", "100", "--account-prefix", "toolongpre"],
            "--account-prefix",
        ),
        (
            &["--accounts", "40", "--account-prefix", "a/b"],
            "--account-prefix",
        ),
    ];
    for (extra, want) in cases {
        let out = bench_bounded(&[&["login", "--target", &free, "--json"], extra].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(want), "{extra:?}: {stderr}");
    }
    // --prepare without --accounts is a usage error (clap).
    let out = bench_bounded(&["login", "--target", &free, "--prepare"]);
    assert_eq!(out.status.code(), Some(2));
}
