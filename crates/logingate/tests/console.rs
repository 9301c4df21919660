//! The operator's console against a real gate and the scripted LoginSrv:
//! every endpoint, the token rules, kicks and blocks as the LoginSrv and a
//! client see them, bad requests, the connection cap, Prometheus's own
//! checker on a scrape, and the status page in a real browser.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::http::{delete, get, post, request};
use common::*;
use logingate::app::Gate;
use logingate::config::{Config, Dialect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_logingate");

fn with_console(c: &mut Config) {
    c.admin.listen = "127.0.0.1:0".into();
}

fn admin(gate: &Gate) -> SocketAddr {
    gate.admin_addr().expect("console runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_endpoint_answers_on_a_loopback_console_without_token() {
    let (gate, _srv, mut link) = gate_with_srv(with_console, Dialect::Wemade).await;
    // The link counts as up (history, gauge) from the LoginSrv's first frame.
    link.send(b"%++$").await;
    eventually("link answered", || gate.link().is_answered()).await;
    let console = admin(&gate);
    let addr = gate_addr(&gate);
    let mut a = connect(addr).await;
    let a_id = link.open_id().await;
    let _b = connect(addr).await;
    link.open_id().await;
    a.write_all(&client_msg(1)).await.unwrap();
    assert!(link.text().await.starts_with(&format!("%A{a_id}/")));

    let status = get(console, "/api/status").await;
    assert_eq!(status.status, 200, "{}", status.body);
    let s = status.json();
    assert_eq!(s["program"], "logingate");
    assert_eq!(s["sessions"]["live"], 2);
    assert_eq!(s["link"]["up"], true);
    assert_eq!(s["admin"], console.to_string());
    assert_eq!(s["top_ips"][0]["ip"], "127.0.0.1");
    assert_eq!(s["top_ips"][0]["sessions"], 2);
    assert_eq!(s["events"][0]["kind"], "link_up");

    let list = get(console, "/api/sessions").await.json();
    assert_eq!(list["live"], 2);
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let first = &sessions[0];
    assert_eq!(first["id"], a_id);
    assert_eq!(first["peer"], a.local_addr().unwrap().to_string());
    assert_eq!(first["messages"], 1);
    assert_eq!(first["bytes_in"], client_msg(1).len());
    assert_eq!(first["state"], "active");
    assert_eq!(sessions[1]["state"], "new");
    let one = get(console, "/api/sessions?ip=127.0.0.0/8&limit=1")
        .await
        .json();
    assert_eq!(
        (one["matched"].as_u64(), one["returned"].as_u64()),
        (Some(2), Some(1))
    );
    let none = get(console, "/api/sessions?ip=192.0.2.1").await.json();
    assert_eq!(none["matched"], 0);

    let page = get(console, "/").await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'none'"));
    assert!(
        page.body.contains("id=\"sessions-live\">2<"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("http://") && !page.body.contains("https://"),
        "nothing external"
    );

    let metrics = get(console, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("gate_active 2"), "{}", metrics.body);
    assert!(
        metrics.body.contains("# TYPE gate_closed_total counter")
            || !metrics.body.contains("gate_closed_total{")
    );

    let blocks = get(console, "/api/blocks").await.json();
    assert_eq!(blocks["total"], 0);

    let missing = get(console, "/api/nothing").await;
    assert_eq!(missing.status, 404);
    assert!(missing.error().contains("no such path"));
    let wrong_method = request(console, "PUT", "/api/blocks", &[], b"").await;
    assert_eq!(wrong_method.status, 405);
    gate.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_kick_flushes_closes_and_the_loginsrv_sees_the_close() {
    let (gate, _srv, mut link) = gate_with_srv(with_console, Dialect::Wemade).await;
    let console = admin(&gate);
    let mut client = connect(gate_addr(&gate)).await;
    let id = link.open_id().await;
    // A reply queued just before the kick still reaches the client.
    link.send(format!("%{id}/{}$", String::from_utf8(server_msg(7)).unwrap()).as_bytes())
        .await;
    assert_eq!(
        read_n(&mut client, server_msg(7).len()).await,
        server_msg(7)
    );
    let kicked = post(console, &format!("/api/sessions/{id}/kick"), "").await;
    assert_eq!(kicked.status, 200, "{}", kicked.body);
    assert_eq!(kicked.json()["kicked"], id);
    assert_eq!(link.frame_no_hb().await, format!("%X{id}$").into_bytes());
    assert!(read_to_close(&mut client).await.is_empty());
    eventually("kick counted as a close", || {
        gate.counts().closed("kicked") == 1
    })
    .await;

    let gone = post(console, &format!("/api/sessions/{id}/kick"), "").await;
    assert_eq!(gone.status, 404);
    assert!(gone.error().starts_with("id: "), "{}", gone.body);
    let bad = post(console, "/api/sessions/abc/kick", "").await;
    assert_eq!(bad.status, 400);
    assert!(bad.error().starts_with("id: "), "{}", bad.body);
    let events = get(console, "/api/status").await.json()["events"].clone();
    assert_eq!(events[0]["kind"], "kick", "{events}");
    assert!(events[0]["detail"]
        .as_str()
        .unwrap()
        .contains(&format!("session {id}")));
    gate.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_block_closes_the_ip_s_sessions_and_refuses_its_next_connect() {
    let (gate, _srv, mut link) = gate_with_srv(with_console, Dialect::Wemade).await;
    let console = admin(&gate);
    let addr = gate_addr(&gate);
    let mut client = connect(addr).await;
    let id = link.open_id().await;

    let blocked = post(
        console,
        "/api/blocks",
        r#"{"net": "127.0.0.1", "secs": 600}"#,
    )
    .await;
    assert_eq!(blocked.status, 201, "{}", blocked.body);
    let b = blocked.json();
    assert_eq!(
        (b["net"].as_str(), b["kind"].as_str()),
        (Some("127.0.0.1/32"), Some("temporary"))
    );
    assert_eq!(b["kicked"], 1);
    assert_eq!(link.frame_no_hb().await, format!("%X{id}$").into_bytes());
    assert!(read_to_close(&mut client).await.is_empty());

    // Blocked on its next connect: closed at once, the LoginSrv hears nothing.
    let mut refused = connect(addr).await;
    assert!(read_to_close(&mut refused).await.is_empty());
    link.expect_silence(Duration::from_millis(200)).await;
    let list = get(console, "/api/blocks").await.json();
    assert_eq!(list["total"], 1);
    assert_eq!(list["blocks"][0]["net"], "127.0.0.1/32");
    assert_eq!(list["blocks"][0]["kind"], "temporary");
    let left = list["blocks"][0]["secs_left"].as_u64().unwrap();
    assert!((590..=600).contains(&left), "{left}");

    let lifted = delete(console, "/api/blocks/127.0.0.1").await;
    assert_eq!(lifted.status, 200, "{}", lifted.body);
    assert_eq!(lifted.json()["runtime"], true);
    let _back = connect(addr).await;
    link.open_id().await;
    let again = delete(console, "/api/blocks/127.0.0.1").await;
    assert_eq!(again.status, 404);
    assert!(again.error().starts_with("net: "), "{}", again.body);
    gate.shutdown().await;
}

/// Attack mode forced and released through the console, and the allow list edited
/// through it: both in force at once for new connections, both on the status page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_forces_attack_mode_and_edits_the_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    let allow = dir.path().join("allow.txt");
    std::fs::write(&allow, "10.1.0.0/16 # office\n").unwrap();
    let allow_path = allow.clone();
    let (gate, _srv, mut link) = gate_with_srv(
        |c| {
            with_console(c);
            c.gate.allow_list_file = allow_path.display().to_string();
            c.gate.block_list_poll_secs = 3600;
            c.gate.attack.allow_listed_only = true;
        },
        Dialect::Wemade,
    )
    .await;
    let console = admin(&gate);
    let addr = gate_addr(&gate);
    let status = get(console, "/api/status").await.json();
    assert_eq!(status["attack"]["on"], false, "{}", status["attack"]);
    assert_eq!(status["attack"]["mode"], "automatic");
    assert_eq!(status["attack"]["config"]["allow_listed_only"], true);

    let forced = post(console, "/api/attack", r#"{"on": true}"#).await;
    assert_eq!(forced.status, 200, "{}", forced.body);
    assert_eq!(forced.json()["on"], true);
    assert!(gate.attack().is_on());
    let status = get(console, "/api/status").await.json();
    assert_eq!(status["attack"]["mode"], "forced_on");
    let page = get(console, "/").await.body;
    assert!(page.contains("id=\"attack-state\""), "{page}");
    assert!(page.contains("forced on"), "{page}");
    // Panic mode: only allow-listed sources get in.
    let mut refused = connect_from([127, 0, 0, 9], addr).await;
    assert!(is_rejected(&mut refused).await);
    assert_eq!(gate.counts().refused("not_allow_listed"), 1);

    let added = post(console, "/api/allow", r#"{"net": "127.0.0.9"}"#).await;
    assert_eq!(added.status, 201, "{}", added.body);
    assert_eq!(added.json()["added"], true);
    let again = post(console, "/api/allow", r#"{"net": "10.1.2.0/24"}"#).await;
    assert_eq!(again.json()["added"], false, "covered by the office range");
    let text = std::fs::read_to_string(&allow).unwrap();
    assert_eq!(
        text,
        "10.1.0.0/16 # office\n127.0.0.9 # allowed from the console\n"
    );
    let _admitted = connect_from([127, 0, 0, 9], addr).await;
    link.open_id().await;
    let listed = get(console, "/api/allow").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.json()["allow"][1], "127.0.0.9/32");

    let removed = delete(console, "/api/allow/127.0.0.9").await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert!(!gate
        .admission()
        .is_allow_listed("127.0.0.9".parse().unwrap()));
    assert_eq!(delete(console, "/api/allow/127.0.0.9").await.status, 404);

    let released = post(console, "/api/attack", r#"{"on": null}"#).await;
    assert_eq!(released.status, 200, "{}", released.body);
    assert_eq!(released.json()["on"], false, "automatic, and no flood");
    assert_eq!(
        get(console, "/api/status").await.json()["attack"]["mode"],
        "automatic"
    );
    let missing = post(console, "/api/attack", "{}").await;
    assert_eq!(missing.status, 400);
    assert!(missing.error().contains("on"), "{}", missing.body);
    assert_eq!(
        post(console, "/api/attack", r#"{"on": 1}"#).await.status,
        400
    );
    gate.shutdown().await;

    let (gate, _srv, _link) = gate_with_srv(with_console, Dialect::Wemade).await;
    let none = get(admin(&gate), "/api/allow").await;
    assert_eq!(none.status, 409);
    assert!(
        none.error().contains("gate.allow_list_file"),
        "{}",
        none.body
    );
    gate.shutdown().await;
}

/// A block list or allow list file that disappears or becomes unreadable keeps the
/// last list read: a moved file must not unblock everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_files_that_disappear_keep_the_last_list() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = dir.path().join("blocked.txt");
    let allow = dir.path().join("allow.txt");
    std::fs::write(&blocks, "127.0.0.5\n").unwrap();
    std::fs::write(&allow, "127.0.0.6\n").unwrap();
    let (block_path, allow_path) = (blocks.clone(), allow.clone());
    let (gate, _srv, _link) = gate_with_srv(
        |c| {
            with_console(c);
            c.gate.block_list_file = block_path.display().to_string();
            c.gate.allow_list_file = allow_path.display().to_string();
            c.gate.block_list_poll_secs = 1;
        },
        Dialect::Wemade,
    )
    .await;
    let console = admin(&gate);
    std::fs::remove_file(&blocks).unwrap();
    std::fs::remove_file(&allow).unwrap();
    // Read now, whatever the watcher did meanwhile.
    let reloaded = post(console, "/api/reload", "").await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.body);
    assert_eq!(reloaded.json()["readable"], false);
    assert!(gate.admission().is_blocked("127.0.0.5".parse().unwrap()));
    let mut refused = connect_from([127, 0, 0, 5], gate_addr(&gate)).await;
    assert!(is_rejected(&mut refused).await, "still blocked");
    assert_eq!(gate.counts().refused("blocked"), 1);
    // A directory in a file's place cannot be read either.
    std::fs::create_dir(&blocks).unwrap();
    assert_eq!(
        post(console, "/api/reload", "").await.json()["readable"],
        false
    );
    assert!(gate.admission().is_blocked("127.0.0.5".parse().unwrap()));
    assert!(gate
        .admission()
        .is_allow_listed("127.0.0.6".parse().unwrap()));
    // Back in place with other contents: read again.
    std::fs::remove_dir(&blocks).unwrap();
    std::fs::write(&blocks, "127.0.0.7\n").unwrap();
    let r = post(console, "/api/reload", "").await.json();
    assert_eq!(
        (r["readable"].as_bool(), r["entries"].as_u64()),
        (Some(true), Some(1))
    );
    assert!(!gate.admission().is_blocked("127.0.0.5".parse().unwrap()));
    gate.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_blocks_go_to_the_block_list_file_and_reload_reads_it_now() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blocked.txt");
    std::fs::write(&file, "# operators\n").unwrap();
    let path = file.to_str().unwrap().to_owned();
    let (gate, _srv, _link) = gate_with_srv(
        |c| {
            with_console(c);
            c.gate.block_list_file = path;
            // Long enough that only the console's reload can have read the file.
            c.gate.block_list_poll_secs = 3600;
        },
        Dialect::Wemade,
    )
    .await;
    let console = admin(&gate);
    let r = post(console, "/api/blocks", r#"{"net": "198.51.100.0/24"}"#).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["kind"], "permanent");
    assert_eq!(r.json()["recorded_in_file"], true);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("198.51.100.0/24 # blocked from the console"),
        "{text}"
    );

    std::fs::write(&file, format!("{text}192.0.2.0/28\nnot-an-ip\n")).unwrap();
    let reloaded = post(console, "/api/reload", "").await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.body);
    let r = reloaded.json();
    assert_eq!(
        (r["entries"].as_u64(), r["bad_lines"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(gate.admission().is_blocked("192.0.2.3".parse().unwrap()));

    let lifted = delete(console, "/api/blocks/198.51.100.0%2F24").await;
    assert_eq!(lifted.status, 200, "{}", lifted.body);
    assert_eq!(
        (
            lifted.json()["runtime"].as_bool(),
            lifted.json()["file"].as_bool()
        ),
        (Some(true), Some(true))
    );
    assert!(!std::fs::read_to_string(&file)
        .unwrap()
        .contains("198.51.100.0/24"));
    assert!(!gate.admission().is_blocked("198.51.100.9".parse().unwrap()));
    let status = get(console, "/api/status").await.json();
    assert_eq!(status["blocks"]["static_count"], 1, "{}", status["blocks"]);
    gate.shutdown().await;

    let (gate, _srv, _link) = gate_with_srv(with_console, Dialect::Wemade).await;
    let no_file = post(admin(&gate), "/api/reload", "").await;
    assert_eq!(no_file.status, 409);
    assert!(
        no_file.error().contains("gate.block_list_file"),
        "{}",
        no_file.body
    );
    gate.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_state_changes_need_it_and_refusals_are_counted() {
    let (gate, _srv, mut link) = gate_with_srv(
        |c| {
            with_console(c);
            c.admin.token = "s3cret".into();
        },
        Dialect::Wemade,
    )
    .await;
    let console = admin(&gate);
    let mut client = connect(gate_addr(&gate)).await;
    let id = link.open_id().await;
    let path = format!("/api/sessions/{id}/kick");
    let missing = post(console, &path, "").await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    assert!(missing.error().starts_with("authorization: "));
    let wrong = request(
        console,
        "POST",
        &path,
        &[("Authorization", "Bearer s3cre")],
        b"",
    )
    .await;
    assert_eq!(wrong.status, 401);
    let wrong_delete = request(
        console,
        "DELETE",
        "/api/blocks/127.0.0.1",
        &[("Authorization", "Bearer nope")],
        b"",
    )
    .await;
    assert_eq!(wrong_delete.status, 401);
    // Refused requests changed nothing; reading needs no token.
    let s = get(console, "/api/status").await.json();
    assert_eq!(s["sessions"]["live"], 1);
    assert_eq!(s["console"]["token_set"], true);
    assert_eq!(s["console"]["unauthorized"], 3);
    let metrics = get(console, "/metrics").await.body;
    assert!(
        metrics.contains("gate_admin_unauthorized_total 3"),
        "{metrics}"
    );

    let ok = request(
        console,
        "POST",
        &path,
        &[("Authorization", "Bearer s3cret")],
        b"",
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(link.frame_no_hb().await, format!("%X{id}$").into_bytes());
    assert!(read_to_close(&mut client).await.is_empty());
    gate.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_400_naming_the_field_and_oversized_bodies_413() {
    let (gate, _srv, _link) = gate_with_srv(with_console, Dialect::Wemade).await;
    let console = admin(&gate);
    for (body, field) in [
        (r#"{"net": 5}"#, "net: "),
        (r#"{"net": "not-an-ip"}"#, "net: "),
        (r#"{"net": "10.0.0.0/33"}"#, "net: "),
        (r#"{"net": "10.0.0.1", "secs": "ten"}"#, "secs: "),
        (r#"{"net": "10.0.0.1", "secs": 0}"#, "secs: "),
        (r#"{"net": "10.0.0.1", "secs": -5}"#, "secs: "),
        (r#"{"net": "10.0.0.1", "secs": 99999999999}"#, "secs: "),
        (r#"{"net": "10.0.0.1", "sec": 5}"#, "sec: "),
        (r#"{"secs": 5}"#, "`net`"),
        ("", "body: "),
        ("{", "body: "),
        ("net=10.0.0.1", "body: "),
    ] {
        let r = post(console, "/api/blocks", body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        let e = r.error();
        assert!(e.starts_with(field) || e.contains(field), "{body}: {e}");
    }
    assert!(
        get(console, "/api/blocks").await.json()["total"] == 0,
        "nothing was blocked"
    );
    let big = format!(
        r#"{{"net": "10.0.0.1", "pad": "{}"}}"#,
        "x".repeat(70 * 1024)
    );
    let r = post(console, "/api/blocks", &big).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.error().starts_with("body: "));
    for (path, field) in [
        ("/api/sessions?limit=0", "limit: "),
        ("/api/sessions?limit=10001", "limit: "),
        ("/api/sessions?limit=ten", "limit: "),
        ("/api/sessions?ip=nowhere", "ip: "),
        ("/api/blocks?limit=0", "limit: "),
    ] {
        let r = get(console, path).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(r.error().starts_with(field), "{path}: {}", r.body);
    }
    assert_eq!(get(console, "/api/sessions?limit=10000").await.status, 200);
    let r = delete(console, "/api/blocks/nowhere").await;
    assert_eq!(r.status, 400);
    assert!(r.error().starts_with("net: "));
    gate.shutdown().await;
}

/// The 65th console connection is closed at accept; once one of the 64 goes,
/// the console answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_64_console_connections_at_once() {
    let (gate, _srv, _link) = gate_with_srv(with_console, Dialect::Wemade).await;
    let console = admin(&gate);
    let mut held = Vec::new();
    for _ in 0..64 {
        held.push(tokio::net::TcpStream::connect(console).await.unwrap());
    }
    // Every held connection was accepted before the next one: a request on
    // the first proves it.
    held[0]
        .write_all(b"GET /api/blocks HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    held[0].read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    let mut extra = tokio::net::TcpStream::connect(console).await.unwrap();
    let mut one = [0u8; 1];
    let n = tokio::time::timeout(STEP, extra.read(&mut one))
        .await
        .expect("closed at once");
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "the 65th connection is closed: {n:?}"
    );
    let metrics_after = {
        held.pop();
        let mut answer = None;
        for _ in 0..200 {
            if let Ok(Ok(mut s)) =
                tokio::time::timeout(STEP, tokio::net::TcpStream::connect(console)).await
            {
                let _ = s
                    .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .await;
                let mut body = Vec::new();
                let _ = s.read_to_end(&mut body).await;
                if !body.is_empty() {
                    answer = Some(String::from_utf8_lossy(&body).into_owned());
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        answer.expect("the console answers once a slot is free")
    };
    assert!(
        metrics_after.contains("gate_admin_connections_refused_total"),
        "{metrics_after}"
    );
    drop(held);
    gate.shutdown().await;
}

/// A scrape taken while clients open, talk and close, checked by
/// Prometheus's own `promtool check metrics` (no errors, no lint findings).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_under_load() {
    let Some(promtool) = which("promtool") else {
        println!("skipped: promtool not installed (Debian package `prometheus`)");
        return;
    };
    let (gate, _srv, mut link) = gate_with_srv(
        |c| {
            with_console(c);
            c.server.heartbeat_secs = 1;
            c.server.dead_after_secs = 10;
        },
        Dialect::Wemade,
    )
    .await;
    let console = admin(&gate);
    let addr = gate_addr(&gate);
    // The scripted LoginSrv answers heartbeats, so the round trip is measured.
    let mut clients = Vec::new();
    for _ in 0..5 {
        let c = connect(addr).await;
        let id = link.open_id().await;
        clients.push((c, id));
    }
    for (n, (c, _)) in clients.iter_mut().enumerate() {
        c.write_all(&client_msg(n as i32)).await.unwrap();
    }
    let mut seen_heartbeat = false;
    let deadline = tokio::time::Instant::now() + STEP;
    while !seen_heartbeat {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a heartbeat in time"
        );
        let f = link.frame().await;
        if f == b"%--$" {
            link.send(b"%++$").await;
            seen_heartbeat = true;
        }
    }
    eventually("round trip measured", || {
        gate.link().heartbeat_rtt().is_some()
    })
    .await;
    for (_, id) in clients.iter().take(2) {
        link.send(format!("%+-{id}$").as_bytes()).await;
    }
    let _refused = post(console, "/api/sessions/999999/kick", "").await;
    let _ = post(
        console,
        "/api/blocks",
        r#"{"net": "192.0.2.0/24", "secs": 60}"#,
    )
    .await;
    // Past the link's once-a-second hand-over to the facade.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let scrape = get(console, "/metrics").await.body;
    let up = format!("gate_link_up{{backend=\"{}\"}} 1", gate.server_addr());
    for name in [
        "gate_active",
        "gate_closed_total{reason=\"kicked\"}",
        "gate_link_frames_total",
        "gate_link_heartbeat_rtt_seconds_bucket",
        "gate_admin_actions_total{action=\"block\"}",
        up.as_str(),
    ] {
        assert!(scrape.contains(name), "{name} missing from\n{scrape}");
    }
    let out = run_with_stdin(&promtool, &["check", "metrics"], scrape.as_bytes());
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}\n{}\n---\n{scrape}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(clients);
    gate.shutdown().await;
}

/// The status page loaded by headless Chromium from a gate with live
/// sessions and a block; the rendered DOM is checked and a phone-width
/// screenshot kept as `target/console-status.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_in_chromium() {
    let Some(chromium) = which("chromium").or_else(|| which("chromium-browser")) else {
        println!("skipped: Chromium not installed (Debian package `chromium`), the page was not rendered");
        return;
    };
    let (gate, _srv, mut link) = gate_with_srv(with_console, Dialect::Wemade).await;
    let console = admin(&gate);
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect(gate_addr(&gate)).await);
        link.open_id().await;
    }
    let r = post(console, "/api/blocks", r#"{"net": "203.0.113.7"}"#).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = post(
        console,
        "/api/blocks",
        r#"{"net": "198.51.100.0/24", "secs": 900}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let url = format!("http://{console}/");
    let profile = tempfile::tempdir().unwrap();
    let dom = {
        let (chromium, url, profile) = (chromium.clone(), url.clone(), profile.path().to_owned());
        tokio::task::spawn_blocking(move || chrome(&chromium, &profile, &["--dump-dom", &url]))
            .await
            .unwrap()
    };
    assert!(
        dom.contains("id=\"sessions-live\">3<"),
        "session count in the DOM:\n{dom}"
    );
    assert!(
        dom.contains("<td>203.0.113.7/32</td>"),
        "the blocked IP is listed:\n{dom}"
    );
    assert!(
        dom.contains("<td>198.51.100.0/24</td><td>temporary</td>"),
        "{dom}"
    );
    assert!(
        dom.contains("<td>127.0.0.1</td><td class=\"n\">3</td>"),
        "top IPs:\n{dom}"
    );

    let shot = target_dir().join("console-status.png");
    let arg = format!("--screenshot={}", shot.display());
    let profile2 = tempfile::tempdir().unwrap();
    let (c2, p2) = (chromium.clone(), profile2.path().to_owned());
    tokio::task::spawn_blocking(move || chrome(&c2, &p2, &[&arg, "--window-size=412,900", &url]))
        .await
        .unwrap();
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "a PNG at {}", shot.display());
    println!("screenshot: {}", shot.display());
    drop(clients);
    gate.shutdown().await;
}

/// The real binary: the startup line names the console's bound address and
/// the console answers there.
#[test]
fn the_startup_line_names_the_console_address() {
    use std::io::{BufRead, BufReader};
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = dead.local_addr().unwrap().to_string();
    drop(dead);
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--server",
            &server,
        ])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(at) = line.find(" admin=") {
                let rest = &line[at + " admin=".len()..];
                let end = rest.find(' ').unwrap_or(rest.len());
                let _ = tx.send(rest[..end].to_owned());
            }
        }
    });
    let addr: SocketAddr = rx
        .recv_timeout(STEP)
        .expect("startup line")
        .parse()
        .expect("address");
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(get(addr, "/api/status"));
    assert_eq!(status.status, 200);
    assert_eq!(status.json()["link"]["up"], false);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + STEP;
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "gate did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A console reachable from other hosts without a token is refused before
/// anything starts: exit 2 naming `admin.token`.
#[test]
fn a_non_loopback_console_without_token_exits_2() {
    for args in [
        &["--admin", "0.0.0.0:0", "--server", "127.0.0.1:5600"][..],
        &[
            "--admin",
            "[::]:7001",
            "--server",
            "127.0.0.1:5600",
            "--print-config",
        ][..],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("`admin.token`"), "{err}");
    }
    let out = Command::new(BIN)
        .args([
            "--admin",
            "somewhere",
            "--server",
            "127.0.0.1:5600",
            "--print-config",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`admin.listen`"));
    let out = Command::new(BIN)
        .args([
            "--admin",
            "0.0.0.0:0",
            "--server",
            "127.0.0.1:5600",
            "--print-config",
        ])
        .env("X", "")
        .arg("--config")
        .arg(write_config("[admin]\ntoken = \"s3cret\"\n"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_config(text: &str) -> std::path::PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("gate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

fn run_with_stdin(program: &std::path::Path, args: &[&str], input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Headless Chromium with nothing reaching out of this host; returns stdout.
fn chrome(chromium: &std::path::Path, profile: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("60")
        .arg(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The workspace's `target/` (or `CARGO_TARGET_DIR`).
fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}
