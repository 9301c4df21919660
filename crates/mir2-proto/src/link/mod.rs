//! The `%…$` text link between a gate and the LoginSrv (PROTOCOL.md §4, §8).
//!
//! Every writer and parser takes the build's [`Frames`] table: a [`Dialect`] (a
//! preset, `impl AsRef<Frames>`) or a table of its own (`&Frames`). The table is
//! read per frame, so a custom table costs what a preset does.

mod frames;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::ByteDisplay;
use crate::delimited::{DelimitedFramer, FrameTooLong};

pub use frames::{BlockLetter, FrameOverrides, Frames, FramesError};

/// Which family of servers the link talks to: the name of a [`Frames`] preset.
/// There is no default: each application chooses its own (the gate's config,
/// the LoginSrv's fallback before a gate's first frame shows its dialect).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Dialect {
    /// The Wemade C++ servers: `%O<id>/<ip>$`, replies followed by one 0x00.
    Wemade,
    /// DelphiMir and its ports: `%O<id>/<ip>/<gateIp>$`.
    Delphi,
    /// HappyM2: `%N…`, `%C…`, `%D…`, plus block frames.
    HappyM2,
    /// The Delphi LoginSrv build with `%L…` (gate IP included), `%D…`, `%X…`.
    Ldx,
}

impl Dialect {
    /// Every dialect.
    pub const ALL: [Dialect; 4] = [
        Dialect::Wemade,
        Dialect::Delphi,
        Dialect::HappyM2,
        Dialect::Ldx,
    ];

    /// The config/CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Wemade => "wemade",
            Dialect::Delphi => "delphi",
            Dialect::HappyM2 => "happym2",
            Dialect::Ldx => "ldx",
        }
    }

    /// This build's frame table.
    pub fn frames(self) -> &'static Frames {
        match self {
            Dialect::Wemade => &Frames::WEMADE,
            Dialect::Delphi => &Frames::DELPHI,
            Dialect::HappyM2 => &Frames::HAPPYM2,
            Dialect::Ldx => &Frames::LDX,
        }
    }

    /// A compact code, for keeping a dialect in an atomic (`AtomicU8`).
    pub fn to_u8(self) -> u8 {
        match self {
            Dialect::Wemade => 0,
            Dialect::Delphi => 1,
            Dialect::HappyM2 => 2,
            Dialect::Ldx => 3,
        }
    }

    /// The inverse of [`Dialect::to_u8`]; `None` for a code no dialect has.
    pub fn from_u8(code: u8) -> Option<Dialect> {
        Dialect::ALL.get(usize::from(code)).copied()
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dialect name that is not one of `wemade`, `delphi`, `happym2`, `ldx`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown link dialect {0:?} (expected wemade, delphi, happym2 or ldx)")]
pub struct UnknownDialect(pub String);

impl FromStr for Dialect {
    type Err = UnknownDialect;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dialect::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownDialect(s.to_owned()))
    }
}

/// A frame the gate sends to the LoginSrv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateFrame {
    /// A client connected. `gate_ip` is absent in tables without it (Wemade).
    Open {
        id: u32,
        client_ip: IpAddr,
        gate_ip: Option<IpAddr>,
    },
    /// A client disconnected.
    Close { id: u32 },
    /// Bytes from a client (whole `#…!` messages).
    Data { id: u32, data: Bytes },
    /// Keep-alive, `%--$` in all dialects.
    Heartbeat,
}

/// A frame the LoginSrv sends to the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFrame {
    /// Bytes for one client.
    Data { id: u32, data: Bytes },
    /// Answer to a heartbeat (`%++$` or any unlisted `%+x…$`).
    HeartbeatReply,
    /// Close this client.
    Kick { id: u32 },
    /// Close this client and block its IP (tables with `block_frames`).
    Block { id: u32, permanent: bool },
}

