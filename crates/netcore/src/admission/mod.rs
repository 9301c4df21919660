//! Admission: every check runs on the accepted socket's address before the core spends
//! any per-connection memory (no registration with the reactor, no session, no task).
//!
//! Order: block list, allow-listed-only switch, per-IP rate, global cap, per-IP
//! concurrency; allow-listed sources skip the per-IP steps (`allow`). The permit returned
//! on success releases the global and per-IP slots when dropped, so the counts cannot
//! drift (CIOCPServer's counters were updated outside its locks).

mod allow;
mod blocklist;
mod front;
mod per_ip;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use ipnet::IpNet;
use limits::{Rate, RateTable};
use parking_lot::{Mutex, RwLock};

use crate::config::Config;
use crate::metrics::reject;
use blocklist::BlockList;
use per_ip::PerIpCounts;

pub use allow::{RejectObserver, StrictLimits};
pub(crate) use blocklist::NetMap;
pub(crate) use front::FrontPermit;

/// One block in force, as listed by [`Admission::blocks`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// The blocked host or range (truncated to its prefix).
    pub net: IpNet,
    /// Where the block comes from and how long it lasts.
    pub kind: BlockKind,
}

/// Kind of a [`Block`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// From the static list (`replace_static`).
    Static,
    /// Run-time, until `unblock`.
    Permanent,
    /// Run-time, lifting after `remaining`.
    Temporary {
        /// Time left until the block lifts.
        remaining: Duration,
    },
}

/// Default rate-table slots per allowed connection: room for the live sources plus
/// as many recent ones, so legitimate reconnects rarely collide.
const RATE_SLOTS_PER_CONNECTION: usize = 2;
/// Bounds of the derived rate-table size, in slots (16 bytes each).
const RATE_SLOTS_MIN: usize = 4096;
const RATE_SLOTS_MAX: usize = 1 << 20;

struct Inner {
    /// Static and run-time blocks.
    blocks: RwLock<BlockList>,
    /// Per-IP connection rate, keyed by canonical IP; `None` when unlimited. Replaced
    /// whole when the rate changes at run time (one pointer load per admission).
    rate: ArcSwapOption<RateTable<IpAddr>>,
    /// The rate and burst `rate` was built with, and its slot count: what `set_limits`
    /// compares against. Only reloads take it.
    rate_params: Mutex<RateParams>,
    /// Live sessions per IP; always counted, because the cap can change at run time.
    per_ip: PerIpCounts,
    /// `Config::max_conn_per_ip`, as in force now.
    max_per_ip: AtomicU32,
    /// Admitted connections not yet released.
    live: AtomicUsize,
    /// `Config::max_connections`, as in force now.
    max_connections: AtomicUsize,
    /// `Config::max_runtime_blocks`, for the log line when the table is full.
    max_runtime_blocks: usize,
    /// Allow list, strict limits and the refusal observer, set at run time.
    live_policy: allow::Live,
}

/// How the per-IP rate table is built.
#[derive(Clone, Copy, PartialEq, Eq)]
struct RateParams {
    /// Connections per second (0 = unlimited, no table).
    per_sec: u32,
    /// Burst (0 = `per_sec`).
    burst: u32,
    /// Slots of the table.
    slots: usize,
}

impl RateParams {
    fn table(self) -> Option<Arc<RateTable<IpAddr>>> {
        (self.per_sec > 0).then(|| {
            let rate = Rate::new(self.per_sec, Duration::from_secs(1), self.burst);
            Arc::new(RateTable::new(rate, self.slots))
        })
    }
}

/// Admission control, shared with the application (block or unblock at run time).
#[derive(Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("live", &self.inner.live.load(Ordering::Relaxed))
            .finish()
    }
}

/// Holds one global slot and one per-IP slot; dropping it releases both, unless it was
/// handed over to a session task (which then calls `Admission::release`).
pub(crate) struct Permit {
    /// Where to give the slots back; `None` once handed over.
    inner: Option<Arc<Inner>>,
    /// The canonical source IP the per-IP slot was taken for.
    ip: IpAddr,
}

