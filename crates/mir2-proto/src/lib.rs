//! Legend of Mir 2 login-path wire formats (see `docs/PROTOCOL.md` at the repository root).
//!
//! Pure functions and incremental framers over byte buffers: no I/O, no allocation on the
//! framing path, every parser bounded and total (errors, never panics, on peer input).
#![forbid(unsafe_code)]

pub mod client_framer;
pub mod codec;
pub mod delimited;
pub mod game;
pub mod header;
pub mod ids;
pub mod link;
pub mod packet;
pub mod records;
pub mod text;

#[cfg(feature = "tokio-codec")]
pub mod tokio_codec;

pub use client_framer::{ClientFrameError, ClientFramer};
pub use header::MsgHeader;
pub use link::Dialect;
pub use packet::Packet;
