//! LoginSrv configuration: the TOML schema, defaults and validation.
//!
//! Every limit the server enforces has a key here, so `--print-config` shows
//! an operator all of them.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ipnet::IpNet;
use mir2_proto::ids::{IdTable, MsgKind};
use serde::{Deserialize, Serialize};

pub use crate::game::config::{AddrRoute, GameServersConfig, IdSet, SelGate};

/// Which block frame means temporary (`B` or `T`).
pub use mir2_proto::link::BlockLetter;
/// The link dialect, as written in the config (`wemade`, `delphi`, `happym2`, `ldx`).
pub use mir2_proto::Dialect;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Log timestamps in `utc` or `local` time (with the offset, read at start-up).
    pub log_timestamps: bootstrap::LogTimestamps,
    /// Interval of the summary log line (online, logins, failures, gates; 0 = off).
    pub stats_log_secs: u64,
    /// Address gates connect to (the originals used 5500).
    #[serde(deserialize_with = "bootstrap::config::addr::one")]
    pub listen: SocketAddr,
    /// `sqlite://path`, a bare file path (SQLite), or `postgres://…`.
    pub database: String,
    /// Upper bound on pooled database connections.
    pub db_max_connections: u32,
    /// Link dialect assumed for a gate until its frames reveal one.
    pub default_dialect: Dialect,
    /// Which block frame sent to gates means a temporary block, `B` or `T`
    /// (builds disagree, PROTOCOL.md §8); the other means permanent.
    pub temporary_block: BlockLetter,
    /// Gates are unauthenticated in the protocol; only these source networks may link.
    pub allow_gates: Vec<IpNet>,
    /// Concurrent gate links; a gate beyond this is refused.
    pub max_gates: usize,
    /// Clients one gate may open; further opens are kicked.
    pub max_clients_per_gate: usize,
    /// Longest `%…$` frame from a gate; longer is fatal for that link.
    pub max_link_frame_bytes: usize,
    /// Longest `#…!` client message inside a frame.
    pub max_client_message_bytes: usize,
    /// Messages queued per client while an earlier one is processed.
    pub client_queue_messages: usize,
    /// Link dropped when a gate sends nothing (not even `%--$`) for this long,
    /// or does not take our writes for this long.
    pub gate_idle_timeout_secs: u64,
    /// Replies queued per gate before its clients wait (backpressure on that gate only).
    pub gate_outbound_queue: usize,
    /// On shutdown, how long in-flight messages may take before tasks are abandoned.
    pub shutdown_grace_secs: u64,
    /// Oldest client build accepted in CM_PROTOCOL (a yyyymmdd date); 0 accepts all.
    pub min_client_version: i32,
    /// How long a server-selection session id stays valid for the SelGate.
    pub session_ttl_secs: u64,
    /// An instance silent this long (no heartbeat in `loginsrv_instances`) is
    /// dead: another instance deletes it and its online sessions. Heartbeats
    /// come every third of it.
    pub instance_expiry_secs: u64,
    /// SQLite: how long to wait for another process to release the database
    /// file (`<file>.lock`) before refusing to start; 0 refuses at once. A
    /// restart sets it so the new process takes over when the old one exits.
    pub sqlite_lock_wait_secs: u64,
    /// Password hashing and brute-force limits.
    pub security: SecurityConfig,
    /// Message id overrides for a client build, e.g. `CM_GETBACKPASSWORD = 2010`.
    pub ids: BTreeMap<String, u16>,
    /// Game servers offered after login, in list order.
    pub servers: Vec<ServerRoute>,
    /// The operator's console.
    pub admin: crate::admin::AdminConfig,
    /// The port game servers connect to (sessions, live counts).
    pub game_servers: GameServersConfig,
    /// Per-gate SelGate routes (the Delphi `!addrtable.txt`); empty = `[[servers]].selgates` for all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<AddrRoute>,
}

