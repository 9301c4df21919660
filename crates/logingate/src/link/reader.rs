//! The link's reader: frames the LoginSrv's bytes, acts on each frame
//! through [`Dispatch`], sends heartbeats and watches for their replies.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mir2_proto::link::{self as wire, LinkError, LinkFramer, ServerFrame};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::time::Instant;
use tracing::{debug, info, warn};

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
    /// The link dropped: `sessions` (the ones opened on it and still open)
    /// are gone at the LoginSrv. Sessions of other links are not touched.
    fn link_lost(&self, sessions: &[u32]);
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

/// What one server frame was, for liveness and the wrong-dialect check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// It did not parse.
    Bad,
    /// A heartbeat reply: resets the dead timer.
    Heartbeat,
    /// A reply, kick or block for a client: proof the LoginSrv reads our frames.
    Reply,
}

/// Client messages forwarded against replies received in one window of
/// `server.silent_window_secs`: a LoginSrv that reads none of our frames (a
/// wrong dialect) answers heartbeats but never a client.
struct Silence {
    /// `Link::data_frames` when the window began.
    forwarded_mark: u64,
    /// Replies received in this window.
    replies: u64,
}

impl Silence {
    /// At the end of a window: how many messages went unanswered, when
    /// `threshold` or more went out and not one reply came back.
    fn end_window(&mut self, forwarded_now: u64, threshold: u64) -> Option<u64> {
        let forwarded = forwarded_now.saturating_sub(self.forwarded_mark);
        let silent = threshold > 0 && forwarded >= threshold && self.replies == 0;
        self.forwarded_mark = forwarded_now;
        self.replies = 0;
        silent.then_some(forwarded)
    }
}

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
    let check_silence = opts.silent_replies_warn > 0 && !opts.silent_window.is_zero();
    let window = opts.silent_window.max(Duration::from_millis(1));
    let mut silence_tick = tokio::time::interval_at(Instant::now() + window, window);
    silence_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut silence = Silence {
        forwarded_mark: link.data_frames(),
        replies: 0,
    };
    let connected = Instant::now();
    // Whether this connection has had its first valid frame.
    let mut confirmed = false;
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
                            let seen = on_frame(link, dispatch, logs, body);
                            if !confirmed && seen != Seen::Bad {
                                confirmed = true;
                                link.mark_answered();
                                answered(link, opts, generation, connected.elapsed());
                            }
                            if seen == Seen::Reply {
                                silence.replies += 1;
                            }
                            if seen == Seen::Heartbeat {
                                let now = Instant::now();
                                dead.as_mut().reset(now + dead_after);
                                if let Some(sent) = heartbeat_sent.take() {
                                    let rtt = now.saturating_duration_since(sent);
                                    metrics::histogram!(metric::HEARTBEAT_RTT, metric::BACKEND_LABEL => link.backend().to_owned()).record(rtt.as_secs_f64());
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
            _ = publish.tick() => {
                counters.publish(link.backend());
                link.set_gauge(metric::SESSIONS, link.live_sessions() as f64);
            }
            _ = silence_tick.tick(), if check_silence => {
                if let Some(forwarded) = silence.end_window(link.data_frames(), opts.silent_replies_warn) {
                    counters.add(Count::Silent, 1);
                    warn!(
                        addr = %opts.addr,
                        forwarded,
                        window_secs = opts.silent_window.as_secs(),
                        "link: {forwarded} client messages forwarded in {} s and not one reply: \
                         the LoginSrv likely reads another link dialect than {} \
                         (see the dialect table in the logingate README)",
                        opts.silent_window.as_secs(),
                        opts.dialect_key,
                    );
                }
            }
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

/// The first valid frame of a connection: the LoginSrv reads this gate.
fn answered(link: &Link, opts: &LinkOptions, generation: Generation, after: Duration) {
    link.set_gauge(metric::UP, 1.0);
    link.state.history.record(
        true,
        format!(
            "connected to {}, first frame after {} ms",
            opts.addr,
            after.as_millis()
        ),
    );
    info!(addr = %opts.addr, generation = generation.0, "link: up");
}

/// Act on one server frame.
fn on_frame(link: &Link, dispatch: &dyn Dispatch, logs: &ReaderLogs, body: Bytes) -> Seen {
    let frame = match wire::parse_server_frame(link.frames(), body) {
        Ok(f) => f,
        Err(e) => {
            parse_error(link, logs, &e);
            return Seen::Bad;
        }
    };
    let (id, outcome) = match frame {
        ServerFrame::HeartbeatReply => return Seen::Heartbeat,
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
    Seen::Reply
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
        fn link_lost(&self, _: &[u32]) {}
    }

    #[test]
    fn silence_is_messages_out_and_no_reply_in_one_window() {
        let mut s = Silence {
            forwarded_mark: 100,
            replies: 0,
        };
        assert_eq!(s.end_window(104, 5), None, "too few to judge");
        assert_eq!(s.end_window(110, 5), Some(6));
        s.replies = 1;
        assert_eq!(s.end_window(200, 5), None, "one reply proves the dialect");
        assert_eq!(s.end_window(200, 5), None, "nothing forwarded");
        assert_eq!(s.end_window(300, 0), None, "0 turns the check off");
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
        let addr = listener.local_addr().unwrap();
        let link = Link::new(addr, Dialect::Wemade, 1 << 20);
        let opts = LinkOptions {
            addr: listener.local_addr().unwrap(),
            heartbeat: Duration::from_secs(30),
            dead_after: Duration::from_secs(60),
            reconnect_max: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
            max_frame_bytes: 16 * 1024,
            silent_replies_warn: 0,
            silent_window: Duration::from_secs(30),
            dialect_key: "server.dialect = \"wemade\"".into(),
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
