//! `bench soak`: the gate under a steady population for a long time, with
//! the disruptions of real service, sampled for leaks.
//!
//! Three processes, so each has its own descriptor table and CPU account:
//! `logingate` (the system under test, started here with a generated config),
//! `mirtool backend --mode soak` (the scripted LoginSrv: echo, kicks, blocks,
//! link drops, a ledger of every session) and this one (the clients).
//!
//! Every `--sample-secs` the gate's RSS, descriptors and threads are read from
//! `/proc/PID`, its live sessions and link state from the console's
//! `/api/status`, and the backend's ledger from its stats file. The run passes
//! when RSS and descriptors are flat (see [`verdict`]), every relayed message
//! ended exactly once (answered, or dropped with a connection the gate closed),
//! and every session the gate opened on a link was closed exactly once on it
//! (or forgotten with that link, which the gate closes itself by design).

mod load;
mod plot;
pub mod verdict;

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use load::{LoadSnapshot, Population};
use verdict::{judge, Point, SeriesVerdict};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run length, e.g. `30m`, `90s`, `1h` (default 30m, or 3m with --quick).
    #[arg(long)]
    pub duration: Option<String>,
    /// Three minutes with a link drop every 30 s (unless given otherwise).
    #[arg(long)]
    pub quick: bool,
    /// Multiplies the client counts and the churn rate (a CI smoke runs 0.01).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Clients that connect and never send.
    #[arg(long, default_value_t = 10_000)]
    pub idle: u32,
    /// Clients relaying one checked message at a time.
    #[arg(long, default_value_t = 1_000)]
    pub relay: u32,
    /// Milliseconds between a relaying client's messages.
    #[arg(long, default_value_t = 100)]
    pub relay_interval_ms: u64,
    /// Short-lived clients (connect, one message, leave) per second.
    #[arg(long, default_value_t = 100.0)]
    pub churn_per_sec: f64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10.0)]
    pub sample_secs: f64,
    /// Seconds between link drops by the scripted LoginSrv (default 60, quick 30).
    #[arg(long)]
    pub link_kill_secs: Option<f64>,
    /// Seconds between kick orders (0 = none).
    #[arg(long, default_value_t = 1.0)]
    pub kick_secs: f64,
    /// Seconds between temporary block orders (0 = none).
    #[arg(long, default_value_t = 5.0)]
    pub block_secs: f64,
    /// Largest drift from the plateau that passes, as a fraction.
    #[arg(long, default_value_t = 0.05)]
    pub tolerance: f64,
    /// The `logingate` binary (default: the one next to this `mirtool`).
    #[arg(long)]
    pub gate_bin: Option<PathBuf>,
    /// Directory for `<name>.json`, `<name>.md` and `<name>.svg`.
    #[arg(long, default_value = "bench/results")]
    pub output_dir: PathBuf,
    /// Base name of the output files.
    #[arg(long, default_value = "soak")]
    pub name: String,
}

/// The plan after defaults, `--quick` and `--scale`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub duration_secs: f64,
    pub idle: u32,
    pub relay: u32,
    pub relay_interval_ms: u64,
    pub churn_per_sec: f64,
    pub sample_secs: f64,
    pub link_kill_secs: f64,
    pub kick_secs: f64,
    pub block_secs: f64,
    pub tolerance: f64,
}