/// `[security]`: Argon2id cost and login throttling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Argon2id memory cost in KiB (OWASP minimum 19456).
    pub argon2_m_kib: u32,
    /// Argon2id iterations.
    pub argon2_t: u32,
    /// Argon2id lanes.
    pub argon2_p: u32,
    /// Hashes computed at once (each holds `argon2_m_kib`); 0 = number of CPUs.
    pub max_concurrent_hashes: usize,
    /// Consecutive wrong passwords (or recovery answers) before the account locks.
    pub max_failed_logins: u32,
    /// How long a locked account refuses logins.
    pub lockout_secs: u64,
    /// Shortest password accepted for new accounts and changes.
    pub min_password_len: usize,
    /// Hash-costing requests (login, register, password change, recovery)
    /// one client IP may make per minute; 0 = unlimited. Generous by default:
    /// many players share one internet-café address.
    pub hashes_per_ip_per_minute: u32,
}

/// One `[[servers]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerRoute {
    /// Name shown in the client's server list and sent back in CM_SELECTSERVER.
    pub name: String,
    /// SelGates handed out round-robin (up to 10; `*ip:port` is kept but not handed out).
    pub selgates: Vec<SelGate>,
    /// Most players (the `!UserLimit.txt` figure): drives the list status and SM_STARTFAIL.
    /// Counted in live session ids, or in the game servers' reports when `[game_servers]` is on.
    #[serde(rename = "max_users", alias = "capacity", default = "default_capacity")]
    pub capacity: u32,
    /// IP handed to clients instead of each SelGate's own (same port), when they differ; `""` = none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub public_addr: String,
}

fn default_capacity() -> u32 {
    1000
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log_timestamps: bootstrap::LogTimestamps::Utc,
            stats_log_secs: 60,
            listen: SocketAddr::from(([0, 0, 0, 0], 5500)),
            database: "sqlite://accounts.db".to_owned(),
            db_max_connections: 8,
            default_dialect: Dialect::Delphi,
            temporary_block: BlockLetter::B,
            allow_gates: vec![
                IpNet::from(std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST)),
                IpNet::from(std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
            ],
            max_gates: 64,
            max_clients_per_gate: 20_000,
            max_link_frame_bytes: 16 * 1024,
            max_client_message_bytes: 8 * 1024,
            client_queue_messages: 16,
            gate_idle_timeout_secs: 60,
            gate_outbound_queue: 4096,
            shutdown_grace_secs: 5,
            min_client_version: 0,
            session_ttl_secs: 60,
            instance_expiry_secs: 30,
            sqlite_lock_wait_secs: 0,
            security: SecurityConfig::default(),
            ids: BTreeMap::new(),
            servers: vec![ServerRoute {
                name: "demo".to_owned(),
                selgates: vec![SelGate::from(SocketAddr::from(([127, 0, 0, 1], 7100)))],
                capacity: default_capacity(),
                public_addr: String::new(),
            }],
            admin: crate::admin::AdminConfig::default(),
            game_servers: GameServersConfig::default(),
            routes: Vec::new(),
        }
    }
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            argon2_m_kib: 19_456,
            argon2_t: 2,
            argon2_p: 1,
            max_concurrent_hashes: 0,
            max_failed_logins: 5,
            lockout_secs: 60,
            min_password_len: 3,
            hashes_per_ip_per_minute: 300,
        }
    }
}

impl SecurityConfig {
    /// Hashes computed at once: `max_concurrent_hashes`, or the CPU count for 0.
    pub fn hash_permits(&self) -> usize {
        match self.max_concurrent_hashes {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }

    /// The cheapest legal Argon2id cost: for tests and benchmarks only.
    pub fn test_speed() -> Self {
        SecurityConfig {
            argon2_m_kib: 8,
            argon2_t: 1,
            argon2_p: 1,
            ..SecurityConfig::default()
        }
    }
}

/// Keys a running LoginSrv cannot change in place (its sockets, its database, the
/// Argon2 cost its hasher was built with, the message ids, the game-server port and
/// the session lifetime its routes were built with, the console's address); a reload
/// reports them as "changed; applies on restart".
pub const RESTART_ONLY: &[&str] = &[
    "listen",
    "database",
    "db_max_connections",
    "ids",
    "security.argon2_m_kib",
    "security.argon2_t",
    "security.argon2_p",
    "security.max_concurrent_hashes",
    "game_servers",
    "session_ttl_secs",
    "admin.listen",
];

/// Whether dotted `key` applies on restart only.
pub fn is_restart_only(key: &str) -> bool {
    bootstrap::config::is_under(key, RESTART_ONLY)
}

/// Config errors (a dotted key and the problem) are the same in every binary.
pub use bootstrap::ConfigError;

fn bad(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::new(key, problem)
}

/// Keeps live session ids a vanishing fraction of the i32 id space (ids are drawn at random).
const MAX_CAPACITY: u32 = 1_000_000;

/// Server names travel inside `name/status/…/` lists and GBK client text.
const MAX_SERVER_NAME_BYTES: usize = 30;

impl Config {
    /// Parse a TOML document and validate it; errors name the key.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::from_toml_at(text, std::path::Path::new("config"))
    }

