//! Recognises an HTTP request line at the start of a game connection, so a CC flood or a
//! scanner is labelled `http_request` instead of a broken client's `forbidden_byte`.

/// How HTTP requests and responses start (methods with their space, and the version
/// token of a response or a proxy's reply).
const STARTS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"CONNECT ",
    b"PATCH ",
    b"HTTP/",
];

/// What the first bytes of a stream look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// An HTTP request line.
    Http,
    /// Too few bytes to tell, and they could start one (at most 7 bytes are waited for).
    Undecided,
    /// Not HTTP.
    Other,
}

/// Classifies the first bytes of a stream.
pub fn probe(start: &[u8]) -> Probe {
    let mut undecided = false;
    for s in STARTS {
        if start.starts_with(s) {
            return Probe::Http;
        }
        undecided |= start.len() < s.len() && s.starts_with(start);
    }
    if undecided && !start.is_empty() {
        Probe::Undecided
    } else {
        Probe::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_and_responses_are_http() {
        for s in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"POST /login",
            b"HTTP/1.0 200 OK",
            b"CONNECT x:443",
        ] {
            assert_eq!(probe(s), Probe::Http, "{s:?}");
        }
    }

    #[test]
    fn prefixes_wait_and_the_rest_is_not_http() {
        assert_eq!(probe(b"GE"), Probe::Undecided);
        assert_eq!(probe(b"POST"), Probe::Undecided, "needs the space");
        assert_eq!(probe(b"GET/"), Probe::Other);
        assert_eq!(probe(b"#1<<<<"), Probe::Other);
        assert_eq!(probe(b"\x00\x01"), Probe::Other);
        assert_eq!(probe(b""), Probe::Other);
        assert_eq!(probe(b"get / "), Probe::Other, "methods are case-sensitive");
    }
}
