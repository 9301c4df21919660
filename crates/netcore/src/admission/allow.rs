//! Run-time policy the application sets on admission: an allow list of sources that
//! skip the per-IP rate and cap, stricter limits for new connections while the
//! application thinks it is under attack, and an observer told of every refusal (so the
//! application can punish the source).
//!
//! Everything is read on the accept path, so the switches are atomics and the allow list
//! is one read lock taken only when it is non-empty. None of it touches the global cap or
//! the block list: an allow-listed source is still refused when the core is full or the
//! source is explicitly blocked.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use ipnet::IpNet;
use parking_lot::RwLock;

use super::NetMap;

/// Limits that replace the configured ones for new connections (existing sessions keep
/// theirs), e.g. while a flood is under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrictLimits {
    /// Live connections per source IP at most (0 = unlimited), instead of
    /// `Config::max_conn_per_ip`.
    pub max_conn_per_ip: u32,
    /// First-message deadline instead of `Config::first_packet_timeout`.
    pub first_packet_timeout: Option<Duration>,
    /// Refuse every source that is not allow-listed (`not_allow_listed`).
    pub allow_listed_only: bool,
}

/// Called with the source and the rejection label for every refused connection.
pub type RejectObserver = Box<dyn Fn(&super::Admission, IpAddr, &'static str) + Send + Sync>;

/// Sentinel of the atomics below: no value set.
const UNSET: u64 = u64::MAX;

/// The run-time half of admission's state.
pub(crate) struct Live {
    /// Sources exempt from the per-IP rate and cap (and from strict limits).
    allow: RwLock<NetMap<()>>,
    /// Entries in `allow`, so an empty list costs no lock on the accept path.
    allow_len: AtomicUsize,
    /// Whether `StrictLimits` are in force.
    strict: AtomicBool,
    /// `StrictLimits::max_conn_per_ip`.
    strict_per_ip: AtomicU32,
    /// `StrictLimits::first_packet_timeout` in milliseconds, `UNSET` for none.
    strict_first_packet_ms: AtomicU64,
    /// `StrictLimits::allow_listed_only`.
    strict_allow_listed_only: AtomicBool,
    /// Connections admission was asked about (direct peers and clients named by a
    /// front), for the application's view of the total connect rate.
    attempts: AtomicU64,
    /// Told of every refusal; set once.
    observer: OnceLock<RejectObserver>,
}

impl Live {
    pub(crate) fn new() -> Self {
        Live {
            allow: RwLock::new(NetMap::default()),
            allow_len: AtomicUsize::new(0),
            strict: AtomicBool::new(false),
            strict_per_ip: AtomicU32::new(0),
            strict_first_packet_ms: AtomicU64::new(UNSET),
            strict_allow_listed_only: AtomicBool::new(false),
            attempts: AtomicU64::new(0),
            observer: OnceLock::new(),
        }
    }

    pub(crate) fn is_allow_listed(&self, ip: IpAddr) -> bool {
        self.allow_len.load(Ordering::Acquire) > 0 && self.allow.read().matches(ip).next().is_some()
    }

    pub(crate) fn count_attempt(&self) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
    }

    /// The per-IP cap for a new connection from a source that is not allow-listed.
    pub(crate) fn per_ip_cap(&self, configured: u32) -> u32 {
        if self.strict.load(Ordering::Acquire) {
            self.strict_per_ip.load(Ordering::Relaxed)
        } else {
            configured
        }
    }

    pub(crate) fn allow_listed_only(&self) -> bool {
        self.strict.load(Ordering::Acquire) && self.strict_allow_listed_only.load(Ordering::Relaxed)
    }

    pub(crate) fn notify(&self, admission: &super::Admission, ip: IpAddr, label: &'static str) {
        if let Some(observer) = self.observer.get() {
            observer(admission, ip, label);
        }
    }
}

impl super::Admission {
    /// An admission with `config`'s limits that no server uses: for applications to test
    /// their own policy on it (blocks, allow list, strict limits).
    pub fn standalone(config: &crate::Config) -> Self {
        Self::new(config)
    }

    /// Replaces the allow list: these sources skip the per-IP rate and cap and any
    /// [`StrictLimits`], but not the global cap nor a block.
    pub fn replace_allow_list(&self, nets: Vec<IpNet>) {
        let live = &self.inner.live_policy;
        let mut map = NetMap::default();
        let len = nets.len();
        for net in nets {
            map.insert(net.trunc(), ());
        }
        *live.allow.write() = map;
        live.allow_len.store(len, Ordering::Release);
    }

    /// Whether `ip` is on the allow list.
    pub fn is_allow_listed(&self, ip: IpAddr) -> bool {
        self.inner.live_policy.is_allow_listed(ip.to_canonical())
    }

    /// Puts `limits` in force for new connections, or back to the configured ones (`None`).
    pub fn set_strict(&self, limits: Option<StrictLimits>) {
        let live = &self.inner.live_policy;
        if let Some(l) = limits {
            live.strict_per_ip
                .store(l.max_conn_per_ip, Ordering::Relaxed);
            let ms = l
                .first_packet_timeout
                .map_or(UNSET, |d| u64::try_from(d.as_millis()).unwrap_or(UNSET - 1));
            live.strict_first_packet_ms.store(ms, Ordering::Relaxed);
            live.strict_allow_listed_only
                .store(l.allow_listed_only, Ordering::Relaxed);
        }
        live.strict.store(limits.is_some(), Ordering::Release);
    }

