//! Block list: static entries (from configuration, replaced wholesale on reload) and
//! run-time entries (permanent or with an expiry). Lookups cost one hash probe per
//! distinct prefix length in use, not one comparison per entry.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use ipnet::IpNet;

use super::{Block, BlockKind};

/// Networks keyed by their truncated form, plus which (family, prefix length) pairs occur.
#[derive(Default)]
pub(crate) struct NetMap<V> {
    /// Truncated network -> value.
    nets: HashMap<IpNet, V>,
    /// (is_ipv4, prefix_len) -> number of entries with it; drives the probes.
    prefixes: HashMap<(bool, u8), usize>,
}

impl<V> NetMap<V> {
    pub(crate) fn insert(&mut self, net: IpNet, value: V) {
        let net = net.trunc();
        if self.nets.insert(net, value).is_none() {
            *self.prefixes.entry(key_of(&net)).or_insert(0) += 1;
        }
    }

    fn remove(&mut self, net: &IpNet) -> bool {
        let net = net.trunc();
        if self.nets.remove(&net).is_none() {
            return false;
        }
        let key = key_of(&net);
        if let Some(count) = self.prefixes.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                self.prefixes.remove(&key);
            }
        }
        true
    }

    /// Every entry containing `ip`.
    pub(crate) fn matches(&self, ip: IpAddr) -> impl Iterator<Item = (&IpNet, &V)> + '_ {
        let v4 = ip.is_ipv4();
        self.prefixes
            .keys()
            .filter(move |(family_v4, _)| *family_v4 == v4)
            .filter_map(move |&(_, len)| {
                let net = IpNet::new(ip, len).ok()?.trunc();
                self.nets.get_key_value(&net)
            })
    }

    fn len(&self) -> usize {
        self.nets.len()
    }
}

/// The later of two expiries, `None` (until unblocked) being the latest.
fn later(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    }
}

fn key_of(net: &IpNet) -> (bool, u8) {
    (matches!(net, IpNet::V4(_)), net.prefix_len())
}

/// Static and run-time blocks.
pub(crate) struct BlockList {
    /// From configuration; replaced as a whole.
    static_nets: NetMap<()>,
    /// Added at run time; `None` = until unblocked.
    runtime: NetMap<Option<Instant>>,
    /// Bound of `runtime` (`Config::max_runtime_blocks`): when full, expired entries are
    /// purged, then the soonest to expire is evicted, so block requests cannot grow memory.
    max_runtime: usize,
}

impl BlockList {
    pub(crate) fn new(max_runtime: usize) -> Self {
        BlockList {
            static_nets: NetMap::default(),
            runtime: NetMap::default(),
            max_runtime: max_runtime.max(1),
        }
    }

