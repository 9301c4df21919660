//! The link's reader: frames the LoginSrv's bytes, acts on each frame
//! through [`Dispatch`], sends heartbeats and watches for their replies.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mir2_proto::link::{self as wire, LinkError, LinkFramer, ServerFrame};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::stats::{metric, Count, UNDELIVERED_LABELS};
use super::supervisor::DownReason;
use super::{Generation, Link, LinkOptions};
use limits::LogLimiter;

/// What the link reader does with the LoginSrv's orders; the gate implements
/// it over the netcore registry, tests can implement it over anything.
pub trait Dispatch: Send + Sync + 'static {
    /// Queue `data` (one `#…!` as sent by the LoginSrv) for client `id`.
    fn deliver(&self, id: u32, data: Bytes) -> Result<(), Undelivered>;
    /// Flush what is queued for `id`, then close it.
    fn kick(&self, id: u32) -> Result<(), Undelivered>;
    /// Kick `id` and block its IP (temporarily or permanently).
    fn block(&self, id: u32, permanent: bool) -> Result<(), Undelivered>;
    /// The link dropped: every session opened on it is gone at the LoginSrv.
    fn link_lost(&self);
}

/// Why an order of the LoginSrv found no session to act on (counted by
/// label in `gate_link_replies_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undelivered {
    /// No live session has that id.
    UnknownSession,
    /// The session is closing.
    SessionClosed,
    /// The reply overflowed the client's queue; netcore closed it as a slow reader.
    SlowReader,
}

impl Undelivered {
    /// Stable label for metrics and logs.
    pub fn label(self) -> &'static str {
        UNDELIVERED_LABELS[self as usize]
    }
}

/// Rate limits for the log lines a LoginSrv can trigger at will; one per
/// link, kept across its reconnects.
pub(super) struct ReaderLogs {
    /// Frames that did not parse.
    parse: LogLimiter,
    /// Orders for no live session.
    undelivered: LogLimiter,
}

impl ReaderLogs {
    pub(super) const fn new() -> Self {
        ReaderLogs {
            parse: LogLimiter::new(5, Duration::from_secs(1)),
            undelivered: LogLimiter::new(5, Duration::from_secs(1)),
        }
    }
}

/// How often the counters are handed to the metrics facade while a
/// connection is up.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// Read and act on server frames until the connection fails or dies; queue
/// heartbeats on `generation` meanwhile.
pub(super) async fn read_loop(
    link: &Link,
    opts: &LinkOptions,
    dispatch: &dyn Dispatch,
    logs: &ReaderLogs,
    rd: &mut OwnedReadHalf,
    generation: Generation,
) -> DownReason {
    let counters = link.counters();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut framer = LinkFramer::new(opts.max_frame_bytes);
    let mut junk_seen = 0u64;
    let every = |period: Duration| {
        let mut tick = tokio::time::interval_at(Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    };
    let mut heartbeat = every(opts.heartbeat);
    let mut publish = tokio::time::interval(PUBLISH_EVERY);
    publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dead_after = opts.dead_after;
    let dead = tokio::time::sleep(dead_after);
    tokio::pin!(dead);
    let mut retimed = link.state.timing.subscribe();
    retimed.mark_unchanged();
    // When the oldest unanswered heartbeat was queued: its reply gives the round trip.
    let mut heartbeat_sent: Option<Instant> = None;
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        tokio::select! {
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => return DownReason::ClosedByServer,
                Err(e) => return DownReason::Io(e),
                Ok(_) => loop {
                    match framer.next_frame(&mut buf) {
                        Ok(Some(body)) => {
                            counters.add(Count::FramesIn, 1);
                            if on_frame(link, dispatch, logs, body) {
                                let now = Instant::now();
                                dead.as_mut().reset(now + dead_after);
                                if let Some(sent) = heartbeat_sent.take() {
                                    let rtt = now.saturating_duration_since(sent);
                                    metrics::histogram!(metric::HEARTBEAT_RTT).record(rtt.as_secs_f64());
                                    link.state.history.set_rtt(rtt);
                                }
                            }
                        }
                        Ok(None) => break,
                        Err(LinkError::TooLong { max }) => return DownReason::FrameTooLong(max),
                        Err(e) => parse_error(link, logs, &e),
                    }
                    let junk = framer.junk_skipped();
                    if junk > junk_seen {
                        counters.add(Count::JunkBytes, junk - junk_seen);
                        junk_seen = junk;
                    }
                },
            },
            _ = heartbeat.tick() => {
                link.heartbeat(generation);
                heartbeat_sent.get_or_insert_with(Instant::now);
            }
            _ = publish.tick() => counters.publish(),
            Ok(()) = retimed.changed() => {
                if let Some(t) = *retimed.borrow_and_update() {
                    heartbeat = every(t.heartbeat);
                    dead_after = t.dead_after;
                    dead.as_mut().reset(Instant::now() + dead_after);
                }
            }
            () = &mut dead => return DownReason::Dead(dead_after),
        }
    }
}

