//! `idle`: open N connections that send nothing, hold them, count survivors.
//!
//! Connections are spread over the source addresses 127.0.0.2…254 (each has
//! its own ephemeral port range). One process holds at most its fd limit
//! (20,000 here), so `--procs P` re-executes `mirtool bench idle` P times with
//! N/P clients each and sums what they report.
//!
//! Once every connection is up, one line `idle: holding <n> connections` goes
//! to stderr: `bench/compare` measures the target's memory at that moment.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use super::report::{Latency, Report};
use super::shard::{run_shards, ShardCtx};
use super::{connect_all, secs, Common};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Idle connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    pub clients: u64,
    /// Seconds to hold them once all are connected.
    #[arg(long, default_value_t = 10.0)]
    pub hold: f64,
    /// Client processes to spread the connections over (each below its fd limit).
    #[arg(long, default_value_t = 1)]
    pub procs: u64,
    /// First source address index (set by the parent for its children).
    #[arg(long, default_value_t = 0, hide = true)]
    pub source_offset: u64,
}

/// The marker line scripts wait for.
const HOLDING: &str = "idle: holding ";

pub fn run(args: Args) -> anyhow::Result<Report> {
    let hold = secs("--hold", args.hold)?;
    let timeout = secs("--connect-timeout", args.common.connect_timeout)?;
    anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    anyhow::ensure!((1..=64).contains(&args.procs), "--procs must be 1..=64");
    if args.procs > 1 {
        return run_children(&args);
    }
    let began = Instant::now();
    let a = args.clone();
    let stats = run_shards(args.common.threads, args.clients, "connected", move |ctx| {
        shard(ctx, a.clone(), hold, timeout)
    })?;
    let ramp = began.elapsed().saturating_sub(hold).as_secs_f64().max(1e-6);
    Ok(Report {
        scenario: "idle".into(),
        target_label: args.common.label.clone(),
        target: args.common.target.to_string(),
        clients: args.clients,
        duration_s: args.hold,
        connections: stats.connections,
        conns_per_sec: stats.connections as f64 / ramp,
        latency_us: Latency::from_histogram(&stats.hist),
        errors: stats.errors,
        threads: args.common.threads as u64,
        held: Some(stats.held),
        ..Report::default()
    })
}

async fn shard(ctx: ShardCtx, args: Args, hold: Duration, timeout: Duration) {
    let ids: Vec<u32> = ctx.client_ids(args.clients).collect();
    let streams = connect_all(
        args.common.target,
        &ids,
        &ctx,
        Some(args.source_offset),
        timeout,
        args.common.proxy,
    )
    .await;
    {
        let mut stats = ctx.stats.borrow_mut();
        for (_, _, took) in &streams {
            stats.record(*took);
        }
    }
    let start = ctx.sync_start();
    if ctx.index == 0 {
        eprintln!(
            "{HOLDING}{} connections",
            ctx.shared.progress.load(Ordering::Relaxed)
        );
    }
    let hold_end = tokio::time::Instant::from_std(start + hold);
    let mut tasks = Vec::with_capacity(streams.len());
    for (_, mut stream, _) in streams {
        tasks.push(tokio::task::spawn_local(async move {
            let mut byte = [0u8; 1];
            tokio::select! {
                // Anything readable (data, EOF, reset) means the target let go of an idle client.
                _ = stream.read(&mut byte) => false,
                () = tokio::time::sleep_until(hold_end) => true,
            }
        }));
    }
    for t in tasks {
        let survived = t.await.unwrap_or(false);
        let mut stats = ctx.stats.borrow_mut();
        if survived {
            stats.held += 1;
        } else {
            stats.errors += 1;
        }
    }
}

/// Parent of `--procs` children: starts them, announces when all hold, sums their reports.
fn run_children(args: &Args) -> anyhow::Result<Report> {
    let exe = std::env::current_exe()?;
    let procs = args.procs;
    let (tx, rx) = mpsc::channel::<u64>();
    let mut children = Vec::new();
    for i in 0..procs {
        // The first children take the remainder so the total is exact.
        let share = args.clients / procs + u64::from(i < args.clients % procs);
        let mut child = Command::new(&exe)
            .args(["bench", "idle", "--json"])
            .args(["--target", &args.common.target.to_string()])
            .args(["--label", &args.common.label])
            .args(["--clients", &share.to_string()])
            .args(["--hold", &args.hold.to_string()])
            .args(["--threads", &args.common.threads.to_string()])
            .args([
                "--connect-timeout",
                &args.common.connect_timeout.to_string(),
            ])
            .args(args.common.proxy.to_args())
            .args([
                "--source-offset",
                &(args.source_offset + i * 61).to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(err) = child.stderr.take() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    match line
                        .strip_prefix(HOLDING)
                        .and_then(|rest| rest.split_whitespace().next())
                    {
                        Some(n) => {
                            let _ = tx.send(n.parse().unwrap_or(0));
                        }
                        None => eprintln!("[idle child] {line}"),
                    }
                }
            });
        }
        children.push(child);
    }
    drop(tx);
    // Announce once every child holds (or has died: its channel end is then closed).
    let mut holding = 0u64;
    let mut reported = 0u64;
    while reported < procs {
        match rx.recv() {
            Ok(n) => {
                holding += n;
                reported += 1;
            }
            Err(_) => break,
        }
    }
    eprintln!("{HOLDING}{holding} connections ({reported} of {procs} processes)");
    let _ = std::io::stderr().flush();

    let mut total = Report {
        scenario: "idle".into(),
        target_label: args.common.label.clone(),
        target: args.common.target.to_string(),
        clients: args.clients,
        duration_s: args.hold,
        threads: args.common.threads as u64,
        held: Some(0),
        ..Report::default()
    };
    for child in children {
        let out = child.wait_with_output()?;
        let parsed = serde_json::from_slice::<Report>(&out.stdout).ok();
        let Some(r) = parsed else {
            total.errors += 1; // a child that did not report: count it, don't guess its numbers
            continue;
        };
        total.connections += r.connections;
        total.conns_per_sec += r.conns_per_sec;
        total.errors += r.errors;
        total.held = Some(total.held.unwrap_or(0) + r.held.unwrap_or(0));
        // Percentiles do not add up across processes: keep the worst child's (an upper bound).
        let (t, c) = (&mut total.latency_us, &r.latency_us);
        t.p50 = t.p50.max(c.p50);
        t.p90 = t.p90.max(c.p90);
        t.p99 = t.p99.max(c.p99);
        t.p999 = t.p999.max(c.p999);
        t.max = t.max.max(c.max);
        t.mean = t.mean.max(c.mean);
    }
    Ok(total)
}
