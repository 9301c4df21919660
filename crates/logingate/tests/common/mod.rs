//! The gate's test setup: a config for loopback, a gate started in-process
//! and linked to the toolkit's scripted LoginSrv. The scripted LoginSrv and
//! the client-side helpers come from `testkit`.
// Each test binary uses some of these.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

pub use testkit::http;

use std::net::SocketAddr;

use logingate::app::Gate;
use logingate::config::{Config, Dialect};

pub use testkit::net::*;
pub use testkit::srv::*;
pub use testkit::{eventually, STEP};

/// A gate config for tests: loopback, ephemeral port, no per-IP limits (every
/// test client is 127.0.0.1), long heartbeats so frames are deterministic.
pub fn test_config(server: SocketAddr, dialect: Dialect) -> Config {
    let mut c = Config::default();
    c.gate.listen = vec!["127.0.0.1:0".parse().unwrap()];
    c.gate.max_conn_per_ip = 0;
    c.gate.conn_rate_per_ip = 0;
    c.gate.max_packets_per_sec = 10_000;
    // Every test speaks from 127.0.0.1: no block nor attack mode may outlive a test's
    // deliberate offence (tests of those defences turn them back on).
    c.gate.punish = logingate::punish::PunishConfig::all(logingate::punish::Punishment::Disconnect);
    c.gate.attack.enter_conn_rate = 0;
    c.gate.shutdown_grace_secs = 2;
    c.server.addr = vec![server];
    c.server.dialect = dialect;
    c.server.heartbeat_secs = 30;
    c.server.dead_after_secs = 60;
    c.server.reconnect_max_secs = 1;
    // Tests run side by side: no console unless a test asks for one (on port 0).
    c.admin.listen = String::new();
    c
}

/// Start a gate and wait for its link to be up.
pub async fn start_gate(config: Config) -> Gate {
    Gate::start(config).await.expect("gate starts")
}

pub fn gate_addr(gate: &Gate) -> SocketAddr {
    gate.local_addrs()[0]
}

/// A gate linked to a fresh scripted LoginSrv, link up.
pub async fn gate_with_srv(
    tune: impl FnOnce(&mut Config),
    dialect: Dialect,
) -> (Gate, Srv, SrvConn) {
    let srv = Srv::bind().await;
    let mut config = test_config(srv.addr(), dialect);
    tune(&mut config);
    let gate = start_gate(config).await;
    let conn = srv.accept().await;
    assert!(gate.wait_link_up(STEP).await, "link up");
    (gate, srv, conn)
}
