//! `bench table`: the Markdown summary of a `bench/compare` results file,
//! with the gate/haproxy and gate/direct ratios and the goals.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::report::Report;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Results file written by `bench/compare`.
    #[arg(long)]
    pub input: PathBuf,
}

/// What `bench/compare` writes to `bench/results/<name>.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Results {
    /// Run name (`--name`): the results file's stem.
    #[serde(default)]
    pub name: String,
    /// The command line that produced it.
    #[serde(default)]
    pub command: String,
    /// Peak throughput runs, one per target.
    #[serde(default)]
    pub relay: Vec<RelayRun>,
    /// The same targets at half the gate's peak rate (open loop): the latency comparison.
    #[serde(default)]
    pub relay_half: Vec<RelayRun>,
    #[serde(default)]
    pub idle: Vec<IdleRun>,
    #[serde(default)]
    pub storm: Vec<StormRun>,
    /// Whole login flows through a gate with its embedded LoginSrv.
    #[serde(default)]
    pub login: Option<Report>,
    /// Cores, CPU model and kernel.
    #[serde(default)]
    pub machine: String,
    /// When it finished, and at which commit.
    #[serde(default)]
    pub date: String,
    /// 1/5/15-minute load averages before and after the run: other work skews results.
    #[serde(default)]
    pub load_average: String,
    /// Relay rounds per target; the tables show each target's median round.
    #[serde(default)]
    pub relay_rounds: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RelayRun {
    /// What the load generator measured.
    pub report: Report,
    /// CPU seconds (utime+stime) over the run of the proxy, or for direct of the echo
    /// backend (the floor: one read and one write per message).
    #[serde(default)]
    pub proxy_cpu_s: Option<f64>,
    /// VmRSS at the end of the run of the same process, KiB.
    #[serde(default)]
    pub proxy_rss_kib: Option<u64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct IdleRun {
    /// Target name.
    pub label: String,
    /// Idle connections opened.
    pub clients: u64,
    /// Connections still open when the hold ended.
    pub held: u64,
    /// Proxy VmRSS before the idle clients connected, KiB.
    pub rss_before_kib: u64,
    /// Proxy VmRSS while they are held, KiB.
    pub rss_held_kib: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StormRun {
    /// What the load generator measured.
    pub report: Report,
    /// Proxy process CPU seconds over the storm.
    #[serde(default)]
    pub proxy_cpu_s: Option<f64>,
    /// gate-echo's count of open frames during the storm (gate only).
    #[serde(default)]
    pub opens: Option<u64>,
    /// gate-echo's count of close frames during the storm (gate only).
    #[serde(default)]
    pub closes: Option<u64>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.input)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.input.display()))?;
    let results: Results = serde_json::from_str(&text)?;
    print!("{}", render(&results));
    Ok(())
}

fn cpu_us_per_msg(run: &RelayRun) -> Option<f64> {
    let msgs = run.report.messages;
    run.proxy_cpu_s
        .filter(|_| msgs > 0)
        .map(|s| s * 1e6 / msgs as f64)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.digits$}"))
}

fn find<'a, T>(runs: &'a [T], label: &str, get: impl Fn(&T) -> &str) -> Option<&'a T> {
    runs.iter().find(|r| get(r) == label)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn goal(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    }
}

/// The ratios of one peak relay load.
struct Peak {
    clients: u64,
    tput_vs_haproxy: Option<f64>,
    cpu_vs_floor: Option<f64>,
}

/// The ratios of one half-rate relay load.
struct Half {
    clients: u64,
    p99_vs_direct: Option<f64>,
    cpu_vs_floor: Option<f64>,
}

/// The p50, p90, p99, p99.9 and max cells of a table row.
fn percentiles(l: &super::report::Latency) -> String {
    format!("{} | {} | {} | {} | {}", l.p50, l.p90, l.p99, l.p999, l.max)
}

fn runs_at(runs: &[RelayRun], clients: u64) -> impl Iterator<Item = &RelayRun> {
    runs.iter().filter(move |x| x.report.clients == clients)
}

fn label_at<'a>(runs: &'a [RelayRun], clients: u64, label: &str) -> Option<&'a RelayRun> {
    runs_at(runs, clients).find(|x| x.report.target_label == label)
}

