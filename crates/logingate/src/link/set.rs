//! The gate's backends: one [`Link`] per LoginSrv, and the choice of the
//! link a new client opens on ([`select`](super::select)). Each link runs
//! its own task ([`super::run`]); the set only reads their state.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::select::{self, Candidate};
use super::{Link, LinkTotals};

/// Every backend link of the gate, in configuration order.
pub struct LinkSet {
    /// The links; never empty.
    links: Vec<Link>,
    /// Advanced on every pick among several links: breaks ties round-robin.
    turn: AtomicUsize,
}

impl LinkSet {
    /// The set of `links`; `None` when there is none.
    pub fn new(links: Vec<Link>) -> Option<Self> {
        (!links.is_empty()).then(|| LinkSet {
            links,
            turn: AtomicUsize::new(0),
        })
    }

    /// The links, in configuration order.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// The first backend's link (the only one of a single-backend gate).
    pub fn first(&self) -> &Link {
        // `new` refuses an empty set.
        &self.links[0]
    }

    /// The link a new client should open on: the up link with the fewest
    /// live sessions (ties round-robin), `None` when none is up. A gate with
    /// one backend always gets that link (its `open` says whether it is up).
    pub fn pick(&self) -> Option<&Link> {
        if let [only] = self.links.as_slice() {
            return Some(only);
        }
        let candidates: Vec<Candidate> = self
            .links
            .iter()
            .map(|l| Candidate {
                up: l.is_up(),
                answered: l.is_answered(),
                live: l.live_sessions(),
            })
            .collect();
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        select::pick(&candidates, turn).map(|i| &self.links[i])
    }

    /// Whether any link is connected.
    pub fn is_up(&self) -> bool {
        self.links.iter().any(Link::is_up)
    }

    /// Whether every link is connected.
    pub fn all_up(&self) -> bool {
        self.links.iter().all(Link::is_up)
    }

    /// Sessions open on all links.
    pub fn live_sessions(&self) -> usize {
        self.links.iter().map(Link::live_sessions).sum()
    }

    /// The counters of all links added up.
    pub fn stats(&self) -> LinkTotals {
        self.links
            .iter()
            .map(Link::stats)
            .fold(LinkTotals::default(), |a, b| a.plus(&b))
    }

    /// The fastest last heartbeat round trip of any link.
    pub fn heartbeat_rtt(&self) -> Option<Duration> {
        self.links.iter().filter_map(Link::heartbeat_rtt).min()
    }
}
