//! Exit codes, and the runtime wrapper that produces them.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | clean exit (signal, or `--print-config`) |
//! | 1 | runtime failure after the config was accepted: a port that cannot be bound, a database that cannot be opened, the runtime itself |
//! | 2 | usage or configuration error: a bad flag, file, key or value (the message names it) |

use std::fmt;
use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

/// A failure after start-up began (bind, database, runtime).
pub const EXIT_RUNTIME: u8 = 1;
/// A usage or configuration error.
pub const EXIT_CONFIG: u8 = 2;

/// How long, after `main` returns, blocking tasks still running (a block
/// list read stuck on a dead mount) may delay the exit.
const BLOCKING_GRACE: Duration = Duration::from_secs(1);

/// Build the multi-threaded runtime, run `main` on it and map the outcome to
/// an exit code, logging a failure as `<name> failed: <cause chain>`.
pub fn run_main<F, E>(name: &str, main: F) -> ExitCode
where
    F: Future<Output = Result<(), E>>,
    E: fmt::Display,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let result = runtime.block_on(main);
    runtime.shutdown_timeout(BLOCKING_GRACE);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{name} failed: {e:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
