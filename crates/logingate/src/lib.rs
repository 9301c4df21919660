//! Legend of Mir 2 LoginGate: game clients in, one multiplexed link to the LoginSrv.
//!
//! - [`config`] / [`cli`]: the TOML file and flags.
//! - [`client`]: the netcore handler (framing, rate limit, open/data/close frames).
//! - [`link`]: the LoginSrv link (batching writer, heartbeat, reconnect).
//! - [`dispatch`]: the LoginSrv's replies, kicks and blocks applied to sessions.
//! - [`reason`]: close and refusal labels, counted without a lock.
//! - [`role`]: LoginGate or SelGate, and the defaults of each.
//! - [`admin`]: the operator's console (metrics, status page, admin API).
//! - [`blocklist`]: the block list file; [`allowlist`]: the allow list file.
//! - [`punish`]: the punishment of each offence; [`attack`]: automatic attack mode.
//! - [`account_ops`]: per-IP registration and password-operation limits;
//!   [`http_probe`]: HTTP requests on the game port.
//! - [`import_ini`]: a Delphi or OpenMir2 gate's INI file as our TOML.
//! - [`app`]: wiring and shutdown; [`app::Gate`] runs a gate in-process.
//! - [`reload`]: live configuration reload; [`handover`]: the zero-downtime restart
//!   (listeners passed to a successor, readiness, pid file).
//! - `embedded` (cargo feature `embedded`, on by default): the reference
//!   LoginSrv started in-process when `server.addr` is absent.

/// jemalloc for every binary built with this crate's `jemalloc` feature (the gate, its
/// tests, the end-to-end binary): see the feature in Cargo.toml for why.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

pub mod account_ops;
pub mod admin;
pub mod allowlist;
pub mod app;
pub mod attack;
pub mod blocklist;
pub mod cli;
pub mod client;
pub mod config;
pub mod dispatch;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod handover;
pub mod http_probe;
pub mod import_ini;
pub mod link;
pub mod punish;
pub mod reason;
pub mod reload;
pub mod role;
