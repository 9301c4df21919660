//! What the gate does to a source that misbehaves, per class of offence (the Delphi
//! gates' `BlockMethod`, one setting per class instead of one for all).
//!
//! Every punishment ends the offending connection; `temp_block` and `block` also refuse
//! the source's new connections through netcore's admission (longest block wins), and
//! `block` is recorded in `block_list_file` like a permanent block ordered by the
//! LoginSrv. Allow-listed sources are only ever disconnected.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use limits::LogLimiter;
use netcore::Admission;
use serde::{Deserialize, Serialize};
use tracing::{error, info};

use crate::blocklist;

/// Punishments applied, by `offence` and `action`.
pub const METRIC_PUNISHMENTS: &str = "gate_punishments_total";

/// What happens to a source for one offence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Punishment {
    /// Close the connection (or refuse it); nothing is remembered.
    Disconnect,
    /// Also block the source IP for `gate.temp_block_secs`.
    TempBlock,
    /// Also block the source IP until unblocked, and record it in `block_list_file`.
    Block,
}

impl Punishment {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Punishment::Disconnect => "disconnect",
            Punishment::TempBlock => "temp_block",
            Punishment::Block => "block",
        }
    }
}

/// The classes of offence a punishment is chosen for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offence {
    /// More live connections from one IP than the per-IP cap.
    PerIpCap,
    /// New connections from one IP faster than `conn_rate_per_ip`.
    ConnRate,
    /// No whole message before the first-packet deadline.
    EmptyConnection,
    /// No whole message for `idle_timeout_secs`.
    Idle,
    /// A message longer than `max_packet_bytes`.
    Oversize,
    /// A byte no client sends (link injection, junk), or an HTTP request.
    ForbiddenByte,
    /// More messages per second than `max_packets_per_sec`.
    Flooding,
    /// Over `new_accounts_per_ip_per_hour` or `password_ops_per_ip_per_min`.
    NewAccounts,
}

impl Offence {
    /// Label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Offence::PerIpCap => "per_ip_cap",
            Offence::ConnRate => "conn_rate",
            Offence::EmptyConnection => "empty_connection",
            Offence::Idle => "idle",
            Offence::Oversize => "oversize",
            Offence::ForbiddenByte => "forbidden_byte",
            Offence::Flooding => "flooding",
            Offence::NewAccounts => "new_accounts",
        }
    }

    /// The offence a session close or connection refusal label stands for, if any.
    pub fn from_label(label: &str) -> Option<Offence> {
        Some(match label {
            "per_ip_limit" => Offence::PerIpCap,
            "rate_limited" => Offence::ConnRate,
            "first_packet_timeout" => Offence::EmptyConnection,
            "idle_timeout" => Offence::Idle,
            "oversize" => Offence::Oversize,
            "forbidden_byte" | crate::reason::HTTP_REQUEST => Offence::ForbiddenByte,
            crate::reason::FLOODING => Offence::Flooding,
            crate::reason::NEW_ACCOUNTS => Offence::NewAccounts,
            _ => return None,
        })
    }
}

/// `[gate.punish]`: the punishment of each offence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PunishConfig {
    /// Over the per-IP connection cap.
    pub per_ip_cap: Punishment,
    /// Over the per-IP connect rate.
    pub conn_rate: Punishment,
    /// No first message in time.
    pub empty_connection: Punishment,
    /// Idle past `idle_timeout_secs`.
    pub idle: Punishment,
    /// An over-long message.
    pub oversize: Punishment,
    /// A forbidden byte, injection attempt or HTTP request.
    pub forbidden_byte: Punishment,
    /// Over the message rate.
    pub flooding: Punishment,
    /// Over the new-account or password-operation limits.
    pub new_accounts: Punishment,
}

impl Default for PunishConfig {
    fn default() -> Self {
        PunishConfig {
            per_ip_cap: Punishment::Disconnect,
            conn_rate: Punishment::TempBlock,
            empty_connection: Punishment::Disconnect,
            idle: Punishment::Disconnect,
            oversize: Punishment::TempBlock,
            forbidden_byte: Punishment::TempBlock,
            flooding: Punishment::TempBlock,
            new_accounts: Punishment::TempBlock,
        }
    }
}

impl PunishConfig {
    /// The same punishment for every offence (the Delphi gates' single `BlockMethod`).
    pub fn all(p: Punishment) -> Self {
        PunishConfig {
            per_ip_cap: p,
            conn_rate: p,
            empty_connection: p,
            idle: p,
            oversize: p,
            forbidden_byte: p,
            flooding: p,
            new_accounts: p,
        }
    }

    /// The punishment configured for `offence`.
    pub fn for_offence(&self, offence: Offence) -> Punishment {
        match offence {
            Offence::PerIpCap => self.per_ip_cap,
            Offence::ConnRate => self.conn_rate,
            Offence::EmptyConnection => self.empty_connection,
            Offence::Idle => self.idle,
            Offence::Oversize => self.oversize,
            Offence::ForbiddenByte => self.forbidden_byte,
            Offence::Flooding => self.flooding,
            Offence::NewAccounts => self.new_accounts,
        }
    }
}

/// Applies the configured punishments; shared by the client handler (offences inside a
/// session) and admission's refusal observer (offences at connect).
pub struct Punisher {
    /// The table, block duration and file in force; replaced whole on reload.
    settings: arc_swap::ArcSwap<PunishSettings>,
}

/// What a [`Punisher`] applies.
struct PunishSettings {
    /// Punishment per offence.
    table: PunishConfig,
    /// Duration of `temp_block`.
    temp_block: Duration,
    /// Where `block` is recorded, if configured.
    block_file: Option<PathBuf>,
}

