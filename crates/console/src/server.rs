//! A small HTTP/1 server for the console, bounded so that it can be left
//! on next to the data path:
//!
//! - at most [`MAX_CONNECTIONS`] connections at once; one more is closed at
//!   accept (and counted), never queued;
//! - request headers within [`HEADER_TIMEOUT`] (this also ends idle
//!   keep-alive connections), each connection at most [`CONNECTION_LIFETIME`],
//!   so a slow client holds a slot for a bounded time and nothing else;
//! - handlers work on snapshot copies of shared state, so a client that reads
//!   its answer slowly holds only its own buffer.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{require_token, Guard};
use crate::error::ApiError;

/// Console connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// A request's headers must arrive within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest life of one console connection (a browser simply reconnects).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// On shutdown, how long open requests get to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// What every console adds around its routes: the token check on
/// state-changing requests, JSON answers for unknown paths and methods, and
/// headers that keep the answers out of caches and the page self-contained.
pub fn finish(routes: Router, guard: Guard) -> Router {
    routes
        .fallback(|| async { ApiError::not_found("no such path") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this path",
            )
        })
        .layer(axum::middleware::from_fn_with_state(guard, require_token))
        .layer(axum::middleware::map_response(
            |mut response: axum::response::Response| async move {
                let h = response.headers_mut();
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                h.insert(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                );
                h.insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(
                        "default-src 'none'; style-src 'unsafe-inline'; \
                         script-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
                    ),
                );
                response.into_response()
            },
        ))
}

/// A console serving in the background.
pub struct Running {
    /// Bound address (the real port when configured with port 0).
    addr: SocketAddr,
    /// Stops the accept loop and asks open connections to finish.
    stop: CancellationToken,
    /// The accept loop.
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("addr", &self.addr).finish()
    }
}

impl Running {
    /// Bind `addr` and serve `app` (already [`finish`]ed). Connections
    /// refused for the cap count as `refused_metric`.
    pub async fn start(
        addr: SocketAddr,
        app: Router,
        refused_metric: &'static str,
    ) -> io::Result<Running> {
        let listener = TcpListener::bind(addr).await?;
        Self::serve(listener, app, refused_metric)
    }

    /// Serve `app` on an already listening socket (handed over by a predecessor
    /// process or by systemd socket activation).
    pub fn start_on(
        listener: std::net::TcpListener,
        app: Router,
        refused_metric: &'static str,
    ) -> io::Result<Running> {
        listener.set_nonblocking(true)?;
        Self::serve(TcpListener::from_std(listener)?, app, refused_metric)
    }

    fn serve(
        listener: TcpListener,
        app: Router,
        refused_metric: &'static str,
    ) -> io::Result<Running> {
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, app, stop.clone(), refused_metric));
        Ok(Running { addr, stop, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting; open requests get a moment to finish.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    stop: CancellationToken,
    refused_metric: &'static str,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = stop.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "console: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics::counter!(refused_metric).increment(1);
            drop(stream);
            continue;
        };
        let (app, stop) = (app.clone(), stop.clone());
        tracker.spawn(async move {
            serve_connection(stream, app, stop).await;
            drop(slot);
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await;
}

async fn serve_connection(stream: TcpStream, app: Router, stop: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    tokio::pin!(conn);
    let lifetime = tokio::time::sleep(CONNECTION_LIFETIME);
    tokio::pin!(lifetime);
    tokio::select! {
        _ = conn.as_mut() => return,
        () = stop.cancelled() => {}
        () = &mut lifetime => {}
    }
    // Finish the request in flight, then close.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
}