    /// [`Config::from_toml`] for the file at `path`, which errors name with the line.
    pub fn from_toml_at(text: &str, path: &std::path::Path) -> Result<Config, ConfigError> {
        let config: Config = bootstrap::config::from_toml(text, path)?;
        config.validate()?;
        Ok(config)
    }

    /// Build from an already-parsed TOML table (the gate's `[embedded]` section).
    pub fn from_table(table: toml::Table) -> Result<Config, ConfigError> {
        let config: Config = bootstrap::config::from_table(table)?;
        config.validate()?;
        Ok(config)
    }

    /// Effective configuration as TOML, defaults included.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// Check every value the types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.admin.addr()?;
        if self.database.trim().is_empty() {
            return Err(bad("database", "must not be empty"));
        }
        if self.db_max_connections == 0 {
            return Err(bad("db_max_connections", "must be at least 1"));
        }
        if self.allow_gates.is_empty() {
            return Err(bad("allow_gates", "empty: no gate could ever connect"));
        }
        bounded("max_gates", self.max_gates)?;
        bounded("max_clients_per_gate", self.max_clients_per_gate)?;
        bounded("client_queue_messages", self.client_queue_messages)?;
        bounded("gate_outbound_queue", self.gate_outbound_queue)?;
        if self.max_link_frame_bytes < 64 {
            return Err(bad("max_link_frame_bytes", "must be at least 64"));
        }
        if self.max_client_message_bytes < 64
            || self.max_client_message_bytes > self.max_link_frame_bytes
        {
            return Err(bad(
                "max_client_message_bytes",
                "must be at least 64 and at most max_link_frame_bytes",
            ));
        }
        for (key, secs) in [
            ("gate_idle_timeout_secs", self.gate_idle_timeout_secs),
            ("session_ttl_secs", self.session_ttl_secs),
            ("shutdown_grace_secs", self.shutdown_grace_secs),
            ("instance_expiry_secs", self.instance_expiry_secs),
            ("security.lockout_secs", self.security.lockout_secs),
        ] {
            bootstrap::config::check_secs(key, secs, 1)?;
        }
        bootstrap::config::check_secs("stats_log_secs", self.stats_log_secs, 0)?;
        if self.instance_expiry_secs < 3 {
            return Err(bad(
                "instance_expiry_secs",
                "must be at least 3 (heartbeats come every third of it)",
            ));
        }
        bootstrap::config::check_secs("sqlite_lock_wait_secs", self.sqlite_lock_wait_secs, 0)?;
        self.validate_security()?;
        self.id_table()?;
        if self.servers.is_empty() {
            return Err(bad("servers", "at least one [[servers]] entry is needed"));
        }
        for (i, s) in self.servers.iter().enumerate() {
            let key = format!("servers[{i}]");
            let gbk = mir2_proto::text::gbk_encode(&s.name)
                .map_err(|_| bad(format!("{key}.name"), "not representable in GBK"))?;
            if gbk.is_empty() || gbk.len() > MAX_SERVER_NAME_BYTES {
                return Err(bad(
                    format!("{key}.name"),
                    format!("must be 1..={MAX_SERVER_NAME_BYTES} GBK bytes"),
                ));
            }
            if s.name
                .chars()
                .any(|c| c == '/' || c.is_control() || "#!%$".contains(c))
            {
                return Err(bad(
                    format!("{key}.name"),
                    "contains / # ! % $ or a control character",
                ));
            }
            if self.servers[..i].iter().any(|o| o.name == s.name) {
                return Err(bad(format!("{key}.name"), "duplicate server name"));
            }
            crate::game::config::check_selgates(&format!("{key}.selgates"), &s.selgates)?;
            if s.capacity == 0 || s.capacity > MAX_CAPACITY {
                return Err(bad(
                    format!("{key}.max_users"),
                    format!("must be 1..={MAX_CAPACITY}"),
                ));
            }
        }
        crate::game::config::validate(self)?;
        Ok(())
    }

    /// The message ids of the client build served: Delphi's, with the `[ids]` overrides.
    pub fn id_table(&self) -> Result<IdTable, ConfigError> {
        let mut ids = IdTable::delphi();
        for (name, id) in &self.ids {
            ids.set(name, *id)
                .map_err(|_| bad(format!("ids.{name}"), "unknown message name"))?;
        }
        // Two messages on one id: the later would silently never be recognised.
        for (i, &kind) in MsgKind::ALL.iter().enumerate() {
            let id = ids.id(kind);
            if let Some(&other) = MsgKind::ALL[..i].iter().find(|k| ids.id(**k) == id) {
                let (named, clash) = if self.ids.contains_key(kind.name()) {
                    (kind, other)
                } else {
                    (other, kind)
                };
                return Err(bad(
                    format!("ids.{}", named.name()),
                    format!(
                        "id {id} is also {}'s: {} and {} would share it",
                        clash.name(),
                        named.name(),
                        clash.name()
                    ),
                ));
            }
        }
        Ok(ids)
    }

    fn validate_security(&self) -> Result<(), ConfigError> {
        let s = &self.security;
        argon2::Params::new(s.argon2_m_kib, s.argon2_t, s.argon2_p, None)
            .map_err(|e| bad("security.argon2_m_kib / argon2_t / argon2_p", e.to_string()))?;
        if s.argon2_m_kib > MAX_ARGON2_M_KIB {
            return Err(bad(
                "security.argon2_m_kib",
                format!("must be at most {MAX_ARGON2_M_KIB} (1 GiB per hash)"),
            ));
        }
        if s.max_concurrent_hashes > MAX_CONCURRENT_HASHES {
            return Err(bad(
                "security.max_concurrent_hashes",
                format!("must be 0 (= CPUs) ..={MAX_CONCURRENT_HASHES}"),
            ));
        }
        if let Some(total_kib) = physical_memory_kib() {
            let permits = s.hash_permits() as u64;
            let need = u64::from(s.argon2_m_kib).saturating_mul(permits);
            let allowed = total_kib / HASH_MEMORY_SHARE;
            if need > allowed {
                return Err(bad(
                    "security.argon2_m_kib",
                    format!(
                        "{} KiB × {permits} concurrent hashes (security.max_concurrent_hashes) \
                         = {need} KiB, more than 1/{HASH_MEMORY_SHARE} of this machine's \
                         {total_kib} KiB of memory",
                        s.argon2_m_kib
                    ),
                ));
            }
        }
        if s.max_failed_logins == 0 {
            return Err(bad("security.max_failed_logins", "must be at least 1"));
        }
        if !(1..=MAX_PASSWORD_BYTES).contains(&s.min_password_len) {
            return Err(bad(
                "security.min_password_len",
                format!("must be 1..={MAX_PASSWORD_BYTES} (the client's password field)"),
            ));
        }
        Ok(())
    }
}