    pub(crate) fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        self.static_nets.matches(ip).next().is_some()
            || self
                .runtime
                .matches(ip)
                .any(|(_, expiry)| expiry.is_none_or(|at| now < at))
    }

    /// Static entries, then run-time entries still in force at `now`.
    pub(crate) fn entries(&self, now: Instant) -> Vec<Block> {
        let statics = self.static_nets.nets.keys().map(|&net| Block {
            net,
            kind: BlockKind::Static,
        });
        let runtime = self.runtime.nets.iter().filter_map(|(&net, expiry)| {
            let kind = match expiry {
                None => BlockKind::Permanent,
                Some(at) if now < *at => BlockKind::Temporary {
                    remaining: at.duration_since(now),
                },
                Some(_) => return None,
            };
            Some(Block { net, kind })
        });
        statics.chain(runtime).collect()
    }

    pub(crate) fn replace_static(&mut self, nets: Vec<IpNet>) {
        let mut map = NetMap::default();
        for net in nets {
            map.insert(net, ());
        }
        self.static_nets = map;
    }

    /// Adds a run-time block; returns false only when the table is full of permanent blocks.
    /// Blocking a network that is already blocked keeps the longer of the two blocks
    /// (permanent beats any expiry), so a short block can never shorten a longer one.
    pub(crate) fn block(&mut self, net: IpNet, expiry: Option<Instant>, now: Instant) -> bool {
        let expiry = match self.runtime.nets.get(&net.trunc()) {
            Some(&current) if current.is_none_or(|at| now < at) => later(current, expiry),
            _ => expiry,
        };
        if self.runtime.len() >= self.max_runtime && !self.runtime.nets.contains_key(&net.trunc()) {
            self.purge_expired(now);
            if self.runtime.len() >= self.max_runtime && !self.evict_soonest() {
                return false;
            }
        }
        self.runtime.insert(net, expiry);
        true
    }

    pub(crate) fn unblock(&mut self, net: &IpNet) -> bool {
        self.runtime.remove(net)
    }

    fn purge_expired(&mut self, now: Instant) {
        let expired: Vec<IpNet> = self
            .runtime
            .nets
            .iter()
            .filter(|(_, expiry)| expiry.is_some_and(|at| at <= now))
            .map(|(net, _)| *net)
            .collect();
        for net in expired {
            self.runtime.remove(&net);
        }
    }

    fn evict_soonest(&mut self) -> bool {
        let soonest = self
            .runtime
            .nets
            .iter()
            .filter_map(|(net, expiry)| expiry.map(|at| (at, *net)))
            .min();
        match soonest {
            Some((_, net)) => self.runtime.remove(&net),
            None => false,
        }
    }

    #[cfg(test)]
    pub(crate) fn runtime_len(&self) -> usize {
        self.runtime.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }
    fn net(s: &str) -> IpNet {
        s.parse().expect("net")
    }

    #[test]
    fn static_cidr_and_host_entries() {
        let mut list = BlockList::new(1024);
        let now = Instant::now();
        list.replace_static(vec![
            net("10.1.0.0/16"),
            net("192.168.1.7/32"),
            net("2001:db8::/32"),
        ]);
        assert!(list.is_blocked(ip("10.1.200.3"), now));
        assert!(!list.is_blocked(ip("10.2.0.1"), now));
        assert!(list.is_blocked(ip("192.168.1.7"), now));
        assert!(!list.is_blocked(ip("192.168.1.8"), now));
        assert!(list.is_blocked(ip("2001:db8::1"), now));
        assert!(!list.is_blocked(ip("2001:db9::1"), now));
        list.replace_static(vec![]);
        assert!(!list.is_blocked(ip("10.1.200.3"), now));
    }

    #[test]
    fn runtime_blocks_expire_and_unblock() {
        let mut list = BlockList::new(1024);
        let now = Instant::now();
        list.block(net("1.2.3.4/32"), Some(now + Duration::from_secs(5)), now);
        list.block(net("5.6.0.0/16"), None, now);
        assert!(list.is_blocked(ip("1.2.3.4"), now));
        assert!(!list.is_blocked(ip("1.2.3.4"), now + Duration::from_secs(5)));
        assert!(list.is_blocked(ip("5.6.7.8"), now + Duration::from_secs(3600)));
        assert!(list.unblock(&net("5.6.7.8/16")), "matched after truncation");
        assert!(!list.is_blocked(ip("5.6.7.8"), now));
    }

    #[test]
    fn reblocking_keeps_the_longer_block() {
        let mut list = BlockList::new(16);
        let now = Instant::now();
        let soon = now + Duration::from_secs(1);
        let later_at = now + Duration::from_secs(60);
        assert!(list.block(net("10.0.0.1/32"), None, now));
        assert!(list.block(net("10.0.0.1/32"), Some(soon), now));
        assert!(
            list.is_blocked(ip("10.0.0.1"), later_at),
            "permanent survives a temporary re-block"
        );
        assert!(list.block(net("10.0.0.2/32"), Some(later_at), now));
        assert!(list.block(net("10.0.0.2/32"), Some(soon), now));
        assert!(
            list.is_blocked(ip("10.0.0.2"), soon + Duration::from_secs(1)),
            "the later expiry wins"
        );
        // An expired entry does not extend anything: the new block stands alone.
        assert!(list.block(net("10.0.0.3/32"), Some(soon), now));
        assert!(list.block(
            net("10.0.0.3/32"),
            Some(later_at + Duration::from_secs(1)),
            later_at
        ));
        assert!(list.is_blocked(ip("10.0.0.3"), later_at));
    }

    #[test]
    fn runtime_table_is_bounded() {
        const MAX_RUNTIME_BLOCKS: usize = 1024;
        let mut list = BlockList::new(MAX_RUNTIME_BLOCKS);
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        for i in 0..MAX_RUNTIME_BLOCKS as u32 + 10 {
            let addr = IpAddr::from(i.to_be_bytes());
            assert!(list.block(
                IpNet::from(addr),
                Some(later + Duration::from_millis(u64::from(i))),
                now
            ));
        }
        assert_eq!(list.runtime_len(), MAX_RUNTIME_BLOCKS);
        assert!(
            !list.is_blocked(IpAddr::from(0u32.to_be_bytes()), now),
            "soonest evicted"
        );
        assert!(list.is_blocked(
            IpAddr::from((MAX_RUNTIME_BLOCKS as u32 + 9).to_be_bytes()),
            now
        ));
    }
}
