//! `[game_servers]`, SelGate entries and the `[[routes]]` table (the Delphi
//! `!ServerAddr.txt` and `!addrtable.txt`).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use mir2_proto::game::IdSet;

use crate::config::{Config, ConfigError};

/// `[game_servers]`: the port every M2Server and DBServer connects to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GameServersConfig {
    /// `ip:port` to listen on (the originals used 5600); `""` = off, and then
    /// the server list status comes from `[[servers]]` alone.
    pub listen: String,
    /// Only these source networks may connect (the Delphi `!ServerAddr.txt`);
    /// others are closed before anything is read.
    pub allow: Vec<IpNet>,
    /// Numbering of the game servers' build: `"100"` or `"1000"` (PROTOCOL.md §7).
    pub id_set: IdSet,
    /// A server silent this long is shown as timed out and its count no longer used.
    pub keepalive_timeout_secs: u64,
    /// Longest `(…)` frame; longer closes that server's connection.
    pub max_frame_bytes: usize,
    /// Game-server connections at once (Delphi allowed 100 addresses).
    pub max_servers: usize,
}

impl Default for GameServersConfig {
    fn default() -> Self {
        GameServersConfig {
            listen: String::new(),
            allow: vec![
                IpNet::from(IpAddr::from(std::net::Ipv4Addr::LOCALHOST)),
                IpNet::from(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
            ],
            id_set: IdSet::Hundred,
            keepalive_timeout_secs: 30,
            max_frame_bytes: 4096,
            max_servers: 100,
        }
    }
}

impl GameServersConfig {
    /// The listen address, `None` when the port is off (or unparsable; `validate` refuses that).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        if self.listen.trim().is_empty() {
            None
        } else {
            self.listen.trim().parse().ok()
        }
    }
}

/// One SelGate entry: `ip:port`, or `*ip:port` for one kept in the list but
/// not handed out (as in `!addrtable.txt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelGate {
    /// Where clients are sent.
    pub addr: SocketAddr,
    /// `false` for a `*`-prefixed entry.
    pub enabled: bool,
}

impl From<SocketAddr> for SelGate {
    fn from(addr: SocketAddr) -> SelGate {
        SelGate {
            addr,
            enabled: true,
        }
    }
}

impl FromStr for SelGate {
    type Err = std::net::AddrParseError;
    fn from_str(s: &str) -> Result<SelGate, Self::Err> {
        let s = s.trim();
        match s.strip_prefix('*') {
            Some(rest) => Ok(SelGate {
                addr: rest.trim().parse()?,
                enabled: false,
            }),
            None => Ok(SelGate::from(s.parse::<SocketAddr>()?)),
        }
    }
}

impl fmt::Display for SelGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.enabled {
            f.write_str("*")?;
        }
        write!(f, "{}", self.addr)
    }
}

impl Serialize for SelGate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SelGate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SelGate, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|e| {
            serde::de::Error::custom(format!("{text:?}: {e} (want ip:port or *ip:port)"))
        })
    }
}

/// One `[[routes]]` entry: clients that came through gate `gate` and select
/// `server` get these SelGates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddrRoute {
    /// The gate's address as the LoginSrv sees it (the gate link's source IP).
    pub gate: IpAddr,
    /// The public address clients dialled, for the operator's reference (the
    /// Delphi table's fourth column); `""` when unknown.
    #[serde(default)]
    pub public: String,
    /// The `[[servers]]` name this route applies to.
    pub server: String,
    /// SelGates handed out round-robin (up to 10, `*` disables one).
    pub selgates: Vec<SelGate>,
}

/// Delphi's table holds at most 10 SelGates per line.
pub const MAX_SELGATES: usize = 10;

fn bad(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::new(key, problem)
}

