//! Histograms of the work a login waits on: a timer records its metric when
//! dropped, so an early return (`?`) is timed too.

use std::time::Instant;

/// Argon2id hash or verification, queueing for a hash slot included.
pub(crate) const HASH_SECONDS: &str = "loginsrv_hash_seconds";
/// One database query.
pub(crate) const DB_QUERY_SECONDS: &str = "loginsrv_db_query_seconds";

/// Records the time from its creation to its drop.
pub(crate) struct Timer {
    /// Started at.
    start: Instant,
    /// The histogram handle (bound to the recorder at creation).
    histogram: metrics::Histogram,
}

impl Timer {
    /// Time one hash operation (`hash` or `verify`).
    pub(crate) fn hash(op: &'static str) -> Timer {
        Timer {
            start: Instant::now(),
            histogram: metrics::histogram!(HASH_SECONDS, "op" => op),
        }
    }

    /// Time one database query.
    pub(crate) fn db() -> Timer {
        Timer {
            start: Instant::now(),
            histogram: metrics::histogram!(DB_QUERY_SECONDS),
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.histogram.record(self.start.elapsed().as_secs_f64());
    }
}
