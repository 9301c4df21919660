//! One token bucket per key, in a table whose memory is fixed at construction.
//!
//! The table is 2-way set-associative: a key hashes (with a per-table random key, so
//! peers cannot aim at one set) to a shard and to a set of two adjacent slots. A key not
//! in its set takes a slot from it: an empty one, else the one whose bucket is closest to
//! full (a refilled bucket carries no information, so forgetting it is free). A hot key
//! therefore keeps its debt unless two hotter keys share its set, and a flood of distinct
//! keys can only evict entries, never grow the table.
//!
//! A slot holds the key's 64-bit keyed hash, not the key: 16 bytes whatever the key type,
//! and an all-zero slot is a free one, so the table is allocated zeroed and its pages
//! become resident only as keys land in them. A table sized for a large connection cap
//! costs nothing until sources arrive; a flood pays at most the fixed size. Two keys
//! share a bucket only if their keyed hashes are equal (about 2⁻⁶⁴ per pair), and then
//! they are limited together: stricter, never looser.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::time::Instant;

use parking_lot::Mutex;

use crate::rate::Rate;

/// Independently locked parts of the table, so concurrent callers rarely contend.
const SHARDS: usize = 64;
/// Slots per set.
const WAYS: usize = 2;

/// One bucket, all zero while free: `[tag, tat]`, where `tag` is the owning key's hash
/// with its low bit set (so never 0) and `tat` the GCRA theoretical arrival time in
/// nanoseconds since `RateTable::epoch`. Kept as plain integers so `vec![FREE; n]`
/// allocates zeroed memory.
type Slot = [u64; 2];
const FREE: Slot = [0, 0];
const TAG: usize = 0;
const TAT: usize = 1;

/// One shard: `sets_per_shard × WAYS` slots under one lock.
type Shard = Mutex<Box<[Slot]>>;

/// A token bucket per key in fixed memory (see the module docs for eviction).
pub struct RateTable<K> {
    /// The rate and burst every key gets.
    rate: Rate,
    /// Time origin of `Slot::tat`.
    epoch: Instant,
    /// Keyed hashing so sources cannot aim at one set.
    hasher: RandomState,
    /// `SHARDS` locked arrays of `sets_per_shard × WAYS` slots.
    shards: Box<[Shard]>,
    /// Sets per shard (a power of two).
    sets_per_shard: usize,
    /// Keys are hashed, never stored.
    keys: PhantomData<fn(K)>,
}

impl<K> std::fmt::Debug for RateTable<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateTable")
            .field("rate", &self.rate)
            .field("slots", &(SHARDS * self.sets_per_shard * WAYS))
            .finish()
    }
}

impl<K: Hash> RateTable<K> {
    /// Most slots a table holds, whatever was asked for.
    pub const MAX_SLOTS: usize = 1 << 24;

    /// Bytes of one slot.
    pub const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

    /// A table of about `slots` buckets (rounded up to a power of two, at least 128,
    /// at most [`Self::MAX_SLOTS`]), all allocated now (zeroed, so resident only once
    /// used), each limited to `rate`.
    pub fn new(rate: Rate, slots: usize) -> Self {
        let sets_per_shard = (slots.min(Self::MAX_SLOTS) / (SHARDS * WAYS))
            .max(1)
            .next_power_of_two();
        RateTable {
            rate,
            epoch: Instant::now(),
            hasher: RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(vec![FREE; sets_per_shard * WAYS].into_boxed_slice()))
                .collect(),
            sets_per_shard,
            keys: PhantomData,
        }
    }

    /// Bytes the table can hold; fixed for its life (resident as keys arrive).
    pub fn memory_bytes(&self) -> usize {
        SHARDS * self.sets_per_shard * WAYS * Self::SLOT_BYTES
    }

    /// Whether an event for `key` at `now` conforms to the rate; a conforming event
    /// takes a token from `key`'s bucket, a refused one changes nothing.
    pub fn check(&self, key: K, now: Instant) -> bool {
        let hash = self.hasher.hash_one(key);
        let shard = &self.shards[(hash as usize) % SHARDS];
        let set = ((hash >> 32) as usize) & (self.sets_per_shard - 1);
        let now_ns =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);

        // The shard index uses the low bits, so keys of one set agree on bit 0: setting
        // it to keep 0 for "free" loses nothing that tells them apart.
        let tag = hash | 1;

        let mut slots = shard.lock();
        let ways = &mut slots[set * WAYS..(set + 1) * WAYS];
        let index = match ways.iter().position(|s| s[TAG] == tag) {
            Some(index) => index,
            None => {
                let cost = |s: &Slot| {
                    if s[TAG] == 0 {
                        0
                    } else {
                        Rate::debt(s[TAT], now_ns)
                    }
                };
                let victim = (0..WAYS).min_by_key(|&i| cost(&ways[i])).unwrap_or(0);
                ways[victim] = [tag, now_ns];
                victim
            }
        };
        self.rate.conform(&mut ways[index][TAT], now_ns)
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
        assert_eq!(small.memory_bytes(), 128 * 16);
        let odd = RateTable::<u32>::new(per_second(1, 1), 5000);
        assert_eq!(odd.memory_bytes(), 8192 * 16);
        assert_eq!(RateTable::<IpAddr>::SLOT_BYTES, 16, "documented slot size");
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
        assert!(before <= 4096 * 16, "4096 slots of 16 bytes");
        // A hot source inserted now is still limited despite the churn that follows
        // in other sets, and exactly within its own.
        let hot: IpAddr = "203.0.113.9".parse().expect("ip");
        assert!(table.check(hot, t0));
        assert!(!table.check(hot, t0));
    }

    /// Resident set of this process, in bytes (Linux).
    #[cfg(target_os = "linux")]
    fn resident_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
        let pages: usize = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .expect("resident pages");
        pages * 4096
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_unused_table_is_not_resident() {
        // The largest table: 256 MiB reserved. Zeroed allocation leaves its pages to the
        // kernel until keys land in them; a few keys touch a few pages.
        let before = resident_bytes();
        let table = RateTable::<u32>::new(per_second(1, 1), RateTable::<u32>::MAX_SLOTS);
        assert_eq!(table.memory_bytes(), 256 << 20);
        for k in 0..100 {
            table.check(k, Instant::now());
        }
        let grown = resident_bytes().saturating_sub(before);
        assert!(grown < 16 << 20, "{grown} bytes resident after 100 keys");
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
