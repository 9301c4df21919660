//! `--proxy` / `--proxy-source` against the real gate trusting loopback as a front:
//! the gate accepts the header and judges the address it carries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use logingate::app::Gate;
use logingate::config::{Config as GateConfig, Dialect, ProxyProtocol};

const MIRTOOL: &str = env!("CARGO_BIN_EXE_mirtool");

/// A gate on 127.0.0.1:0 that trusts every loopback address as a PROXY front.
async fn fronted_gate(server: SocketAddr, dialect: Dialect) -> Gate {
    let mut c = GateConfig::default();
    c.gate.listen = vec!["127.0.0.1:0".parse().unwrap()];
    c.gate.max_conn_per_ip = 0;
    c.gate.conn_rate_per_ip = 0;
    c.gate.max_packets_per_sec = 1_000_000;
    c.gate.proxy_protocol = ProxyProtocol::Any;
    c.gate.trusted_proxies = vec!["127.0.0.0/8".into()];
    c.server.addr = Some(server);
    c.server.dialect = dialect;
    let gate = Gate::start(c).await.expect("gate starts");
    assert!(gate.wait_link_up(Duration::from_secs(10)).await, "link up");
    gate
}

/// Runs mirtool off the reactor (the gate runs on this runtime).
async fn mirtool(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || Command::new(MIRTOOL).args(args).output())
        .await
        .unwrap()
        .unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sends_the_header_and_the_gate_judges_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let srv = loginsrv::start(loginsrv::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database: dir.path().join("accounts.db").display().to_string(),
        security: loginsrv::SecurityConfig::test_speed(),
        ..loginsrv::Config::default()
    })
    .await
    .expect("LoginSrv starts");
    let gate = fronted_gate(srv.local_addr(), Dialect::Delphi).await;
    let addr = gate.local_addrs()[0].to_string();
    let login = |extra: &[&str]| {
        let mut args = strings(&["login", "--addr", &addr, "--user", "front1"]);
        args.extend(strings(&["--password", "pw1234", "--timeout-secs", "5"]));
        args.extend(strings(extra));
        mirtool(args)
    };
    let o = login(&["--register", "--proxy", "v2", "--proxy-source", "192.0.2.7"]).await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Without the header a trusted front's connection is refused.
    let o = login(&[]).await;
    assert_eq!(o.status.code(), Some(2));
    // The claimed address is the one blocks apply to.
    gate.admission()
        .block("192.0.2.7/32".parse().unwrap(), None);
    let o = login(&["--proxy", "v1", "--proxy-source", "192.0.2.7"]).await;
    assert_eq!(o.status.code(), Some(2), "blocked client address");
    let o = login(&["--proxy", "v1", "--proxy-source", "192.0.2.8:4000"]).await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    gate.shutdown().await;
    srv.shutdown().await;
}

/// `mirtool backend --mode gate-echo`, killed on drop.
struct GateEcho(Child, SocketAddr);

impl GateEcho {
    fn start() -> GateEcho {
        let mut child = Command::new(MIRTOOL)
            .args(["backend", "--mode", "gate-echo", "--dialect", "wemade"])
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .parse()
            .unwrap();
        GateEcho(child, addr)
    }
}

impl Drop for GateEcho {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn report(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&o.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_scenarios_send_the_header_first() {
    let backend = GateEcho::start();
    let gate = fronted_gate(backend.1, Dialect::Wemade).await;
    let target = gate.local_addrs()[0].to_string();
    let common = ["--target", target.as_str(), "--json"];
    for (scenario, extra) in [
        (
            "relay",
            &["--clients", "4", "--duration", "0.5", "--proxy", "v2"][..],
        ),
        (
            "connect",
            &["--clients", "2", "--duration", "0.5", "--proxy", "v1"][..],
        ),
    ] {
        let mut args = strings(&["bench", scenario]);
        args.extend(strings(&common));
        args.extend(strings(extra));
        let o = mirtool(args).await;
        let r = report(&o);
        assert!(o.status.success(), "{scenario}: {r}");
        assert!(r["messages"].as_u64().unwrap() > 0, "{scenario}: {r}");
    }
    // Idle children get the options too; each connection claims its own address.
    let mut args = strings(&["bench", "idle", "--clients", "20", "--hold", "0.3"]);
    args.extend(strings(&common));
    args.extend(strings(&["--procs", "2", "--proxy", "v2"]));
    let o = mirtool(args).await;
    let r = report(&o);
    assert_eq!(r["held"], 20, "{r}");
    assert!(gate.sessions().len() <= 20);
    gate.shutdown().await;
}
