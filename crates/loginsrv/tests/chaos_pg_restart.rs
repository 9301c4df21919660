//! PostgreSQL restarted while logins and registrations are in flight: every request
//! gets an answer (success, or SM_*_FAIL with SERVER_ERROR; a login may also get
//! "already logged in" once, see `ALREADY_ONLINE`), nothing acknowledged is
//! lost, nothing is half-written, and the same LoginSrv serves again afterwards.
//!
//! Restarting the cluster disturbs every other user of it, so this runs only when
//! `MIR2_CHAOS_PG=1` (CI runs it on its own after the main suite) and `DATABASE_URL`
//! names a local PostgreSQL that `pg_ctlcluster` (or `systemctl`) can restart.
//!
//! Every scripted client comes from one address (the scripted gate's), and one run
//! asks for hundreds of Argon2 hashes in well under a minute: with the default
//! `hashes_per_ip_per_minute` the verification itself would be refused (−5) once
//! the address's budget is spent, whatever the database did. `chaos_config` lifts
//! it; `verification_outlasts_the_hash_budget` holds that on SQLite, no restart needed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{Backend, Db, Gate};
use loginsrv::Config;
use mir2_proto::ids::MsgKind;
use mir2_proto::Dialect;

/// Any failure reply: the server could not complete the request.
const SERVER_ERROR: i32 = -5;
/// SM_PASSWD_FAIL "already logged in": a client that closed while the database was
/// down could not remove its online row, so the account's next login evicts the row
/// and is answered this (the player's retry logs in, as after any duplicate login).
const ALREADY_ONLINE: i32 = -3;
/// SM_PASSWD_FAIL for an account that does not exist.
const NO_ACCOUNT: i32 = 0;
/// Gate links working during the restart.
const LINKS: u32 = 3;

/// The scripted tests' config with the per-address hash budget lifted: every
/// scripted client shares one address, so the budget would judge the test, not the store.
fn chaos_config(db: &Db) -> Config {
    let mut config = common::config(db);
    config.security.hashes_per_ip_per_minute = 0;
    config
}

/// Every acknowledged account logs in with its password.
async fn check_acknowledged(gate: &mut Gate, id: &mut u32, acked: &[String]) {
    for account in acked {
        gate.open(*id).await;
        let r = gate.login(*id, account, "pw1234").await;
        assert_eq!(
            r.kind(),
            Some(MsgKind::SmPassOkSelectServer),
            "acknowledged {account} survives the restart (recog {})",
            r.header.recog
        );
        gate.close(*id).await;
        *id += 1;
    }
}

/// Every refused registration is either whole (it logs in) or absent.
async fn check_refused(gate: &mut Gate, id: &mut u32, failed: &[String]) {
    for account in failed {
        gate.open(*id).await;
        let r = gate.login(*id, account, "pw1234").await;
        let whole = r.kind() == Some(MsgKind::SmPassOkSelectServer);
        let absent = r.kind() == Some(MsgKind::SmPasswdFail) && r.header.recog == NO_ACCOUNT;
        assert!(whole || absent, "{account} half-written: {:?}", r.header);
        gate.close(*id).await;
        *id += 1;
    }
}

/// More hashes from the one scripted address than the default budget allows in a
/// minute (300), then the same verification as after a restart: none of it is refused.
#[tokio::test]
async fn verification_outlasts_the_hash_budget() {
    const ACCOUNTS: u32 = 320;
    let db = Db::new(Backend::Sqlite).await.unwrap();
    let server = common::start(chaos_config(&db)).await;
    let mut gate = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    let (mut acked, mut failed) = (Vec::new(), Vec::new());
    let mut id = 1;
    for n in 0..ACCOUNTS {
        let account = db.account(&format!("b{n}"));
        gate.open(id).await;
        let r = gate.register(id, &account, "pw1234").await;
        match (r.kind(), r.header.recog) {
            (Some(MsgKind::SmNewIdSuccess), _) => acked.push(account),
            (Some(MsgKind::SmNewIdFail), SERVER_ERROR) => failed.push(account),
            other => panic!("registration: {other:?}"),
        }
        gate.close(id).await;
        id += 1;
    }
    check_acknowledged(&mut gate, &mut id, &acked).await;
    check_refused(&mut gate, &mut id, &failed).await;
    assert_eq!(acked.len(), ACCOUNTS as usize, "no registration refused");
    server.shutdown().await;
}

