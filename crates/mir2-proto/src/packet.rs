//! One `#…!` message: `#`, an optional check digit, a 16-char header, 6-bit body, `!`.

use bytes::{BufMut, Bytes};

use crate::codec::{self, ByteDisplay, DecodeError};
use crate::header::MsgHeader;

/// A parsed message; the body stays 6-bit text so forwarding never re-encodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The client's check digit (1..=9), `None` on server→client messages.
    pub seq: Option<u8>,
    /// The decoded header.
    pub header: MsgHeader,
    /// The body, still 6-bit text (validated to be inside the alphabet).
    pub body: Bytes,
}

/// Why a `#…!` message could not be parsed. Offsets are within the message text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// The text does not start with `#`.
    #[error("packet does not start with '#'")]
    MissingStart,
    /// The text does not end with `!`.
    #[error("packet does not end with '!'")]
    MissingEnd,
    /// Fewer than 16 chars between the check digit and `!`.
    #[error("packet of {len} bytes is too short for its 16-char header")]
    TooShort { len: usize },
    /// A byte that may not appear at that place.
    #[error("byte {} at offset {offset} is not allowed in a packet (only 0x3c..=0x7b between the header start and '!')", ByteDisplay(*byte))]
    BadChar { offset: usize, byte: u8 },
}

impl PacketError {
    /// Stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            PacketError::MissingStart => "missing_start",
            PacketError::MissingEnd => "missing_end",
            PacketError::TooShort { .. } => "short_packet",
            PacketError::BadChar { .. } => "bad_char",
        }
    }

    /// The offending offset within the packet text, when there is one.
    pub fn offset(&self, packet_len: usize) -> usize {
        match self {
            PacketError::MissingStart => 0,
            PacketError::MissingEnd => packet_len.saturating_sub(1),
            PacketError::TooShort { len } => *len,
            PacketError::BadChar { offset, .. } => *offset,
        }
    }
}

/// The check digit (1..=9) in `text[1]`, if present.
#[inline]
pub(crate) fn check_digit(b: u8) -> Option<u8> {
    matches!(b, b'1'..=b'9').then(|| b - b'0')
}

impl Packet {
    /// Parses one whole `#…!` message (with or without check digit). Zero-copy.
    pub fn parse(frame: Bytes) -> Result<Packet, PacketError> {
        if frame.first() != Some(&b'#') {
            return Err(PacketError::MissingStart);
        }
        let seq = frame.get(1).copied().and_then(check_digit);
        let start = if seq.is_some() { 2 } else { 1 };
        // Header chars are never '!', so the first non-alphabet byte must be the final '!'.
        let end = frame.len().saturating_sub(1).max(start);
        if let Some(i) = frame[start..end]
            .iter()
            .position(|&b| !codec::is_alphabet(b))
        {
            let offset = start + i;
            return Err(PacketError::BadChar {
                offset,
                byte: frame[offset],
            });
        }
        if frame.len() <= start || frame[frame.len() - 1] != b'!' {
            return Err(PacketError::MissingEnd);
        }
        if end - start < MsgHeader::ENCODED_LEN {
            return Err(PacketError::TooShort { len: frame.len() });
        }
        let hdr_end = start + MsgHeader::ENCODED_LEN;
        let header =
            MsgHeader::decode(&frame[start..hdr_end]).map_err(|_| PacketError::BadChar {
                offset: start,
                byte: frame[start],
            })?;
        Ok(Packet {
            seq,
            header,
            body: frame.slice(hdr_end..end),
        })
    }

    /// Offset of the body within the packet text (add it to body decode offsets).
    pub fn body_offset(&self) -> usize {
        1 + usize::from(self.seq.is_some()) + MsgHeader::ENCODED_LEN
    }

    /// The decoded body (a single encoded part).
    pub fn body_decoded(&self) -> Result<Vec<u8>, DecodeError> {
        codec::decode(&self.body)
    }

    /// Decodes a body made of separately encoded parts of the given raw sizes
    /// (e.g. `[UserEntry::SIZE, UserEntryAdd::SIZE]`); the last size may be `None`
    /// for "whatever remains". Offsets in errors are relative to the body.
    pub fn body_parts(&self, sizes: &[Option<usize>]) -> Result<Vec<Vec<u8>>, DecodeError> {
        let mut parts = Vec::with_capacity(sizes.len());
        let mut at = 0usize;
        for size in sizes {
            let rest = self.body.get(at..).unwrap_or_default();
            let take = match size {
                Some(n) => codec::encoded_len(*n),
                None => rest.len(),
            };
            let Some(chunk) = rest.get(..take) else {
                return Err(DecodeError::BadLength { len: rest.len() });
            };
            let part = codec::decode(chunk).map_err(|e| match e {
                DecodeError::BadChar { offset, byte } => DecodeError::BadChar {
                    offset: at + offset,
                    byte,
                },
                other => other,
            })?;
            parts.push(part);
            at += take;
        }
        Ok(parts)
    }
}

fn write_header_and_body(dst: &mut impl BufMut, h: &MsgHeader, body_parts: &[&[u8]]) {
    dst.put_slice(&h.encode());
    for part in body_parts {
        codec::encode_into(part, dst);
    }
    dst.put_u8(b'!');
}

