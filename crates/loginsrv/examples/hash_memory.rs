//! Memory held by Argon2 under a registration burst: a LoginSrv in this
//! process at production cost (19 MiB, t=2), a gate on a real loopback
//! socket, N registrations at once (each hashes the password and the
//! recovery answers), then the process's RSS: idle before, peak during
//! (VmHWM), and after the burst.
//!
//! ```sh
//! cargo run --release -p loginsrv --example hash_memory -- --registrations 200
//! ```
#![allow(clippy::print_stdout)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::BytesMut;
use clap::Parser;
use loginsrv::{Config, SecurityConfig};
use mir2_proto::ids::{IdTable, MsgKind};
use mir2_proto::link::{self, LinkFramer, ServerFrame};
use mir2_proto::packet::{write_client_packet, Packet};
use mir2_proto::records::{UserEntry, UserEntryAdd};
use mir2_proto::{ClientFramer, Dialect, MsgHeader};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Args {
    /// Registrations sent at once (one gate client each).
    #[arg(long, default_value_t = 200)]
    registrations: u32,
    /// Bursts, one after another (the later ones show whether memory freed
    /// after the first is reused rather than piling up).
    #[arg(long, default_value_t = 1)]
    bursts: u32,
    /// Time allowed for each burst.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

/// A `/proc/self/status` field in KiB.
fn status_kib(field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("{field} not in /proc/self/status"))?;
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("unreadable {line}"))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn registration(account: &str) -> anyhow::Result<Vec<u8>> {
    let entry = UserEntry {
        account: account.into(),
        password: "pw1234".into(),
        quiz: "pet".into(),
        answer: "cat".into(),
        ..UserEntry::default()
    };
    let add = UserEntryAdd {
        quiz2: "city".into(),
        answer2: "paris".into(),
        birthday: "1990/01/01".into(),
        ..UserEntryAdd::default()
    };
    let header = MsgHeader::new(IdTable::delphi().id(MsgKind::CmAddNewUser), 0, 0, 0, 0);
    let mut msg = BytesMut::new();
    write_client_packet(
        &mut msg,
        Some(1),
        &header,
        &[&entry.to_bytes()?[..], &add.to_bytes()?[..]],
    );
    Ok(msg.to_vec())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let dir = tempfile::tempdir()?;
    let security = SecurityConfig {
        hashes_per_ip_per_minute: 0,
        ..SecurityConfig::default()
    };
    let permits = security.hash_permits();
    let m_kib = u64::from(security.argon2_m_kib);
    let config = Config {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        database: format!("sqlite://{}", dir.path().join("accounts.db").display()),
        max_clients_per_gate: args.registrations as usize + 1,
        security,
        ..Config::default()
    };
    let server = loginsrv::start(config).await?;
    let mut gate = TcpStream::connect(server.local_addr()).await?;
    let mut out = BytesMut::new();
    for id in 1..=args.registrations {
        let ip = IpAddr::from([192, 0, 2, 1]);
        link::write_open(Dialect::Delphi, &mut out, id, ip, ip);
    }
    gate.write_all(&out).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = status_kib("VmRSS:")?;

    let mut results = Vec::new();
    for burst in 0..args.bursts {
        let started = Instant::now();
        out.clear();
        for id in 1..=args.registrations {
            let msg = registration(&format!("h{burst}m{id}"))?;
            link::write_data(Dialect::Delphi, &mut out, id, &msg);
        }
        gate.write_all(&out).await?;
        let mut framer = LinkFramer::new(64 * 1024);
        let mut buf = BytesMut::new();
        let (mut created, mut answered) = (0u32, 0u32);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_secs);
        while answered < args.registrations {
            while let Some(body) = framer.next_frame(&mut buf)? {
                let ServerFrame::Data { data, .. } =
                    link::parse_server_frame(Dialect::Delphi, body)?
                else {
                    continue;
                };
                let mut bytes = BytesMut::from(&data[..]);
                if let Some(frame) = ClientFramer::new(8192).decode(&mut bytes)? {
                    let packet = Packet::parse(frame)?;
                    answered += 1;
                    if IdTable::delphi().kind(packet.header.ident) == Some(MsgKind::SmNewIdSuccess)
                    {
                        created += 1;
                    }
                }
            }
            if answered == args.registrations {
                break;
            }
            if tokio::time::timeout_at(deadline, gate.read_buf(&mut buf))
                .await
                .context("burst timed out")??
                == 0
            {
                bail!("LoginSrv closed the link");
            }
        }
        let elapsed = started.elapsed();
        tokio::time::sleep(Duration::from_secs(1)).await;
        results.push((
            created,
            elapsed,
            status_kib("VmHWM:")?,
            status_kib("VmRSS:")?,
        ));
    }
    drop(gate);
    server.shutdown().await;

    let budget = permits as u64 * m_kib + 20 * 1024;
    println!(
        "{permits} hash permits × {} MiB; idle RSS {:.1} MiB; targets: peak ≤ idle + {:.1} MiB \
         (permits × m + 20 MiB), after within 10 % of idle",
        mib(m_kib),
        mib(idle),
        mib(budget)
    );
    let mut failed = false;
    for (i, (created, elapsed, peak, after)) in results.into_iter().enumerate() {
        println!(
            "burst {}: {created}/{} registrations in {:.1} s; peak RSS {:.1} MiB (+{:.1}); \
             after {:.1} MiB ({:+.1} % of idle)",
            i + 1,
            args.registrations,
            elapsed.as_secs_f64(),
            mib(peak),
            mib(peak.saturating_sub(idle)),
            mib(after),
            (after as f64 / idle as f64 - 1.0) * 100.0
        );
        failed |= created != args.registrations;
    }
    if failed {
        bail!("some registrations failed");
    }
    Ok(())
}
