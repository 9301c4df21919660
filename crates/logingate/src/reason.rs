//! Why clients leave: the gate's own close and refusal labels.
//!
//! netcore names its own closes (`peer_closed`, `idle_timeout`, …) and refusals
//! (`blocked`, `rate_limited`, …) and counts every one, the gate's included
//! ([`LABELS`]); the client framer names its errors (`forbidden_byte`, …).

/// Client refused because the LoginSrv link is down.
pub const SERVER_UNAVAILABLE: &str = "server_unavailable";
/// More than `max_packets_per_sec` messages in a second.
pub const FLOODING: &str = "flooding";
/// The link's pending buffer is full (a close, or a refusal on open).
pub const SERVER_BUSY: &str = "server_busy";
/// The link the session was opened on dropped.
pub const SERVER_LOST: &str = "server_lost";
/// An HTTP request line (`GET `, `POST `, `HTTP/`…) on the game port: a CC flood
/// or a scanner, not a broken client.
pub const HTTP_REQUEST: &str = "http_request";
/// Over `new_accounts_per_ip_per_hour` or `password_ops_per_ip_per_min`.
pub const NEW_ACCOUNTS: &str = "new_accounts";

/// Every label the gate itself (or its client framer) closes or refuses a session
/// with: netcore counts each in a fixed slot ([`netcore::Handler::LABELS`]).
pub const LABELS: [&str; 9] = [
    FLOODING,
    SERVER_BUSY,
    SERVER_LOST,
    SERVER_UNAVAILABLE,
    HTTP_REQUEST,
    NEW_ACCOUNTS,
    "forbidden_byte",
    "oversize",
    "short_packet",
];

#[cfg(test)]
mod tests {
    use super::*;
    use mir2_proto::ClientFrameError;

    #[test]
    fn every_label_the_gate_produces_is_listed() {
        let produced = [
            ClientFrameError::ForbiddenByte { offset: 0, byte: 0 }.reason(),
            ClientFrameError::TooLong { max: 0 }.reason(),
            ClientFrameError::TooShort { len: 0 }.reason(),
            FLOODING,
            SERVER_BUSY,
            SERVER_LOST,
            SERVER_UNAVAILABLE,
            HTTP_REQUEST,
            NEW_ACCOUNTS,
        ];
        for label in produced {
            assert!(LABELS.contains(&label), "{label} missing from LABELS");
        }
        assert_eq!(produced.len(), LABELS.len());
    }
}
