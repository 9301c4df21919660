//! The netcore [`Handler`]: frames client bytes and forwards each whole
//! `#…!` as one link data frame; sends open and close frames.
//!
//! Only a whole `#…!` counts as a message for netcore's first-packet and idle
//! timers: lone `*` acks and a message trickled a byte at a time do not, so
//! neither can hold a slot past `first_packet_timeout_secs` or `idle_timeout_secs`.
//!
//! Every close whose label is an offence (`punish::Offence::from_label`) is punished in
//! `on_close`, the one place every close passes, whoever detected it.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::BytesMut;
use mir2_proto::ClientFramer;
use netcore::{Admission, CloseReason, Handler, Progress, Session};
use tracing::{debug, info};

use crate::account_ops::{AccountOps, OverLimit, Seen};
use crate::config::Config;
use crate::http_probe::{self, Probe};
use crate::link::{Generation, Link, LinkSet, PushError};
use crate::punish::{Offence, Punisher};
use crate::reason;
use limits::LogLimiter;

/// The gate's per-connection logic, shared by all sessions.
pub struct GateHandler {
    /// The backends; each new client opens on one ([`LinkSet::pick`]).
    links: Arc<LinkSet>,
    /// Written as the gate IP in open frames instead of the listener's
    /// address (`server.gate_addr`).
    gate_ip: Option<IpAddr>,
    /// Longest accepted client message; changes on reload (one relaxed load per read).
    max_packet_bytes: AtomicUsize,
    /// Per-session message rate (and burst); changes on reload.
    max_packets_per_sec: AtomicU32,
    /// `CM_IDPASSWORD` messages forwarded, for the stats line (closes and
    /// refusals are netcore's `Counts`).
    logins_forwarded: AtomicU64,
    /// `log_connections`: one info line per closed session; changes on reload.
    log_connections: AtomicBool,
    /// Per-IP registration and password-operation limits; replaced whole when a
    /// reload changes them.
    account_ops: ArcSwap<AccountOps>,
    /// Applies `[gate.punish]` to offending sources.
    punisher: Arc<Punisher>,
    /// Where punishments block; set once the server is bound ([`GateHandler::attach`]).
    admission: OnceLock<Admission>,
}

/// Protocol state of one client, owned by its session task.
pub struct ClientState {
    /// Splits the byte stream into whole `#…!` messages.
    framer: ClientFramer,
    /// The backend link the session opened on, for life: its messages go
    /// straight there, whatever the other links do.
    link: Link,
    /// Link connection the open frame went out on.
    generation: Generation,
    /// Messages the client may still send right now (token bucket).
    tokens: f64,
    /// When `tokens` was last refilled.
    refilled: Instant,
}

static REJECT_LOG: LogLimiter = LogLimiter::new(10, Duration::from_secs(1));

impl GateHandler {
    /// A handler forwarding to `links` with the limits of `config`.
    pub fn new(links: Arc<LinkSet>, config: &Config, punisher: Arc<Punisher>) -> Self {
        GateHandler {
            account_ops: ArcSwap::from_pointee(account_ops(config)),
            punisher,
            admission: OnceLock::new(),
            links,
            gate_ip: config.server.gate_addr,
            max_packet_bytes: AtomicUsize::new(config.gate.max_packet_bytes),
            max_packets_per_sec: AtomicU32::new(config.gate.max_packets_per_sec),
            logins_forwarded: AtomicU64::new(0),
            log_connections: AtomicBool::new(config.log_connections),
        }
    }

    /// Puts the per-session limits of `new` in force for every session (each framer
    /// picks up the message size at its next read); the per-IP account limits start
    /// afresh when they changed.
    pub fn retune(&self, old: &Config, new: &Config) {
        let g = &new.gate;
        self.max_packet_bytes
            .store(g.max_packet_bytes, Ordering::Relaxed);
        self.max_packets_per_sec
            .store(g.max_packets_per_sec, Ordering::Relaxed);
        self.log_connections
            .store(new.log_connections, Ordering::Relaxed);
        let o = &old.gate;
        if (
            o.new_accounts_per_ip_per_hour,
            o.password_ops_per_ip_per_min,
        ) != (
            g.new_accounts_per_ip_per_hour,
            g.password_ops_per_ip_per_min,
        ) {
            self.account_ops.store(Arc::new(account_ops(new)));
        }
    }

    /// Hands over the server's admission, where punishments block.
    pub fn attach(&self, admission: Admission) {
        let _ = self.admission.set(admission);
    }

    /// Login messages (`CM_IDPASSWORD`) forwarded to the LoginSrv so far.
    pub fn logins_forwarded(&self) -> u64 {
        self.logins_forwarded.load(Ordering::Relaxed)
    }

