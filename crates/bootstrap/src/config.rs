//! Config errors and the TOML loader.

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest value any `*_secs` key may take (one year): far beyond any
/// sensible setting, and small enough that `Instant + Duration` can never
/// overflow (which would panic the task that computes a deadline).
pub const MAX_SECS: u64 = 365 * 24 * 3600;

/// Why a configuration was refused. The binaries print it on one line and
/// exit with [`EXIT_CONFIG`](crate::EXIT_CONFIG).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigError {
    /// Dotted key, e.g. `gate.max_conn_per_ip`; `config` for the file itself.
    pub key: String,
    /// What is wrong with it, including the line when a file was parsed.
    pub problem: String,
}

impl ConfigError {
    /// An error about one key.
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// The same error, its key placed under `prefix` (an embedded table).
    pub fn under(self, prefix: &str) -> ConfigError {
        ConfigError {
            key: format!("{prefix}.{}", self.key),
            problem: self.problem,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config key `{}`: {}", self.key, self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// Parse a TOML document into `T`. On failure the error names the dotted key
/// (the path serde was at, plus the field for an unknown or missing one) and
/// the line, e.g. ``config key `gate.max_conn`: unknown field `max_conn`, expected
/// one of … (gate.toml line 4)``.
pub fn from_toml<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T, ConfigError> {
    let deserializer = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.message().trim_end().to_owned();
        let message = with_suggestion(message);
        let mut key = key_named(&path, &message);
        let line = inner.span().map(|span| line_of(text, span.start));
        // A value TOML itself cannot read (an integer beyond i64, a broken
        // string) fails before serde sees a key: name the key on that line.
        if key == "config" {
            if let Some(found) = inner.span().and_then(|span| key_on_line(text, span.start)) {
                key = found;
            }
        }
        let at = match line {
            Some(line) => format!(" ({} line {line})", origin.display()),
            None => format!(" ({})", origin.display()),
        };
        ConfigError::new(key, format!("{message}{at}"))
    })
}

/// Deserialize an already-parsed TOML table into `T` (an embedded table, or
/// a file merged over defaults); the error names the dotted key.
pub fn from_table<T: DeserializeOwned>(table: toml::Table) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let message = with_suggestion(e.into_inner().message().trim_end().to_owned());
        ConfigError::new(key_named(&path, &message), message)
    })
}

/// Read and parse a TOML file.
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("config", format!("cannot read {}: {e}", path.display())))?;
    from_toml(&text, path)
}

/// `key` must be a whole number of seconds in `min..=MAX_SECS`.
pub fn check_secs(key: &str, secs: u64, min: u64) -> Result<(), ConfigError> {
    if (min..=MAX_SECS).contains(&secs) {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            format!("must be {min}..={MAX_SECS} seconds"),
        ))
    }
}

/// The dotted keys whose values differ between `old` and `new` (tables compared key
/// by key, arrays and values whole), sorted by name within each table.
pub fn changed_keys<T: Serialize>(old: &T, new: &T) -> Vec<String> {
    let as_table = |c: &T| match toml::Value::try_from(c) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    let mut keys = Vec::new();
    diff_tables("", &as_table(old), &as_table(new), &mut keys);
    keys
}

fn diff_tables(prefix: &str, old: &toml::Table, new: &toml::Table, out: &mut Vec<String>) {
    let names = old
        .keys()
        .chain(new.keys().filter(|k| !old.contains_key(*k)));
    for name in names {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match (old.get(name), new.get(name)) {
            (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => {
                diff_tables(&key, a, b, out)
            }
            (a, b) if a != b => out.push(key),
            _ => {}
        }
    }
}

/// Whether dotted `key` is one of `keys` or lies under one (`embedded.x` under
/// `embedded`, `servers[0]` under `servers`).
pub fn is_under(key: &str, keys: &[&str]) -> bool {
    keys.iter().any(|k| {
        key == *k
            || key
                .strip_prefix(k)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    })
}

/// What a configuration reload did; the consoles' `POST /api/reload` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadOutcome {
    /// Whether the new configuration was accepted.
    pub ok: bool,
    /// Live keys now in force (dotted).
    pub applied: Vec<String>,
    /// Keys that changed but apply on restart only.
    pub restart_required: Vec<String>,
    /// Why the file was refused (`ok` false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ConfigError>,
}

impl ReloadOutcome {
    /// An accepted reload.
    pub fn applied(applied: Vec<String>, restart_required: Vec<String>) -> Self {
        ReloadOutcome {
            ok: true,
            applied,
            restart_required,
            error: None,
        }
    }

    /// A refused reload (nothing changed).
    pub fn refused(error: ConfigError) -> Self {
        ReloadOutcome {
            ok: false,
            applied: Vec::new(),
            restart_required: Vec::new(),
            error: Some(error),
        }
    }
}