/// Why a session id in a frame is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// No digits at all.
    #[error("empty session id")]
    Empty,
    /// More than 10 digits.
    #[error("session id longer than 10 digits")]
    TooManyDigits,
    /// A byte that is not a decimal digit.
    #[error("session id contains {}", ByteDisplay(*.0))]
    NotDigit(u8),
    /// Does not fit in a u32.
    #[error("session id does not fit in 32 bits")]
    Overflow,
}

/// Why link bytes or a link frame were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// A frame longer than the configured maximum: fatal for the stream.
    #[error("link frame longer than {max} bytes")]
    TooLong { max: usize },
    /// A frame whose shape is wrong (missing `/`, empty, …).
    #[error("malformed link frame: {reason}")]
    Malformed { reason: &'static str },
    /// The first byte names no known frame.
    #[error("unknown link frame command {}", ByteDisplay(*command))]
    UnknownCommand { command: u8 },
    /// The session id is not a valid decimal u32.
    #[error("bad session id: {0}")]
    BadId(IdError),
    /// An IP address field does not parse.
    #[error("bad IP address in link frame")]
    BadIp,
}

impl LinkError {
    /// Stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            LinkError::TooLong { .. } => "oversize",
            LinkError::Malformed { .. } => "malformed",
            LinkError::UnknownCommand { .. } => "unknown_command",
            LinkError::BadId(_) => "bad_id",
            LinkError::BadIp => "bad_ip",
        }
    }

    /// True when the stream cannot continue after this error.
    pub fn is_fatal(&self) -> bool {
        matches!(self, LinkError::TooLong { .. })
    }
}

// ---------------------------------------------------------------- writing

/// Appends `n` in decimal without allocating.
fn put_decimal(dst: &mut BytesMut, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    dst.put_slice(&digits[i..]);
}

/// Appends an IP address in its usual text form without allocating.
fn put_ip(dst: &mut BytesMut, ip: IpAddr) {
    use std::fmt::Write;
    // Writing into BytesMut cannot fail: it grows as needed.
    let _ = write!(dst, "{ip}");
}

/// `%<open><id>/<ip>$`, with `/<gateIp>` before the `$` when the table says so
/// (`%O7/1.2.3.4$` Wemade, `%O7/1.2.3.4/10.0.0.1$` Delphi, `%N…` HappyM2, `%L…` ldx).
pub fn write_open(
    f: impl AsRef<Frames>,
    dst: &mut BytesMut,
    id: u32,
    client_ip: IpAddr,
    gate_ip: IpAddr,
) {
    let f = f.as_ref();
    dst.put_slice(&[b'%', f.open]);
    put_decimal(dst, id);
    dst.put_u8(b'/');
    put_ip(dst, client_ip);
    if f.open_gate_ip {
        dst.put_u8(b'/');
        put_ip(dst, gate_ip);
    }
    dst.put_u8(b'$');
}

/// `%<close><id>$`: `%X7$`, or `%C7$` in HappyM2.
pub fn write_close(f: impl AsRef<Frames>, dst: &mut BytesMut, id: u32) {
    dst.put_slice(&[b'%', f.as_ref().close]);
    put_decimal(dst, id);
    dst.put_u8(b'$');
}

/// `%<data><id>/<data>$`: `%A…`, or `%D…` in HappyM2 and ldx. `data` must be validated
/// client bytes.
pub fn write_data(f: impl AsRef<Frames>, dst: &mut BytesMut, id: u32, data: &[u8]) {
    dst.reserve(data.len() + 14);
    dst.put_slice(&[b'%', f.as_ref().data]);
    put_decimal(dst, id);
    dst.put_u8(b'/');
    dst.put_slice(data);
    dst.put_u8(b'$');
}

/// `%--$` in every build.
pub fn write_heartbeat(_f: impl AsRef<Frames>, dst: &mut BytesMut) {
    dst.put_slice(b"%--$");
}

