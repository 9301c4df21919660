//! Accounts logged in right now, for duplicate-login detection.
//!
//! An account is "online" from a successful CM_IDPASSWORD until that client
//! client closes on its gate (or is kicked by a newer login).

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::gate::GateLink;

/// Gauge of the accounts logged in now.
const ONLINE: &str = "loginsrv_accounts_online";

/// Who holds an account.
#[derive(Clone)]
pub struct Holder {
    /// The gate link the holding client is on (to kick it).
    pub gate: GateLink,
    /// The gate's id for the client.
    pub client: u32,
    /// The holding client's token (gate ids repeat across gates; tokens do not).
    pub token: u64,
}

/// Outcome of a login's claim on an account.
pub enum Claim {
    /// The caller now holds the account.
    Claimed,
    /// Another client held it; it was removed and must be kicked.
    Evicted(Holder),
}

/// The registry of online accounts.
#[derive(Default)]
pub struct Online {
    /// Account key → holder.
    map: Mutex<HashMap<String, Holder>>,
}

impl Online {
    /// Claim `key` for `holder`. If a different client holds it, that
    /// client is evicted and nobody holds the account afterwards: the
    /// Delphi servers answer the new login "already logged in" and let the
    /// player retry once the old client is gone.
    pub fn claim(&self, key: &str, holder: Holder) -> Claim {
        let mut map = self.map.lock();
        let claim = match map.get(key) {
            Some(old) if old.token != holder.token => match map.remove(key) {
                Some(old) => Claim::Evicted(old),
                None => Claim::Claimed,
            },
            _ => {
                map.insert(key.to_owned(), holder);
                Claim::Claimed
            }
        };
        metrics::gauge!(ONLINE).set(map.len() as f64);
        claim
    }

    /// Whether the client with `token` still holds `key` (false once kicked).
    pub fn holds(&self, key: &str, token: u64) -> bool {
        self.map.lock().get(key).is_some_and(|h| h.token == token)
    }

    /// Drop `key` if the client with `token` holds it.
    pub fn release(&self, key: &str, token: u64) {
        let mut map = self.map.lock();
        if map.get(key).is_some_and(|h| h.token == token) {
            map.remove(key);
            metrics::gauge!(ONLINE).set(map.len() as f64);
        }
    }

    /// Who holds `key` now, if anyone (a copy: the lock is not held).
    pub fn holder(&self, key: &str) -> Option<Holder> {
        self.map.lock().get(key).cloned()
    }

    /// Accounts online.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }
}
