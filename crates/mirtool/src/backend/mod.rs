//! `mirtool backend`: the servers the benchmarks put behind a proxy.
//!
//! - `echo` answers every client message on its own connection: the backend
//!   behind HAProxy and the no-proxy ceiling ("direct").
//! - `gate-echo` is LoginSrv-shaped: it accepts the gate's link and answers
//!   every `%A<id>/<msg>$` with `%<id>/<msg>$`, so the gate's whole forwarding
//!   path is exercised without any login logic.
//! - `soak` is `gate-echo` that also kicks, blocks and drops the link on a
//!   schedule and checks every open, data and close frame against a ledger.
//!
//! Both batch: every read is answered with at most one write, so the
//! comparison measures the proxy in front, not the backend.

mod echo;
mod gate_echo;
mod soak;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use mir2_proto::Dialect;
use tokio::net::{TcpListener, TcpSocket};

pub use gate_echo::LinkStats;

/// Which backend to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Answers `%A`/`%D` frames on a gate link (a LoginSrv-shaped echo).
    GateEcho,
    /// Answers `#…!` messages on each client connection.
    Echo,
    /// `gate-echo` plus scheduled kicks, blocks and link drops, with a session ledger.
    Soak,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Which backend to run.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Address to listen on; `127.0.0.1:0` picks a free port (printed as `listening on ADDR`).
    #[arg(long, default_value = "127.0.0.1:5500")]
    listen: SocketAddr,
    /// Link dialect for `gate-echo` (wemade, delphi, happym2, ldx): the frames it
    /// parses and writes.
    #[arg(long, default_value = "wemade")]
    dialect: Dialect,
    /// Runtime worker threads; 1 runs a current-thread runtime (the default: the
    /// backend shares the machine with the system under test).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// `gate-echo`: write the link counters as JSON to this file every 500 ms and on exit.
    #[arg(long)]
    stats_file: Option<PathBuf>,
    /// Largest frame/message accepted, bytes; a peer exceeding it is disconnected.
    #[arg(long, default_value_t = 64 * 1024)]
    max_frame_bytes: usize,
    /// `soak`: seconds between kick orders (0 = none).
    #[arg(long, default_value_t = 0.0)]
    kick_every: f64,
    /// `soak`: seconds between temporary block orders (0 = none).
    #[arg(long, default_value_t = 0.0)]
    block_every: f64,
    /// `soak`: seconds between closing the gate's link (0 = never).
    #[arg(long, default_value_t = 0.0)]
    link_kill_every: f64,
}

/// A period option: 0 = never.
fn period(name: &str, secs: f64) -> anyhow::Result<Option<std::time::Duration>> {
    let d = crate::bench::secs(name, secs)?;
    Ok((!d.is_zero()).then_some(d))
}

pub fn run(args: Args) -> ExitCode {
    crate::bench::raise_nofile_limit();
    let runtime = match crate::bench::build_runtime(args.threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mirtool backend: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mirtool backend: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let listener = listen(args.listen, LISTEN_BACKLOG)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let local = listener.local_addr()?;
    // Scripts and tests parse this line to learn an ephemeral port.
    println!("listening on {local}");
    let _ = std::io::stdout().flush();
    match args.mode {
        Mode::Echo => {
            tokio::select! {
                r = echo::serve(listener, args.max_frame_bytes) => r?,
                () = bootstrap::shutdown_signal() => {}
            }
        }
        Mode::GateEcho => {
            let stats = LinkStats::default();
            let result = tokio::select! {
                r = gate_echo::serve(listener, args.dialect, args.max_frame_bytes, stats.clone(), args.stats_file.clone()) => r,
                () = bootstrap::shutdown_signal() => Ok(()),
            };
            // The storm check reads these: every open and close frame the gate sent.
            let json = stats.to_json();
            println!("{json}");
            let _ = std::io::stdout().flush();
            if let Some(path) = &args.stats_file {
                gate_echo::write_stats_file(path, &json);
            }
            result?;
        }
        Mode::Soak => {
            let plan = soak::Disruptions {
                kick_every: period("--kick-every", args.kick_every)?,
                block_every: period("--block-every", args.block_every)?,
                link_kill_every: period("--link-kill-every", args.link_kill_every)?,
            };
            let stats = soak::SoakStats::default();
            let result = tokio::select! {
                r = soak::serve(listener, args.dialect, args.max_frame_bytes, plan, stats.clone(), args.stats_file.clone()) => r,
                () = bootstrap::shutdown_signal() => Ok(()),
            };
            let json = stats.to_json();
            println!("{json}");
            let _ = std::io::stdout().flush();
            if let Some(path) = &args.stats_file {
                gate_echo::write_stats_file(path, &json);
            }
            result?;
        }
    }
    Ok(())
}

/// Accept queue length: connection storms and idle ramps open hundreds of
/// connections at once; a short queue turns them into 1 s SYN retransmits.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}
