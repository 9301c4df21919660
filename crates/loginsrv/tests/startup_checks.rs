//! The `loginsrv` binary refuses, at startup and with a message naming the
//! file, a SQLite database it could not use: one another instance holds, a
//! damaged file, a read-only one; and names the host and port of a
//! PostgreSQL it cannot reach.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use testkit::process::Spawned;

const BIN: &str = env!("CARGO_BIN_EXE_loginsrv");

fn loginsrv(database: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "",
        "--database",
        database,
    ])
    .env("RUST_LOG", "info")
    .env("NO_COLOR", "1");
    cmd
}

/// Runs the binary to its exit; its exit code and every line it logged.
fn run_to_exit(database: &str) -> (Option<i32>, String) {
    let mut child = Spawned::logs(loginsrv(database));
    let code = child.exit_status().code();
    (code, child.kill().join("\n"))
}

fn valid_database(path: &Path) {
    // A first run creates and migrates it; SIGTERM stops it cleanly.
    let mut first = Spawned::logs(loginsrv(path.to_str().unwrap()));
    first.wait_for("listening line", |l| {
        l.contains("LoginSrv listening for gates").then_some(())
    });
    first.terminate();
    assert_eq!(first.exit_status().code(), Some(0));
}

#[test]
fn a_second_instance_on_one_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("accounts.db");
    let url = db.to_str().unwrap();
    let mut first = Spawned::logs(loginsrv(url));
    first.wait_for("listening line", |l| {
        l.contains("LoginSrv listening for gates").then_some(())
    });
    let (code, log) = run_to_exit(url);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("another LoginSrv uses this SQLite database")
            && log.contains(&format!("{url}.lock"))
            && log.contains(&format!("process {}", first.id())),
        "{log}"
    );
    // The first one is untouched and stops cleanly.
    first.terminate();
    assert_eq!(first.exit_status().code(), Some(0));
    // Once it has exited, the file is free again.
    valid_database(&db);
}

#[test]
fn a_damaged_sqlite_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("accounts.db");
    std::fs::write(&db, vec![b'x'; 8192]).unwrap();
    let (code, log) = run_to_exit(db.to_str().unwrap());
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains(db.to_str().unwrap()), "{log}");
    assert!(log.contains("not a database"), "the cause is given: {log}");
}

#[test]
fn a_damaged_page_fails_the_quick_check() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("accounts.db");
    valid_database(&db);
    // Keep the header (page 1) and overwrite every later page with junk.
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() > 4096, "the migrated file has several pages");
    for b in &mut bytes[4096..] {
        *b = 0xA5;
    }
    std::fs::write(&db, bytes).unwrap();
    let (code, log) = run_to_exit(db.to_str().unwrap());
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains(&format!("SQLite database {} is damaged", db.display())),
        "{log}"
    );
}

#[test]
fn a_read_only_sqlite_database_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("accounts.db");
    valid_database(&db);
    let (code, log) = run_to_exit(&format!("sqlite://{}?mode=ro", db.display()));
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains(&db.display().to_string()), "{log}");
    assert!(log.contains("cannot be written"), "{log}");
}

#[test]
fn an_unreachable_postgres_is_named_with_its_cause() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let (code, log) = run_to_exit(&format!("postgres://mir2:pw@127.0.0.1:{port}/nothing"));
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains(&format!("cannot connect to PostgreSQL at 127.0.0.1:{port}")),
        "{log}"
    );
    assert!(
        log.contains("refused"),
        "the real cause, not a pool timeout: {log}"
    );
}