/// Writes any gate frame. An `Open` without `gate_ip` writes the unspecified address of the
/// client's family where the table needs one.
pub fn write_gate_frame(f: impl AsRef<Frames>, frame: &GateFrame, dst: &mut BytesMut) {
    let f = f.as_ref();
    match frame {
        GateFrame::Open {
            id,
            client_ip,
            gate_ip,
        } => {
            let unspecified = match client_ip {
                IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            };
            write_open(f, dst, *id, *client_ip, gate_ip.unwrap_or(unspecified));
        }
        GateFrame::Close { id } => write_close(f, dst, *id),
        GateFrame::Data { id, data } => write_data(f, dst, *id, data),
        GateFrame::Heartbeat => write_heartbeat(f, dst),
    }
}

/// `%<id>/<data>$`, followed by one 0x00 where the table says so (Wemade).
pub fn write_reply(f: impl AsRef<Frames>, dst: &mut BytesMut, id: u32, data: &[u8]) {
    dst.reserve(data.len() + 14);
    dst.put_u8(b'%');
    put_decimal(dst, id);
    dst.put_u8(b'/');
    dst.put_slice(data);
    dst.put_u8(b'$');
    if f.as_ref().nul_after_reply {
        dst.put_u8(0);
    }
}

/// `%++$`, followed by one 0x00 where the table says so (Wemade).
pub fn write_heartbeat_reply(f: impl AsRef<Frames>, dst: &mut BytesMut) {
    dst.put_slice(b"%++$");
    if f.as_ref().nul_after_reply {
        dst.put_u8(0);
    }
}

/// Writes any server frame. `Block` is written with the table's letters where its gates
/// act on blocks (`block_frames`); other gates get a `Kick`, the nearest thing they
/// understand (they would read `%+B…$` as a heartbeat reply).
pub fn write_server_frame(f: impl AsRef<Frames>, frame: &ServerFrame, dst: &mut BytesMut) {
    let f = f.as_ref();
    let (letter, id) = match *frame {
        ServerFrame::Data { id, ref data } => return write_reply(f, dst, id, data),
        ServerFrame::HeartbeatReply => return write_heartbeat_reply(f, dst),
        ServerFrame::Kick { id } => (b'-', id),
        ServerFrame::Block { id, permanent } if f.block_frames => {
            let temporary = f.temporary_block;
            let letter = if permanent {
                temporary.other()
            } else {
                temporary
            };
            (letter.byte(), id)
        }
        ServerFrame::Block { id, .. } => (b'-', id),
    };
    dst.put_slice(&[b'%', b'+', letter]);
    put_decimal(dst, id);
    dst.put_u8(b'$');
}

// ---------------------------------------------------------------- framing

/// Incremental `%…$` framer for either direction of the link.
///
/// Bytes before a `%` (the Wemade 0x00 after each frame, or junk) are skipped; a `%` inside
/// an unterminated frame restarts the frame there and the abandoned bytes count as junk.
#[derive(Debug, Clone)]
pub struct LinkFramer(DelimitedFramer);

impl LinkFramer {
    /// A framer accepting frames of at most `max_frame_bytes` (counting `%` and `$`; at least 2).
    pub fn new(max_frame_bytes: usize) -> Self {
        LinkFramer(DelimitedFramer::new(
            b'%',
            b'$',
            |b| b == 0,
            max_frame_bytes,
        ))
    }

    /// Non-zero bytes skipped so far (0x00 separators are expected and not counted).
    pub fn junk_skipped(&self) -> u64 {
        self.0.junk_skipped()
    }

    /// The body (between `%` and `$`) of the next whole frame, `Ok(None)` when more bytes are
    /// needed. `Err(TooLong)` is fatal for the stream.
    pub fn next_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, LinkError> {
        self.0
            .next_frame(buf)
            .map_err(|FrameTooLong { max }| LinkError::TooLong { max })
    }
}

// ---------------------------------------------------------------- parsing

