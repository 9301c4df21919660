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

/// Build the runtime, run `main` on it and map the outcome to an exit code,
/// logging a failure as `<name> failed: <cause chain>`.
///
/// `threads` is the number of threads running tasks: 1 builds a current-thread
/// runtime (every task on the calling thread, so a wake-up never crosses threads);
/// 0 one worker per core; any other n a multi-threaded runtime of n workers.
/// Blocking work (`spawn_blocking`) has its own pool in every case.
pub fn run_main<F, E>(name: &str, threads: usize, main: F) -> ExitCode
where
    F: Future<Output = Result<(), E>>,
    E: fmt::Display,
{
    let mut builder = match threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    let runtime = match builder.enable_all().build() {
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
