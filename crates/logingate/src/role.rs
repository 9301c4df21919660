//! The gate's role: the same program in front of a LoginSrv (a LoginGate) or
//! in front of a DBServer (a SelGate, where clients choose their character).
//!
//! Both links carry the same `%…$` frames within one build (PROTOCOL.md §8),
//! so a role changes only defaults, what the gate may start by itself, and
//! how logs and metrics name it.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::config::{Config, Dialect};

/// Which server the gate fronts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A LoginGate: clients log in through it to a LoginSrv (or the embedded one).
    #[default]
    Login,
    /// A SelGate: clients list, create and pick characters through it to a DBServer.
    SelGate,
}

/// Gauge set to 1 with the gate's role as its `role` label, so dashboards can
/// tell a LoginGate's series from a SelGate's on the same host.
pub const ROLE_METRIC: &str = "gate_role";

impl Role {
    /// Every role.
    pub const ALL: [Role; 2] = [Role::Login, Role::SelGate];

    /// The config and CLI spelling, also the `role` field of log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Login => "login",
            Role::SelGate => "selgate",
        }
    }

    /// What the server behind the link is called in messages.
    pub fn server_name(self) -> &'static str {
        match self {
            Role::Login => "LoginSrv",
            Role::SelGate => "DBServer",
        }
    }

    /// The defaults of this role. A SelGate takes the classic Delphi SelGate's
    /// (PROTOCOL.md §8, §9) where our keys express them:
    ///
    /// - clients on port 7100 (`GatePort`);
    /// - the classic SelGate's frames, `delphi` (`%O<id>/<ip>/<gateIp>$`);
    /// - `MaxConnOfIPaddr` 10 × `AttackLevel` 1: 10 connections per IP;
    /// - its connect burst, 5 connects from one IP each within 200 ms: 5 per second;
    /// - `KeepConnectTimeOut` 60 000 ms × `AttackLevel` 1: idle after 60 s;
    /// - the DBServer handles at most 10 messages per user per pass: 10 per second;
    /// - its flood bound, 100 bytes per 500 ms, is far above the longest SelGate
    ///   message (CM_NEWCHR, under 100 bytes) and far below a LoginGate's: 256 bytes.
    ///
    /// The DBServer (classically 127.0.0.1:5100) has no default: without
    /// `server.addr` a LoginGate starts its embedded LoginSrv, which is no
    /// DBServer, so a SelGate refuses to start instead.
    pub fn defaults(self) -> Config {
        let mut c = Config {
            role: self,
            ..Config::default()
        };
        if self == Role::SelGate {
            c.gate.listen = vec![SocketAddr::from(([0, 0, 0, 0], 7100))];
            c.gate.max_conn_per_ip = 10;
            c.gate.conn_rate_per_ip = 5;
            c.gate.idle_timeout_secs = 60;
            c.gate.max_packets_per_sec = 10;
            c.gate.max_packet_bytes = 256;
            c.server.dialect = Dialect::Delphi;
        }
        c
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown role {s:?} (expected login or selgate)"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.to_string().parse::<Role>().unwrap(), r);
        }
        assert!("dbserver".parse::<Role>().is_err());
    }

    #[test]
    fn selgate_defaults_are_stricter_than_a_logingate() {
        let (login, sel) = (Role::Login.defaults(), Role::SelGate.defaults());
        assert_eq!(login, Config::default());
        assert_eq!(sel.gate.listen[0].port(), 7100);
        assert!(sel.gate.max_conn_per_ip < login.gate.max_conn_per_ip);
        assert!(sel.gate.conn_rate_per_ip < login.gate.conn_rate_per_ip);
        assert!(sel.gate.max_packets_per_sec < login.gate.max_packets_per_sec);
        assert!(sel.gate.max_packet_bytes < login.gate.max_packet_bytes);
        assert!(sel.gate.idle_timeout_secs < login.gate.idle_timeout_secs);
    }
}