/// The key an error is about: serde's path, extended by the field an
/// "unknown field" or "missing field" message names. `.` is serde's root.
fn key_named(path: &str, message: &str) -> String {
    let field = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    let path = if path == "." { "" } else { path };
    match (path, field) {
        ("", Some(f)) => f.to_owned(),
        ("", None) => "config".to_owned(),
        (p, Some(f)) if !p.ends_with(f) => format!("{p}.{f}"),
        (p, _) => p.to_owned(),
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" with the nearest known
/// name appended ("did you mean `b`?") when one is close enough to be a typo.
fn with_suggestion(message: String) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message;
    };
    let Some((unknown, expected)) = rest.split_once('`') else {
        return message;
    };
    let nearest = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|known| (strsim::jaro_winkler(unknown, known), known))
        .filter(|(score, _)| *score >= SUGGEST_SIMILARITY)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match nearest {
        Some((_, known)) => format!("{message}; did you mean `{known}`?"),
        None => message,
    }
}

/// Jaro-Winkler similarity from which a known key is offered for an unknown one:
/// catches typos and shortened names, not unrelated words.
const SUGGEST_SIMILARITY: f64 = 0.8;

/// Serde helpers for socket addresses as operators write them: `IP:PORT` or
/// `host:port` (resolved once, at load), and for a list key a single string too.
pub mod addr {
    use std::net::{SocketAddr, ToSocketAddrs};

    use serde::{Deserialize, Deserializer};

    /// `IP:PORT`, or `host:port` resolved to its first address.
    pub fn parse(text: &str) -> Result<SocketAddr, String> {
        let text = text.trim();
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(addr);
        }
        if text
            .rsplit_once(':')
            .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            return Err(format!(
                "{text:?} is not an address: write IP:PORT (e.g. 127.0.0.1:5500, [::1]:5500) or HOST:PORT"
            ));
        }
        match text.to_socket_addrs() {
            Ok(mut addrs) => addrs
                .next()
                .ok_or_else(|| format!("{text:?} resolves to no address; write IP:PORT")),
            Err(e) => Err(format!("{text:?} does not resolve ({e}); write IP:PORT")),
        }
    }

    /// One address.
    pub fn one<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }

    /// An optional address (`Option<SocketAddr>` with `#[serde(default)]`).
    pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        one(d).map(Some)
    }

    /// A list of addresses, or a single one written as a string.
    pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        let texts = match OneOrMany::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected an address \"IP:PORT\" or a list of them")
        })? {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        };
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| parse(t).map_err(|e| serde::de::Error::custom(format!("[{i}]: {e}"))))
            .collect()
    }
}

/// The dotted key assigned on the line holding byte `offset`: the nearest
/// `[table]` header above it, then the name before `=`.
fn key_on_line(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(line_start..)?.lines().next()?;
    let (name, _) = line.split_once('=')?;
    let name = name.trim().trim_matches('"');
    if name.is_empty() || name.starts_with('[') {
        return None;
    }
    let table = text
        .get(..line_start)?
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    Some(match table {
        Some(table) => format!("{table}.{name}"),
        None => name.to_owned(),
    })
}

