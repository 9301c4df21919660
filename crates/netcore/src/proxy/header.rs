//! PROXY protocol headers (HAProxy's `proxy-protocol.txt`, v1 text and v2 binary):
//! recognising and decoding what a front sent, and writing one as a front would.
//!
//! Parsing is separate from I/O: [`decode`] looks at the bytes received so far and says
//! whether they are a whole header, the start of one, not a header at all, or an
//! unacceptable one. The field parsing itself is the `ppp` crate's; this module adds
//! what a stream receiver needs around it: a verdict on every prefix (so a header split
//! across reads at any byte is neither accepted early nor refused early), the bounds
//! (107 bytes for v1, [`V2_MAX_PAYLOAD`] for v2), and the mapping to a client address.

use std::io;
use std::net::{IpAddr, SocketAddr};

use ppp::v2::{self, Command, Protocol};
use ppp::{v1, PartialResult};

/// Longest v1 header, `\r\n` included (the protocol's own limit).
pub const V1_MAX_BYTES: usize = 107;
/// Fixed part of a v2 header: signature, version/command, family/protocol, length.
pub const V2_PREFIX_BYTES: usize = 16;
/// Most address and TLV bytes accepted after the v2 prefix. The longest address block
/// (AF_UNIX) is 216 bytes; the rest leaves room for the TLVs fronts add (ALPN, SNI,
/// unique id, cloud endpoint ids). A longer header is refused, so waiting for one can
/// never cost more than this.
pub const V2_MAX_PAYLOAD: usize = 512;
/// Longest header of either version: the receive window while a header is pending.
pub const MAX_HEADER_BYTES: usize = V2_PREFIX_BYTES + V2_MAX_PAYLOAD;

/// What starts a v1 header.
const V1_SIGNATURE: &[u8] = b"PROXY ";
/// What starts a v2 header.
const V2_SIGNATURE: &[u8] = v2::PROTOCOL_PREFIX;

/// Which PROXY protocol versions a trusted front may send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// No PROXY protocol: every peer is judged by its own address.
    #[default]
    Off,
    /// Text headers only (`PROXY TCP4 …\r\n`).
    V1,
    /// Binary headers only.
    V2,
    /// Either, recognised per connection by its first bytes.
    Any,
}

impl ProxyProtocol {
    /// The name used in configuration files: `off`, `v1`, `v2`, `any`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyProtocol::Off => "off",
            ProxyProtocol::V1 => "v1",
            ProxyProtocol::V2 => "v2",
            ProxyProtocol::Any => "any",
        }
    }

    fn accepts(self, version: Version) -> bool {
        matches!(
            (self, version),
            (ProxyProtocol::Any, _)
                | (ProxyProtocol::V1, Version::V1)
                | (ProxyProtocol::V2, Version::V2)
        )
    }
}

impl std::fmt::Display for ProxyProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ProxyProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "off" => Ok(ProxyProtocol::Off),
            "v1" => Ok(ProxyProtocol::V1),
            "v2" => Ok(ProxyProtocol::V2),
            "any" => Ok(ProxyProtocol::Any),
            other => Err(format!(
                "unknown PROXY protocol mode {other:?} (expected off, v1, v2 or any)"
            )),
        }
    }
}

/// One header version, for writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// Text.
    V1,
    /// Binary.
    V2,
}

impl std::str::FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "v1" => Ok(Version::V1),
            "v2" => Ok(Version::V2),
            other => Err(format!(
                "unknown PROXY protocol version {other:?} (expected v1 or v2)"
            )),
        }
    }
}

/// Whom a complete header speaks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The front relays this client (IPv4-mapped IPv6 canonicalised to IPv4).
    Client(SocketAddr),
    /// The front's own connection, relaying nobody: v2 `LOCAL` (health checks), v1
    /// `UNKNOWN` (HAProxy's v1 health checks) or v2 `UNSPEC`.
    Local,
}

