//! Fronts: the source allow list, and the PROXY protocol from trusted proxies.
//!
//! Between accept and `on_open`, every peer goes through one decision on its TCP
//! address:
//! 1. `allow_sources` (when non-empty): a peer outside it is closed at once, before the
//!    socket is registered with the reactor (no per-connection memory);
//! 2. a peer in `trusted` must start with a PROXY header of the configured version; the
//!    address it carries becomes the session's peer, and admission (block list, per-IP
//!    rate and cap) runs for that address before the session exists (see `handshake`);
//! 3. anyone else is a direct client, admitted on its own address. A PROXY header from
//!    it is never looked at: it is the first bytes of its stream, for the handler.

mod handshake;
pub mod header;

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::admission::NetMap;
use crate::config::Config;

pub(crate) use handshake::admit_front;
pub use header::{ProxyProtocol, Version};

/// Labels of the connections this stage refuses, in `rejected_total{reason}` and logs.
pub mod label {
    /// A trusted peer's stream did not begin with a PROXY header (or it closed first).
    pub const HEADER_MISSING: &str = "proxy_header_missing";
    /// A trusted peer sent a malformed, over-long or wrong-version header.
    pub const HEADER_INVALID: &str = "proxy_header_invalid";
    /// A trusted peer sent no complete header within `ProxyConfig::header_timeout`.
    pub const HEADER_TIMEOUT: &str = "proxy_header_timeout";
    /// The front's own connection (v2 LOCAL, v1 UNKNOWN): closed quietly, no session.
    pub const LOCAL: &str = "proxy_local";
    /// The TCP peer is outside `Config::allow_sources`.
    pub const SOURCE_NOT_ALLOWED: &str = "source_not_allowed";
}

/// PROXY protocol settings of a [`crate::Server`].
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Versions a trusted peer may send; `Off` trusts nobody.
    pub protocol: ProxyProtocol,
    /// Networks whose connections must begin with a PROXY header.
    pub trusted: Vec<IpNet>,
    /// A trusted peer that sends no complete header this long after accept is closed.
    pub header_timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            protocol: ProxyProtocol::Off,
            trusted: Vec::new(),
            header_timeout: Duration::from_secs(5),
        }
    }
}

/// The per-accept view of the configuration: O(distinct prefix lengths) lookups.
pub(crate) struct Sources {
    /// `Config::allow_sources`; `None` when empty (everyone may connect).
    allow: Option<NetMap<()>>,
    /// `ProxyConfig::trusted`; empty when the protocol is off.
    trusted: NetMap<()>,
    /// Whether any network is trusted (skips the lookup for direct-only servers).
    any_trusted: bool,
    /// `ProxyConfig::protocol`.
    pub(crate) protocol: ProxyProtocol,
    /// `ProxyConfig::header_timeout`.
    pub(crate) header_timeout: Duration,
}

fn net_map(nets: &[IpNet]) -> NetMap<()> {
    let mut map = NetMap::default();
    for &net in nets {
        map.insert(net, ());
    }
    map
}

impl Sources {
    pub(crate) fn new(config: &Config) -> Self {
        let proxy = &config.proxy;
        Sources {
            allow: (!config.allow_sources.is_empty()).then(|| net_map(&config.allow_sources)),
            trusted: net_map(&proxy.trusted),
            any_trusted: proxy.protocol != ProxyProtocol::Off && !proxy.trusted.is_empty(),
            protocol: proxy.protocol,
            header_timeout: proxy.header_timeout,
        }
    }

    /// Whether `ip` (the TCP peer, canonical) may connect at all.
    pub(crate) fn allows(&self, ip: IpAddr) -> bool {
        self.allow
            .as_ref()
            .is_none_or(|allow| allow.matches(ip).next().is_some())
    }

    /// Whether `ip` (the TCP peer, canonical) is a front that must send a PROXY header.
    pub(crate) fn trusts(&self, ip: IpAddr) -> bool {
        self.any_trusted && self.trusted.matches(ip).next().is_some()
    }
}

/// Refuses contradictory settings (the application maps them to its own key names).
pub(crate) fn validate(config: &Config) -> io::Result<()> {
    let invalid = |what: &str| {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            what.to_string(),
        ))
    };
    let proxy = &config.proxy;
    match (proxy.protocol, proxy.trusted.is_empty()) {
        (ProxyProtocol::Off, false) => {
            invalid("config.proxy.trusted is set but config.proxy.protocol is off")
        }
        (ProxyProtocol::Off, true) => Ok(()),
        (_, false) if proxy.header_timeout.is_zero() => {
            invalid("config.proxy.header_timeout must be > 0")
        }
        (_, false) => Ok(()),
        (_, true) => invalid("config.proxy.protocol is on but config.proxy.trusted is empty"),
    }
}