/// The peak relay table of the runs with `clients` clients, and its ratios.
fn relay_section(out: &mut String, r: &Results, clients: u64, rounds: &str) -> Peak {
    let _ = writeln!(
        out,
        "### Relay, {clients} clients (peak, closed loop{rounds})\n"
    );
    let _ = writeln!(out, "| target | clients×depth | msgs/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | CPU µs/msg | RSS MiB | lost/reord/corrupt |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for run in runs_at(&r.relay, clients) {
        let rep = &run.report;
        let _ = writeln!(
            out,
            "| {} | {}×{} | {:.0} | {} | {} | {} | {}/{}/{} |",
            rep.target_label,
            rep.clients,
            rep.depth,
            rep.msgs_per_sec,
            percentiles(&rep.latency_us),
            opt(cpu_us_per_msg(run), 2),
            opt(run.proxy_rss_kib.map(|k| k as f64 / 1024.0), 1),
            rep.lost,
            rep.reordered,
            rep.corrupted
        );
    }
    let relay = |label: &str| label_at(&r.relay, clients, label);
    let (gate, haproxy, direct) = (relay("logingate"), relay("haproxy"), relay("direct"));
    let tput = |x: Option<&RelayRun>| x.map(|x| x.report.msgs_per_sec);
    let cpu = |x: Option<&RelayRun>| x.and_then(cpu_us_per_msg);
    let peak = Peak {
        clients,
        tput_vs_haproxy: ratio(tput(gate), tput(haproxy)),
        cpu_vs_floor: ratio(cpu(gate), cpu(direct)),
    };
    let _ = writeln!(
        out,
        "\nCPU µs/msg is the proxy's; for direct it is the echo backend's, the floor ({} µs/msg).\n\
         Ratios: msgs/s gate/haproxy **{}**, gate/direct **{}**; CPU per msg gate/haproxy **{}**, \
         gate/floor **{}**.\n",
        opt(cpu(direct), 2),
        opt(peak.tput_vs_haproxy, 2),
        opt(ratio(tput(gate), tput(direct)), 2),
        opt(ratio(cpu(gate), cpu(haproxy)), 2),
        opt(peak.cpu_vs_floor, 2)
    );
    peak
}

/// The half-rate relay table of the runs with `clients` clients, and its ratios.
fn half_section(out: &mut String, r: &Results, clients: u64, rounds: &str) -> Half {
    let mut half = Half {
        clients,
        p99_vs_direct: None,
        cpu_vs_floor: None,
    };
    if runs_at(&r.relay_half, clients).next().is_none() {
        return half;
    }
    let _ = writeln!(
        out,
        "### Relay at half the gate's peak rate, {clients} clients (open loop{rounds})\n"
    );
    let _ = writeln!(out, "| target | offered msgs/s | achieved msgs/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | CPU µs/msg |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for run in runs_at(&r.relay_half, clients) {
        let rep = &run.report;
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} |",
            rep.target_label,
            opt(rep.rate, 0),
            rep.msgs_per_sec,
            percentiles(&rep.latency_us),
            opt(cpu_us_per_msg(run), 2)
        );
    }
    let run = |label: &str| label_at(&r.relay_half, clients, label);
    let p99 = |label: &str| run(label).map(|x| x.report.latency_us.p99 as f64);
    let cpu = |label: &str| run(label).and_then(cpu_us_per_msg);
    half.p99_vs_direct = ratio(p99("logingate"), p99("direct"));
    half.cpu_vs_floor = ratio(cpu("logingate"), cpu("direct"));
    let _ = writeln!(
        out,
        "\nRatios: p99 gate/direct **{}**, gate/haproxy **{}**; CPU per msg gate/floor **{}**, \
         gate/haproxy **{}**.\n",
        opt(half.p99_vs_direct, 2),
        opt(ratio(p99("logingate"), p99("haproxy")), 2),
        opt(half.cpu_vs_floor, 2),
        opt(ratio(cpu("logingate"), cpu("haproxy")), 2)
    );
    half
}

