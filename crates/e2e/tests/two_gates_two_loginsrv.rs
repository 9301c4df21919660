//! Scale-out with real processes: two `loginsrv` processes on one PostgreSQL
//! schema, and two `logingate` processes each linked to both. Logins through
//! either gate spread over both instances; a duplicate login through the
//! other gate is −3 and kicks the first client, whichever instances the two
//! logins are on; kill -9 of one instance closes only the sessions each gate
//! had on it, new logins go through the survivor, and the dead instance's
//! rows go within `instance_expiry_secs`.
//!
//! Needs `DATABASE_URL` (a `postgres://` URL); skips with a message otherwise.
//! Each run has its own schema, so runs never see each other.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use e2e::client::Client;
use e2e::{gate_config, sibling_binary};
use logingate::config::Dialect;
use loginsrv::code;
use mir2_proto::ids::MsgKind;
use testkit::db::{loginsrv_toml, Backend, Db};
use testkit::gate::assert_reply;
use testkit::process::Spawned;
use testkit::STEP;

/// Short, so the dead instance's rows go within the test's step.
const EXPIRY_SECS: u64 = 3;
const PASSWORD: &str = "pw1234";
/// Clients a gate may open before one lands on the wanted instance: each one
/// kept open tips the gate's fewest-sessions choice towards the other link.
const MAX_TRIES: usize = 10;

/// A `loginsrv` process and the address its gates link to.
struct Instance {
    process: Spawned,
    gates: SocketAddr,
}

fn spawn_loginsrv(config: &Path) -> Instance {
    let mut cmd = sibling_binary("e2e-loginsrv");
    cmd.arg("--config")
        .arg(config)
        .args(["--admin", "", "--log-format", "json"])
        .env("RUST_LOG", "info");
    let mut process = Spawned::logs(cmd);
    let gates = process.wait_for_json("the gate listening line", |v| {
        let f = &v["fields"];
        (f["message"] == "LoginSrv listening for gates")
            .then(|| f["local_addr"].as_str().unwrap().parse().unwrap())
    });
    Instance { process, gates }
}

/// The backend address of a gate's `link: up` log line.
fn link_up(line: &str) -> Option<SocketAddr> {
    if !line.contains("link: up") {
        return None;
    }
    let start = line.find("addr=")? + "addr=".len();
    line[start..].split(' ').next()?.parse().ok()
}

/// A `logingate` process linked to every one of `backends`, once each link
/// is up (the LoginSrv answered its first heartbeat); returns it and its
/// client address.
async fn spawn_gate(dir: &Path, name: &str, backends: &[SocketAddr]) -> (Spawned, SocketAddr) {
    let mut c = gate_config(None, Dialect::Delphi);
    c.server.addr = backends.to_vec();
    c.server.heartbeat_secs = 1;
    c.admin.listen = String::new();
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, c.to_toml()).unwrap();
    let bin = sibling_binary("e2e-logingate");
    let bin = bin.get_program().to_str().unwrap().to_owned();
    let (mut gate, addrs) = testkit::process::start_gate(&bin, &file, "link: up").await;
    let mut pending: BTreeSet<SocketAddr> = backends.iter().copied().collect();
    for line in &gate.seen {
        if let Some(addr) = link_up(line) {
            pending.remove(&addr);
        }
    }
    let gate = tokio::task::spawn_blocking(move || {
        while !pending.is_empty() {
            let addr = gate.wait_for("a link up to each LoginSrv", link_up);
            pending.remove(&addr);
        }
        gate
    })
    .await
    .unwrap();
    (gate, addrs.listen)
}

/// The two instances as the database knows them, and fresh account names.
struct Cluster {
    db: Db,
    pool: sqlx::PgPool,
    /// Each instance's gate address, as it registered it (`loginsrv_instances.listen`).
    listen: [SocketAddr; 2],
    /// Accounts made so far, for unique names.
    accounts: usize,
}

impl Cluster {
    /// The instance (0 or 1) whose client holds `account`, if any does.
    async fn holder(&self, account: &str) -> Option<usize> {
        let listen: Option<String> = sqlx::query_scalar(
            "SELECT i.listen FROM online_sessions s \
             JOIN loginsrv_instances i USING (instance_id) WHERE s.account_key = $1",
        )
        .bind(account.to_ascii_lowercase())
        .fetch_optional(&self.pool)
        .await
        .unwrap();
        let listen: SocketAddr = listen?.parse().unwrap();
        Some(
            self.listen
                .iter()
                .position(|l| *l == listen)
                .expect("a row of one of the two instances"),
        )
    }

    /// Rows of instance `index` left in the database: (instances, sessions).
    async fn rows_of(&self, index: usize) -> (i64, i64) {
        let listen = self.listen[index].to_string();
        let instances: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM loginsrv_instances WHERE listen = $1")
                .bind(&listen)
                .fetch_one(&self.pool)
                .await
                .unwrap();
        let sessions: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM online_sessions WHERE instance_id NOT IN \
             (SELECT instance_id FROM loginsrv_instances WHERE listen <> $1)",
        )
        .bind(&listen)
        .fetch_one(&self.pool)
        .await
        .unwrap();
        (instances, sessions)
    }

    /// A new client of `gate` logged in to a new account, on whichever
    /// instance the gate chose; returns it, the account and that instance.
    async fn logged_in(&mut self, gate: SocketAddr) -> (Client, String, usize) {
        self.accounts += 1;
        let account = self.db.account(&format!("u{}", self.accounts));
        let mut c = Client::connect(gate).await;
        assert_reply(
            &c.register(&account, PASSWORD).await,
            MsgKind::SmNewIdSuccess,
            0,
        );
        assert_reply(
            &c.login(&account, PASSWORD).await,
            MsgKind::SmPassOkSelectServer,
            0,
        );
        let instance = self.holder(&account).await.expect("a row for the login");
        (c, account, instance)
    }

    /// A client of `gate` logged in on instance `want`; the clients that
    /// landed on the other instance are kept open in `parked`.
    async fn logged_in_on(
        &mut self,
        gate: SocketAddr,
        want: usize,
        parked: &mut Vec<Client>,
    ) -> (Client, String) {
        for _ in 0..MAX_TRIES {
            let (c, account, instance) = self.logged_in(gate).await;
            if instance == want {
                return (c, account);
            }
            parked.push(c);
        }
        panic!("gate {gate} never chose instance {want}");
    }
}

