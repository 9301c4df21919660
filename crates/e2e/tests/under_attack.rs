//! The gate under a mixed attack, through real sockets: `mirtool bench attack` (run as
//! a process) floods an in-process gate with its embedded LoginSrv from 40 loopback
//! sources while 10 players keep logging in, 5 of them from allow-listed addresses.
//!
//! Asserted on outcomes only: every player login succeeds and no player connection is
//! closed by the gate (attack mode here is not panic mode); each attacking source is
//! blocked exactly when its offence's punishment blocks; attack mode enters during the
//! flood and leaves once it is over; the test process (gate + LoginSrv; the attackers
//! are another process) grows by less than [`RSS_GROWTH_BOUND`].
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e::{gate_config, linked_gate, mirtool, strings};
use logingate::app::Gate;
use logingate::config::{Config, Dialect};
use logingate::punish::PunishConfig;

/// Attacking sources (127.0.0.2 …), each committing one offence of the bench's list.
const ATTACKERS: u64 = 40;
/// The bench's offences in source order (source N commits the N % 7-th), with whether
/// the default punishment table blocks it: silent connections and byte trickles are
/// empty connections (`disconnect`), the rest `temp_block`.
const OFFENCES: [(&str, bool); 7] = [
    ("connect_flood", true),
    ("silent", false),
    ("trickle", false),
    ("http_request", true),
    ("junk", true),
    ("oversize", true),
    ("registration_burst", true),
];
/// Growth of the test process's resident memory allowed over the run: the gate's
/// tables are fixed-size and a few hundred connections cost well under this.
const RSS_GROWTH_BOUND: u64 = 256 * 1024 * 1024;

/// VmRSS of this process in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line");
    kb * 1024
}

/// The defaults under test, with thresholds a loopback run reaches: attack mode above
/// 100 connects/s, off after 2 s below 50 (the players alone make under 25/s).
fn attack_config(dir: &std::path::Path) -> Config {
    let mut c = gate_config(None, Dialect::Wemade);
    c.data_dir = dir.join("state");
    // Cheap hashes, and no per-IP hash budget: players log in every half second.
    c.embedded = toml::from_str(
        "[security]\nargon2_m_kib = 8\nargon2_t = 1\nhashes_per_ip_per_minute = 0\n",
    )
    .unwrap();
    let allow = dir.join("allow.txt");
    std::fs::write(&allow, "127.0.2.0/24\n").unwrap();
    c.gate.allow_list_file = allow.display().to_string();
    c.gate.max_conn_per_ip = 4;
    c.gate.conn_rate_per_ip = 10;
    c.gate.first_packet_timeout_secs = 2;
    c.gate.temp_block_secs = 600;
    c.gate.new_accounts_per_ip_per_hour = 5;
    c.gate.punish = PunishConfig::default();
    c.gate.attack.enter_conn_rate = 100;
    c.gate.attack.exit_conn_rate = 50;
    c.gate.attack.exit_after_secs = 2;
    c.gate.attack.max_conn_per_ip = 2;
    c.gate.attack.first_packet_timeout_secs = 1;
    c
}

/// Runs `mirtool bench attack ARGS --json` against `gate`; the parsed report.
async fn bench(gate: &Gate, args: &[&str]) -> serde_json::Value {
    let mut all = strings(&[
        "bench",
        "attack",
        "--json",
        "--target",
        &gate.local_addrs()[0].to_string(),
        "--password",
        "attackpw1",
    ]);
    all.extend(strings(args));
    let out = mirtool(all).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)))
}

