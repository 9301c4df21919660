//! `login`: whole register/login/select-server flows through gate + LoginSrv.
//!
//! Each player loops until the window closes; one flow is: connect →
//! CM_ADDNEWUSER (a fresh account) → SM_NEWID_SUCCESS → CM_IDPASSWORD →
//! SM_PASSOK_SELECTSERVER → CM_SELECTSERVER (first listed server) →
//! SM_SELECTSERVER_OK → close. Latency is connect to SM_SELECTSERVER_OK.
//!
//! Fresh accounts because a selected session stays reserved on the LoginSrv
//! until the SelGate claims it (or its TTL ends): logging the same account in
//! again would be answered "already logged in". The LoginSrv's Argon2id
//! hashing (two per flow) dominates, so this measures the login path, not the
//! gate's forwarding; give the LoginSrv a cheap hash cost and a large server
//! capacity for a throughput run.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use mir2_proto::ids::{IdTable, MsgKind};
use mir2_proto::packet::{write_client_packet, Packet};
use mir2_proto::records::{UserEntry, UserEntryAdd};
use mir2_proto::{ClientFramer, MsgHeader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::report::{Latency, Report};
use super::shard::{run_shards, ShardCtx, ShardStats};
use super::{connect_one, secs, Common};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent players, each looping over whole flows.
    #[arg(long, default_value_t = 10)]
    pub players: u64,
    /// Window in which flows are started, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Password of every bench account.
    #[arg(long, default_value = "benchpw1")]
    pub password: String,
}

/// Largest server→client message accepted (server lists are short).
const MAX_MESSAGE_BYTES: usize = 8192;
/// Failed flows whose reason is printed per load thread (the rest are only counted).
const ERRORS_PRINTED: u32 = 3;

pub fn run(args: Args) -> anyhow::Result<Report> {
    let duration = secs("--duration", args.duration)?;
    let timeout = secs("--connect-timeout", args.common.connect_timeout)?;
    anyhow::ensure!(
        (1..=100_000).contains(&args.players),
        "--players must be 1..=100000"
    );
    // Accounts of earlier runs stay in the LoginSrv: a per-run tag keeps names fresh.
    let run_tag = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        % (36u64.pow(3));
    let a = args.clone();
    let stats = run_shards(args.common.threads, 0, "logins", move |ctx| {
        shard(ctx, a.clone(), run_tag, duration, timeout)
    })?;
    Ok(Report {
        scenario: "login".into(),
        target_label: args.common.label.clone(),
        target: args.common.target.to_string(),
        clients: args.players,
        duration_s: args.duration,
        messages: stats.messages,
        msgs_per_sec: stats.in_window as f64 / args.duration,
        connections: stats.connections,
        conns_per_sec: stats.in_window as f64 / args.duration,
        latency_us: Latency::from_histogram(&stats.hist),
        errors: stats.errors,
        threads: args.common.threads as u64,
        ..Report::default()
    })
}