/// Each hash in flight holds `argon2_m_kib` of memory; more than this is a typo.
const MAX_CONCURRENT_HASHES: usize = 4096;

/// Largest Argon2 memory cost per hash: 1 GiB, 50× OWASP's 19 MiB; beyond it a
/// single login would take seconds and the allocation itself could fail.
const MAX_ARGON2_M_KIB: u32 = 1024 * 1024;

/// All hashes in flight together (`argon2_m_kib` × concurrent hashes) may hold
/// at most this fraction (1/n) of physical memory, leaving the rest to the
/// database, the gate links and the system.
const HASH_MEMORY_SHARE: u64 = 2;

/// Physical memory in KiB (`MemTotal` of /proc/meminfo); `None` where unknown,
/// and then only the fixed per-hash cap applies.
fn physical_memory_kib() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The classic client's TUserEntry password field holds 10 bytes.
pub const MAX_PASSWORD_BYTES: usize = 10;

/// Upper bound for counts that size queues and semaphores (tokio panics far above it).
const MAX_COUNT: usize = 1_000_000;

fn bounded(key: &str, v: usize) -> Result<(), ConfigError> {
    if (1..=MAX_COUNT).contains(&v) {
        Ok(())
    } else {
        Err(bad(key, format!("must be 1..={MAX_COUNT}")))
    }
}

