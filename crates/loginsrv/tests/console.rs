//! The LoginSrv's console on its own port: account lookup, unlock, kick seen
//! as `%+-` by a scripted gate, token rules, promtool on a scrape after real
//! registrations and logins. (Embedded in the gate, the same endpoints are
//! on the gate's console: the e2e crate tests that.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{assert_reply, config, start, Backend, Db, Gate};
use mir2_proto::ids::MsgKind;
use mir2_proto::Dialect;
use testkit::http::{get, post, request};

fn loginsrv() -> Command {
    Command::new(env!("CARGO_BIN_EXE_loginsrv"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_lookup_unlock_and_kick_on_a_standalone_console() {
    let db = Db::new(Backend::Sqlite).await.unwrap();
    let mut c = config(&db);
    c.admin.listen = "127.0.0.1:0".into();
    loginsrv::admin::install_metrics();
    let mut server = start(c).await;
    let console = server.start_console().await.unwrap().expect("console on");
    let mut gate = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    let user = db.account("ops");

    let none = get(console, &format!("/api/accounts/{user}")).await;
    assert_eq!(none.status, 200, "{}", none.body);
    assert_eq!(none.json()["exists"], false);
    let bad = get(console, "/api/accounts/a%2Fb").await;
    assert_eq!(bad.status, 400);
    assert!(bad.error().starts_with("name: "), "{}", bad.body);

    gate.open(1).await;
    assert_reply(
        &gate.register(1, &user, "pw1234").await,
        MsgKind::SmNewIdSuccess,
        0,
    );
    // Three wrong passwords lock the account (the test config's limit).
    for _ in 0..3 {
        gate.login(1, &user, "wrong").await;
    }
    let locked = get(console, &format!("/api/accounts/{user}")).await.json();
    assert_eq!(locked["exists"], true);
    assert_eq!(locked["locked"], true, "{locked}");
    assert!(locked["locked_until_unix"].as_i64().unwrap() > 0);
    assert!(
        !locked.to_string().contains("argon2"),
        "never a hash: {locked}"
    );
    let unlocked = post(console, &format!("/api/accounts/{user}/unlock"), "").await;
    assert_eq!(unlocked.status, 200, "{}", unlocked.body);
    let ok = gate.login(1, &user, "pw1234").await;
    assert_reply(&ok, MsgKind::SmPassOkSelectServer, 0);

    let online = get(console, &format!("/api/accounts/{user}")).await.json();
    assert_eq!(online["locked"], false);
    assert_eq!(online["online"]["client"], 1, "{online}");
    assert_eq!(
        online["online"]["gate"],
        gate.stream.local_addr().unwrap().to_string()
    );
    let sel = gate.select(1, "alpha").await;
    assert_eq!(sel.kind(), Some(MsgKind::SmSelectServerOk));
    let online = get(console, &format!("/api/accounts/{user}")).await.json();
    assert_eq!(online["online"]["server"], "alpha", "{online}");

    let kicked = post(console, &format!("/api/accounts/{user}/kick"), "").await;
    assert_eq!(kicked.status, 200, "{}", kicked.body);
    assert_eq!(kicked.json()["delivered"], true);
    gate.kicked(1).await;
    let after = get(console, &format!("/api/accounts/{user}")).await.json();
    assert!(after["online"].is_null(), "{after}");
    let again = post(console, &format!("/api/accounts/{user}/kick"), "").await;
    assert_eq!(again.status, 404);
    assert!(again.error().starts_with("name: "));
    let missing = post(
        console,
        &format!("/api/accounts/{}/unlock", db.account("nobody")),
        "",
    )
    .await;
    assert_eq!(missing.status, 404);

    let status = get(console, "/api/status").await.json();
    assert_eq!(status["program"], "loginsrv");
    assert_eq!(status["admin"], console.to_string());
    assert_eq!(status["events"][0]["kind"], "kick", "{status}");
    let page = get(console, "/").await;
    assert!(
        page.body.contains("id=\"accounts-online\">0<"),
        "{}",
        page.body
    );
    assert!(page
        .body
        .contains(&format!("kicked account {}", user.to_ascii_lowercase())));
    assert_eq!(get(console, "/nothing").await.status, 404);

    // A scrape after registrations, logins and lookups passes Prometheus's checker.
    let scrape = get(console, "/metrics").await.body;
    for name in [
        "loginsrv_logins_total{result=\"ok\"}",
        "loginsrv_hash_seconds_bucket{op=\"verify\"",
        "loginsrv_db_query_seconds_bucket",
        "loginsrv_admin_actions_total{action=\"unlock\"}",
    ] {
        assert!(scrape.contains(name), "{name} missing from\n{scrape}");
    }
    promtool_accepts(&scrape);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_account_actions_need_it() {
    let db = Db::new(Backend::Sqlite).await.unwrap();
    let mut c = config(&db);
    c.admin.listen = "127.0.0.1:0".into();
    c.admin.token = "s3cret".into();
    let mut server = start(c).await;
    let console = server.start_console().await.unwrap().unwrap();
    let user = db.account("tok");
    let path = format!("/api/accounts/{user}/unlock");
    assert_eq!(post(console, &path, "").await.status, 401);
    let wrong = request(
        console,
        "POST",
        &path,
        &[("Authorization", "Bearer nope")],
        b"",
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(
        get(console, &format!("/api/accounts/{user}")).await.status,
        200
    );
    let right = request(
        console,
        "POST",
        &path,
        &[("Authorization", "Bearer s3cret")],
        b"",
    )
    .await;
    assert_eq!(
        right.status, 404,
        "authorised, but no such account: {}",
        right.body
    );
    server.shutdown().await;
}

#[test]
fn a_non_loopback_console_without_token_exits_2_and_the_startup_line_names_it() {
    let out = loginsrv()
        .args(["--admin", "0.0.0.0:5501", "--print-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`admin.token`"));
    let out = loginsrv()
        .args(["--admin", "", "--print-config"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("[admin]"));

    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let mut child = loginsrv()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--database",
        ])
        .arg(&db)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(at) = line.find("admin=") {
                let rest = &line[at + "admin=".len()..];
                let end = rest.find(' ').unwrap_or(rest.len());
                let _ = tx.send(rest[..end].to_owned());
            }
        }
    });
    let addr: std::net::SocketAddr = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("console line")
        .parse()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(get(addr, "/api/status"));
    assert_eq!(status.json()["program"], "loginsrv");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

fn promtool_accepts(scrape: &str) {
    use std::io::Write;
    let Some(promtool) = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("promtool"))
            .find(|p| p.is_file())
    }) else {
        println!("skipped: promtool not installed (Debian package `prometheus`)");
        return;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}\n---\n{scrape}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
