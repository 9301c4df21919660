//! Gate configuration: the TOML file, command-line overrides and validation.
//!
//! Every limit the gate enforces has a key here with a default, so an operator
//! can see all of them with `--print-config`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Config errors, the log format and the one bound of every `*_secs` key are
/// the same in every binary of the workspace.
pub use bootstrap::{ConfigError, LogFormat, LogTimestamps, MAX_SECS};
/// `[server.frames]`: per-field overrides of the dialect's frame table.
pub use mir2_proto::link::{FrameOverrides, Frames};
/// The link dialect, as written in the config (`wemade`, `delphi`, `happym2`, `ldx`).
pub use mir2_proto::Dialect;
/// PROXY protocol mode, as written in the config (`off`, `v1`, `v2`, `any`).
pub use netcore::ProxyProtocol;

pub use crate::role::Role;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for state of the embedded LoginSrv (accounts database).
    #[cfg(feature = "embedded")]
    pub data_dir: PathBuf,
    /// Log line format on stderr.
    pub log_format: LogFormat,
    /// Log timestamps in `utc` or `local` time (with the offset, read at start-up).
    pub log_timestamps: LogTimestamps,
    /// One info line per closed client session (id, peer, duration, messages,
    /// close reason).
    pub log_connections: bool,
    /// Which log lines are written, as `RUST_LOG` directives (`info`,
    /// `logingate=debug,netcore=warn`); "" = `RUST_LOG`, else `info`.
    pub log_filter: String,
    /// What the gate fronts: a LoginSrv (`login`) or a DBServer (`selgate`);
    /// keys left out of the file take that role's defaults.
    pub role: Role,
    /// Client side: listeners, admission and per-session limits.
    pub gate: GateConfig,
    /// LoginSrv side: the one multiplexed link.
    pub server: ServerConfig,
    /// The operator's HTTP console (metrics, status page, admin API).
    pub admin: AdminConfig,
    /// Settings passed verbatim to the embedded LoginSrv (its own schema).
    #[cfg(feature = "embedded")]
    pub embedded: toml::Table,
}

/// `[gate]`: everything that faces game clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateConfig {
    /// Addresses accepting game clients (one `"IP:PORT"` string or a list).
    #[serde(deserialize_with = "bootstrap::config::addr::list")]
    pub listen: Vec<SocketAddr>,
    /// Listen backlog handed to the kernel.
    pub backlog: u32,
    /// Live client connections at most; further accepts are refused.
    pub max_connections: usize,
    /// Live connections per client IP at most (0 = unlimited).
    pub max_conn_per_ip: u32,
    /// New connections per second per IP, burst the same (0 = unlimited).
    pub conn_rate_per_ip: u32,
    /// A client must send its first whole `#…!` message within this; `*` acks
    /// or a partial message do not count (0 = no limit).
    pub first_packet_timeout_secs: u64,
    /// TCP_DEFER_ACCEPT (Linux): the kernel holds a connection that has sent
    /// nothing for up to this long before the gate sees it, so a flood of
    /// silent connections costs no session, no `%O` frame and no slot (0 = off).
    pub defer_accept_secs: u64,
    /// A client sending no whole message for this long is closed, even if
    /// it sends `*` acks or a message byte by byte (0 = no limit).
    pub idle_timeout_secs: u64,
    /// Longest client `#…!` message; longer closes the session (`oversize`).
    pub max_packet_bytes: usize,
    /// Messages per second per session; more closes it (`flooding`).
    pub max_packets_per_sec: u32,
    /// Bytes queued towards one client at most; more closes it (`slow_reader`).
    pub max_outbound_bytes: usize,
    /// How long a `%+B` (temporary) block from the LoginSrv lasts.
    pub temp_block_secs: u64,
    /// One IP or CIDR per line; reloaded when it changes ("" = none).
    pub block_list_file: String,
    /// How often the block list file's mtime is checked.
    pub block_list_poll_secs: u64,
    /// On shutdown, how long sessions and the link get to flush.
    pub shutdown_grace_secs: u64,
    /// After a zero-downtime restart handed the listeners to the new process, how
    /// long this one keeps serving its sessions before closing the rest.
    pub drain_timeout_secs: u64,
    /// How long a zero-downtime restart waits for the new process to be ready
    /// (listeners and link up) before killing it and carrying on as before.
    pub restart_ready_timeout_secs: u64,
    /// File holding the gate's pid, written atomically at start and removed at
    /// exit; a restarted gate takes it over ("" = none).
    pub pid_file: String,
    /// Interval of the summary log line (sessions, link batching, closes; 0 = off).
    pub stats_log_secs: u64,
    /// Threads running the gate's tasks: 1 = one thread for everything (the link
    /// and every session: no wake-up crosses threads), 0 = one per core, n = n.
    pub worker_threads: usize,
    /// PROXY protocol a trusted front sends: `off`, `v1`, `v2` or `any` (either,
    /// recognised per connection).
    #[serde(with = "proxy_protocol_name")]
    pub proxy_protocol: ProxyProtocol,
    /// IPs or CIDRs of fronts whose connections must start with a PROXY header;
    /// the address in it is then the client's for every limit, block and frame.
    pub trusted_proxies: Vec<String>,
    /// A trusted front that sends no complete header this long is closed.
    pub proxy_header_timeout_secs: u64,
    /// When non-empty, only these IPs or CIDRs may connect at all (checked on the
    /// TCP peer, before anything else); e.g. a protection service's ranges.
    pub allow_sources: Vec<String>,
    /// Allow list ("green channel"): one IP or CIDR per line, reloaded when it changes
    /// ("" = none). Its sources skip the per-IP cap, the connect rate, attack mode and
    /// punishment, not `max_connections` nor a block.
    pub allow_list_file: String,
    /// `CM_ADDNEWUSER` messages per source IP per hour (burst the same; 0 = unlimited).
    pub new_accounts_per_ip_per_hour: u32,
    /// `CM_CHANGEPASSWORD` + `CM_GETBACKPASSWORD` per source IP per minute (0 = unlimited).
    pub password_ops_per_ip_per_min: u32,
    /// `[gate.punish]`: what each offence costs the source.
    pub punish: crate::punish::PunishConfig,
    /// `[gate.attack]`: automatic attack mode and its stricter limits.
    pub attack: crate::attack::AttackConfig,
}