/// The dotted key (`section.key`) and 1-based line at a parse error's span.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip() {
        let c = Config::default();
        c.validate().unwrap();
        let back = Config::from_toml(&c.to_toml()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::from_toml("[security]\nargon2_t = 0\n").unwrap_err();
        assert!(e.key.starts_with("security.argon2"), "{e}");
        let e = Config::from_toml("max_gates = 0\n").unwrap_err();
        assert_eq!(e.key, "max_gates");
        let e = Config::from_toml("max_clients_per_gate = 99999999999999\n").unwrap_err();
        assert_eq!(e.key, "max_clients_per_gate");
        let e = Config::from_toml("[security]\nmax_concurrent_hashes = 100000\n").unwrap_err();
        assert_eq!(e.key, "security.max_concurrent_hashes");
        let e = Config::from_toml("session_ttl_secs = 18446744073709551615\n").unwrap_err();
        assert_eq!(e.key, "session_ttl_secs");
        let e = Config::from_toml("[ids]\nCM_NOPE = 5\n").unwrap_err();
        assert_eq!(e.key, "ids.CM_NOPE");
        let e = Config::from_toml("[[servers]]\nname = \"a/b\"\nselgates = [\"127.0.0.1:1\"]\n")
            .unwrap_err();
        assert_eq!(e.key, "servers[0].name");
        let e = Config::from_toml("bogus = 1\n").unwrap_err();
        assert!(e.problem.contains("bogus"), "{e}");
        let e = Config::from_toml("max_gates = 1\n[security]\nargon2_t = \"x\"\n").unwrap_err();
        assert_eq!(e.key, "security.argon2_t", "{e}");
    }

    #[test]
    fn argon2_memory_is_bounded() {
        let e = Config::from_toml("[security]\nargon2_m_kib = 4294967295\n").unwrap_err();
        assert_eq!(e.key, "security.argon2_m_kib", "{e}");
        let e = Config::from_toml("[security]\nargon2_m_kib = 1048577\n").unwrap_err();
        assert_eq!(e.key, "security.argon2_m_kib", "{e}");
        if physical_memory_kib().is_some_and(|m| m < 4096 * 1024 * 1024 * 2) {
            // 4096 hashes of 1 GiB: 4 TiB.
            let e = Config::from_toml(
                "[security]\nargon2_m_kib = 1048576\nmax_concurrent_hashes = 4096\n",
            )
            .unwrap_err();
            assert_eq!(e.key, "security.argon2_m_kib", "{e}");
            assert!(e.problem.contains("max_concurrent_hashes"), "{e}");
        }
    }

    #[test]
    fn duplicate_ids_are_refused_naming_both() {
        let e = Config::from_toml("[ids]\nCM_IDPASSWORD = 2002\n").unwrap_err();
        assert_eq!(e.key, "ids.CM_IDPASSWORD", "{e}");
        assert!(e.problem.contains("CM_ADDNEWUSER"), "{e}");
        // Swapping two ids is fine; moving one onto another's is not.
        Config::from_toml("[ids]\nCM_IDPASSWORD = 2002\nCM_ADDNEWUSER = 2001\n").unwrap();
        let e = Config::from_toml("[ids]\nSM_GETBACKPASSWD_FAIL = 500\n").unwrap_err();
        assert_eq!(e.key, "ids.SM_GETBACKPASSWD_FAIL", "{e}");
        assert!(e.problem.contains("SM_CERTIFICATION_SUCCESS"), "{e}");
    }

    #[test]
    fn servers_and_ids_parse() {
        let c = Config::from_toml(
            "allow_gates = [\"10.0.0.0/8\"]\n[ids]\nCM_GETBACKPASSWORD = 2010\n[[servers]]\nname = \"传奇\"\nselgates = [\"127.0.0.1:7100\", \"127.0.0.1:7101\"]\ncapacity = 5\n",
        )
        .unwrap();
        assert_eq!(c.servers[0].selgates.len(), 2);
        assert_eq!(c.servers[0].capacity, 5);
        assert_eq!(c.ids.get("CM_GETBACKPASSWORD"), Some(&2010));
    }
}
