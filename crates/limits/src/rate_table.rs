//! One token bucket per key, in a table whose memory is fixed at construction.
//!
//! The table is 2-way set-associative: a key hashes (with a per-table random key, so
//! peers cannot aim at one set) to a shard and to a set of two adjacent slots. A key not
//! in its set takes a slot from it: an empty one, else the one whose bucket is closest to
//! full (a refilled bucket carries no information, so forgetting it is free). A hot key
//! therefore keeps its debt unless two hotter keys share its set, and a flood of distinct
//! keys can only evict entries, never grow the table.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::time::Instant;

use parking_lot::Mutex;

use crate::rate::Rate;

/// Independently locked parts of the table, so concurrent callers rarely contend.
const SHARDS: usize = 64;
/// Slots per set.
const WAYS: usize = 2;

/// One bucket: the key it belongs to and its theoretical arrival time.
#[derive(Clone, Copy)]
struct Slot<K> {
    /// `None` while the slot is free.
    key: Option<K>,
    /// GCRA theoretical arrival time, in nanoseconds since `RateTable::epoch`.
    tat: u64,
}

/// One shard: `sets_per_shard × WAYS` slots under one lock.
type Shard<K> = Mutex<Box<[Slot<K>]>>;

/// A token bucket per key in fixed memory (see the module docs for eviction).
pub struct RateTable<K> {
    /// The rate and burst every key gets.
    rate: Rate,
    /// Time origin of `Slot::tat`.
    epoch: Instant,
    /// Keyed hashing so sources cannot aim at one set.
    hasher: RandomState,
    /// `SHARDS` locked arrays of `sets_per_shard × WAYS` slots.
    shards: Box<[Shard<K>]>,
    /// Sets per shard (a power of two).
    sets_per_shard: usize,
}

impl<K> std::fmt::Debug for RateTable<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateTable")
            .field("rate", &self.rate)
            .field("slots", &(SHARDS * self.sets_per_shard * WAYS))
            .finish()
    }
}

impl<K: Hash + Eq + Copy> RateTable<K> {
    /// Most slots a table holds, whatever was asked for.
    pub const MAX_SLOTS: usize = 1 << 24;

