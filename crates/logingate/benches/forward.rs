//! Forwarding throughput and link batching, in-process on loopback:
//! N clients ⇄ gate ⇄ echo LoginSrv (answers every `%A` with a reply).
//!
//! `cargo bench -p logingate --bench forward -- [clients] [window] [seconds]`
//! Each client keeps `window` messages in flight (writes them in one go and
//! waits for all replies). Reports messages/s (round trips), frames per link
//! write, round-trip latency of a window, and process CPU per message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use logingate::app::Gate;
use logingate::config::{Config, DialectName};
use mir2_proto::link::{self as wire, Dialect, GateFrame, LinkFramer};
use mir2_proto::MsgHeader;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An echo LoginSrv: every client message comes back as a server message.
async fn echo_login_server(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        stream.set_nodelay(true).unwrap();
        tokio::spawn(async move {
            let (mut rd, mut wr) = stream.into_split();
            let mut buf = BytesMut::with_capacity(64 * 1024);
            let mut out = BytesMut::with_capacity(64 * 1024);
            let mut framer = LinkFramer::new(64 * 1024);
            loop {
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                while let Ok(Some(body)) = framer.next_frame(&mut buf) {
                    match wire::parse_gate_frame(body) {
                        Ok((GateFrame::Data { id, data }, _)) => {
                            // "#1<hdr><body>!" -> "#<hdr><body>!"
                            let mut reply = Vec::with_capacity(data.len());
                            reply.push(b'#');
                            reply.extend_from_slice(data.get(2..).unwrap_or_default());
                            wire::write_reply(Dialect::Delphi, &mut out, id, &reply);
                        }
                        Ok((GateFrame::Heartbeat, _)) => {
                            wire::write_heartbeat_reply(Dialect::Delphi, &mut out)
                        }
                        _ => {}
                    }
                }
                if !out.is_empty() && wr.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
            }
        });
    }
}

/// User + system CPU of this process, from /proc (Linux).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the ")" of the command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // CLK_TCK is 100 on every Linux this runs on.
    Some(Duration::from_millis(ticks * 10))
}

fn main() {
    let nums: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let clients = nums.first().copied().unwrap_or(200) as usize;
    let window = nums.get(1).copied().unwrap_or(8) as usize;
    let secs = nums.get(2).copied().unwrap_or(5);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let srv_addr = listener.local_addr().unwrap();
        tokio::spawn(echo_login_server(listener));

        let mut config = Config::default();
        config.gate.listen = vec!["127.0.0.1:0".parse().unwrap()];
        config.gate.max_conn_per_ip = 0;
        config.gate.conn_rate_per_ip = 0;
        config.gate.max_packets_per_sec = 1_000_000;
        config.gate.stats_log_secs = 0;
        config.server.addr = Some(srv_addr);
        config.server.dialect = DialectName::Delphi;
        let gate = Gate::start(config).await.unwrap();
        assert!(gate.wait_link_up(Duration::from_secs(5)).await);
        let addr = gate.local_addrs()[0];

        let done = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for c in 0..clients {
            let done = done.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                s.set_nodelay(true).unwrap();
                let hdr = MsgHeader::new(2001, c as i32, 0, 0, 0).encode();
                let mut msgs = Vec::new();
                let mut want = Vec::new();
                for _ in 0..window {
                    msgs.extend_from_slice(b"#1");
                    msgs.extend_from_slice(&hdr);
                    msgs.extend_from_slice(b"YSIaX^ylTSIo!");
                    want.push(b'#');
                    want.extend_from_slice(&hdr);
                    want.extend_from_slice(b"YSIaX^ylTSIo!");
                }
                let mut got = vec![0u8; want.len()];
                let mut hist = hdrhistogram::Histogram::<u64>::new(3).unwrap();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    s.write_all(&msgs).await.unwrap();
                    s.read_exact(&mut got).await.unwrap();
                    assert_eq!(got, want, "client {c} got someone else's reply");
                    hist.record(t.elapsed().as_micros() as u64).unwrap();
                    done.fetch_add(window as u64, Ordering::Relaxed);
                }
                hist
            }));
        }
        let cpu0 = process_cpu();
        let t0 = Instant::now();
        let s0 = gate.link().stats();
        let mut hist = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        for t in tasks {
            hist.add(t.await.unwrap()).unwrap();
        }
        let elapsed = t0.elapsed();
        let cpu = process_cpu().zip(cpu0).map(|(a, b)| a.saturating_sub(b));
        let s1 = gate.link().stats();
        let msgs = done.load(Ordering::Relaxed);
        let frames = s1.frames - s0.frames;
        let writes = (s1.writes - s0.writes).max(1);
        println!("clients {clients}, window {window}, {secs} s");
        println!(
            "round trips: {msgs} in {:.2} s = {:.0} msgs/s",
            elapsed.as_secs_f64(),
            msgs as f64 / elapsed.as_secs_f64()
        );
        println!(
            "link: {frames} frames in {writes} writes = {:.1} frames/write",
            frames as f64 / writes as f64
        );
        println!(
            "window round trip: p50 {} us, p99 {} us, max {} us",
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.99),
            hist.max()
        );
        if let Some(cpu) = cpu {
            println!(
                "process CPU (clients + gate + echo server): {:.2} s = {:.1} us/msg",
                cpu.as_secs_f64(),
                cpu.as_secs_f64() * 1e6 / msgs.max(1) as f64
            );
        }
        gate.shutdown().await;
    });
}
