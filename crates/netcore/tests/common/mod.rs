//! Shared test fixtures: a counting echo handler (newline frames), a server harness on
//! an ephemeral loopback port, and a process-wide debugging metrics recorder (each test
//! uses its own metric prefix, so parallel tests do not see each other's counts).
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use netcore::{
    Admission, CancellationToken, CloseReason, Config, Counts, Handler, Progress, Server, Session,
    Sessions,
};
use parking_lot::Mutex;
use tokio::task::JoinHandle;

/// Counts opens and closes and records every close reason; echoes newline frames.
#[derive(Default)]
pub struct Echo {
    pub opened: AtomicUsize,
    pub closed: AtomicUsize,
    pub reasons: Mutex<Vec<(u32, CloseReason)>>,
    /// Number of `on_open` calls to reject (then accept the rest).
    pub reject_first: AtomicUsize,
    /// `!BIG` replies fully queued.
    pub big_queued: AtomicUsize,
    /// Live sessions by id, to check the registry from the handler's side.
    pub live: Mutex<HashMap<u32, Session>>,
}

pub struct EchoState {
    /// Lines echoed so far.
    pub lines: u64,
}

impl Handler for Echo {
    type State = EchoState;

    const LABELS: &'static [&'static str] = &["test_reject", "quit"];

    fn on_open(&self, s: &Session) -> Result<EchoState, &'static str> {
        if self
            .reject_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err("test_reject");
        }
        self.opened.fetch_add(1, Ordering::SeqCst);
        let previous = self.live.lock().insert(s.id().get(), s.clone());
        assert!(
            previous.is_none(),
            "id {} given to two live sessions",
            s.id()
        );
        Ok(EchoState { lines: 0 })
    }

    fn on_data(
        &self,
        st: &mut EchoState,
        s: &Session,
        buf: &mut BytesMut,
    ) -> Result<Progress, CloseReason> {
        // A line is a message; bytes without a newline are part of one.
        let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') else {
            return Ok(Progress::Partial);
        };
        let frames: Bytes = buf.split_to(last_nl + 1).freeze();
        if !frames.starts_with(b"!") && !frames.windows(2).any(|w| w == b"\n!") {
            let lines = frames.iter().filter(|&&b| b == b'\n').count() as u64;
            st.lines += lines;
            s.record_messages(lines);
            // A refused send closed the session itself (slow reader) or it is closing anyway.
            let _ = s.send(frames);
            return Ok(Progress::Message);
        }
        // Slow path: line by line, with test commands.
        for line in frames.split_inclusive(|&b| b == b'\n') {
            st.lines += 1;
            match line {
                b"!QUIT\n" => return Err(CloseReason::Protocol("quit")),
                b"!KICK\n" => s.close(CloseReason::Kicked),
                _ if line.starts_with(b"!BIG ") => {
                    // "!BIG <bytes>": queue that many bytes of a counting pattern, 16 KiB per send.
                    let text = std::str::from_utf8(&line[5..line.len() - 1]).unwrap_or("0");
                    let total: usize = text.parse().unwrap_or(0);
                    let all_queued = big_pattern(total)
                        .chunks(16 * 1024)
                        .all(|chunk| s.send(Bytes::copy_from_slice(chunk)).is_ok());
                    if all_queued {
                        self.big_queued.fetch_add(1, Ordering::SeqCst);
                    }
                }
                _ => {
                    let _ = s.send(Bytes::copy_from_slice(line));
                }
            }
        }
        Ok(Progress::Message)
    }

    fn on_close(&self, _st: EchoState, s: &Session, reason: CloseReason) {
        assert!(
            s.is_closed(),
            "on_close on a session that still accepts sends"
        );
        self.closed.fetch_add(1, Ordering::SeqCst);
        self.reasons.lock().push((s.id().get(), reason));
        self.live.lock().remove(&s.id().get());
    }
}

impl Echo {
    pub fn opened(&self) -> usize {
        self.opened.load(Ordering::SeqCst)
    }
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }
    pub fn reasons_of(&self, reason: CloseReason) -> usize {
        self.reasons
            .lock()
            .iter()
            .filter(|(_, r)| *r == reason)
            .count()
    }
}

/// The bytes `!BIG <total>` answers with.
pub fn big_pattern(total: usize) -> Vec<u8> {
    (0..total).map(|i| (i % 251) as u8).collect()
}

/// A running server on 127.0.0.1:0.
pub struct Harness {
    pub addr: SocketAddr,
    pub handler: Arc<Echo>,
    pub sessions: Sessions,
    pub admission: Admission,
    pub token: CancellationToken,
    pub run: JoinHandle<()>,
    pub prefix: &'static str,
    /// The server's readable counts.
    pub counts: Counts,
}

/// Test defaults: loopback, generous caps, no timers, short flush.
pub fn config(prefix: &'static str) -> Config {
    Config {
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        max_connections: 10_000,
        max_conn_per_ip: 0,
        conn_rate_per_ip: 0,
        first_packet_timeout: None,
        idle_timeout: None,
        shutdown_flush_timeout: Duration::from_secs(2),
        metrics_prefix: prefix,
        ..Config::default()
    }
}

pub async fn start(config: Config) -> Harness {
    start_with(config, Arc::new(Echo::default())).await
}

pub async fn start_with(config: Config, handler: Arc<Echo>) -> Harness {
    let _ = snapshotter();
    let prefix = config.metrics_prefix;
    let server = Server::bind(config, Arc::clone(&handler))
        .await
        .expect("bind");
    let addr = server.local_addrs()[0];
    let sessions = server.sessions();
    let admission = server.admission();
    let counts = server.counts();
    let token = server.shutdown_token();
    let run = tokio::spawn(server.run());
    Harness {
        counts,
        addr,
        handler,
        sessions,
        admission,
        token,
        run,
        prefix,
    }
}

impl Harness {
    /// Shuts down, waits for `run` to return, and checks the universal invariant:
    /// every opened session was closed exactly once.
    pub async fn stop(self) -> Arc<Echo> {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.run)
            .await
            .expect("run returns after shutdown")
            .expect("run did not panic");
        assert_eq!(
            self.handler.opened(),
            self.handler.closed(),
            "on_close count == on_open count"
        );
        assert!(
            self.sessions.is_empty(),
            "registry empty after run returned"
        );
        assert!(self.handler.live.lock().is_empty());
        self.handler
    }

    pub fn counter(&self, name: &str, reason: Option<&str>) -> u64 {
        counter(&format!("{}{}", self.prefix, name), reason)
    }

    pub fn gauge(&self, name: &str) -> f64 {
        let full = format!("{}{}", self.prefix, name);
        snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .find_map(|(key, _, _, value)| match value {
                DebugValue::Gauge(g) if key.key().name() == full => Some(g.into_inner()),
                _ => None,
            })
            .unwrap_or(0.0)
    }
}

pub fn snapshotter() -> &'static Snapshotter {
    static SNAP: OnceLock<Snapshotter> = OnceLock::new();
    SNAP.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().expect("install recorder once");
        snapshotter
    })
}

/// Value of counter `name` with label reason=`reason` (or without labels).
pub fn counter(name: &str, reason: Option<&str>) -> u64 {
    snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, _, _, _)| key.key().name() == name)
        .filter(|(key, _, _, _)| match reason {
            None => true,
            Some(r) => key
                .key()
                .labels()
                .any(|l| l.key() == "reason" && l.value() == r),
        })
        .map(|(_, _, _, value)| match value {
            DebugValue::Counter(c) => c,
            _ => 0,
        })
        .sum()
}
