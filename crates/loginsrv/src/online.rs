//! The login clients of this instance holding an account, to kick them.
//!
//! An account is "online" from a successful CM_IDPASSWORD until that client
//! closes on its gate (or is kicked by a newer login). Which client holds an
//! account is decided in the database (`online_sessions`, shared by every
//! instance); this map finds the gate link of the ones held here.

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

/// The registry of online accounts.
#[derive(Default)]
pub struct Online {
    /// Account key → holder.
    map: Mutex<HashMap<String, Holder>>,
}

impl Online {
    /// Record `holder` as this instance's client holding `key` (the
    /// database granted it); returns a different client it replaces.
    pub fn insert(&self, key: &str, holder: Holder) -> Option<Holder> {
        let mut map = self.map.lock();
        let old = map
            .insert(key.to_owned(), holder.clone())
            .filter(|old| old.token != holder.token);
        metrics::gauge!(ONLINE).set(map.len() as f64);
        old
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