/// Parses a decimal session id: 1..=10 digits, fits a u32.
pub fn parse_id(s: &[u8]) -> Result<u32, LinkError> {
    if s.is_empty() {
        return Err(LinkError::BadId(IdError::Empty));
    }
    if s.len() > 10 {
        return Err(LinkError::BadId(IdError::TooManyDigits));
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return Err(LinkError::BadId(IdError::NotDigit(b)));
        }
        n = n * 10 + u64::from(b - b'0');
    }
    u32::try_from(n).map_err(|_| LinkError::BadId(IdError::Overflow))
}

fn parse_ip(s: &[u8]) -> Result<IpAddr, LinkError> {
    // The longest IPv6 text form is 45 bytes; refuse more before parsing.
    if s.len() > 45 {
        return Err(LinkError::BadIp);
    }
    std::str::from_utf8(s)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or(LinkError::BadIp)
}

/// Splits `<id>/<rest>` into the id and the offset of `rest` in `s`.
fn id_and_rest(s: &[u8]) -> Result<(u32, usize), LinkError> {
    let slash = memchr::memchr(b'/', s).ok_or(LinkError::Malformed {
        reason: "missing '/' after session id",
    })?;
    Ok((parse_id(&s[..slash])?, slash + 1))
}

/// Parses a frame body (between `%` and `$`) sent by a LoginSrv; the table says which
/// block letter is temporary.
pub fn parse_server_frame(f: impl AsRef<Frames>, body: Bytes) -> Result<ServerFrame, LinkError> {
    match body.first() {
        None => Err(LinkError::Malformed {
            reason: "empty frame",
        }),
        Some(b'+') => match body.get(1) {
            Some(b'-') => Ok(ServerFrame::Kick {
                id: parse_id(&body[2..])?,
            }),
            Some(&letter @ (b'B' | b'T')) => Ok(ServerFrame::Block {
                id: parse_id(&body[2..])?,
                permanent: letter != f.as_ref().temporary_block.byte(),
            }),
            // The Delphi gates count every other `%+…$` as a heartbeat reply.
            _ => Ok(ServerFrame::HeartbeatReply),
        },
        Some(b) if b.is_ascii_digit() => {
            let (id, rest) = id_and_rest(&body)?;
            Ok(ServerFrame::Data {
                id,
                data: body.slice(rest..),
            })
        }
        Some(&command) => Err(LinkError::UnknownCommand { command }),
    }
}

/// The session id and addresses of an open frame's arguments (`<id>/<ip>[/<gateIp>]`).
fn parse_open(args: &[u8]) -> Result<(GateFrame, bool), LinkError> {
    let (id, rest) = id_and_rest(args)?;
    let ips = &args[rest..];
    let (client_ip, gate_ip) = match memchr::memchr(b'/', ips) {
        Some(slash) => (parse_ip(&ips[..slash])?, Some(parse_ip(&ips[slash + 1..])?)),
        None => (parse_ip(ips)?, None),
    };
    let frame = GateFrame::Open {
        id,
        client_ip,
        gate_ip,
    };
    Ok((frame, gate_ip.is_some()))
}

/// `<id>/<data>` of a data frame; `body` is the whole frame body, command included.
fn parse_data(body: &Bytes) -> Result<GateFrame, LinkError> {
    let (id, rest) = id_and_rest(&body[1..])?;
    Ok(GateFrame::Data {
        id,
        data: body.slice(1 + rest..),
    })
}

/// Parses a frame body (between `%` and `$`) sent by a gate writing the table `f`. An open
/// frame must carry the gate IP exactly when the table says so.
pub fn parse_gate_frame(f: impl AsRef<Frames>, body: Bytes) -> Result<GateFrame, LinkError> {
    let f = f.as_ref();
    let Some(&command) = body.first() else {
        return Err(LinkError::Malformed {
            reason: "empty frame",
        });
    };
    let args = &body[1..];
    if command == f.data {
        parse_data(&body)
    } else if command == f.open {
        let (frame, has_gate_ip) = parse_open(args)?;
        match (has_gate_ip, f.open_gate_ip) {
            (true, false) => Err(LinkError::Malformed {
                reason: "open frame with a gate IP this build does not send",
            }),
            (false, true) => Err(LinkError::Malformed {
                reason: "open frame without the gate IP",
            }),
            _ => Ok(frame),
        }
    } else if command == f.close {
        Ok(GateFrame::Close {
            id: parse_id(args)?,
        })
    } else if command == b'-' && args == b"-" {
        Ok(GateFrame::Heartbeat)
    } else {
        Err(LinkError::UnknownCommand { command })
    }
}