/// Logs `c` in to `account` until the older holder's kick has gone through
/// (−3 meanwhile, as a player retries).
async fn login_after_kick(c: &mut Client, account: &str) {
    for _ in 0..50 {
        let r = c.login(account, PASSWORD).await;
        if r.kind() == Some(MsgKind::SmPassOkSelectServer) {
            return;
        }
        assert_reply(&r, MsgKind::SmPasswdFail, code::ALREADY_ONLINE);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{account}: still already online after the kick");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gates_each_linked_to_two_loginsrvs() {
    let Some(db) = Db::new(Backend::Postgres).await else {
        eprintln!(
            "two_gates_each_linked_to_two_loginsrvs needs DATABASE_URL=postgres://…; skipped"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("loginsrv.toml");
    let toml = loginsrv_toml(&db).replacen(
        "\n[security]",
        &format!("instance_expiry_secs = {EXPIRY_SECS}\n\n[security]"),
        1,
    );
    std::fs::write(&config, toml).unwrap();
    let one = spawn_loginsrv(&config);
    let two = spawn_loginsrv(&config);
    let backends = [one.gates, two.gates];
    let (_gate_a, a) = spawn_gate(dir.path(), "gate-a", &backends).await;
    let (_gate_b, b) = spawn_gate(dir.path(), "gate-b", &backends).await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let mut cluster = Cluster {
        db,
        pool,
        listen: backends,
        accounts: 0,
    };
    let mut parked = Vec::new();

    // Two clients of each gate: the gate opens each on its link with the
    // fewest sessions, so each gate's logins are on both instances.
    for gate in [a, b] {
        let mut instances = BTreeSet::new();
        for _ in 0..2 {
            let (c, _, instance) = cluster.logged_in(gate).await;
            instances.insert(instance);
            parked.push(c);
        }
        assert_eq!(
            instances,
            BTreeSet::from([0, 1]),
            "gate {gate}: logins on both instances"
        );
    }

    // An account logged in through gate A, then through gate B, for each
    // pair of instances: −3, the first client's connection closed by gate A,
    // and the retry through gate B logs in on gate B's instance.
    for (on_a, on_b) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        let (mut first, account) = cluster.logged_in_on(a, on_a, &mut parked).await;
        let (mut second, _) = cluster.logged_in_on(b, on_b, &mut parked).await;
        assert_reply(
            &second.login(&account, PASSWORD).await,
            MsgKind::SmPasswdFail,
            code::ALREADY_ONLINE,
        );
        assert!(
            first.try_reply().await.is_none(),
            "instances {on_a}/{on_b}: the first client kicked"
        );
        login_after_kick(&mut second, &account).await;
        assert_eq!(cluster.holder(&account).await, Some(on_b));
        parked.push(second);
    }

    // A logged-in client of each gate on each instance; kill -9 instance 0.
    let mut on = Vec::new();
    for gate in [a, b] {
        let dead = cluster.logged_in_on(gate, 0, &mut parked).await;
        let alive = cluster.logged_in_on(gate, 1, &mut parked).await;
        on.push((dead, alive));
    }
    let (instances, sessions) = cluster.rows_of(0).await;
    assert_eq!(instances, 1);
    assert!(sessions >= 2, "instance 0 holds logins: {sessions}");
    one.process.kill();

    // Each gate closes the sessions it had on instance 0 and only those: the
    // clients on instance 1 are still served.
    for ((dead, _), (alive, account)) in &mut on {
        assert!(
            dead.try_reply().await.is_none(),
            "the client on the killed instance closed"
        );
        assert_reply(
            &alive.login(account, PASSWORD).await,
            MsgKind::SmPassOkSelectServer,
            0,
        );
        assert_eq!(cluster.holder(account).await, Some(1));
    }

    // New logins through both gates go to the surviving instance.
    for gate in [a, b] {
        for _ in 0..2 {
            let (c, _, instance) = cluster.logged_in(gate).await;
            assert_eq!(instance, 1, "gate {gate}: a new login on the survivor");
            parked.push(c);
        }
    }

    // The dead instance's rows go within the expiry; then the accounts its
    // clients held log in again, through the survivor.
    let deadline = tokio::time::Instant::now() + STEP;
    while cluster.rows_of(0).await != (0, 0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead instance's rows outlived instance_expiry_secs"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (gate, ((_, account), _)) in [a, b].into_iter().zip(&on) {
        let mut c = Client::connect(gate).await;
        assert_reply(
            &c.login(account, PASSWORD).await,
            MsgKind::SmPassOkSelectServer,
            0,
        );
        assert_eq!(cluster.holder(account).await, Some(1));
    }
    drop(two);
}