/// `proxy_protocol` in TOML: the mode's name.
mod proxy_protocol_name {
    use super::ProxyProtocol;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mode: &ProxyProtocol, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(mode.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ProxyProtocol, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// `[server]`: the links to the LoginSrvs (one link per backend).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// LoginSrv gate port, or a list of them (one link each); absent, with
    /// no `[[server.backends]]`, = start the embedded LoginSrv (required in a
    /// gate built without it).
    #[serde(with = "one_or_many", skip_serializing_if = "Vec::is_empty")]
    pub addr: Vec<SocketAddr>,
    /// Link dialect the LoginSrv speaks (each backend may set its own).
    pub dialect: Dialect,
    /// Interval of `%--$` heartbeats.
    pub heartbeat_secs: u64,
    /// No heartbeat reply for this long = link dead, reconnect.
    pub dead_after_secs: u64,
    /// Reconnect backoff starts at 0.5 s and doubles up to this.
    pub reconnect_max_secs: u64,
    /// A connect attempt taking longer than this fails.
    pub connect_timeout_secs: u64,
    /// Longest `%…$` frame from the LoginSrv; longer resets the link.
    pub max_frame_bytes: usize,
    /// Encoded frames waiting for the link writer at most; a client whose
    /// data would exceed it is closed (`server_busy`).
    pub max_link_buffer_bytes: usize,
    /// The address written as the gate IP in open frames, for a gate on
    /// another host or behind NAT (the Delphi `DynamicIPDisMode`, AppleM2's
    /// `PublicAddr`); absent = the listener address the client reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate_addr: Option<IpAddr>,
    /// `[server.frames]`: overrides of the dialect's frame table, field by
    /// field (`open`, `data`, `close`, `open_gate_ip`, `nul_after_reply`,
    /// `block_frames`, `temporary_block`); `--print-config` writes the whole
    /// effective table.
    #[serde(skip_serializing_if = "FrameOverrides::is_empty")]
    pub frames: FrameOverrides,
    /// Client messages forwarded on a link without a single reply within
    /// `silent_window_secs` that make it warn of a wrong dialect (0 = never).
    pub silent_replies_warn: u64,
    /// The window of `silent_replies_warn`; the warning comes at most once per window.
    pub silent_window_secs: u64,
    /// `[[server.backends]]`: the LoginSrvs as tables, when one needs options
    /// of its own (instead of `addr`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendConfig>,
}

/// One `[[server.backends]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// The LoginSrv's gate port.
    #[serde(deserialize_with = "bootstrap::config::addr::one")]
    pub addr: SocketAddr,
    /// Its link dialect; absent = `server.dialect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialect: Option<Dialect>,
    /// Overrides of its dialect's frame table; absent = `server.frames`
    /// when `dialect` is absent too, else none.
    #[serde(default, skip_serializing_if = "FrameOverrides::is_empty")]
    pub frames: FrameOverrides,
}

/// One backend as the gate links to it: `server.addr` entries and
/// `[[server.backends]]` tables resolved against the `[server]` defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    /// Where its LoginSrv listens for gates.
    pub addr: SocketAddr,
    /// Its dialect (the preset its frame table starts from).
    pub dialect: Dialect,
    /// The frame table its link writes and reads.
    pub frames: Frames,
    /// The key its address came from (`server.addr`, `server.addr[1]`,
    /// `server.backends[0].addr`), for errors.
    pub addr_key: String,
    /// The key that sets its dialect (`server.dialect` or
    /// `server.backends[0].dialect`), for errors and the wrong-dialect warning.
    pub dialect_key: String,
}

/// `server.addr` in TOML: one `"HOST:PORT"` or a list of them.
mod one_or_many {
    use std::fmt;
    use std::net::SocketAddr;

    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(addrs: &[SocketAddr], s: S) -> Result<S::Ok, S::Error> {
        match addrs {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }

    /// One list entry: `IP:PORT` or `host:port`.
    struct Entry(SocketAddr);

    impl<'de> serde::Deserialize<'de> for Entry {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            bootstrap::config::addr::one(d).map(Entry)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
        struct Addrs;
        impl<'de> Visitor<'de> for Addrs {
            type Value = Vec<SocketAddr>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"IP:PORT\" or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                bootstrap::config::addr::parse(v)
                    .map(|a| vec![a])
                    .map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut addrs = Vec::new();
                // Each entry parsed as it is read, so an error names its index.
                while let Some(Entry(addr)) = seq.next_element::<Entry>()? {
                    addrs.push(addr);
                }
                if addrs.is_empty() {
                    return Err(de::Error::custom(
                        "an empty list names no LoginSrv; leave the key out for the embedded one",
                    ));
                }
                Ok(addrs)
            }
        }
        d.deserialize_any(Addrs)
    }
}

/// `[admin]`: the operator's console. With the embedded LoginSrv its
/// account endpoints are served here too (one port).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// `IP:PORT` of the console; "" turns it off, port 0 picks a free port
    /// (the startup line names it: `admin=…`).
    pub listen: String,
    /// Bearer token for requests that change state; required when `listen`
    /// is not a loopback address.
    pub token: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:7001".to_owned(),
            token: String::new(),
        }
    }
}

impl AdminConfig {
    /// The console's address, `None` when it is off.
    pub fn addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        console::listen::check(&self.listen, &self.token).map_err(|p| {
            invalid(
                match p.key {
                    "token" => "admin.token",
                    _ => "admin.listen",
                },
                p.problem,
            )
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            #[cfg(feature = "embedded")]
            data_dir: PathBuf::from("./data"),
            log_format: LogFormat::Text,
            log_timestamps: LogTimestamps::Utc,
            log_connections: false,
            log_filter: String::new(),
            role: Role::Login,
            gate: GateConfig::default(),
            server: ServerConfig::default(),
            admin: AdminConfig::default(),
            #[cfg(feature = "embedded")]
            embedded: toml::Table::new(),
        }
    }
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 7000))],
            backlog: 1024,
            max_connections: 10_000,
            max_conn_per_ip: 20,
            conn_rate_per_ip: 10,
            first_packet_timeout_secs: 10,
            defer_accept_secs: 0,
            idle_timeout_secs: 120,
            max_packet_bytes: 2048,
            max_packets_per_sec: 20,
            max_outbound_bytes: 64 * 1024,
            temp_block_secs: 300,
            block_list_file: String::new(),
            block_list_poll_secs: 2,
            shutdown_grace_secs: 5,
            drain_timeout_secs: 120,
            restart_ready_timeout_secs: 30,
            pid_file: String::new(),
            stats_log_secs: 60,
            worker_threads: 1,
            proxy_protocol: ProxyProtocol::Off,
            trusted_proxies: Vec::new(),
            proxy_header_timeout_secs: 5,
            allow_sources: Vec::new(),
            allow_list_file: String::new(),
            new_accounts_per_ip_per_hour: 5,
            password_ops_per_ip_per_min: 10,
            punish: crate::punish::PunishConfig::default(),
            attack: crate::attack::AttackConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: Vec::new(),
            dialect: Dialect::Wemade,
            heartbeat_secs: 5,
            dead_after_secs: 15,
            reconnect_max_secs: 10,
            connect_timeout_secs: 5,
            max_frame_bytes: 16 * 1024,
            max_link_buffer_bytes: 4 * 1024 * 1024,
            gate_addr: None,
            frames: FrameOverrides::default(),
            silent_replies_warn: 20,
            silent_window_secs: 30,
            backends: Vec::new(),
        }
    }
}