async fn shard(ctx: ShardCtx, args: Args, run_tag: u64, duration: Duration, timeout: Duration) {
    let start = ctx.sync_start();
    let end = start + duration;
    let printed = std::rc::Rc::new(Cell::new(0u32));
    let mut loops = Vec::new();
    for player in ctx.client_ids(args.players) {
        let (args, stats, shared, printed) = (
            args.clone(),
            ctx.stats.clone(),
            ctx.shared.clone(),
            printed.clone(),
        );
        loops.push(tokio::task::spawn_local(async move {
            let mut flow = 0u64;
            while Instant::now() < end {
                let account = account_name(run_tag, u64::from(player), args.players, flow);
                flow += 1;
                let began = Instant::now();
                let outcome =
                    tokio::time::timeout(timeout, login_flow(&args, &account, timeout)).await;
                let outcome = outcome.unwrap_or_else(|_| Err(anyhow::anyhow!("flow timed out")));
                account_outcome(&stats, outcome, began, end, &printed);
                shared.progress.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for l in loops {
        let _ = l.await;
    }
}

/// `b` + 3 base-36 chars of run tag + 6 base-36 chars of flow number: 10
/// characters, the classic client's limit, unique within a run for 2 billion flows.
fn account_name(run_tag: u64, player: u64, players: u64, flow: u64) -> String {
    let mut name = String::with_capacity(10);
    name.push('b');
    push_base36(&mut name, run_tag, 3);
    push_base36(&mut name, flow * players + player, 6);
    name
}

fn push_base36(out: &mut String, mut v: u64, digits: u32) {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut buf = [b'0'; 8];
    for slot in buf.iter_mut().take(digits as usize) {
        *slot = ALPHABET[(v % 36) as usize];
        v /= 36;
    }
    out.extend(
        buf.iter()
            .take(digits as usize)
            .rev()
            .map(|&b| char::from(b)),
    );
}

fn account_outcome(
    stats: &RefCell<ShardStats>,
    outcome: anyhow::Result<()>,
    began: Instant,
    end: Instant,
    printed: &Cell<u32>,
) {
    let mut s = stats.borrow_mut();
    match outcome {
        Ok(()) => {
            s.record(began.elapsed());
            s.messages += 1;
            s.connections += 1;
            if Instant::now() <= end {
                s.in_window += 1;
            }
        }
        Err(e) => {
            s.errors += 1;
            if printed.get() < ERRORS_PRINTED {
                printed.set(printed.get() + 1);
                eprintln!("bench login: flow failed: {e:#}");
            }
        }
    }
}

async fn login_flow(args: &Args, account: &str, timeout: Duration) -> anyhow::Result<()> {
    let mut conn = Conn::open(args.common.target, args.common.proxy, timeout).await?;

    let entry = UserEntry {
        account: account.to_owned(),
        password: args.password.clone(),
        user_name: account.to_owned(),
        quiz: "bench".into(),
        answer: "bench".into(),
        ..UserEntry::default()
    }
    .to_bytes()?;
    let add = UserEntryAdd::default().to_bytes()?;
    conn.send(MsgKind::CmAddNewUser, &[&entry, &add]).await?;
    conn.expect(MsgKind::SmNewIdSuccess, "CM_ADDNEWUSER")
        .await?;

    let creds = format!("{account}/{}", args.password);
    conn.send(MsgKind::CmIdPassword, &[creds.as_bytes()])
        .await?;
    let body = conn
        .expect(MsgKind::SmPassOkSelectServer, "CM_IDPASSWORD")
        .await?;
    // Body: name/status/name/status/…/ — pick the first server.
    let list = mir2_proto::codec::decode(&body)?;
    let server = list.split(|&b| b == b'/').next().filter(|n| !n.is_empty());
    let server = server
        .ok_or_else(|| anyhow::anyhow!("empty server list"))?
        .to_vec();

    conn.send(MsgKind::CmSelectServer, &[&server]).await?;
    conn.expect(MsgKind::SmSelectServerOk, "CM_SELECTSERVER")
        .await?;
    Ok(())
}

/// One client connection speaking `#…!` packets.
struct Conn {
    /// The client connection to the gate.
    stream: TcpStream,
    /// Splits the server's replies into whole `#…!` messages.
    framer: ClientFramer,
    /// Bytes read but not yet framed.
    rbuf: BytesMut,
    /// The message being sent.
    wbuf: BytesMut,
    /// Check digit of the next message (1..=9, cycling like a real client).
    seq: u8,
    /// Message ids (Delphi numbering) for building and recognising messages.
    ids: IdTable,
}

impl Conn {
    async fn open(
        target: SocketAddr,
        proxy: crate::proxy::ProxyArgs,
        timeout: Duration,
    ) -> anyhow::Result<Conn> {
        Ok(Conn {
            stream: connect_one(target, None, timeout, proxy).await?,
            framer: ClientFramer::new(MAX_MESSAGE_BYTES),
            rbuf: BytesMut::with_capacity(1024),
            wbuf: BytesMut::with_capacity(512),
            seq: 1,
            ids: IdTable::delphi(),
        })
    }

    async fn send(&mut self, kind: MsgKind, body_parts: &[&[u8]]) -> anyhow::Result<()> {
        let h = MsgHeader::new(self.ids.id(kind), 0, 0, 0, 0);
        self.wbuf.clear();
        write_client_packet(&mut self.wbuf, Some(self.seq), &h, body_parts);
        self.seq = if self.seq >= 9 { 1 } else { self.seq + 1 };
        self.stream.write_all(&self.wbuf).await?;
        Ok(())
    }

    /// The next reply, which must be `want`; returns its still-encoded body.
    async fn expect(&mut self, want: MsgKind, after: &str) -> anyhow::Result<Bytes> {
        let (h, body) = self.reply().await?;
        match self.ids.kind(h.ident) {
            Some(kind) if kind == want => Ok(body),
            Some(kind) => anyhow::bail!("{after}: answered {} recog {}", kind.name(), h.recog),
            None => anyhow::bail!("{after}: answered unknown id {} recog {}", h.ident, h.recog),
        }
    }

    /// The next server message: its header and still-encoded body.
    async fn reply(&mut self) -> anyhow::Result<(MsgHeader, Bytes)> {
        loop {
            if let Some(frame) = self
                .framer
                .decode(&mut self.rbuf)
                .map_err(|e| anyhow::anyhow!("{e:?}"))?
            {
                let p = Packet::parse(frame).map_err(|e| anyhow::anyhow!("{e:?}"))?;
                return Ok((p.header, p.body));
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                anyhow::bail!("connection closed before the reply");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_fit_the_classic_client_and_differ() {
        let a = account_name(46_655, 0, 10, 0);
        let b = account_name(46_655, 1, 10, 0);
        let c = account_name(46_655, 0, 10, 1);
        assert_eq!(a, "bzzz000000");
        assert_eq!(b, "bzzz000001");
        assert_eq!(c, "bzzz00000a");
        assert!([&a, &b, &c].iter().all(|n| n.len() == 10));
    }
}
