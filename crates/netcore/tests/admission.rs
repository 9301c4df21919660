//! Admission on real loopback sockets: caps hold exactly, rejections are counted by
//! reason, rejected connections never reach the handler.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use netcore::IpNet;
use std::sync::atomic::Ordering;
use testkit::eventually;
use testkit::net::{connect_from, refused, stays_open, try_connect_from};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const LOCAL: [u8; 4] = [127, 0, 0, 1];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_closes_the_extra_one_at_once() {
    let mut cfg = config("adm_max_");
    cfg.max_connections = 3;
    let h = start(cfg).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(h.addr).await.unwrap());
    }
    eventually("3 opened", || h.handler.opened() == 3).await;
    assert!(
        refused(TcpStream::connect(h.addr).await).await,
        "4th connection is closed at once"
    );
    assert_eq!(h.counter("rejected_total", Some("max_connections")), 1);
    assert_eq!(h.handler.opened(), 3, "rejected one never reached on_open");
    assert_eq!(h.gauge("active"), 3.0);
    // Freeing a slot admits the next one.
    drop(held.pop());
    eventually("slot freed", || h.handler.closed() == 1).await;
    let mut next = TcpStream::connect(h.addr).await.unwrap();
    assert!(stays_open(&mut next, Duration::from_millis(100)).await);
    eventually("4 opened", || h.handler.opened() == 4).await;
    assert_eq!(h.counter("accepted_total", None), 5);
    assert_eq!(h.counter("rejected_total", None), 1);
    drop(held);
    drop(next);
    h.stop().await;
}

