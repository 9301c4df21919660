//! The `[admin]` table's two keys, checked the same way in both programs.

use std::net::SocketAddr;

/// What is wrong with an `[admin]` key; the caller prefixes its table name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `listen` or `token`.
    pub key: &'static str,
    /// Why it was refused.
    pub problem: String,
}

/// The console address to bind, `None` when `listen` is empty (console off).
///
/// A console reachable from other hosts changes state (kicks, blocks) only
/// with a token, so a non-loopback `listen` without one is refused rather
/// than left open.
pub fn check(listen: &str, token: &str) -> Result<Option<SocketAddr>, Problem> {
    let listen = listen.trim();
    if listen.is_empty() {
        return Ok(None);
    }
    let addr: SocketAddr = listen.parse().map_err(|_| Problem {
        key: "listen",
        problem: format!("{listen:?} is not an IP:PORT address (\"\" turns the console off)"),
    })?;
    if token.chars().any(char::is_whitespace) {
        return Err(Problem {
            key: "token",
            problem: "must not contain whitespace (it is sent as `Authorization: Bearer TOKEN`)"
                .to_owned(),
        });
    }
    if token.is_empty() && !addr.ip().to_canonical().is_loopback() {
        return Err(Problem {
            key: "token",
            problem: format!(
                "is required when the console listens on {addr}, which is not a loopback address"
            ),
        });
    }
    Ok(Some(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_needs_no_token_other_addresses_do() {
        assert_eq!(check("", ""), Ok(None));
        assert!(check("127.0.0.1:0", "").is_ok_and(|a| a.is_some()));
        assert!(check("[::1]:7001", "").is_ok());
        assert!(check("[::ffff:127.0.0.1]:7001", "").is_ok());
        assert_eq!(check("0.0.0.0:7001", "").map_err(|p| p.key), Err("token"));
        assert_eq!(check("[::]:7001", "").map_err(|p| p.key), Err("token"));
        assert!(check("0.0.0.0:7001", "s3cret").is_ok());
        assert_eq!(
            check("0.0.0.0:7001", "a b").map_err(|p| p.key),
            Err("token")
        );
        assert_eq!(
            check("localhost:7001", "").map_err(|p| p.key),
            Err("listen")
        );
    }
}
