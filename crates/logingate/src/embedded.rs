//! Embedded LoginSrv for the default run (owned by the LoginSrv work).

use std::net::SocketAddr;

/// The in-process LoginSrv the gate links to when `[server] addr` is absent.
pub struct Embedded {
    /// Where the embedded LoginSrv accepts the gate link.
    addr: SocketAddr,
}

impl Embedded {
    /// Start the embedded LoginSrv; returns the address the link must connect to.
    pub async fn start(config: &crate::config::Config) -> anyhow::Result<Embedded> {
        let _ = config;
        anyhow::bail!("no [server] addr configured and the embedded LoginSrv is not built yet: set [server] addr or --server")
    }

    /// The address the gate link must connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop the embedded LoginSrv.
    pub async fn shutdown(self) {}
}
