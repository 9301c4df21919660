//! The soak's clients: idle ones that only hold a connection, relaying ones
//! that send one checked message at a time, and short-lived ones that
//! connect, send one message and leave. Whenever the gate closes a long-lived
//! client (link drop, kick, block) it reconnects after a short back-off, so
//! the population returns after every disruption.
//!
//! Accounting: every relayed message ends in exactly one of *answered* (the
//! right reply, once), *dropped* (its connection was closed by the gate before
//! the reply came: the gate forgets what it held for a closed client) or
//! *lost* (the connection stayed open and no reply came within
//! `REPLY_TIMEOUT`). A reply that is not the one awaited is *duplicate* (an
//! earlier sequence number) or *corrupted*.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mir2_proto::ClientFramer;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use super::super::msg::{MessageFactory, Verdict};
use super::super::{connect_one, spread_source};
use crate::proxy::ProxyArgs;

/// A reply not back after this long on an open connection is lost.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connects in flight at once: a reconnect wave of 10,000 clients must not
/// overrun the gate's accept backlog.
const CONNECTS_IN_FLIGHT: usize = 256;
/// First reconnect back-off; doubles per failure up to `BACKOFF_MAX`.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Raw body bytes of a relayed message (login-sized).
const BODY_BYTES: usize = 30;
/// Client ids: idle, relaying and short-lived clients never share one.
const RELAY_ID_BASE: u32 = 1 << 20;
const CHURN_ID_BASE: u32 = 1 << 24;
/// Short-lived clients in flight at most; beyond it a tick is skipped (and counted).
const CHURN_IN_FLIGHT: usize = 2_000;
/// Bytes of the relay read buffer.
const READ_BYTES: usize = 4096;

/// What the population does.
#[derive(Debug, Clone, Copy)]
pub struct Population {
    /// Clients that connect and never send.
    pub idle: u32,
    /// Clients that send one message every `relay_interval`, awaiting each reply.
    pub relay: u32,
    /// Gap between a relaying client's messages.
    pub relay_interval: Duration,
    /// Short-lived clients started per second.
    pub churn_per_sec: f64,
}

/// Counters of every client, read by the sampler.
#[derive(Default)]
pub struct LoadCounters {
    /// Idle clients connected now.
    pub idle_live: AtomicI64,
    /// Relaying clients connected now.
    pub relay_live: AtomicI64,
    /// Connections made (every kind).
    pub connects: AtomicU64,
    /// Connect attempts that failed.
    pub connect_errors: AtomicU64,
    /// Long-lived connections the gate closed.
    pub closed_by_gate: AtomicU64,
    /// Relayed messages sent.
    pub sent: AtomicU64,
    /// Right reply, once.
    pub answered: AtomicU64,
    /// In flight when the gate closed the connection.
    pub dropped: AtomicU64,
    /// No reply in `REPLY_TIMEOUT` on an open connection.
    pub lost: AtomicU64,
    /// A reply for an earlier message (a second answer).
    pub duplicates: AtomicU64,
    /// A reply that is no message of this client, or for a later one.
    pub corrupted: AtomicU64,
    /// Short-lived clients answered and closed.
    pub churn_ok: AtomicU64,
    /// Short-lived clients closed by the gate before their reply (link down, blocked).
    pub churn_refused: AtomicU64,
    /// Short-lived clients whose connect failed.
    pub churn_connect_errors: AtomicU64,
    /// Short-lived ticks skipped because `CHURN_IN_FLIGHT` were running.
    pub churn_skipped: AtomicU64,
    /// Largest reply latency seen, µs.
    pub max_latency_us: AtomicU64,
}

/// The counters as plain numbers.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct LoadSnapshot {
    pub idle_live: i64,
    pub relay_live: i64,
    pub connects: u64,
    pub connect_errors: u64,
    pub closed_by_gate: u64,
    pub sent: u64,
    pub answered: u64,
    pub dropped: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub corrupted: u64,
    pub churn_ok: u64,
    pub churn_refused: u64,
    pub churn_connect_errors: u64,
    pub churn_skipped: u64,
    pub max_latency_us: u64,
}

