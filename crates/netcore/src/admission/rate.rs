//! Per-IP connection rate limit in fixed memory.
//!
//! A GCRA token bucket per IP (one "theoretical arrival time" word), stored in a
//! fixed-size, 2-way set-associative table sized at start. A flood from a million
//! distinct sources cannot grow it; it can only evict entries. Eviction prefers an
//! empty slot, then a slot whose bucket has refilled (it carries no information),
//! then the slot closest to full, so a hot abuser keeps its debt unless two other
//! sources are hotter in the same set.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::Instant;

use parking_lot::Mutex;

const SHARDS: usize = 64;

#[derive(Clone, Copy, Default)]
struct Slot {
    /// IPv6 (or IPv4-mapped) address bits; meaningful only when `used`.
    key: u128,
    /// GCRA theoretical arrival time, in ns since `RateLimiter::epoch`.
    tat: u64,
    /// Slot holds a key.
    used: bool,
}

/// Fixed-memory per-IP rate limiter.
pub(crate) struct RateLimiter {
    /// Nanoseconds between two admissions at the steady rate.
    interval_ns: u64,
    /// How far ahead of now the bucket may run: burst × interval.
    tolerance_ns: u64,
    /// Time origin of `Slot::tat`.
    epoch: Instant,
    /// Keyed hashing so sources cannot aim at one set.
    hasher: RandomState,
    /// Table split into independently locked shards.
    shards: Box<[Mutex<Box<[Slot]>>]>,
    /// Slots per shard (power of two).
    per_shard: usize,
}

impl RateLimiter {
    /// `rate` per second with `burst` (0 = rate), table of about `slots` entries.
    pub(crate) fn new(rate: u32, burst: u32, slots: usize) -> Self {
        let rate = u64::from(rate.max(1));
        let burst = u64::from(if burst == 0 { rate as u32 } else { burst });
        let interval_ns = 1_000_000_000 / rate;
        let per_shard = (slots / SHARDS).max(2).next_power_of_two();
        RateLimiter {
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(burst),
            epoch: Instant::now(),
            hasher: RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(vec![Slot::default(); per_shard].into_boxed_slice()))
                .collect(),
            per_shard,
        }
    }

    /// Bytes held by the table (fixed for the life of the limiter).
    #[cfg(test)]
    pub(crate) fn table_bytes(&self) -> usize {
        SHARDS * self.per_shard * std::mem::size_of::<Slot>()
    }

    /// True when `ip` may open a connection at `now` (and records it).
    pub(crate) fn check(&self, ip: IpAddr, now: Instant) -> bool {
        let key = match ip {
            IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
            IpAddr::V6(v6) => u128::from(v6),
        };
        let hash = self.hasher.hash_one(key);
        let shard = &self.shards[(hash as usize) % SHARDS];
        let mask = self.per_shard - 1;
        let a = ((hash >> 16) as usize) & mask;
        let b = ((hash >> 40) as usize) & mask;
        // Offset by the tolerance so "tat" never needs to go below zero.
        let now_ns = (now.saturating_duration_since(self.epoch).as_nanos() as u64)
            .saturating_add(self.tolerance_ns);

        let mut slots = shard.lock();
        let index = if slots[a].used && slots[a].key == key {
            a
        } else if slots[b].used && slots[b].key == key {
            b
        } else {
            let victim = Self::victim(&slots, a, b, now_ns);
            slots[victim] = Slot {
                key,
                tat: now_ns,
                used: true,
            };
            victim
        };
        let slot = &mut slots[index];
        let new_tat = slot.tat.max(now_ns).saturating_add(self.interval_ns);
        if new_tat - now_ns > self.tolerance_ns {
            return false;
        }
        slot.tat = new_tat;
        true
    }

    fn victim(slots: &[Slot], a: usize, b: usize, now_ns: u64) -> usize {
        let cost = |s: &Slot| {
            if !s.used {
                0
            } else {
                s.tat.saturating_sub(now_ns)
            }
        };
        if cost(&slots[b]) < cost(&slots[a]) {
            b
        } else {
            a
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn admits_exactly_the_burst_then_the_rate() {
        let limiter = RateLimiter::new(10, 5, 1024);
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let t0 = Instant::now();
        let admitted = (0..20).filter(|_| limiter.check(ip, t0)).count();
        assert_eq!(admitted, 5);
        // 10/s: one more token every 100 ms.
        assert!(!limiter.check(ip, t0 + Duration::from_millis(99)));
        assert!(limiter.check(ip, t0 + Duration::from_millis(100)));
        assert!(!limiter.check(ip, t0 + Duration::from_millis(150)));
        let other: IpAddr = "10.0.0.2".parse().expect("ip");
        assert!(limiter.check(other, t0), "sources are independent");
    }

    #[test]
    fn burst_zero_means_rate() {
        let limiter = RateLimiter::new(3, 0, 1024);
        let ip: IpAddr = "::1".parse().expect("ip");
        let t0 = Instant::now();
        assert_eq!((0..10).filter(|_| limiter.check(ip, t0)).count(), 3);
    }

    #[test]
    fn memory_is_fixed_under_a_million_sources() {
        let limiter = RateLimiter::new(1, 1, 4096);
        let before = limiter.table_bytes();
        let t0 = Instant::now();
        for i in 0..1_000_000u32 {
            limiter.check(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert_eq!(limiter.table_bytes(), before);
        assert!(before <= 4096 * 64, "about `slots` entries of <= 64 bytes");
        // A hot source inserted now is still limited despite the churn that follows
        // in other sets, and exactly within its own.
        let hot: IpAddr = "203.0.113.9".parse().expect("ip");
        assert!(limiter.check(hot, t0));
        assert!(!limiter.check(hot, t0));
    }
}