/// Writes a client→server message: `#`, check digit, header, each part encoded separately, `!`.
/// `seq` cycles into 1..=9 (`10` → `1`, `0` → `9`) as the client's counter does.
pub fn write_client_packet(
    dst: &mut impl BufMut,
    seq: Option<u8>,
    h: &MsgHeader,
    body_parts: &[&[u8]],
) {
    dst.put_u8(b'#');
    if let Some(s) = seq {
        let digit = ((u16::from(s) + 8) % 9 + 1) as u8;
        dst.put_u8(b'0' + digit);
    }
    write_header_and_body(dst, h, body_parts);
}

/// Writes a server→client message: `#`, header, each part encoded separately, `!`.
pub fn write_server_packet(dst: &mut impl BufMut, h: &MsgHeader, body_parts: &[&[u8]]) {
    dst.put_u8(b'#');
    write_header_and_body(dst, h, body_parts);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ids;

    #[test]
    fn parses_the_login_example() {
        let p = Packet::parse(Bytes::from_static(b"#1<<<<<I@C<<<<<<<<YSIaX^ylTSIo!")).unwrap();
        assert_eq!(p.seq, Some(1));
        assert_eq!(p.header, MsgHeader::new(ids::CM_IDPASSWORD, 0, 0, 0, 0));
        assert_eq!(&p.body[..], b"YSIaX^ylTSIo");
        assert_eq!(p.body_decoded().unwrap(), b"user/pass");
        assert_eq!(p.body_offset(), 18);
    }

    #[test]
    fn parses_the_server_example_without_digit() {
        let p = Packet::parse(Bytes::from_static(
            b"#JO<<<=D><<<<<<<<HODsG_<jH>tmGoXmH?<kHODoI?P!",
        ))
        .unwrap();
        assert_eq!(p.seq, None);
        assert_eq!(
            p.header,
            MsgHeader::new(ids::SM_SELECTSERVER_OK, 12345, 0, 0, 0)
        );
        assert_eq!(p.body_decoded().unwrap(), b"127.0.0.1/7100/12345");
    }

    #[test]
    fn writers_match_the_examples() {
        let h = MsgHeader::new(ids::CM_IDPASSWORD, 0, 0, 0, 0);
        let mut out = Vec::new();
        write_client_packet(&mut out, Some(1), &h, &[b"user/pass"]);
        assert_eq!(out, b"#1<<<<<I@C<<<<<<<<YSIaX^ylTSIo!");
        let mut out = Vec::new();
        write_server_packet(
            &mut out,
            &MsgHeader::new(530, 12345, 0, 0, 0),
            &[b"127.0.0.1/7100/12345"],
        );
        assert_eq!(out, b"#JO<<<=D><<<<<<<<HODsG_<jH>tmGoXmH?<kHODoI?P!");
    }

    #[test]
    fn seq_cycles_into_one_to_nine() {
        let h = MsgHeader::default();
        for (seq, digit) in [(1u8, b'1'), (9, b'9'), (10, b'1'), (0, b'9'), (255, b'3')] {
            let mut out = Vec::new();
            write_client_packet(&mut out, Some(seq), &h, &[]);
            assert_eq!(out[1], digit, "seq {seq}");
            assert!(Packet::parse(Bytes::from(out)).is_ok());
        }
    }

    #[test]
    fn parts_are_encoded_separately() {
        let h = MsgHeader::new(ids::CM_ADDNEWUSER, 0, 0, 0, 0);
        let (a, b) = ([7u8; 148], [9u8; 101]);
        let mut out = Vec::new();
        write_client_packet(&mut out, Some(2), &h, &[&a, &b]);
        assert_eq!(out.len(), 2 + 16 + 198 + 135 + 1);
        let p = Packet::parse(Bytes::from(out)).unwrap();
        assert_eq!(p.body.len(), 333);
        let parts = p.body_parts(&[Some(148), Some(101)]).unwrap();
        assert_eq!(parts, vec![a.to_vec(), b.to_vec()]);
        assert!(
            p.body_parts(&[Some(148), Some(200)]).is_err(),
            "body shorter than declared"
        );
    }

    #[test]
    fn rejects_malformed() {
        let parse = |s: &'static [u8]| Packet::parse(Bytes::from_static(s));
        assert_eq!(parse(b"1<<<<<I@C<<<<<<<<!"), Err(PacketError::MissingStart));
        assert_eq!(parse(b""), Err(PacketError::MissingStart));
        assert_eq!(parse(b"#"), Err(PacketError::MissingEnd));
        assert_eq!(parse(b"#1"), Err(PacketError::MissingEnd));
        assert_eq!(parse(b"#<<<<<I@C<<<<<<<<"), Err(PacketError::MissingEnd));
        assert_eq!(parse(b"#1<<<<!"), Err(PacketError::TooShort { len: 7 }));
        assert_eq!(parse(b"#!"), Err(PacketError::TooShort { len: 2 }));
        assert_eq!(
            parse(b"#1<<<<<I@C<<<<$<<<<!"),
            Err(PacketError::BadChar {
                offset: 14,
                byte: b'$'
            })
        );
        assert_eq!(
            parse(b"#11<<<<<I@C<<<<<<<<!"),
            Err(PacketError::BadChar {
                offset: 2,
                byte: b'1'
            })
        );
        assert_eq!(
            parse(b"#<<<<<I@C<<<<<<<<!!"),
            Err(PacketError::BadChar {
                offset: 17,
                byte: b'!'
            })
        );
    }
}