impl LoadCounters {
    pub fn snapshot(&self) -> LoadSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LoadSnapshot {
            idle_live: self.idle_live.load(Ordering::Relaxed),
            relay_live: self.relay_live.load(Ordering::Relaxed),
            connects: g(&self.connects),
            connect_errors: g(&self.connect_errors),
            closed_by_gate: g(&self.closed_by_gate),
            sent: g(&self.sent),
            answered: g(&self.answered),
            dropped: g(&self.dropped),
            lost: g(&self.lost),
            duplicates: g(&self.duplicates),
            corrupted: g(&self.corrupted),
            churn_ok: g(&self.churn_ok),
            churn_refused: g(&self.churn_refused),
            churn_connect_errors: g(&self.churn_connect_errors),
            churn_skipped: g(&self.churn_skipped),
            max_latency_us: g(&self.max_latency_us),
        }
    }
}

/// What every client task shares.
#[derive(Clone)]
pub struct Ctx {
    /// The gate.
    pub target: SocketAddr,
    /// Counters.
    pub counters: Arc<LoadCounters>,
    /// Bounds connects in flight.
    pub permits: Arc<Semaphore>,
    /// Turns true when the run ends: every client closes and stops.
    pub stop: watch::Receiver<bool>,
}

impl Ctx {
    pub fn new(target: SocketAddr, stop: watch::Receiver<bool>) -> Ctx {
        Ctx {
            target,
            counters: Arc::new(LoadCounters::default()),
            permits: Arc::new(Semaphore::new(CONNECTS_IN_FLIGHT)),
            stop,
        }
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    async fn connect(&self, id: u32) -> std::io::Result<TcpStream> {
        let _permit = self.permits.acquire().await;
        let r = connect_one(
            self.target,
            Some(spread_source(u64::from(id))),
            Duration::from_secs(10),
            ProxyArgs::default(),
        )
        .await;
        match &r {
            Ok(_) => self.counters.connects.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.counters.connect_errors.fetch_add(1, Ordering::Relaxed),
        };
        r
    }
}

/// Deterministic jitter in 0..1 for (id, attempt): clients reconnect spread out.
fn jitter(id: u32, attempt: u32) -> f64 {
    let mut z = (u64::from(id) << 32 | u64::from(attempt)).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Back-off before reconnect attempt `attempt` (0 = right after a close).
fn backoff(id: u32, attempt: u32) -> Duration {
    let base = BACKOFF_MIN
        .saturating_mul(1 << attempt.min(4))
        .min(BACKOFF_MAX);
    base.mul_f64(0.5 + jitter(id, attempt))
}

/// Sleeps `d`, or less if the run stops; true when it stopped.
async fn pause(ctx: &mut Ctx, d: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => ctx.stopped(),
        _ = ctx.stop.changed() => true,
    }
}

/// Starts every long-lived client and the short-lived stream; they run until `stop`.
pub fn start(ctx: &Ctx, pop: Population) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for n in 0..pop.idle {
        tasks.push(tokio::spawn(idle(ctx.clone(), n)));
    }
    for n in 0..pop.relay {
        tasks.push(tokio::spawn(relay(
            ctx.clone(),
            RELAY_ID_BASE + n,
            pop.relay_interval,
        )));
    }
    if pop.churn_per_sec > 0.0 {
        tasks.push(tokio::spawn(churn(ctx.clone(), pop.churn_per_sec)));
    }
    tasks
}