impl Plan {
    fn from_args(a: &Args) -> anyhow::Result<Plan> {
        let duration = match &a.duration {
            Some(d) => parse_duration(d)?,
            None if a.quick => Duration::from_secs(180),
            None => Duration::from_secs(1800),
        };
        anyhow::ensure!(
            a.scale > 0.0 && a.scale <= 10.0,
            "--scale must be in (0, 10], got {}",
            a.scale
        );
        anyhow::ensure!(
            (0.0..1.0).contains(&a.tolerance),
            "--tolerance must be in [0, 1), got {}",
            a.tolerance
        );
        let scaled = |n: u32| ((f64::from(n) * a.scale).round() as u32).max(1);
        let link_kill = a
            .link_kill_secs
            .unwrap_or(if a.quick { 30.0 } else { 60.0 });
        for (name, v) in [
            ("--sample-secs", a.sample_secs),
            ("--link-kill-secs", link_kill),
            ("--kick-secs", a.kick_secs),
            ("--block-secs", a.block_secs),
        ] {
            super::secs(name, v)?;
        }
        anyhow::ensure!(a.sample_secs >= 1.0, "--sample-secs must be at least 1");
        anyhow::ensure!(
            a.relay_interval_ms >= 1,
            "--relay-interval-ms must be at least 1"
        );
        Ok(Plan {
            duration_secs: duration.as_secs_f64(),
            idle: scaled(a.idle),
            relay: scaled(a.relay),
            relay_interval_ms: a.relay_interval_ms,
            churn_per_sec: a.churn_per_sec * a.scale,
            sample_secs: a.sample_secs,
            link_kill_secs: link_kill,
            kick_secs: a.kick_secs,
            block_secs: a.block_secs,
            tolerance: a.tolerance,
        })
    }

    fn population(&self) -> Population {
        Population {
            idle: self.idle,
            relay: self.relay,
            relay_interval: Duration::from_millis(self.relay_interval_ms),
            churn_per_sec: self.churn_per_sec,
        }
    }
}

/// `90`, `90s`, `30m`, `1h`, `1h30m`.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let bad = || anyhow::anyhow!("--duration {text:?}: expected e.g. 90s, 30m or 1h");
    let mut total = 0u64;
    let mut digits = String::new();
    for ch in text.trim().chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        let unit = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(bad()),
        };
        total = total
            .checked_add(n.checked_mul(unit).ok_or_else(bad)?)
            .ok_or_else(bad)?;
    }
    if !digits.is_empty() {
        total = total
            .checked_add(digits.parse().map_err(|_| bad())?)
            .ok_or_else(bad)?;
    }
    anyhow::ensure!(
        total > 0 && total <= 86_400,
        "--duration {text:?}: 1 s to 24 h"
    );
    Ok(Duration::from_secs(total))
}

/// The scripted LoginSrv's counters (its stats file).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct BackendStats {
    pub links: u64,
    pub link_kills: u64,
    pub opens: u64,
    pub closes: u64,
    pub forgotten: u64,
    pub open_now: i64,
    pub data: u64,
    pub heartbeats: u64,
    pub kicks: u64,
    pub blocks: u64,
    pub double_opens: u64,
    pub unopened_data: u64,
    pub unopened_closes: u64,
    pub bad_frames: u64,
}

/// One sample.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the clients started.
    pub t: f64,
    /// Gate VmRSS, KiB.
    pub rss_kib: u64,
    /// Gate open descriptors.
    pub fds: u64,
    /// Gate threads (tokio does not count its tasks outside `tokio_unstable`).
    pub threads: u64,
    /// Gate user + system CPU seconds so far.
    pub cpu_secs: f64,
    /// Live sessions by the console (`None`: the console did not answer).
    pub sessions: Option<u64>,
    /// Link up by the console.
    pub link_up: Option<bool>,
    /// Link connects so far by the console.
    pub link_connects: Option<u64>,
    /// The scripted LoginSrv's ledger.
    pub backend: BackendStats,
    /// The clients' counters.
    pub load: LoadSnapshot,
    /// 1-minute load average of the machine.
    pub loadavg: f64,
    /// Counted toward the verdict: link up and the population connected.
    pub steady: bool,
}

/// The whole result file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakResult {
    pub plan: Plan,
    pub started_unix: u64,
    pub nproc: usize,
    pub loadavg_start: String,
    pub loadavg_end: String,
    pub samples: Vec<Sample>,
    pub rss: SeriesVerdict,
    pub fds: SeriesVerdict,
    pub messages_pass: bool,
    pub messages_reason: String,
    pub frames_pass: bool,
    pub frames_reason: String,
    pub pass: bool,
}