pub(crate) fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::new(key, problem)
}

/// Smallest legal client message: `#` + check digit + 16-char header + `!`
/// is 19; server-style messages without the digit are 18.
pub const MIN_PACKET_BYTES: usize = 18;

/// Room an encoded link frame needs around its data (`%A` + id + `/` + `$`).
const LINK_FRAME_OVERHEAD: usize = 16;

impl ServerConfig {
    /// The frame table in effect: the dialect's preset with `[server.frames]` applied.
    pub fn link_frames(&self) -> Frames {
        self.frames.apply(*self.dialect.frames())
    }

    /// Whether external LoginSrvs are configured (else the embedded one runs).
    pub fn is_external(&self) -> bool {
        !self.addr.is_empty() || !self.backends.is_empty()
    }

    /// Every configured backend, in order: the `addr` entries, then the
    /// `[[server.backends]]` tables (validation refuses both at once).
    pub fn backend_list(&self) -> Vec<Backend> {
        let plain = self.addr.iter().enumerate().map(|(i, &addr)| Backend {
            addr,
            dialect: self.dialect,
            frames: self.link_frames(),
            addr_key: match self.addr.len() {
                1 => "server.addr".to_owned(),
                _ => format!("server.addr[{i}]"),
            },
            dialect_key: "server.dialect".to_owned(),
        });
        let tables = self
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| match b.dialect {
                Some(dialect) => Backend {
                    addr: b.addr,
                    dialect,
                    frames: b.frames.apply(*dialect.frames()),
                    addr_key: format!("server.backends[{i}].addr"),
                    dialect_key: format!("server.backends[{i}].dialect"),
                },
                None => Backend {
                    addr: b.addr,
                    dialect: self.dialect,
                    frames: b.frames.apply(self.link_frames()),
                    addr_key: format!("server.backends[{i}].addr"),
                    dialect_key: "server.dialect".to_owned(),
                },
            });
        plain.chain(tables).collect()
    }
}

