//! Every metric the gate emits, with its `# HELP` text; the crate README
//! lists the same names (a test keeps the two in step).

use console::prometheus::{Described, Kind};

use crate::allowlist::{METRIC_ENTRIES as ALLOW_ENTRIES, METRIC_RELOADS as ALLOW_RELOADS};
use crate::attack::METRIC_ATTACK_MODE;
use crate::blocklist::{METRIC_ENTRIES, METRIC_RELOADS};
use crate::dispatch::{METRIC_BLOCKS, METRIC_KICKS};
use crate::link::metric as link;
use crate::punish::METRIC_PUNISHMENTS;
use crate::reload::METRIC_FAILURES as RELOAD_FAILURES;
use crate::role::ROLE_METRIC;

/// Console refusals for a wrong or missing token.
pub const UNAUTHORIZED: &str = "gate_admin_unauthorized_total";
/// Console connections closed at accept because 64 were open.
pub const CONNECTIONS_REFUSED: &str = "gate_admin_connections_refused_total";
/// State changes made through the console, by `action`.
pub const ACTIONS: &str = "gate_admin_actions_total";

use console::prometheus::described as d;

use Kind::{Counter, Gauge, Histogram};

/// The gate's metrics (netcore's with the `gate_` prefix included).
pub const GATE: &[Described] = &[
    d("gate_accepted_total", Counter, "", "Client sockets accepted, before admission."),
    d("gate_rejected_total", Counter, "reason", "Clients refused before a session, by reason: blocked, rate_limited, per_ip_limit, max_connections, not_allow_listed, source_not_allowed, proxy_*, socket_setup, shutdown, server_unavailable, server_busy."),
    d("gate_opened_total", Counter, "", "Client sessions opened (a %O frame went to the LoginSrv)."),
    d("gate_active", Gauge, "", "Live client sessions."),
    d("gate_closed_total", Counter, "reason", "Client sessions closed, by reason."),
    d("gate_bytes_in_total", Counter, "", "Bytes read from game clients."),
    d("gate_bytes_out_total", Counter, "", "Bytes written to game clients."),
    d("gate_queue_overflows_total", Counter, "", "Replies refused because a client's outbound queue was full (the client is closed as slow_reader)."),
    d(link::UP, Gauge, "backend", "1 while the LoginSrv link is connected and has answered."),
    d(link::CONNECTS, Counter, "backend", "Successful link connects (the first and every reconnect)."),
    d(link::DOWNS, Counter, "backend, reason", "Link losses, by reason."),
    d(link::FRAMES, Counter, "backend", "Frames written to the LoginSrv."),
    d(link::WRITES, Counter, "backend", "Socket writes on the link (frames per write = batching)."),
    d(link::BYTES_OUT, Counter, "backend", "Bytes written to the LoginSrv."),
    d(link::FRAMES_IN, Counter, "backend", "Frames received from the LoginSrv."),
    d(link::PARSE_ERRORS, Counter, "backend, reason", "LoginSrv frames that did not parse, by reason."),
    d(link::JUNK_BYTES, Counter, "backend", "Bytes skipped between LoginSrv frames."),
    d(link::REPLIES_DROPPED, Counter, "backend, reason", "LoginSrv replies and orders that found no session, by reason."),
    d(link::DISCARDED_BYTES, Counter, "backend", "Pending link bytes thrown away when the link dropped."),
    d(link::HEARTBEATS, Counter, "backend", "Heartbeats sent to the LoginSrv."),
    d(link::HEARTBEAT_RTT, Histogram, "backend", "Time from queueing a heartbeat to its reply."),
    d(link::EARLY_CLOSES, Counter, "backend", "Link connections the LoginSrv closed within a second, before any frame (wrong port, or this gate's address not allowed)."),
    d(link::SILENT, Counter, "backend", "Windows of server.silent_window_secs in which client messages went out on the link and no reply came back (wrong dialect?)."),
    d(link::SESSIONS, Gauge, "backend", "Client sessions open on the link."),
    d(METRIC_KICKS, Counter, "", "Kicks ordered by the LoginSrv."),
    d(METRIC_BLOCKS, Counter, "kind", "IP blocks ordered by the LoginSrv (temporary, permanent)."),
    d(METRIC_RELOADS, Counter, "outcome", "Block list file loads (ok, bad_line, unreadable)."),
    d(RELOAD_FAILURES, Counter, "", "Configuration reloads refused because the new file was invalid (the running configuration stayed)."),
    d(METRIC_ENTRIES, Gauge, "", "Entries in force from the block list file."),
    d(ALLOW_RELOADS, Counter, "outcome", "Allow list file loads (ok, bad_line, unreadable)."),
    d(ALLOW_ENTRIES, Gauge, "", "Entries in force from the allow list file."),
    d(METRIC_PUNISHMENTS, Counter, "offence,action", "Punishments applied, by offence and action."),
    d(METRIC_ATTACK_MODE, Gauge, "", "1 while attack mode is on, 0 otherwise."),
    d(ROLE_METRIC, Gauge, "role", "1, labelled with what the gate fronts: login (a LoginSrv) or selgate (a DBServer)."),
    d(UNAUTHORIZED, Counter, "", "Console requests refused for a wrong or missing token."),
    d(CONNECTIONS_REFUSED, Counter, "", "Console connections closed at accept (64 already open)."),
    d(ACTIONS, Counter, "action", "State changes made through the console (kick, block, unblock, reload, attack, allow, disallow)."),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        console::prometheus::check_names(GATE).unwrap_or_else(|name| panic!("{name}"));
    }

    #[test]
    fn readme_lists_every_metric() {
        let readme = include_str!("../../README.md");
        for m in GATE {
            let listed = readme.contains(&format!("`{}`", m.name))
                || readme.contains(&format!("`{}{{", m.name));
            assert!(listed, "README misses {}", m.name);
        }
    }
}