impl Permit {
    /// The session task takes over the slots and releases them with `Admission::release`
    /// (keeping the permit itself in every task would cost 32 bytes per session).
    pub(crate) fn hand_over(mut self) {
        self.inner = None;
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(inner) = &self.inner {
            release(inner, self.ip);
        }
    }
}

fn release(inner: &Inner, ip: IpAddr) {
    inner.per_ip.release(ip);
    inner.live.fetch_sub(1, Ordering::AcqRel);
}

impl Admission {
    pub(crate) fn new(config: &Config) -> Self {
        let slots = match config.rate_table_slots {
            0 => config
                .max_connections
                .saturating_mul(RATE_SLOTS_PER_CONNECTION)
                .clamp(RATE_SLOTS_MIN, RATE_SLOTS_MAX),
            slots => slots,
        };
        let params = RateParams {
            per_sec: config.conn_rate_per_ip,
            burst: config.conn_burst_per_ip,
            slots,
        };
        Admission {
            inner: Arc::new(Inner {
                blocks: RwLock::new(BlockList::new(config.max_runtime_blocks)),
                rate: ArcSwapOption::new(params.table()),
                rate_params: Mutex::new(params),
                per_ip: PerIpCounts::new(),
                max_per_ip: AtomicU32::new(config.max_conn_per_ip),
                live: AtomicUsize::new(0),
                max_connections: AtomicUsize::new(config.max_connections),
                max_runtime_blocks: config.max_runtime_blocks,
                live_policy: allow::Live::new(),
            }),
        }
    }

    /// Puts the caps and connect rate of `limits` in force for new connections (live
    /// ones are never closed for it). The rate table is rebuilt only when the rate or
    /// burst changed.
    pub(crate) fn set_limits(&self, limits: &crate::tuning::LiveLimits) {
        let inner = &self.inner;
        inner
            .max_connections
            .store(limits.max_connections, Ordering::Release);
        inner
            .max_per_ip
            .store(limits.max_conn_per_ip, Ordering::Release);
        let mut params = inner.rate_params.lock();
        let wanted = RateParams {
            per_sec: limits.conn_rate_per_ip,
            burst: limits.conn_burst_per_ip,
            slots: params.slots,
        };
        if wanted != *params {
            *params = wanted;
            inner.rate.store(wanted.table());
        }
    }

    /// `(max_connections, max_conn_per_ip, conn_rate_per_ip, conn_burst_per_ip)` in force.
    pub(crate) fn limits(&self) -> (usize, u32, u32, u32) {
        let inner = &self.inner;
        let params = *inner.rate_params.lock();
        (
            inner.max_connections.load(Ordering::Acquire),
            inner.max_per_ip.load(Ordering::Acquire),
            params.per_sec,
            params.burst,
        )
    }

    /// Blocks `net` (a host or a CIDR range) for `ttl`, or until `unblock` when `None`.
    /// Re-blocking a blocked network keeps the longer block (permanent beats any ttl).
    /// Existing sessions are not touched; close them through `Sessions` if needed.
    pub fn block(&self, net: IpNet, ttl: Option<Duration>) {
        let now = Instant::now();
        // A ttl too large to represent is as good as permanent.
        let expiry = ttl.and_then(|ttl| now.checked_add(ttl));
        if !self.inner.blocks.write().block(net, expiry, now) {
            tracing::warn!(%net, max = self.inner.max_runtime_blocks, "run-time block list full of permanent entries; block not recorded");
        }
    }

    /// Removes a run-time block (static entries change only through `replace_static`).
    /// Returns whether an entry was removed.
    pub fn unblock(&self, net: IpNet) -> bool {
        self.inner.blocks.write().unblock(&net)
    }

    /// Replaces the static block list (e.g. on configuration reload).
    pub fn replace_static(&self, nets: Vec<IpNet>) {
        self.inner.blocks.write().replace_static(nets);
    }

