//! The summary log line: every `stats_log_secs`, players online, logins and
//! failed logins over the interval and since start, and gates connected, so an
//! operator without a metrics scraper still sees the LoginSrv at work.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::ServerState;

/// Counters the summary line reads (the metrics facade cannot be read back).
#[derive(Debug, Default)]
pub(crate) struct Summary {
    /// Logins accepted since start.
    logins: AtomicU64,
    /// Logins refused since start (no account, wrong password, locked, already online).
    failures: AtomicU64,
    /// Gate links connected now.
    gates: AtomicUsize,
}

impl Summary {
    /// Counts one CM_IDPASSWORD outcome (`ok` or the failure's label), here and in
    /// `loginsrv_logins_total{result}`.
    pub fn login(&self, result: &'static str) {
        metrics::counter!("loginsrv_logins_total", "result" => result).increment(1);
        let counter = if result == "ok" {
            &self.logins
        } else {
            &self.failures
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A gate link connected.
    pub fn gate_connected(&self) {
        self.gates.fetch_add(1, Ordering::Relaxed);
    }

    /// A gate link ended.
    pub fn gate_disconnected(&self) {
        self.gates.fetch_sub(1, Ordering::Relaxed);
    }

    fn totals(&self) -> (u64, u64) {
        (
            self.logins.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }
}

/// Logs the summary line every `every` until `cancel`.
pub(crate) async fn run(state: Arc<ServerState>, every: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let mut last = state.summary.totals();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = cancel.cancelled() => return,
        }
        let (logins, failures) = state.summary.totals();
        tracing::info!(
            interval_secs = every.as_secs(),
            online = state.online.len(),
            gates = state.summary.gates.load(Ordering::Relaxed),
            logins = logins - last.0,
            login_failures = failures - last.1,
            total_logins = logins,
            total_login_failures = failures,
            "summary"
        );
        last = (logins, failures);
    }
}
