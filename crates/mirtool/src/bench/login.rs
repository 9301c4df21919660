//! `login`: whole login/select-server flows through gate + LoginSrv.
//!
//! Two account modes:
//!
//! - fresh (default): one flow is connect → CM_ADDNEWUSER (a new account) →
//!   SM_NEWID_SUCCESS → CM_IDPASSWORD → SM_PASSOK_SELECTSERVER →
//!   CM_SELECTSERVER (first listed server) → SM_SELECTSERVER_OK → close. A
//!   selected session stays reserved on the LoginSrv until the SelGate claims
//!   it (or its TTL ends), so registering per flow sidesteps "already logged
//!   in"; it costs one more Argon2id hash per flow.
//! - reused (`--accounts N`, with `--prepare` to register them first,
//!   untimed): one flow is connect → CM_IDPASSWORD → CM_SELECTSERVER → close,
//!   what a returning player does. Player `p` of `P` cycles over accounts `p`,
//!   `p + P`, …, so a player never races its own previous login; an "already
//!   logged in" answer (the LoginSrv has not yet seen the previous connection
//!   of that account close) is retried on a new connection and counted.
//!
//! Latency is first connect to SM_SELECTSERVER_OK, retries included. The
//! LoginSrv's Argon2id hashing dominates, so this measures the login path, not
//! the gate's forwarding; give the LoginSrv a large server capacity and no
//! per-IP hash budget (every player comes from one address).

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
    /// Log in to these existing accounts (at least one per player) instead of
    /// registering a fresh account per flow; 0 = fresh accounts.
    #[arg(long, default_value_t = 0)]
    pub accounts: u64,
    /// Register the `--accounts` accounts before the window opens (untimed);
    /// a name already taken counts as registered, so runs can repeat.
    #[arg(long, requires = "accounts")]
    pub prepare: bool,
    /// Names of the `--accounts` accounts: this prefix and the account number.
    #[arg(long, default_value = "bl")]
    pub account_prefix: String,
}

/// Largest server→client message accepted (server lists are short).
const MAX_MESSAGE_BYTES: usize = 8192;
/// Failed flows whose reason is printed per load thread (the rest are only counted).
const ERRORS_PRINTED: u32 = 3;
/// SM_PASSWDFAIL code for "this account is logged in already".
const ALREADY_LOGGED_IN: i32 = -3;
/// SM_NEWID_FAIL code for "name taken": a prepared account from an earlier run.
const NAME_TAKEN: i32 = 0;
/// Longest account name the classic client sends.
const MAX_ACCOUNT_CHARS: usize = 10;
/// Registrations in flight while preparing accounts.
const PREPARE_IN_FLIGHT: u64 = 16;

/// Where each flow's account comes from.
#[derive(Debug, Clone)]
enum Accounts {
    /// A new account per flow, unique per run.
    Fresh {
        /// Per-run tag: accounts of earlier runs stay in the LoginSrv.
        run_tag: u64,
    },
    /// `count` existing accounts named `prefix` + number.
    Reused {
        /// Accounts in the pool.
        count: u64,
        /// Name prefix.
        prefix: String,
    },
}

impl Accounts {
    fn from_args(args: &Args) -> anyhow::Result<Accounts> {
        if args.accounts == 0 {
            let run_tag = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
                % (36u64.pow(3));
            return Ok(Accounts::Fresh { run_tag });
        }
        anyhow::ensure!(
            args.accounts >= args.players,
            "--accounts must be at least --players ({}): two players sharing an account \
             would log each other out",
            args.players
        );
        let longest = args.account_prefix.len() + (args.accounts - 1).to_string().len();
        anyhow::ensure!(
            !args.account_prefix.is_empty()
                && args
                    .account_prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric())
                && longest <= MAX_ACCOUNT_CHARS,
            "--account-prefix must be ASCII letters and digits, and with the account \
             number at most {MAX_ACCOUNT_CHARS} characters (got {longest})"
        );
        Ok(Accounts::Reused {
            count: args.accounts,
            prefix: args.account_prefix.clone(),
        })
    }

    /// The account of `player`'s `flow`-th flow.
    fn name(&self, player: u64, players: u64, flow: u64) -> String {
        match self {
            Accounts::Fresh { run_tag } => account_name(*run_tag, player, players, flow),
            Accounts::Reused { count, prefix } => {
                // Accounts player, player + players, … below count, cycled.
                let own = (count - player).div_ceil(players).max(1);
                pooled_name(prefix, player + (flow % own) * players)
            }
        }
    }
}