pub fn render(r: &Results) -> String {
    let mut out = String::new();
    if !r.command.is_empty() {
        let _ = writeln!(
            out,
            "`{}` — {} — {} — load average {}\n",
            r.command, r.date, r.machine, r.load_average
        );
    }
    let rounds = if r.relay_rounds > 1 {
        format!(", median of {} rounds", r.relay_rounds)
    } else {
        String::new()
    };
    let mut loads: Vec<u64> = r.relay.iter().map(|x| x.report.clients).collect();
    loads.dedup();
    let mut peak = Vec::new();
    for &clients in &loads {
        peak.push(relay_section(&mut out, r, clients, &rounds));
    }
    let mut half = Vec::new();
    for &clients in &loads {
        half.push(half_section(&mut out, r, clients, &rounds));
    }

    let mut gate_idle_bytes = None;
    if !r.idle.is_empty() {
        let _ = writeln!(out, "### Idle connections\n");
        let _ = writeln!(
            out,
            "| target | clients | held | RSS before MiB | RSS held MiB | bytes/conn |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        for run in &r.idle {
            let per = (run.held > 0).then(|| {
                (run.rss_held_kib.saturating_sub(run.rss_before_kib) as f64 * 1024.0)
                    / run.held as f64
            });
            if run.label == "logingate" {
                gate_idle_bytes = per;
            }
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1} | {:.1} | {} |",
                run.label,
                run.clients,
                run.held,
                run.rss_before_kib as f64 / 1024.0,
                run.rss_held_kib as f64 / 1024.0,
                opt(per, 0)
            );
        }
        let _ = writeln!(out);
    }

    let mut storm_ok = None;
    if !r.storm.is_empty() {
        let _ = writeln!(out, "### Connection storm\n");
        let _ = writeln!(out, "| target | conns/s | p50 µs | p99 µs | max µs | errors | proxy CPU µs/conn | open/close frames |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|");
        for run in &r.storm {
            let rep = &run.report;
            let l = &rep.latency_us;
            let frames = match (run.opens, run.closes) {
                (Some(o), Some(c)) => format!("{o}/{c} for {} conns", rep.connections),
                _ => "–".into(),
            };
            let cpu_per_conn = run
                .proxy_cpu_s
                .filter(|_| rep.connections > 0)
                .map(|s| s * 1e6 / rep.connections as f64);
            let _ = writeln!(
                out,
                "| {} | {:.0} | {} | {} | {} | {} | {} | {} |",
                rep.target_label,
                rep.conns_per_sec,
                l.p50,
                l.p99,
                l.max,
                rep.errors,
                opt(cpu_per_conn, 1),
                frames
            );
        }
        let storm = |label: &str| find(&r.storm, label, |x| &x.report.target_label);
        if let (Some(g), Some(h)) = (storm("logingate"), storm("haproxy")) {
            let frames_ok =
                g.opens == Some(g.report.connections) && g.closes == Some(g.report.connections);
            storm_ok = Some(
                g.report.conns_per_sec >= h.report.conns_per_sec
                    && frames_ok
                    && g.report.errors == 0,
            );
        }
        let _ = writeln!(out);
    }

    if let Some(login) = &r.login {
        let l = &login.latency_us;
        let _ = writeln!(
            out,
            "### Login flows (register + login + select server, gate + embedded LoginSrv)\n"
        );
        let _ = writeln!(
            out,
            "| players | flows/s | p50 µs | p90 µs | p99 µs | max µs | errors |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|");
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {} | {} | {} | {} |\n",
            login.clients, login.msgs_per_sec, l.p50, l.p90, l.p99, l.max, login.errors
        );
    }

    let _ = writeln!(out, "### Goals\n");
    let _ = writeln!(out, "| goal | measured | status |");
    let _ = writeln!(out, "|---|---|---|");
    let at = |clients: u64| peak.iter().find(|p| p.clients == clients);
    let half_at = |clients: u64| half.iter().find(|p| p.clients == clients);
    let mut row = |name: String, value: Option<f64>, unit: &str, ok: fn(f64) -> bool| {
        let _ = writeln!(
            out,
            "| {name} | {} | {} |",
            value.map_or_else(|| "–".to_string(), |v| format!("{v:.2}{unit}")),
            goal(value.map(ok))
        );
    };
    row(
        "gate msgs/s ≥ 2.5 × HAProxy at 1000×1".into(),
        at(1000).and_then(|p| p.tput_vs_haproxy),
        "×",
        |x| x >= 2.5,
    );
    row(
        "gate msgs/s ≥ 2 × HAProxy at 200×1".into(),
        at(200).and_then(|p| p.tput_vs_haproxy),
        "×",
        |x| x >= 2.0,
    );
    row(
        "gate CPU/msg ≤ 1.1 × floor at 1000×1".into(),
        at(1000).and_then(|p| p.cpu_vs_floor),
        "×",
        |x| x <= 1.1,
    );
    row(
        "gate CPU/msg ≤ 1.2 × floor at 200×1".into(),
        at(200).and_then(|p| p.cpu_vs_floor),
        "×",
        |x| x <= 1.2,
    );
    for clients in [1000, 200] {
        row(
            format!("gate CPU/msg ≤ 1.4 × floor at half peak, {clients} clients"),
            half_at(clients).and_then(|h| h.cpu_vs_floor),
            "×",
            |x| x <= 1.4,
        );
        row(
            format!("gate p99 ≤ 1.5 × direct at half peak, {clients} clients"),
            half_at(clients).and_then(|h| h.p99_vs_direct),
            "×",
            |x| x <= 1.5,
        );
    }
    let _ = writeln!(
        out,
        "| ≤ 1 KiB RSS per idle client | {} B/conn | {} |",
        opt(gate_idle_bytes, 0),
        goal(gate_idle_bytes.map(|b| b <= 1024.0))
    );
    let _ = writeln!(out, "| storm: gate conns/s ≥ HAProxy, every open/close frame delivered | see storm table | {} |", goal(storm_ok));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(label: &str, clients: u64, mps: f64, cpu_s: f64, p99: u64) -> RelayRun {
        let mut report = Report {
            target_label: label.into(),
            clients,
            depth: 1,
            msgs_per_sec: mps,
            messages: 1_000_000,
            ..Report::default()
        };
        report.latency_us.p99 = p99;
        RelayRun {
            report,
            proxy_cpu_s: Some(cpu_s),
            proxy_rss_kib: Some(2048),
        }
    }

    #[test]
    fn ratios_and_goals_come_from_the_runs_of_each_load() {
        let r = Results {
            relay: vec![
                run("direct", 1000, 300_000.0, 2.0, 100),
                run("haproxy", 1000, 100_000.0, 4.0, 100),
                run("logingate", 1000, 260_000.0, 2.1, 100),
                run("direct", 200, 200_000.0, 2.0, 100),
                run("haproxy", 200, 100_000.0, 4.0, 100),
                run("logingate", 200, 150_000.0, 3.0, 100),
            ],
            relay_half: vec![
                run("direct", 200, 75_000.0, 2.0, 1000),
                run("haproxy", 200, 75_000.0, 5.0, 9000),
                run("logingate", 200, 75_000.0, 2.6, 1400),
            ],
            ..Results::default()
        };
        let t = render(&r);
        assert!(t.contains("### Relay, 1000 clients"), "{t}");
        assert!(t.contains("### Relay, 200 clients"), "{t}");
        assert!(t.contains("the floor (2.00 µs/msg)"), "{t}");
        assert!(t.contains("gate/haproxy **2.60**"), "{t}");
        assert!(t.contains("gate/floor **1.05**"), "{t}");
        assert!(t.contains("gate/floor **1.50**"), "{t}");
        let goal_row = |name: &str| {
            t.lines()
                .find(|l| l.starts_with(&format!("| {name} |")))
                .unwrap_or_else(|| panic!("no goal row {name}: {t}"))
                .to_string()
        };
        assert_eq!(
            goal_row("gate msgs/s ≥ 2.5 × HAProxy at 1000×1"),
            "| gate msgs/s ≥ 2.5 × HAProxy at 1000×1 | 2.60× | met |"
        );
        assert_eq!(
            goal_row("gate msgs/s ≥ 2 × HAProxy at 200×1"),
            "| gate msgs/s ≥ 2 × HAProxy at 200×1 | 1.50× | MISSED |"
        );
        assert_eq!(
            goal_row("gate CPU/msg ≤ 1.1 × floor at 1000×1"),
            "| gate CPU/msg ≤ 1.1 × floor at 1000×1 | 1.05× | met |"
        );
        assert_eq!(
            goal_row("gate CPU/msg ≤ 1.4 × floor at half peak, 200 clients"),
            "| gate CPU/msg ≤ 1.4 × floor at half peak, 200 clients | 1.30× | met |"
        );
        assert_eq!(
            goal_row("gate p99 ≤ 1.5 × direct at half peak, 200 clients"),
            "| gate p99 ≤ 1.5 × direct at half peak, 200 clients | 1.40× | met |"
        );
        assert_eq!(
            goal_row("gate p99 ≤ 1.5 × direct at half peak, 1000 clients"),
            "| gate p99 ≤ 1.5 × direct at half peak, 1000 clients | – | not measured |"
        );
    }
}
