//! `connect`: a connection storm. Each cycle connects, sends one checked
//! message, waits for its reply and closes; latency is connect-to-reply.
//!
//! `--clients N` runs N back-to-back loops (closed loop); `--rate R` starts R
//! cycles per second whatever happens to earlier ones (open loop), capped at
//! `--max-in-flight` concurrent cycles per shard (excess attempts are errors).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mir2_proto::ClientFramer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::msg::{MessageFactory, Verdict};
use super::report::{Latency, Report};
use super::shard::{run_shards, ShardCtx, ShardStats};
use super::{connect_one, secs, Common};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Connection attempts started per second (open loop); without it, `--clients` loops.
    #[arg(long, conflicts_with = "clients")]
    pub rate: Option<f64>,
    /// Concurrent connect-send-reply-close loops (closed loop).
    #[arg(long, default_value_t = 10)]
    pub clients: u64,
    /// Window in which cycles are started, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Raw body bytes of the one message per connection.
    #[arg(long, default_value_t = 30)]
    pub body_bytes: usize,
    /// Open loop: most cycles in progress at once per load thread.
    #[arg(long, default_value_t = 4096)]
    pub max_in_flight: usize,
}

/// How one cycle ended.
enum Outcome {
    Answered(Duration),
    /// The reply came back different from what was sent.
    Corrupted,
    /// Connect failed, the peer closed before replying, or the cycle timed out.
    Failed,
}

pub fn run(args: Args) -> anyhow::Result<Report> {
    anyhow::ensure!(
        (1..=8192).contains(&args.body_bytes),
        "--body-bytes must be 1..=8192"
    );
    let duration = secs("--duration", args.duration)?;
    let timeout = secs("--connect-timeout", args.common.connect_timeout)?;
    if let Some(r) = args.rate {
        anyhow::ensure!(r > 0.0 && r.is_finite(), "--rate must be positive");
    } else {
        anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    }
    let a = args.clone();
    let stats = run_shards(args.common.threads, 0, "connections", move |ctx| {
        shard(ctx, a.clone(), duration, timeout)
    })?;
    Ok(report(&args, &stats))
}

async fn shard(ctx: ShardCtx, args: Args, duration: Duration, timeout: Duration) {
    let start = ctx.sync_start();
    let end = start + duration;
    match args.rate {
        None => {
            let mut loops = Vec::new();
            for id in ctx.client_ids(args.clients) {
                let stats = ctx.stats.clone();
                let shared = ctx.shared.clone();
                let target = args.common.target;
                let proxy = args.common.proxy;
                let body_bytes = args.body_bytes;
                loops.push(tokio::task::spawn_local(async move {
                    let mut factory = MessageFactory::new(body_bytes);
                    let mut seq = 0u32;
                    while Instant::now() < end {
                        let outcome = cycle(target, proxy, id, seq, &mut factory, timeout).await;
                        account(&stats, outcome, end);
                        shared.progress.fetch_add(1, Ordering::Relaxed);
                        seq = seq.wrapping_add(1);
                    }
                }));
            }
            for l in loops {
                let _ = l.await;
            }
        }
        Some(rate) => {
            let shard_rate = rate / ctx.shards as f64;
            let in_flight = Rc::new(Cell::new(0usize));
            let mut started = 0u64;
            let mut attempts = Vec::new();
            // Timers tick at 1 ms at best: start however many cycles are due each tick.
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let now = Instant::now();
                let window = now.min(end).saturating_duration_since(start);
                let due = (window.as_secs_f64() * shard_rate) as u64;
                while started < due {
                    // Attempt ids are unique across shards: shard index + multiples of the shard count.
                    let id = (started * ctx.shards as u64 + ctx.index as u64) as u32;
                    started += 1;
                    if in_flight.get() >= args.max_in_flight {
                        ctx.stats.borrow_mut().errors += 1;
                        continue;
                    }
                    in_flight.set(in_flight.get() + 1);
                    let (stats, shared, in_flight) =
                        (ctx.stats.clone(), ctx.shared.clone(), in_flight.clone());
                    let target = args.common.target;
                    let proxy = args.common.proxy;
                    let body_bytes = args.body_bytes;
                    attempts.push(tokio::task::spawn_local(async move {
                        let mut factory = MessageFactory::new(body_bytes);
                        let outcome = cycle(target, proxy, id, 0, &mut factory, timeout).await;
                        account(&stats, outcome, end);
                        shared.progress.fetch_add(1, Ordering::Relaxed);
                        in_flight.set(in_flight.get().saturating_sub(1));
                    }));
                }
                // Reap finished handles now and then so the list stays small.
                if attempts.len() > 4096 {
                    attempts.retain(|h| !h.is_finished());
                }
                if now >= end {
                    break;
                }
            }
            for a in attempts {
                let _ = a.await;
            }
        }
    }
}

fn account(stats: &RefCell<ShardStats>, outcome: Outcome, end: Instant) {
    let mut s = stats.borrow_mut();
    match outcome {
        Outcome::Answered(took) => {
            s.record(took);
            s.messages += 1;
            s.connections += 1;
            if Instant::now() <= end {
                s.in_window += 1;
            }
        }
        Outcome::Corrupted => {
            s.corrupted += 1;
            s.connections += 1;
        }
        Outcome::Failed => {
            s.errors += 1;
        }
    }
}

/// connect → one message → its reply → close.
async fn cycle(
    target: std::net::SocketAddr,
    proxy: crate::proxy::ProxyArgs,
    id: u32,
    seq: u32,
    factory: &mut MessageFactory,
    timeout: Duration,
) -> Outcome {
    let began = Instant::now();
    let run = async {
        let mut stream: TcpStream = connect_one(target, None, timeout, proxy).await.ok()?;
        let mut wbuf = BytesMut::with_capacity(factory.wire_len());
        factory.write(id, seq, &mut wbuf);
        stream.write_all(&wbuf).await.ok()?;
        let mut framer = ClientFramer::new(factory.wire_len() + 64);
        let mut rbuf = BytesMut::with_capacity(factory.wire_len() * 2);
        loop {
            if stream.read_buf(&mut rbuf).await.ok()? == 0 {
                return None;
            }
            match framer.decode(&mut rbuf) {
                Ok(Some(frame)) => {
                    let ok = factory.verify(id, &frame) == Verdict::Seq(seq);
                    return Some(if ok {
                        Outcome::Answered(began.elapsed())
                    } else {
                        Outcome::Corrupted
                    });
                }
                Ok(None) => continue,
                Err(_) => return Some(Outcome::Corrupted),
            }
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Some(outcome)) => outcome,
        Ok(None) | Err(_) => Outcome::Failed,
    }
}

fn report(args: &Args, stats: &ShardStats) -> Report {
    Report {
        scenario: "connect".into(),
        target_label: args.common.label.clone(),
        target: args.common.target.to_string(),
        clients: if args.rate.is_some() { 0 } else { args.clients },
        duration_s: args.duration,
        messages: stats.messages,
        msgs_per_sec: stats.in_window as f64 / args.duration,
        connections: stats.connections,
        conns_per_sec: stats.in_window as f64 / args.duration,
        latency_us: Latency::from_histogram(&stats.hist),
        lost: 0,
        reordered: 0,
        corrupted: stats.corrupted,
        errors: stats.errors,
        depth: 1,
        rate: args.rate,
        body_bytes: args.body_bytes as u64,
        message_wire_bytes: MessageFactory::new(args.body_bytes).wire_len() as u64,
        threads: args.common.threads as u64,
        held: None,
        ..Report::default()
    }
}
