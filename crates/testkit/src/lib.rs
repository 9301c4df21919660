//! What the workspace's tests share: a scripted LoginSrv ([`srv`]) and a
//! scripted gate ([`gate`]) speaking the `%…$` link over real sockets, an echoing
//! LoginSrv that tallies open and close frames per link ([`echo`]),
//! throwaway databases ([`db`]),
//! client-side socket checks ([`net`]), spawned binaries and their log lines
//! ([`process`]), an HTTP/1.1 client for the consoles ([`http`]), and one timeout policy ([`STEP`], [`eventually`]).
//!
//! Test code: a broken expectation panics with what was expected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod db;
pub mod echo;
pub mod gate;
pub mod http;
pub mod net;
pub mod process;
pub mod srv;

use std::time::Duration;

/// How long any single expected event (a connect, a reply, a frame, a log
/// line, a condition polled by [`eventually`]) may take before the test fails.
/// Generous: a slow shared machine must not fail a correct test, and a
/// correct test never waits for it.
pub const STEP: Duration = Duration::from_secs(10);

/// How often [`eventually`] polls.
const POLL: Duration = Duration::from_millis(5);

/// Wait until `cond` holds, polling; panics naming `what` after [`STEP`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + STEP;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}