fn count(report: &serde_json::Value, path: &str) -> u64 {
    report
        .pointer(path)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("{path} in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_log_in_through_a_mixed_attack_and_attackers_are_punished() {
    let dir = tempfile::tempdir().unwrap();
    let rss_before = rss_bytes();
    let (gate, _addr) = linked_gate(attack_config(dir.path())).await;
    let gate = Arc::new(gate);

    // Watch attack mode while the bench runs.
    let entered = Arc::new(AtomicBool::new(false));
    let left = Arc::new(AtomicBool::new(false));
    let watch = {
        let (gate, entered, left) = (Arc::clone(&gate), Arc::clone(&entered), Arc::clone(&left));
        tokio::spawn(async move {
            loop {
                let on = gate.attack().is_on();
                if on {
                    entered.store(true, Ordering::SeqCst);
                } else if entered.load(Ordering::SeqCst) {
                    left.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let report = bench(
        &gate,
        &[
            "--duration",
            "16",
            "--attack-secs",
            "6",
            "--attackers",
            &ATTACKERS.to_string(),
            "--attack-rate",
            "120",
            "--max-attack-conns",
            "300",
            "--hold",
            "4",
            "--allowed",
            "5",
            "--players",
            "5",
            "--think",
            "0.5",
            "--connect-timeout",
            "10",
        ],
    )
    .await;
    eprintln!("{report:#}");

    for group in ["allowed", "others"] {
        let g = |k: &str| count(&report, &format!("/{group}/{k}"));
        assert_eq!(g("registered"), 5, "{group}: {report}");
        assert!(g("attempts") >= 5, "{group} logged in: {report}");
        assert_eq!(g("successes"), g("attempts"), "{group}: {report}");
        assert_eq!(g("failures"), 0, "{group}: {report}");
        assert_eq!(g("closed_by_gate"), 0, "{group}: {report}");
    }
    assert!(count(&report, "/attack/total/attempted") > 0, "{report}");

    // Each source's punishment follows its offence.
    for n in 0..ATTACKERS {
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + n as u8));
        let (offence, blocks) = OFFENCES[(n % OFFENCES.len() as u64) as usize];
        assert_eq!(
            gate.admission().is_blocked(source),
            blocks,
            "{source} ({offence}): {report}"
        );
    }
    for (offence, blocks) in OFFENCES {
        if blocks {
            // The sources' later connections were refused.
            let refused = count(&report, &format!("/attack/by_kind/{offence}/refused"));
            assert!(refused > 0, "{offence} never refused: {report}");
        }
    }
    for n in 1..=5 {
        for subnet in [2, 3] {
            let player = IpAddr::V4(Ipv4Addr::new(127, 0, subnet, n));
            assert!(!gate.admission().is_blocked(player), "{player}");
        }
    }

    // Attack mode entered during the flood and left once it was over (the players kept
    // logging in for 10 s after it, well past exit_after_secs).
    let calm_until = tokio::time::Instant::now() + Duration::from_secs(30);
    while !left.load(Ordering::SeqCst) {
        assert!(entered.load(Ordering::SeqCst), "attack mode never entered");
        assert!(
            tokio::time::Instant::now() < calm_until,
            "attack mode never left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watch.abort();

    let grown = rss_bytes().saturating_sub(rss_before);
    assert!(
        grown < RSS_GROWTH_BOUND,
        "test process grew by {grown} bytes (bound {RSS_GROWTH_BOUND})"
    );
    if let Ok(gate) = Arc::try_unwrap(gate) {
        gate.shutdown().await;
    }
}

/// Panic mode (`allow_listed_only`): allow-listed players still log in, the rest are
/// refused at the door.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_mode_admits_only_allow_listed_players() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = attack_config(dir.path());
    c.gate.attack.allow_listed_only = true;
    c.gate.attack.enter_conn_rate = 0;
    let (gate, _addr) = linked_gate(c).await;
    gate.force_attack(Some(true));
    let report = bench(
        &gate,
        &[
            "--duration",
            "3",
            "--attackers",
            "0",
            "--allowed",
            "3",
            "--players",
            "3",
            "--think",
            "0.3",
            "--connect-timeout",
            "5",
        ],
    )
    .await;
    assert_eq!(count(&report, "/allowed/registered"), 3, "{report}");
    assert!(count(&report, "/allowed/successes") >= 3, "{report}");
    assert_eq!(count(&report, "/allowed/failures"), 0, "{report}");
    assert_eq!(count(&report, "/others/registered"), 0, "{report}");
    assert_eq!(count(&report, "/others/register_failures"), 3, "{report}");
    gate.shutdown().await;
}