    /// Take one message token; `false` when the client is over its rate.
    fn admit_message(&self, st: &mut ClientState, now: Instant) -> bool {
        let rate = f64::from(self.max_packets_per_sec.load(Ordering::Relaxed));
        let elapsed = now.saturating_duration_since(st.refilled).as_secs_f64();
        st.refilled = now;
        st.tokens = (st.tokens + elapsed * rate).min(rate);
        if st.tokens >= 1.0 {
            st.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The per-IP account limits of `config`.
fn account_ops(config: &Config) -> AccountOps {
    let g = &config.gate;
    // The gate has no `[ids]` table: the Delphi numbering.
    AccountOps::new(
        g.new_accounts_per_ip_per_hour,
        g.password_ops_per_ip_per_min,
        &mir2_proto::ids::IdTable::delphi(),
        g.max_connections,
    )
}

fn reject(s: &Session, reason: &'static str, detail: std::fmt::Arguments<'_>) -> CloseReason {
    if let Some(suppressed) = REJECT_LOG.check() {
        info!(session = s.id().get(), peer = %s.peer(), reason, suppressed, "closing client: {detail}");
    }
    CloseReason::Protocol(reason)
}

/// Clients reaching an IPv6 listener from IPv4 appear as `::ffff:a.b.c.d`;
/// the LoginSrv and block lists want the plain IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl Handler for GateHandler {
    type State = ClientState;

    const LABELS: &'static [&'static str] = &reason::LABELS;

    fn on_open(&self, s: &Session) -> Result<ClientState, &'static str> {
        let id = s.id().get();
        let opened = self.links.pick().ok_or(PushError::Down).and_then(|link| {
            let generation = link.open(
                id,
                canonical(s.peer().ip()),
                self.gate_ip.unwrap_or_else(|| canonical(s.local().ip())),
            )?;
            Ok((link.clone(), generation))
        });
        let (link, generation) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                let (label, why) = match e {
                    PushError::Down => (reason::SERVER_UNAVAILABLE, "no LoginSrv link is up"),
                    PushError::Busy => (reason::SERVER_BUSY, "link buffer full"),
                };
                if let Some(suppressed) = REJECT_LOG.check() {
                    info!(peer = %s.peer(), reason = label, suppressed, "refusing client: {why}");
                }
                return Err(label);
            }
        };
        debug!(session = id, peer = %s.peer(), backend = link.backend(), "client opened");
        Ok(ClientState {
            framer: ClientFramer::new(self.max_packet_bytes.load(Ordering::Relaxed)),
            link,
            generation,
            tokens: f64::from(self.max_packets_per_sec.load(Ordering::Relaxed)),
            refilled: Instant::now(),
        })
    }

    fn on_data(
        &self,
        st: &mut ClientState,
        s: &Session,
        buf: &mut BytesMut,
    ) -> Result<Progress, CloseReason> {
        let id = s.id().get();
        let now = Instant::now();
        let mut progress = Progress::Partial;
        let max_packet = self.max_packet_bytes.load(Ordering::Relaxed);
        if st.framer.max_message() != max_packet {
            st.framer.set_max_message(max_packet);
        }
        if st.framer.stream_offset() == 0 && !matches!(buf.first(), Some(b'#' | b'*')) {
            match http_probe::probe(buf) {
                Probe::Http => {
                    return Err(reject(
                        s,
                        reason::HTTP_REQUEST,
                        format_args!("HTTP request on the game port"),
                    ))
                }
                Probe::Undecided => return Ok(progress),
                Probe::Other => {}
            }
        }
        let mut forwarded = 0u64;
        loop {
            let msg = match st.framer.decode(buf) {
                Ok(Some(msg)) => msg,
                Ok(None) => {
                    s.record_messages(forwarded);
                    return Ok(progress);
                }
                Err(e) => return Err(reject(s, e.reason(), format_args!("{e}"))),
            };
            if !self.admit_message(st, now) {
                return Err(reject(
                    s,
                    reason::FLOODING,
                    format_args!(
                        "more than {} messages per second",
                        self.max_packets_per_sec.load(Ordering::Relaxed)
                    ),
                ));
            }
            let checked = self
                .account_ops
                .load()
                .check(canonical(s.peer().ip()), &msg, now);
            let seen = match checked {
                Ok(seen) => seen,
                Err(over) => {
                    let what = match over {
                        OverLimit::NewAccounts => "new_accounts_per_ip_per_hour",
                        OverLimit::PasswordOps => "password_ops_per_ip_per_min",
                    };
                    return Err(reject(s, reason::NEW_ACCOUNTS, format_args!("over {what}")));
                }
            };
            match st.link.data(st.generation, id, &msg) {
                Ok(()) => {
                    progress = Progress::Message;
                    forwarded += 1;
                    if seen == Seen::Login {
                        self.logins_forwarded.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(PushError::Down) => return Err(CloseReason::Protocol(reason::SERVER_LOST)),
                Err(PushError::Busy) => {
                    return Err(reject(
                        s,
                        reason::SERVER_BUSY,
                        format_args!("link buffer full"),
                    ))
                }
            }
        }
    }

    fn on_close(&self, st: ClientState, s: &Session, why: CloseReason) {
        let id = s.id().get();
        let sent = st.link.close(st.generation, id);
        if let (Some(offence), Some(admission)) =
            (Offence::from_label(why.as_str()), self.admission.get())
        {
            self.punisher.punish(admission, s.peer().ip(), offence);
        }
        if self.log_connections.load(Ordering::Relaxed) {
            let stats = s.stats();
            info!(
                session = id,
                peer = %s.peer(),
                duration = format_args!("{:.1}s", stats.age.as_secs_f64()),
                messages = stats.messages,
                reason = why.as_str(),
                "session closed"
            );
        } else {
            debug!(session = id, peer = %s.peer(), reason = %why, close_frame_sent = sent, "client closed");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_idle_session_fits_the_384_byte_task_class() {
        // Tokio rounds a task to 128-byte multiples; its own fields take ~104 bytes and
        // the task tracker 8, so a future over 272 bytes costs every idle client 128
        // more (see `netcore::session_future_bytes`).
        let future = netcore::session_future_bytes::<super::GateHandler>();
        assert!(
            future <= 272,
            "the gate's session future grew to {future} bytes"
        );
    }
}
