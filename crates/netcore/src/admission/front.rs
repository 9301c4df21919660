//! Admission in two steps for a trusted front's connection: the front's own address
//! at accept, the client's address once the PROXY header named it.
//!
//! The front is exempt from the per-IP cap and rate (one front carries thousands of
//! clients) but takes a global slot at once, so connections waiting for a header are
//! bounded by `max_connections` like sessions. The per-IP checks then run on the address
//! the header carries, exactly as `Admission::admit` runs them on a direct peer.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::{Admission, Inner, Permit};
use crate::metrics::reject;

/// One global slot, held while a trusted front's connection has not named its client.
/// Dropping it gives the slot back.
pub(crate) struct FrontPermit {
    /// Where the slot goes back; `None` once moved into a client's `Permit`.
    inner: Option<Arc<Inner>>,
}

impl Drop for FrontPermit {
    fn drop(&mut self) {
        if let Some(inner) = &self.inner {
            inner.live.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Admission {
    /// A connection from a trusted front: block list and global cap on the front's address.
    pub(crate) fn admit_front(&self, front: IpAddr) -> Result<FrontPermit, &'static str> {
        let inner = &self.inner;
        if inner
            .blocks
            .read()
            .is_blocked(front.to_canonical(), Instant::now())
        {
            return Err(reject::BLOCKED);
        }
        let max_connections = inner.max_connections.load(Ordering::Acquire);
        inner
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                (live < max_connections).then_some(live + 1)
            })
            .map_err(|_| reject::MAX_CONNECTIONS)?;
        Ok(FrontPermit {
            inner: Some(Arc::clone(inner)),
        })
    }
}

impl FrontPermit {
    /// The header named `client`: block list, per-IP rate and per-IP cap for its address
    /// (same order as `Admission::admit`). On success the global slot moves into the
    /// returned permit, which also holds the client's per-IP slot; on refusal it is freed.
    pub(crate) fn identify(mut self, client: IpAddr) -> Result<Permit, &'static str> {
        let ip = client.to_canonical();
        let inner = self.inner.as_ref().ok_or(reject::MAX_CONNECTIONS)?;
        let admission = Admission {
            inner: Arc::clone(inner),
        };
        inner.live_policy.count_attempt();
        let checked = (|| {
            let now = Instant::now();
            if inner.blocks.read().is_blocked(ip, now) {
                return Err(reject::BLOCKED);
            }
            let allow_listed = admission.check_source(ip, now)?;
            if !admission.acquire_per_ip(ip, allow_listed) {
                return Err(reject::PER_IP_LIMIT);
            }
            Ok(())
        })();
        if let Err(label) = checked {
            inner.live_policy.notify(&admission, ip, label);
            return Err(label);
        }
        Ok(Permit {
            inner: self.inner.take(),
            ip,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn admission(max: usize, per_ip: u32) -> Admission {
        Admission::new(&Config {
            max_connections: max,
            max_conn_per_ip: per_ip,
            conn_rate_per_ip: 0,
            ..Config::default()
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn front_is_exempt_from_per_ip_cap_but_not_from_the_global_one() {
        let adm = admission(3, 1);
        let front = ip("10.0.0.1");
        let a = adm.admit_front(front).expect("1");
        let b = adm
            .admit_front(front)
            .expect("2: no per-IP cap on the front");
        let _c = adm.admit_front(front).expect("3");
        assert_eq!(adm.admit_front(front).err(), Some(reject::MAX_CONNECTIONS));
        assert_eq!(
            adm.connections_from(front),
            0,
            "the front holds no per-IP slot"
        );
        drop(a);
        let _d = adm
            .admit_front(front)
            .expect("slot freed by dropping the pending permit");
        let client = b.identify(ip("192.0.2.7")).expect("client admitted");
        assert_eq!(adm.connections_from(ip("192.0.2.7")), 1);
        drop(client);
        assert_eq!(adm.connections_from(ip("192.0.2.7")), 0);
        assert_eq!(adm.inner.live.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn client_checks_run_on_the_carried_address() {
        let adm = admission(10, 1);
        let front = ip("10.0.0.1");
        let first = adm
            .admit_front(front)
            .and_then(|p| p.identify(ip("::ffff:192.0.2.7")))
            .expect("first");
        let refused = adm
            .admit_front(front)
            .and_then(|p| p.identify(ip("192.0.2.7")));
        assert_eq!(refused.err(), Some(reject::PER_IP_LIMIT), "mapped = IPv4");
        adm.block("198.51.100.0/24".parse().expect("net"), None);
        let blocked = adm
            .admit_front(front)
            .and_then(|p| p.identify(ip("198.51.100.9")));
        assert_eq!(blocked.err(), Some(reject::BLOCKED));
        drop(first);
        assert_eq!(
            adm.inner.live.load(Ordering::SeqCst),
            0,
            "refusals gave the slots back"
        );
        adm.block("10.0.0.1/32".parse().expect("net"), None);
        assert_eq!(adm.admit_front(front).err(), Some(reject::BLOCKED));
    }
}