impl Config {
    /// Parse a TOML document (unknown keys are errors); missing keys take the
    /// defaults of the file's `role`.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Self::from_toml_as(text, path, None)
    }

    /// Parse a TOML document as `role` when given (the `--role` flag), else as
    /// the file's `role`; missing keys take that role's defaults.
    pub fn from_toml_as(
        text: &str,
        path: &Path,
        role: Option<Role>,
    ) -> Result<Config, ConfigError> {
        // Parsed over the login defaults first: every key is checked here,
        // and an error names its dotted key and line.
        let as_login: Config = bootstrap::config::from_toml(text, path)?;
        let role = role.unwrap_or(as_login.role);
        if role == Role::Login {
            return Ok(Config { role, ..as_login });
        }
        // Another role: the file's keys over that role's defaults.
        let file: toml::Table = bootstrap::config::from_toml(text, path)?;
        let mut merged = match toml::Value::try_from(role.defaults()) {
            Ok(toml::Value::Table(t)) => t,
            other => {
                return Err(ConfigError::new(
                    "role",
                    format!("cannot apply the {role} defaults: {other:?}"),
                ))
            }
        };
        merge_tables(&mut merged, file);
        merged.insert("role".into(), toml::Value::String(role.as_str().into()));
        bootstrap::config::from_table(merged)
    }

    /// Read and parse a TOML file (not yet validated: apply CLI overrides first).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_as(path, None)
    }

    /// [`Config::load`] as `role` when given, else as the file's `role`.
    pub fn load_as(path: &Path, role: Option<Role>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("config", format!("cannot read {}: {e}", path.display()))
        })?;
        Self::from_toml_as(&text, path, role)
    }

    /// Writes the effective frame table into `[server.frames]`, so the printed
    /// configuration shows every letter and field in use.
    pub fn pin_frames(&mut self) {
        let resolved = self.server.backend_list();
        let tables = resolved.len() - self.server.backends.len();
        for (b, r) in self.server.backends.iter_mut().zip(&resolved[tables..]) {
            if b.dialect.is_some() {
                b.frames = FrameOverrides::pinned(r.frames);
            }
        }
        self.server.frames = FrameOverrides::pinned(self.server.link_frames());
    }

    /// The effective configuration as TOML, every default included.
    pub fn to_toml(&self) -> String {
        // Serialising plain data structs cannot fail; fall back to a comment
        // rather than panic should a future field break that.
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
    }

    /// What `--print-config` shows: [`Config::to_toml`] with the embedded
    /// LoginSrv's table in effect (its defaults under the file's keys), one
    /// help comment per `[embedded]` key. Parses back to the same behaviour.
    pub fn effective_toml(&self) -> String {
        #[cfg(feature = "embedded")]
        if let Some(table) = crate::embedded::effective_table(self) {
            let full = Config {
                embedded: table,
                ..self.clone()
            };
            let text = full.to_toml();
            return match text.parse::<toml_edit::DocumentMut>() {
                Ok(mut doc) => {
                    crate::embedded::annotate(&mut doc);
                    doc.to_string()
                }
                Err(_) => text,
            };
        }
        self.to_toml()
    }

    /// Check every range; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let g = &self.gate;
        let s = &self.server;
        // Before the embedded LoginSrv's keys: a SelGate never starts it.
        if self.role == Role::SelGate && !s.is_external() {
            return Err(invalid(
                "server.addr",
                "is required with role = \"selgate\": a SelGate links to a DBServer \
                 (classically 127.0.0.1:5100), and the embedded LoginSrv is no DBServer; \
                 pass --server HOST:PORT or set [server] addr",
            ));
        }
        #[cfg(feature = "embedded")]
        crate::embedded::validate_data_dir(self)?;
        for (key, secs) in [
            (
                "gate.first_packet_timeout_secs",
                g.first_packet_timeout_secs,
            ),
            ("gate.idle_timeout_secs", g.idle_timeout_secs),
            ("gate.defer_accept_secs", g.defer_accept_secs),
            ("gate.temp_block_secs", g.temp_block_secs),
            ("gate.block_list_poll_secs", g.block_list_poll_secs),
            ("gate.shutdown_grace_secs", g.shutdown_grace_secs),
            ("gate.drain_timeout_secs", g.drain_timeout_secs),
            (
                "gate.restart_ready_timeout_secs",
                g.restart_ready_timeout_secs,
            ),
            ("gate.stats_log_secs", g.stats_log_secs),
            ("gate.attack.exit_after_secs", g.attack.exit_after_secs),
            (
                "gate.attack.first_packet_timeout_secs",
                g.attack.first_packet_timeout_secs,
            ),
            (
                "gate.proxy_header_timeout_secs",
                g.proxy_header_timeout_secs,
            ),
            ("server.heartbeat_secs", s.heartbeat_secs),
            ("server.dead_after_secs", s.dead_after_secs),
            ("server.reconnect_max_secs", s.reconnect_max_secs),
            ("server.connect_timeout_secs", s.connect_timeout_secs),
            ("server.silent_window_secs", s.silent_window_secs),
        ] {
            if secs > MAX_SECS {
                return Err(invalid(
                    key,
                    format!("must be at most {MAX_SECS} (one year; got {secs})"),
                ));
            }
        }
        if g.listen.is_empty() {
            return Err(invalid("gate.listen", "needs at least one address"));
        }
        if g.worker_threads > MAX_WORKER_THREADS {
            return Err(invalid(
                "gate.worker_threads",
                format!(
                    "must be at most {MAX_WORKER_THREADS} (got {}); 0 = one per core",
                    g.worker_threads
                ),
            ));
        }
        if g.restart_ready_timeout_secs == 0 {
            return Err(invalid(
                "gate.restart_ready_timeout_secs",
                "must be at least 1",
            ));
        }
        bootstrap::logging::check_filter(&self.log_filter).map_err(|e| invalid("log_filter", e))?;
        if let Some(console) = self.admin.addr()? {
            if console.port() != 0 && g.listen.contains(&console) {
                return Err(invalid(
                    "admin.listen",
                    format!("{console} is also a client listener (gate.listen)"),
                ));
            }
        }
        // A second bind of the same address would fail only at startup.
        for (i, a) in g.listen.iter().enumerate() {
            if g.listen[..i].contains(a) {
                return Err(invalid(
                    "gate.listen",
                    format!("lists {a} twice (from the file or --listen)"),
                ));
            }
        }
        self.validate_backends()?;
        if g.max_connections == 0 {
            return Err(invalid("gate.max_connections", "must be at least 1"));
        }
        if g.max_packet_bytes < MIN_PACKET_BYTES {
            return Err(invalid(
                "gate.max_packet_bytes",
                format!(
                    "must be at least {MIN_PACKET_BYTES} (got {})",
                    g.max_packet_bytes
                ),
            ));
        }
        if g.max_packet_bytes > 1 << 20 {
            return Err(invalid("gate.max_packet_bytes", "must be at most 1048576"));
        }
        if g.max_packets_per_sec == 0 {
            return Err(invalid("gate.max_packets_per_sec", "must be at least 1"));
        }
        if g.max_outbound_bytes < 1024 {
            return Err(invalid("gate.max_outbound_bytes", "must be at least 1024"));
        }
        if g.temp_block_secs == 0 {
            return Err(invalid("gate.temp_block_secs", "must be at least 1"));
        }
        if g.attack.exit_conn_rate > g.attack.enter_conn_rate && g.attack.enter_conn_rate > 0 {
            return Err(invalid(
                "gate.attack.exit_conn_rate",
                format!(
                    "must be at most gate.attack.enter_conn_rate ({}; got {})",
                    g.attack.enter_conn_rate, g.attack.exit_conn_rate
                ),
            ));
        }
        if g.block_list_poll_secs == 0 {
            return Err(invalid("gate.block_list_poll_secs", "must be at least 1"));
        }
        let trusted = networks("gate.trusted_proxies", &g.trusted_proxies)?;
        networks("gate.allow_sources", &g.allow_sources)?;
        match (g.proxy_protocol, trusted.is_empty()) {
            (ProxyProtocol::Off, false) => {
                return Err(invalid(
                    "gate.trusted_proxies",
                    "is set but gate.proxy_protocol is \"off\" (set v1, v2 or any)",
                ))
            }
            (ProxyProtocol::Off, true) | (_, false) => {}
            (_, true) => {
                return Err(invalid(
                    "gate.proxy_protocol",
                    "is on but gate.trusted_proxies is empty (list the fronts' addresses)",
                ))
            }
        }
        if g.proxy_header_timeout_secs == 0 {
            return Err(invalid(
                "gate.proxy_header_timeout_secs",
                "must be at least 1",
            ));
        }
        if s.heartbeat_secs == 0 {
            return Err(invalid("server.heartbeat_secs", "must be at least 1"));
        }
        if s.dead_after_secs <= s.heartbeat_secs {
            return Err(invalid(
                "server.dead_after_secs",
                format!(
                    "must be greater than server.heartbeat_secs ({} <= {})",
                    s.dead_after_secs, s.heartbeat_secs
                ),
            ));
        }
        if s.reconnect_max_secs == 0 {
            return Err(invalid("server.reconnect_max_secs", "must be at least 1"));
        }
        if s.connect_timeout_secs == 0 {
            return Err(invalid("server.connect_timeout_secs", "must be at least 1"));
        }
        if s.max_frame_bytes < 64 {
            return Err(invalid("server.max_frame_bytes", "must be at least 64"));
        }
        if s.silent_window_secs == 0 && s.silent_replies_warn > 0 {
            return Err(invalid(
                "server.silent_window_secs",
                "must be at least 1 (or set server.silent_replies_warn = 0 to turn the check off)",
            ));
        }
        // The server's table, then each `[[server.backends]]` table's.
        let mut frame_tables = vec![(s.dialect, s.link_frames(), "server".to_owned())];
        for (i, b) in s.backend_list().into_iter().skip(s.addr.len()).enumerate() {
            frame_tables.push((b.dialect, b.frames, format!("server.backends[{i}]")));
        }
        for (dialect, frames, at) in &frame_tables {
            frames.check().map_err(|e| {
                let field = match e.field {
                    "open" => "open",
                    "data" => "data",
                    _ => "close",
                };
                ConfigError::new(
                    format!("{at}.frames.{field}"),
                    format!("(dialect {dialect}): {}", e.problem),
                )
            })?;
        }
        if let Some(ip) = s.gate_addr {
            if ip.is_unspecified() {
                return Err(invalid(
                    "server.gate_addr",
                    format!("{ip} is no address a client can reach; leave the key out to send the listener's address"),
                ));
            }
            // With `[[server.backends]]`, only their tables are written.
            let mut tables = frame_tables[usize::from(!s.backends.is_empty())..].iter();
            if let Some((dialect, _, at)) = tables.find(|(_, f, _)| !f.open_gate_ip) {
                return Err(invalid(
                    "server.gate_addr",
                    format!(
                        "is never sent: the open frames of dialect {dialect} ({at}) carry no gate \
                         address (frames.open_gate_ip = false)"
                    ),
                ));
            }
        }
        // Checked here, not when the embedded LoginSrv starts, so a bad key
        // exits 2 (and `--print-config` refuses it) like every other one.
        #[cfg(feature = "embedded")]
        crate::embedded::validate_table(self)?;
        #[cfg(not(feature = "embedded"))]
        if !s.is_external() {
            return Err(invalid(
                "server.addr",
                "is required: this gate was built without the embedded LoginSrv \
                 (cargo feature `embedded`); pass --server HOST:PORT or set [server] addr",
            ));
        }
        // A reply the link accepts must fit a client's queue, or the client
        // would be closed as a "slow reader" for a single reply.
        if g.max_outbound_bytes < s.max_frame_bytes {
            return Err(invalid(
                "gate.max_outbound_bytes",
                format!(
                    "must hold the longest LoginSrv frame (>= server.max_frame_bytes = {})",
                    s.max_frame_bytes
                ),
            ));
        }
        if s.max_link_buffer_bytes < g.max_packet_bytes + LINK_FRAME_OVERHEAD {
            return Err(invalid(
                "server.max_link_buffer_bytes",
                format!(
                    "must hold at least one client message (>= gate.max_packet_bytes + {LINK_FRAME_OVERHEAD})"
                ),
            ));
        }
        Ok(())
    }

    /// `server.addr` and `[[server.backends]]`: each address usable, none
    /// twice, none the gate's own listener; the error names the entry.
    fn validate_backends(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if !s.addr.is_empty() && !s.backends.is_empty() {
            return Err(invalid(
                "server.backends",
                "is set together with server.addr: list the LoginSrvs in one of the two",
            ));
        }
        let backends = s.backend_list();
        for (i, b) in backends.iter().enumerate() {
            let addr = b.addr;
            // Port 0 can be listened on, not connected to: the link would retry forever.
            if addr.port() == 0 {
                return Err(ConfigError::new(
                    b.addr_key.clone(),
                    format!("needs a port other than 0 (got {addr})"),
                ));
            }
            if let Some(own) = self.gate.listen.iter().find(|l| reaches(addr, **l)) {
                return Err(ConfigError::new(
                    b.addr_key.clone(),
                    format!(
                        "{addr} is the gate's own listener {own} (gate.listen): \
                         the link would connect to the gate itself"
                    ),
                ));
            }
            if let Some(first) = backends[..i].iter().find(|o| o.addr == addr) {
                return Err(ConfigError::new(
                    b.addr_key.clone(),
                    format!("{addr} is listed twice (also {})", first.addr_key),
                ));
            }
        }
        Ok(())
    }

    /// `gate.trusted_proxies` as networks (invalid entries are refused by `validate`).
    pub fn trusted_proxies(&self) -> Vec<IpNet> {
        networks("gate.trusted_proxies", &self.gate.trusted_proxies).unwrap_or_default()
    }

    /// `gate.allow_sources` as networks (invalid entries are refused by `validate`).
    pub fn allow_sources(&self) -> Vec<IpNet> {
        networks("gate.allow_sources", &self.gate.allow_sources).unwrap_or_default()
    }

    /// `block_list_file` as a path, `None` when unset.
    pub fn block_list_path(&self) -> Option<PathBuf> {
        let f = self.gate.block_list_file.trim();
        (!f.is_empty()).then(|| PathBuf::from(f))
    }

    /// Start-up check of the list files: each created empty when missing, refused
    /// (naming its key) when it exists but cannot be read.
    pub fn prepare_list_files(&self) -> Result<(), ConfigError> {
        if let Some(path) = self.block_list_path() {
            crate::blocklist::prepare("gate.block_list_file", &path)?;
        }
        if let Some(path) = self.allow_list_path() {
            crate::blocklist::prepare("gate.allow_list_file", &path)?;
        }
        Ok(())
    }

    /// `gate.pid_file` as a path, `None` when unset.
    pub fn pid_file_path(&self) -> Option<PathBuf> {
        let f = self.gate.pid_file.trim();
        (!f.is_empty()).then(|| PathBuf::from(f))
    }

    /// `gate.allow_list_file`, unless empty.
    pub fn allow_list_path(&self) -> Option<PathBuf> {
        let f = self.gate.allow_list_file.trim();
        (!f.is_empty()).then(|| PathBuf::from(f))
    }
}