/// Parses a frame body (between `%` and `$`) sent by a gate of any preset; also returns the
/// dialect when the frame reveals it: `O` with one IP (Wemade) or two (Delphi), `N` and `C`
/// (HappyM2), `L` (ldx). Letters several presets share (`A`, `D`, `X`) reveal nothing.
pub fn detect_gate_frame(body: Bytes) -> Result<(GateFrame, Option<Dialect>), LinkError> {
    let Some(&command) = body.first() else {
        return Err(LinkError::Malformed {
            reason: "empty frame",
        });
    };
    let args = &body[1..];
    match command {
        b'-' if args == b"-" => Ok((GateFrame::Heartbeat, None)),
        b'O' | b'N' | b'L' => {
            let (frame, has_gate_ip) = parse_open(args)?;
            let dialect = match (command, has_gate_ip) {
                (b'O', false) => Dialect::Wemade,
                (b'O', true) => Dialect::Delphi,
                (b'N', true) => Dialect::HappyM2,
                (b'L', true) => Dialect::Ldx,
                _ => {
                    return Err(LinkError::Malformed {
                        reason: "open frame without the gate IP",
                    })
                }
            };
            Ok((frame, Some(dialect)))
        }
        b'X' | b'C' => Ok((
            GateFrame::Close {
                id: parse_id(args)?,
            },
            (command == b'C').then_some(Dialect::HappyM2),
        )),
        b'A' | b'D' => Ok((parse_data(&body)?, None)),
        _ => Err(LinkError::UnknownCommand { command }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4));
    const GATE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));

    fn written(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
        let mut b = BytesMut::new();
        f(&mut b);
        b.to_vec()
    }

    #[test]
    fn dialect_names() {
        for d in Dialect::ALL {
            assert_eq!(d.to_string().parse::<Dialect>().unwrap(), d);
        }
        assert_eq!("HappyM2".parse::<Dialect>().unwrap(), Dialect::HappyM2);
        assert!("mir3".parse::<Dialect>().is_err());
    }

    #[test]
    fn dialect_codes_roundtrip() {
        for d in Dialect::ALL {
            assert_eq!(Dialect::from_u8(d.to_u8()), Some(d));
        }
        assert_eq!(Dialect::from_u8(Dialect::ALL.len() as u8), None);
        assert_eq!(Dialect::from_u8(u8::MAX), None);
    }

    #[test]
    fn gate_frames_per_dialect() {
        use Dialect::*;
        assert_eq!(
            written(|b| write_open(Wemade, b, 7, V4, GATE)),
            b"%O7/1.2.3.4$"
        );
        assert_eq!(
            written(|b| write_open(Delphi, b, 7, V4, GATE)),
            b"%O7/1.2.3.4/10.0.0.1$"
        );
        assert_eq!(
            written(|b| write_open(HappyM2, b, 7, V4, GATE)),
            b"%N7/1.2.3.4/10.0.0.1$"
        );
        assert_eq!(written(|b| write_close(Wemade, b, 0)), b"%X0$");
        assert_eq!(
            written(|b| write_close(Delphi, b, u32::MAX)),
            b"%X4294967295$"
        );
        assert_eq!(written(|b| write_close(HappyM2, b, 7)), b"%C7$");
        assert_eq!(
            written(|b| write_data(Delphi, b, 12, b"#1x!")),
            b"%A12/#1x!$"
        );
        assert_eq!(
            written(|b| write_data(HappyM2, b, 12, b"#1x!")),
            b"%D12/#1x!$"
        );
        for d in Dialect::ALL {
            assert_eq!(written(|b| write_heartbeat(d, b)), b"%--$");
        }
    }

    #[test]
    fn server_frames_per_dialect() {
        use Dialect::*;
        assert_eq!(written(|b| write_reply(Wemade, b, 7, b"#x!")), b"%7/#x!$\0");
        assert_eq!(written(|b| write_reply(Delphi, b, 7, b"#x!")), b"%7/#x!$");
        assert_eq!(written(|b| write_heartbeat_reply(Wemade, b)), b"%++$\0");
        assert_eq!(written(|b| write_heartbeat_reply(HappyM2, b)), b"%++$");
        let kick = ServerFrame::Kick { id: 9 };
        let block = ServerFrame::Block {
            id: 9,
            permanent: true,
        };
        assert_eq!(written(|b| write_server_frame(Delphi, &kick, b)), b"%+-9$");
        assert_eq!(
            written(|b| write_server_frame(HappyM2, &block, b)),
            b"%+T9$"
        );
        assert_eq!(
            written(|b| write_server_frame(
                HappyM2,
                &ServerFrame::Block {
                    id: 9,
                    permanent: false
                },
                b
            )),
            b"%+B9$"
        );
        assert_eq!(
            written(|b| write_server_frame(Delphi, &block, b)),
            b"%+-9$",
            "downgraded to kick"
        );
    }

    #[test]
    fn parse_server_frames() {
        let p = |s: &'static [u8]| parse_server_frame(Dialect::HappyM2, Bytes::from_static(s));
        assert_eq!(
            p(b"7/#x!").unwrap(),
            ServerFrame::Data {
                id: 7,
                data: Bytes::from_static(b"#x!")
            }
        );
        assert_eq!(p(b"++").unwrap(), ServerFrame::HeartbeatReply);
        assert_eq!(p(b"+Q123").unwrap(), ServerFrame::HeartbeatReply);
        assert_eq!(p(b"+").unwrap(), ServerFrame::HeartbeatReply);
        assert_eq!(p(b"+-42").unwrap(), ServerFrame::Kick { id: 42 });
        assert_eq!(
            p(b"+B42").unwrap(),
            ServerFrame::Block {
                id: 42,
                permanent: false
            }
        );
        assert_eq!(
            p(b"+T42").unwrap(),
            ServerFrame::Block {
                id: 42,
                permanent: true
            }
        );
        assert_eq!(p(b"").unwrap_err().reason(), "malformed");
        assert_eq!(p(b"7#x!").unwrap_err().reason(), "malformed");
        assert_eq!(
            p(b"X7").unwrap_err(),
            LinkError::UnknownCommand { command: b'X' }
        );
        assert_eq!(p(b"+-").unwrap_err(), LinkError::BadId(IdError::Empty));
        assert_eq!(
            p(b"4294967296/x").unwrap_err(),
            LinkError::BadId(IdError::Overflow)
        );
        assert_eq!(
            p(b"12345678901/x").unwrap_err(),
            LinkError::BadId(IdError::TooManyDigits)
        );
        assert_eq!(
            p(b"+-1a").unwrap_err(),
            LinkError::BadId(IdError::NotDigit(b'a'))
        );
        assert_eq!(
            p(b"4294967295/").unwrap(),
            ServerFrame::Data {
                id: u32::MAX,
                data: Bytes::new()
            }
        );
    }

    #[test]
    fn parse_gate_frames_and_detect_dialect() {
        let p = |s: &'static [u8]| detect_gate_frame(Bytes::from_static(s));
        assert_eq!(
            p(b"O7/1.2.3.4").unwrap(),
            (
                GateFrame::Open {
                    id: 7,
                    client_ip: V4,
                    gate_ip: None
                },
                Some(Dialect::Wemade)
            )
        );
        assert_eq!(
            p(b"O7/1.2.3.4/10.0.0.1").unwrap(),
            (
                GateFrame::Open {
                    id: 7,
                    client_ip: V4,
                    gate_ip: Some(GATE)
                },
                Some(Dialect::Delphi)
            )
        );
        assert_eq!(
            p(b"N7/::1/10.0.0.1").unwrap(),
            (
                GateFrame::Open {
                    id: 7,
                    client_ip: IpAddr::V6(Ipv6Addr::LOCALHOST),
                    gate_ip: Some(GATE)
                },
                Some(Dialect::HappyM2)
            )
        );
        assert_eq!(p(b"X7").unwrap(), (GateFrame::Close { id: 7 }, None));
        assert_eq!(
            p(b"C7").unwrap(),
            (GateFrame::Close { id: 7 }, Some(Dialect::HappyM2))
        );
        assert_eq!(
            p(b"A7/#1x!").unwrap(),
            (
                GateFrame::Data {
                    id: 7,
                    data: Bytes::from_static(b"#1x!")
                },
                None
            )
        );
        assert_eq!(
            p(b"D7/#1x!").unwrap(),
            (
                GateFrame::Data {
                    id: 7,
                    data: Bytes::from_static(b"#1x!")
                },
                None
            )
        );
        assert_eq!(p(b"--").unwrap(), (GateFrame::Heartbeat, None));
        assert_eq!(p(b"O7/1.2.3").unwrap_err(), LinkError::BadIp);
        assert_eq!(p(b"O7/1.2.3.4/").unwrap_err(), LinkError::BadIp);
        assert_eq!(p(b"N7/1.2.3.4").unwrap_err().reason(), "malformed");
        assert_eq!(p(b"A7").unwrap_err().reason(), "malformed");
        assert_eq!(
            p(b"-").unwrap_err(),
            LinkError::UnknownCommand { command: b'-' }
        );
        assert_eq!(
            p(b"Z").unwrap_err(),
            LinkError::UnknownCommand { command: b'Z' }
        );
        assert_eq!(p(b"").unwrap_err().reason(), "malformed");
    }

    fn frames(f: &mut LinkFramer, buf: &mut BytesMut) -> Result<Vec<Bytes>, LinkError> {
        let mut out = Vec::new();
        while let Some(x) = f.next_frame(buf)? {
            out.push(x);
        }
        Ok(out)
    }

    #[test]
    fn framer_skips_zeros_and_junk_and_restarts() {
        let mut f = LinkFramer::new(1024);
        let mut buf = BytesMut::from(&b"\0junk%++$\0%7/#a!$\0%A1/abc%--$xx%X1$"[..]);
        let got = frames(&mut f, &mut buf).unwrap();
        assert_eq!(got, vec![&b"++"[..], b"7/#a!", b"--", b"X1"]);
        assert_eq!(
            f.junk_skipped(),
            4 + 7 + 2,
            "junk, abandoned '%A1/abc', 'xx'"
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn framer_handles_splits() {
        let stream = b"%O7/1.2.3.4$\0%A7/#1<<<<<I@C<<<<<<<<!$%X7$";
        let mut f = LinkFramer::new(1024);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in stream.iter() {
            buf.extend_from_slice(&[b]);
            got.extend(frames(&mut f, &mut buf).unwrap());
        }
        assert_eq!(
            got,
            vec![&b"O7/1.2.3.4"[..], b"A7/#1<<<<<I@C<<<<<<<<!", b"X7"]
        );
        assert_eq!(f.junk_skipped(), 0);
    }

    #[test]
    fn framer_is_bounded() {
        let mut f = LinkFramer::new(8);
        assert_eq!(
            frames(&mut f, &mut BytesMut::from(&b"%123456$"[..])).unwrap(),
            vec![&b"123456"[..]]
        );
        let mut buf = BytesMut::from(&b"%1234567"[..]);
        assert_eq!(f.next_frame(&mut buf), Err(LinkError::TooLong { max: 8 }));
        assert!(LinkError::TooLong { max: 8 }.is_fatal());
        // Junk without '%' never accumulates.
        let mut f = LinkFramer::new(8);
        let mut buf = BytesMut::from(&[b'x'; 100][..]);
        assert_eq!(f.next_frame(&mut buf), Ok(None));
        assert!(buf.is_empty());
        assert_eq!(f.junk_skipped(), 100);
    }

    #[test]
    fn ldx_frames() {
        use Dialect::Ldx;
        assert_eq!(
            written(|b| write_open(Ldx, b, 7, V4, GATE)),
            b"%L7/1.2.3.4/10.0.0.1$"
        );
        assert_eq!(written(|b| write_data(Ldx, b, 7, b"#1x!")), b"%D7/#1x!$");
        assert_eq!(written(|b| write_close(Ldx, b, 7)), b"%X7$");
        assert_eq!(written(|b| write_reply(Ldx, b, 7, b"#x!")), b"%7/#x!$");
        let block = ServerFrame::Block {
            id: 9,
            permanent: false,
        };
        assert_eq!(written(|b| write_server_frame(Ldx, &block, b)), b"%+-9$");
        assert_eq!(
            detect_gate_frame(Bytes::from_static(b"L7/1.2.3.4/10.0.0.1")).unwrap(),
            (
                GateFrame::Open {
                    id: 7,
                    client_ip: V4,
                    gate_ip: Some(GATE)
                },
                Some(Ldx)
            )
        );
        assert_eq!(
            detect_gate_frame(Bytes::from_static(b"L7/1.2.3.4"))
                .unwrap_err()
                .reason(),
            "malformed"
        );
    }

    #[test]
    fn a_custom_table_is_written_and_parsed_by_its_letters() {
        let f = Frames {
            open: b'Q',
            data: b'W',
            close: b'E',
            ..Frames::WEMADE
        };
        assert_eq!(written(|b| write_open(f, b, 3, V4, GATE)), b"%Q3/1.2.3.4$");
        assert_eq!(written(|b| write_data(f, b, 3, b"#1x!")), b"%W3/#1x!$");
        assert_eq!(written(|b| write_close(f, b, 3)), b"%E3$");
        let p = |s: &'static [u8]| parse_gate_frame(f, Bytes::from_static(s));
        assert_eq!(p(b"E3").unwrap(), GateFrame::Close { id: 3 });
        assert_eq!(p(b"--").unwrap(), GateFrame::Heartbeat);
        assert_eq!(
            p(b"A3/#1x!").unwrap_err(),
            LinkError::UnknownCommand { command: b'A' }
        );
        // The table decides whether the gate IP belongs in the open frame.
        assert_eq!(p(b"Q3/1.2.3.4/10.0.0.1").unwrap_err().reason(), "malformed");
        let with_ip = Frames {
            open_gate_ip: true,
            ..f
        };
        assert_eq!(
            parse_gate_frame(with_ip, Bytes::from_static(b"Q3/1.2.3.4"))
                .unwrap_err()
                .reason(),
            "malformed"
        );
    }

    #[test]
    fn block_letter_meaning_follows_the_table() {
        let t_is_temporary = Frames {
            temporary_block: BlockLetter::T,
            ..Frames::HAPPYM2
        };
        let block = |permanent| ServerFrame::Block { id: 5, permanent };
        for (f, temporary, permanent) in [
            (Frames::HAPPYM2, &b"%+B5$"[..], &b"%+T5$"[..]),
            (t_is_temporary, b"%+T5$", b"%+B5$"),
        ] {
            assert_eq!(
                written(|b| write_server_frame(f, &block(false), b)),
                temporary
            );
            assert_eq!(
                written(|b| write_server_frame(f, &block(true), b)),
                permanent
            );
            let parse = |w: &[u8]| {
                parse_server_frame(f, Bytes::copy_from_slice(&w[1..w.len() - 1])).unwrap()
            };
            assert_eq!(parse(temporary), block(false));
            assert_eq!(parse(permanent), block(true));
        }
    }
}