/// Restarts the first local cluster; true when a restart command succeeded.
fn restart_postgres() -> bool {
    let quiet = |cmd: &mut Command| {
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let cluster = Command::new("pg_lsclusters")
        .arg("-h")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| {
            let mut w = t.lines().next()?.split_whitespace();
            Some((w.next()?.to_owned(), w.next()?.to_owned()))
        });
    if let Some((ver, name)) = cluster {
        if quiet(Command::new("pg_ctlcluster").args([&ver, &name, "restart"])) {
            return true;
        }
    }
    quiet(Command::new("systemctl").args(["restart", "postgresql"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_during_logins() {
    if std::env::var("MIR2_CHAOS_PG").as_deref() != Ok("1") {
        println!("note: MIR2_CHAOS_PG=1 not set; PostgreSQL restart test skipped");
        return;
    }
    let Some(db) = Db::new(Backend::Postgres).await else {
        return;
    };
    let server = common::start(chaos_config(&db)).await;
    let addr = server.local_addr();
    // One known account per link: links logging in the same account at once
    // would see each other's sessions (−3, already logged in).
    let known_of = |link: u32| db.account(&format!("known{link}"));
    {
        let mut gate = Gate::connect(addr, Dialect::Delphi).await;
        for link in 0..LINKS {
            let id = link + 1;
            gate.open(id).await;
            let r = gate.register(id, &known_of(link), "pw1234").await;
            assert_eq!(r.kind(), Some(MsgKind::SmNewIdSuccess));
        }
    }
    let known = known_of(0);

    // Links alternate a login of the known account with a new registration until
    // told to stop; every answer is checked as it comes.
    let stop = Arc::new(AtomicBool::new(false));
    let mut links = Vec::new();
    for link in 0..LINKS {
        let stop = Arc::clone(&stop);
        let known = known_of(link);
        let prefix = db.prefix.clone();
        links.push(tokio::spawn(async move {
            let mut gate = Gate::connect(addr, Dialect::Delphi).await;
            let (mut acked, mut failed, mut login_errors) = (Vec::new(), Vec::new(), 0u32);
            let mut id = 0;
            for n in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                id += 1;
                gate.open(id).await;
                let r = gate.login(id, &known, "pw1234").await;
                match (r.kind(), r.header.recog) {
                    (Some(MsgKind::SmPassOkSelectServer), _) => {}
                    (Some(MsgKind::SmPasswdFail), SERVER_ERROR | ALREADY_ONLINE) => {
                        login_errors += 1
                    }
                    other => panic!("login during the restart: {other:?}"),
                }
                gate.close(id).await;
                let account = format!("{prefix}{link}r{n}");
                id += 1;
                gate.open(id).await;
                let r = gate.register(id, &account, "pw1234").await;
                match (r.kind(), r.header.recog) {
                    (Some(MsgKind::SmNewIdSuccess), _) => acked.push(account),
                    (Some(MsgKind::SmNewIdFail), SERVER_ERROR) => failed.push(account),
                    other => panic!("registration during the restart: {other:?}"),
                }
                gate.close(id).await;
            }
            (acked, failed, login_errors)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(restart_postgres(), "restart the local PostgreSQL cluster");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut acked, mut failed, mut login_errors) = (Vec::new(), Vec::new(), 0);
    for l in links {
        let (a, f, e) = l.await.unwrap();
        acked.extend(a);
        failed.extend(f);
        login_errors += e;
    }

    // The same server, without a restart: logins work again (the pool reconnects).
    let mut gate = Gate::connect(addr, Dialect::Delphi).await;
    let mut id = 1;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        gate.open(id).await;
        let r = gate.login(id, &known, "pw1234").await;
        gate.close(id).await;
        id += 1;
        if r.kind() == Some(MsgKind::SmPassOkSelectServer) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "service resumes after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    check_acknowledged(&mut gate, &mut id, &acked).await;
    check_refused(&mut gate, &mut id, &failed).await;
    println!(
        "PostgreSQL restart: {} registrations acknowledged and present, {} refused cleanly, \
         {login_errors} logins answered SERVER_ERROR or ALREADY_ONLINE",
        acked.len(),
        failed.len()
    );
    server.shutdown().await;
}