/// Most runtime threads `gate.worker_threads` may ask for.
pub const MAX_WORKER_THREADS: usize = 256;

/// Keys a running gate cannot change in place: the sockets it listens on and how it
/// accepts, the LoginSrv it links to and how it frames the link, its console's
/// address, the embedded LoginSrv, the runtime's threads and the log format. A reload
/// reports them as "changed; applies on restart" (a zero-downtime restart applies
/// them). A key is restart-only when it equals an entry or lies under one (`embedded.…`).
pub const RESTART_ONLY: &[&str] = &[
    "role",
    "log_format",
    "log_timestamps",
    "data_dir",
    "embedded",
    "gate.listen",
    "gate.backlog",
    "gate.defer_accept_secs",
    "gate.proxy_protocol",
    "gate.trusted_proxies",
    "gate.proxy_header_timeout_secs",
    "gate.allow_sources",
    "gate.stats_log_secs",
    "gate.pid_file",
    "gate.worker_threads",
    "server.addr",
    "server.backends",
    "server.dialect",
    "server.frames",
    "server.gate_addr",
    "server.max_frame_bytes",
    "server.max_link_buffer_bytes",
    "server.silent_replies_warn",
    "server.silent_window_secs",
    "admin.listen",
];

/// Whether `key` (a dotted key from [`changed_keys`]) applies on restart only.
pub fn is_restart_only(key: &str) -> bool {
    bootstrap::config::is_under(key, RESTART_ONLY)
}

/// The dotted keys whose values differ between `old` and `new`, sorted by name
/// within each table.
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    bootstrap::config::changed_keys(old, new)
}

