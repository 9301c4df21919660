//! The links' orders carried out on netcore sessions: deliver replies,
//! kick, block, and drop a lost link's sessions (only those).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ipnet::IpNet;
use netcore::{Admission, CloseReason, SendError, Sessions};
use tracing::{debug, error, info};

use crate::blocklist;
use crate::link::{Dispatch, Undelivered};
use crate::reason;
use console::events::Events;

/// Blocks ordered by the LoginSrv, by `kind` (`temporary`, `permanent`).
pub const METRIC_BLOCKS: &str = "gate_blocks_total";
/// Kicks ordered by the LoginSrv.
pub const METRIC_KICKS: &str = "gate_kicks_total";

/// [`Dispatch`] over the netcore registry and admission.
pub struct NetDispatch {
    /// Live sessions by id.
    sessions: Sessions,
    /// Where blocks are enforced.
    admission: Admission,
    /// Duration of a temporary block (`%+B`) and where permanent blocks are
    /// recorded; replaced whole on reload.
    blocking: arc_swap::ArcSwap<(Duration, Option<PathBuf>)>,
    /// Kicks and blocks shown on the operator's console.
    events: Arc<Events>,
}

impl NetDispatch {
    /// Dispatch onto `sessions` and `admission`.
    pub fn new(
        sessions: Sessions,
        admission: Admission,
        temp_block: Duration,
        block_file: Option<PathBuf>,
        events: Arc<Events>,
    ) -> Self {
        NetDispatch {
            sessions,
            admission,
            blocking: arc_swap::ArcSwap::from_pointee((temp_block, block_file)),
            events,
        }
    }

    /// Replaces the temporary block duration and the block list file.
    pub fn set_blocking(&self, temp_block: Duration, block_file: Option<PathBuf>) {
        self.blocking.store(Arc::new((temp_block, block_file)));
    }

    fn record_permanent(&self, ip: IpAddr, id: u32) {
        let Some(path) = self.blocking.load().1.clone() else {
            return;
        };
        // File I/O off the link reader's thread.
        tokio::task::spawn_blocking(move || {
            let note = format!("blocked by LoginSrv (session {id})");
            match blocklist::record(&path, ip, &note) {
                Ok(true) => {}
                Ok(false) => {
                    debug!(file = %path.display(), %ip, "block list: IP already listed")
                }
                Err(e) => {
                    error!(file = %path.display(), %ip, error = %e, "block list: cannot record permanent block")
                }
            }
        });
    }
}

impl Dispatch for NetDispatch {
    fn deliver(&self, id: u32, data: Bytes) -> Result<(), Undelivered> {
        let session = self.sessions.get(id).ok_or(Undelivered::UnknownSession)?;
        session.send(data).map_err(|e| match e {
            SendError::Closed => Undelivered::SessionClosed,
            // netcore has closed the session as a slow reader.
            SendError::QueueFull => Undelivered::SlowReader,
        })
    }

    fn kick(&self, id: u32) -> Result<(), Undelivered> {
        let session = self.sessions.get(id).ok_or(Undelivered::UnknownSession)?;
        metrics::counter!(METRIC_KICKS).increment(1);
        info!(session = id, peer = %session.peer(), "LoginSrv kicked client");
        self.events.push(
            "kick",
            format!("LoginSrv kicked session {id} ({})", session.peer()),
        );
        session.close(CloseReason::Kicked);
        Ok(())
    }

    fn block(&self, id: u32, permanent: bool) -> Result<(), Undelivered> {
        let session = self.sessions.get(id).ok_or(Undelivered::UnknownSession)?;
        let ip = session.peer().ip().to_canonical();
        let (kind, expiry) = if permanent {
            ("permanent", None)
        } else {
            ("temporary", Some(self.blocking.load().0))
        };
        // netcore keeps the longer of two blocks of one IP, so a temporary
        // block never shortens a permanent one; the file skips IPs it already covers.
        self.admission.block(IpNet::from(ip), expiry);
        metrics::counter!(METRIC_BLOCKS, "kind" => kind).increment(1);
        info!(session = id, %ip, kind, secs = expiry.map(|d| d.as_secs()), "LoginSrv blocked client IP");
        self.events.push(
            "block",
            match expiry {
                Some(d) => format!("LoginSrv blocked {ip} for {} s (session {id})", d.as_secs()),
                None => format!("LoginSrv blocked {ip} permanently (session {id})"),
            },
        );
        if permanent {
            self.record_permanent(ip, id);
        }
        session.close(CloseReason::Kicked);
        Ok(())
    }

    fn link_lost(&self, sessions: &[u32]) {
        if !sessions.is_empty() {
            info!(
                sessions = sessions.len(),
                "closing the clients of the lost LoginSrv link"
            );
        }
        for &id in sessions {
            if let Some(session) = self.sessions.get(id) {
                session.close(CloseReason::Protocol(reason::SERVER_LOST));
            }
        }
    }
}