/// The counts read back through `Server::counts` are the metrics' own figures:
/// refusals of the core and the handler, closes of both, accepts and opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readable_counts_match_the_metrics() {
    let mut cfg = config("adm_counts_");
    cfg.max_conn_per_ip = 1;
    let h = start(cfg).await;
    h.handler.reject_first.store(1, Ordering::SeqCst);
    // Another source, so its per-IP slot cannot be in the way.
    assert!(
        refused(try_connect_from([127, 0, 0, 3], h.addr).await).await,
        "the handler refuses the first"
    );
    let mut admitted = connect_from(LOCAL, h.addr).await;
    admitted.write_all(b"hi\n").await.unwrap();
    eventually("1 opened", || h.handler.opened() == 1).await;
    assert!(
        refused(try_connect_from(LOCAL, h.addr).await).await,
        "one per IP"
    );
    admitted.write_all(b"!QUIT\n").await.unwrap();
    eventually("closed", || h.handler.closed() == 1).await;
    let s = h.counts.snapshot();
    assert_eq!(s.accepted, 3);
    assert_eq!(s.opened, 1);
    assert_eq!(
        s.refusals,
        std::collections::BTreeMap::from([("per_ip_limit", 1), ("test_reject", 1)])
    );
    assert_eq!(s.closes, std::collections::BTreeMap::from([("quit", 1)]));
    for reason in ["per_ip_limit", "test_reject"] {
        assert_eq!(
            h.counter("rejected_total", Some(reason)),
            h.counts.refused(reason)
        );
    }
    assert_eq!(
        h.counter("closed_total", Some("quit")),
        h.counts.closed("quit")
    );
    assert_eq!(h.counter("accepted_total", None), h.counts.accepted());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_cap_holds_per_source() {
    let mut cfg = config("adm_perip_");
    cfg.max_conn_per_ip = 2;
    let h = start(cfg).await;
    let a1 = connect_from(LOCAL, h.addr).await;
    let a2 = connect_from(LOCAL, h.addr).await;
    eventually("2 opened", || h.handler.opened() == 2).await;
    assert!(refused(try_connect_from(LOCAL, h.addr).await).await);
    assert_eq!(h.counter("rejected_total", Some("per_ip_limit")), 1);
    // Another source is not affected.
    let mut b1 = connect_from([127, 0, 0, 2], h.addr).await;
    assert!(stays_open(&mut b1, Duration::from_millis(100)).await);
    eventually("3 opened", || h.handler.opened() == 3).await;
    assert_eq!(
        h.admission.connections_from("127.0.0.1".parse().unwrap()),
        2
    );
    drop(a1);
    eventually("released", || {
        h.admission.connections_from("127.0.0.1".parse().unwrap()) == 1
    })
    .await;
    let mut a4 = connect_from(LOCAL, h.addr).await;
    assert!(stays_open(&mut a4, Duration::from_millis(100)).await);
    assert_eq!(h.counter("rejected_total", Some("per_ip_limit")), 1);
    drop((a2, a4, b1));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_admits_exactly_the_burst() {
    const BURST: usize = 5;
    let mut cfg = config("adm_rate_");
    cfg.conn_rate_per_ip = 1;
    cfg.conn_burst_per_ip = BURST as u32;
    let h = start(cfg).await;
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..BURST + 4 {
        // Refused ones may fail in `connect` already (reset); keep the rest open.
        clients.extend(try_connect_from([127, 0, 0, 3], h.addr).await.ok());
    }
    eventually("all accepted", || {
        h.counter("accepted_total", None) == (BURST + 4) as u64
    })
    .await;
    let elapsed = started.elapsed();
    let admitted = h.counter("accepted_total", None) - h.counter("rejected_total", None);
    // At 1/s a token can only have refilled if the test itself took over a second.
    let refilled = elapsed.as_secs() as usize;
    assert!(
        admitted as usize >= BURST && admitted as usize <= BURST + refilled,
        "admitted {admitted} with burst {BURST} after {elapsed:?}"
    );
    if refilled == 0 {
        assert_eq!(admitted as usize, BURST);
        assert_eq!(h.counter("rejected_total", Some("rate_limited")), 4);
    }
    // Another source has its own bucket.
    let mut other = connect_from([127, 0, 0, 4], h.addr).await;
    assert!(stays_open(&mut other, Duration::from_millis(100)).await);
    drop(clients);
    drop(other);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_list_static_cidr_and_temporary_with_expiry() {
    let h = start(config("adm_block_")).await;
    h.admission
        .replace_static(vec!["127.0.1.0/24".parse::<IpNet>().unwrap()]);
    assert!(
        refused(try_connect_from([127, 0, 1, 77], h.addr).await).await,
        "static CIDR entry blocks"
    );
    let mut ok = connect_from([127, 0, 2, 1], h.addr).await;
    assert!(stays_open(&mut ok, Duration::from_millis(50)).await);

    let temp: IpNet = "127.0.0.5/32".parse().unwrap();
    h.admission.block(temp, Some(Duration::from_millis(300)));
    assert!(h.admission.is_blocked("127.0.0.5".parse().unwrap()));
    assert!(
        refused(try_connect_from([127, 0, 0, 5], h.addr).await).await,
        "temporary entry blocks"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(!h.admission.is_blocked("127.0.0.5".parse().unwrap()));
    let mut t2 = connect_from([127, 0, 0, 5], h.addr).await;
    assert!(
        stays_open(&mut t2, Duration::from_millis(50)).await,
        "expired"
    );

    // Permanent run-time block, then unblock.
    h.admission.block("127.0.0.6/32".parse().unwrap(), None);
    assert!(refused(try_connect_from([127, 0, 0, 6], h.addr).await).await);
    assert!(h.admission.unblock("127.0.0.6/32".parse().unwrap()));
    let mut p2 = connect_from([127, 0, 0, 6], h.addr).await;
    assert!(stays_open(&mut p2, Duration::from_millis(50)).await);

    // Static list replaced on reload.
    h.admission.replace_static(Vec::new());
    let mut s2 = connect_from([127, 0, 1, 77], h.addr).await;
    assert!(stays_open(&mut s2, Duration::from_millis(50)).await);

    assert_eq!(h.counter("rejected_total", Some("blocked")), 3);
    assert_eq!(h.handler.opened(), 4);
    drop((ok, t2, p2, s2));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_rejection_is_counted_by_label_and_gets_no_on_close() {
    let h = start(config("adm_onopen_")).await;
    h.handler.reject_first.store(2, Ordering::SeqCst);
    for _ in 0..2 {
        assert!(refused(TcpStream::connect(h.addr).await).await);
    }
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    assert!(stays_open(&mut c, Duration::from_millis(50)).await);
    eventually("opened", || h.handler.opened() == 1).await;
    assert_eq!(h.counter("rejected_total", Some("test_reject")), 2);
    assert_eq!(h.handler.closed(), 0, "no on_close for rejected sessions");
    eventually("rejected ones deregistered", || h.sessions.len() == 1).await;
    drop(c);
    let handler = h.stop().await;
    assert_eq!(handler.closed(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_listen_addresses_share_one_core() {
    let mut cfg = config("adm_multi_");
    cfg.listen.push("127.0.0.1:0".parse().unwrap());
    cfg.max_connections = 2;
    let handler = std::sync::Arc::new(Echo::default());
    let server = netcore::Server::bind(cfg, handler.clone()).await.unwrap();
    let addrs = server.local_addrs();
    assert_eq!(addrs.len(), 2);
    assert_ne!(addrs[0], addrs[1]);
    let token = server.shutdown_token();
    let sessions = server.sessions();
    let run = tokio::spawn(server.run());
    let a = TcpStream::connect(addrs[0]).await.unwrap();
    let b = TcpStream::connect(addrs[1]).await.unwrap();
    eventually("both opened", || handler.opened() == 2).await;
    let locals: Vec<_> = sessions
        .ids()
        .into_iter()
        .filter_map(|id| sessions.get(id))
        .map(|s| s.local())
        .collect();
    assert!(locals.contains(&addrs[0]) && locals.contains(&addrs[1]));
    // The global cap spans both listeners.
    assert!(refused(TcpStream::connect(addrs[1]).await).await);
    drop((a, b));
    token.cancel();
    run.await.unwrap();
    assert_eq!(handler.opened(), handler.closed());
}
