//! Embedded LoginSrv for the default run (cargo feature `embedded`).
//!
//! When no `[server] addr` is configured the gate starts the reference
//! LoginSrv in-process on `127.0.0.1:<ephemeral>` with SQLite in
//! `<data_dir>/accounts.db`, production Argon2id cost and one demo server
//! route, and links to it in the gate's own dialect. Keys under the gate's
//! `[embedded]` table override LoginSrv defaults (same schema as its own
//! config file); the listen address is always loopback-ephemeral.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context as _;
use tracing::info;

use crate::config::{invalid, Config, ConfigError, Dialect};

/// File name of the accounts database inside `data_dir`.
const DB_FILE: &str = "accounts.db";

/// `data_dir` must be printable as TOML: a path that is not UTF-8 could
/// neither be shown by `--print-config` nor given back through `--config`.
pub(crate) fn validate_data_dir(config: &Config) -> Result<(), ConfigError> {
    if config.data_dir.to_str().is_none() {
        return Err(invalid("data_dir", "must be valid UTF-8"));
    }
    Ok(())
}

/// The `[embedded]` table judged by the LoginSrv's own loader, only when
/// the embedded LoginSrv will run (no `server.addr`).
pub(crate) fn validate_table(config: &Config) -> Result<(), ConfigError> {
    if config.server.is_external() {
        return Ok(());
    }
    if config.embedded.contains_key("admin") {
        return Err(invalid(
            "embedded.admin",
            "the embedded LoginSrv's console is the gate's own: set [admin] instead",
        ));
    }
    // The LoginSrv tells gates apart by the presets' letters; a table of
    // other letters needs a LoginSrv configured for it.
    let f = config.server.link_frames();
    let read = |p: &mir2_proto::link::Frames| {
        (p.open, p.data, p.close, p.open_gate_ip) == (f.open, f.data, f.close, f.open_gate_ip)
    };
    if !Dialect::ALL.iter().any(|d| read(d.frames())) {
        return Err(invalid(
            "server.frames",
            "the embedded LoginSrv reads the frames of the presets only (wemade, delphi, \
             happym2, ldx); set server.addr for a LoginSrv of this build",
        ));
    }
    loginsrv::Config::from_table(config.embedded.clone()).map_err(|e| e.under("embedded"))?;
    Ok(())
}

/// The in-process LoginSrv the gate links to when `[server] addr` is absent.
pub struct Embedded {
    /// Where the embedded LoginSrv accepts the gate link.
    addr: SocketAddr,
    /// The running LoginSrv, stopped by `shutdown`.
    server: loginsrv::RunningServer,
}

impl Embedded {
    /// Start the embedded LoginSrv; returns the address the link must connect to.
    /// `inherited_lock` is the SQLite lock a predecessor handed down on a restart.
    pub async fn start(
        config: &Config,
        inherited_lock: Option<std::os::fd::OwnedFd>,
    ) -> anyhow::Result<Embedded> {
        let overrides = &config.embedded;
        let mut ls =
            loginsrv::Config::from_table(overrides.clone()).context("gate config [embedded]")?;
        ls.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        ls.default_dialect = config.server.dialect;
        // Its endpoints are served by the gate's console (one port).
        ls.admin.listen = String::new();
        ls.temporary_block = config.server.link_frames().temporary_block;
        // Absolute, so the log names the file whatever the working directory
        // (`/` under systemd).
        let data_dir =
            std::path::absolute(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
        let db_path = data_dir.join(DB_FILE);
        if !overrides.contains_key("database") {
            std::fs::create_dir_all(&data_dir)
                .with_context(|| format!("cannot create data_dir {}", data_dir.display()))?;
            ls.database = db_path.to_string_lossy().into_owned();
        }
        if !overrides.contains_key("servers") {
            ls.servers = vec![loginsrv::ServerRoute {
                name: "demo".to_owned(),
                selgates: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 7100)).into()],
                capacity: 1000,
                public_addr: String::new(),
            }];
        }
        let database = ls.database.clone();
        let server = loginsrv::start_with_lock(ls, inherited_lock)
            .await
            .context("starting the embedded LoginSrv")?;
        let addr = server.local_addr();
        info!(
            loginsrv = %addr,
            data_dir = %data_dir.display(),
            %database,
            "no [server] addr configured: the gate runs with an embedded LoginSrv; \
             to use an external LoginSrv instead pass --server HOST:PORT or set [server] addr"
        );
        Ok(Embedded { addr, server })
    }

    /// The address the gate link must connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The embedded LoginSrv's console side, mounted on the gate's console.
    pub fn console(&self) -> loginsrv::admin::Console {
        self.server.console()
    }

    /// The SQLite lock's descriptor, handed to a successor so both generations
    /// share the database during the drain.
    pub fn sqlite_lock(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.server.sqlite_lock()
    }

    /// Stop the embedded LoginSrv.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// Keys of the LoginSrv's schema the gate sets itself: the link is