    /// Every block in force now: static entries, then run-time ones (expired entries
    /// are left out; order within each group is unspecified). A copy taken under the
    /// read lock, which admission checks share.
    pub fn blocks(&self) -> Vec<Block> {
        self.inner.blocks.read().entries(Instant::now())
    }

    /// Whether a connection from `ip` would be refused as blocked now.
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        self.inner
            .blocks
            .read()
            .is_blocked(ip.to_canonical(), Instant::now())
    }

    /// Live sessions currently counted against `ip`'s concurrent cap.
    pub fn connections_from(&self, ip: IpAddr) -> u32 {
        self.inner.per_ip.get(ip.to_canonical())
    }

    /// Gives back the slots of a permit that was handed over (once per admitted connection).
    pub(crate) fn release(&self, ip: IpAddr) {
        release(&self.inner, ip.to_canonical());
    }

    /// Runs every check for a new connection from `ip`; the error is the rejection label
    /// (also handed to the refusal observer).
    pub(crate) fn admit(&self, ip: IpAddr) -> Result<Permit, &'static str> {
        let ip = ip.to_canonical();
        let inner = &self.inner;
        inner.live_policy.count_attempt();
        let checked = (|| {
            let now = Instant::now();
            if inner.blocks.read().is_blocked(ip, now) {
                return Err(reject::BLOCKED);
            }
            let allow_listed = self.check_source(ip, now)?;
            let max_connections = inner.max_connections.load(Ordering::Acquire);
            let took_global = inner
                .live
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                    (live < max_connections).then_some(live + 1)
                })
                .is_ok();
            if !took_global {
                return Err(reject::MAX_CONNECTIONS);
            }
            if !self.acquire_per_ip(ip, allow_listed) {
                inner.live.fetch_sub(1, Ordering::AcqRel);
                return Err(reject::PER_IP_LIMIT);
            }
            Ok(())
        })();
        match checked {
            Ok(()) => Ok(Permit {
                inner: Some(Arc::clone(inner)),
                ip,
            }),
            Err(label) => {
                inner.live_policy.notify(self, ip, label);
                Err(label)
            }
        }
    }

    /// The source checks after the block list: allow-listed-only, then the per-IP rate
    /// (skipped for allow-listed sources). Returns whether `ip` is allow-listed.
    fn check_source(&self, ip: IpAddr, now: Instant) -> Result<bool, &'static str> {
        let inner = &self.inner;
        let allow_listed = inner.live_policy.is_allow_listed(ip);
        if !allow_listed && inner.live_policy.allow_listed_only() {
            return Err(reject::NOT_ALLOW_LISTED);
        }
        if !allow_listed {
            if let Some(rate) = inner.rate.load().as_ref() {
                if !rate.check(ip, now) {
                    return Err(reject::RATE_LIMITED);
                }
            }
        }
        Ok(allow_listed)
    }

    /// Takes a per-IP slot: always counted, refused over the cap in force (none for an
    /// allow-listed source).
    fn acquire_per_ip(&self, ip: IpAddr, allow_listed: bool) -> bool {
        let inner = &self.inner;
        let cap = match inner
            .live_policy
            .per_ip_cap(inner.max_per_ip.load(Ordering::Acquire))
        {
            _ if allow_listed => u32::MAX,
            0 => u32::MAX,
            cap => cap,
        };
        inner.per_ip.acquire(ip, cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max: usize, per_ip: u32, rate: u32, burst: u32) -> Config {
        Config {
            max_connections: max,
            max_conn_per_ip: per_ip,
            conn_rate_per_ip: rate,
            conn_burst_per_ip: burst,
            ..Config::default()
        }
    }

    #[test]
    fn global_and_per_ip_caps_release_on_drop() {
        let adm = Admission::new(&config(3, 2, 0, 0));
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let p1 = adm.admit(a).expect("1st");
        let p2 = adm.admit(a).expect("2nd");
        assert_eq!(adm.admit(a).err(), Some(reject::PER_IP_LIMIT));
        let p3 = adm.admit(b).expect("3rd");
        assert_eq!(adm.admit(b).err(), Some(reject::MAX_CONNECTIONS));
        drop(p1);
        assert_eq!(adm.connections_from(a), 1);
        let p4 = adm.admit(a).expect("slot released");
        drop((p2, p3, p4));
        assert_eq!(adm.inner.live.load(Ordering::SeqCst), 0);
        assert_eq!(adm.connections_from(a), 0);
    }

    #[test]
    fn lowered_caps_refuse_new_connections_and_keep_live_ones() {
        let adm = Admission::new(&config(10, 3, 0, 0));
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let held: Vec<_> = (0..3).map(|_| adm.admit(a).expect("under 3")).collect();
        let limits = |max_connections, max_conn_per_ip, rate| crate::tuning::LiveLimits {
            max_connections,
            max_conn_per_ip,
            conn_rate_per_ip: rate,
            conn_burst_per_ip: rate,
            first_packet_timeout: None,
            idle_timeout: None,
            max_outbound_bytes: 1,
        };
        adm.set_limits(&limits(10, 2, 0));
        assert_eq!(adm.connections_from(a), 3, "nobody is closed");
        assert_eq!(adm.admit(a).err(), Some(reject::PER_IP_LIMIT));
        adm.set_limits(&limits(3, 0, 0));
        assert_eq!(adm.admit(b).err(), Some(reject::MAX_CONNECTIONS));
        drop(held);
        adm.set_limits(&limits(10, 0, 1));
        let _b1 = adm.admit(b).expect("rate 1: the first");
        assert_eq!(adm.admit(b).err(), Some(reject::RATE_LIMITED));
        adm.set_limits(&limits(10, 0, 0));
        let _b2 = adm.admit(b).expect("rate lifted");
        assert_eq!(adm.limits(), (10, 0, 0, 0));
    }

    #[test]
    fn ipv4_mapped_counts_as_ipv4() {
        let adm = Admission::new(&config(10, 1, 0, 0));
        let v4: IpAddr = "10.0.0.1".parse().expect("ip");
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("ip");
        let _p = adm.admit(v4).expect("first");
        assert_eq!(adm.admit(mapped).err(), Some(reject::PER_IP_LIMIT));
        adm.block("10.0.0.0/8".parse().expect("net"), None);
        assert!(adm.is_blocked(mapped));
    }

    #[test]
    fn blocked_before_rate_and_rate_before_caps() {
        let adm = Admission::new(&config(10, 10, 1, 2));
        let ip: IpAddr = "10.9.9.9".parse().expect("ip");
        let _a = adm.admit(ip).expect("1");
        let _b = adm.admit(ip).expect("2");
        assert_eq!(adm.admit(ip).err(), Some(reject::RATE_LIMITED));
        adm.block(IpNet::from(ip), Some(Duration::from_secs(60)));
        assert_eq!(adm.admit(ip).err(), Some(reject::BLOCKED));
        assert!(adm.unblock(IpNet::from(ip)));
        assert_eq!(adm.admit(ip).err(), Some(reject::RATE_LIMITED));
    }

    #[test]
    fn blocks_lists_static_permanent_and_temporary_with_time_left() {
        let adm = Admission::new(&config(10, 0, 0, 0));
        let net = |s: &str| s.parse::<IpNet>().expect("net");
        adm.replace_static(vec![net("10.0.0.0/8")]);
        adm.block(net("192.0.2.7/32"), None);
        adm.block(net("198.51.100.0/24"), Some(Duration::from_secs(600)));
        adm.block(net("203.0.113.1/32"), Some(Duration::ZERO));
        let mut blocks = adm.blocks();
        blocks.sort_by_key(|b| b.net);
        assert_eq!(blocks.len(), 3, "the expired block is left out: {blocks:?}");
        assert_eq!(blocks[0].kind, BlockKind::Static);
        assert_eq!(blocks[1].kind, BlockKind::Permanent);
        match blocks[2].kind {
            BlockKind::Temporary { remaining } => {
                assert!(
                    remaining <= Duration::from_secs(600) && remaining > Duration::from_secs(590)
                )
            }
            other => panic!("expected a temporary block, got {other:?}"),
        }
    }
}