/// SelGate lists: 1..=10 entries, at least one enabled.
pub(crate) fn check_selgates(key: &str, selgates: &[SelGate]) -> Result<(), ConfigError> {
    if selgates.is_empty() {
        return Err(bad(key, "needs at least one address"));
    }
    if selgates.len() > MAX_SELGATES {
        return Err(bad(key, format!("at most {MAX_SELGATES} entries")));
    }
    if !selgates.iter().any(|g| g.enabled) {
        return Err(bad(key, "every entry is disabled with '*'"));
    }
    Ok(())
}

/// Checks of `[game_servers]`, `[[servers]].public_addr` and `[[routes]]`.
pub(crate) fn validate(c: &Config) -> Result<(), ConfigError> {
    let g = &c.game_servers;
    if !g.listen.trim().is_empty() && g.listen_addr().is_none() {
        return Err(bad(
            "game_servers.listen",
            "must be ip:port, or \"\" for off",
        ));
    }
    if g.allow.is_empty() {
        return Err(bad(
            "game_servers.allow",
            "empty: no game server could ever connect",
        ));
    }
    if !(1..=86_400).contains(&g.keepalive_timeout_secs) {
        return Err(bad(
            "game_servers.keepalive_timeout_secs",
            "must be 1..=86400",
        ));
    }
    if !(64..=1 << 20).contains(&g.max_frame_bytes) {
        return Err(bad("game_servers.max_frame_bytes", "must be 64..=1048576"));
    }
    if !(1..=10_000).contains(&g.max_servers) {
        return Err(bad("game_servers.max_servers", "must be 1..=10000"));
    }
    for (i, s) in c.servers.iter().enumerate() {
        if !s.public_addr.is_empty() && s.public_addr.parse::<IpAddr>().is_err() {
            return Err(bad(
                format!("servers[{i}].public_addr"),
                "must be an IP address or \"\"",
            ));
        }
    }
    for (i, r) in c.routes.iter().enumerate() {
        let key = format!("routes[{i}]");
        if !c.servers.iter().any(|s| s.name == r.server) {
            return Err(bad(
                format!("{key}.server"),
                format!("no [[servers]] entry named {:?}", r.server),
            ));
        }
        if !r.public.is_empty() && r.public.parse::<IpAddr>().is_err() {
            return Err(bad(
                format!("{key}.public"),
                "must be an IP address or \"\"",
            ));
        }
        check_selgates(&format!("{key}.selgates"), &r.selgates)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::config::Config;

    /// One valid server to hang `[[routes]]` on.
    const ALPHA: &str = "[[servers]]\nname = \"alpha\"\nselgates = [\"127.0.0.1:7100\"]\n";

    fn key_of(toml: &str) -> String {
        match Config::from_toml(toml) {
            Ok(_) => panic!("accepted: {toml}"),
            Err(e) => e.key,
        }
    }

    fn route(fields: &str) -> String {
        format!("{ALPHA}[[routes]]\n{fields}\n")
    }

    #[test]
    fn bad_game_servers_keys_are_named() {
        for (toml, key) in [
            (
                "[game_servers]\nlisten = \"nowhere\"\n",
                "game_servers.listen",
            ),
            (
                "[game_servers]\nlisten = \"1.2.3.4\"\n",
                "game_servers.listen",
            ),
            ("[game_servers]\nallow = []\n", "game_servers.allow"),
            (
                "[game_servers]\nallow = [\"10.0.0/8\"]\n",
                "game_servers.allow[0]",
            ),
            ("[game_servers]\nid_set = \"7\"\n", "game_servers.id_set"),
            (
                "[game_servers]\nkeepalive_timeout_secs = 0\n",
                "game_servers.keepalive_timeout_secs",
            ),
            (
                "[game_servers]\nkeepalive_timeout_secs = 86401\n",
                "game_servers.keepalive_timeout_secs",
            ),
            (
                "[game_servers]\nmax_frame_bytes = 10\n",
                "game_servers.max_frame_bytes",
            ),
            (
                "[game_servers]\nmax_servers = 0\n",
                "game_servers.max_servers",
            ),
        ] {
            assert_eq!(key_of(toml), key, "{toml}");
        }
        let e = Config::from_toml("[game_servers]\nlisen = \"1.2.3.4:5600\"\n").unwrap_err();
        assert!(e.key.starts_with("game_servers"), "{e}");
        assert!(e.problem.contains("lisen"), "{e}");
    }

    #[test]
    fn bad_selgates_and_public_addr_are_named() {
        let server = |fields: &str| format!("[[servers]]\nname = \"alpha\"\n{fields}\n");
        let eleven: Vec<String> = (0..11).map(|i| format!("\"10.0.0.{i}:7100\"")).collect();
        let eleven = format!("selgates = [{}]", eleven.join(", "));
        for (fields, key) in [
            ("selgates = []", "servers[0].selgates"),
            ("selgates = [\"*127.0.0.1:7100\"]", "servers[0].selgates"),
            (eleven.as_str(), "servers[0].selgates"),
            ("selgates = [\"127.0.0.1\"]", "servers[0].selgates[0]"),
            (
                "selgates = [\"127.0.0.1:7100\"]\npublic_addr = \"example.com\"",
                "servers[0].public_addr",
            ),
            (
                "selgates = [\"127.0.0.1:7100\"]\npublic_addr = \"1.2.3.4:7100\"",
                "servers[0].public_addr",
            ),
        ] {
            assert_eq!(key_of(&server(fields)), key, "{fields}");
        }
        // Ten, some disabled, is the most a list holds.
        let ten: Vec<String> = (0..10).map(|i| format!("\"*10.0.0.{i}:7100\"")).collect();
        let ten = format!("selgates = [\"10.0.0.99:7100\", {}]", ten[1..].join(", "));
        Config::from_toml(&server(&ten)).unwrap();
    }

    #[test]
    fn bad_routes_are_named() {
        let ok = "gate = \"10.0.0.5\"\nserver = \"alpha\"\nselgates = [\"1.2.3.4:7100\"]";
        Config::from_toml(&route(ok)).unwrap();
        let eleven: Vec<String> = (0..11).map(|i| format!("\"10.0.0.{i}:7100\"")).collect();
        let eleven = format!(
            "gate = \"10.0.0.5\"\nserver = \"alpha\"\nselgates = [{}]",
            eleven.join(", ")
        );
        for (fields, key) in [
            (
                "gate = \"10.0.0.5\"\nserver = \"nope\"\nselgates = [\"1.2.3.4:7100\"]",
                "routes[0].server",
            ),
            (
                "gate = \"10.0.0.5\"\npublic = \"gate.example\"\nserver = \"alpha\"\nselgates = [\"1.2.3.4:7100\"]",
                "routes[0].public",
            ),
            (
                "gate = \"10.0.0.5\"\nserver = \"alpha\"\nselgates = []",
                "routes[0].selgates",
            ),
            (
                "gate = \"10.0.0.5\"\nserver = \"alpha\"\nselgates = [\"*1.2.3.4:7100\"]",
                "routes[0].selgates",
            ),
            (eleven.as_str(), "routes[0].selgates"),
            (
                "gate = \"10.0.0.5\"\nserver = \"alpha\"\nselgates = [\"1.2.3.4\"]",
                "routes[0].selgates[0]",
            ),
            (
                "gate = \"10.0.0.5/8\"\nserver = \"alpha\"\nselgates = [\"1.2.3.4:7100\"]",
                "routes[0].gate",
            ),
        ] {
            assert_eq!(key_of(&route(fields)), key, "{fields}");
        }
        let e = Config::from_toml(&route("gate = \"10.0.0.5\"\nserver = \"alpha\"")).unwrap_err();
        assert!(e.key.starts_with("routes"), "{e}");
        assert!(e.problem.contains("selgates"), "{e}");
        let e = Config::from_toml(&route(&format!("{ok}\nselgate = 1"))).unwrap_err();
        assert!(e.key.starts_with("routes"), "{e}");
        assert!(e.problem.contains("selgate"), "{e}");
    }
}
