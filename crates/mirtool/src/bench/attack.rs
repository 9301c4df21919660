//! `attack`: legitimate players keep logging in while many sources attack the gate.
//!
//! Attackers speak from 127.0.0.2 onwards, one address per source, and each source
//! commits one of the offences a flood is made of (source N the N-th of [`KINDS`], round
//! robin), so the punishment a source earns shows which offence earned it: connect
//! bursts, silent connections, byte trickles, HTTP requests, junk bytes, over-long
//! packets and registration bursts. Attack connections are started by a rate limiter
//! (`--attack-rate`, round robin over the sources; a connect burst is [`FLOOD_BURST`]
//! connects) for the first `--attack-secs` of the window, and bounded in number
//! (`--max-attack-conns`) and in life (`--hold`, the window's end).
//!
//! Players register once, then log in and select a server in a loop, each from its own
//! address: `--allowed` of them from 127.0.2.1 onwards (put `127.0.2.0/24` in the gate's
//! allow list), `--players` more from 127.0.3.1 onwards. A login answered "already
//! online" (the previous loop's session is still reserved) is retried once on the same
//! connection, as the real client does; latency is connect to SM_SELECTSERVER_OK.
//!
//! What an attacker sees of its connection is what is reported: refused (closed before
//! it sent anything, within [`REFUSAL_PROBE`], far below any first-packet deadline),
//! closed by the gate after it offended, or still open when it gave up. The gate's own
//! counters (`gate_punishments_total`, the close reasons) say why.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use mir2_proto::ids::{IdTable, MsgKind};
use mir2_proto::records::{UserEntry, UserEntryAdd};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::report::{new_histogram, Latency};
use super::{build_runtime, connect_one, secs, spread_source, Common};
use crate::login::conn::{Conn, Reply};
use crate::login::Failure;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Window in which logins and attacks are started, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Attacking source addresses, 127.0.0.2 onwards (0 = no attack, the baseline).
    #[arg(long, default_value_t = 200)]
    pub attackers: u32,
    /// Attack starts per second, all sources together, at most.
    #[arg(long, default_value_t = 1000)]
    pub attack_rate: u32,
    /// The attack lasts this long from the start (default: the whole window), so the
    /// rest of the window shows the gate calming down.
    #[arg(long)]
    pub attack_secs: Option<f64>,
    /// Attack connections open at once, at most (a start finding none free is skipped).
    #[arg(long, default_value_t = 1000)]
    pub max_attack_conns: usize,
    /// Longest an attack connection is kept open, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub hold: f64,
    /// Players from allow-listed addresses, 127.0.2.1 onwards.
    #[arg(long, default_value_t = 10)]
    pub allowed: u32,
    /// Players from addresses that are not allow-listed, 127.0.3.1 onwards.
    #[arg(long, default_value_t = 40)]
    pub players: u32,
    /// Pause between two logins of one player, seconds.
    #[arg(long, default_value_t = 0.2)]
    pub think: f64,
    /// Password of every player account.
    #[arg(long, default_value = "benchpw1")]
    pub password: String,
}

/// Most attacking sources: the 127.0.0.x addresses below the players' subnets.
pub const MAX_ATTACKERS: u32 = 200;
/// Most players per group (one address each in a /24).
pub const MAX_PLAYERS: u32 = 250;
/// An accepted connection the gate closes this soon, before any byte was sent, was
/// refused by admission: the shortest first-packet deadline is a second.
pub const REFUSAL_PROBE: Duration = Duration::from_millis(100);
/// [`REFUSAL_PROBE`] for a connect burst: a refusal closes at accept time.
const FLOOD_PROBE: Duration = Duration::from_millis(5);
/// Pause between the bytes of a trickle.
const TRICKLE_EVERY: Duration = Duration::from_millis(300);
/// Registrations sent on one connection of a registration burst.
const REGISTRATIONS_PER_BURST: u64 = 10;
/// Bytes of the over-long packet (far above any `max_packet_bytes`).
const OVERSIZE_BYTES: usize = 16 * 1024;
/// Connects of one connect burst, back to back.
pub const FLOOD_BURST: u32 = 30;
/// How often the attack rate limiter starts a batch.
const ATTACK_TICK: Duration = Duration::from_millis(10);

