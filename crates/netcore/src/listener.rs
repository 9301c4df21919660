//! Listening sockets and the accept loop.
//!
//! Accepting goes through `AsyncFd<std::net::TcpListener>`: the kernel hands us a plain
//! fd, admission looks only at its address, and only an admitted socket is registered
//! with the reactor. A burst is drained up to `ACCEPT_BURST` sockets, then the loop
//! yields so one listener cannot starve the sessions on its worker.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;

use crate::server::Core;
use crate::Handler;

/// Sockets accepted per wake-up before yielding to other tasks.
const ACCEPT_BURST: usize = 64;
/// Pause after a resource error (EMFILE, ENFILE, ENOBUFS) before accepting again;
/// retrying at once would spin on a listener that stays readable.
const RESOURCE_BACKOFF: Duration = Duration::from_millis(50);

/// Binds a non-blocking listener with SO_REUSEADDR and the configured backlog.
pub(crate) fn bind(
    addr: SocketAddr,
    backlog: u32,
    defer_accept: Option<Duration>,
) -> io::Result<AsyncFd<StdListener>> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // Explicit so behaviour does not depend on net.ipv6.bindv6only.
        socket.set_only_v6(true)?;
    }
    if let Some(wait) = defer_accept {
        set_defer_accept(&socket, wait)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    register(StdListener::from(socket))
}

/// Registers a non-blocking listener with the reactor.
pub(crate) fn register(listener: StdListener) -> io::Result<AsyncFd<StdListener>> {
    // `AsyncFd::new` is deprecated because safe code could register an fd it does not
    // own; here the AsyncFd owns the listener, so the fd lives exactly as long as the
    // registration. The safe alternative (tokio's TcpListener) registers every accepted
    // socket with the reactor before admission could refuse it.
    #[allow(deprecated)]
    AsyncFd::new(listener)
}

/// TCP_DEFER_ACCEPT: the kernel finishes the handshake but hands the connection to
/// `accept` only once data arrives (or `wait` passes), so a flood of connections that say
/// nothing never costs user space anything. Neither std (unstable) nor socket2 exposes it.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_defer_accept(socket: &Socket, wait: Duration) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let secs = libc::c_int::try_from(wait.as_secs().max(1)).unwrap_or(libc::c_int::MAX);
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>())
        .map_err(|_| io::Error::other("socklen_t overflow"))?;
    // SAFETY: the fd belongs to `socket`, which is alive for the whole call; the value
    // points at a c_int that outlives the call and `len` is exactly its size, as
    // setsockopt(2) requires. Nothing is retained by the kernel after it returns.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            std::ptr::from_ref(&secs).cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_defer_accept(_socket: &Socket, wait: Duration) -> io::Result<()> {
    tracing::warn!(?wait, "defer_accept exists only on Linux; ignored");
    Ok(())
}

/// Accepts until the accept token (or the shutdown token, its parent) fires.
pub(crate) async fn accept_loop<H: Handler>(core: Arc<Core<H>>, listener: AsyncFd<StdListener>) {
    loop {
        let mut guard = tokio::select! {
            biased;
            () = core.accept_stop.cancelled() => return,
            ready = listener.readable() => match ready {
                Ok(guard) => guard,
                Err(e) => {
                    core.log_error("listener_poll", &e);
                    if core.pause(RESOURCE_BACKOFF).await { return; }
                    continue;
                }
            },
        };
        let mut backoff = false;
        for _ in 0..ACCEPT_BURST {
            match guard.get_inner().accept() {
                Ok((stream, peer)) => admit(&core, stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    guard.clear_ready();
                    break;
                }
                // The handshake died in the queue or a signal interrupted us: next one.
                Err(e) if is_per_connection(&e) => {}
                Err(e) => {
                    core.log_error("accept", &e);
                    backoff = true;
                    break;
                }
            }
        }
        drop(guard);
        if backoff {
            if core.pause(RESOURCE_BACKOFF).await || core.accept_stop.is_cancelled() {
                return;
            }
        } else {
            tokio::task::yield_now().await;
        }
    }
}

fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Source allow list, then admission (or, for a trusted front, the wait for its PROXY
/// header), then registration, then the session task. Runs on the accept loop, so
/// it must not block: every step is a few lock-free or short-lock operations.
fn admit<H: Handler>(core: &Arc<Core<H>>, stream: StdStream, peer: SocketAddr) {
    core.metrics.accepted();
    let ip = peer.ip().to_canonical();
    if !core.sources.allows(ip) {
        core.reject(crate::proxy::label::SOURCE_NOT_ALLOWED, peer);
        return;
    }
    if core.sources.trusts(ip) {
        crate::proxy::admit_front(core, stream, peer);
        return;
    }
    let permit = match core.admission.admit(peer.ip()) {
        Ok(permit) => permit,
        Err(label) => {
            core.reject(label, peer);
            return; // dropping the std socket closes it (FIN)
        }
    };
    let stream = match prepare(stream, core.config.nodelay) {
        Ok(stream) => stream,
        Err(e) => {
            core.reject(crate::metrics::reject::SOCKET_SETUP, peer);
            core.log_error("socket_setup", &e);
            return;
        }
    };
    let local = match stream.local_addr() {
        Ok(local) => local,
        Err(e) => {
            core.reject(crate::metrics::reject::SOCKET_SETUP, peer);
            core.log_error("socket_setup", &e);
            return;
        }
    };
    let limits = Arc::clone(&core.send_limits);
    let Some(session) = core
        .sessions
        .register(|id| crate::Session::new(id, peer, local, limits))
    else {
        core.reject(crate::reason::CloseReason::Shutdown.as_str(), peer);
        return;
    };
    core.tracker.spawn(crate::conn::serve(
        Arc::clone(core),
        stream,
        session,
        permit,
    ));
}

pub(crate) fn prepare(stream: StdStream, nodelay: bool) -> io::Result<TcpStream> {
    stream.set_nonblocking(true)?;
    if nodelay {
        stream.set_nodelay(true)?;
    }
    TcpStream::from_std(stream)
}
