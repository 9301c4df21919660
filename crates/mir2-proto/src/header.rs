//! The 12-byte message header (Delphi `TDefaultMessage`), 16 chars once encoded.

use crate::codec::{self, DecodeError};

/// One message header: little-endian `recog: i32, ident: u16, param: u16, tag: u16, series: u16`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MsgHeader {
    /// Per-message value: client version, result code, session id…
    pub recog: i32,
    /// Message id (see [`crate::ids`]).
    pub ident: u16,
    /// Extra argument (rarely used on the login path).
    pub param: u16,
    /// Extra argument (rarely used on the login path).
    pub tag: u16,
    /// Extra argument, e.g. the number of servers in SM_PASSOK_SELECTSERVER.
    pub series: u16,
}

impl MsgHeader {
    /// Raw size (the Delphi `SizeOf(TDefaultMessage)`).
    pub const BYTES: usize = 12;
    /// Encoded size (the Delphi `DEFBLOCKSIZE`).
    pub const ENCODED_LEN: usize = 16;

    /// Argument order of the Delphi `MakeDefaultMsg(ident, recog, param, tag, series)`.
    pub fn new(ident: u16, recog: i32, param: u16, tag: u16, series: u16) -> Self {
        MsgHeader {
            recog,
            ident,
            param,
            tag,
            series,
        }
    }

    /// The 12 raw bytes.
    pub fn to_bytes(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0..4].copy_from_slice(&self.recog.to_le_bytes());
        b[4..6].copy_from_slice(&self.ident.to_le_bytes());
        b[6..8].copy_from_slice(&self.param.to_le_bytes());
        b[8..10].copy_from_slice(&self.tag.to_le_bytes());
        b[10..12].copy_from_slice(&self.series.to_le_bytes());
        b
    }

    /// Reads the 12 raw bytes.
    pub fn from_bytes(b: &[u8; 12]) -> Self {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        MsgHeader {
            recog: i32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            ident: u16_at(4),
            param: u16_at(6),
            tag: u16_at(8),
            series: u16_at(10),
        }
    }

    /// The 16 encoded chars.
    pub fn encode(&self) -> [u8; 16] {
        let raw = self.to_bytes();
        let mut out = [0u8; 16];
        for (src, dst) in raw.chunks_exact(3).zip(out.chunks_exact_mut(4)) {
            let (a, b, c) = (src[0], src[1], src[2]);
            dst[0] = (a >> 2) + codec::ALPHABET_FIRST;
            dst[1] = (((a << 4) | (b >> 4)) & 0x3F) + codec::ALPHABET_FIRST;
            dst[2] = (((b << 2) | (c >> 6)) & 0x3F) + codec::ALPHABET_FIRST;
            dst[3] = (c & 0x3F) + codec::ALPHABET_FIRST;
        }
        out
    }

    /// Decodes exactly 16 chars; anything else is [`DecodeError::BadLength`].
    #[inline]
    pub fn decode(s: &[u8]) -> Result<Self, DecodeError> {
        let s: &[u8; 16] = s
            .try_into()
            .map_err(|_| DecodeError::BadLength { len: s.len() })?;
        // Map and validate in one branch-free pass; locate the culprit only on failure.
        let mut v = [0u8; 16];
        let mut bad = 0u8;
        for (out, &c) in v.iter_mut().zip(s) {
            let x = c.wrapping_sub(codec::ALPHABET_FIRST);
            bad |= x & 0xC0;
            *out = x;
        }
        if bad != 0 {
            let offset = s.iter().position(|&b| !codec::is_alphabet(b)).unwrap_or(0);
            return Err(DecodeError::BadChar {
                offset,
                byte: s[offset],
            });
        }
        // 16 six-bit values = 96 bits = the 12 header bytes, MSB first.
        let mut raw = [0u8; 12];
        for (q, r) in v.chunks_exact(4).zip(raw.chunks_exact_mut(3)) {
            r[0] = (q[0] << 2) | (q[1] >> 4);
            r[1] = (q[1] << 4) | (q[2] >> 2);
            r[2] = (q[2] << 6) | q[3];
        }
        Ok(Self::from_bytes(&raw))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn vectors() -> [(MsgHeader, &'static [u8; 16]); 4] {
        [
            (MsgHeader::new(2001, 0, 0, 0, 0), b"<<<<<I@C<<<<<<<<"),
            (
                MsgHeader::new(0x9ABC, 0x1234_5678, 1, 2, 3),
                b"ZATp@gnV<L<><<H<",
            ),
            (MsgHeader::new(503, -1, 0, 0, 0), b"{{{{{{X=<<<<<<<<"),
            (MsgHeader::new(530, 12345, 0, 0, 0), b"JO<<<=D><<<<<<<<"),
        ]
    }

    #[test]
    fn protocol_vectors() {
        for (h, text) in vectors() {
            assert_eq!(&h.encode(), text);
            assert_eq!(MsgHeader::decode(text).unwrap(), h);
            assert_eq!(
                codec::encode(&h.to_bytes()),
                text.to_vec(),
                "agrees with the generic codec"
            );
        }
    }

    #[test]
    fn field_order_is_make_default_msg() {
        let h = MsgHeader::new(1, 2, 3, 4, 5);
        assert_eq!(
            (h.ident, h.recog, h.param, h.tag, h.series),
            (1, 2, 3, 4, 5)
        );
        assert_eq!(h.to_bytes(), [2, 0, 0, 0, 1, 0, 3, 0, 4, 0, 5, 0]);
    }

    #[test]
    fn decode_rejects_wrong_length_and_bad_chars() {
        assert_eq!(
            MsgHeader::decode(b"<<<<").unwrap_err(),
            DecodeError::BadLength { len: 4 }
        );
        assert_eq!(
            MsgHeader::decode(b"<<<<<<<<<<<<<<<<<").unwrap_err(),
            DecodeError::BadLength { len: 17 }
        );
        assert_eq!(
            MsgHeader::decode(b"<<<<<I@C<<<<<<!<").unwrap_err(),
            DecodeError::BadChar {
                offset: 14,
                byte: b'!'
            }
        );
    }
}
