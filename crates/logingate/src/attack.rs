//! Attack mode: switched on automatically when new connections (all sources together)
//! arrive faster than `enter_conn_rate`, off again once they stayed below
//! `exit_conn_rate` for `exit_after_secs` (AppleM2's CC mode, with the Delphi
//! AttackLevel's knobs). While on, new connections get the stricter per-IP cap and
//! first-packet deadline of `[gate.attack]`, and with `allow_listed_only` only
//! allow-listed sources get in at all.
//!
//! The state machine ([`AttackMode::observe`]) takes the instant and the running
//! connection count as arguments, so its hysteresis is tested without sleeping; a task
//! feeds it admission's attempt counter once a second.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use netcore::{Admission, StrictLimits};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// 1 while attack mode is on, 0 otherwise.
pub const METRIC_ATTACK_MODE: &str = "gate_attack_mode";

/// How often the connection rate is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// `[gate.attack]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttackConfig {
    /// New connections per second (all sources) that switch attack mode on; 0 = never
    /// automatically.
    pub enter_conn_rate: u32,
    /// Below this rate for `exit_after_secs` switches it off.
    pub exit_conn_rate: u32,
    /// How long the rate must stay below `exit_conn_rate`.
    pub exit_after_secs: u64,
    /// Replaces `gate.max_conn_per_ip` while on (0 = unlimited).
    pub max_conn_per_ip: u32,
    /// Replaces `gate.first_packet_timeout_secs` while on (0 = keep the configured one).
    pub first_packet_timeout_secs: u64,
    /// While on, admit only allow-listed sources (panic mode).
    pub allow_listed_only: bool,
}

impl Default for AttackConfig {
    fn default() -> Self {
        AttackConfig {
            // A login rush of 50 players makes about 240 connections/s (several per
            // login: version check, login, server list, reconnects); 500 leaves room
            // for two such rushes, while a connect flood runs at thousands.
            enter_conn_rate: 500,
            exit_conn_rate: 30,
            exit_after_secs: 30,
            max_conn_per_ip: 2,
            first_packet_timeout_secs: 3,
            allow_listed_only: false,
        }
    }
}

impl AttackConfig {
    /// The limits in force while attack mode is on.
    pub fn strict_limits(&self) -> StrictLimits {
        StrictLimits {
            max_conn_per_ip: self.max_conn_per_ip,
            first_packet_timeout: (self.first_packet_timeout_secs > 0)
                .then(|| Duration::from_secs(self.first_packet_timeout_secs)),
            allow_listed_only: self.allow_listed_only,
        }
    }
}

/// A change of state, with the figures that caused it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transition {
    /// Attack mode went on; `rate` = connections per second measured (NaN when forced).
    Entered {
        /// Measured connections per second.
        rate: f64,
        /// Whether an operator forced it.
        forced: bool,
    },
    /// Attack mode went off.
    Left {
        /// Measured connections per second.
        rate: f64,
        /// Whether an operator forced it.
        forced: bool,
    },
}

/// The automatic part's memory.
#[derive(Debug)]
struct Sampler {
    /// Previous sample: when, and the attempt count then.
    last: Option<(Instant, u64)>,
    /// Since when the rate has been below `exit_conn_rate` (while on).
    calm_since: Option<Instant>,
    /// Whether the automatic decision is "on".
    auto_on: bool,
    /// Connections per second over the last sample interval.
    rate: f64,
}

/// Forced state: automatic, forced off, forced on.
const AUTO: u8 = 0;
const FORCED_OFF: u8 = 1;
const FORCED_ON: u8 = 2;

/// Attack mode's state, shared by the sampler task and whoever forces it.
pub struct AttackMode {
    /// Thresholds and strict limits; replaced whole on reload.
    config: arc_swap::ArcSwap<AttackConfig>,
    /// Rate sampler state.
    sampler: Mutex<Sampler>,
    /// `AUTO`, `FORCED_OFF` or `FORCED_ON`.
    forced: AtomicU8,
    /// Whether it is on now (automatic or forced).
    on: AtomicBool,
}

impl AttackMode {
    /// Off, automatic.
    pub fn new(config: AttackConfig) -> Self {
        AttackMode {
            config: arc_swap::ArcSwap::from_pointee(config),
            sampler: Mutex::new(Sampler {
                last: None,
                calm_since: None,
                auto_on: false,
                rate: 0.0,
            }),
            forced: AtomicU8::new(AUTO),
            on: AtomicBool::new(false),
        }
    }