/// Holds one connection; reconnects when the gate closes it.
async fn idle(mut ctx: Ctx, id: u32) {
    let mut attempt = 0;
    // Spread the first wave over a second.
    if pause(
        &mut ctx,
        Duration::from_secs(1).mul_f64(jitter(id, u32::MAX)),
    )
    .await
    {
        return;
    }
    loop {
        let mut stream = match ctx.connect(id).await {
            Ok(s) => s,
            Err(_) => {
                attempt += 1;
                if pause(&mut ctx, backoff(id, attempt)).await {
                    return;
                }
                continue;
            }
        };
        let c = &ctx.counters;
        c.idle_live.fetch_add(1, Ordering::Relaxed);
        let mut byte = [0u8; 64];
        let stopped = tokio::select! {
            // Idle clients get nothing; any read result means the gate closed.
            _ = stream.read(&mut byte) => false,
            _ = ctx.stop.changed() => true,
        };
        c.idle_live.fetch_sub(1, Ordering::Relaxed);
        if stopped || ctx.stopped() {
            return;
        }
        c.closed_by_gate.fetch_add(1, Ordering::Relaxed);
        attempt = 0;
        if pause(&mut ctx, backoff(id, attempt)).await {
            return;
        }
    }
}

/// How one connection of a relaying client ended.
enum Ended {
    /// The run stopped.
    Stopped,
    /// The gate closed it (or a write failed).
    Closed,
    /// A reply went missing or was wrong: the connection is abandoned.
    Abandoned,
}

/// Sends a checked message every `interval`, one in flight; reconnects when closed.
async fn relay(mut ctx: Ctx, id: u32, interval: Duration) {
    let mut factory = MessageFactory::new(BODY_BYTES);
    let mut seq: u32 = 0;
    let mut attempt = 0;
    if pause(&mut ctx, interval.mul_f64(jitter(id, u32::MAX))).await {
        return;
    }
    loop {
        let stream = match ctx.connect(id).await {
            Ok(s) => s,
            Err(_) => {
                attempt += 1;
                if pause(&mut ctx, backoff(id, attempt)).await {
                    return;
                }
                continue;
            }
        };
        attempt = 0;
        ctx.counters.relay_live.fetch_add(1, Ordering::Relaxed);
        let ended = relay_connection(&mut ctx, stream, id, &mut seq, &mut factory, interval).await;
        ctx.counters.relay_live.fetch_sub(1, Ordering::Relaxed);
        match ended {
            Ended::Stopped => return,
            Ended::Closed => {
                ctx.counters.closed_by_gate.fetch_add(1, Ordering::Relaxed);
            }
            Ended::Abandoned => {}
        }
        if pause(&mut ctx, backoff(id, attempt)).await {
            return;
        }
    }
}

async fn relay_connection(
    ctx: &mut Ctx,
    mut stream: TcpStream,
    id: u32,
    seq: &mut u32,
    factory: &mut MessageFactory,
    interval: Duration,
) -> Ended {
    let c = Arc::clone(&ctx.counters);
    let mut framer = ClientFramer::new(READ_BYTES);
    let mut buf = BytesMut::with_capacity(READ_BYTES);
    let mut out = BytesMut::with_capacity(factory.wire_len());
    let mut next = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            _ = ctx.stop.changed() => return Ended::Stopped,
        }
        next += interval;
        *seq = seq.wrapping_add(1);
        out.clear();
        factory.write(id, *seq, &mut out);
        let sent_at = Instant::now();
        c.sent.fetch_add(1, Ordering::Relaxed);
        if stream.write_all(&out).await.is_err() {
            c.dropped.fetch_add(1, Ordering::Relaxed);
            return Ended::Closed;
        }
        let deadline = sent_at + REPLY_TIMEOUT;
        // Read until the awaited reply, a wrong one, a close or the deadline.
        loop {
            match framer.decode(&mut buf) {
                Ok(Some(frame)) => match factory.verify(id, &frame) {
                    Verdict::Seq(s) if s == *seq => {
                        c.answered.fetch_add(1, Ordering::Relaxed);
                        let us = u64::try_from(sent_at.elapsed().as_micros()).unwrap_or(u64::MAX);
                        c.max_latency_us.fetch_max(us, Ordering::Relaxed);
                        break;
                    }
                    Verdict::Seq(s) if s < *seq => {
                        c.duplicates.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    _ => {
                        c.corrupted.fetch_add(1, Ordering::Relaxed);
                        c.lost.fetch_add(1, Ordering::Relaxed);
                        return Ended::Abandoned;
                    }
                },
                Ok(None) => {}
                Err(_) => {
                    c.corrupted.fetch_add(1, Ordering::Relaxed);
                    c.lost.fetch_add(1, Ordering::Relaxed);
                    return Ended::Abandoned;
                }
            }
            if buf.capacity() - buf.len() < 512 {
                buf.reserve(READ_BYTES);
            }
            let read = tokio::select! {
                r = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)) => r,
                _ = ctx.stop.changed() => {
                    // Stopping is not the gate's doing: the message counts as dropped.
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                    return Ended::Stopped;
                }
            };
            match read {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => {
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                    return Ended::Closed;
                }
                Err(_) => {
                    c.lost.fetch_add(1, Ordering::Relaxed);
                    return Ended::Abandoned;
                }
            }
        }
    }
}

