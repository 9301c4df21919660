//! Concurrent sessions per source IP. An entry exists only while that IP has a live
//! session, so the map is bounded by `max_connections`.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;

use parking_lot::Mutex;

const SHARDS: usize = 32;

pub(crate) struct PerIpCounts {
    /// ip -> live sessions, sharded by a keyed hash.
    shards: Box<[Mutex<HashMap<IpAddr, u32>>]>,
    /// Keyed hash for shard choice.
    hasher: std::collections::hash_map::RandomState,
}

impl PerIpCounts {
    pub(crate) fn new() -> Self {
        PerIpCounts {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
        }
    }

    fn shard(&self, ip: &IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
        &self.shards[(self.hasher.hash_one(ip) as usize) % SHARDS]
    }

    /// Takes one slot for `ip` unless it already has `max`.
    pub(crate) fn acquire(&self, ip: IpAddr, max: u32) -> bool {
        let mut map = self.shard(&ip).lock();
        let count = map.entry(ip).or_insert(0);
        if *count >= max {
            if *count == 0 {
                map.remove(&ip);
            }
            return false;
        }
        *count += 1;
        true
    }

    pub(crate) fn release(&self, ip: IpAddr) {
        let mut map = self.shard(&ip).lock();
        if let Some(count) = map.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&ip);
            }
        }
    }

    pub(crate) fn get(&self, ip: IpAddr) -> u32 {
        self.shard(&ip).lock().get(&ip).copied().unwrap_or(0)
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_holds_and_entries_vanish_at_zero() {
        let counts = PerIpCounts::new();
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        assert!(counts.acquire(ip, 2));
        assert!(counts.acquire(ip, 2));
        assert!(!counts.acquire(ip, 2));
        assert_eq!(counts.get(ip), 2);
        counts.release(ip);
        assert!(counts.acquire(ip, 2));
        counts.release(ip);
        counts.release(ip);
        assert_eq!(
            counts.entries(),
            0,
            "no memory kept for an IP without sessions"
        );
    }
}