    /// Whether attack mode is on.
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// `Some(on)` while an operator forces it, `None` while automatic.
    pub fn forced(&self) -> Option<bool> {
        match self.forced.load(Ordering::Acquire) {
            FORCED_ON => Some(true),
            FORCED_OFF => Some(false),
            _ => None,
        }
    }

    /// New connections per second (all sources) over the last sample.
    pub fn conn_rate(&self) -> f64 {
        self.sampler.lock().rate
    }

    /// The configuration in force.
    pub fn config(&self) -> std::sync::Arc<AttackConfig> {
        self.config.load_full()
    }

    /// Replaces the thresholds and strict limits; while attack mode is on, its new
    /// limits are put in force at once.
    pub fn reconfigure(&self, admission: &Admission, config: AttackConfig) {
        self.config.store(std::sync::Arc::new(config));
        if self.is_on() {
            admission.set_strict(Some(self.config.load().strict_limits()));
        }
    }

    /// Forces attack mode on (`Some(true)`), off (`Some(false)`), or hands it back to the
    /// automatic rule (`None`, which then decides at the next sample). Returns the
    /// transition, if the state changed.
    pub fn force(&self, on: Option<bool>) -> Option<Transition> {
        let forced = match on {
            None => AUTO,
            Some(false) => FORCED_OFF,
            Some(true) => FORCED_ON,
        };
        self.forced.store(forced, Ordering::Release);
        let auto_on = self.sampler.lock().auto_on;
        self.settle(on.unwrap_or(auto_on), f64::NAN, on.is_some())
    }

    /// Feeds one sample: `attempts` is the running count of connection attempts at
    /// `now`. Returns the transition, if the state changed.
    pub fn observe(&self, now: Instant, attempts: u64) -> Option<Transition> {
        let (auto_on, rate) = {
            let mut s = self.sampler.lock();
            let (then, before) = s.last.replace((now, attempts))?;
            let secs = now.saturating_duration_since(then).as_secs_f64();
            if secs <= 0.0 {
                return None;
            }
            let rate = attempts.saturating_sub(before) as f64 / secs;
            s.rate = rate;
            let c = self.config.load();
            if !s.auto_on {
                if c.enter_conn_rate > 0 && rate >= f64::from(c.enter_conn_rate) {
                    s.auto_on = true;
                    s.calm_since = None;
                }
            } else if rate < f64::from(c.exit_conn_rate) {
                let since = *s.calm_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= Duration::from_secs(c.exit_after_secs) {
                    s.auto_on = false;
                    s.calm_since = None;
                }
            } else {
                s.calm_since = None;
            }
            (s.auto_on, rate)
        };
        match self.forced.load(Ordering::Acquire) {
            AUTO => self.settle(auto_on, rate, false),
            _ => None,
        }
    }

    fn settle(&self, on: bool, rate: f64, forced: bool) -> Option<Transition> {
        let was = self.on.swap(on, Ordering::AcqRel);
        match (was, on) {
            (false, true) => Some(Transition::Entered { rate, forced }),
            (true, false) => Some(Transition::Left { rate, forced }),
            _ => None,
        }
    }

    /// Puts a transition into force on `admission`, logs it once and sets the gauge.
    pub fn apply(&self, admission: &Admission, transition: Option<Transition>) {
        let Some(t) = transition else { return };
        let c = self.config.load();
        match t {
            Transition::Entered { rate, forced } => {
                admission.set_strict(Some(c.strict_limits()));
                warn!(
                    rate = format_args!("{rate:.0}"),
                    forced,
                    enter_conn_rate = c.enter_conn_rate,
                    max_conn_per_ip = c.max_conn_per_ip,
                    first_packet_timeout_secs = c.first_packet_timeout_secs,
                    allow_listed_only = c.allow_listed_only,
                    "attack mode on"
                );
            }
            Transition::Left { rate, forced } => {
                admission.set_strict(None);
                warn!(
                    rate = format_args!("{rate:.0}"),
                    forced,
                    exit_conn_rate = c.exit_conn_rate,
                    exit_after_secs = c.exit_after_secs,
                    "attack mode off"
                );
            }
        }
        metrics::gauge!(METRIC_ATTACK_MODE).set(if self.is_on() { 1.0 } else { 0.0 });
    }
}

