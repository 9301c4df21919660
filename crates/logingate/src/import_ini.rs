//! `logingate import-ini FILE`: a Delphi gate's `Config.ini` (`[LoginGate]`
//! or `[SelGate]`) or an OpenMir2 gate's `config.conf` as an equivalent TOML
//! configuration (PROTOCOL.md §9; the mapping table is in the README).
//!
//! Every key the gate understands is written with a comment naming the
//! original; every key it cannot express is listed in a trailing comment with
//! the reason. A key the file leaves out takes the value the original gate
//! used for it, so the output describes the gate the operator ran.
//!
//! The format is read by hand rather than with an INI crate: it is lines of
//! `[section]` and `key=value` with `;` comments, read the way Delphi's
//! `TIniFile` does (names case-insensitive, no quoting, no escapes, so a
//! Windows path's `\` stays as it is), which is what general INI parsers do
//! differently by default.

use std::fmt::Write as _;
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::config::MIN_PACKET_BYTES;

/// Largest file read. A real `Config.ini` is under 1 KiB; the bound keeps a
/// wrong path (a log, a database) from being read whole.
pub const MAX_INI_BYTES: usize = 64 * 1024;

/// Longest original value shown in a comment.
const SHOWN_CHARS: usize = 60;

/// Why a file could not be imported; the binary exits 2 with this message.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file given.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_INI_BYTES`].
    #[error("{path} is larger than {MAX_INI_BYTES} bytes: not a gate's Config.ini")]
    TooLarge {
        /// The file given.
        path: PathBuf,
    },
    /// Neither a Delphi nor an OpenMir2 gate configuration.
    #[error(
        "no [LoginGate] or [SelGate] section, nor OpenMir2's [Integer]/[Switch]/[Method]: \
         not a gate configuration this command knows"
    )]
    UnknownFormat,
}

/// Reads `path` (at most [`MAX_INI_BYTES`]) and converts it.
pub fn import_file(path: &Path) -> Result<String, ImportError> {
    let read_error = |source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_INI_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() > MAX_INI_BYTES {
        return Err(ImportError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    import(&bytes)
}

/// Converts the bytes of a `Config.ini` or `config.conf` to TOML.
pub fn import(bytes: &[u8]) -> Result<String, ImportError> {
    let ini = Ini::parse(&decode(bytes));
    let openmir2 = ["Integer", "Switch", "Method"]
        .iter()
        .any(|s| ini.has_section(s))
        || ini.get("LoginGate", "Count").is_some();
    if openmir2 {
        Ok(Import::new(ini, Source::OpenMir2).openmir2())
    } else if ini.has_section("SelGate") {
        Ok(Import::new(ini, Source::SelGate).delphi("SelGate"))
    } else if ini.has_section("LoginGate") {
        Ok(Import::new(ini, Source::LoginGate).delphi("LoginGate"))
    } else {
        Err(ImportError::UnknownFormat)
    }
}

/// UTF-8 when the bytes are valid UTF-8 (a BOM dropped), else GBK, the
/// encoding of Chinese Windows; undecodable bytes become U+FFFD.
fn decode(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => encoding_rs::GBK
            .decode_without_bom_handling(bytes)
            .0
            .into_owned(),
    }
}

/// One `key=value` line.
#[derive(Debug)]
struct Entry {
    /// The section it is in, as written.
    section: String,
    /// The key, as written.
    key: String,
    /// The value, trimmed.
    value: String,
    /// Whether the import used it (the rest are listed as not imported).
    used: std::cell::Cell<bool>,
}

/// The file's lines, in order.
#[derive(Debug, Default)]
struct Ini {
    /// Every `key=value` line.
    entries: Vec<Entry>,
    /// Section names, as written.
    sections: Vec<String>,
    /// Lines that are neither a section, a `key=value` nor a comment.
    stray: Vec<String>,
}

impl Ini {
    fn parse(text: &str) -> Ini {
        let mut ini = Ini::default();
        let mut section = String::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_owned();
                ini.sections.push(section.clone());
            } else if let Some((key, value)) = line.split_once('=') {
                ini.entries.push(Entry {
                    section: section.clone(),
                    key: key.trim().to_owned(),
                    value: value.trim().to_owned(),
                    used: std::cell::Cell::new(false),
                });
            } else {
                ini.stray.push(line.to_owned());
            }
        }
        ini
    }

    fn has_section(&self, name: &str) -> bool {
        self.sections.iter().any(|s| s.eq_ignore_ascii_case(name))
    }

    /// The first value of `key` in `section` (as `TIniFile` reads it), marked used.
    fn get(&self, section: &str, key: &str) -> Option<&str> {
        let e = self
            .entries
            .iter()
            .find(|e| e.section.eq_ignore_ascii_case(section) && e.key.eq_ignore_ascii_case(key))?;
        e.used.set(true);
        Some(&e.value)
    }
}