/// loopback-ephemeral in the gate's dialect and block letter, the console is
/// the gate's, the log lines are the gate's (its `log_timestamps`), and the
/// database follows `data_dir` unless `database` is given.
const GATE_OWNED: [&str; 6] = [
    "listen",
    "default_dialect",
    "temporary_block",
    "admin",
    "database",
    "log_timestamps",
];

/// The `[embedded]` table in effect: the LoginSrv's defaults (with the
/// gate's demo route) under the keys the file sets. `None` when
/// `server.addr` is set and the table is not used.
pub(crate) fn effective_table(config: &Config) -> Option<toml::Table> {
    if config.server.is_external() {
        return None;
    }
    let mut table = match toml::Value::try_from(loginsrv::Config::default()) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    for key in GATE_OWNED {
        table.remove(key);
    }
    crate::config::merge_tables(&mut table, config.embedded.clone());
    Some(table)
}

/// One line of help per key of the embedded LoginSrv's schema, by dotted
/// path (array-of-table entries share their array's path). A unit test
/// keeps it complete.
const KEY_HELP: &[(&str, &str)] = &[
    (
        "database",
        "sqlite://PATH, a path, or postgres://user:pw@host/db; absent = <data_dir>/accounts.db",
    ),
    ("db_max_connections", "database pool size"),
    (
        "stats_log_secs",
        "the LoginSrv's `summary` log line every this many seconds; 0 = off",
    ),
    (
        "instance_expiry_secs",
        "PostgreSQL: an instance silent this long is dead and its sessions are removed",
    ),
    (
        "sqlite_lock_wait_secs",
        "SQLite: wait this long for another process to release the database (0 = refuse)",
    ),
    (
        "allow_gates",
        "gate networks the LoginSrv accepts (the embedded one sees only this gate)",
    ),
    ("max_gates", "gate links at once"),
    ("max_clients_per_gate", "clients per gate; more are kicked"),
    ("max_link_frame_bytes", "longest %…$ frame from a gate"),
    (
        "max_client_message_bytes",
        "longest #…! message inside a frame",
    ),
    (
        "client_queue_messages",
        "messages queued per client while one is handled",
    ),
    (
        "gate_idle_timeout_secs",
        "a gate silent (no heartbeat) or not reading this long is dropped",
    ),
    (
        "gate_outbound_queue",
        "replies queued per gate before its clients wait",
    ),
    (
        "shutdown_grace_secs",
        "time in-flight messages get on shutdown",
    ),
    (
        "min_client_version",
        "oldest CM_PROTOCOL build date (yyyymmdd) accepted; 0 = all",
    ),
    (
        "session_ttl_secs",
        "life of a server-selection session id without game servers",
    ),
    ("security", "password hashing and brute-force limits"),
    (
        "security.argon2_m_kib",
        "Argon2id memory per hash, KiB (OWASP: 19456)",
    ),
    ("security.argon2_t", "Argon2id iterations"),
    ("security.argon2_p", "Argon2id lanes"),
    (
        "security.max_concurrent_hashes",
        "hashes at once, each holding argon2_m_kib; 0 = CPUs",
    ),
    (
        "security.max_failed_logins",
        "wrong passwords in a row before the account locks",
    ),
    (
        "security.lockout_secs",
        "how long a locked account refuses logins",
    ),
    (
        "security.min_password_len",
        "shortest new password (the client allows 10 bytes)",
    ),
    (
        "security.hashes_per_ip_per_minute",
        "logins, registrations, password changes per client IP per minute; 0 = off",
    ),
    (
        "ids",
        "message ids of the client build, NAME = id (e.g. CM_GETBACKPASSWORD = 2010)",
    ),
    (
        "servers",
        "one [[embedded.servers]] per entry of the client's server list",
    ),
    ("servers.name", "name in the server list (1..=30 GBK bytes)"),
    (
        "servers.selgates",
        "SelGates handed out round-robin (\"*ip:port\" = kept, not handed out)",
    ),
    (
        "servers.max_users",
        "players at most: list status and SM_STARTFAIL",
    ),
    (
        "servers.public_addr",
        "IP given to clients instead of each SelGate's own",
    ),
    (
        "game_servers",
        "the port M2Server and DBServer connect to (Delphi 5600)",
    ),
    ("game_servers.listen", "IP:PORT; \"\" = off"),
    (
        "game_servers.allow",
        "game-server networks; others are closed at once",
    ),
    (
        "game_servers.id_set",
        "\"100\" (original, OpenMir2) or \"1000\" (circulated Delphi build)",
    ),
    (
        "game_servers.keepalive_timeout_secs",
        "a game server silent this long is shown timed out",
    ),
    (
        "game_servers.max_frame_bytes",
        "longest (…) frame; longer closes that connection",
    ),
    (
        "game_servers.max_servers",
        "game-server connections at once",
    ),
    ("routes", "per-gate SelGates (Delphi !addrtable.txt)"),
    ("routes.gate", "the gate link's source IP"),
    (
        "routes.public",
        "the gate's public address, for the operator only",
    ),
    ("routes.server", "server name the route applies to"),
    ("routes.selgates", "SelGates for clients of that gate"),
];

