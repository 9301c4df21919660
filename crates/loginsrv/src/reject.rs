//! Counted, rate-limited reporting of refused input.
//!
//! Every rejection increments `loginsrv_rejected_total{reason}`; the log line
//! is rate-limited so a flood of garbage cannot flood the log.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Log lines allowed per second for rejections (the counter sees them all).
const LOG_LINES_PER_SEC: u32 = 20;

/// Second of the current window.
static WINDOW: AtomicU64 = AtomicU64::new(0);
/// Lines logged in the current window.
static LOGGED: AtomicU32 = AtomicU32::new(0);

/// Whether one more rejection line may be logged this second.
fn allow_log() -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if WINDOW.swap(now, Ordering::Relaxed) != now {
        LOGGED.store(0, Ordering::Relaxed);
    }
    LOGGED.fetch_add(1, Ordering::Relaxed) < LOG_LINES_PER_SEC
}

/// Count a rejection and log it (rate-limited) with its context.
pub fn reject(reason: &'static str, context: std::fmt::Arguments<'_>) {
    metrics::counter!("loginsrv_rejected_total", "reason" => reason).increment(1);
    if allow_log() {
        tracing::warn!(reason, "rejected: {context}");
    }
}
