//! Counted, rate-limited reporting of refused input.
//!
//! Every rejection increments `loginsrv_rejected_total{reason}`; the log line
//! is rate-limited so a flood of garbage cannot flood the log.

use std::time::Duration;

use limits::LogLimiter;

/// At most 20 rejection lines a second (the counter sees them all).
static REJECT_LOG: LogLimiter = LogLimiter::new(20, Duration::from_secs(1));

/// Count a rejection and log it (rate-limited) with its context.
pub fn reject(reason: &'static str, context: std::fmt::Arguments<'_>) {
    metrics::counter!("loginsrv_rejected_total", "reason" => reason).increment(1);
    if let Some(suppressed) = REJECT_LOG.check() {
        tracing::warn!(reason, suppressed, "rejected: {context}");
    }
}