/// Lays `over` onto `base`: tables merge key by key, anything else replaces.
pub(crate) fn merge_tables(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_tables(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Whether connecting to `server` would reach the listener bound to `listen`.
/// netcore binds IPv6 listeners IPv6-only, so families never cross.
fn reaches(server: SocketAddr, listen: SocketAddr) -> bool {
    if server.port() != listen.port() {
        return false;
    }
    let (server, listen) = (server.ip().to_canonical(), listen.ip().to_canonical());
    if server == listen {
        return true;
    }
    if server.is_ipv4() != listen.is_ipv4() {
        return false;
    }
    // A wildcard listener accepts on every address of this host; connecting
    // to the unspecified address reaches this host.
    (listen.is_unspecified() && is_local(server)) || server.is_unspecified()
}

/// Whether `ip` is an address of this host: loopback, or one a socket can
/// be bound to (the kernel refuses addresses it does not own).
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// Each entry as a network: a CIDR, or a bare IP meaning that host.
fn networks(key: &'static str, entries: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let entry = entry.trim();
            entry
                .parse::<IpNet>()
                .map(|net| net.trunc())
                .or_else(|_| {
                    entry
                        .parse::<std::net::IpAddr>()
                        .map(|ip| IpNet::from(ip.to_canonical()))
                })
                .map_err(|_| {
                    ConfigError::new(
                        format!("{key}[{i}]"),
                        format!("{entry:?} is not an IP address or CIDR (e.g. 203.0.113.0/24)"),
                    )
                })
        })
        .collect()
}