/// The verdict on the bytes received so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Every byte so far is part of a header that is not complete yet.
    Incomplete,
    /// A whole header of `len` bytes; anything after it is the client's.
    Complete {
        /// Header length in bytes.
        len: usize,
        /// Whom it speaks for.
        source: Source,
        /// The address the client connected to, when the header names one (canonical).
        destination: Option<SocketAddr>,
    },
    /// The bytes do not begin with a PROXY protocol signature.
    Missing,
    /// They do, but the header is not acceptable; the text says why.
    Invalid(&'static str),
}

/// How far `input` agrees with `signature`.
enum Signature {
    /// Starts with it.
    Present,
    /// Is a proper prefix of it: the next bytes decide.
    Undecided,
    /// Differs from it.
    Absent,
}

fn signature(input: &[u8], signature: &[u8]) -> Signature {
    let n = input.len().min(signature.len());
    if input[..n] != signature[..n] {
        Signature::Absent
    } else if n < signature.len() {
        Signature::Undecided
    } else {
        Signature::Present
    }
}

/// Judges the first bytes of a connection against the versions `accept` allows.
///
/// Total on any input: never panics, and never returns `Incomplete` once `input` holds
/// [`MAX_HEADER_BYTES`] bytes (a header that long is refused instead).
pub fn decode(accept: ProxyProtocol, input: &[u8]) -> Decoded {
    if input.is_empty() {
        return Decoded::Incomplete;
    }
    match (
        signature(input, V1_SIGNATURE),
        signature(input, V2_SIGNATURE),
    ) {
        (Signature::Absent, Signature::Absent) => Decoded::Missing,
        _ if accept == ProxyProtocol::Off => Decoded::Missing,
        (Signature::Present, _) if accept.accepts(Version::V1) => decode_v1(input),
        (Signature::Present, _) => Decoded::Invalid("v1 header where only v2 is accepted"),
        (_, Signature::Present) if accept.accepts(Version::V2) => decode_v2(input),
        (_, Signature::Present) => Decoded::Invalid("v2 header where only v1 is accepted"),
        _ => Decoded::Incomplete,
    }
}

/// A v1 line: printable ASCII up to the first CR, which must be followed by LF, at most
/// `V1_MAX_BYTES` in all; then `ppp` parses the fields of the complete line.
fn decode_v1(input: &[u8]) -> Decoded {
    for (i, &byte) in input.iter().enumerate() {
        match byte {
            b'\r' => {
                let len = i + 2;
                if len > V1_MAX_BYTES {
                    return Decoded::Invalid("v1 header longer than 107 bytes");
                }
                return match input.get(i + 1) {
                    None => Decoded::Incomplete,
                    Some(b'\n') => v1_fields(&input[..len]),
                    Some(_) => Decoded::Invalid("v1 header: CR not followed by LF"),
                };
            }
            0x20..=0x7e => {}
            _ => return Decoded::Invalid("v1 header: byte that is not printable ASCII"),
        }
        if i + 1 >= V1_MAX_BYTES {
            return Decoded::Invalid("v1 header longer than 107 bytes");
        }
    }
    Decoded::Incomplete
}

fn v1_fields(line: &[u8]) -> Decoded {
    let header = match v1::Header::try_from(line) {
        Ok(header) => header,
        Err(_) => return Decoded::Invalid("v1 header: malformed fields"),
    };
    let (source, destination) = match header.addresses {
        v1::Addresses::Tcp4(a) => (
            Source::Client(client(a.source_address.into(), a.source_port)),
            Some(client(a.destination_address.into(), a.destination_port)),
        ),
        v1::Addresses::Tcp6(a) => (
            Source::Client(client(a.source_address.into(), a.source_port)),
            Some(client(a.destination_address.into(), a.destination_port)),
        ),
        v1::Addresses::Unknown => (Source::Local, None),
    };
    Decoded::Complete {
        len: line.len(),
        source,
        destination,
    }
}

