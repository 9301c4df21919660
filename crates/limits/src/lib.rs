//! Rate limiting in fixed memory, without I/O or clocks of its own: callers pass the
//! time, so every decision is a pure function of the events seen.
//!
//! * [`Rate`]: a token bucket in its GCRA form (one timestamp of state per bucket).
//! * [`RateTable`]: one bucket per key in a table whose size is fixed at construction;
//!   a flood of distinct keys evicts entries instead of growing it.
//! * [`LogLimiter`]: a log line that peers can trigger at will, allowed a few times per
//!   window and reporting how many were suppressed.
//!
//! See the crate README for the memory bounds and why the table is fixed-size.
#![forbid(unsafe_code)]

mod log_limiter;
mod rate;
mod rate_table;

pub use log_limiter::LogLimiter;
pub use rate::Rate;
pub use rate_table::RateTable;