/// `Some(secs)` as a duration, `None` for 0 ("no limit").
pub fn optional_secs(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The defaults, valid in this build: a gate without the embedded
    /// LoginSrv needs a `server.addr`.
    fn defaults() -> Config {
        #[allow(unused_mut)]
        let mut c = Config::default();
        #[cfg(not(feature = "embedded"))]
        {
            c.server.addr = vec!["127.0.0.1:5500".parse().unwrap()];
        }
        c
    }

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let c = defaults();
        c.validate().unwrap();
        let text = c.to_toml();
        let back = Config::from_toml(&text, Path::new("x")).unwrap();
        assert_eq!(back, c);
        assert!(text.contains("max_packets_per_sec = 20"), "{text}");
    }

    #[test]
    fn server_addr_round_trips() {
        let mut c = defaults();
        c.server.addr = vec!["127.0.0.1:5500".parse().unwrap()];
        c.server.dialect = Dialect::HappyM2;
        let back = Config::from_toml(&c.to_toml(), Path::new("x")).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[gate]\nmax_conections = 5\n", Path::new("g.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_conections"), "{err}");
        assert!(err.contains("did you mean `max_connections`?"), "{err}");
    }

    #[test]
    fn listen_takes_one_string_and_server_a_host_name() {
        let c = Config::from_toml(
            "[gate]\nlisten = \"127.0.0.1:7000\"\n[server]\naddr = \"localhost:5500\"\n",
            Path::new("g.toml"),
        )
        .unwrap();
        assert_eq!(c.gate.listen, vec!["127.0.0.1:7000".parse().unwrap()]);
        assert!(c.server.addr[0].ip().is_loopback());
        let e = Config::from_toml("[server]\naddr = \"5500\"\n", Path::new("g.toml")).unwrap_err();
        assert_eq!(e.key, "server.addr");
        assert!(e.problem.contains("IP:PORT"), "{e}");
    }

    #[test]
    fn a_bad_network_entry_is_named_with_its_index() {
        let mut c = defaults();
        c.gate.allow_sources = vec!["10.0.0.0/8".into(), "10.0.0.0/33".into()];
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "gate.allow_sources[1]");
        assert!(e.problem.contains("10.0.0.0/33"), "{e}");
    }

    #[test]
    fn ranges_are_checked_by_key() {
        let mut c = defaults();
        c.server.dead_after_secs = c.server.heartbeat_secs;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("server.dead_after_secs"), "{err}");

        let mut c = defaults();
        c.gate.max_packet_bytes = 17;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("gate.max_packet_bytes"), "{err}");

        let mut c = defaults();
        c.server.heartbeat_secs = 0;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("server.heartbeat_secs"), "{err}");

        let mut c = defaults();
        c.gate.max_outbound_bytes = 8 * 1024;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("gate.max_outbound_bytes"), "{err}");
    }

    #[cfg(feature = "embedded")]
    #[test]
    fn embedded_table_is_checked_only_without_server_addr() {
        let mut c = defaults();
        c.embedded
            .insert("bogus_key".into(), toml::Value::Integer(1));
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("bogus_key"), "{err}");
        c.embedded.clear();
        c.embedded
            .insert("db_max_connections".into(), toml::Value::Integer(0));
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("`embedded.db_max_connections`"), "{err}");
        // An external LoginSrv: the table is not used, so not judged.
        c.server.addr = vec!["127.0.0.1:5500".parse().unwrap()];
        c.validate().unwrap();
    }

    #[test]
    fn every_duration_key_is_bounded() {
        // u64::MAX seconds overflows `Instant + Duration` (a panic in the
        // link task or on a %+B); each key must be refused by name instead.
        type Set = fn(&mut Config);
        let cases: [(&str, Set); 12] = [
            ("gate.defer_accept_secs", |c| {
                c.gate.defer_accept_secs = u64::MAX
            }),
            ("gate.first_packet_timeout_secs", |c| {
                c.gate.first_packet_timeout_secs = u64::MAX
            }),
            ("gate.idle_timeout_secs", |c| {
                c.gate.idle_timeout_secs = u64::MAX
            }),
            ("gate.temp_block_secs", |c| {
                c.gate.temp_block_secs = u64::MAX
            }),
            ("gate.block_list_poll_secs", |c| {
                c.gate.block_list_poll_secs = u64::MAX
            }),
            ("gate.shutdown_grace_secs", |c| {
                c.gate.shutdown_grace_secs = u64::MAX
            }),
            ("gate.stats_log_secs", |c| c.gate.stats_log_secs = u64::MAX),
            ("server.heartbeat_secs", |c| {
                c.server.heartbeat_secs = u64::MAX - 1;
                c.server.dead_after_secs = u64::MAX;
            }),
            ("server.dead_after_secs", |c| {
                c.server.dead_after_secs = u64::MAX
            }),
            ("server.reconnect_max_secs", |c| {
                c.server.reconnect_max_secs = u64::MAX
            }),
            ("server.connect_timeout_secs", |c| {
                c.server.connect_timeout_secs = u64::MAX
            }),
            ("gate.temp_block_secs", |c| {
                c.gate.temp_block_secs = MAX_SECS + 1
            }),
        ];
        for (key, set) in cases {
            let mut c = defaults();
            set(&mut c);
            let err = c.validate().expect_err(key).to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
        let mut c = defaults();
        c.gate.temp_block_secs = MAX_SECS;
        c.validate().unwrap();
    }

    #[cfg(not(feature = "embedded"))]
    #[test]
    fn without_the_embedded_loginsrv_server_addr_is_required() {
        let err = Config::default().validate().unwrap_err().to_string();
        assert!(err.contains("`server.addr`"), "{err}");
        assert!(err.contains("embedded"), "{err}");
        // Only the `[embedded]` table and `data_dir` belong to the feature.
        for (text, key) in [
            ("[embedded]\n", "embedded"),
            ("data_dir = \"x\"\n", "data_dir"),
        ] {
            let err = Config::from_toml(text, Path::new("x"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn server_addr_port_0_is_refused() {
        let mut c = defaults();
        c.server.addr = vec![addr("127.0.0.1:0")];
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("`server.addr`"), "{err}");
        c.server.addr = vec![addr("127.0.0.1:1")];
        c.validate().unwrap();
    }

    #[test]
    fn duplicate_listen_addresses_are_refused() {
        for list in [
            ["127.0.0.1:7000", "127.0.0.1:7000"],
            ["[::]:7000", "[::]:7000"],
        ] {
            let mut c = defaults();
            c.gate.listen = list.iter().map(|a| addr(a)).collect();
            let err = c.validate().expect_err(list[0]).to_string();
            assert!(err.contains("`gate.listen`"), "{err}");
            assert!(err.contains(list[0]), "{err}");
        }
        // The same port on other addresses is fine.
        let mut c = defaults();
        c.gate.listen = vec![
            addr("127.0.0.1:7000"),
            addr("[::1]:7000"),
            addr("127.0.0.2:7000"),
        ];
        c.validate().unwrap();
    }

    #[test]
    fn a_gate_linking_to_its_own_listener_is_refused() {
        let own = [
            ("127.0.0.1:7000", "127.0.0.1:7000"),
            ("[::1]:7000", "[::1]:7000"),
            // Wildcard listeners accept on every local address of their family.
            ("0.0.0.0:7000", "127.0.0.1:7000"),
            ("0.0.0.0:7000", "127.3.2.1:7000"),
            ("[::]:7000", "[::1]:7000"),
            // Connecting to the unspecified address reaches this host.
            ("127.0.0.1:7000", "0.0.0.0:7000"),
            // An IPv4-mapped server address is the IPv4 one.
            ("127.0.0.1:7000", "[::ffff:127.0.0.1]:7000"),
        ];
        for (listen, server) in own {
            let mut c = defaults();
            c.gate.listen = vec![addr("127.0.0.1:7999"), addr(listen)];
            c.server.addr = vec![addr(server)];
            let err = c.validate().expect_err(server).to_string();
            assert!(err.contains("`server.addr`"), "{listen} {server}: {err}");
        }
        let other = [
            ("127.0.0.1:7000", "127.0.0.1:7001"),
            ("127.0.0.1:7000", "127.0.0.2:7000"),
            ("0.0.0.0:7000", "[::1]:7000"),
            // IPv6 listeners are IPv6-only.
            ("[::]:7000", "127.0.0.1:7000"),
            // TEST-NET-1: never an address of this host.
            ("0.0.0.0:7000", "192.0.2.1:7000"),
        ];
        for (listen, server) in other {
            let mut c = defaults();
            c.gate.listen = vec![addr(listen)];
            c.server.addr = vec![addr(server)];
            c.validate()
                .unwrap_or_else(|e| panic!("{listen} {server}: {e}"));
        }
    }

    #[test]
    fn admin_token_is_required_off_loopback() {
        let mut c = defaults();
        assert_eq!(c.admin.addr().unwrap(), Some(addr("127.0.0.1:7001")));
        c.admin.listen = "0.0.0.0:7001".into();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("`admin.token`"), "{err}");
        c.admin.token = "s3cret".into();
        c.validate().unwrap();
        c.admin.listen = "nowhere".into();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("`admin.listen`"), "{err}");
        c.admin.listen = String::new();
        assert_eq!(c.admin.addr().unwrap(), None);
        c.validate().unwrap();
    }

    #[test]
    fn proxy_keys_round_trip_and_bad_combinations_name_the_key() {
        let text =
            "[gate]\nproxy_protocol = \"v2\"\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\"]\n\
                    proxy_header_timeout_secs = 3\nallow_sources = [\"10.0.0.0/8\"]\n\
                    [server]\naddr = \"127.0.0.1:5500\"\n";
        let c = Config::from_toml(text, Path::new("x")).unwrap();
        c.validate().unwrap();
        assert_eq!(c.gate.proxy_protocol, ProxyProtocol::V2);
        assert_eq!(
            c.trusted_proxies(),
            vec![
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "192.0.2.7/32".parse().unwrap()
            ]
        );
        assert_eq!(Config::from_toml(&c.to_toml(), Path::new("x")).unwrap(), c);
        assert!(Config::default()
            .to_toml()
            .contains("proxy_protocol = \"off\""));

        let err = Config::from_toml("[gate]\nproxy_protocol = \"v3\"\n", Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("proxy_protocol"), "{err}");

        type Set = fn(&mut Config);
        let cases: [(&str, Set); 6] = [
            ("gate.trusted_proxies", |c| {
                c.gate.trusted_proxies = vec!["10.0.0.1".into()]
            }),
            ("gate.proxy_protocol", |c| {
                c.gate.proxy_protocol = ProxyProtocol::Any
            }),
            ("gate.trusted_proxies", |c| {
                c.gate.proxy_protocol = ProxyProtocol::V1;
                c.gate.trusted_proxies = vec!["10.0.0.0/33".into()];
            }),
            ("gate.allow_sources", |c| {
                c.gate.allow_sources = vec!["not-an-ip".into()]
            }),
            ("gate.proxy_header_timeout_secs", |c| {
                c.gate.proxy_protocol = ProxyProtocol::V1;
                c.gate.trusted_proxies = vec!["10.0.0.1".into()];
                c.gate.proxy_header_timeout_secs = 0;
            }),
            ("gate.proxy_header_timeout_secs", |c| {
                c.gate.proxy_header_timeout_secs = u64::MAX
            }),
        ];
        for (key, set) in cases {
            let mut c = defaults();
            set(&mut c);
            let err = c.validate().expect_err(key).to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    fn parsed(text: &str) -> Result<Config, ConfigError> {
        let c = Config::from_toml(text, Path::new("g.toml"))?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn server_addr_is_a_string_a_list_or_tables() {
        let one = parsed("[server]\naddr = \"127.0.0.1:5500\"\n").unwrap();
        assert_eq!(one.server.addr, vec![addr("127.0.0.1:5500")]);
        assert_eq!(one.server.backend_list()[0].addr_key, "server.addr");
        assert!(one.to_toml().contains("addr = \"127.0.0.1:5500\""));

        let list = parsed(
            "[server]\ndialect = \"delphi\"\naddr = [\"127.0.0.1:5500\", \"127.0.0.2:5500\"]\n",
        )
        .unwrap();
        let b = list.server.backend_list();
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].addr_key, "server.addr[1]");
        assert!(b.iter().all(|b| b.dialect == Dialect::Delphi));
        assert_eq!(
            Config::from_toml(&list.to_toml(), Path::new("x")).unwrap(),
            list
        );

        let tables = parsed(
            "[server]\ndialect = \"delphi\"\n\
             [[server.backends]]\naddr = \"127.0.0.1:5500\"\n\
             [[server.backends]]\naddr = \"127.0.0.2:5500\"\ndialect = \"happym2\"\n\
             [server.backends.frames]\nnul_after_reply = true\n",
        )
        .unwrap();
        let b = tables.server.backend_list();
        assert_eq!(
            (b[0].dialect, b[1].dialect),
            (Dialect::Delphi, Dialect::HappyM2)
        );
        assert_eq!(b[0].frames, *Dialect::Delphi.frames());
        assert!(b[1].frames.nul_after_reply);
        assert_eq!(b[1].frames.open, Dialect::HappyM2.frames().open);
        assert_eq!(b[1].dialect_key, "server.backends[1].dialect");
        assert_eq!(b[0].dialect_key, "server.dialect");
        let mut pinned = tables.clone();
        pinned.pin_frames();
        assert_eq!(
            Config::from_toml(&pinned.to_toml(), Path::new("x")).unwrap(),
            pinned
        );
        assert_eq!(pinned.server.backend_list(), b);
    }

    #[test]
    fn bad_backend_entries_name_the_key_and_index() {
        let cases = [
            ("[server]\naddr = [\"127.0.0.1:5500\", \"nowhere\"]\n", "server.addr[1]"),
            ("[server]\naddr = []\n", "server.addr"),
            ("[server]\naddr = 5500\n", "server.addr"),
            ("[server]\naddr = [\"127.0.0.1:5500\", \"127.0.0.1:0\"]\n", "server.addr[1]"),
            ("[server]\naddr = [\"127.0.0.1:5500\", \"127.0.0.1:5500\"]\n", "server.addr[1]"),
            ("[gate]\nlisten = [\"127.0.0.1:7000\"]\n[server]\naddr = [\"127.0.0.1:5500\", \"127.0.0.1:7000\"]\n", "server.addr[1]"),
            (
                "[[server.backends]]\naddr = \"127.0.0.1:5500\"\n[[server.backends]]\naddr = \"127.0.0.1:0\"\n",
                "server.backends[1].addr",
            ),
            (
                "[[server.backends]]\naddr = \"127.0.0.1:5500\"\n[[server.backends]]\naddr = \"127.0.0.1:5501\"\ndialect = \"ipx\"\n",
                "server.backends[1].dialect",
            ),
            ("[[server.backends]]\naddr = \"127.0.0.1:5500\"\nport = 1\n", "server.backends[0].port"),
            ("[[server.backends]]\ndialect = \"delphi\"\n", "server.backends[0].addr"),
            (
                "[server]\naddr = \"127.0.0.1:5501\"\n[[server.backends]]\naddr = \"127.0.0.1:5500\"\n",
                "server.backends",
            ),
            (
                "[[server.backends]]\naddr = \"127.0.0.1:5500\"\ndialect = \"wemade\"\n[server.backends.frames]\nopen = \"A\"\n",
                "server.backends[0].frames.data",
            ),
            ("[server]\naddr = \"127.0.0.1:5500\"\nsilent_window_secs = 0\n", "server.silent_window_secs"),
        ];
        for (text, key) in cases {
            let err = parsed(text).expect_err(key).to_string();
            assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
        }
    }

    #[test]
    fn gate_addr_needs_every_backend_to_send_it() {
        let text = "[server]\ngate_addr = \"203.0.113.1\"\ndialect = \"delphi\"\n\
                    [[server.backends]]\naddr = \"127.0.0.1:5500\"\n\
                    [[server.backends]]\naddr = \"127.0.0.1:5501\"\ndialect = \"wemade\"\n";
        let err = parsed(text).unwrap_err().to_string();
        assert!(
            err.contains("`server.gate_addr`") && err.contains("server.backends[1]"),
            "{err}"
        );
        parsed(&text.replace("\"wemade\"", "\"ldx\"")).unwrap();
    }

    #[test]
    fn changed_keys_are_dotted_and_classified() {
        let old = defaults();
        let mut new = old.clone();
        new.gate.max_conn_per_ip = 3;
        new.gate.listen = vec![addr("127.0.0.1:7999")];
        new.gate.attack.enter_conn_rate = 1;
        new.admin.token = "t".into();
        new.server.addr = vec![addr("127.0.0.1:5599")];
        let keys = changed_keys(&old, &new);
        for key in [
            "gate.listen",
            "gate.max_conn_per_ip",
            "gate.attack.enter_conn_rate",
            "admin.token",
            "server.addr",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
        }
        assert_eq!(keys.len(), 5, "{keys:?}");
        let restart: Vec<_> = keys.iter().filter(|k| is_restart_only(k)).collect();
        assert_eq!(restart, ["gate.listen", "server.addr"]);
        assert!(is_restart_only("embedded.database"));
        assert!(!is_restart_only("gate.listening"));
        assert!(changed_keys(&old, &old.clone()).is_empty());
    }

    #[test]
    fn restart_keys_are_bounded_and_the_log_filter_checked() {
        let mut c = defaults();
        c.gate.restart_ready_timeout_secs = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("gate.restart_ready_timeout_secs"));
        let mut c = defaults();
        c.gate.drain_timeout_secs = u64::MAX;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("gate.drain_timeout_secs"));
        let mut c = defaults();
        c.log_filter = "logingate=chatty".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("`log_filter`"));
        c.log_filter = "info,netcore=debug".into();
        c.validate().unwrap();
    }

    #[test]
    fn dialect_names_parse() {
        assert_eq!("HappyM2".parse::<Dialect>(), Ok(Dialect::HappyM2));
        assert!("ipx".parse::<Dialect>().is_err());
        let c = Config::from_toml("[server]\ndialect = \"delphi\"\n", Path::new("x")).unwrap();
        assert_eq!(c.server.dialect, Dialect::Delphi);
    }
}