    /// A table of about `slots` buckets (rounded up to a power of two, at least 128,
    /// at most [`Self::MAX_SLOTS`]), all allocated now, each limited to `rate`.
    pub fn new(rate: Rate, slots: usize) -> Self {
        let sets_per_shard = (slots.min(Self::MAX_SLOTS) / (SHARDS * WAYS))
            .max(1)
            .next_power_of_two();
        let free = Slot { key: None, tat: 0 };
        RateTable {
            rate,
            epoch: Instant::now(),
            hasher: RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(vec![free; sets_per_shard * WAYS].into_boxed_slice()))
                .collect(),
            sets_per_shard,
        }
    }

    /// Bytes the table holds; fixed for its life.
    pub fn memory_bytes(&self) -> usize {
        SHARDS * self.sets_per_shard * WAYS * std::mem::size_of::<Slot<K>>()
    }

    /// Whether an event for `key` at `now` conforms to the rate; a conforming event
    /// takes a token from `key`'s bucket, a refused one changes nothing.
    pub fn check(&self, key: K, now: Instant) -> bool {
        let hash = self.hasher.hash_one(key);
        let shard = &self.shards[(hash as usize) % SHARDS];
        let set = ((hash >> 32) as usize) & (self.sets_per_shard - 1);
        let now_ns =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);

        let mut slots = shard.lock();
        let ways = &mut slots[set * WAYS..(set + 1) * WAYS];
        let index = match ways.iter().position(|s| s.key == Some(key)) {
            Some(index) => index,
            None => {
                let cost = |s: &Slot<K>| s.key.map_or(0, |_| Rate::debt(s.tat, now_ns));
                let victim = (0..WAYS).min_by_key(|&i| cost(&ways[i])).unwrap_or(0);
                ways[victim] = Slot {
                    key: Some(key),
                    tat: now_ns,
                };
                victim
            }
        };
        self.rate.conform(&mut ways[index].tat, now_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::IpAddr;
    use std::time::Duration;

    fn per_second(count: u32, burst: u32) -> Rate {
        Rate::new(count, Duration::from_secs(1), burst)
    }

    #[test]
    fn admits_exactly_the_burst_then_the_rate() {
        let table = RateTable::new(per_second(10, 5), 1024);
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let t0 = Instant::now();
        let admitted = (0..20).filter(|_| table.check(ip, t0)).count();
        assert_eq!(admitted, 5);
        // 10/s: one more token every 100 ms.
        assert!(!table.check(ip, t0 + Duration::from_millis(99)));
        assert!(table.check(ip, t0 + Duration::from_millis(100)));
        assert!(!table.check(ip, t0 + Duration::from_millis(150)));
        let other: IpAddr = "10.0.0.2".parse().expect("ip");
        assert!(table.check(other, t0), "sources are independent");
    }

    #[test]
    fn burst_zero_means_rate() {
        let table = RateTable::new(per_second(3, 0), 1024);
        let ip: IpAddr = "::1".parse().expect("ip");
        let t0 = Instant::now();
        assert_eq!((0..10).filter(|_| table.check(ip, t0)).count(), 3);
    }

    #[test]
    fn size_is_rounded_and_bounded() {
        let small = RateTable::<u32>::new(per_second(1, 1), 0);
        assert_eq!(small.memory_bytes(), 128 * std::mem::size_of::<Slot<u32>>());
        let odd = RateTable::<u32>::new(per_second(1, 1), 5000);
        assert_eq!(odd.memory_bytes(), 8192 * std::mem::size_of::<Slot<u32>>());
        assert_eq!(
            std::mem::size_of::<Slot<IpAddr>>(),
            32,
            "documented slot size"
        );
    }

    #[test]
    fn memory_is_fixed_under_a_million_sources() {
        let table = RateTable::new(per_second(1, 1), 4096);
        let before = table.memory_bytes();
        let t0 = Instant::now();
        for i in 0..1_000_000u32 {
            table.check(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert_eq!(table.memory_bytes(), before);
        assert!(before <= 4096 * 32, "4096 slots of 32 bytes");
        // A hot source inserted now is still limited despite the churn that follows
        // in other sets, and exactly within its own.
        let hot: IpAddr = "203.0.113.9".parse().expect("ip");
        assert!(table.check(hot, t0));
        assert!(!table.check(hot, t0));
    }

    #[test]
    fn churn_evicts_refilled_buckets_before_indebted_ones() {
        // The smallest table: 64 shards × 1 set × 2 ways. A hot key spends its whole
        // burst; then fresh keys of its set arrive one after another. Each newcomer owes
        // one interval, the hot key ten, so newcomers evict each other, never the hot key.
        let table = RateTable::new(per_second(1, 10), 0);
        let t0 = Instant::now();
        let hot = 0u32;
        assert_eq!((0..10).filter(|_| table.check(hot, t0)).count(), 10);
        let set_of = |k: u32| {
            let h = table.hasher.hash_one(k);
            (
                (h as usize) % SHARDS,
                ((h >> 32) as usize) & (table.sets_per_shard - 1),
            )
        };
        let same_set: Vec<u32> = (1..100_000).filter(|&k| set_of(k) == set_of(hot)).collect();
        assert!(same_set.len() > 100, "enough keys share a set");
        let later = t0 + Duration::from_millis(1);
        for &k in &same_set {
            assert!(
                table.check(k, later),
                "a newcomer starts with a full bucket"
            );
        }
        assert!(!table.check(hot, later), "the hot key kept its debt");
    }

    proptest! {
        /// Two keys never share a slot (a set has two ways), so with two keys the table
        /// decides exactly as two separate buckets would, whatever the interleaving.
        #[test]
        fn two_keys_behave_as_separate_buckets(
            count in 1u32..20,
            burst in 0u32..10,
            keys in (any::<u64>(), any::<u64>()).prop_filter("distinct", |(a, b)| a != b),
            events in proptest::collection::vec((any::<bool>(), 0u64..300), 1..300),
        ) {
            let rate = per_second(count, burst);
            let table = RateTable::new(rate, 0);
            let t0 = Instant::now();
            let mut model = [0u64; 2];
            let mut now_ms = 0;
            for (second, gap_ms) in events {
                now_ms += gap_ms;
                let now = t0 + Duration::from_millis(now_ms);
                let (key, tat) = if second { (keys.1, &mut model[1]) } else { (keys.0, &mut model[0]) };
                // A bucket with a TAT in the past is full, like a new slot.
                let now_ns = now.saturating_duration_since(table.epoch).as_nanos() as u64;
                prop_assert_eq!(table.check(key, now), rate.conform(tat, now_ns));
            }
        }
    }
}