/// The offences attackers cycle through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// Connect and close at once.
    ConnectFlood,
    /// Connect and send nothing.
    Silent,
    /// One byte of a message that never ends, every [`TRICKLE_EVERY`].
    Trickle,
    /// An HTTP request on the game port.
    Http,
    /// Bytes no Mir client sends.
    Junk,
    /// One packet longer than any limit.
    Oversize,
    /// CM_ADDNEWUSER after CM_ADDNEWUSER, fresh accounts each.
    Registration,
}

const KINDS: [Kind; 7] = [
    Kind::ConnectFlood,
    Kind::Silent,
    Kind::Trickle,
    Kind::Http,
    Kind::Junk,
    Kind::Oversize,
    Kind::Registration,
];

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::ConnectFlood => "connect_flood",
            Kind::Silent => "silent",
            Kind::Trickle => "trickle",
            Kind::Http => "http_request",
            Kind::Junk => "junk",
            Kind::Oversize => "oversize",
            Kind::Registration => "registration_burst",
        }
    }
}

/// How one attack connection ended, as the attacker saw it.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// The connect failed or timed out.
    ConnectFailed,
    /// Closed by the gate before the attacker sent anything.
    Refused,
    /// Closed by the gate after the attacker offended.
    ClosedByGate,
    /// Still open when the attacker gave up (or, for a connect flood, closed at once).
    ClosedByAttacker,
}

/// Counts of attack connections by outcome.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AttackCounts {
    /// Connections started.
    pub attempted: u64,
    /// Connects that failed or timed out.
    pub connect_failed: u64,
    /// Closed by the gate before a byte was sent: refused by admission.
    pub refused: u64,
    /// Closed by the gate after the offence.
    pub closed_by_gate: u64,
    /// Closed by the attacker (held to `--hold` or the window's end; connect floods).
    pub closed_by_attacker: u64,
}

impl AttackCounts {
    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::ConnectFailed => self.connect_failed += 1,
            Outcome::Refused => self.refused += 1,
            Outcome::ClosedByGate => self.closed_by_gate += 1,
            Outcome::ClosedByAttacker => self.closed_by_attacker += 1,
        }
    }
}

/// The attack side of the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AttackReport {
    /// Attacking source addresses.
    pub sources: u32,
    /// All attack connections.
    pub total: AttackCounts,
    /// How long the attack lasted, seconds.
    pub attack_s: f64,
    /// Attack connections started per second while it lasted.
    pub attempts_per_sec: f64,
    /// Starts skipped because `--max-attack-conns` were open.
    pub skipped_at_cap: u64,
    /// The same counts per kind of offence.
    pub by_kind: BTreeMap<&'static str, AttackCounts>,
}

/// One group of players (allow-listed or not).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlayerReport {
    /// Players in the group.
    pub players: u32,
    /// Players whose registration succeeded.
    pub registered: u64,
    /// Registrations that failed (the player then does not log in).
    pub register_failures: u64,
    /// Login flows started (connect, login, select).
    pub attempts: u64,
    /// Flows that reached SM_SELECTSERVER_OK.
    pub successes: u64,
    /// Flows that did not, whatever the reason.
    pub failures: u64,
    /// Of the failures: connections the gate closed or reset (or refused).
    pub closed_by_gate: u64,
    /// Logins answered "already online" and retried.
    pub retried: u64,
    /// Connect to SM_SELECTSERVER_OK of the successful flows.
    pub latency_us: Latency,
}

/// The whole result, printed as one JSON object with `--json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Always "attack".
    pub scenario: &'static str,
    /// `--label`.
    pub target_label: String,
    /// The gate's address.
    pub target: String,
    /// Seconds of the window.
    pub duration_s: f64,
    /// Players from allow-listed addresses.
    pub allowed: PlayerReport,
    /// Players from other addresses.
    pub others: PlayerReport,
    /// Connect to SM_SELECTSERVER_OK over both groups.
    pub latency_us: Latency,
    /// The attackers.
    pub attack: AttackReport,
}