fn help(path: &str) -> Option<&'static str> {
    KEY_HELP.iter().find(|(k, _)| *k == path).map(|(_, h)| *h)
}

/// Puts each key's help line after it, in the `[embedded]` table of a
/// printed configuration.
pub(crate) fn annotate(doc: &mut toml_edit::DocumentMut) {
    let Some(table) = doc.get_mut("embedded").and_then(|t| t.as_table_mut()) else {
        return;
    };
    table.decor_mut().set_suffix(
        "  # the embedded LoginSrv's keys (crates/loginsrv/README.md); \
         listen, admin and the dialect are the gate's",
    );
    if !table.contains_key("database") {
        let first = table.iter().next().map(|(k, _)| k.to_owned());
        let line = "# database = \"sqlite://<data_dir>/accounts.db\"  # absent: in data_dir; \
                    or postgres://user:pw@host/db\n";
        match first.and_then(|k| table.key_mut(&k)) {
            Some(mut key) => key.leaf_decor_mut().set_prefix(line),
            None => table.decor_mut().set_suffix(format!(
                "  # the embedded LoginSrv's keys (crates/loginsrv/README.md)\n{}",
                line.trim_end()
            )),
        }
    }
    annotate_table(table, "");
}

fn annotate_table(table: &mut toml_edit::Table, prefix: &str) {
    for (key, item) in table.iter_mut() {
        let path = format!("{prefix}{}", key.get());
        let note = help(&path).map(|h| format!("  # {h}"));
        match item {
            toml_edit::Item::Value(v) => {
                if let Some(note) = note {
                    v.decor_mut().set_suffix(note);
                }
            }
            toml_edit::Item::Table(t) => {
                if let Some(note) = note {
                    t.decor_mut().set_suffix(note);
                }
                annotate_table(t, &format!("{path}."));
            }
            toml_edit::Item::ArrayOfTables(a) => {
                for (i, t) in a.iter_mut().enumerate() {
                    if i == 0 {
                        if let Some(note) = &note {
                            t.decor_mut().set_suffix(note.clone());
                        }
                    }
                    annotate_table(t, &format!("{path}."));
                }
            }
            toml_edit::Item::None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Every dotted key of a table, array-of-table entries under their array's path.
    fn paths(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (key, value) in table {
            let path = format!("{prefix}{key}");
            match value {
                toml::Value::Table(t) => paths(t, &format!("{path}."), out),
                toml::Value::Array(a) if a.iter().all(toml::Value::is_table) && !a.is_empty() => {
                    for t in a.iter().filter_map(toml::Value::as_table) {
                        paths(t, &format!("{path}."), out);
                    }
                }
                _ => {}
            }
            out.push(path);
        }
    }

    #[test]
    fn every_embedded_key_has_a_help_line() {
        // Every optional entry present, so its keys are printed too.
        let full = "[[servers]]\nname = \"a\"\nselgates = [\"127.0.0.1:7100\"]\npublic_addr = \"192.0.2.1\"\n\
                    [[routes]]\ngate = \"127.0.0.1\"\npublic = \"192.0.2.1\"\nserver = \"a\"\n\
                    selgates = [\"127.0.0.1:7101\"]\n";
        let ls = loginsrv::Config::from_toml(full).unwrap();
        let toml::Value::Table(table) = toml::Value::try_from(ls).unwrap() else {
            panic!("a table")
        };
        let mut all = Vec::new();
        paths(&table, "", &mut all);
        for path in all {
            let owned = GATE_OWNED
                .iter()
                .any(|k| path == *k || path.starts_with(&format!("{k}.")));
            if owned && path != "database" {
                continue;
            }
            assert!(help(&path).is_some(), "no help line for embedded.{path}");
        }
    }
}
