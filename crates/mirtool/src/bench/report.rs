//! The result of one scenario run: merged counters and latency, printed for
//! humans or as one JSON object (the format `bench/compare` and `bench plot` read).

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile: the tail the goals are stated in.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Worst observed.
    pub max: u64,
    /// Arithmetic mean (not a percentile; for sanity checks).
    #[serde(default)]
    pub mean: f64,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// Microsecond histogram from 1 µs to 60 s at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Values above the bound are clamped by the callers (`saturating_record`).
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    /// relay, connect, idle or login.
    pub scenario: String,
    /// Name of the system under test (`--label`), e.g. direct, haproxy, logingate.
    pub target_label: String,
    /// Address the load went to.
    #[serde(default)]
    pub target: String,
    /// Concurrent client connections asked for (relay, idle) or loops (connect).
    pub clients: u64,
    /// Measured window in seconds (the hold time for idle).
    pub duration_s: f64,
    /// relay: replies received and verified; connect: messages answered; login: whole flows.
    pub messages: u64,
    /// relay: verified replies per second inside the window.
    pub msgs_per_sec: f64,
    /// Connections completed (connect: full connect-send-reply-close cycles; idle: connected).
    #[serde(default)]
    pub connections: u64,
    /// Connections completed per second (connect: over the window; idle: during the ramp).
    pub conns_per_sec: f64,
    /// relay: send-to-reply; connect: connect-to-reply; idle: connect time.
    pub latency_us: Latency,
    /// Messages never answered (including those in flight when the drain gave up).
    pub lost: u64,
    /// Replies that arrived after a later one.
    pub reordered: u64,
    /// Replies whose bytes differ from what was sent, or that did not frame.
    pub corrupted: u64,
    /// Connect failures, resets, unexpected closes, timeouts.
    pub errors: u64,
    /// relay: messages each client keeps in flight.
    #[serde(default)]
    pub depth: u64,
    /// relay/connect: offered rate per second, when open-loop.
    #[serde(default)]
    pub rate: Option<f64>,
    /// relay: raw body bytes per message (the encoded body is 4/3 of it).
    #[serde(default)]
    pub body_bytes: u64,
    /// relay: bytes of one message on the wire.
    #[serde(default)]
    pub message_wire_bytes: u64,
    /// Load generator threads (one current-thread runtime each).
    #[serde(default)]
    pub threads: u64,
    /// idle: connections still open when the hold ended.
    #[serde(default)]
    pub held: Option<u64>,
    /// login: size of the reused account pool; absent = a fresh account per flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts: Option<u64>,
    /// login with reused accounts: "already logged in" answers retried on a new connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u64>,
}

impl Report {
    /// A run passes when every message came back intact and in order.
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.reordered == 0 && self.corrupted == 0
    }

    pub fn print_human(&self) {
        let l = &self.latency_us;
        println!(
            "{} against {} ({}):",
            self.scenario, self.target_label, self.target
        );
        match self.scenario.as_str() {
            "idle" => println!(
                "  held {} of {} connections for {:.1} s (connected at {:.0}/s)",
                self.held.unwrap_or(0),
                self.clients,
                self.duration_s,
                self.conns_per_sec
            ),
            "login" => match self.accounts {
                Some(accounts) => println!(
                    "  {} players over {accounts} accounts: {} login/select flows in {:.1} s = {:.0} flows/s ({} already-logged-in retries)",
                    self.clients,
                    self.messages,
                    self.duration_s,
                    self.msgs_per_sec,
                    self.retries.unwrap_or(0)
                ),
                None => println!(
                    "  {} players: {} register/login/select flows in {:.1} s = {:.0} flows/s",
                    self.clients, self.messages, self.duration_s, self.msgs_per_sec
                ),
            },
            "connect" => println!(
                "  {} connections in {:.1} s: {:.0} conns/s",
                self.connections, self.duration_s, self.conns_per_sec
            ),
            _ => println!(
                "  {} clients x depth {}: {} messages in {:.1} s = {:.0} msgs/s",
                self.clients, self.depth, self.messages, self.duration_s, self.msgs_per_sec
            ),
        }
        println!(
            "  latency us: p50 {} p90 {} p99 {} p99.9 {} max {}",
            l.p50, l.p90, l.p99, l.p999, l.max
        );
        println!(
            "  lost {} reordered {} corrupted {} errors {}",
            self.lost, self.reordered, self.corrupted, self.errors
        );
    }

    pub fn emit(&self, json: bool) {
        if json {
            match serde_json::to_string(self) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("cannot serialize report: {e}"),
            }
        } else {
            self.print_human();
        }
    }
}
