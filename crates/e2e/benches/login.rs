//! End-to-end logins per second: game clients → logingate → LoginSrv →
//! SQLite or PostgreSQL, all in-process on loopback.
//!
//! Each login is what a player does: connect to the gate, CM_IDPASSWORD,
//! wait for the server list, CM_SELECTSERVER, wait for the SelGate and
//! session id, disconnect.
//!
//! ```sh
//! cargo bench -p e2e --bench login -- --cost test --clients 16 --logins 4000
//! DATABASE_URL=postgres://… cargo bench -p e2e --bench login -- --backend postgres
//! ```
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::BytesMut;
use clap::Parser;
use logingate::app::Gate;
use logingate::config::{Config as GateConfig, Dialect};
use loginsrv::{Config, SecurityConfig};
use mir2_proto::ids::{IdTable, MsgKind};
use mir2_proto::packet::{write_client_packet, Packet};
use mir2_proto::records::{UserEntry, UserEntryAdd};
use mir2_proto::{ClientFramer, MsgHeader};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Args {
    /// sqlite (temporary file) or postgres (DATABASE_URL).
    #[arg(long, default_value = "sqlite")]
    backend: String,
    /// Argon2id cost: prod (19 MiB, t=2) or test (8 KiB, t=1).
    #[arg(long, default_value = "test")]
    cost: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Total logins to time.
    #[arg(long, default_value_t = 2000)]
    logins: u64,
    /// Accounts per client (cycled, so a closing client never races its own next login).
    #[arg(long, default_value_t = 4)]
    accounts_per_client: usize,
}

const TIMEOUT: Duration = Duration::from_secs(30);

struct Conn {
    stream: TcpStream,
    framer: ClientFramer,
    buf: BytesMut,
    seq: u8,
    ids: IdTable,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            framer: ClientFramer::new(8192),
            buf: BytesMut::with_capacity(1024),
            seq: 0,
            ids: IdTable::delphi(),
        })
    }

    async fn call(&mut self, kind: MsgKind, parts: &[&[u8]]) -> anyhow::Result<(MsgKind, i32)> {
        self.seq = self.seq % 9 + 1;
        let mut out = BytesMut::new();
        write_client_packet(
            &mut out,
            Some(self.seq),
            &MsgHeader::new(self.ids.id(kind), 0, 0, 0, 0),
            parts,
        );
        self.stream.write_all(&out).await?;
        loop {
            if let Some(frame) = self.framer.decode(&mut self.buf)? {
                let p = Packet::parse(frame)?;
                let kind = self.ids.kind(p.header.ident).context("unknown reply")?;
                return Ok((kind, p.header.recog));
            }
            let n = tokio::time::timeout(TIMEOUT, self.stream.read_buf(&mut self.buf)).await??;
            if n == 0 {
                bail!("gate closed the connection");
            }
        }
    }
}

fn account(client: usize, i: usize) -> String {
    format!("b{client}x{i}")
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0) as f64 / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let database = match args.backend.as_str() {
        "sqlite" => dir.path().join("accounts.db").display().to_string(),
        "postgres" => {
            std::env::var("DATABASE_URL").context("--backend postgres needs DATABASE_URL")?
        }
        other => bail!("unknown backend {other}"),
    };
    let security = match args.cost.as_str() {
        "prod" => SecurityConfig::default(),
        "test" => SecurityConfig::test_speed(),
        other => bail!("unknown cost {other}"),
    };
    // Every bench client is 127.0.0.1: lift the per-IP hashing budget.
    let security = SecurityConfig {
        hashes_per_ip_per_minute: 0,
        ..security
    };
    let srv = loginsrv::start(Config {
        listen: "127.0.0.1:0".parse()?,
        database,
        security,
        // Every timed login takes a session id; room for all of them.
        servers: vec![loginsrv::ServerRoute {
            name: "demo".into(),
            selgates: vec!["127.0.0.1:7100".parse()?],
            capacity: 1_000_000,
            public_addr: String::new(),
        }],
        ..Config::default()
    })
    .await?;
    let mut gc = GateConfig::default();
    gc.gate.listen = vec!["127.0.0.1:0".parse()?];
    gc.gate.max_conn_per_ip = 0;
    gc.gate.conn_rate_per_ip = 0;
    gc.gate.max_packets_per_sec = 100_000;
    gc.server.addr = Some(srv.local_addr());
    gc.server.dialect = Dialect::Delphi;
    let gate = Gate::start(gc).await?;
    if !gate.wait_link_up(TIMEOUT).await {
        bail!("gate link did not come up");
    }
    let addr = gate
        .local_addrs()
        .first()
        .copied()
        .context("gate address")?;

    // Accounts (names unique per run so PostgreSQL can be reused).
    let run = std::process::id() % 1000;
    let names: Vec<Vec<String>> = (0..args.clients)
        .map(|c| {
            (0..args.accounts_per_client)
                .map(|i| format!("{}{run}", account(c, i)))
                .collect()
        })
        .collect();
    let mut setup = Conn::connect(addr).await?;
    for name in names.iter().flatten() {
        let e = UserEntry {
            account: name.clone(),
            password: "benchpw".into(),
            ..UserEntry::default()
        }
        .to_bytes()?;
        let a = UserEntryAdd::default().to_bytes()?;
        let (kind, code) = setup.call(MsgKind::CmAddNewUser, &[&e, &a]).await?;
        if kind != MsgKind::SmNewIdSuccess && !(kind == MsgKind::SmNewIdFail && code == 0) {
            bail!("registering {name}: {kind:?} {code}");
        }
    }
    drop(setup);

    let next = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mine in names {
        let (next, retries, total) = (next.clone(), retries.clone(), args.logins);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0usize;
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let name = &mine[i % mine.len()];
                i += 1;
                let t = Instant::now();
                loop {
                    let mut c = Conn::connect(addr).await?;
                    let body = format!("{name}/benchpw");
                    match c.call(MsgKind::CmIdPassword, &[body.as_bytes()]).await? {
                        (MsgKind::SmPassOkSelectServer, _) => {}
                        (MsgKind::SmPasswdFail, -3) => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        other => bail!("login {name}: {other:?}"),
                    }
                    match c.call(MsgKind::CmSelectServer, &[b"demo"]).await? {
                        (MsgKind::SmSelectServerOk, sid) if sid > 0 => break,
                        other => bail!("select {name}: {other:?}"),
                    }
                }
                lat.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort_unstable();
    println!(
        "backend={} cost={} clients={} logins={} time={:.2}s rate={:.0}/s p50={:.1}ms p99={:.1}ms max={:.1}ms dup_retries={}",
        args.backend,
        args.cost,
        args.clients,
        all.len(),
        secs,
        all.len() as f64 / secs,
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        percentile(&all, 1.0),
        retries.load(Ordering::Relaxed),
    );
    gate.shutdown().await;
    srv.shutdown().await;
    Ok(())
}
