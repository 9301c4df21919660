//! Legend of Mir 2 LoginGate: game clients in, one multiplexed link to the LoginSrv.

pub mod config;
pub mod embedded;