/// Act on one server frame; `true` when it was a heartbeat reply.
fn on_frame(link: &Link, dispatch: &dyn Dispatch, logs: &ReaderLogs, body: Bytes) -> bool {
    let frame = match wire::parse_server_frame(link.frames(), body) {
        Ok(f) => f,
        Err(e) => {
            parse_error(link, logs, &e);
            return false;
        }
    };
    let (id, outcome) = match frame {
        ServerFrame::HeartbeatReply => return true,
        // An owned copy: a slice would pin the whole read buffer (16 KiB or
        // more) for as long as the reply waits in a client's queue, where
        // netcore accounts only its own few bytes, so clients that never
        // read could hold hundreds of times their `max_outbound_bytes`.
        ServerFrame::Data { id, data } => (id, dispatch.deliver(id, Bytes::copy_from_slice(&data))),
        ServerFrame::Kick { id } => (id, dispatch.kick(id)),
        ServerFrame::Block { id, permanent } => (id, dispatch.block(id, permanent)),
    };
    if let Err(why) = outcome {
        link.counters().undelivered(why as usize);
        if let Some(suppressed) = logs.undelivered.check() {
            debug!(
                id,
                reason = why.label(),
                suppressed,
                "link: LoginSrv frame for no live session dropped"
            );
        }
    }
    false
}

fn parse_error(link: &Link, logs: &ReaderLogs, e: &LinkError) {
    link.counters().parse_error(e);
    if let Some(suppressed) = logs.parse.check() {
        warn!(error = %e, suppressed, "link: bad frame from LoginSrv skipped");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use mir2_proto::link::Dialect;
    use parking_lot::Mutex;
    use tokio::io::AsyncWriteExt;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::link::run;

    /// Records what the link reader hands over.
    #[derive(Default)]
    struct Capture {
        /// (id, payload, whether the payload owned its memory alone).
        delivered: Mutex<Vec<(u32, Bytes, bool)>>,
    }

    impl Dispatch for Capture {
        fn deliver(&self, id: u32, data: Bytes) -> Result<(), Undelivered> {
            let unique = data.is_unique();
            self.delivered.lock().push((id, data, unique));
            Ok(())
        }
        fn kick(&self, _: u32) -> Result<(), Undelivered> {
            Ok(())
        }
        fn block(&self, _: u32, _: bool) -> Result<(), Undelivered> {
            Ok(())
        }
        fn link_lost(&self) {}
    }

    #[test]
    fn undelivered_labels_follow_the_enum() {
        assert_eq!(Undelivered::UnknownSession.label(), "unknown_session");
        assert_eq!(Undelivered::SessionClosed.label(), "session_closed");
        assert_eq!(Undelivered::SlowReader.label(), "slow_reader");
    }

    #[tokio::test]
    async fn delivered_replies_do_not_pin_the_read_buffer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let link = Link::new(Dialect::Wemade, 1 << 20);
        let opts = LinkOptions {
            addr: listener.local_addr().unwrap(),
            heartbeat: Duration::from_secs(30),
            dead_after: Duration::from_secs(60),
            reconnect_max: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
            max_frame_bytes: 16 * 1024,
        };
        let capture = Arc::new(Capture::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(link.clone(), opts, capture.clone(), stop.clone()));
        let (mut srv, _) = listener.accept().await.unwrap();
        srv.write_all(b"%7/#abc!$\0%8/#def!$\0").await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while capture.delivered.lock().len() < 2 {
            assert!(Instant::now() < deadline, "replies delivered in time");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let got = capture.delivered.lock().clone();
        assert_eq!(got[0].0, 7);
        assert_eq!(&got[0].1[..], b"#abc!");
        assert_eq!(got[1].0, 8);
        assert_eq!(&got[1].1[..], b"#def!");
        assert!(
            got.iter().all(|(_, _, unique)| *unique),
            "a reply shares the link's read buffer"
        );
        stop.cancel();
        drop(srv);
        task.await.unwrap();
    }
}
