//! The account lockout under simultaneous guesses: however many arrive at
//! once, over however many gates, clients and LoginSrv instances sharing one
//! database, at most `max_failed_logins` are evaluated per lockout window,
//! and the right password arriving after that is refused as locked.
//!
//! One test function covers both backends in turn: it reads the process-wide
//! metrics recorder, which parallel tests in this binary would share.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::{assert_reply, config, start, Backend, Db, Gate};
use loginsrv::{code, SecurityConfig};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use mir2_proto::ids::MsgKind;
use mir2_proto::Dialect;

const MAX_FAILED: u32 = 5;
const GATES: u32 = 10;
const CLIENTS_PER_GATE: u32 = 10;

fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().expect("first recorder in this binary");
        snapshotter
    })
}

/// Login guesses whose password was verified so far (`loginsrv_logins_total`
/// with result `wrong_password` or `ok`).
fn evaluated_logins() -> u64 {
    snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "loginsrv_logins_total")
        .filter(|(key, ..)| {
            key.key()
                .labels()
                .any(|l| l.key() == "result" && ["wrong_password", "ok"].contains(&l.value()))
        })
        .map(|(.., value)| match value {
            DebugValue::Counter(n) => n,
            _ => 0,
        })
        .sum()
}

/// The account's `locked_until`, read from the database itself.
async fn locked_until(db: &Db, key: &str) -> i64 {
    let sql = "SELECT locked_until FROM accounts WHERE account_key = $1";
    if db.url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let v = sqlx::query_scalar(sql).bind(key).fetch_one(&pool).await;
        pool.close().await;
        v.unwrap()
    } else {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let v = sqlx::query_scalar(sql).bind(key).fetch_one(&pool).await;
        pool.close().await;
        v.unwrap()
    }
}

fn unix_now() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(d.as_secs()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_guesses_are_bounded_by_the_lockout() {
    snapshotter();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        simultaneous_guesses(backend).await;
    }
}

/// 99 wrong guesses over 10 gates × 10 clients, split over two LoginSrv
/// instances on one PostgreSQL database (one instance owns a SQLite file),
/// all in flight at once; once the account is
/// locked, the right password on the 100th client.
async fn simultaneous_guesses(backend: Backend) {
    let Some(db) = Db::new(backend).await else {
        return;
    };
    let mut c = config(&db);
    c.security = SecurityConfig {
        // Slow enough that guesses queue for the (single) hash permit.
        argon2_m_kib: 4096,
        argon2_t: 1,
        max_concurrent_hashes: 1,
        max_failed_logins: MAX_FAILED,
        lockout_secs: 600,
        hashes_per_ip_per_minute: 0,
        ..SecurityConfig::default()
    };
    let mut servers = vec![start(c.clone()).await];
    if matches!(backend, Backend::Postgres) {
        servers.push(start(c).await);
    }
    let user = db.account("race");
    let key = user.to_ascii_lowercase();
    let mut gates = Vec::new();
    for g in 0..GATES {
        let server = &servers[g as usize % servers.len()];
        let mut gate = Gate::connect(server.local_addr(), Dialect::Delphi).await;
        for id in 1..=CLIENTS_PER_GATE {
            gate.open(id).await;
        }
        gates.push(gate);
    }
    assert_reply(
        &gates[0].register(1, &user, "right1").await,
        MsgKind::SmNewIdSuccess,
        0,
    );
    let before = evaluated_logins();

    let last = (GATES - 1, CLIENTS_PER_GATE);
    for (g, gate) in gates.iter_mut().enumerate() {
        for id in 1..=CLIENTS_PER_GATE {
            if (g as u32, id) != last {
                let body = format!("{user}/wrong{g}{id}");
                gate.send(id, MsgKind::CmIdPassword, 0, &[body.as_bytes()])
                    .await;
            }
        }
    }
    let deadline = tokio::time::Instant::now() + common::REPLY_TIMEOUT;
    while locked_until(&db, &key).await <= unix_now() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "account never locked"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (g, id) = last;
    let right = format!("{user}/right1");
    gates[g as usize]
        .send(id, MsgKind::CmIdPassword, 0, &[right.as_bytes()])
        .await;

    let mut replies = Vec::new();
    for gate in &mut gates {
        for id in 1..=CLIENTS_PER_GATE {
            replies.push(gate.reply(id).await);
        }
    }
    let evaluated = evaluated_logins() - before;
    assert!(
        evaluated <= u64::from(MAX_FAILED),
        "{backend:?}: {evaluated} guesses evaluated, lockout allows {MAX_FAILED}"
    );
    for r in &replies {
        assert_eq!(r.kind(), Some(MsgKind::SmPasswdFail), "{backend:?}: {r:?}");
        assert!(
            [code::WRONG_PASSWORD, code::LOCKED].contains(&r.header.recog),
            "{backend:?}: {r:?}"
        );
    }
    let right_reply = replies.last().unwrap();
    assert_reply(right_reply, MsgKind::SmPasswdFail, code::LOCKED);
    for server in servers {
        server.shutdown().await;
    }
}