/// Which gate wrote the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Delphi LoginGate `Config.ini`, `[LoginGate]`.
    LoginGate,
    /// Delphi SelGate `Config.ini`, `[SelGate]`.
    SelGate,
    /// OpenMir2 LoginGate `config.conf`.
    OpenMir2,
}

/// A value read from the file, or the original gate's default for it.
struct Read<T> {
    /// The value in effect.
    value: T,
    /// How the comment shows where it came from: `Key=value` or `Key (absent: default)`.
    origin: String,
}

/// The output being built.
struct Import {
    /// The parsed file.
    ini: Ini,
    /// Which gate wrote it.
    source: Source,
    /// Lines of `[gate]`.
    gate: String,
    /// Lines of `[gate.punish]`.
    punish: String,
    /// Lines of `[gate.attack]`.
    attack: String,
    /// Lines of `[server]`.
    server: String,
    /// Known keys the gate cannot express, and why.
    not_imported: Vec<String>,
}

impl Import {
    fn new(ini: Ini, source: Source) -> Import {
        Import {
            ini,
            source,
            gate: String::new(),
            punish: String::new(),
            attack: String::new(),
            server: String::new(),
            not_imported: Vec::new(),
        }
    }

    /// A value for a comment: control characters escaped, long ones cut.
    fn shown(value: &str) -> String {
        let mut s: String = value.chars().take(SHOWN_CHARS).collect();
        if value.chars().count() > SHOWN_CHARS {
            s.push('…');
        }
        s.escape_debug().to_string()
    }

    fn text(&self, section: &str, key: &str, default: &str) -> Read<String> {
        match self.ini.get(section, key) {
            Some(v) => Read {
                value: v.to_owned(),
                origin: format!("{key}={}", Self::shown(v)),
            },
            None => Read {
                value: default.to_owned(),
                origin: format!("{key} (absent: {default})"),
            },
        }
    }

    /// An integer as `TIniFile.ReadInteger` reads it: anything else is the default.
    fn int(&mut self, section: &str, key: &str, default: u64) -> Read<u64> {
        match self.ini.get(section, key) {
            Some(v) => match v.parse::<u64>() {
                Ok(n) => Read {
                    value: n,
                    origin: format!("{key}={n}"),
                },
                Err(_) => {
                    let shown = Self::shown(v);
                    self.not_imported.push(format!(
                        "{key}={shown}: not a whole number; the original gate used its default {default}"
                    ));
                    Read {
                        value: default,
                        origin: format!("{key} (unreadable: {default})"),
                    }
                }
            },
            None => Read {
                value: default,
                origin: format!("{key} (absent: {default})"),
            },
        }
    }