/// A v2 header: the length field is checked against `V2_MAX_PAYLOAD` as soon as the
/// prefix is in, before waiting for the rest; `ppp` checks version, command, family and
/// that the length holds the addresses. TLVs are never looked at.
fn decode_v2(input: &[u8]) -> Decoded {
    if input.len() < V2_PREFIX_BYTES {
        return Decoded::Incomplete;
    }
    let payload = usize::from(u16::from_be_bytes([input[14], input[15]]));
    if payload > V2_MAX_PAYLOAD {
        return Decoded::Invalid("v2 header longer than the accepted bound");
    }
    let header = match v2::Header::try_from(input) {
        Ok(header) => header,
        Err(e) if e.is_incomplete() => return Decoded::Incomplete,
        Err(e) => return Decoded::Invalid(v2_error(&e)),
    };
    let len = V2_PREFIX_BYTES + payload;
    let local = Decoded::Complete {
        len,
        source: Source::Local,
        destination: None,
    };
    if header.command == Command::Local {
        return local;
    }
    let (source, destination) = match header.addresses {
        v2::Addresses::IPv4(a) => (
            client(a.source_address.into(), a.source_port),
            client(a.destination_address.into(), a.destination_port),
        ),
        v2::Addresses::IPv6(a) => (
            client(a.source_address.into(), a.source_port),
            client(a.destination_address.into(), a.destination_port),
        ),
        v2::Addresses::Unspecified => return local,
        v2::Addresses::Unix(_) => {
            return Decoded::Invalid("v2 header: AF_UNIX source has no IP address")
        }
    };
    if header.protocol == Protocol::Datagram {
        return Decoded::Invalid("v2 header: datagram source on a stream connection");
    }
    Decoded::Complete {
        len,
        source: Source::Client(source),
        destination: Some(destination),
    }
}

fn v2_error(e: &v2::ParseError) -> &'static str {
    match e {
        v2::ParseError::Version(_) => "v2 header: unknown version",
        v2::ParseError::Command(_) => "v2 header: unknown command",
        v2::ParseError::AddressFamily(_) => "v2 header: unknown address family",
        v2::ParseError::Protocol(_) => "v2 header: unknown transport protocol",
        v2::ParseError::InvalidAddresses(..) => "v2 header: length too short for the addresses",
        _ => "v2 header: malformed",
    }
}

fn client(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip.to_canonical(), port)
}

/// The header a front sends for a client at `source` that connected to `destination`.
/// Mixed families are written as IPv6 (IPv4-mapped), since a header names one family.
pub fn encode(
    version: Version,
    source: SocketAddr,
    destination: SocketAddr,
) -> io::Result<Vec<u8>> {
    let (source, destination) = same_family(source, destination);
    match version {
        Version::V1 => Ok(v1::Addresses::from((source, destination))
            .to_string()
            .into_bytes()),
        Version::V2 => v2::Builder::with_addresses(
            v2::Version::Two | Command::Proxy,
            Protocol::Stream,
            (source, destination),
        )
        .build(),
    }
}

/// A v2 `LOCAL` header: the front's own connection (what HAProxy's health checks send).
pub fn encode_local() -> io::Result<Vec<u8>> {
    v2::Builder::with_addresses(
        v2::Version::Two | Command::Local,
        Protocol::Unspecified,
        v2::Addresses::Unspecified,
    )
    .build()
}

fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v6 = |s: SocketAddr| match s.ip() {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), s.port()),
        IpAddr::V6(_) => s,
    };
    if a.is_ipv4() == b.is_ipv4() {
        (a, b)
    } else {
        (v6(a), v6(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    fn complete(input: &[u8], accept: ProxyProtocol) -> (usize, Source) {
        match decode(accept, input) {
            Decoded::Complete { len, source, .. } => (len, source),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    /// Every strict prefix waits for more; the whole is complete; bytes after it are not
    /// part of it.
    fn assert_split_anywhere(header: &[u8], accept: ProxyProtocol) -> Source {
        for cut in 0..header.len() {
            assert_eq!(
                decode(accept, &header[..cut]),
                Decoded::Incomplete,
                "prefix of {cut} bytes of {header:?}"
            );
        }
        let (len, source) = complete(header, accept);
        assert_eq!(len, header.len());
        let mut with_data = header.to_vec();
        with_data.extend_from_slice(b"#1<<<<<I@C<<<<<<<<!");
        assert_eq!(complete(&with_data, accept), (header.len(), source));
        source
    }

    #[test]
    fn v1_forms() {
        let cases: [(&[u8], Source); 5] = [
            (
                b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 7000\r\n",
                Source::Client(addr("192.0.2.7:40000")),
            ),
            (
                b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 7000\r\n",
                Source::Client(addr("[2001:db8::7]:40000")),
            ),
            (
                b"PROXY TCP6 ::ffff:192.0.2.7 ::ffff:10.0.0.1 1 7000\r\n",
                Source::Client(addr("192.0.2.7:1")),
            ),
            (b"PROXY UNKNOWN\r\n", Source::Local),
            (
                b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
                Source::Local,
            ),
        ];
        for (header, source) in cases {
            assert_eq!(assert_split_anywhere(header, ProxyProtocol::V1), source);
            assert_eq!(assert_split_anywhere(header, ProxyProtocol::Any), source);
        }
    }

    #[test]
    fn v1_longest_line_is_accepted_and_one_more_byte_is_not() {
        let longest = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(longest.len(), 104);
        assert_split_anywhere(longest, ProxyProtocol::V1);
        let mut unknown = b"PROXY UNKNOWN ".to_vec();
        unknown.resize(V1_MAX_BYTES - 2, b'x');
        unknown.extend_from_slice(b"\r\n");
        assert_eq!(complete(&unknown, ProxyProtocol::V1).0, V1_MAX_BYTES);
        let mut over = b"PROXY UNKNOWN ".to_vec();
        over.resize(V1_MAX_BYTES - 1, b'x');
        over.extend_from_slice(b"\r\n");
        assert!(matches!(
            decode(ProxyProtocol::V1, &over),
            Decoded::Invalid(_)
        ));
        // No CR at all: refused once the bound is reached, not before.
        let endless = vec![b'x'; 200];
        let mut line = b"PROXY ".to_vec();
        line.extend_from_slice(&endless);
        assert_eq!(
            decode(ProxyProtocol::V1, &line[..V1_MAX_BYTES - 1]),
            Decoded::Incomplete
        );
        assert!(matches!(
            decode(ProxyProtocol::V1, &line[..V1_MAX_BYTES]),
            Decoded::Invalid(_)
        ));
    }

    #[test]
    fn v1_malformed_lines_are_invalid() {
        let bad: [&[u8]; 11] = [
            b"PROXY TCP4 192.0.2.7 10.0.0.1 40000\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 040000 7000\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 7000\r\n",
            b"PROXY TCP4 2001:db8::7 10.0.0.1 1 7000\r\n",
            b"PROXY TCP6 192.0.2.7 10.0.0.1 1 7000\r\n",
            b"PROXY TCP5 192.0.2.7 10.0.0.1 1 7000\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 7000 extra\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 7000\rX",
            b"PROXY TCP4 192.0.2.7\n",
            b"PROXY TCP4 192.0.2.7\x00",
            b"PROXY \r\n",
        ];
        for line in bad {
            assert!(
                matches!(decode(ProxyProtocol::Any, line), Decoded::Invalid(_)),
                "{:?} -> {:?}",
                String::from_utf8_lossy(line),
                decode(ProxyProtocol::Any, line)
            );
        }
    }

    fn v2(version_command: u8, family: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(version_command);
        h.push(family);
        h.extend_from_slice(&u16::try_from(payload.len()).expect("u16").to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    const V4_BLOCK: [u8; 12] = [192, 0, 2, 7, 10, 0, 0, 1, 0x9c, 0x40, 0x1b, 0x58];

    #[test]
    fn v2_forms() {
        let mut v6 = [0u8; 36];
        v6[..16].copy_from_slice(
            &"2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .expect("ip")
                .octets(),
        );
        v6[32..34].copy_from_slice(&40000u16.to_be_bytes());
        let mut mapped = v6;
        mapped[..16].copy_from_slice(
            &std::net::Ipv4Addr::new(192, 0, 2, 7)
                .to_ipv6_mapped()
                .octets(),
        );
        // TLVs (ALPN "h2", a NOOP, one the receiver never heard of) are skipped.
        let mut with_tlvs = V4_BLOCK.to_vec();
        with_tlvs.extend_from_slice(&[0x01, 0, 2, b'h', b'2', 0x04, 0, 0, 0xEE, 0, 3, 1, 2, 3]);
        let cases: [(Vec<u8>, Source); 7] = [
            (
                v2(0x21, 0x11, &V4_BLOCK),
                Source::Client(addr("192.0.2.7:40000")),
            ),
            (
                v2(0x21, 0x21, &v6),
                Source::Client(addr("[2001:db8::7]:40000")),
            ),
            (
                v2(0x21, 0x21, &mapped),
                Source::Client(addr("192.0.2.7:40000")),
            ),
            (
                v2(0x21, 0x11, &with_tlvs),
                Source::Client(addr("192.0.2.7:40000")),
            ),
            (v2(0x20, 0x00, &[]), Source::Local),
            (v2(0x20, 0x11, &V4_BLOCK), Source::Local),
            (v2(0x21, 0x00, &[]), Source::Local),
        ];
        for (header, source) in cases {
            assert_eq!(assert_split_anywhere(&header, ProxyProtocol::V2), source);
            assert_eq!(assert_split_anywhere(&header, ProxyProtocol::Any), source);
        }
        assert_eq!(encode_local().expect("local"), v2(0x20, 0x00, &[]));
    }

    #[test]
    fn v2_bad_headers_are_invalid() {
        let bad = [
            ("version 1", v2(0x11, 0x11, &V4_BLOCK)),
            ("unknown command", v2(0x22, 0x11, &V4_BLOCK)),
            ("unknown family", v2(0x21, 0x41, &V4_BLOCK)),
            ("unknown transport", v2(0x21, 0x13, &V4_BLOCK)),
            ("datagram", v2(0x21, 0x12, &V4_BLOCK)),
            ("length short of IPv4", v2(0x21, 0x11, &V4_BLOCK[..4])),
            ("length short of IPv6", v2(0x21, 0x21, &V4_BLOCK)),
            ("unix", v2(0x21, 0x31, &[0; 216])),
        ];
        for (what, header) in bad {
            assert!(
                matches!(decode(ProxyProtocol::V2, &header), Decoded::Invalid(_)),
                "{what}: {:?}",
                decode(ProxyProtocol::V2, &header)
            );
        }
    }

    #[test]
    fn v2_length_is_bounded_before_the_payload_arrives() {
        let at_bound = v2(0x21, 0x11, &[0; V2_MAX_PAYLOAD]);
        assert_eq!(complete(&at_bound, ProxyProtocol::V2).0, MAX_HEADER_BYTES);
        let over = v2(0x21, 0x11, &[0; V2_MAX_PAYLOAD + 1]);
        assert!(matches!(
            decode(ProxyProtocol::V2, &over[..V2_PREFIX_BYTES]),
            Decoded::Invalid(_)
        ));
        let huge = v2(0x21, 0x11, &[0; 65535]);
        assert!(matches!(
            decode(ProxyProtocol::V2, &huge),
            Decoded::Invalid(_)
        ));
    }

    #[test]
    fn wrong_signatures_and_modes() {
        for input in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"#1<<<<<I@C<<<<<<<<!",
            b"proxy ",
            b"PROXYX",
            b"\r\n\r\n\0\r\nQUIT\r",
        ] {
            assert_eq!(
                decode(ProxyProtocol::Any, input),
                Decoded::Missing,
                "{input:?}"
            );
        }
        let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 7000\r\n";
        let v2 = v2(0x21, 0x11, &V4_BLOCK);
        assert!(matches!(decode(ProxyProtocol::V2, v1), Decoded::Invalid(_)));
        assert!(matches!(
            decode(ProxyProtocol::V1, &v2),
            Decoded::Invalid(_)
        ));
        assert_eq!(decode(ProxyProtocol::Off, v1), Decoded::Missing);
        assert_eq!(decode(ProxyProtocol::Off, &v2), Decoded::Missing);
        assert_eq!(decode(ProxyProtocol::V1, b"PRO"), Decoded::Incomplete);
        assert_eq!(decode(ProxyProtocol::V2, b"\r\n\r\n"), Decoded::Incomplete);
    }

    #[test]
    fn encoded_headers_decode_to_their_source() {
        let pairs = [
            (addr("192.0.2.7:40000"), addr("10.0.0.1:7000")),
            (addr("[2001:db8::7]:1"), addr("[2001:db8::1]:7000")),
            (addr("192.0.2.7:2"), addr("[2001:db8::1]:7000")),
            (addr("[2001:db8::7]:3"), addr("10.0.0.1:7000")),
        ];
        for (source, destination) in pairs {
            for version in [Version::V1, Version::V2] {
                let header = encode(version, source, destination).expect("encode");
                assert_eq!(
                    assert_split_anywhere(&header, ProxyProtocol::Any),
                    Source::Client(source),
                    "{version:?} {source} -> {destination}"
                );
            }
        }
    }

    fn any_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        ]
    }

    fn canonical(a: SocketAddr) -> SocketAddr {
        SocketAddr::new(a.ip().to_canonical(), a.port())
    }

    proptest! {
        #[test]
        fn any_bytes_get_a_verdict_without_panicking(
            input in prop::collection::vec(any::<u8>(), 0..700),
            sig in 0u8..3,
        ) {
            let mut bytes = match sig {
                0 => Vec::new(),
                1 => V1_SIGNATURE.to_vec(),
                _ => V2_SIGNATURE.to_vec(),
            };
            bytes.extend_from_slice(&input);
            for accept in [ProxyProtocol::V1, ProxyProtocol::V2, ProxyProtocol::Any] {
                match decode(accept, &bytes) {
                    Decoded::Incomplete => prop_assert!(bytes.len() < MAX_HEADER_BYTES),
                    Decoded::Complete { len, .. } => prop_assert!(len <= bytes.len() && len <= MAX_HEADER_BYTES),
                    Decoded::Missing | Decoded::Invalid(_) => {}
                }
            }
        }

        /// A verdict other than `Incomplete` never changes when more bytes arrive.
        #[test]
        fn verdicts_are_final(
            input in prop::collection::vec(any::<u8>(), 0..200),
            sig in 0u8..3,
            cut in 0usize..220,
        ) {
            let mut bytes = match sig {
                0 => b"PROXY TCP4 1.2.3.4 ".to_vec(),
                1 => V1_SIGNATURE.to_vec(),
                _ => V2_SIGNATURE.to_vec(),
            };
            bytes.extend_from_slice(&input);
            let cut = cut.min(bytes.len());
            let early = decode(ProxyProtocol::Any, &bytes[..cut]);
            if early != Decoded::Incomplete {
                prop_assert_eq!(decode(ProxyProtocol::Any, &bytes), early);
            }
        }

        /// Any header a front writes, followed by client bytes, split at any byte.
        #[test]
        fn written_headers_round_trip(
            source in any_addr(),
            destination in any_addr(),
            v2 in any::<bool>(),
            tail in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let version = if v2 { Version::V2 } else { Version::V1 };
            let header = encode(version, source, destination).expect("encode");
            let mut bytes = header.clone();
            bytes.extend_from_slice(&tail);
            for cut in 0..header.len() {
                prop_assert_eq!(decode(ProxyProtocol::Any, &bytes[..cut]), Decoded::Incomplete);
            }
            let (source, destination) = same_family(source, destination);
            prop_assert_eq!(
                decode(ProxyProtocol::Any, &bytes),
                Decoded::Complete {
                    len: header.len(),
                    source: Source::Client(canonical(source)),
                    destination: Some(canonical(destination)),
                }
            );
        }

        /// v2 TLV payloads of any content and size up to the bound are skipped.
        #[test]
        fn v2_tlv_bytes_are_skipped(tlvs in prop::collection::vec(any::<u8>(), 0..=(V2_MAX_PAYLOAD - 12))) {
            let mut payload = V4_BLOCK.to_vec();
            payload.extend_from_slice(&tlvs);
            let header = v2(0x21, 0x11, &payload);
            prop_assert_eq!(
                decode(ProxyProtocol::V2, &header),
                Decoded::Complete {
                    len: header.len(),
                    source: Source::Client(addr("192.0.2.7:40000")),
                    destination: Some(addr("10.0.0.1:7000")),
                }
            );
        }
    }
}
