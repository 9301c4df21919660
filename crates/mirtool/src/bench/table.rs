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
    /// Proxy process CPU seconds (utime+stime) over the run; absent for direct.
    #[serde(default)]
    pub proxy_cpu_s: Option<f64>,
    /// Proxy VmRSS at the end of the run, KiB.
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
    let _ = writeln!(out, "### Relay (peak, closed loop{rounds})\n");
    let _ = writeln!(out, "| target | clients×depth | msgs/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | proxy CPU µs/msg | proxy RSS MiB | lost/reord/corrupt |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for run in &r.relay {
        let rep = &run.report;
        let l = &rep.latency_us;
        let _ = writeln!(
            out,
            "| {} | {}×{} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {}/{}/{} |",
            rep.target_label,
            rep.clients,
            rep.depth,
            rep.msgs_per_sec,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            opt(cpu_us_per_msg(run), 2),
            opt(run.proxy_rss_kib.map(|k| k as f64 / 1024.0), 1),
            rep.lost,
            rep.reordered,
            rep.corrupted
        );
    }
    let relay = |label: &str| find(&r.relay, label, |x| &x.report.target_label);
    let (gate, haproxy, direct) = (relay("logingate"), relay("haproxy"), relay("direct"));
    let tput = |x: Option<&RelayRun>| x.map(|x| x.report.msgs_per_sec);
    let cpu = |x: Option<&RelayRun>| x.and_then(cpu_us_per_msg);
    let tput_ratio = ratio(tput(gate), tput(haproxy));
    let cpu_ratio = ratio(cpu(gate), cpu(haproxy));
    let _ = writeln!(
        out,
        "\nRatios: msgs/s gate/haproxy **{}**, gate/direct **{}**; CPU per msg gate/haproxy **{}**.\n",
        opt(tput_ratio, 2),
        opt(ratio(tput(gate), tput(direct)), 2),
        opt(cpu_ratio, 2)
    );

    let mut p99_ratio = None;
    if !r.relay_half.is_empty() {
        let _ = writeln!(
            out,
            "### Relay at half the gate's peak rate (open loop{rounds})\n"
        );
        let _ = writeln!(out, "| target | offered msgs/s | achieved msgs/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | proxy CPU µs/msg |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for run in &r.relay_half {
            let rep = &run.report;
            let l = &rep.latency_us;
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |",
                rep.target_label,
                opt(rep.rate, 0),
                rep.msgs_per_sec,
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                l.max,
                opt(cpu_us_per_msg(run), 2)
            );
        }
        let half = |label: &str| {
            find(&r.relay_half, label, |x| &x.report.target_label)
                .map(|x| x.report.latency_us.p99 as f64)
        };
        p99_ratio = ratio(half("logingate"), half("direct"));
        let _ = writeln!(
            out,
            "\nRatios: p99 gate/direct **{}**, gate/haproxy **{}**.\n",
            opt(p99_ratio, 2),
            opt(ratio(half("logingate"), half("haproxy")), 2)
        );
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
    let _ = writeln!(
        out,
        "| gate msgs/s ≥ 1.5 × HAProxy | {}× | {} |",
        opt(tput_ratio, 2),
        goal(tput_ratio.map(|x| x >= 1.5))
    );
    let _ = writeln!(
        out,
        "| gate CPU/msg ≤ 0.5 × HAProxy | {}× | {} |",
        opt(cpu_ratio, 2),
        goal(cpu_ratio.map(|x| x <= 0.5))
    );
    let _ = writeln!(
        out,
        "| gate p99 ≤ 1.5 × direct at half peak | {}× | {} |",
        opt(p99_ratio, 2),
        goal(p99_ratio.map(|x| x <= 1.5))
    );
    let _ = writeln!(
        out,
        "| ≤ 1 KiB RSS per idle client (100k extrapolated) | {} B/conn | {} |",
        opt(gate_idle_bytes, 0),
        goal(gate_idle_bytes.map(|b| b <= 1024.0))
    );
    let _ = writeln!(out, "| storm: gate conns/s ≥ HAProxy, every open/close frame delivered | see storm table | {} |", goal(storm_ok));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_and_goals_come_from_the_runs() {
        let mk = |label: &str, mps: f64, cpu: Option<f64>| RelayRun {
            report: Report {
                target_label: label.into(),
                msgs_per_sec: mps,
                messages: 1_000_000,
                ..Report::default()
            },
            proxy_cpu_s: cpu,
            proxy_rss_kib: Some(2048),
        };
        let r = Results {
            relay: vec![
                mk("direct", 300_000.0, None),
                mk("haproxy", 100_000.0, Some(4.0)),
                mk("logingate", 200_000.0, Some(1.0)),
            ],
            ..Results::default()
        };
        let t = render(&r);
        assert!(t.contains("gate/haproxy **2.00**"), "{t}");
        assert!(t.contains("CPU per msg gate/haproxy **0.25**"), "{t}");
        assert!(
            t.contains("| gate msgs/s ≥ 1.5 × HAProxy | 2.00× | met |"),
            "{t}"
        );
        assert!(
            t.contains("| gate CPU/msg ≤ 0.5 × HAProxy | 0.25× | met |"),
            "{t}"
        );
    }
}