pub fn run(args: Args) -> ExitCode {
    match soak(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("bench soak: FAILED (see the verdicts above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("mirtool bench soak: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Kills its child when dropped, so no early return leaves a process behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port (closed again at once; the gate binds it right after).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The gate's config: limits lifted as in `bench/gate.toml`, attack mode off
/// (reconnect waves are not an attack here), block frames understood, short
/// temporary blocks, a link that reconnects within a second.
fn gate_toml(admin: SocketAddr) -> String {
    format!(
        r#"log_format = "text"

[gate]
backlog = 4096
max_connections = 200000
max_conn_per_ip = 0
conn_rate_per_ip = 0
first_packet_timeout_secs = 0
idle_timeout_secs = 0
max_packets_per_sec = 1000000000
stats_log_secs = 0
temp_block_secs = 2

[gate.attack]
enter_conn_rate = 0

[server]
dialect = "happym2"
reconnect_max_secs = 1

[admin]
listen = "{admin}"
"#
    )
}

fn soak(args: &Args) -> anyhow::Result<bool> {
    let plan = Plan::from_args(args)?;
    super::raise_nofile_limit();
    let me = std::env::current_exe()?;
    let gate_bin = match &args.gate_bin {
        Some(p) => p.clone(),
        None => me.with_file_name("logingate"),
    };
    anyhow::ensure!(
        gate_bin.exists(),
        "no logingate at {} (build it, or pass --gate-bin)",
        gate_bin.display()
    );
    std::fs::create_dir_all(&args.output_dir)?;
    let work = std::env::temp_dir().join(format!("mirtool-soak-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = soak_in(args, &plan, &me, &gate_bin, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn soak_in(
    args: &Args,
    plan: &Plan,
    me: &Path,
    gate_bin: &Path,
    work: &Path,
) -> anyhow::Result<bool> {
    let period = |s: f64| format!("{s}");
    let backend_stats = work.join("backend.json");
    let mut backend = Reaped(
        Command::new(me)
            .args(["backend", "--mode", "soak", "--dialect", "happym2"])
            .args(["--listen", "127.0.0.1:0", "--stats-file"])
            .arg(&backend_stats)
            .args(["--kick-every", &period(plan.kick_secs)])
            .args(["--block-every", &period(plan.block_secs)])
            .args(["--link-kill-every", &period(plan.link_kill_secs)])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(work.join("backend.err"))?)
            .spawn()?,
    );
    let backend_addr: SocketAddr = {
        let out = backend
            .0
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("backend stdout"))?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        line.trim()
            .strip_prefix("listening on ")
            .ok_or_else(|| anyhow::anyhow!("backend said {line:?}"))?
            .parse()?
    };
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let config = work.join("gate.toml");
    std::fs::write(&config, gate_toml(admin))?;
    let gate = Reaped(
        Command::new(gate_bin)
            .arg("--config")
            .arg(&config)
            .args(["--listen", &listen.to_string()])
            .args(["--server", &backend_addr.to_string()])
            .arg("--data-dir")
            .arg(work.join("gate-data"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("gate.log"))?)
            .spawn()?,
    );
    let gate_pid = gate.0.id();
    let loadavg_start = loadavg();
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let samples = runtime.block_on(drive(plan, listen, admin, gate_pid, &backend_stats, work))?;
    drop(gate);
    drop(backend);

    let result = analyse(
        plan.clone(),
        samples,
        started_unix,
        loadavg_start,
        loadavg(),
    );
    let base = args.output_dir.join(&args.name);
    std::fs::write(
        base.with_extension("json"),
        serde_json::to_string_pretty(&result)?,
    )?;
    let md = markdown(&result);
    std::fs::write(base.with_extension("md"), &md)?;
    plot::draw(&result, &base.with_extension("svg"))?;
    println!("{md}");
    eprintln!("wrote {}.{{json,md,svg}}", base.display());
    Ok(result.pass)
}

/// Runs the clients for the planned time, sampling; then stops them and waits
/// for the gate to close every session.
async fn drive(
    plan: &Plan,
    target: SocketAddr,
    admin: SocketAddr,
    gate_pid: u32,
    backend_stats: &Path,
    work: &Path,
) -> anyhow::Result<Vec<Sample>> {
    // The gate and its link first.
    let ready = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = status(admin).await {
            if s["link"]["up"].as_bool() == Some(true) {
                break;
            }
        }
        if Instant::now() > ready {
            let log = std::fs::read_to_string(work.join("gate.log")).unwrap_or_default();
            anyhow::bail!("the gate's link did not come up in 30 s; gate log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ctx = load::Ctx::new(target, stop_rx);
    let tasks = load::start(&ctx, plan.population());
    let expected = u64::from(plan.idle + plan.relay);
    let began = Instant::now();
    let end = began + Duration::from_secs_f64(plan.duration_secs);
    let every = Duration::from_secs_f64(plan.sample_secs);
    let mut samples = Vec::new();
    let mut next = began + every;
    while next <= end {
        tokio::time::sleep_until(next.into()).await;
        next += every;
        let s = sample(began, gate_pid, admin, backend_stats, &ctx, expected).await;
        eprintln!(
            "soak {:>6.0}s rss {:>7} KiB fds {:>6} sessions {:>6} link {} kills {:>3} answered {:>9} dropped {:>6} lost {} dup {} corrupt {} load {:.2}{}",
            s.t,
            s.rss_kib,
            s.fds,
            s.sessions.map_or("?".into(), |n| n.to_string()),
            match s.link_up { Some(true) => "up", Some(false) => "DOWN", None => "?" },
            s.backend.link_kills,
            s.load.answered,
            s.load.dropped,
            s.load.lost,
            s.load.duplicates,
            s.load.corrupted,
            s.loadavg,
            if s.steady { "" } else { "  (not steady)" },
        );
        samples.push(s);
    }
    // Everyone leaves; the gate must then have closed every session it opened.
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }
    let settle = Instant::now() + Duration::from_secs(30);
    loop {
        let b = read_backend(backend_stats);
        if b.open_now == 0 || Instant::now() > settle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The stats file is rewritten every 500 ms: let the last close reach it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut last = sample(began, gate_pid, admin, backend_stats, &ctx, expected).await;
    last.steady = false;
    samples.push(last);
    Ok(samples)
}

fn read_backend(path: &Path) -> BackendStats {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// `field` of /proc/PID/status, first number.
fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next().and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn proc_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// utime + stime of /proc/PID/stat, seconds (the kernel's clock ticks are 100 Hz here
/// and on every mainstream Linux build).
fn proc_cpu_secs(pid: u32) -> f64 {
    const TICKS_PER_SEC: f64 = 100.0;
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(") ")?.1;
            let f: Vec<&str> = after.split_whitespace().collect();
            let u: f64 = f.get(11)?.parse().ok()?;
            let k: f64 = f.get(12)?.parse().ok()?;
            Some((u + k) / TICKS_PER_SEC)
        })
        .unwrap_or(0.0)
}

async fn sample(
    began: Instant,
    pid: u32,
    admin: SocketAddr,
    backend_stats: &Path,
    ctx: &load::Ctx,
    expected: u64,
) -> Sample {
    let st = status(admin).await;
    let sessions = st.as_ref().and_then(|s| s["sessions"]["live"].as_u64());
    let link_up = st.as_ref().and_then(|s| s["link"]["up"].as_bool());
    let link_connects = st.as_ref().and_then(|s| s["link"]["connects"].as_u64());
    let load = ctx.counters.snapshot();
    let connected = u64::try_from(load.idle_live + load.relay_live).unwrap_or(0);
    // 95 %: kicks, blocks and the short-lived clients move the count a little.
    let steady = link_up == Some(true)
        && connected * 100 >= expected * 95
        && sessions.is_some_and(|n| n * 100 >= expected * 95);
    Sample {
        t: began.elapsed().as_secs_f64(),
        rss_kib: proc_status(pid, "VmRSS:"),
        fds: proc_fds(pid),
        threads: proc_status(pid, "Threads:"),
        cpu_secs: proc_cpu_secs(pid),
        sessions,
        link_up,
        link_connects,
        backend: read_backend(backend_stats),
        load,
        loadavg: loadavg()
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        steady,
    }
}

/// `GET /api/status` on the console; `None` when it does not answer in 5 s.
async fn status(admin: SocketAddr) -> Option<serde_json::Value> {
    let get = async {
        let mut s = tokio::net::TcpStream::connect(admin).await.ok()?;
        let req = format!("GET /api/status HTTP/1.0\r\nHost: {admin}\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.ok()?;
        let text = String::from_utf8_lossy(&raw);
        let (_, body) = text.split_once("\r\n\r\n")?;
        serde_json::from_str(body).ok()
    };
    tokio::time::timeout(Duration::from_secs(5), get)
        .await
        .ok()
        .flatten()
}

/// Turns samples into verdicts.
pub fn analyse(
    plan: Plan,
    samples: Vec<Sample>,
    started_unix: u64,
    loadavg_start: String,
    loadavg_end: String,
) -> SoakResult {
    let series = |f: &dyn Fn(&Sample) -> f64| -> Vec<Point> {
        samples
            .iter()
            .map(|s| Point {
                t: s.t,
                v: f(s),
                cycle: s.backend.link_kills,
                steady: s.steady,
            })
            .collect()
    };
    let rss = judge(&series(&|s| s.rss_kib as f64), plan.tolerance);
    let fds = judge(&series(&|s| s.fds as f64), plan.tolerance);
    let last = samples.last();
    let l = last.map(|s| s.load.clone()).unwrap_or_default();
    let b = last.map(|s| s.backend.clone()).unwrap_or_default();
    let mut message_problems = Vec::new();
    if l.lost > 0 {
        message_problems.push(format!("{} lost", l.lost));
    }
    if l.duplicates > 0 {
        message_problems.push(format!("{} answered twice", l.duplicates));
    }
    if l.corrupted > 0 {
        message_problems.push(format!("{} corrupted", l.corrupted));
    }
    if l.answered + l.dropped + l.lost != l.sent {
        message_problems.push(format!(
            "sent {} but answered {} + dropped {} + lost {}",
            l.sent, l.answered, l.dropped, l.lost
        ));
    }
    if l.answered == 0 {
        message_problems.push("nothing answered".into());
    }
    let mut frame_problems = Vec::new();
    for (n, what) in [
        (b.double_opens, "second open frames"),
        (b.unopened_data, "data frames for no open session"),
        (b.unopened_closes, "close frames for no open session"),
    ] {
        if n > 0 {
            frame_problems.push(format!("{n} {what}"));
        }
    }
    if b.open_now != 0 {
        frame_problems.push(format!("{} sessions never closed", b.open_now));
    }
    if b.opens != b.closes + b.forgotten + u64::try_from(b.open_now).unwrap_or(0) {
        frame_problems.push(format!(
            "opens {} != closes {} + forgotten with their link {}",
            b.opens, b.closes, b.forgotten
        ));
    }
    if b.opens == 0 {
        frame_problems.push("no session opened".into());
    }
    let messages_pass = message_problems.is_empty();
    let frames_pass = frame_problems.is_empty();
    SoakResult {
        pass: rss.pass && fds.pass && messages_pass && frames_pass,
        plan,
        started_unix,
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg_start,
        loadavg_end,
        samples,
        rss,
        fds,
        messages_pass,
        messages_reason: message_problems.join("; "),
        frames_pass,
        frames_reason: frame_problems.join("; "),
    }
}

fn verdict_cell(pass: bool, reason: &str) -> String {
    if pass {
        "pass".into()
    } else {
        format!("**FAIL**: {reason}")
    }
}

/// The Markdown summary.
pub fn markdown(r: &SoakResult) -> String {
    use std::fmt::Write as _;
    let p = &r.plan;
    let mut m = String::new();
    let last = r.samples.last();
    let l = last.map(|s| s.load.clone()).unwrap_or_default();
    let b = last.map(|s| s.backend.clone()).unwrap_or_default();
    let peak = |f: &dyn Fn(&Sample) -> u64| r.samples.iter().map(f).max().unwrap_or(0);
    let cpu = last.map_or(0.0, |s| s.cpu_secs);
    let _ = writeln!(
        m,
        "`mirtool bench soak` — {:.0} s, {} idle + {} relaying clients (one message each per {} ms), \
         {:.0} short-lived clients/s, link dropped every {:.0} s, a kick every {} s, a temporary block every {} s; \
         {} cores, load average {} -> {}\n",
        p.duration_secs,
        p.idle,
        p.relay,
        p.relay_interval_ms,
        p.churn_per_sec,
        p.link_kill_secs,
        p.kick_secs,
        p.block_secs,
        r.nproc,
        r.loadavg_start,
        r.loadavg_end
    );
    let _ = writeln!(m, "| check | measured | verdict |\n|---|---|---|");
    let series_row = |name: &str, unit: &str, v: &SeriesVerdict, scale: f64| {
        format!(
            "| {name} flat within {:.0} % | plateau {:.1} {unit}, trend {:+.2} % over the run ({:+.1} {unit}/h), worst cycle end {:.2} % off, {} steady samples | {} |",
            p.tolerance * 100.0,
            v.plateau / scale,
            v.trend_fraction * 100.0,
            v.slope_per_hour / scale,
            v.worst_cycle_fraction * 100.0,
            v.samples,
            verdict_cell(v.pass, &v.reason)
        )
    };
    let _ = writeln!(m, "{}", series_row("gate RSS", "MiB", &r.rss, 1024.0));
    let _ = writeln!(m, "{}", series_row("gate descriptors", "fds", &r.fds, 1.0));
    let _ = writeln!(
        m,
        "| every message answered exactly once | sent {}, answered {}, dropped with a closed connection {}, lost {}, answered twice {}, corrupted {}; max latency {} µs | {} |",
        l.sent, l.answered, l.dropped, l.lost, l.duplicates, l.corrupted, l.max_latency_us,
        verdict_cell(r.messages_pass, &r.messages_reason)
    );
    let _ = writeln!(
        m,
        "| every open frame closed exactly once | opens {}, closes {}, forgotten with their link {}, open at the end {}; second opens {}, data/close for no open session {}/{} | {} |",
        b.opens, b.closes, b.forgotten, b.open_now, b.double_opens, b.unopened_data, b.unopened_closes,
        verdict_cell(r.frames_pass, &r.frames_reason)
    );
    let _ = writeln!(
        m,
        "\nDisruptions: {} link drops ({} link connections), {} kicks, {} temporary blocks. \
         Clients: {} connections made, {} connect errors, {} closed by the gate and reconnected; \
         short-lived {} answered, {} closed before their reply (link down or address blocked), {} connect errors, {} skipped. \
         Gate peak: RSS {:.1} MiB, {} fds, {} threads; CPU {:.1} s over the run.\n",
        b.link_kills,
        b.links,
        b.kicks,
        b.blocks,
        l.connects,
        l.connect_errors,
        l.closed_by_gate,
        l.churn_ok,
        l.churn_refused,
        l.churn_connect_errors,
        l.churn_skipped,
        peak(&|s| s.rss_kib) as f64 / 1024.0,
        peak(&|s| s.fds),
        peak(&|s| s.threads),
        cpu,
    );
    let _ = writeln!(
        m,
        "| t s | RSS MiB | fds | threads | sessions | link | drops | steady | load |\n|---:|---:|---:|---:|---:|---|---:|---|---:|"
    );
    for s in &r.samples {
        let _ = writeln!(
            m,
            "| {:.0} | {:.1} | {} | {} | {} | {} | {} | {} | {:.2} |",
            s.t,
            s.rss_kib as f64 / 1024.0,
            s.fds,
            s.threads,
            s.sessions.map_or("?".into(), |n| n.to_string()),
            match s.link_up {
                Some(true) => "up",
                Some(false) => "down",
                None => "?",
            },
            s.backend.link_kills,
            if s.steady { "yes" } else { "no" },
            s.loadavg
        );
    }
    let _ = writeln!(m, "\nResult: **{}**", if r.pass { "PASS" } else { "FAIL" });
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m").ok(), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("90s").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("90").ok(), Some(Duration::from_secs(90)));
        assert_eq!(
            parse_duration("1h30m").ok(),
            Some(Duration::from_secs(5400))
        );
        for bad in ["", "0s", "3x", "m", "25h", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    fn sample(t: f64, rss: u64, kills: u64, steady: bool) -> Sample {
        Sample {
            t,
            rss_kib: rss,
            fds: 11_000,
            threads: 3,
            cpu_secs: 0.0,
            sessions: Some(11_000),
            link_up: Some(true),
            link_connects: Some(1 + kills),
            backend: BackendStats {
                link_kills: kills,
                ..BackendStats::default()
            },
            load: LoadSnapshot::default(),
            loadavg: 0.0,
            steady,
        }
    }

    fn plan() -> Plan {
        Plan::from_args(&Args {
            duration: Some("3m".into()),
            quick: false,
            scale: 1.0,
            idle: 10,
            relay: 1,
            relay_interval_ms: 100,
            churn_per_sec: 1.0,
            sample_secs: 10.0,
            link_kill_secs: None,
            kick_secs: 1.0,
            block_secs: 5.0,
            tolerance: 0.05,
            gate_bin: None,
            output_dir: PathBuf::from("."),
            name: "soak".into(),
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn clean_ledgers_pass_and_each_fault_fails() {
        let mut samples: Vec<Sample> = (0..18u32)
            .map(|i| sample(f64::from(i) * 10.0, 40_000, u64::from(i) / 3, true))
            .collect();
        let mut end = sample(180.0, 40_000, 6, false);
        end.load = LoadSnapshot {
            sent: 100,
            answered: 90,
            dropped: 10,
            ..LoadSnapshot::default()
        };
        end.backend = BackendStats {
            link_kills: 6,
            opens: 50,
            closes: 30,
            forgotten: 20,
            ..BackendStats::default()
        };
        samples.push(end);
        let ok = analyse(plan(), samples.clone(), 0, String::new(), String::new());
        assert!(ok.pass, "{} / {}", ok.messages_reason, ok.frames_reason);
        assert!(markdown(&ok).contains("Result: **PASS**"));

        let mut twice = samples.clone();
        if let Some(s) = twice.last_mut() {
            s.load.duplicates = 1;
        }
        let r = analyse(plan(), twice, 0, String::new(), String::new());
        assert!(!r.messages_pass && r.messages_reason.contains("twice"));

        let mut unbalanced = samples.clone();
        if let Some(s) = unbalanced.last_mut() {
            s.load.sent = 101;
        }
        let r = analyse(plan(), unbalanced, 0, String::new(), String::new());
        assert!(!r.messages_pass && r.messages_reason.contains("sent 101"));

        let mut unclosed = samples.clone();
        if let Some(s) = unclosed.last_mut() {
            s.backend.open_now = 2;
            s.backend.opens = 52;
        }
        let r = analyse(plan(), unclosed, 0, String::new(), String::new());
        assert!(!r.frames_pass && r.frames_reason.contains("never closed"));

        let mut second_close = samples.clone();
        if let Some(s) = second_close.last_mut() {
            s.backend.unopened_closes = 1;
        }
        let r = analyse(plan(), second_close, 0, String::new(), String::new());
        assert!(!r.frames_pass);

        let mut leak = samples;
        for (i, s) in leak.iter_mut().enumerate() {
            s.rss_kib = 40_000 + 600 * i as u64;
        }
        let r = analyse(plan(), leak, 0, String::new(), String::new());
        assert!(!r.rss.pass && !r.pass);
    }

    #[test]
    fn quick_and_scale() {
        let mut a = Args {
            duration: None,
            quick: true,
            scale: 0.01,
            idle: 10_000,
            relay: 1_000,
            relay_interval_ms: 100,
            churn_per_sec: 100.0,
            sample_secs: 10.0,
            link_kill_secs: None,
            kick_secs: 1.0,
            block_secs: 5.0,
            tolerance: 0.05,
            gate_bin: None,
            output_dir: PathBuf::from("."),
            name: "soak".into(),
        };
        let p = Plan::from_args(&a).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.duration_secs, 180.0);
        assert_eq!(p.link_kill_secs, 30.0);
        assert_eq!((p.idle, p.relay), (100, 10));
        assert!((p.churn_per_sec - 1.0).abs() < 1e-9);
        a.scale = 0.0;
        assert!(Plan::from_args(&a).is_err());
    }
}
