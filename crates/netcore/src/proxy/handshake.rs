//! The wait for a trusted front's PROXY header, then admission and the session.
//!
//! A connection from a trusted front runs in a small task of its own until its header
//! is in: it holds the socket, one global admission slot, a timer, and no session, no
//! registry entry and no receive buffer. Bytes are *peeked* into a stack window, so the
//! kernel keeps them until the header is known to be complete; then exactly the header's
//! bytes are consumed, and whatever the client sent after it stays in the socket for the
//! session's first read. Only a header that arrives in pieces is taken out of the kernel
//! piece by piece (so that the next peek waits for new bytes) into a heap buffer of
//! exactly its size, at most `MAX_HEADER_BYTES`.
//!
//! A header naming exactly the connection it arrives on (source = the TCP peer,
//! destination = our end) is the front speaking for itself (HAProxy's v1 health
//! checks send one): closed quietly like `LOCAL`.
//!
//! Once the header names the client, admission runs for the client's address, the
//! session is registered with that address as its peer, and the ordinary session task
//! (`conn::serve`) is spawned: after its header a front's connection costs exactly what
//! a direct one does.

use std::future::{poll_fn, Future};
use std::io;
use std::net::{SocketAddr, TcpStream as StdStream};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::ReadBuf;
use tokio::net::TcpStream;

use super::header::{self, Decoded, Source, MAX_HEADER_BYTES};
use super::{label, ProxyProtocol};
use crate::admission::FrontPermit;
use crate::reason::CloseReason;
use crate::server::Core;
use crate::Handler;

/// What a complete header with a client says.
#[derive(Debug, PartialEq, Eq)]
struct Carried {
    /// The client.
    client: SocketAddr,
    /// Where the client connected to.
    destination: Option<SocketAddr>,
}

/// Why a trusted peer's connection ends before it becomes a session.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// The rejection label and what exactly was wrong.
    Header(&'static str, &'static str),
    /// The front's own connection: closed quietly.
    Local,
    /// The server is shutting down.
    Shutdown,
}

/// Admits a trusted front's socket on its own address and starts the wait for its header.
/// Runs on the accept loop: no blocking, no await.
pub(crate) fn admit_front<H: Handler>(core: &Arc<Core<H>>, stream: StdStream, front: SocketAddr) {
    let permit = match core.admission.admit_front(front.ip()) {
        Ok(permit) => permit,
        Err(label) => {
            core.reject(label, front);
            return;
        }
    };
    let stream = match crate::listener::prepare(stream, core.config.nodelay) {
        Ok(stream) => stream,
        Err(e) => {
            core.reject(crate::metrics::reject::SOCKET_SETUP, front);
            core.log_error("socket_setup", &e);
            return;
        }
    };
    core.tracker
        .spawn(identify(Arc::clone(core), stream, front, permit));
}

/// Waits for the header, then hands the connection to a session task (or closes it).
/// A block, not an `async fn`, so the arguments are stored once (see `conn::serve`).
#[allow(clippy::manual_async_fn)] // deliberate, see above
fn identify<H: Handler>(
    core: Arc<Core<H>>,
    stream: TcpStream,
    front: SocketAddr,
    permit: FrontPermit,
) -> impl Future<Output = ()> + Send {
    async move {
        match read_header(&core, &stream).await {
            // The header describes this very connection (HAProxy's v1 health checks
            // send one): the front relays nobody, like LOCAL.
            Ok(carried) if describes_itself(&carried, front, &stream) => {
                refuse(&core, front, Refusal::Local)
            }
            Ok(carried) => start_session(&core, stream, front, carried.client, permit),
            Err(refusal) => refuse(&core, front, refusal),
        }
    }
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Source = the TCP peer and destination = our end: the header names the connection
/// it arrives on. A relayed client never does, since it connected to the front, not
/// to us.
fn describes_itself(carried: &Carried, front: SocketAddr, stream: &TcpStream) -> bool {
    carried.client == canonical(front)
        && carried.destination.is_some_and(|destination| {
            stream
                .local_addr()
                .is_ok_and(|local| canonical(local) == destination)
        })
}

/// Client admission by the carried address, registration, the session task.
fn start_session<H: Handler>(
    core: &Arc<Core<H>>,
    stream: TcpStream,
    front: SocketAddr,
    client: SocketAddr,
    permit: FrontPermit,
) {
    let permit = match permit.identify(client.ip()) {
        Ok(permit) => permit,
        Err(label) => {
            core.reject(label, client);
            return;
        }
    };
    let local = match stream.local_addr() {
        Ok(local) => local,
        Err(e) => {
            core.reject(crate::metrics::reject::SOCKET_SETUP, client);
            core.log_error("socket_setup", &e);
            return;
        }
    };
    let limits = Arc::clone(&core.send_limits);
    let Some(session) = core
        .sessions
        .register(|id| crate::Session::new(id, client, local, limits))
    else {
        core.reject(CloseReason::Shutdown.as_str(), client);
        return;
    };
    tracing::debug!(id = %session.id(), peer = %client, %front, "PROXY header accepted");
    core.tracker.spawn(crate::conn::serve(
        Arc::clone(core),
        stream,
        session,
        permit,
    ));
}

/// Counts and (rate-limited) logs a connection that never became a session.
fn refuse<H: Handler>(core: &Core<H>, front: SocketAddr, refusal: Refusal) {
    match refusal {
        Refusal::Header(reason, detail) => {
            core.metrics.rejected(reason);
            if let Some(suppressed) = core.log_limit.check_for(reason) {
                tracing::info!(%front, reason, detail, suppressed, "trusted proxy connection refused");
            }
        }
        Refusal::Local => {
            core.metrics.rejected(label::LOCAL);
            tracing::debug!(%front, "front's own connection (no client) closed");
        }
        Refusal::Shutdown => core.reject(CloseReason::Shutdown.as_str(), front),
    }
}

/// The header's verdict, bounded by the header timeout and by shutdown.
#[allow(clippy::manual_async_fn)] // deliberate, see `identify`
fn read_header<'a, H: Handler>(
    core: &'a Core<H>,
    stream: &'a TcpStream,
) -> impl Future<Output = Result<Carried, Refusal>> + 'a {
    async move {
        let mut deadline = pin!(tokio::time::sleep(core.sources.header_timeout));
        let mut cancelled = pin!(core.token.cancelled());
        // Header bytes already taken out of the kernel (only when it came in pieces).
        let mut held: Vec<u8> = Vec::new();
        let protocol = core.sources.protocol;
        poll_fn(|cx| {
            if cancelled.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(Refusal::Shutdown));
            }
            if let Poll::Ready(verdict) = poll_header(protocol, stream, &mut held, cx) {
                return Poll::Ready(verdict);
            }
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(Refusal::Header(
                    label::HEADER_TIMEOUT,
                    "no complete header in time",
                )));
            }
            Poll::Pending
        })
        .await
    }
}