/// One line per second per class is plenty while a flood is punished.
static PUNISH_LOG: LogLimiter = LogLimiter::new(10, Duration::from_secs(1));

impl Punisher {
    /// A punisher with `table`, blocking for `temp_block` and recording in `block_file`.
    pub fn new(table: PunishConfig, temp_block: Duration, block_file: Option<PathBuf>) -> Self {
        Punisher {
            settings: arc_swap::ArcSwap::from_pointee(PunishSettings {
                table,
                temp_block,
                block_file,
            }),
        }
    }

    /// Replaces the table, block duration and file for every later offence.
    pub fn update(&self, table: PunishConfig, temp_block: Duration, block_file: Option<PathBuf>) {
        self.settings.store(std::sync::Arc::new(PunishSettings {
            table,
            temp_block,
            block_file,
        }));
    }

    /// Applies the punishment of `offence` to `ip` and returns it (`Disconnect` for an
    /// allow-listed source). The caller ends the connection.
    pub fn punish(&self, admission: &Admission, ip: IpAddr, offence: Offence) -> Punishment {
        let ip = ip.to_canonical();
        let settings = self.settings.load();
        let action = match settings.table.for_offence(offence) {
            _ if admission.is_allow_listed(ip) => Punishment::Disconnect,
            action => action,
        };
        let ttl = match action {
            Punishment::Disconnect => return action,
            Punishment::TempBlock => Some(settings.temp_block),
            Punishment::Block => None,
        };
        admission.block(IpNet::from(ip), ttl);
        metrics::counter!(METRIC_PUNISHMENTS, "offence" => offence.as_str(), "action" => action.as_str())
            .increment(1);
        if let Some(suppressed) = PUNISH_LOG.check() {
            info!(%ip, offence = offence.as_str(), action = action.as_str(), secs = ttl.map(|d| d.as_secs()), suppressed, "source punished");
        }
        if action == Punishment::Block {
            self.record(ip, offence);
        }
        action
    }

    fn record(&self, ip: IpAddr, offence: Offence) {
        let Some(path) = self.settings.load().block_file.clone() else {
            return;
        };
        let note = format!("blocked by the gate ({})", offence.as_str());
        let write = move || match blocklist::record(&path, ip, &note) {
            Ok(_) => {}
            Err(e) => {
                error!(file = %path.display(), %ip, error = %e, "block list: cannot record permanent block")
            }
        };
        // File I/O off the accept loop and session tasks.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(write)),
            Err(_) => write(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn admission() -> Admission {
        // An unbound server's admission is all a punisher needs.
        netcore::Admission::standalone(&netcore::Config::default())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn disconnect_leaves_no_block() {
        let adm = admission();
        let p = Punisher::new(PunishConfig::default(), Duration::from_secs(60), None);
        assert_eq!(
            p.punish(&adm, ip("10.0.0.1"), Offence::EmptyConnection),
            Punishment::Disconnect
        );
        assert!(!adm.is_blocked(ip("10.0.0.1")));
    }

    #[test]
    fn temp_block_blocks_for_temp_block_secs() {
        let adm = admission();
        let p = Punisher::new(PunishConfig::default(), Duration::from_millis(50), None);
        assert_eq!(
            p.punish(&adm, ip("10.0.0.2"), Offence::Flooding),
            Punishment::TempBlock
        );
        assert!(adm.is_blocked(ip("10.0.0.2")));
        std::thread::sleep(Duration::from_millis(80));
        assert!(!adm.is_blocked(ip("10.0.0.2")), "temporary block expired");
    }

    #[test]
    fn block_is_permanent_and_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("block.txt");
        let table = PunishConfig {
            oversize: Punishment::Block,
            ..PunishConfig::default()
        };
        let adm = admission();
        let p = Punisher::new(table, Duration::from_millis(1), Some(file.clone()));
        assert_eq!(
            p.punish(&adm, ip("10.0.0.3"), Offence::Oversize),
            Punishment::Block
        );
        assert_eq!(
            p.punish(&adm, ip("::ffff:10.0.0.3"), Offence::Oversize),
            Punishment::Block
        );
        std::thread::sleep(Duration::from_millis(10));
        assert!(adm.is_blocked(ip("10.0.0.3")));
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.starts_with("10.0.0.3 # blocked by the gate (oversize)"),
            "{text}"
        );
    }

    #[test]
    fn allow_listed_sources_are_only_disconnected() {
        let adm = admission();
        adm.replace_allow_list(vec!["10.5.0.0/16".parse().unwrap()]);
        let table = PunishConfig {
            flooding: Punishment::Block,
            ..PunishConfig::default()
        };
        let p = Punisher::new(table, Duration::from_secs(60), None);
        assert_eq!(
            p.punish(&adm, ip("10.5.1.1"), Offence::Flooding),
            Punishment::Disconnect
        );
        assert!(!adm.is_blocked(ip("10.5.1.1")));
    }

    #[test]
    fn labels_map_to_offences_and_config_spellings_parse() {
        assert_eq!(Offence::from_label("rate_limited"), Some(Offence::ConnRate));
        assert_eq!(
            Offence::from_label("http_request"),
            Some(Offence::ForbiddenByte)
        );
        assert_eq!(Offence::from_label("peer_closed"), None);
        let t: PunishConfig =
            toml::from_str("idle = \"block\"\nflooding = \"disconnect\"").unwrap();
        assert_eq!(t.idle, Punishment::Block);
        assert_eq!(t.flooding, Punishment::Disconnect);
        assert_eq!(t.oversize, Punishment::TempBlock);
        assert!(toml::from_str::<PunishConfig>("idle = \"ban\"").is_err());
    }
}
