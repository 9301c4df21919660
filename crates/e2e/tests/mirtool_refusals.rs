//! `mirtool login` says why it was refused, in the operator's language: the
//! LoginSrv's reply codes in Chinese with `--lang zh` or a Chinese locale,
//! and a gate that refuses the connection itself (a blocked address, its
//! LoginSrv link down) named as such rather than as a network error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Output;

use e2e::{gate_config, linked_gate, loginsrv_on_sqlite, mirtool, mirtool_command, strings};
use logingate::app::Gate;
use logingate::config::Dialect;

async fn login(addr: SocketAddr, extra: &[&str]) -> Output {
    let mut args = strings(&["login", "--addr", &addr.to_string(), "--timeout-secs", "5"]);
    args.extend(strings(extra));
    mirtool(args).await
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_codes_in_chinese_by_flag_or_locale() {
    let (srv, _dir) = loginsrv_on_sqlite(|_| {}).await;
    let (gate, addr) = linked_gate(gate_config(Some(srv.local_addr()), Dialect::Delphi)).await;

    let o = login(
        addr,
        &["--user", "ghost", "--password", "pw1234", "--lang", "zh"],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().last(), Some("被拒绝：账号不存在"));

    let reg = ["--user", "hero2", "--password", "pw1234", "--register"];
    assert_eq!(login(addr, &reg).await.status.code(), Some(0));
    let mut again = reg.to_vec();
    again.extend(["--lang", "zh"]);
    let o = login(addr, &again).await;
    assert_eq!(stdout(&o).lines().last(), Some("被拒绝：账号名已被占用"));

    // No flag: the locale decides (LC_ALL over LANG).
    let args = strings(&[
        "login",
        "--addr",
        &addr.to_string(),
        "--user",
        "hero2",
        "--password",
        "wrong1",
    ]);
    let run = |lc_all: &str| {
        let mut cmd = mirtool_command();
        cmd.args(&args)
            .env("LANG", "zh_CN.UTF-8")
            .env("LC_ALL", lc_all);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };
    let o = run("").await.unwrap();
    assert_eq!(stdout(&o).lines().last(), Some("被拒绝：密码错误"));
    let o = run("en_US.UTF-8").await.unwrap();
    assert_eq!(stdout(&o).lines().last(), Some("refused: wrong password"));

    gate.shutdown().await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_address_is_told_the_gate_refused_it() {
    let (srv, _dir) = loginsrv_on_sqlite(|_| {}).await;
    let (gate, addr) = linked_gate(gate_config(Some(srv.local_addr()), Dialect::Delphi)).await;
    gate.admission()
        .block("127.0.0.1/32".parse().unwrap(), None);
    let o = login(addr, &["--user", "hero3", "--password", "pw1234"]).await;
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("before any reply"), "{err}");
    assert!(err.contains("reason=blocked"), "{err}");
    let o = login(
        addr,
        &["--user", "hero3", "--password", "pw1234", "--lang", "zh"],
    )
    .await;
    let err = stderr(&o);
    assert!(err.contains("网关未作任何应答就关闭了连接"), "{err}");
    assert!(err.contains("封禁"), "{err}");
    gate.shutdown().await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_whose_link_is_down_is_named_as_refusing() {
    // A LoginSrv address nobody listens on: the link never comes up.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gate = Gate::start(gate_config(Some(dead), Dialect::Delphi))
        .await
        .unwrap();
    let addr = gate.local_addrs()[0];
    let o = login(addr, &["--user", "hero4", "--password", "pw1234"]).await;
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("before any reply"), "{err}");
    assert!(err.contains("server_unavailable"), "{err}");
    gate.shutdown().await;
}
