//! `mirtool bench`: load generator scenarios and their reports.
//!
//! - `relay`: throughput and latency of checked messages through a proxy.
//! - `connect`: a connection storm (connect, one message, reply, close).
//! - `idle`: how many idle connections the target holds (and what they cost it).
//! - `login`: whole register/login/select-server flows through gate + LoginSrv.
//! - `attack`: players logging in while many sources flood the gate.
//! - `soak`: a steady population for a long time, with link drops, kicks and blocks,
//!   sampled for resource growth.
//! - `plot`, `table`: turn the JSON results of `bench/compare` into an SVG and Markdown.

mod attack;
mod connect;
mod idle;
mod login;
mod msg;
mod plot;
mod relay;
mod report;
mod shard;
mod soak;
mod table;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;

use crate::proxy::ProxyArgs;
use shard::ShardCtx;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(clap::Subcommand, Debug)]
enum Scenario {
    /// N connections keep D checked messages in flight; reports msgs/s and latency.
    Relay(relay::Args),
    /// Connection storm: connect, send one message, await the reply, close.
    Connect(connect::Args),
    /// Open and hold N idle connections from many source addresses.
    Idle(idle::Args),
    /// Full register/login/select-server flows through gate + LoginSrv.
    Login(login::Args),
    /// Players keep logging in while up to 200 loopback sources attack the gate.
    Attack(attack::Args),
    /// Hours of idle, relaying and short-lived clients with link drops, kicks and
    /// blocks; passes when the gate's RSS and descriptors stay flat and nothing is lost.
    Soak(soak::Args),
    /// Draw the latency percentiles of a results file as an SVG.
    Plot(plot::Args),
    /// Print a results file of `bench/compare` as a Markdown table with ratios.
    Table(table::Args),
}

/// Options every load scenario shares.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Address of the system under test.
    #[arg(long)]
    pub target: SocketAddr,
    /// Name of the target in the report (`target_label`).
    #[arg(long, default_value = "target")]
    pub label: String,
    /// Print one JSON object on stdout instead of the human summary.
    #[arg(long)]
    pub json: bool,
    /// Load generator threads, each a current-thread runtime.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Seconds allowed for one TCP connect.
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// A PROXY protocol header at the start of every connection.
    #[command(flatten)]
    pub proxy: ProxyArgs,
}

pub fn run(args: Args) -> ExitCode {
    let (report, json) = match args.scenario {
        Scenario::Plot(a) => return finish(plot::run(a)),
        Scenario::Table(a) => return finish(table::run(a)),
        Scenario::Soak(a) => return soak::run(a),
        Scenario::Attack(a) => {
            raise_nofile_limit();
            return attack::run(a);
        }
        Scenario::Relay(a) => {
            raise_nofile_limit();
            let json = a.common.json;
            (relay::run(a), json)
        }
        Scenario::Connect(a) => {
            raise_nofile_limit();
            let json = a.common.json;
            (connect::run(a), json)
        }
        Scenario::Idle(a) => {
            raise_nofile_limit();
            let json = a.common.json;
            (idle::run(a), json)
        }
        Scenario::Login(a) => {
            raise_nofile_limit();
            let json = a.common.json;
            (login::run(a), json)
        }
    };
    match report {
        Ok(report) => {
            report.emit(json);
            if report.passed() && report.errors == 0 {
                ExitCode::SUCCESS
            } else {
                if !json {
                    eprintln!("bench: FAILED (lost, reordered, corrupted or errors above zero)");
                }
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("mirtool bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn finish(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mirtool bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft open-file limit to the hard one: thousands of sockets per process.
pub fn raise_nofile_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("cannot raise the open-file limit: {e}");
    }
}

/// 1 thread → a current-thread runtime (no work stealing); more → multi-thread.
pub fn build_runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

/// Longest seconds option (a day): beyond any run, and small enough that no deadline
/// computed from it can overflow an `Instant`.
const MAX_SECS: f64 = 86_400.0;

/// A seconds option as a Duration; rejects negative, NaN and values over `MAX_SECS`
/// instead of panicking or waiting forever.
pub fn secs(name: &str, v: f64) -> anyhow::Result<Duration> {
    let out_of_range = || anyhow::anyhow!("{name} must be 0..={MAX_SECS} seconds, got {v}");
    if !(0.0..=MAX_SECS).contains(&v) {
        return Err(out_of_range());
    }
    Duration::try_from_secs_f64(v).map_err(|_| out_of_range())
}

/// Loopback source addresses used to spread connections: 127.0.0.2 … 127.0.0.254.
const SPREAD_SOURCES: u32 = 253;

/// The `n`-th spread source address.
fn spread_source(n: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        0,
        2 + (n % u64::from(SPREAD_SOURCES)) as u8,
    ))
}

/// One TCP connect with TCP_NODELAY, optionally from a given source address, then the
/// PROXY header if one was asked for.
async fn connect_one(
    target: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
    proxy: ProxyArgs,
) -> std::io::Result<TcpStream> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        // Bind before connect: each source address has its own ephemeral port range.
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = tokio::time::timeout(timeout, socket.connect(target))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    let mut stream = stream;
    proxy.send_header(&mut stream).await?;
    Ok(stream)
}

/// At most this many connects in flight per shard: a burst larger than the
/// target's accept backlog only turns into SYN retransmits.
const CONNECTS_IN_FLIGHT: usize = 256;

/// Connects every client id of this shard; failures are counted as errors.
/// Returns the connected streams with their ids and how long each connect took.
async fn connect_all(
    target: SocketAddr,
    ids: &[u32],
    ctx: &ShardCtx,
    source_offset: Option<u64>,
    timeout: Duration,
    proxy: ProxyArgs,
) -> Vec<(u32, TcpStream, Duration)> {
    let permits = Rc::new(Semaphore::new(CONNECTS_IN_FLIGHT));
    let mut tasks = Vec::with_capacity(ids.len());
    for &id in ids {
        let permits = permits.clone();
        let source = source_offset.map(|off| spread_source(off + u64::from(id)));
        tasks.push(tokio::task::spawn_local(async move {
            let _permit = permits.acquire().await;
            let began = Instant::now();
            let r = connect_one(target, source, timeout, proxy).await;
            (id, r, began.elapsed())
        }));
    }
    let mut streams = Vec::with_capacity(ids.len());
    let mut first_error: Option<std::io::Error> = None;
    for t in tasks {
        let outcome = t.await;
        let mut stats = ctx.stats.borrow_mut();
        match outcome {
            Ok((id, Ok(stream), took)) => {
                stats.connections += 1;
                ctx.shared
                    .progress
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                streams.push((id, stream, took));
            }
            Ok((_, Err(e), _)) => {
                stats.errors += 1;
                first_error.get_or_insert(e);
            }
            Err(_) => stats.errors += 1,
        }
    }
    if let Some(e) = first_error {
        eprintln!("bench: some connects to {target} failed, first: {e}");
    }
    streams
}
