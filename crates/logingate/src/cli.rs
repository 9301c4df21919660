//! Command line: flags override the TOML file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError, Dialect, LogFormat, Role};

/// Legend of Mir 2 LoginGate: game clients in, one link to the LoginSrv.
/// Without a subcommand it runs the gate.
#[derive(Debug, Parser)]
#[command(name = "logingate", version, about)]
pub struct Cli {
    /// Something else than running the gate.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML configuration file (defaults apply to every missing key).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to accept clients on; repeat for several (replaces gate.listen).
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,
    /// LoginSrv gate address; repeat for several backends (replaces
    /// server.addr and [[server.backends]]); without it the embedded LoginSrv
    /// runs (required when built without the `embedded` feature).
    #[arg(long, value_name = "ADDR")]
    pub server: Vec<SocketAddr>,
    /// Link dialect: wemade, delphi, happym2 or ldx (server.dialect).
    #[arg(long, value_name = "DIALECT")]
    pub dialect: Option<Dialect>,
    /// Console address, IP:PORT ("" = off; replaces admin.listen).
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
    /// What the gate fronts: login (a LoginSrv) or selgate (a DBServer); keys
    /// the file leaves out take that role's defaults (role).
    #[arg(long, value_name = "ROLE")]
    pub role: Option<Role>,
    /// Print the effective configuration as TOML, every default included, and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Validate the configuration (the file and the flags) and exit: 0 when valid,
    /// 2 naming the first bad key. Run it before a reload or a restart.
    #[arg(long)]
    pub check_config: bool,
    /// Log format: text or json (log_format).
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Directory for the embedded LoginSrv's data (data_dir).
    #[cfg(feature = "embedded")]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a TOML config equivalent to a Delphi gate's Config.ini
    /// ([LoginGate] or [SelGate], GBK or UTF-8) or an OpenMir2 gate's
    /// config.conf: `logingate import-ini Config.ini > gate.toml`.
    ImportIni {
        /// The file to convert.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Restart a running gate without dropping anyone: sends SIGUSR2 to the pid in
    /// FILE (gate.pid_file); the gate starts its successor, hands it the listeners
    /// and drains.
    Restart {
        /// The running gate's pid file.
        #[arg(long, value_name = "FILE")]
        pid_file: PathBuf,
    },
}

impl Cli {
    /// The file (or defaults) with the flags applied, validated, with the
    /// effective frame table written out.
    pub fn effective_config(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::load_as(path, self.role)?,
            None => self.role.unwrap_or_default().defaults(),
        };
        if !self.listen.is_empty() {
            config.gate.listen = self.listen.clone();
        }
        if !self.server.is_empty() {
            config.server.addr = self.server.clone();
            config.server.backends.clear();
        }
        if let Some(d) = self.dialect {
            config.server.dialect = d;
        }
        if let Some(addr) = &self.admin {
            config.admin.listen = addr.clone();
        }
        if let Some(f) = self.log_format {
            config.log_format = f;
        }
        #[cfg(feature = "embedded")]
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        config.validate()?;
        config.pin_frames();
        Ok(config)
    }
}
