//! Per-client-IP budget for Argon2 work (logins, registrations, password
//! changes, recovery): one address cannot monopolise the hashing CPU.
//!
//! Fixed one-minute windows; the table is bounded by clearing stale
//! windows when it grows past `MAX_TRACKED`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// Addresses tracked before stale entries are swept.
const MAX_TRACKED: usize = 100_000;

/// Hash-costing requests allowed per client IP per minute.
pub struct IpThrottle {
    /// Budget per window; 0 = unlimited.
    per_minute: u32,
    /// IP → (window number, requests in it).
    windows: Mutex<HashMap<IpAddr, (u64, u32)>>,
}

impl IpThrottle {
    /// A throttle allowing `per_minute` requests per IP (0 = off).
    pub fn new(per_minute: u32) -> IpThrottle {
        IpThrottle {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Spend one unit of `ip`'s budget; `false` when it is exhausted.
    pub fn allow(&self, ip: IpAddr) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let window = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 60);
        let mut map = self.windows.lock();
        if map.len() >= MAX_TRACKED {
            map.retain(|_, (w, _)| *w == window);
        }
        let entry = map.entry(ip).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        if entry.1 >= self.per_minute {
            return false;
        }
        entry.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_per_ip() {
        let t = IpThrottle::new(2);
        let a = IpAddr::from([192, 0, 2, 1]);
        let b = IpAddr::from([192, 0, 2, 2]);
        assert!(t.allow(a) && t.allow(a));
        // Unless the minute turned over between the calls, the third is refused.
        let third = t.allow(a);
        assert!(t.allow(b), "other addresses keep their budget");
        if !third {
            assert!(!t.allow(a));
        }
        let off = IpThrottle::new(0);
        assert!((0..1000).all(|_| off.allow(a)));
    }
}
