//! Client churn across a link drop: on each link connection every session
//! that was opened on it gets frames only after its open, at most one close
//! frame, nothing after it; no session of the old connection ever appears
//! on the new one; after shutdown every session of the live connection has
//! exactly one close frame.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use logingate::app::Gate;
use logingate::config::Dialect;
use tokio::io::AsyncWriteExt;

/// What one link connection carried, checked frame by frame.
#[derive(Default)]
struct Ledger {
    /// Sessions opened on this connection.
    opened: HashSet<u32>,
    /// Close frames per session.
    closed: HashMap<u32, u32>,
}

impl Ledger {
    fn record(&mut self, frame: &str) {
        if frame == "%--$" {
            return;
        }
        let body = &frame[1..frame.len() - 1];
        let (cmd, rest) = body.split_at(1);
        let id: u32 = rest
            .split('/')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad frame {frame:?}"));
        match cmd {
            "O" => assert!(self.opened.insert(id), "second open for {id}"),
            "A" | "X" => {
                assert!(
                    self.opened.contains(&id),
                    "{frame:?} before/without its open"
                );
                assert!(!self.closed.contains_key(&id), "{frame:?} after the close");
                if cmd == "X" {
                    self.closed.insert(id, 1);
                }
            }
            _ => panic!("unexpected frame {frame:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_across_a_link_drop_keeps_open_and_close_frames_exact() {
    let srv = Srv::bind().await;
    let mut config = test_config(srv.addr(), Dialect::Wemade);
    config.gate.shutdown_grace_secs = 2;
    let gate = Gate::start(config).await.unwrap();
    let mut link1 = srv.accept().await;
    assert!(gate.wait_link_up(STEP).await);
    let addr = gate_addr(&gate);

    let stop = Arc::new(AtomicBool::new(false));
    let mut churners = Vec::new();
    for n in 0..24 {
        let stop = stop.clone();
        churners.push(tokio::spawn(async move {
            let mut kept = Vec::new();
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let Ok(Ok(mut c)) =
                    tokio::time::timeout(STEP, tokio::net::TcpStream::connect(addr)).await
                else {
                    continue;
                };
                for m in 0..3 {
                    if c.write_all(&client_msg(n * 1000 + m)).await.is_err() {
                        break;
                    }
                }
                // Every fourth client stays connected to the end.
                if round % 4 == 0 {
                    kept.push(c);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            kept
        }));
    }

    // First connection: read a while, then the LoginSrv drops it.
    let mut first = Ledger::default();
    let until = tokio::time::Instant::now() + Duration::from_millis(400);
    while tokio::time::Instant::now() < until {
        let f = link1.text().await;
        first.record(&f);
    }
    drop(link1);
    assert!(!first.opened.is_empty());

    // Second connection: churn goes on, then stops; the gate shuts down.
    let mut link2 = srv.accept().await;
    let mut second = Ledger::default();
    let until = tokio::time::Instant::now() + Duration::from_millis(600);
    while tokio::time::Instant::now() < until {
        let f = link2.text().await;
        second.record(&f);
    }
    stop.store(true, Ordering::Relaxed);
    let mut kept = Vec::new();
    for c in churners {
        kept.extend(c.await.unwrap());
    }
    let shutdown = tokio::spawn(gate.shutdown());
    for f in link2.frames_until_eof().await {
        second.record(&f);
    }
    shutdown.await.unwrap();
    drop(kept);

    // Real churn on both connections, and sessions lost with the first.
    assert!(
        first.opened.len() >= 10 && second.opened.len() >= 10,
        "{} / {} sessions",
        first.opened.len(),
        second.opened.len()
    );
    assert!(
        first.opened.is_disjoint(&second.opened),
        "a session of the dropped link appeared on the new one"
    );
    let unclosed: Vec<_> = second
        .opened
        .iter()
        .filter(|id| !second.closed.contains_key(id))
        .collect();
    assert!(
        unclosed.is_empty(),
        "sessions without a close frame: {unclosed:?}"
    );
}
