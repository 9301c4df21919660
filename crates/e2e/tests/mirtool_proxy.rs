//! `--proxy` / `--proxy-source` against the real gate trusting loopback as a front:
//! the gate accepts the header and judges the address it carries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Output;

use e2e::{gate_config, linked_gate, loginsrv_on_sqlite, mirtool, strings, Backend};
use logingate::app::Gate;
use logingate::config::{Dialect, ProxyProtocol};

/// A gate on 127.0.0.1:0 that trusts every loopback address as a PROXY front.
async fn fronted_gate(server: SocketAddr, dialect: Dialect) -> Gate {
    let mut c = gate_config(Some(server), dialect);
    c.gate.max_packets_per_sec = 1_000_000;
    c.gate.proxy_protocol = ProxyProtocol::Any;
    c.gate.trusted_proxies = vec!["127.0.0.0/8".into()];
    linked_gate(c).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sends_the_header_and_the_gate_judges_its_address() {
    let (srv, _dir) = loginsrv_on_sqlite(|_| {}).await;
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

fn report(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&o.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_scenarios_send_the_header_first() {
    let backend = Backend::start(&["--mode", "gate-echo", "--dialect", "wemade"]);
    let gate = fronted_gate(backend.addr, Dialect::Wemade).await;
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
