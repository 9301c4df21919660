//! Every limit of the core, named. `Config::default()` gives sane values.

use std::net::SocketAddr;
use std::time::Duration;

/// Configuration of a [`crate::Server`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Addresses to listen on; one core serves them all.
    pub listen: Vec<SocketAddr>,
    /// Kernel accept backlog per listener.
    pub backlog: u32,
    /// Set TCP_NODELAY on accepted sockets (small request/response messages).
    pub nodelay: bool,
    /// TCP_DEFER_ACCEPT (Linux): `accept` sees a connection only once the client sent
    /// data, or after this long; silent connections cost user space nothing meanwhile.
    pub defer_accept: Option<Duration>,
    /// Global cap on live sessions. Over it a connection is accepted and closed at once
    /// (the kernel already completed the handshake), counted as `max_connections`.
    pub max_connections: usize,
    /// Concurrent sessions per source IP; 0 = unlimited.
    pub max_conn_per_ip: u32,
    /// New connections per second per source IP (token bucket); 0 = unlimited.
    pub conn_rate_per_ip: u32,
    /// Burst of the per-IP token bucket; 0 = `conn_rate_per_ip`.
    pub conn_burst_per_ip: u32,
    /// Slots (16 bytes each) of the fixed-size per-IP rate table, allocated at start;
    /// 0 = 2 × `max_connections`, clamped to 4,096..=1,048,576.
    pub rate_table_slots: usize,
    /// Most run-time block-list entries; when full, expired entries are purged, then
    /// the one expiring soonest is evicted.
    pub max_runtime_blocks: usize,
    /// Close a session that sent no whole message this long after connecting (the handler
    /// decides what a message is, see [`crate::Progress`]).
    pub first_packet_timeout: Option<Duration>,
    /// Close a session that sent no whole message for this long.
    pub idle_timeout: Option<Duration>,
    /// Bytes queued for one peer before it is closed as a slow reader.
    pub max_outbound_bytes: usize,
    /// Size of a receive buffer; also the most a handler may leave pending (a partial frame).
    pub read_buffer_bytes: usize,
    /// Receive buffers kept on the free list for reuse; beyond it they are freed.
    pub buffer_pool_max: usize,
    /// How long a closing session may spend flushing its queue (also on shutdown).
    pub shutdown_flush_timeout: Duration,
    /// Prefix of every metric name, e.g. `"gate_"` gives `gate_accepted_total`.
    pub metrics_prefix: &'static str,
    /// PROXY protocol from trusted fronts (off: every peer is judged by its own address).
    pub proxy: crate::proxy::ProxyConfig,
    /// When non-empty, only TCP peers in these networks may connect at all; checked
    /// before anything else, refused without any per-connection memory.
    pub allow_sources: Vec<ipnet::IpNet>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 7000))],
            backlog: 1024,
            nodelay: true,
            defer_accept: None,
            max_connections: 10_000,
            max_conn_per_ip: 16,
            conn_rate_per_ip: 10,
            conn_burst_per_ip: 20,
            rate_table_slots: 0,
            max_runtime_blocks: 65_536,
            first_packet_timeout: Some(Duration::from_secs(10)),
            idle_timeout: Some(Duration::from_secs(120)),
            max_outbound_bytes: 256 * 1024,
            read_buffer_bytes: 8 * 1024,
            buffer_pool_max: 1024,
            shutdown_flush_timeout: Duration::from_secs(3),
            metrics_prefix: "netcore_",
            proxy: crate::proxy::ProxyConfig::default(),
            allow_sources: Vec::new(),
        }
    }
}