/// A player group's counters while the run lasts.
struct Group {
    /// The counts reported.
    report: PlayerReport,
    /// Successful flows' latency, microseconds.
    hist: Histogram<u64>,
}

/// Everything the tasks record into.
struct Stats {
    /// Allow-listed players.
    allowed: Group,
    /// The other players.
    others: Group,
    /// Attack outcomes.
    attack: AttackReport,
}

impl Stats {
    fn group(&mut self, allowed: bool) -> &mut Group {
        if allowed {
            &mut self.allowed
        } else {
            &mut self.others
        }
    }
}

/// Settings every task reads.
struct Plan {
    /// The gate.
    target: SocketAddr,
    /// PROXY header, if asked for.
    proxy: crate::proxy::ProxyArgs,
    /// Per connect and per reply.
    timeout: Duration,
    /// End of the window: nothing new starts after it.
    end: Instant,
    /// End of the attack (at or before `end`).
    attack_end: Instant,
    /// `--hold`.
    hold: Duration,
    /// `--think`.
    think: Duration,
    /// `--password`.
    password: String,
    /// Keeps this run's account names apart from earlier runs'.
    run_tag: u64,
    /// Names of the attackers' registrations.
    registrations: AtomicU64,
}

pub fn run(args: Args) -> ExitCode {
    match run_report(&args) {
        Ok(report) => {
            if args.common.json {
                match serde_json::to_string(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => eprintln!("bench attack: {e}"),
                }
            } else {
                print_summary(&report);
            }
            let allowed = &report.allowed;
            if allowed.failures > 0
                || allowed.register_failures > 0
                || allowed.closed_by_gate + report.others.closed_by_gate > 0
            {
                eprintln!(
                    "bench attack: FAILED (an allow-listed login failed or a player's connection was closed)"
                );
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("mirtool bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_report(args: &Args) -> anyhow::Result<Report> {
    let duration = secs("--duration", args.duration)?;
    let timeout = secs("--connect-timeout", args.common.connect_timeout)?;
    let hold = secs("--hold", args.hold)?;
    let think = secs("--think", args.think)?;
    let attack_for = match args.attack_secs {
        Some(v) => secs("--attack-secs", v)?.min(duration),
        None => duration,
    };
    anyhow::ensure!(
        args.attackers <= MAX_ATTACKERS,
        "--attackers must be 0..={MAX_ATTACKERS}"
    );
    anyhow::ensure!(
        args.allowed <= MAX_PLAYERS && args.players <= MAX_PLAYERS,
        "--allowed and --players must be 0..={MAX_PLAYERS}"
    );
    anyhow::ensure!(
        (1..=1_000_000).contains(&args.attack_rate),
        "--attack-rate must be 1..=1000000"
    );
    anyhow::ensure!(
        (1..=100_000).contains(&args.max_attack_conns),
        "--max-attack-conns must be 1..=100000"
    );
    anyhow::ensure!(
        args.common.target.ip().is_loopback(),
        "--target must be a loopback address: the attack is for one's own gate"
    );
    let run_tag = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        % 36u64.pow(3);
    let stats = Arc::new(Mutex::new(Stats {
        allowed: Group {
            report: PlayerReport {
                players: args.allowed,
                ..PlayerReport::default()
            },
            hist: new_histogram(),
        },
        others: Group {
            report: PlayerReport {
                players: args.players,
                ..PlayerReport::default()
            },
            hist: new_histogram(),
        },
        attack: AttackReport {
            sources: args.attackers,
            attack_s: args.attack_secs.unwrap_or(args.duration).min(args.duration),
            ..AttackReport::default()
        },
    }));
    let runtime = build_runtime(args.common.threads.max(1))?;
    let args2 = args.clone();
    let stats2 = Arc::clone(&stats);
    runtime.block_on(async move {
        let now = Instant::now();
        let plan = Arc::new(Plan {
            target: args2.common.target,
            proxy: args2.common.proxy,
            timeout,
            end: now + duration,
            attack_end: now + attack_for,
            hold,
            think,
            password: args2.password.clone(),
            run_tag,
            registrations: AtomicU64::new(0),
        });
        let mut tasks = tokio::task::JoinSet::new();
        for (allowed, count, subnet) in [(true, args2.allowed, 2u8), (false, args2.players, 3)] {
            for i in 0..count {
                let source = IpAddr::V4(Ipv4Addr::new(127, 0, subnet, 1 + i as u8));
                let account = account_name(if allowed { 'g' } else { 'p' }, run_tag, u64::from(i));
                tasks.spawn(player(
                    Arc::clone(&plan),
                    Arc::clone(&stats2),
                    source,
                    allowed,
                    account,
                ));
            }
        }
        if args2.attackers > 0 {
            tasks.spawn(attack(
                Arc::clone(&plan),
                Arc::clone(&stats2),
                args2.clone(),
            ));
        }
        // Every task stops starting work at the window's end; the slowest step left is
        // one flow (a few timeouts) or one held connection.
        let drain = timeout * 4 + hold + duration;
        let drained =
            tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            eprintln!("bench attack: tasks still running after the drain; abandoned");
            tasks.abort_all();
        }
    });
    let mut guard = stats
        .lock()
        .map_err(|_| anyhow::anyhow!("a task panicked"))?;
    let s = &mut *guard;
    let mut all = new_histogram();
    for g in [&mut s.allowed, &mut s.others] {
        g.report.latency_us = Latency::from_histogram(&g.hist);
        all.add(&g.hist).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    s.attack.attempts_per_sec =
        s.attack.total.attempted as f64 / attack_for.as_secs_f64().max(1e-9);
    Ok(Report {
        scenario: "attack",
        target_label: args.common.label.clone(),
        target: args.common.target.to_string(),
        duration_s: args.duration,
        allowed: s.allowed.report.clone(),
        others: s.others.report.clone(),
        latency_us: Latency::from_histogram(&all),
        attack: s.attack.clone(),
    })
}

fn print_summary(r: &Report) {
    println!(
        "attack on {} ({}) for {} s",
        r.target, r.target_label, r.duration_s
    );
    for (name, g) in [("allow-listed", &r.allowed), ("other", &r.others)] {
        println!(
            "  {name} players {}: registered {} (failed {}), logins {} ok {} failed {} \
             (closed by the gate {}), retried {}, p50 {} µs p99 {} µs",
            g.players,
            g.registered,
            g.register_failures,
            g.attempts,
            g.successes,
            g.failures,
            g.closed_by_gate,
            g.retried,
            g.latency_us.p50,
            g.latency_us.p99
        );
    }
    let a = &r.attack;
    println!(
        "  attack from {} sources: {} connections ({:.0}/s, {} skipped at the cap): \
         refused {}, closed by the gate {}, closed by the attacker {}, connect failed {}",
        a.sources,
        a.total.attempted,
        a.attempts_per_sec,
        a.skipped_at_cap,
        a.total.refused,
        a.total.closed_by_gate,
        a.total.closed_by_attacker,
        a.total.connect_failed
    );
    for (kind, c) in &a.by_kind {
        println!(
            "    {kind}: {} started, refused {}, closed by the gate {}, by the attacker {}, connect failed {}",
            c.attempted, c.refused, c.closed_by_gate, c.closed_by_attacker, c.connect_failed
        );
    }
}

/// `prefix` + 3 base-36 chars of run tag + 6 of `n`: 10 characters, the classic
/// client's limit.
fn account_name(prefix: char, run_tag: u64, n: u64) -> String {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut name = String::with_capacity(10);
    name.push(prefix);
    for (mut v, digits) in [(run_tag, 3u32), (n, 6)] {
        let mut buf = [b'0'; 6];
        for slot in buf.iter_mut().take(digits as usize) {
            *slot = ALPHABET[(v % 36) as usize];
            v /= 36;
        }
        name.extend(buf[..digits as usize].iter().rev().map(|&b| char::from(b)));
    }
    name
}

/// CM_ADDNEWUSER's body parts for `account`.
fn new_user(account: &str, password: &str) -> Result<[Vec<u8>; 2], Failure> {
    let bad = |e: mir2_proto::records::RecordError| Failure::Connection(format!("record: {e}"));
    let entry = UserEntry {
        account: account.to_owned(),
        password: password.to_owned(),
        user_name: account.to_owned(),
        quiz: "bench".into(),
        answer: "bench".into(),
        ..UserEntry::default()
    }
    .to_bytes()
    .map_err(bad)?;
    let add = UserEntryAdd::default().to_bytes().map_err(bad)?;
    Ok([entry.to_vec(), add.to_vec()])
}

async fn connect_player(plan: &Plan, source: IpAddr) -> Result<Conn, Failure> {
    let stream = connect_one(plan.target, Some(source), plan.timeout, plan.proxy)
        .await
        .map_err(|e| Failure::Connection(format!("connect from {source}: {e}")))?;
    Ok(Conn::from_stream(stream, IdTable::delphi(), plan.timeout))
}

async fn register(plan: &Plan, source: IpAddr, account: &str) -> Result<(), Failure> {
    let mut conn = connect_player(plan, source).await?;
    let [entry, add] = new_user(account, &plan.password)?;
    conn.send(
        MsgKind::CmAddNewUser,
        0,
        &[entry.as_slice(), add.as_slice()],
    )
    .await?;
    let r = conn
        .reply(&[MsgKind::SmNewIdSuccess, MsgKind::SmNewIdFail])
        .await?;
    if r.kind == Some(MsgKind::SmNewIdFail) {
        return Err(Failure::Refused(format!(
            "SM_NEWID_FAIL {}",
            r.header.recog
        )));
    }
    Ok(())
}

/// One login flow; `Ok(true)` when it had to retry an "already online" answer.
async fn login(plan: &Plan, source: IpAddr, account: &str) -> Result<bool, Failure> {
    let mut conn = connect_player(plan, source).await?;
    let creds = format!("{account}/{}", plan.password);
    let mut retries = 0;
    let list: Reply = loop {
        conn.send(MsgKind::CmIdPassword, 0, &[creds.as_bytes()])
            .await?;
        let r = conn
            .reply(&[MsgKind::SmPassOkSelectServer, MsgKind::SmPasswdFail])
            .await?;
        match r.kind {
            Some(MsgKind::SmPasswdFail)
                if r.header.recog == ALREADY_ONLINE && retries < ALREADY_ONLINE_RETRIES =>
            {
                retries += 1;
                tokio::time::sleep(ALREADY_ONLINE_PAUSE).await;
            }
            Some(MsgKind::SmPasswdFail) => {
                return Err(Failure::Refused(format!(
                    "SM_PASSWD_FAIL {}",
                    r.header.recog
                )))
            }
            _ => break r,
        }
    };
    let server = list
        .body
        .split(|&b| b == b'/')
        .next()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Failure::Refused("empty server list".into()))?
        .to_vec();
    conn.send(MsgKind::CmSelectServer, 0, &[&server]).await?;
    let r = conn
        .reply(&[MsgKind::SmSelectServerOk, MsgKind::SmStartFail])
        .await?;
    if r.kind == Some(MsgKind::SmStartFail) {
        return Err(Failure::Refused("SM_STARTFAIL".into()));
    }
    Ok(retries > 0)
}

/// SM_PASSWD_FAIL's recog for "already logged in; the old session was closed, retry".
const ALREADY_ONLINE: i32 = -3;
/// Retries of an "already online" answer: the previous flow's close may still be on
/// its way to the LoginSrv.
const ALREADY_ONLINE_RETRIES: u32 = 3;
/// Pause before such a retry.
const ALREADY_ONLINE_PAUSE: Duration = Duration::from_millis(100);

/// Whether a failure means the gate refused, closed or reset the connection.
fn closed_by_gate(f: &Failure) -> bool {
    match f {
        Failure::Ended(_) => true,
        Failure::Refused(why) => why.contains("SM_OUTOFCONNECTION"),
        Failure::Connection(why) => why.contains("reset") || why.contains("refused"),
    }
}

fn describe(f: &Failure) -> &str {
    match f {
        Failure::Refused(w) | Failure::Connection(w) | Failure::Ended(w) => w,
    }
}

async fn player(
    plan: Arc<Plan>,
    stats: Arc<Mutex<Stats>>,
    source: IpAddr,
    allowed: bool,
    account: String,
) {
    let record = |f: &mut dyn FnMut(&mut Group)| {
        if let Ok(mut s) = stats.lock() {
            f(s.group(allowed));
        }
    };
    match register(&plan, source, &account).await {
        Ok(()) => record(&mut |g| g.report.registered += 1),
        Err(e) => {
            eprintln!(
                "bench attack: {account} from {source}: registration failed: {}",
                describe(&e)
            );
            record(&mut |g| g.report.register_failures += 1);
            return;
        }
    }
    let mut printed = 0u32;
    while Instant::now() < plan.end {
        let began = Instant::now();
        let outcome = login(&plan, source, &account).await;
        let took = began.elapsed();
        let closed = outcome.as_ref().err().is_some_and(closed_by_gate);
        if let Err(e) = &outcome {
            if printed < 3 {
                printed += 1;
                eprintln!(
                    "bench attack: {account} from {source}: login failed: {}",
                    describe(e)
                );
            }
        }
        record(&mut |g| {
            g.report.attempts += 1;
            match outcome {
                Ok(retried) => {
                    g.report.successes += 1;
                    g.report.retried += u64::from(retried);
                    let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                    g.hist.saturating_record(us.max(1));
                }
                Err(_) => {
                    g.report.failures += 1;
                    g.report.closed_by_gate += u64::from(closed);
                }
            }
        });
        tokio::time::sleep(plan.think).await;
    }
}

/// Starts attack connections at `--attack-rate` until the window ends.
async fn attack(plan: Arc<Plan>, stats: Arc<Mutex<Stats>>, args: Args) {
    let slots = Arc::new(Semaphore::new(args.max_attack_conns));
    let per_tick = f64::from(args.attack_rate) * ATTACK_TICK.as_secs_f64();
    let mut owed = 0.0f64;
    let mut n = 0u64;
    let mut tick = tokio::time::interval(ATTACK_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut running = tokio::task::JoinSet::new();
    while Instant::now() < plan.attack_end {
        tick.tick().await;
        owed += per_tick;
        while owed >= 1.0 {
            owed -= 1.0;
            let index = n % u64::from(args.attackers);
            let source = spread_source(index);
            let kind = KINDS[(index % KINDS.len() as u64) as usize];
            n += 1;
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                if let Ok(mut s) = stats.lock() {
                    s.attack.skipped_at_cap += 1;
                }
                continue;
            };
            let (plan, stats) = (Arc::clone(&plan), Arc::clone(&stats));
            running.spawn(async move {
                let connects = if kind == Kind::ConnectFlood {
                    FLOOD_BURST
                } else {
                    1
                };
                for _ in 0..connects {
                    let outcome = attack_once(&plan, source, kind).await;
                    if let Ok(mut s) = stats.lock() {
                        let a = &mut s.attack;
                        a.total.attempted += 1;
                        a.total.add(outcome);
                        let k = a.by_kind.entry(kind.as_str()).or_default();
                        k.attempted += 1;
                        k.add(outcome);
                    }
                }
                drop(slot);
            });
        }
        // Reap the finished ones so the set stays as small as the open connections.
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

async fn attack_once(plan: &Plan, source: IpAddr, kind: Kind) -> Outcome {
    let Ok(mut stream) = connect_one(plan.target, Some(source), plan.timeout, plan.proxy).await
    else {
        return Outcome::ConnectFailed;
    };
    let give_up = (Instant::now() + plan.hold).min(plan.end.max(Instant::now() + REFUSAL_PROBE));
    let mut sink = [0u8; 512];
    // Closed before we said anything: admission refused it. A burst looks only briefly,
    // or it would not be a burst.
    let probe = if kind == Kind::ConnectFlood {
        FLOOD_PROBE
    } else {
        REFUSAL_PROBE
    };
    if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(probe, stream.read(&mut sink)).await {
        return Outcome::Refused;
    }
    let sent = match kind {
        Kind::ConnectFlood => return Outcome::ClosedByAttacker,
        Kind::Silent => Ok(()),
        Kind::Trickle => return trickle(&mut stream, give_up).await,
        Kind::Http => {
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: gate\r\nUser-Agent: bench\r\n\r\n")
                .await
        }
        Kind::Junk => {
            stream
                .write_all(&[0u8, 1, 2, 3, 0x7f, 0xff, b'\r', b'\n'].repeat(8))
                .await
        }
        Kind::Oversize => {
            let mut p = Vec::with_capacity(OVERSIZE_BYTES + 3);
            p.extend_from_slice(b"#1");
            p.resize(OVERSIZE_BYTES + 2, b'A');
            p.push(b'!');
            stream.write_all(&p).await
        }
        Kind::Registration => registration_burst(plan, &mut stream).await,
    };
    if sent.is_err() {
        return Outcome::ClosedByGate;
    }
    wait_for_close(&mut stream, give_up).await
}

/// Reads and drops until the gate closes (or resets) the connection, or `until`.
async fn wait_for_close(stream: &mut TcpStream, until: Instant) -> Outcome {
    let mut sink = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(until.into(), stream.read(&mut sink)).await {
            Ok(Ok(0) | Err(_)) => return Outcome::ClosedByGate,
            Ok(Ok(_)) => {}
            Err(_) => return Outcome::ClosedByAttacker,
        }
    }
}

/// `#1AAAA…` one byte at a time, never the closing `!`.
async fn trickle(stream: &mut TcpStream, until: Instant) -> Outcome {
    let message = b"#1AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let mut at = 0usize;
    loop {
        if stream.write_all(&message[at..=at]).await.is_err() {
            return Outcome::ClosedByGate;
        }
        at = (at + 1).min(message.len() - 1);
        if let Outcome::ClosedByGate =
            wait_for_close(stream, (Instant::now() + TRICKLE_EVERY).min(until)).await
        {
            return Outcome::ClosedByGate;
        }
        if Instant::now() >= until {
            return Outcome::ClosedByAttacker;
        }
    }
}

/// CM_ADDNEWUSER messages for fresh accounts, as fast as the socket takes them.
async fn registration_burst(plan: &Plan, stream: &mut TcpStream) -> std::io::Result<()> {
    let ids = IdTable::delphi();
    let mut out = bytes::BytesMut::new();
    for seq in 0..REGISTRATIONS_PER_BURST {
        let n = plan.registrations.fetch_add(1, Ordering::Relaxed);
        let account = account_name('x', plan.run_tag, n);
        let Ok([entry, add]) = new_user(&account, &plan.password) else {
            continue;
        };
        let header = mir2_proto::MsgHeader::new(ids.id(MsgKind::CmAddNewUser), 0, 0, 0, 0);
        mir2_proto::packet::write_client_packet(
            &mut out,
            Some((seq % 9 + 1) as u8),
            &header,
            &[entry.as_slice(), add.as_slice()],
        );
    }
    stream.write_all(&out).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_fit_the_classic_client() {
        assert_eq!(account_name('g', 46_655, 0), "gzzz000000");
        assert_eq!(account_name('x', 0, 37), "x000000011");
        assert!(account_name('p', 1, 36u64.pow(6) - 1).len() == 10);
    }
}
