//! Legend of Mir 2 LoginGate: game clients in, one multiplexed link to the LoginSrv.
//!
//! - [`config`] / [`cli`]: the TOML file and flags.
//! - [`client`]: the netcore handler (framing, rate limit, open/data/close frames).
//! - [`link`]: the LoginSrv link (batching writer, heartbeat, reconnect).
//! - [`dispatch`]: the LoginSrv's replies, kicks and blocks applied to sessions.
//! - [`reason`]: close and refusal labels, counted without a lock.
//! - [`role`]: LoginGate or SelGate, and the defaults of each.
//! - [`blocklist`]: the block list file.
//! - [`admin`]: the operator's console (metrics, status page, admin API).
//! - [`import_ini`]: a Delphi or OpenMir2 gate's INI file as our TOML.
//! - [`app`]: wiring and shutdown; [`app::Gate`] runs a gate in-process.
//! - `embedded` (cargo feature `embedded`, on by default): the reference
//!   LoginSrv started in-process when `server.addr` is absent.

pub mod admin;
pub mod app;
pub mod blocklist;
pub mod cli;
pub mod client;
pub mod config;
pub mod dispatch;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod import_ini;
pub mod link;
pub mod reason;
pub mod role;
