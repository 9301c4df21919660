//! `relay`: N connections, each keeping D checked login-sized messages in flight.
//!
//! Closed loop by default (a reply releases the next message). With `--rate`
//! the load is open loop: each client sends on its own schedule (total R/s,
//! spread evenly), still capped at D in flight; a message that could not go
//! out on time because the cap was reached is timed from when it was due, so
//! a stalled proxy cannot hide its stall (no coordinated omission).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mir2_proto::ClientFramer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::msg::{MessageFactory, Verdict};
use super::report::{Latency, Report};
use super::shard::{run_shards, ShardCtx, ShardStats};
use super::{connect_all, secs, Common};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 100)]
    pub clients: u64,
    /// Measured window, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Messages each client keeps in flight.
    #[arg(long, default_value_t = 1)]
    pub depth: usize,
    /// Raw body bytes per message before 6-bit encoding (30 → 40 chars, login-sized).
    #[arg(long, default_value_t = 30)]
    pub body_bytes: usize,
    /// Total offered messages per second (open loop); absent = as fast as replies come back.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds to wait for in-flight replies after the window before counting them lost.
    #[arg(long, default_value_t = 3.0)]
    pub drain: f64,
}

/// Read buffer per client; replies are small, many can arrive in one read.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// Everything a client task needs that is the same for every client.
struct Plan {
    /// Total clients (spreads the open-loop schedules).
    clients: u64,
    /// Messages each client keeps in flight at most.
    depth: usize,
    /// Raw body bytes per message.
    body_bytes: usize,
    /// Per-client gap between messages in open-loop mode.
    interval: Option<Duration>,
    /// Start of the measured window (after every connect).
    start: Instant,
    /// End of the window: no message is sent after it.
    end: Instant,
    /// Replies still missing at this point are counted lost.
    drain_end: Instant,
}

pub fn run(args: Args) -> anyhow::Result<Report> {
    anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    anyhow::ensure!(args.depth > 0, "--depth must be at least 1");
    anyhow::ensure!(
        secs("--duration", args.duration)? > Duration::ZERO,
        "--duration must be positive"
    );
    secs("--drain", args.drain)?;
    secs("--connect-timeout", args.common.connect_timeout)?;
    anyhow::ensure!(
        (1..=8192).contains(&args.body_bytes),
        "--body-bytes must be 1..=8192"
    );
    let interval = match args.rate {
        Some(r) if r > 0.0 && r.is_finite() => {
            Some(secs("--rate (clients / rate)", args.clients as f64 / r)?)
        }
        Some(_) => anyhow::bail!("--rate must be positive"),
        None => None,
    };
    let a = args.clone();
    let stats = run_shards(args.common.threads, 0, "replies", move |ctx| {
        shard(ctx, a.clone(), interval)
    })?;
    Ok(report(&args, &stats))
}

async fn shard(ctx: ShardCtx, args: Args, interval: Option<Duration>) {
    let ids: Vec<u32> = ctx.client_ids(args.clients).collect();
    let timeout = Duration::from_secs_f64(args.common.connect_timeout);
    let streams = connect_all(
        args.common.target,
        &ids,
        &ctx,
        None,
        timeout,
        args.common.proxy,
    )
    .await;
    let start = ctx.sync_start();
    let end = start + Duration::from_secs_f64(args.duration);
    let plan = Rc::new(Plan {
        clients: args.clients,
        depth: args.depth,
        body_bytes: args.body_bytes,
        interval,
        start,
        end,
        drain_end: end + Duration::from_secs_f64(args.drain),
    });
    let mut tasks = Vec::with_capacity(streams.len());
    for (id, stream, _) in streams {
        let plan = plan.clone();
        let ctx_stats = ctx.stats.clone();
        let shared = ctx.shared.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let mut client = Client::new(id, &plan);
            client
                .run(stream, &plan, &ctx_stats, &shared.progress)
                .await;
            ctx_stats.borrow_mut().absorb(&client.counts);
        }));
    }
    for t in tasks {
        if t.await.is_err() {
            ctx.stats.borrow_mut().errors += 1;
        }
    }
}

