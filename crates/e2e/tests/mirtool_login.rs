//! `mirtool login` (the binary) against a real in-process gate and LoginSrv
//! on loopback: success path, refusals (exit 1 with the reason), and
//! connection errors (exit 2).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use e2e::{gate_config, linked_gate, loginsrv_on_sqlite, strings};
use logingate::app::Gate;
use logingate::config::Dialect;

struct Stack {
    srv: loginsrv::RunningServer,
    gate: Gate,
    _dir: tempfile::TempDir,
}

async fn stack() -> Stack {
    let (srv, dir) = loginsrv_on_sqlite(|_| {}).await;
    let (gate, _) = linked_gate(gate_config(Some(srv.local_addr()), Dialect::Delphi)).await;
    Stack {
        srv,
        gate,
        _dir: dir,
    }
}

async fn mirtool(addr: SocketAddr, extra: &[&str]) -> Output {
    let mut args = strings(&["login", "--addr", &addr.to_string()]);
    args.extend(strings(extra));
    e2e::mirtool(args).await
}

fn last_line(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_select_then_refusals() {
    let s = stack().await;
    let addr = s.gate.local_addrs()[0];

    let o = mirtool(
        addr,
        &["--user", "hero1", "--password", "pw1234", "--register"],
    )
    .await;
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout {out} stderr {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("account hero1 created"), "{out}");
    assert!(out.contains("demo (idle 空闲)"), "{out}");
    let last = last_line(&o);
    let prefix = "selected demo: SelGate 127.0.0.1:7100 session ";
    assert!(last.starts_with(prefix), "{last}");
    let sid: i32 = last[prefix.len()..].parse().expect("numeric session id");
    assert_eq!(
        s.srv.session_account(sid).as_deref(),
        Some("hero1"),
        "the id is live on the LoginSrv"
    );

    // Registering again is refused with the reason.
    let o = mirtool(
        addr,
        &["--user", "hero1", "--password", "pw1234", "--register"],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(last_line(&o), "refused: account name already taken");

    let o = mirtool(addr, &["--user", "hero1", "--password", "nope"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(last_line(&o), "refused: wrong password");

    let o = mirtool(addr, &["--user", "ghost", "--password", "nope"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(last_line(&o), "refused: no such account");

    let o = mirtool(
        addr,
        &[
            "--user",
            "hero1",
            "--password",
            "pw1234",
            "--server",
            "elsewhere",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        last_line(&o).contains("full or unknown"),
        "{}",
        last_line(&o)
    );

    // Change the password, then the new one works and the old one does not.
    let o = mirtool(
        addr,
        &[
            "--user",
            "hero1",
            "--password",
            "pw1234",
            "--change-password",
            "newpw1",
        ],
    )
    .await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("password changed"));
    let o = mirtool(addr, &["--user", "hero1", "--password", "pw1234"]).await;
    assert_eq!(o.status.code(), Some(1));

    s.gate.shutdown().await;
    s.srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_exit_2() {
    // A port nobody listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let o = mirtool(free, &["--user", "a", "--password", "b"]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot connect"));

    // A server that accepts and never answers: the timeout applies.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let (_s, _) = silent.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(20)).await;
    });
    let o = mirtool(
        addr,
        &["--user", "a", "--password", "b", "--timeout-secs", "1"],
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no reply"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    hold.abort();

    // Usage error.
    let o = mirtool(free, &["--user", "a", "--password", "b", "--id", "bogus"]).await;
    assert_eq!(o.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_out_of_range_is_a_usage_error_naming_the_flag() {
    // A listener that never accepts: the kernel completes the handshake, so a run that
    // got past the arguments would connect, send and wait for a reply.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    for bad in ["0", "3601", "18446744073709551615"] {
        let o = mirtool(
            addr,
            &["--user", "a", "--password", "b", "--timeout-secs", bad],
        )
        .await;
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "--timeout-secs {bad}: {stderr}");
        assert!(
            stderr.contains("--timeout-secs") && stderr.contains("1..=3600"),
            "--timeout-secs {bad}: {stderr}"
        );
    }
}
