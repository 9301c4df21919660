//! Runs a scenario on `threads` OS threads, each with its own current-thread
//! runtime and its own counters and histogram.
//!
//! Shards share nothing on the hot path (no locks, no atomics per message
//! besides one relaxed progress add per read), which keeps the load
//! generator cheap on a machine it shares with the system under test.

use std::cell::RefCell;
use std::future::Future;
use std::io::IsTerminal;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::report::new_histogram;

/// Counters of one shard; merged into the report at the end.
pub struct ShardStats {
    /// Latency in microseconds.
    pub hist: Histogram<u64>,
    /// Replies verified (or cycles completed), whenever they arrived.
    pub messages: u64,
    /// Replies verified before the window closed: the throughput numerator.
    pub in_window: u64,
    /// Connections established.
    pub connections: u64,
    /// Connections still open at the end (idle).
    pub held: u64,
    /// Messages never answered.
    pub lost: u64,
    /// Replies that arrived after a later one.
    pub reordered: u64,
    /// Replies that differ from what was sent.
    pub corrupted: u64,
    /// Connect failures, resets, unexpected closes, timeouts.
    pub errors: u64,
    /// Attempts answered "try again" and repeated (login: already logged in).
    pub retries: u64,
}

impl Default for ShardStats {
    fn default() -> Self {
        Self {
            hist: new_histogram(),
            messages: 0,
            in_window: 0,
            connections: 0,
            held: 0,
            lost: 0,
            reordered: 0,
            corrupted: 0,
            errors: 0,
            retries: 0,
        }
    }
}

impl ShardStats {
    pub fn merge(&mut self, other: &ShardStats) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
        self.messages += other.messages;
        self.in_window += other.in_window;
        self.connections += other.connections;
        self.held += other.held;
        self.lost += other.lost;
        self.reordered += other.reordered;
        self.corrupted += other.corrupted;
        self.errors += other.errors;
        self.retries += other.retries;
    }

    /// Records a latency, clamping to the histogram's range instead of failing.
    pub fn record(&mut self, elapsed: Duration) {
        let us = elapsed.as_micros().clamp(1, 60_000_000) as u64;
        let _ = self.hist.record(us);
    }
}

/// State all shards of one run share.
pub struct Shared {
    /// Progress counter for the bar (messages or connections).
    pub progress: AtomicU64,
    /// Lines the shards up so the measured window starts after every connect.
    barrier: Barrier,
    /// The common start of the measured window.
    start: OnceLock<Instant>,
}

/// What a shard's body gets.
pub struct ShardCtx {
    /// This shard's index, 0..threads.
    pub index: usize,
    /// Number of shards.
    pub shards: usize,
    /// This shard's counters, shared by its local tasks.
    pub stats: Rc<RefCell<ShardStats>>,
    /// Run-wide state.
    pub shared: Arc<Shared>,
}

impl ShardCtx {
    /// Blocks this shard's thread until every shard calls it, then returns the
    /// common start instant. Call it when no local task needs to run meanwhile.
    pub fn sync_start(&self) -> Instant {
        if self.shared.barrier.wait().is_leader() {
            let _ = self.shared.start.set(Instant::now());
        }
        self.shared.barrier.wait();
        self.shared
            .start
            .get()
            .copied()
            .unwrap_or_else(Instant::now)
    }

    /// The clients this shard owns: every `shards`-th id.
    pub fn client_ids(&self, clients: u64) -> impl Iterator<Item = u32> {
        (self.index as u64..clients)
            .step_by(self.shards)
            .map(|c| c as u32)
    }
}

/// Runs `body` on every shard and returns the merged counters.
///
/// `progress_total` sizes the progress bar (drawn only on a terminal; 0 = a counter);
/// `progress_label` names its unit.
pub fn run_shards<F, Fut>(
    threads: usize,
    progress_total: u64,
    progress_label: &str,
    body: F,
) -> anyhow::Result<ShardStats>
where
    F: Fn(ShardCtx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let threads = threads.max(1);
    let shared = Arc::new(Shared {
        progress: AtomicU64::new(0),
        barrier: Barrier::new(threads),
        start: OnceLock::new(),
    });
    // Build every runtime first: a shard that failed later would leave the others at the barrier.
    let mut runtimes = Vec::with_capacity(threads);
    for _ in 0..threads {
        runtimes.push(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        );
    }
    let body = Arc::new(body);
    let mut handles = Vec::with_capacity(threads);
    for (index, rt) in runtimes.into_iter().enumerate() {
        let body = body.clone();
        let shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name(format!("bench-{index}"))
            .spawn(move || {
                let stats = Rc::new(RefCell::new(ShardStats::default()));
                let ctx = ShardCtx {
                    index,
                    shards: threads,
                    stats: stats.clone(),
                    shared,
                };
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, body(ctx));
                // Let tasks that are still winding down drop their sockets before counting.
                drop(local);
                drop(rt);
                Rc::try_unwrap(stats)
                    .map(RefCell::into_inner)
                    .unwrap_or_default()
            })?;
        handles.push(handle);
    }

    let bar = std::io::stderr().is_terminal().then(|| {
        // Timed runs do not know their total: a counter with a rate instead of a bar.
        let (bar, template) = if progress_total == 0 {
            (indicatif::ProgressBar::new_spinner(), format!("{{elapsed_precise}} {{spinner}} {{pos}} {progress_label} ({{per_sec}})"))
        } else {
            (
                indicatif::ProgressBar::new(progress_total),
                format!("{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {progress_label} ({{per_sec}})"),
            )
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
            bar.set_style(style);
        }
        bar
    });
    while !handles.iter().all(|h| h.is_finished()) {
        if let Some(bar) = &bar {
            bar.set_position(shared.progress.load(Ordering::Relaxed));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }

    let mut total = ShardStats::default();
    for handle in handles {
        match handle.join() {
            Ok(stats) => total.merge(&stats),
            Err(_) => anyhow::bail!("a load generator thread panicked"),
        }
    }
    Ok(total)
}
