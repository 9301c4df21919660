//! The LoginSrv's test setup: the scripted tests' config on a throwaway
//! database, and a server started in-process. The scripted gate and the
//! databases come from `testkit`.
// Each test binary uses some of these.
#![allow(dead_code, unused_imports, clippy::expect_used)]

use loginsrv::{Config, RunningServer};

pub use testkit::db::*;
pub use testkit::gate::*;

/// Test config: ephemeral port, cheap Argon2, fast lockout (see [`loginsrv_toml`]).
pub fn config(db: &Db) -> Config {
    Config::from_toml(&loginsrv_toml(db)).expect("test LoginSrv config")
}

pub async fn start(config: Config) -> RunningServer {
    loginsrv::start(config).await.expect("LoginSrv starts")
}