/// Starts `per_sec` short-lived clients per second until the run stops.
async fn churn(mut ctx: Ctx, per_sec: f64) {
    let gap = Duration::from_secs_f64(1.0 / per_sec);
    let in_flight = Arc::new(Semaphore::new(CHURN_IN_FLIGHT));
    let mut tick = tokio::time::interval(gap);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u32 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = ctx.stop.changed() => return,
        }
        let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
            ctx.counters.churn_skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        n = n.wrapping_add(1);
        let ctx = ctx.clone();
        let id = CHURN_ID_BASE + (n % CHURN_ID_BASE);
        tokio::spawn(async move {
            let _permit = permit;
            short_lived(&ctx, id).await;
        });
    }
}

/// Connect, one message, its reply, close.
async fn short_lived(ctx: &Ctx, id: u32) {
    let c = &ctx.counters;
    let Ok(mut stream) = ctx.connect(id).await else {
        c.churn_connect_errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut factory = MessageFactory::new(BODY_BYTES);
    let mut out = BytesMut::new();
    factory.write(id, 1, &mut out);
    c.sent.fetch_add(1, Ordering::Relaxed);
    if stream.write_all(&out).await.is_err() {
        c.dropped.fetch_add(1, Ordering::Relaxed);
        c.churn_refused.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut framer = ClientFramer::new(READ_BYTES);
    let mut buf = BytesMut::with_capacity(READ_BYTES);
    let deadline = Instant::now() + REPLY_TIMEOUT;
    loop {
        match framer.decode(&mut buf) {
            Ok(Some(frame)) => {
                if factory.verify(id, &frame) == Verdict::Seq(1) {
                    c.answered.fetch_add(1, Ordering::Relaxed);
                    c.churn_ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    c.corrupted.fetch_add(1, Ordering::Relaxed);
                    c.lost.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            Ok(None) => {}
            Err(_) => {
                c.corrupted.fetch_add(1, Ordering::Relaxed);
                c.lost.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => {
                c.dropped.fetch_add(1, Ordering::Relaxed);
                c.churn_refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(_) => {
                c.lost.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_in_range_and_spread() {
        let v: Vec<f64> = (0..1000).map(|i| jitter(i, 0)).collect();
        assert!(v.iter().all(|x| (0.0..1.0).contains(x)));
        let low = v.iter().filter(|&&x| x < 0.5).count();
        assert!((400..600).contains(&low), "{low}");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1, 0) <= BACKOFF_MIN.mul_f64(1.5));
        assert!(backoff(1, 10) <= BACKOFF_MAX.mul_f64(1.5));
        assert!(backoff(1, 10) >= BACKOFF_MAX.mul_f64(0.5));
    }
}