/// Account `n` of a reused pool.
fn pooled_name(prefix: &str, n: u64) -> String {
    format!("{prefix}{n}")
}

pub fn run(args: Args) -> anyhow::Result<Report> {
    let duration = secs("--duration", args.duration)?;
    let timeout = secs("--connect-timeout", args.common.connect_timeout)?;
    anyhow::ensure!(
        (1..=100_000).contains(&args.players),
        "--players must be 1..=100000"
    );
    let accounts = Accounts::from_args(&args)?;
    if let (true, Accounts::Reused { count, prefix }) = (args.prepare, &accounts) {
        prepare(&args, *count, prefix, timeout)?;
    }
    let a = args.clone();
    let stats = run_shards(args.common.threads, 0, "logins", move |ctx| {
        shard(ctx, a.clone(), accounts.clone(), duration, timeout)
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
        accounts: (args.accounts > 0).then_some(args.accounts),
        retries: (args.accounts > 0).then_some(stats.retries),
        ..Report::default()
    })
}

/// Registers accounts `0..count` (a taken name is one registered before);
/// any other answer stops the run before it starts.
fn prepare(args: &Args, count: u64, prefix: &str, timeout: Duration) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let began = Instant::now();
    runtime.block_on(async {
        let mut workers = tokio::task::JoinSet::new();
        for w in 0..PREPARE_IN_FLIGHT.min(count) {
            let (args, prefix) = (args.clone(), prefix.to_owned());
            workers.spawn(async move {
                for n in (w..count).step_by(PREPARE_IN_FLIGHT as usize) {
                    let name = pooled_name(&prefix, n);
                    let attempt = async {
                        let mut conn =
                            Conn::open(args.common.target, args.common.proxy, timeout).await?;
                        conn.register(&name, &args.password).await
                    };
                    tokio::time::timeout(timeout, attempt)
                        .await
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")))
                        .map_err(|e| anyhow::anyhow!("registering {name}: {e:#}"))?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(done) = workers.join_next().await {
            done??;
        }
        anyhow::Ok(())
    })?;
    if !args.common.json {
        eprintln!(
            "bench login: {count} accounts ready in {:.1} s",
            began.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

async fn shard(
    ctx: ShardCtx,
    args: Args,
    accounts: Accounts,
    duration: Duration,
    timeout: Duration,
) {
    let start = ctx.sync_start();
    let end = start + duration;
    let printed = std::rc::Rc::new(Cell::new(0u32));
    let mut loops = Vec::new();
    for player in ctx.client_ids(args.players) {
        let (args, accounts, stats, shared, printed) = (
            args.clone(),
            accounts.clone(),
            ctx.stats.clone(),
            ctx.shared.clone(),
            printed.clone(),
        );
        loops.push(tokio::task::spawn_local(async move {
            let mut flow = 0u64;
            while Instant::now() < end {
                let account = accounts.name(u64::from(player), args.players, flow);
                flow += 1;
                let began = Instant::now();
                let attempt = async {
                    match accounts {
                        Accounts::Fresh { .. } => fresh_flow(&args, &account, timeout).await,
                        Accounts::Reused { .. } => reused_flow(&args, &account, timeout).await,
                    }
                };
                let outcome = tokio::time::timeout(timeout, attempt)
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("flow timed out")));
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
    let mut name = String::with_capacity(MAX_ACCOUNT_CHARS);
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

/// A completed flow: how many "already logged in" answers it retried.
type FlowOutcome = anyhow::Result<u64>;

fn account_outcome(
    stats: &RefCell<ShardStats>,
    outcome: FlowOutcome,
    began: Instant,
    end: Instant,
    printed: &Cell<u32>,
) {
    let mut s = stats.borrow_mut();
    match outcome {
        Ok(retries) => {
            s.record(began.elapsed());
            s.messages += 1;
            s.connections += 1 + retries;
            s.retries += retries;
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

/// Register a new account, log in, select.
async fn fresh_flow(args: &Args, account: &str, timeout: Duration) -> FlowOutcome {
    let mut conn = Conn::open(args.common.target, args.common.proxy, timeout).await?;
    conn.register(account, &args.password).await?;
    match conn.login(account, &args.password).await? {
        Login::Listed(server) => conn.select(&server).await?,
        Login::AlreadyLoggedIn => anyhow::bail!("CM_IDPASSWORD: a new account is logged in"),
    }
    Ok(0)
}

/// Log in to an existing account, select; "already logged in" is retried on
/// a new connection (the flow's timeout bounds the retries).
async fn reused_flow(args: &Args, account: &str, timeout: Duration) -> FlowOutcome {
    let mut retries = 0;
    loop {
        let mut conn = Conn::open(args.common.target, args.common.proxy, timeout).await?;
        match conn.login(account, &args.password).await? {
            Login::Listed(server) => {
                conn.select(&server).await?;
                return Ok(retries);
            }
            Login::AlreadyLoggedIn => retries += 1,
        }
    }
}

/// Answer to CM_IDPASSWORD.
enum Login {
    /// Logged in; the first listed server's name.
    Listed(Vec<u8>),
    /// Refused: the account's previous login is still open on the LoginSrv.
    AlreadyLoggedIn,
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

    /// CM_ADDNEWUSER; a taken name counts as registered (an earlier run's account).
    async fn register(&mut self, account: &str, password: &str) -> anyhow::Result<()> {
        let entry = UserEntry {
            account: account.to_owned(),
            password: password.to_owned(),
            user_name: account.to_owned(),
            quiz: "bench".into(),
            answer: "bench".into(),
            ..UserEntry::default()
        }
        .to_bytes()?;
        let add = UserEntryAdd::default().to_bytes()?;
        self.send(MsgKind::CmAddNewUser, &[&entry, &add]).await?;
        let (h, _) = self.reply().await?;
        match self.ids.kind(h.ident) {
            Some(MsgKind::SmNewIdSuccess) => Ok(()),
            Some(MsgKind::SmNewIdFail) if h.recog == NAME_TAKEN => Ok(()),
            _ => Err(self.unexpected("CM_ADDNEWUSER", &h)),
        }
    }

    /// CM_IDPASSWORD.
    async fn login(&mut self, account: &str, password: &str) -> anyhow::Result<Login> {
        let creds = format!("{account}/{password}");
        self.send(MsgKind::CmIdPassword, &[creds.as_bytes()])
            .await?;
        let (h, body) = self.reply().await?;
        match self.ids.kind(h.ident) {
            Some(MsgKind::SmPassOkSelectServer) => {
                // Body: name/status/name/status/…/ — pick the first server.
                let list = mir2_proto::codec::decode(&body)?;
                let server = list.split(|&b| b == b'/').next().filter(|n| !n.is_empty());
                let server = server.ok_or_else(|| anyhow::anyhow!("empty server list"))?;
                Ok(Login::Listed(server.to_vec()))
            }
            Some(MsgKind::SmPasswdFail) if h.recog == ALREADY_LOGGED_IN => {
                Ok(Login::AlreadyLoggedIn)
            }
            _ => Err(self.unexpected("CM_IDPASSWORD", &h)),
        }
    }

    /// CM_SELECTSERVER, which must be answered SM_SELECTSERVER_OK.
    async fn select(&mut self, server: &[u8]) -> anyhow::Result<()> {
        self.send(MsgKind::CmSelectServer, &[server]).await?;
        let (h, _) = self.reply().await?;
        match self.ids.kind(h.ident) {
            Some(MsgKind::SmSelectServerOk) => Ok(()),
            _ => Err(self.unexpected("CM_SELECTSERVER", &h)),
        }
    }

    fn unexpected(&self, after: &str, h: &MsgHeader) -> anyhow::Error {
        match self.ids.kind(h.ident) {
            Some(kind) => anyhow::anyhow!("{after}: answered {} recog {}", kind.name(), h.recog),
            None => anyhow::anyhow!("{after}: answered unknown id {} recog {}", h.ident, h.recog),
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

    #[test]
    fn each_player_cycles_over_its_own_accounts() {
        let pool = Accounts::Reused {
            count: 5,
            prefix: "bl".into(),
        };
        let names = |player| -> Vec<String> { (0..4).map(|f| pool.name(player, 2, f)).collect() };
        assert_eq!(names(0), ["bl0", "bl2", "bl4", "bl0"]);
        assert_eq!(names(1), ["bl1", "bl3", "bl1", "bl3"]);
        let one_each = Accounts::Reused {
            count: 3,
            prefix: "x".into(),
        };
        assert_eq!(one_each.name(2, 3, 7), "x2");
    }
}