/// Counters a client keeps locally; folded into the shard at the end.
#[derive(Default)]
struct Counts {
    /// Replies verified.
    messages: u64,
    /// Replies verified before the window closed.
    in_window: u64,
    /// Messages never answered.
    lost: u64,
    /// Replies that came after a later one.
    reordered: u64,
    /// Replies whose bytes were not what was sent.
    corrupted: u64,
    /// Connection failures.
    errors: u64,
    /// Latencies in µs, buffered so the shard histogram is borrowed once per read.
    pending: Vec<u64>,
}

impl ShardStats {
    fn absorb(&mut self, c: &Counts) {
        self.messages += c.messages;
        self.in_window += c.in_window;
        self.lost += c.lost;
        self.reordered += c.reordered;
        self.corrupted += c.corrupted;
        self.errors += c.errors;
    }
}

struct Client {
    /// Client number: part of every message, so replies prove which connection they belong to.
    id: u32,
    /// Builds and checks this client's messages without allocating.
    factory: MessageFactory,
    /// Sequence number and latency origin of every message not yet answered, oldest first.
    in_flight: VecDeque<(u32, Instant)>,
    /// Sequence number of the next message sent.
    next_seq: u32,
    /// Open loop: when the next message is due.
    next_due: Instant,
    /// Messages queued by one refill, written with one `write`.
    wbuf: BytesMut,
    /// This client's outcome so far.
    counts: Counts,
}

impl Client {
    fn new(id: u32, plan: &Plan) -> Self {
        let factory = MessageFactory::new(plan.body_bytes);
        // Spread the clients' schedules over one interval so the offered load is smooth.
        let offset = plan.interval.map_or(Duration::ZERO, |iv| {
            iv.mul_f64(f64::from(id) / plan.clients as f64)
        });
        Self {
            id,
            in_flight: VecDeque::with_capacity(plan.depth),
            next_seq: 0,
            next_due: plan.start + offset,
            wbuf: BytesMut::with_capacity(plan.depth * factory.wire_len()),
            factory,
            counts: Counts {
                pending: Vec::with_capacity(plan.depth.max(64)),
                ..Counts::default()
            },
        }
    }

    /// Queues every message that may go now. `on_schedule`: the caller woke at
    /// the due time, so the actual send time is the honest origin; otherwise a
    /// late message is timed from when it was due.
    fn refill(&mut self, plan: &Plan, now: Instant, on_schedule: bool) {
        match plan.interval {
            None => {
                while self.in_flight.len() < plan.depth {
                    self.push(now);
                }
            }
            Some(iv) => {
                while self.in_flight.len() < plan.depth
                    && self.next_due <= now
                    && self.next_due < plan.end
                {
                    let origin = if on_schedule { now } else { self.next_due };
                    self.push(origin);
                    self.next_due += iv;
                }
            }
        }
    }

