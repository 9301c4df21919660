//! The start-up and shut-down path shared by `logingate` and `loginsrv`, so
//! that both read their config, name a bad key, log, stop on a signal and
//! report failure the same way.
//!
//! - [`config`]: one [`ConfigError`] (a dotted key and what is wrong with
//!   it), one TOML loader whose errors name the key and its line, one bound
//!   for every duration key.
//! - [`logging`]: text or JSON lines on stderr, UTC or local timestamps,
//!   colour only on a terminal.
//! - [`fd_limit`]: the open-file limit raised for the connection cap.
//! - [`signal`]: SIGINT / SIGTERM.
//! - [`notify`]: systemd readiness notifications (no-ops outside systemd).
//! - [`exit`]: the exit codes and the runtime wrapper that maps results to
//!   them.

pub mod config;
pub mod exit;
pub mod fd_limit;
pub mod logging;
pub mod notify;
pub mod signal;

pub use config::{ConfigError, MAX_SECS};
pub use exit::{run_main, EXIT_CONFIG, EXIT_RUNTIME};
pub use logging::{LogControl, LogFormat, LogTimestamps};
pub use signal::shutdown_signal;
