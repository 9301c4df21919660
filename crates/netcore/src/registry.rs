//! The session registry: O(1) lookup by id from any task, id allocation that never
//! hands out a live id, and a shutdown switch that no registration can slip past.
//!
//! CIOCPServer kept one linked list under one lock and a separately updated counter;
//! here the map is split into shards (each a small `parking_lot::Mutex<HashMap>`),
//! and the count is maintained under the same shard locks that change the map.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::reason::CloseReason;
use crate::session::{Session, SessionId};

const SHARDS: usize = 64;

struct Registry {
    /// id -> session, split to keep lock hold times and contention small.
    shards: Box<[Mutex<HashMap<u32, Session>>]>,
    /// Next id to try; wraps from `SessionId::MAX` to 1.
    next_id: AtomicU32,
    /// Number of registered sessions.
    live: AtomicUsize,
    /// False once shutdown began: registration is refused from then on.
    open: AtomicBool,
}

/// Registry of live sessions; cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Registry>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("len", &self.len())
            .finish()
    }
}

impl Sessions {
    /// An empty registry whose first id is 1.
    pub(crate) fn new() -> Self {
        Self::starting_at(1)
    }

    /// A registry whose first id is `first` (tests use it to reach the wrap quickly).
    pub(crate) fn starting_at(first: u32) -> Self {
        let first = first.clamp(1, SessionId::MAX);
        Sessions {
            inner: Arc::new(Registry {
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
                next_id: AtomicU32::new(first),
                live: AtomicUsize::new(0),
                open: AtomicBool::new(true),
            }),
        }
    }

    fn shard(&self, id: u32) -> &Mutex<HashMap<u32, Session>> {
        &self.inner.shards[id as usize % SHARDS]
    }

    /// The session with this id, if it is live.
    pub fn get(&self, id: impl Into<u32>) -> Option<Session> {
        let id = id.into();
        self.shard(id).lock().get(&id).cloned()
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.inner.live.load(Ordering::Acquire)
    }

    /// True when no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ids of the live sessions (a snapshot; unordered).
    pub fn ids(&self) -> Vec<SessionId> {
        let mut ids = Vec::with_capacity(self.len());
        for shard in self.inner.shards.iter() {
            ids.extend(shard.lock().keys().map(|&raw| SessionId::new(raw)));
        }
        ids
    }

    /// Handles of the live sessions (unordered). Each shard lock is held only to copy
    /// its handles, so listing never holds up registration or lookups for long.
    pub fn snapshot(&self) -> Vec<Session> {
        let mut sessions = Vec::with_capacity(self.len());
        for shard in self.inner.shards.iter() {
            sessions.extend(shard.lock().values().cloned());
        }
        sessions
    }

    /// Closes every live session with `reason` (each flushes, then closes).
    pub fn close_all(&self, reason: CloseReason) {
        for shard in self.inner.shards.iter() {
            // Collect first: closing must not run under the shard lock.
            let sessions: Vec<Session> = shard.lock().values().cloned().collect();
            for session in sessions {
                session.close(reason);
            }
        }
    }

    /// Wakes every live session so each re-reads the limits in force.
    pub(crate) fn nudge_all(&self) {
        for shard in self.inner.shards.iter() {
            let sessions: Vec<Session> = shard.lock().values().cloned().collect();
            for session in sessions {
                session.nudge();
            }
        }
    }

    fn take_id(&self) -> u32 {
        let step = |id: u32| Some(if id >= SessionId::MAX { 1 } else { id + 1 });
        match self
            .inner
            .next_id
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, step)
        {
            Ok(id) | Err(id) => id,
        }
    }

    /// Registers a new session built by `make` with a fresh id.
    /// `None` once shutdown began (the caller drops the connection).
    pub(crate) fn register(&self, make: impl FnOnce(SessionId) -> Session) -> Option<Session> {
        // Every live id occupies one slot, so at most `live + 1` candidates are tried.
        let attempts = self.len().saturating_add(SHARDS + 1);
        for _ in 0..attempts {
            let raw = self.take_id();
            let mut shard = self.shard(raw).lock();
            // Read under the shard lock: `begin_shutdown` either sees this insert or we see its flag.
            if !self.inner.open.load(Ordering::SeqCst) {
                return None;
            }
            if shard.contains_key(&raw) {
                continue; // wrapped onto a live id: skip it
            }
            let session = make(SessionId::new(raw));
            shard.insert(raw, session.clone());
            self.inner.live.fetch_add(1, Ordering::AcqRel);
            return Some(session);
        }
        None
    }

    /// Removes a session; idempotent.
    pub(crate) fn remove(&self, id: SessionId) {
        if self.shard(id.get()).lock().remove(&id.get()).is_some() {
            self.inner.live.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Refuses new registrations, then closes every registered session with `Shutdown`.
    pub(crate) fn begin_shutdown(&self) {
        self.inner.open.store(false, Ordering::SeqCst);
        self.close_all(CloseReason::Shutdown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn make(id: SessionId) -> Session {
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let limits = crate::session::SendLimits::new(
            1024,
            metrics::Counter::noop(),
            metrics::Counter::noop(),
        );
        Session::new(id, addr, addr, Arc::new(limits))
    }

    #[test]
    fn ids_increase_from_one() {
        let reg = Sessions::new();
        let a = reg.register(make).expect("open");
        let b = reg.register(make).expect("open");
        assert_eq!((a.id().get(), b.id().get()), (1, 2));
        assert_eq!(reg.len(), 2);
        assert_eq!(reg.get(a.id()).map(|s| s.id()), Some(a.id()));
        assert_eq!(reg.get(2u32).map(|s| s.id()), Some(b.id()));
        reg.remove(a.id());
        reg.remove(a.id());
        assert_eq!(reg.len(), 1, "remove is idempotent");
        assert!(reg.get(1u32).is_none());
        let c = reg.register(make).expect("open");
        assert_eq!(c.id().get(), 3, "ids are not reused before the wrap");
    }

    #[test]
    fn wrap_skips_live_ids_and_stays_in_range() {
        let reg = Sessions::starting_at(SessionId::MAX - 1);
        let a = reg.register(make).expect("open"); // MAX-1
        let b = reg.register(make).expect("open"); // MAX
        assert_eq!(a.id().get(), SessionId::MAX - 1);
        assert_eq!(b.id().get(), SessionId::MAX);
        // Wraps to 1; keep 1 and 2 live, then wrap again and check they are skipped.
        let one = reg.register(make).expect("open");
        let two = reg.register(make).expect("open");
        assert_eq!((one.id().get(), two.id().get()), (1, 2));
        reg.remove(a.id());
        reg.inner.next_id.store(SessionId::MAX, Ordering::SeqCst);
        let next = reg.register(make).expect("open");
        assert_eq!(next.id().get(), 3, "MAX, 1 and 2 are live and skipped");
        let again = reg.register(make).expect("open");
        assert_eq!(again.id().get(), 4);
        let mut live: Vec<u32> = reg.ids().into_iter().map(SessionId::get).collect();
        live.sort_unstable();
        assert_eq!(live, vec![1, 2, 3, 4, SessionId::MAX]);
    }

    #[test]
    fn shutdown_refuses_registration_and_closes_live_sessions() {
        let reg = Sessions::new();
        let a = reg.register(make).expect("open");
        reg.begin_shutdown();
        assert_eq!(a.close_reason(), Some(CloseReason::Shutdown));
        assert!(reg.register(make).is_none());
    }
}