    fn flag(&mut self, section: &str, key: &str) -> Option<bool> {
        let v = self.ini.get(section, key)?;
        match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Some(true),
            "0" | "false" | "no" | "off" | "" => Some(false),
            _ => {
                let shown = Self::shown(v);
                self.not_imported
                    .push(format!("{key}={shown}: not a switch (0 or 1)"));
                None
            }
        }
    }

    /// A known key that has no equivalent, listed with the reason when present.
    fn unmapped(&mut self, section: &str, key: &str, why: &str) {
        if let Some(v) = self.ini.get(section, key) {
            let shown = Self::shown(v);
            self.not_imported.push(format!("{key}={shown}: {why}"));
        }
    }

    fn set(out: &mut String, comment: &str, key: &str, value: impl std::fmt::Display) {
        let _ = writeln!(out, "# {comment}\n{key} = {value}");
    }

    /// `addr:port` from two keys; an address that is no IP keeps `fallback`
    /// and is listed, since the gate links by address, not by name. A
    /// `fallback` of 0.0.0.0 marks a listener, which may take port 0.
    fn socket(
        &mut self,
        section: &str,
        (addr_key, port_key): (&str, &str),
        (fallback, default_port): (IpAddr, u16),
    ) -> (SocketAddr, String) {
        let addr = self.text(section, addr_key, &fallback.to_string());
        let port = self.int(section, port_key, u64::from(default_port));
        let ip = match addr.value.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                self.not_imported.push(format!(
                    "{}: not an IP address; {fallback} written instead, set it by hand",
                    addr.origin
                ));
                fallback
            }
        };
        // Port 0 listens on any free port; a link cannot connect to it.
        let listener = fallback.is_unspecified();
        let port = match u16::try_from(port.value) {
            Ok(p) if p > 0 || listener => p,
            _ => {
                self.not_imported.push(format!(
                    "{}: not a port; {default_port} written instead",
                    port.origin
                ));
                default_port
            }
        };
        let origin = format!("{}, {}", addr.origin, port_origin(port_key, port));
        (SocketAddr::new(ip, port), origin)
    }

    /// BlockMethod / BlockIPMethod: the one punishment the original gave every offence
    /// it detected, written for each class of `[gate.punish]`; 2 also keeps its
    /// permanent block list. `checks_off` (AttackLevel 0) detects nothing, so nothing
    /// is blocked either.
    fn block_method(&mut self, section: &str, key: &str, default: u64, checks_off: bool) {
        let m = self.int(section, key, default);
        let punishment = match m.value {
            0 => "disconnect",
            1 => "temp_block",
            2 => "block",
            _ => {
                self.not_imported
                    .push(format!("{}: not 0, 1 or 2", m.origin));
                return;
            }
        };
        if m.value == 2 {
            Self::set(
                &mut self.gate,
                &format!(
                    "{}: the permanent block list, in the same file (one IP per line)",
                    m.origin
                ),
                "block_list_file",
                toml_str("BlockIPList.txt"),
            );
        }
        let (punishment, why) = if checks_off {
            (
                "disconnect",
                format!("{}, but the checks are off", m.origin),
            )
        } else {
            (punishment, m.origin.clone())
        };
        let _ = writeln!(
            self.punish,
            "# {why}: every offence is punished alike (temp_block lasts gate.temp_block_secs)"
        );
        for class in PUNISHED_CLASSES {
            let _ = writeln!(self.punish, "{class} = {}", toml_str(punishment));
        }
    }

    fn delphi(mut self, section: &str) -> String {
        let sel = self.source == Source::SelGate;
        let (server_port, gate_port, level_default, block_default) = if sel {
            (5100, 7100, 1, 1)
        } else {
            (5500, 7000, 2, 2)
        };
        let (server, origin) = self.socket(
            section,
            ("ServerAddr", "ServerPort"),
            (IpAddr::V4(Ipv4Addr::LOCALHOST), server_port),
        );
        Self::set(
            &mut self.server,
            &origin,
            "addr",
            toml_str(&server.to_string()),
        );
        let _ = writeln!(
            self.server,
            "# the classic Delphi {section}'s frames: %O<id>/<clientIP>/<gateIP>$, %A, %X\n\
             dialect = \"delphi\""
        );
        let (listen, origin) = self.socket(
            section,
            ("GateAddr", "GatePort"),
            (IpAddr::V4(Ipv4Addr::UNSPECIFIED), gate_port),
        );
        Self::set(
            &mut self.gate,
            &origin,
            "listen",
            format!("[{}]", toml_str(&listen.to_string())),
        );

        // AttackLevel multiplies every threshold; 0 turns the checks off.
        let level = self.int(section, "AttackLevel", level_default);
        let l = level.value;
        let per_ip = self.int(section, "MaxConnOfIPaddr", 10);
        let keep = self.int(section, "KeepConnectTimeOut", 60_000);
        let (burst, flood_bytes): (u64, u64) = if sel { (5, 100) } else { (10, 360) };
        if l == 0 {
            let why = format!("{}: the checks are off", level.origin);
            Self::set(
                &mut self.gate,
                &format!("{why} ({})", per_ip.origin),
                "max_conn_per_ip",
                0,
            );
            Self::set(&mut self.gate, &why, "conn_rate_per_ip", 0);
            Self::set(&mut self.attack, &why, "enter_conn_rate", 0);
            Self::set(
                &mut self.gate,
                &format!("{why} ({})", keep.origin),
                "idle_timeout_secs",
                0,
            );
        } else {
            let n = per_ip.value.saturating_mul(l).min(u64::from(u32::MAX));
            Self::set(
                &mut self.gate,
                &format!("{} × {}", per_ip.origin, level.origin),
                "max_conn_per_ip",
                n,
            );
            Self::set(
                &mut self.gate,
                &format!(
                    "{}: {} connects from one IP in a burst (each within {} ms of the last) \
                     are tolerated",
                    level.origin,
                    burst.saturating_mul(l),
                    if sel { 200u64 } else { 100 }.saturating_mul(l)
                ),
                "conn_rate_per_ip",
                burst.saturating_mul(l).min(u64::from(u32::MAX)),
            );
            let secs = keep
                .value
                .saturating_mul(l)
                .div_ceil(1000)
                .min(crate::config::MAX_SECS);
            Self::set(
                &mut self.gate,
                &format!(
                    "{} ms × {}: a connection silent that long is closed",
                    keep.origin, level.origin
                ),
                "idle_timeout_secs",
                secs,
            );
            let bytes = flood_bytes
                .saturating_mul(l)
                .clamp(MIN_PACKET_BYTES as u64, 1 << 20);
            Self::set(
                &mut self.gate,
                &format!(
                    "{}: more than {bytes} bytes per {} ms is a flood; here: per message",
                    level.origin,
                    500u64.saturating_mul(l)
                ),
                "max_packet_bytes",
                bytes,
            );
        }
        self.block_method(section, "BlockMethod", block_default, l == 0);
        match self.flag(section, "DynamicIPDisMode") {
            Some(true) => {
                let _ = writeln!(
                    self.server,
                    "# DynamicIPDisMode=1: open frames carry the address clients should use \
                     instead of the listener's;\n# set it to this gate's public address:\n\
                     # gate_addr = \"203.0.113.1\""
                );
            }
            Some(false) => {
                let _ = writeln!(
                    self.server,
                    "# DynamicIPDisMode=0: open frames carry the listener's address"
                );
            }
            None => {}
        }
        self.unmapped(section, "Title", "window title; logs name the role instead");
        self.unmapped(section, "ShowLogLevel", "set the log level with RUST_LOG");
        self.finish(if sel { "selgate" } else { "login" })
    }

    fn openmir2(mut self) -> String {
        // `[LoginGate] Count` gates, each `ServerAddrN`/`ServerPortN`/`GateAddrN`/`GatePortN`.
        let count = self.int("LoginGate", "Count", 1).value.clamp(1, 32);
        let mut first: Option<SocketAddr> = None;
        let mut listen: Vec<SocketAddr> = Vec::new();
        let mut origins: Vec<String> = Vec::new();
        for i in 0..=count {
            let keys = [
                format!("ServerAddr{i}"),
                format!("ServerPort{i}"),
                format!("GateAddr{i}"),
                format!("GatePort{i}"),
            ];
            let present = keys.iter().any(|k| self.ini.get("LoginGate", k).is_some());
            // Index 0 only when written; the rest as the gate reads them.
            if !present && (i == 0 || first.is_some()) {
                continue;
            }
            let (server, server_origin) = self.socket(
                "LoginGate",
                (&keys[0], &keys[1]),
                (IpAddr::V4(Ipv4Addr::LOCALHOST), 5500),
            );
            let (gate, gate_origin) = self.socket(
                "LoginGate",
                (&keys[2], &keys[3]),
                (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 7000),
            );
            match first {
                None => {
                    first = Some(server);
                    Self::set(
                        &mut self.server,
                        &server_origin,
                        "addr",
                        toml_str(&server.to_string()),
                    );
                }
                Some(s) if s != server => {
                    self.not_imported.push(format!(
                        "gate {i} ({server_origin}): another LoginSrv; run one logingate per LoginSrv"
                    ));
                    continue;
                }
                Some(_) => {}
            }
            if listen.contains(&gate) {
                continue;
            }
            listen.push(gate);
            origins.push(gate_origin);
        }
        let list: Vec<String> = listen.iter().map(|a| toml_str(&a.to_string())).collect();
        Self::set(
            &mut self.gate,
            &origins.join("; "),
            "listen",
            format!("[{}]", list.join(", ")),
        );
        let _ = writeln!(
            self.server,
            "# OpenMir2 before 2024 writes the classic frames (since 2024 a binary header, not covered)\n\
             dialect = \"delphi\""
        );

        let timeout = self.int("Integer", "ClientTimeOutTime", 60_000);
        let secs = timeout
            .value
            .max(10_000)
            .div_ceil(1000)
            .min(crate::config::MAX_SECS);
        Self::set(
            &mut self.gate,
            &format!("{} ms (at least 10 000)", timeout.origin),
            "idle_timeout_secs",
            secs,
        );
        let per_ip = self.int("Integer", "MaxConnectOfIP", 20);
        Self::set(
            &mut self.gate,
            &per_ip.origin,
            "max_conn_per_ip",
            per_ip.value.min(u64::from(u32::MAX)),
        );
        let size = self.int("Integer", "NomClientPacketSize", 400);
        let bytes = size.value.clamp(MIN_PACKET_BYTES as u64, 1 << 20);
        Self::set(
            &mut self.gate,
            &format!("{}: the longest client message", size.origin),
            "max_packet_bytes",
            bytes,
        );
        self.unmapped(
            "Integer",
            "MaxClientPacketCount",
            "messages per read; the gate bounds messages per second (gate.max_packets_per_sec)",
        );
        // The switch turns the count on; OpenMir2 defaults both to on and 5.
        let new_ids = self.int("Integer", "CheckNewIDOfIP", 5);
        match self.flag("Switch", "CheckNewIDOfIP") {
            Some(false) => Self::set(
                &mut self.gate,
                &format!("[Switch] CheckNewIDOfIP=0: unlimited ({})", new_ids.origin),
                "new_accounts_per_ip_per_hour",
                0,
            ),
            _ => Self::set(
                &mut self.gate,
                &format!("{}: new accounts per source IP per hour", new_ids.origin),
                "new_accounts_per_ip_per_hour",
                new_ids.value.min(u64::from(u32::MAX)),
            ),
        }
        self.block_method("Method", "BlockIPMethod", 0, false);
        for (key, why) in [
            (
                "KickOverPacketSize",
                "always on: a longer message closes the client",
            ),
            (
                "DefenceCCPacket",
                "always on: any byte no Mir client sends (an HTTP request) closes the client",
            ),
            (
                "CheckNullSession",
                "always on: gate.first_packet_timeout_secs closes silent connections",
            ),
            (
                "OverSpeedSendBack",
                "the gate closes a client over its rate instead",
            ),
            (
                "KickOverSpeed",
                "always on: over gate.max_packets_per_sec closes the client",
            ),
        ] {
            self.unmapped("Switch", key, why);
        }
        self.finish("login")
    }

    fn finish(mut self, role: &str) -> String {
        let what = match self.source {
            Source::LoginGate => "a Delphi LoginGate Config.ini ([LoginGate])",
            Source::SelGate => "a Delphi SelGate Config.ini ([SelGate])",
            Source::OpenMir2 => "an OpenMir2 LoginGate config.conf",
        };
        let mut out = format!(
            "# logingate configuration equivalent to {what}.\n\
             # Keys not written here take the gate's defaults for role {role:?}:\n\
             # `logingate --config THIS_FILE --print-config` shows every one.\n\
             role = {}\n\n[gate]\n",
            toml_str(role)
        );
        out.push_str(&self.gate);
        if !self.punish.is_empty() {
            out.push_str("\n[gate.punish]\n");
            out.push_str(&self.punish);
        }
        if !self.attack.is_empty() {
            out.push_str("\n[gate.attack]\n");
            out.push_str(&self.attack);
        }
        out.push_str("\n[server]\n");
        out.push_str(&self.server);
        for e in self.ini.entries.iter().filter(|e| !e.used.get()) {
            self.not_imported.push(format!(
                "[{}] {}={}: unknown key",
                Import::shown(&e.section),
                Import::shown(&e.key),
                Import::shown(&e.value)
            ));
        }
        for line in &self.ini.stray {
            self.not_imported
                .push(format!("{}: not a key=value line", Import::shown(line)));
        }
        if !self.not_imported.is_empty() {
            out.push_str("\n# Not imported:\n");
            for line in &self.not_imported {
                let _ = writeln!(out, "#   {line}");
            }
        }
        out
    }
}