    fn push(&mut self, origin: Instant) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.factory.write(self.id, seq, &mut self.wbuf);
        self.in_flight.push_back((seq, origin));
    }

    /// Accounts one reply: matched, skipped-over (lost), late (reordered) or corrupted.
    fn on_reply(&mut self, frame: &[u8], now: Instant, plan: &Plan) {
        match self.factory.verify(self.id, frame) {
            Verdict::Seq(seq) => {
                // In-flight seqs are consecutive (sent in order, answered from the front).
                let awaited = self.in_flight.front().is_some_and(|&(front, _)| {
                    (seq.wrapping_sub(front) as usize) < self.in_flight.len()
                });
                if !awaited {
                    // Not awaited: it came after a later one (already counted lost) or twice.
                    self.counts.reordered += 1;
                    return;
                }
                while let Some((s, origin)) = self.in_flight.pop_front() {
                    if s == seq {
                        self.counts
                            .pending
                            .push(now.saturating_duration_since(origin).as_micros() as u64);
                        self.counts.messages += 1;
                        if now <= plan.end {
                            self.counts.in_window += 1;
                        }
                        break;
                    }
                    // Skipped over: TCP kept order, so the proxy dropped it.
                    self.counts.lost += 1;
                }
            }
            Verdict::Corrupted => {
                // It took the place of the oldest message; don't count that one lost too.
                self.counts.corrupted += 1;
                self.in_flight.pop_front();
            }
        }
    }

    fn wake_at(&self, plan: &Plan, stopping: bool) -> Instant {
        if stopping {
            plan.drain_end
        } else if plan.interval.is_some() && self.in_flight.len() < plan.depth {
            self.next_due.min(plan.end)
        } else {
            plan.end
        }
    }

    async fn run(
        &mut self,
        mut stream: TcpStream,
        plan: &Plan,
        shard: &RefCell<ShardStats>,
        progress: &AtomicU64,
    ) {
        let mut framer = ClientFramer::new(self.factory.wire_len() + 64);
        let mut rbuf = BytesMut::with_capacity(READ_BUFFER_BYTES);
        let mut stopping = false;
        self.refill(plan, Instant::now(), true);
        if self.flush(&mut stream).await.is_err() {
            self.fail();
            return;
        }
        let mut wake = self.wake_at(plan, stopping);
        let sleep = tokio::time::sleep_until(wake.into());
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                biased;
                read = stream.read_buf(&mut rbuf) => {
                    match read {
                        Ok(0) | Err(_) => {
                            self.fail();
                            return;
                        }
                        Ok(_) => {}
                    }
                    let now = Instant::now();
                    loop {
                        match framer.decode(&mut rbuf) {
                            Ok(Some(frame)) => self.on_reply(&frame, now, plan),
                            Ok(None) => break,
                            Err(_) => {
                                // A byte no client message has: the stream is garbage from here.
                                self.counts.corrupted += 1;
                                self.fail();
                                return;
                            }
                        }
                    }
                    progress.fetch_add(self.counts.pending.len() as u64, Ordering::Relaxed);
                    {
                        let mut shard = shard.borrow_mut();
                        for us in self.counts.pending.drain(..) {
                            shard.hist.saturating_record(us.max(1));
                        }
                    }
                    if !stopping {
                        self.refill(plan, now, false);
                    }
                    if self.flush(&mut stream).await.is_err() {
                        self.fail();
                        return;
                    }
                    if stopping && self.in_flight.is_empty() {
                        return;
                    }
                }
                () = &mut sleep => {
                    let now = Instant::now();
                    if stopping {
                        // Drain deadline: whatever is still out never came back.
                        self.counts.lost += self.in_flight.len() as u64;
                        self.in_flight.clear();
                        return;
                    }
                    if now >= plan.end {
                        stopping = true;
                        if self.in_flight.is_empty() {
                            return;
                        }
                    } else {
                        self.refill(plan, now, true);
                        if self.flush(&mut stream).await.is_err() {
                            self.fail();
                            return;
                        }
                    }
                }
            }
            let next = self.wake_at(plan, stopping);
            if next != wake {
                wake = next;
                sleep.as_mut().reset(wake.into());
            }
        }
    }

    async fn flush(&mut self, stream: &mut TcpStream) -> std::io::Result<()> {
        if !self.wbuf.is_empty() {
            stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// The connection died: everything in flight is lost.
    fn fail(&mut self) {
        self.counts.errors += 1;
        self.counts.lost += self.in_flight.len() as u64;
        self.in_flight.clear();
    }
}

fn report(args: &Args, stats: &ShardStats) -> Report {
    Report {
        scenario: "relay".into(),
        target_label: args.common.label.clone(),
        target: args.common.target.to_string(),
        clients: args.clients,
        duration_s: args.duration,
        messages: stats.messages,
        msgs_per_sec: stats.in_window as f64 / args.duration,
        connections: stats.connections,
        conns_per_sec: 0.0,
        latency_us: Latency::from_histogram(&stats.hist),
        lost: stats.lost,
        reordered: stats.reordered,
        corrupted: stats.corrupted,
        errors: stats.errors,
        depth: args.depth as u64,
        rate: args.rate,
        body_bytes: args.body_bytes as u64,
        message_wire_bytes: MessageFactory::new(args.body_bytes).wire_len() as u64,
        threads: args.common.threads as u64,
        held: None,
        ..Report::default()
    }
}
