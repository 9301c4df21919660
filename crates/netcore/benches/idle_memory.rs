//! User-space heap per idle session.
//!
//! `cargo bench -p netcore --bench idle_memory` (sessions: NETCORE_BENCH_SESSIONS, default 9000).
//! The client side runs in a child process (this same binary with `--client`) so the
//! server process only holds its own sockets. A counting global allocator measures the
//! live heap before and after the sessions connect, and again after each session has
//! exchanged one message (its receive buffer went back to the pool).
//!
//! The unsafe code below is the `GlobalAlloc` wrapper, which cannot be written without it.
#![allow(unsafe_code, clippy::unwrap_used, clippy::print_stdout)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use netcore::{CloseReason, Config, Handler, Progress, Server, Session};

/// Counts live heap bytes and blocks; forwards everything to the system allocator.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_BLOCKS: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged;
// the counters are plain atomics and never affect the returned memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        new
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> (isize, isize) {
    (
        LIVE_BYTES.load(Ordering::SeqCst),
        LIVE_BLOCKS.load(Ordering::SeqCst),
    )
}

/// Newline echo; no per-session state beyond a counter.
struct Echo;
impl Handler for Echo {
    type State = u32;
    fn on_open(&self, _: &Session) -> Result<u32, &'static str> {
        Ok(0)
    }
    fn on_data(
        &self,
        n: &mut u32,
        s: &Session,
        buf: &mut BytesMut,
    ) -> Result<Progress, CloseReason> {
        let Some(nl) = buf.iter().rposition(|&b| b == b'\n') else {
            return Ok(Progress::Partial);
        };
        *n += 1;
        let _ = s.send(buf.split_to(nl + 1).freeze());
        Ok(Progress::Message)
    }
    fn on_close(&self, _: u32, _: &Session, _: CloseReason) {}
}

/// Object sizes of the kernel slabs every connected socket uses (from /proc/slabinfo,
/// when readable): what the kernel holds per socket before any data is buffered.
fn kernel_slab_sizes() -> Vec<(String, u64)> {
    const SLABS: [&str; 5] = ["TCP", "TCPv6", "sock_inode_cache", "filp", "eventpoll_epi"];
    let Ok(text) = std::fs::read_to_string("/proc/slabinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let objsize = words.nth(2)?.parse().ok()?;
            SLABS.contains(&name).then(|| (name.to_string(), objsize))
        })
        .collect()
}

fn client(addr: SocketAddr, n: usize) {
    let mut conns: Vec<StdStream> = (0..n)
        .map(|_| StdStream::connect(addr).expect("connect"))
        .collect();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    writeln!(out, "connected").unwrap();
    let mut line = String::new();
    while stdin.lock().read_line(&mut line).unwrap() > 0 {
        match line.trim() {
            "ping" => {
                for c in &mut conns {
                    c.write_all(b"ping\n").unwrap();
                }
                let mut reply = [0u8; 5];
                for c in &mut conns {
                    c.read_exact(&mut reply).unwrap();
                }
                writeln!(out, "pinged").unwrap();
            }
            _ => return,
        }
        line.clear();
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..6000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--client") {
        let addr = args[pos + 1].parse().unwrap();
        let n = args[pos + 2].parse().unwrap();
        return client(addr, n);
    }
    let n: usize = std::env::var("NETCORE_BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let config = Config {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            max_connections: n + 100,
            max_conn_per_ip: 0,
            conn_rate_per_ip: 0,
            // Realistic: both timers armed.
            first_packet_timeout: Some(Duration::from_secs(600)),
            idle_timeout: Some(Duration::from_secs(600)),
            buffer_pool_max: 64,
            metrics_prefix: "bench_",
            ..Config::default()
        };
        let server = Server::bind(config, Arc::new(Echo)).await.unwrap();
        let addr = server.local_addrs()[0];
        let sessions = server.sessions();
        let token = server.shutdown_token();
        let run = tokio::spawn(server.run());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (base_bytes, base_blocks) = live();

        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--client", &addr.to_string(), &n.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut to_child = child.stdin.take().unwrap();
        let mut from_child = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        from_child.read_line(&mut line).unwrap();
        wait_for("sessions", || sessions.len() == n).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (b1, k1) = live();

        to_child.write_all(b"ping\n").unwrap();
        line.clear();
        from_child.read_line(&mut line).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (b2, k2) = live();

        let per = |b: isize| (b - base_bytes) as f64 / n as f64;
        let blocks = |k: isize| (k - base_blocks) as f64 / n as f64;
        println!("sessions: {n}");
        println!(
            "idle, never sent:        {:.0} B/session heap ({:.2} allocations/session)",
            per(b1),
            blocks(k1)
        );
        println!(
            "idle after one exchange: {:.0} B/session heap ({:.2} allocations/session; pool holds <= 64 x 8 KiB)",
            per(b2),
            blocks(k2)
        );
        println!(
            "extrapolated to 50,000 sessions: {:.1} MiB (never sent), {:.1} MiB (after exchange)",
            per(b1) * 50_000.0 / 1_048_576.0,
            per(b2) * 50_000.0 / 1_048_576.0
        );
        let slabs = kernel_slab_sizes();
        if !slabs.is_empty() {
            let listed: Vec<String> = slabs.iter().map(|(n, b)| format!("{n} {b} B")).collect();
            println!("kernel per socket (not ours; slab object sizes): {}", listed.join(", "));
        }

        to_child.write_all(b"exit\n").unwrap();
        child.wait().unwrap();
        wait_for("all closed", || sessions.is_empty()).await;
        token.cancel();
        run.await.unwrap();
        let _ = Bytes::new();
    });
}
