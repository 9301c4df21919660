//! The operator's HTTP console, the parts `logingate` and `loginsrv` share:
//!
//! - [`listen`]: the `[admin]` keys checked (a non-loopback console needs a token);
//! - [`server`]: a bounded HTTP/1 server (64 connections, header and lifetime
//!   deadlines) and the finishing layers every console has (token check on
//!   state-changing requests, JSON 404/405, no-store and CSP headers);
//! - [`auth`]: the bearer token, compared in constant time, refusals counted;
//! - [`body`]: request bodies read with a size and time bound, JSON errors
//!   naming the field;
//! - [`error`]: the one-line JSON error every failure answers with;
//! - [`events`]: the ring of recent notable events the page lists;
//! - [`prometheus`]: the process-wide Prometheus recorder behind the `metrics`
//!   facade, its histogram buckets and metric descriptions;
//! - [`html`]: escaping and the page frame (inline style and refresh script,
//!   nothing loaded from elsewhere).
//!
//! Each program adds its own routes and page sections; the gate mounts the
//! embedded LoginSrv's routes on its own console, so one port serves both.

pub mod auth;
pub mod body;
pub mod error;
pub mod events;
pub mod html;
pub mod listen;
pub mod prometheus;
pub mod server;

pub use auth::Guard;
pub use error::ApiError;
pub use server::{finish, Running};
