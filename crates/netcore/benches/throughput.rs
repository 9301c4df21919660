//! Accept/open/close rate and data-path cost on loopback.
//!
//! `cargo bench -p netcore --bench throughput`
//! Client and server share one 2-worker runtime, so the numbers include the client's
//! work; they are for comparing builds on one machine, not absolute capacity.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use netcore::{CloseReason, Config, Handler, Progress, Server, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Newline echo; a line starting with `!` makes the server close the session.
#[derive(Default)]
struct Echo {
    closed: AtomicUsize,
}

impl Handler for Echo {
    type State = ();
    fn on_open(&self, _: &Session) -> Result<(), &'static str> {
        Ok(())
    }
    fn on_data(
        &self,
        _: &mut (),
        s: &Session,
        buf: &mut BytesMut,
    ) -> Result<Progress, CloseReason> {
        if buf.first() == Some(&b'!') {
            return Err(CloseReason::Protocol("bye"));
        }
        let Some(nl) = buf.iter().rposition(|&b| b == b'\n') else {
            return Ok(Progress::Partial);
        };
        let _ = s.send(buf.split_to(nl + 1).freeze());
        Ok(Progress::Message)
    }
    fn on_close(&self, _: (), _: &Session, _: CloseReason) {
        self.closed.fetch_add(1, Ordering::Relaxed);
    }
}

async fn start() -> (
    SocketAddr,
    Arc<Echo>,
    netcore::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let config = Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        backlog: 4096,
        max_connections: 20_000,
        max_conn_per_ip: 0,
        conn_rate_per_ip: 0,
        first_packet_timeout: Some(Duration::from_secs(30)),
        idle_timeout: Some(Duration::from_secs(60)),
        max_outbound_bytes: 4 << 20,
        metrics_prefix: "bench_",
        ..Config::default()
    };
    let handler = Arc::new(Echo::default());
    let server = Server::bind(config, Arc::clone(&handler)).await.unwrap();
    let addr = server.local_addrs()[0];
    let token = server.shutdown_token();
    let run = tokio::spawn(server.run());
    (addr, handler, token, run)
}

/// Connect, send "!", read until the server closes: one full session lifecycle.
async fn churn(addr: SocketAddr, total: usize, concurrency: usize, handler: &Echo) {
    let before = handler.closed.load(Ordering::Relaxed);
    let started = Instant::now();
    let per_task = total / concurrency;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            tokio::spawn(async move {
                let mut sink = [0u8; 16];
                for _ in 0..per_task {
                    let mut c = TcpStream::connect(addr).await.unwrap();
                    c.write_all(b"!\n").await.unwrap();
                    while c.read(&mut sink).await.unwrap_or(0) > 0 {}
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let done = per_task * concurrency;
    while handler.closed.load(Ordering::Relaxed) - before < done {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "accept+open+close: {done} sessions, {concurrency} concurrent clients: {:.0} sessions/s ({:.1} us each)",
        done as f64 / secs,
        secs * 1e6 / done as f64
    );
}

/// `conns` connections each pipelining `per_conn` 16-byte messages through the echo.
async fn pipelined(addr: SocketAddr, conns: usize, per_conn: usize) {
    const MSG: &[u8; 16] = b"0123456789abcde\n";
    let started = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            tokio::spawn(async move {
                let stream = TcpStream::connect(addr).await.unwrap();
                let (mut rd, mut wr) = stream.into_split();
                let writer = tokio::spawn(async move {
                    let batch: Vec<u8> =
                        MSG.iter().copied().cycle().take(MSG.len() * 4096).collect();
                    let mut left = per_conn;
                    while left > 0 {
                        let n = left.min(4096);
                        wr.write_all(&batch[..n * MSG.len()]).await.unwrap();
                        left -= n;
                    }
                    wr
                });
                let mut remaining = per_conn * MSG.len();
                let mut buf = vec![0u8; 64 * 1024];
                while remaining > 0 {
                    let n = rd.read(&mut buf).await.unwrap();
                    assert!(n > 0, "server closed early");
                    remaining -= n;
                }
                drop(writer.await.unwrap());
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let msgs = (conns * per_conn) as f64;
    println!(
        "pipelined echo: {conns} conns x {per_conn} msgs of 16 B: {:.2} M msgs/s, {:.0} ns/msg (client+server), {:.0} MB/s each way",
        msgs / secs / 1e6,
        secs * 1e9 / msgs,
        msgs * 16.0 / secs / 1e6
    );
}

/// One message in flight at a time: wake-up and syscall cost per round trip.
async fn ping_pong(addr: SocketAddr, rounds: usize) {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.set_nodelay(true).unwrap();
    let mut back = [0u8; 5];
    let started = Instant::now();
    for _ in 0..rounds {
        c.write_all(b"ping\n").await.unwrap();
        c.read_exact(&mut back).await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ping-pong: {rounds} round trips: {:.1} us per round trip",
        secs * 1e6 / rounds as f64
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (addr, handler, token, run) = start().await;
        churn(addr, 20_000, 32, &handler).await;
        pipelined(addr, 1, 1_000_000).await;
        pipelined(addr, 100, 20_000).await;
        ping_pong(addr, 20_000).await;
        token.cancel();
        run.await.unwrap();
    });
}