/// Samples admission's attempt counter every [`SAMPLE_EVERY`] until `stop`.
pub async fn run(mode: std::sync::Arc<AttackMode>, admission: Admission, stop: CancellationToken) {
    metrics::gauge!(METRIC_ATTACK_MODE).set(0.0);
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let t = mode.observe(Instant::now(), admission.attempts());
        mode.apply(&admission, t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode() -> AttackMode {
        AttackMode::new(AttackConfig {
            enter_conn_rate: 100,
            exit_conn_rate: 10,
            exit_after_secs: 5,
            ..AttackConfig::default()
        })
    }

    /// Feeds `per_sec` connections per second for `secs` seconds from `at`.
    fn feed(
        m: &AttackMode,
        at: &mut Instant,
        total: &mut u64,
        per_sec: u64,
        secs: u64,
    ) -> Vec<Transition> {
        let mut seen = Vec::new();
        for _ in 0..secs {
            *at += Duration::from_secs(1);
            *total += per_sec;
            seen.extend(m.observe(*at, *total));
        }
        seen
    }

    #[test]
    fn enters_at_the_threshold_and_leaves_after_a_calm_period() {
        let m = mode();
        let mut at = Instant::now();
        let mut total = 0;
        assert_eq!(
            m.observe(at, 0),
            None,
            "first sample only sets the baseline"
        );
        assert!(feed(&m, &mut at, &mut total, 99, 3).is_empty());
        let on = feed(&m, &mut at, &mut total, 100, 1);
        assert_eq!(
            on,
            vec![Transition::Entered {
                rate: 100.0,
                forced: false
            }]
        );
        assert!(m.is_on());
        // Between the thresholds: stays on.
        assert!(feed(&m, &mut at, &mut total, 50, 20).is_empty());
        // Calm for 4 s, then a burst: the calm period starts again.
        assert!(feed(&m, &mut at, &mut total, 5, 4).is_empty());
        assert!(feed(&m, &mut at, &mut total, 20, 1).is_empty());
        assert!(
            feed(&m, &mut at, &mut total, 5, 5).is_empty(),
            "calm since 5 s ago: 4 s elapsed"
        );
        let off = feed(&m, &mut at, &mut total, 5, 1);
        assert_eq!(
            off,
            vec![Transition::Left {
                rate: 5.0,
                forced: false
            }]
        );
        assert!(!m.is_on());
    }

    #[test]
    fn zero_enter_rate_is_never_automatic() {
        let m = AttackMode::new(AttackConfig {
            enter_conn_rate: 0,
            ..AttackConfig::default()
        });
        let mut at = Instant::now();
        let mut total = 0;
        m.observe(at, 0);
        assert!(feed(&m, &mut at, &mut total, 1_000_000, 3).is_empty());
    }

    #[test]
    fn forcing_overrides_the_rule_until_released() {
        let m = mode();
        let mut at = Instant::now();
        let mut total = 0;
        m.observe(at, 0);
        assert!(matches!(
            m.force(Some(true)),
            Some(Transition::Entered { forced: true, .. })
        ));
        assert!(
            feed(&m, &mut at, &mut total, 0, 30).is_empty(),
            "forced on stays on"
        );
        assert!(m.is_on());
        assert!(matches!(
            m.force(None),
            Some(Transition::Left { forced: false, .. })
        ));
        feed(&m, &mut at, &mut total, 500, 1);
        assert!(m.is_on(), "automatic again");
        assert!(matches!(
            m.force(Some(false)),
            Some(Transition::Left { forced: true, .. })
        ));
        assert!(
            feed(&m, &mut at, &mut total, 500, 3).is_empty(),
            "forced off stays off"
        );
    }

    #[test]
    fn apply_sets_and_lifts_the_strict_limits() {
        let adm = Admission::standalone(&netcore::Config::default());
        let m = mode();
        let fp = Some(Duration::from_secs(10));
        let ip = std::net::IpAddr::from([10, 0, 0, 1]);
        m.apply(&adm, m.force(Some(true)));
        assert_eq!(
            adm.first_packet_timeout(ip, fp),
            Some(Duration::from_secs(3))
        );
        m.apply(&adm, m.force(Some(false)));
        assert_eq!(adm.first_packet_timeout(ip, fp), fp);
    }
}
