//! `--proxy v1|v2` and `--proxy-source IP[:PORT]`: begin each connection with a PROXY
//! protocol header, as a front (HAProxy, an anti-DDoS service) would, so an operator can
//! check a gate's `trusted_proxies` setup and the bench can measure what the header costs.
//! The header itself comes from netcore's writer, the one the gate's tests use.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use netcore::proxy::{header, Version};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The client address a header claims.
#[derive(Clone, Copy, Debug)]
pub enum ProxySource {
    /// This IP, with the connecting socket's own port.
    Ip(IpAddr),
    /// Exactly this address.
    Addr(SocketAddr),
}

impl FromStr for ProxySource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse::<SocketAddr>()
            .map(ProxySource::Addr)
            .or_else(|_| s.parse::<IpAddr>().map(ProxySource::Ip))
            .map_err(|_| format!("{s:?} is not IP or IP:PORT ([v6]:PORT)"))
    }
}

/// The PROXY options of a client command.
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct ProxyArgs {
    /// Send a PROXY protocol header first, as a front would: v1 (text) or v2 (binary).
    #[arg(long, value_name = "v1|v2")]
    pub proxy: Option<Version>,
    /// Client address the header carries. Default: the socket's own IP with port 0 (a
    /// header naming the socket's exact address is how a front announces its own
    /// health checks, which a gate closes without a session); an IP alone keeps the
    /// socket's port.
    #[arg(long, value_name = "IP[:PORT]", requires = "proxy")]
    pub proxy_source: Option<ProxySource>,
}

impl ProxyArgs {
    /// Writes the header on a fresh connection (nothing when `--proxy` is absent).
    pub async fn send_header(self, stream: &mut TcpStream) -> std::io::Result<()> {
        let Some(version) = self.proxy else {
            return Ok(());
        };
        let own = stream.local_addr()?;
        let source = match self.proxy_source {
            None => SocketAddr::new(own.ip(), 0),
            Some(ProxySource::Ip(ip)) => SocketAddr::new(ip, own.port()),
            Some(ProxySource::Addr(addr)) => addr,
        };
        let bytes = header::encode(version, source, stream.peer_addr()?)?;
        stream.write_all(&bytes).await
    }

    /// The same options as command-line arguments (for child processes).
    pub fn to_args(self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(version) = self.proxy {
            let name = match version {
                Version::V1 => "v1",
                Version::V2 => "v2",
            };
            args.extend(["--proxy".to_string(), name.to_string()]);
        }
        match self.proxy_source {
            Some(ProxySource::Ip(ip)) => args.extend(["--proxy-source".into(), ip.to_string()]),
            Some(ProxySource::Addr(a)) => args.extend(["--proxy-source".into(), a.to_string()]),
            None => {}
        }
        args
    }
}
