//! The pieces the end-to-end tests assemble: a real gate on loopback, a real
//! LoginSrv on a throwaway database, and mirtool run as a process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod client;

use std::net::SocketAddr;
use std::process::{Command, Output};

use logingate::app::Gate;
use logingate::config::{Config as GateConfig, Dialect};
use testkit::db::{loginsrv_toml, Db};
use testkit::process::Spawned;
use testkit::STEP;

/// A gate config for tests: loopback, ephemeral port, no per-IP limits
/// (every test client is 127.0.0.1), linked to `server` if given, else
/// starting its embedded LoginSrv.
pub fn gate_config(server: Option<SocketAddr>, dialect: Dialect) -> GateConfig {
    let mut c = GateConfig::default();
    c.gate.listen = vec!["127.0.0.1:0".parse().unwrap()];
    c.gate.max_conn_per_ip = 0;
    c.gate.conn_rate_per_ip = 0;
    // Every test client speaks from 127.0.0.1: no per-IP registration limit,
    // and no block nor attack mode (a connect storm would switch it on) may
    // outlive the offence that caused it.
    c.gate.new_accounts_per_ip_per_hour = 0;
    c.gate.punish = logingate::punish::PunishConfig::all(logingate::punish::Punishment::Disconnect);
    c.gate.attack.enter_conn_rate = 0;
    // The console on a free port: tests run side by side.
    c.admin.listen = "127.0.0.1:0".into();
    c.server.addr = server.into_iter().collect();
    c.server.dialect = dialect;
    c
}

/// Start a gate and wait for its link to be up; returns it and its client address.
pub async fn linked_gate(c: GateConfig) -> (Gate, SocketAddr) {
    let gate = Gate::start(c).await.expect("gate starts");
    assert!(gate.wait_link_up(STEP).await, "link up");
    let addr = gate.local_addrs()[0];
    (gate, addr)
}

/// The scripted tests' LoginSrv config (see [`loginsrv_toml`]) on `db`.
pub fn loginsrv_config(db: &Db) -> loginsrv::Config {
    loginsrv::Config::from_toml(&loginsrv_toml(db)).expect("test LoginSrv config")
}

/// A LoginSrv on its own SQLite file in a temporary directory: cheap Argon2,
/// the default servers, `tune` applied last.
pub async fn loginsrv_on_sqlite(
    tune: impl FnOnce(&mut loginsrv::Config),
) -> (loginsrv::RunningServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = loginsrv::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database: dir.path().join("accounts.db").display().to_string(),
        security: loginsrv::SecurityConfig::test_speed(),
        ..loginsrv::Config::default()
    };
    tune(&mut config);
    let srv = loginsrv::start(config).await.expect("LoginSrv starts");
    (srv, dir)
}

/// The mirtool binary: this package's `e2e-mirtool`, which cargo builds for
/// the tests in the directory above theirs (`target/<profile>/deps`).
pub fn mirtool_command() -> Command {
    let test = std::env::current_exe().expect("test binary path");
    let dir = test
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target directory");
    let mut cmd = Command::new(dir.join(format!("e2e-mirtool{}", std::env::consts::EXE_SUFFIX)));
    // Its refusals follow the locale: tests read the English ones unless they pass --lang.
    cmd.env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .env("LANG", "C");
    cmd
}

/// A binary this package builds from another crate's `main.rs`
/// (`e2e-logingate`, `e2e-loginsrv`): the real program, built for these tests.
pub fn sibling_binary(name: &str) -> Command {
    let test = std::env::current_exe().expect("test binary path");
    let dir = test
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target directory");
    Command::new(dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX)))
}

/// Runs mirtool with `args` to the end, off the reactor (the gate and the
/// LoginSrv run on the test's runtime).
pub async fn mirtool(args: Vec<String>) -> Output {
    let mut cmd = mirtool_command();
    cmd.args(args);
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("mirtool task")
        .expect("mirtool runs")
}

/// `&str`s as owned arguments.
pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// A `mirtool backend` process on an ephemeral loopback port, killed when dropped.
pub struct Backend {
    /// The process and its output lines.
    _process: Spawned,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Backend {
    /// `mirtool backend ARGS --listen 127.0.0.1:0`, once it has printed where it listens.
    pub fn start(args: &[&str]) -> Backend {
        let mut cmd = mirtool_command();
        cmd.arg("backend")
            .args(args)
            .args(["--listen", "127.0.0.1:0"]);
        let mut process = Spawned::output(cmd);
        let addr = process.wait_for("the listening line", |line| {
            let addr = line
                .trim()
                .strip_prefix("listening on ")
                .expect("`listening on ADDR` first");
            Some(addr.parse().expect("an address"))
        });
        Backend {
            _process: process,
            addr,
        }
    }
}