/// One look at the socket: peek, judge, consume what is certainly header.
fn poll_header(
    protocol: ProxyProtocol,
    stream: &TcpStream,
    held: &mut Vec<u8>,
    cx: &mut Context<'_>,
) -> Poll<Result<Carried, Refusal>> {
    let invalid = |detail| Poll::Ready(Err(Refusal::Header(label::HEADER_INVALID, detail)));
    let missing = |detail| Poll::Ready(Err(Refusal::Header(label::HEADER_MISSING, detail)));
    loop {
        let have = held.len();
        if have >= MAX_HEADER_BYTES {
            return invalid("header longer than the accepted bound");
        }
        let mut window = [0u8; MAX_HEADER_BYTES];
        window[..have].copy_from_slice(held);
        let mut unread = ReadBuf::new(&mut window[have..]);
        match stream.poll_peek(cx, &mut unread) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(_)) => return missing("socket error before the header"),
            Poll::Ready(Ok(_)) => {}
        }
        let peeked = unread.filled().len();
        if peeked == 0 {
            return if have == 0 {
                missing("closed before sending anything")
            } else {
                invalid("closed inside the header")
            };
        }
        let (take, source) = match header::decode(protocol, &window[..have + peeked]) {
            Decoded::Complete {
                len,
                source,
                destination,
            } => (len.saturating_sub(have), Some((source, destination))),
            // Every byte seen is header: take them out, so the next peek waits for more.
            Decoded::Incomplete => (peeked, None),
            Decoded::Missing => return missing("stream does not begin with a PROXY header"),
            Decoded::Invalid(detail) => return invalid(detail),
        };
        // The read returns the bytes just peeked, into the same place in the window.
        let taken = match consume(stream, &mut window[have..have + take]) {
            Ok(taken) => taken,
            Err(_) => return missing("socket error before the header"),
        };
        match source {
            Some((source, destination)) if taken == take => {
                return Poll::Ready(match source {
                    Source::Client(client) => Ok(Carried {
                        client,
                        destination,
                    }),
                    Source::Local => Err(Refusal::Local),
                })
            }
            // A short read (not expected after a peek): keep what came and look again.
            _ => held.extend_from_slice(&window[have..have + taken]),
        }
    }
}

/// Reads up to `into.len()` bytes already known to be in the socket.
fn consume(stream: &TcpStream, into: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.try_read(into) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Server, Session};
    use bytes::BytesMut;

    struct Nop;
    impl Handler for Nop {
        type State = ();
        fn on_open(&self, _: &Session) -> Result<(), &'static str> {
            Ok(())
        }
        fn on_data(
            &self,
            _: &mut (),
            _: &Session,
            buf: &mut BytesMut,
        ) -> Result<crate::Progress, CloseReason> {
            buf.clear();
            Ok(crate::Progress::Message)
        }
        fn on_close(&self, _: (), _: &Session, _: CloseReason) {}
    }

    /// A connection waiting for its header must cost no more than an idle session: its
    /// task stays in tokio's 512-byte task cell (futures up to about 400 bytes fit),
    /// the cell a session task takes too, and it holds no `Session` or registry entry.
    #[tokio::test]
    async fn pending_header_future_stays_small() {
        let config = Config {
            listen: vec!["127.0.0.1:0".parse().expect("addr")],
            proxy: crate::proxy::ProxyConfig {
                protocol: ProxyProtocol::V2,
                trusted: vec!["127.0.0.0/8".parse().expect("net")],
                ..Default::default()
            },
            ..Config::default()
        };
        let server = Server::bind(config, Arc::new(Nop)).await.expect("bind");
        let core = server.core();
        let addr = server.local_addrs()[0];
        let client = std::net::TcpStream::connect(addr).expect("connect");
        client.set_nonblocking(true).expect("nonblocking");
        let stream = TcpStream::from_std(client).expect("register");
        let permit = core.admission.admit_front(addr.ip()).expect("admit");
        let future = identify(Arc::clone(&core), stream, addr, permit);
        let size = std::mem::size_of_val(&future);
        println!("pending-header future: {size} bytes");
        assert!(size <= 400, "pending-header future grew to {size} bytes");
    }
}
