//! The open-file limit: every client connection is a file descriptor, so a soft
//! `RLIMIT_NOFILE` below the connection cap makes accepts fail with EMFILE while
//! clients wait for a reply that never comes. At start-up the soft limit is raised
//! as far as the hard limit allows, and a limit still too low is named in the log
//! with the setting that raises it.

/// Descriptors a process needs beside its client connections: listeners, the
/// upstream link, the console and its clients, log and list files, the runtime.
pub const HEADROOM: u64 = 128;

/// What [`raise_for`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// The soft limit before.
    pub before: u64,
    /// The soft limit now.
    pub soft: u64,
    /// The hard limit (the most an unprivileged process can raise the soft one to).
    pub hard: u64,
    /// Descriptors wanted: connections plus [`HEADROOM`].
    pub wanted: u64,
}

impl NofileLimit {
    /// Whether the soft limit covers what is wanted.
    pub fn enough(&self) -> bool {
        self.soft >= self.wanted
    }
}

/// Raise the soft open-file limit towards the hard one for `connections` live
/// connections, and log the outcome: info when it was raised, a warning naming
/// `LimitNOFILE=` when it is still below `connections` + [`HEADROOM`]. `key` names
/// the setting the connections come from (`gate.max_connections`).
pub fn raise_for(connections: usize, key: &str) -> Option<NofileLimit> {
    let wanted = u64::try_from(connections)
        .unwrap_or(u64::MAX)
        .saturating_add(HEADROOM);
    let (before, hard) = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit (RLIMIT_NOFILE)");
            return None;
        }
    };
    // Never lower a soft limit that is already higher than wanted.
    let target = wanted.min(hard).max(before);
    let soft = if target > before {
        match rlimit::setrlimit(rlimit::Resource::NOFILE, target, hard) {
            Ok(()) => {
                tracing::info!(from = before, to = target, hard, "open-file limit raised");
                target
            }
            Err(e) => {
                tracing::warn!(error = %e, soft = before, hard, "cannot raise the open-file limit");
                before
            }
        }
    } else {
        before
    };
    let limit = NofileLimit {
        before,
        soft,
        hard,
        wanted,
    };
    if !limit.enough() {
        tracing::warn!(
            soft,
            hard,
            wanted,
            "open-file limit {soft} is below {key} ({connections}) + {HEADROOM}: accepts beyond it \
             fail and those clients get no reply; raise the hard limit (systemd: LimitNOFILE={wanted} \
             in the unit; shell: ulimit -Hn {wanted}) or lower {key}"
        );
    }
    Some(limit)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn never_lowers_the_soft_limit() {
        let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        let limit = raise_for(0, "gate.max_connections").unwrap();
        assert!(limit.soft >= soft);
        assert_eq!(limit.wanted, HEADROOM);
    }
}