/// 1-based line number of byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Deserialize, Serialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        max_conn_per_ip: u32,
        listen: Vec<String>,
    }

    #[derive(Debug, Deserialize, Serialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Outer {
        data_dir: String,
        gate: Inner,
    }

    fn err(text: &str) -> ConfigError {
        from_toml::<Outer>(text, Path::new("gate.toml")).unwrap_err()
    }

    #[test]
    fn unknown_key_in_a_table_names_the_dotted_key_and_line() {
        let e = err("data_dir = \"x\"\n[gate]\nmax_conn = 3\n");
        assert_eq!(e.key, "gate.max_conn");
        assert!(e.problem.contains("unknown field `max_conn`"), "{e}");
        assert!(e.problem.contains("gate.toml line 3"), "{e}");
        assert_eq!(e.to_string().lines().count(), 1);
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = err("[gate]\nmax_conn_per_ip = \"ten\"\n");
        assert_eq!(e.key, "gate.max_conn_per_ip");
        assert!(e.problem.contains("line 2"), "{e}");
    }

    #[test]
    fn wrong_type_inside_an_array_names_the_element() {
        let e = err("[gate]\nlisten = [\"a\", 3]\n");
        assert_eq!(e.key, "gate.listen[1]");
    }

    #[test]
    fn a_value_toml_cannot_read_names_the_key_on_its_line() {
        let e = err("[gate]\nmax_conn_per_ip = 18446744073709551615\n");
        assert_eq!(e.key, "gate.max_conn_per_ip");
        assert!(e.problem.contains("line 2"), "{e}");
    }

    #[test]
    fn unknown_top_level_key() {
        let e = err("colour = true\n");
        assert_eq!(e.key, "colour");
    }

    #[test]
    fn syntax_error_names_the_file() {
        let e = err("[gate\n");
        assert_eq!(e.key, "config");
        assert!(e.problem.contains("gate.toml line 1"), "{e}");
    }

    #[test]
    fn valid_document_parses() {
        let o: Outer = from_toml("[gate]\nmax_conn_per_ip = 4\n", Path::new("x")).unwrap();
        assert_eq!(o.gate.max_conn_per_ip, 4);
    }

    #[test]
    fn unreadable_file_is_a_config_error() {
        let e = load_toml::<Outer>(Path::new("/nonexistent/gate.toml")).unwrap_err();
        assert_eq!(e.key, "config");
        assert!(e.problem.contains("/nonexistent/gate.toml"));
    }

    #[test]
    fn seconds_are_bounded() {
        assert!(check_secs("a", 0, 0).is_ok());
        assert!(check_secs("a", 0, 1).is_err());
        assert!(check_secs("a", MAX_SECS, 1).is_ok());
        let e = check_secs("server.heartbeat_secs", MAX_SECS + 1, 1).unwrap_err();
        assert_eq!(e.key, "server.heartbeat_secs");
    }

    #[test]
    fn tables_name_the_dotted_key() {
        let table: toml::Table = toml::from_str("[gate]\nmax_conn_per_ip = -1\n").unwrap();
        let e = from_table::<Outer>(table).unwrap_err();
        assert_eq!(e.key, "gate.max_conn_per_ip");
        let table: toml::Table = toml::from_str("[gate]\nspeed = 1\n").unwrap();
        assert_eq!(from_table::<Outer>(table).unwrap_err().key, "gate.speed");
    }

    #[test]
    fn an_unknown_key_suggests_the_nearest_known_one() {
        let e = err("[gate]\nmax_conn_per_i = 3\n");
        assert!(e.problem.contains("did you mean `max_conn_per_ip`?"), "{e}");
        let e = err("[gate]\nspeed = 3\n");
        assert!(!e.problem.contains("did you mean"), "{e}");
        assert_eq!(e.to_string().lines().count(), 1);
    }

    #[derive(Debug, Deserialize)]
    struct Addrs {
        #[serde(deserialize_with = "addr::list")]
        listen: Vec<std::net::SocketAddr>,
        #[serde(default, deserialize_with = "addr::optional")]
        server: Option<std::net::SocketAddr>,
    }

    #[test]
    fn addresses_are_one_string_or_a_list_and_host_names_resolve() {
        let a: Addrs = from_toml("listen = \"0.0.0.0:7000\"\n", Path::new("x")).unwrap();
        assert_eq!(a.listen, vec!["0.0.0.0:7000".parse().unwrap()]);
        assert_eq!(a.server, None);
        let a: Addrs = from_toml(
            "listen = [\"127.0.0.1:1\", \"[::1]:2\"]\nserver = \"localhost:5500\"\n",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(a.listen.len(), 2);
        let server = a.server.unwrap();
        assert!(
            server.ip().is_loopback() && server.port() == 5500,
            "{server}"
        );
        let e = from_toml::<Addrs>("listen = \"7000\"\n", Path::new("x")).unwrap_err();
        assert_eq!(e.key, "listen");
        assert!(e.problem.contains("IP:PORT"), "{e}");
        let e = from_toml::<Addrs>("listen = [\"127.0.0.1:1\", \"nowhere\"]\n", Path::new("x"))
            .unwrap_err();
        assert!(
            e.problem.contains("[1]") && e.problem.contains("IP:PORT"),
            "{e}"
        );
    }

    #[test]
    fn changed_keys_name_the_leaves_and_is_under_matches_prefixes() {
        let old = Outer {
            data_dir: "a".into(),
            gate: Inner {
                max_conn_per_ip: 1,
                listen: vec!["x".into()],
            },
        };
        let mut new = Outer {
            data_dir: "a".into(),
            gate: Inner {
                max_conn_per_ip: 2,
                listen: vec!["x".into()],
            },
        };
        assert_eq!(changed_keys(&old, &new), ["gate.max_conn_per_ip"]);
        new.gate.listen.push("y".into());
        assert_eq!(
            changed_keys(&old, &new),
            ["gate.listen", "gate.max_conn_per_ip"]
        );
        assert!(is_under("gate.listen", &["gate.listen"]));
        assert!(is_under("embedded.db.url", &["embedded"]));
        assert!(is_under("servers[1]", &["servers"]));
        assert!(!is_under("gate.listening", &["gate.listen"]));
    }

    #[test]
    fn under_prefixes_the_key() {
        let e = ConfigError::new("max_gates", "too big").under("embedded");
        assert_eq!(e.key, "embedded.max_gates");
    }
}