/// Every `[gate.punish]` key: the original gates had one method for all of them.
const PUNISHED_CLASSES: [&str; 8] = [
    "per_ip_cap",
    "conn_rate",
    "empty_connection",
    "idle",
    "oversize",
    "forbidden_byte",
    "flooding",
    "new_accounts",
];

/// The comment text for a port that was read.
fn port_origin(key: &str, port: u16) -> String {
    format!("{key}={port}")
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::Config;

    fn parsed(text: &[u8]) -> Config {
        let toml = import(text).unwrap();
        let c = Config::from_toml(&toml, Path::new("imported"))
            .unwrap_or_else(|e| panic!("{e}\n{toml}"));
        c.validate().unwrap_or_else(|e| panic!("{e}\n{toml}"));
        c
    }

    #[test]
    fn an_empty_delphi_section_is_the_delphi_defaults() {
        let c = parsed(b"[LoginGate]\n");
        assert_eq!(c.server.addr, vec!["127.0.0.1:5500".parse().unwrap()]);
        assert_eq!(c.gate.listen, vec!["0.0.0.0:7000".parse().unwrap()]);
        assert_eq!(c.gate.max_conn_per_ip, 20);
        assert_eq!(c.gate.idle_timeout_secs, 120);
        assert_eq!(c.block_list_path(), Some(PathBuf::from("BlockIPList.txt")));
        let c = parsed(b"[SelGate]\n");
        assert_eq!(c.role, crate::config::Role::SelGate);
        assert_eq!(c.server.addr, vec!["127.0.0.1:5100".parse().unwrap()]);
        assert_eq!(c.gate.listen, vec!["0.0.0.0:7100".parse().unwrap()]);
        assert_eq!(c.gate.max_packet_bytes, 100);
        assert_eq!(c.block_list_path(), None);
    }

    #[test]
    fn attack_level_zero_turns_the_checks_off() {
        let c = parsed(b"[LoginGate]\nAttackLevel=0\nMaxConnOfIPaddr=3\n");
        assert_eq!(c.gate.max_conn_per_ip, 0);
        assert_eq!(c.gate.conn_rate_per_ip, 0);
        assert_eq!(c.gate.idle_timeout_secs, 0);
    }

    #[test]
    fn unknown_and_unreadable_keys_are_listed() {
        let toml =
            import(b"[LoginGate]\nServerAddr=loginsrv.lan\nServerPort=x\nFoo=\x01bar\nstray\n")
                .unwrap();
        let tail = &toml[toml.find("# Not imported:").unwrap()..];
        for want in [
            "ServerAddr=loginsrv.lan",
            "ServerPort=x",
            "Foo=\\u{1}bar: unknown key",
            "stray",
        ] {
            assert!(tail.contains(want), "{want}\n{toml}");
        }
        parsed(b"[LoginGate]\nServerAddr=loginsrv.lan\nServerPort=x\nFoo=\x01bar\nstray\n");
    }

    #[test]
    fn block_method_sets_every_punishment() {
        use crate::punish::{PunishConfig, Punishment};
        let c = parsed(b"[LoginGate]\n");
        assert_eq!(c.gate.punish, PunishConfig::all(Punishment::Block));
        let c = parsed(b"[SelGate]\n");
        assert_eq!(c.gate.punish, PunishConfig::all(Punishment::TempBlock));
        let c = parsed(b"[LoginGate]\nBlockMethod=0\n");
        assert_eq!(c.gate.punish, PunishConfig::all(Punishment::Disconnect));
        assert_eq!(c.block_list_path(), None);
        let c = parsed(b"[Method]\nBlockIPMethod=1\n");
        assert_eq!(c.gate.punish, PunishConfig::all(Punishment::TempBlock));
        let toml = import(b"[LoginGate]\nBlockMethod=7\n").unwrap();
        assert!(toml.contains("BlockMethod=7: not 0, 1 or 2"), "{toml}");
    }

    #[test]
    fn attack_level_zero_also_turns_off_attack_mode_and_blocks() {
        use crate::punish::{PunishConfig, Punishment};
        let c = parsed(b"[LoginGate]\nAttackLevel=0\nBlockMethod=2\n");
        assert_eq!(c.gate.attack.enter_conn_rate, 0);
        assert_eq!(c.gate.punish, PunishConfig::all(Punishment::Disconnect));
        let c = parsed(b"[LoginGate]\nAttackLevel=1\n");
        assert_eq!(c.gate.attack, crate::attack::AttackConfig::default());
    }

    #[test]
    fn openmir2_check_new_id_of_ip_limits_new_accounts() {
        let c = parsed(b"[Integer]\n");
        assert_eq!(c.gate.new_accounts_per_ip_per_hour, 5);
        let c = parsed(b"[Integer]\nCheckNewIDOfIP=2\n[Switch]\nCheckNewIDOfIP=1\n");
        assert_eq!(c.gate.new_accounts_per_ip_per_hour, 2);
        let c = parsed(b"[Integer]\nCheckNewIDOfIP=2\n[Switch]\nCheckNewIDOfIP=0\n");
        assert_eq!(c.gate.new_accounts_per_ip_per_hour, 0);
    }

    #[test]
    fn other_files_are_refused() {
        assert!(matches!(
            import(b"[Server]\nx=1\n"),
            Err(ImportError::UnknownFormat)
        ));
        assert!(matches!(import(b""), Err(ImportError::UnknownFormat)));
    }
}
