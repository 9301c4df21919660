//! The gate with its embedded LoginSrv: one console port serves the gate's
//! endpoints and the LoginSrv's accounts; a console kick of an account makes
//! the gate close that client; the scrape of both passes promtool.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use e2e::client::Client;
use e2e::gate_config;
use logingate::config::Dialect;
use loginsrv::code;
use mir2_proto::ids::MsgKind;
use testkit::gate::assert_reply;
use testkit::http::{get, post};

/// The gate with its embedded LoginSrv: one console port serves the gate's
/// endpoints and the LoginSrv's accounts; a console kick of an account makes
/// the gate close that client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_account_endpoints_are_on_the_gate_console() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = gate_config(None, Dialect::Delphi);
    c.data_dir = dir.path().to_owned();
    c.embedded = toml::from_str(
        "[security]\nargon2_m_kib = 8\nargon2_t = 1\nargon2_p = 1\n\
         [[servers]]\nname = \"alpha\"\nselgates = [\"127.0.0.1:7100\"]\n",
    )
    .unwrap();
    let gate = logingate::app::Gate::start(c).await.unwrap();
    assert!(gate.wait_link_up(Duration::from_secs(10)).await);
    let console = gate.admin_addr().unwrap();
    let mut a = Client::connect(gate.local_addrs()[0]).await;
    assert_reply(
        &a.register("emb", "pw1234").await,
        MsgKind::SmNewIdSuccess,
        0,
    );
    assert_reply(
        &a.login("emb", "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    let acct = get(console, "/api/accounts/emb").await;
    assert_eq!(acct.status, 200, "{}", acct.body);
    assert!(
        acct.json()["online"]["client"].as_u64().is_some(),
        "{}",
        acct.body
    );
    let status = get(console, "/api/status").await.json();
    assert_eq!(status["loginsrv"]["accounts_online"], 1, "{status}");
    assert!(get(console, "/")
        .await
        .body
        .contains("id=\"accounts-online\">1<"));
    let kicked = post(console, "/api/accounts/emb/kick", "").await;
    assert_eq!(kicked.status, 200, "{}", kicked.body);
    assert!(
        a.try_reply().await.is_none(),
        "the gate closed the kicked client"
    );
    let mut b = Client::connect(gate.local_addrs()[0]).await;
    assert_reply(
        &b.login("emb", "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    assert_eq!(b.login("nobody", "x").await.header.recog, code::NO_ACCOUNT);
    promtool_accepts(&get(console, "/metrics").await.body);
    gate.shutdown().await;
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