    /// The first-message deadline a new connection from `ip` gets: the strict one while
    /// in force, except for allow-listed sources, which keep `configured`.
    pub fn first_packet_timeout(
        &self,
        ip: IpAddr,
        configured: Option<Duration>,
    ) -> Option<Duration> {
        let live = &self.inner.live_policy;
        if !live.strict.load(Ordering::Acquire) || live.is_allow_listed(ip.to_canonical()) {
            return configured;
        }
        match live.strict_first_packet_ms.load(Ordering::Relaxed) {
            UNSET => configured,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Connections admission was asked about so far (monotonic), whether admitted or not.
    pub fn attempts(&self) -> u64 {
        self.inner.live_policy.attempts.load(Ordering::Relaxed)
    }

    /// Installs the observer of refusals (once; later calls are ignored and return
    /// `false`). It runs on the accept path: it must be quick and must not block.
    pub fn on_reject(&self, observer: RejectObserver) -> bool {
        self.inner.live_policy.observer.set(observer).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::admission::Admission;
    use crate::config::Config;
    use crate::metrics::reject;

    fn admission(max: usize, per_ip: u32, rate: u32) -> Admission {
        Admission::new(&Config {
            max_connections: max,
            max_conn_per_ip: per_ip,
            conn_rate_per_ip: rate,
            conn_burst_per_ip: rate,
            ..Config::default()
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn allow_listed_skip_rate_and_cap_but_not_global_cap_or_block() {
        let adm = admission(4, 1, 1);
        adm.replace_allow_list(vec!["10.1.0.0/16".parse().expect("net")]);
        let green = ip("10.1.2.3");
        let other = ip("10.2.0.1");
        let a = adm.admit(green).expect("1");
        let b = adm.admit(green).expect("over cap and rate, allowed");
        let _c = adm.admit(other).expect("other 1");
        assert_eq!(adm.admit(other).err(), Some(reject::RATE_LIMITED));
        let _d = adm.admit(green).expect("3rd");
        assert_eq!(adm.admit(green).err(), Some(reject::MAX_CONNECTIONS));
        drop((a, b));
        adm.block(IpNet::from(green), None);
        assert_eq!(adm.admit(green).err(), Some(reject::BLOCKED));
        adm.replace_allow_list(Vec::new());
        assert!(!adm.is_allow_listed(green));
    }

    #[test]
    fn strict_limits_apply_to_new_connections_and_lift() {
        let adm = admission(100, 10, 0);
        let a = ip("10.0.0.1");
        let _p1 = adm.admit(a).expect("1");
        let _p2 = adm.admit(a).expect("2");
        let fp = Some(Duration::from_secs(10));
        adm.set_strict(Some(StrictLimits {
            max_conn_per_ip: 2,
            first_packet_timeout: Some(Duration::from_secs(3)),
            allow_listed_only: false,
        }));
        assert_eq!(adm.admit(a).err(), Some(reject::PER_IP_LIMIT));
        assert_eq!(
            adm.first_packet_timeout(a, fp),
            Some(Duration::from_secs(3))
        );
        adm.replace_allow_list(vec!["10.0.0.9/32".parse().expect("net")]);
        assert_eq!(adm.first_packet_timeout(ip("10.0.0.9"), fp), fp);
        adm.set_strict(None);
        let _p3 = adm.admit(a).expect("configured cap again");
        assert_eq!(adm.first_packet_timeout(a, fp), fp);
    }

    #[test]
    fn allow_listed_only_refuses_the_rest() {
        let adm = admission(100, 10, 0);
        adm.replace_allow_list(vec!["10.1.0.1/32".parse().expect("net")]);
        adm.set_strict(Some(StrictLimits {
            max_conn_per_ip: 1,
            first_packet_timeout: None,
            allow_listed_only: true,
        }));
        assert_eq!(
            adm.admit(ip("10.9.9.9")).err(),
            Some(reject::NOT_ALLOW_LISTED)
        );
        let _a = adm.admit(ip("10.1.0.1")).expect("green");
        let _b = adm.admit(ip("10.1.0.1")).expect("green over strict cap");
    }

    #[test]
    fn observer_hears_every_refusal_and_attempts_count() {
        let adm = admission(100, 1, 0);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        assert!(adm.on_reject(Box::new(move |_, ip, label| {
            sink.lock().expect("lock").push((ip, label));
        })));
        let a = ip("10.0.0.1");
        let _p = adm.admit(a).expect("1");
        assert!(adm.admit(a).is_err());
        adm.block(IpNet::from(a), None);
        assert!(adm.admit(a).is_err());
        assert_eq!(
            *seen.lock().expect("lock"),
            vec![(a, reject::PER_IP_LIMIT), (a, reject::BLOCKED)]
        );
        assert_eq!(adm.attempts(), 3);
    }
}
