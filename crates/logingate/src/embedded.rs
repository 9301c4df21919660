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
