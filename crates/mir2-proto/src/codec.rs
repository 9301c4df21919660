//! The 6-bit text encoding of the login path (PROTOCOL.md §1).
//!
//! Bytes form one MSB-first bit stream cut into 6-bit groups; each group `v` becomes the
//! byte `v + 0x3C`. Decoding here is strict: any char outside `0x3C..=0x7B` and any length
//! that is 1 more than a multiple of 4 (no byte string encodes to it) is an error.

use bytes::BufMut;

/// First char of the 6-bit alphabet (`<`).
pub const ALPHABET_FIRST: u8 = 0x3C;
/// Last char of the 6-bit alphabet (`{`).
pub const ALPHABET_LAST: u8 = 0x7B;

/// True when `b` can appear inside 6-bit text.
#[inline(always)]
pub const fn is_alphabet(b: u8) -> bool {
    b.wrapping_sub(ALPHABET_FIRST) <= ALPHABET_LAST - ALPHABET_FIRST
}

/// Why 6-bit text could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A char outside the alphabet; `offset` is relative to the decoded text.
    #[error("byte {} at offset {offset} is outside the 6-bit alphabet 0x3c..=0x7b", ByteDisplay(*byte))]
    BadChar { offset: usize, byte: u8 },
    /// A length no byte string encodes to (≡ 1 mod 4), or not the fixed length expected.
    #[error("6-bit text length {len} is invalid: it is 1 more than a multiple of 4 or not the fixed length required")]
    BadLength { len: usize },
}

impl DecodeError {
    /// Stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::BadChar { .. } => "bad_char",
            DecodeError::BadLength { .. } => "bad_length",
        }
    }
}

/// Shows a byte as `0x23 ('#')`, or just `0x80` when it is not printable ASCII.
pub(crate) struct ByteDisplay(pub(crate) u8);

impl std::fmt::Display for ByteDisplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        if b.is_ascii_graphic() || b == b' ' {
            write!(f, "0x{b:02x} ('{}')", b as char)
        } else {
            write!(f, "0x{b:02x}")
        }
    }
}

/// Encoded length of `n` bytes: ceil(4n/3).
#[inline]
pub const fn encoded_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

/// Decoded length of `n` chars (leftover bits are dropped, as the originals do).
#[inline]
pub const fn decoded_len(n: usize) -> usize {
    n * 3 / 4
}

#[inline(always)]
fn enc(v: u8) -> u8 {
    (v & 0x3F) + ALPHABET_FIRST
}

/// Encodes 3 bytes into 4 chars.
#[inline(always)]
fn enc3(a: u8, b: u8, c: u8) -> [u8; 4] {
    [
        enc(a >> 2),
        enc((a << 4) | (b >> 4)),
        enc((b << 2) | (c >> 6)),
        enc(c),
    ]
}

/// Decodes 4 alphabet chars (already validated) into 3 bytes.
#[inline(always)]
fn dec4(s: &[u8]) -> [u8; 3] {
    let v = |i: usize| s[i].wrapping_sub(ALPHABET_FIRST);
    [
        (v(0) << 2) | (v(1) >> 4),
        (v(1) << 4) | (v(2) >> 2),
        (v(2) << 6) | v(3),
    ]
}

/// Bytes per staging block: 48 bytes <-> 64 chars, so `BufMut` is called once per block.
const RAW_BLOCK: usize = 48;
const TEXT_BLOCK: usize = 64;

/// Appends the 6-bit encoding of `src` to `dst`.
pub fn encode_into(src: &[u8], dst: &mut impl BufMut) {
    let mut blocks = src.chunks_exact(RAW_BLOCK);
    let mut staged = [0u8; TEXT_BLOCK];
    for block in &mut blocks {
        for (raw, text) in block.chunks_exact(3).zip(staged.chunks_exact_mut(4)) {
            text.copy_from_slice(&enc3(raw[0], raw[1], raw[2]));
        }
        dst.put_slice(&staged);
    }
    let rest = blocks.remainder();
    let mut triples = rest.chunks_exact(3);
    for raw in &mut triples {
        dst.put_slice(&enc3(raw[0], raw[1], raw[2]));
    }
    match *triples.remainder() {
        [a] => dst.put_slice(&enc3(a, 0, 0)[..2]),
        [a, b] => dst.put_slice(&enc3(a, b, 0)[..3]),
        _ => {}
    }
}

/// The 6-bit encoding of `src`.
pub fn encode(src: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(src.len()));
    encode_into(src, &mut out);
    out
}

/// Position of the first byte outside the 6-bit alphabet, if any.
///
/// Checks 32-byte blocks without early exit (the compiler vectorises the fold), then
/// pinpoints the culprit inside the first failing block.
#[inline]
pub fn first_non_alphabet(s: &[u8]) -> Option<usize> {
    const BLOCK: usize = 32;
    let mut blocks = s.chunks_exact(BLOCK);
    let mut base = 0;
    for block in &mut blocks {
        let all_ok = block.iter().fold(true, |ok, &b| ok & is_alphabet(b));
        if !all_ok {
            return block
                .iter()
                .position(|&b| !is_alphabet(b))
                .map(|p| base + p);
        }
        base += BLOCK;
    }
    blocks
        .remainder()
        .iter()
        .position(|&b| !is_alphabet(b))
        .map(|p| base + p)
}

/// Appends the bytes encoded by `src` to `dst`. Validates everything first, so on error
/// nothing has been written.
pub fn decode_into(src: &[u8], dst: &mut impl BufMut) -> Result<(), DecodeError> {
    if let Some(offset) = first_non_alphabet(src) {
        return Err(DecodeError::BadChar {
            offset,
            byte: src[offset],
        });
    }
    if src.len() % 4 == 1 {
        return Err(DecodeError::BadLength { len: src.len() });
    }
    let mut blocks = src.chunks_exact(TEXT_BLOCK);
    let mut staged = [0u8; RAW_BLOCK];
    for block in &mut blocks {
        for (text, raw) in block.chunks_exact(4).zip(staged.chunks_exact_mut(3)) {
            raw.copy_from_slice(&dec4(text));
        }
        dst.put_slice(&staged);
    }
    let mut quads = blocks.remainder().chunks_exact(4);
    for text in &mut quads {
        dst.put_slice(&dec4(text));
    }
    let tail = quads.remainder();
    let mut padded = [ALPHABET_FIRST; 4];
    padded[..tail.len()].copy_from_slice(tail);
    // n chars carry floor(6n/8) whole bytes: 2 -> 1, 3 -> 2.
    dst.put_slice(&dec4(&padded)[..decoded_len(tail.len())]);
    Ok(())
}

/// The bytes encoded by `src`.
pub fn decode(src: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(decoded_len(src.len()));
    decode_into(src, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const VECTORS: &[(&[u8], &[u8])] = &[
        (b"", b""),
        (b"a", b"TL"),
        (b"ab", b"TRD"),
        (b"abc", b"TRE_"),
        (b"user/pass", b"YSIaX^ylTSIo"),
        (b"127.0.0.1/7100/12345", b"HODsG_<jH>tmGoXmH?<kHODoI?P"),
    ];

    #[test]
    fn protocol_vectors_encode() {
        for (plain, text) in VECTORS {
            assert_eq!(
                encode(plain),
                *text,
                "encode {:?}",
                String::from_utf8_lossy(plain)
            );
            assert_eq!(encoded_len(plain.len()), text.len());
        }
    }

    #[test]
    fn protocol_vectors_decode() {
        for (plain, text) in VECTORS {
            assert_eq!(decode(text).unwrap(), *plain);
        }
    }

    #[test]
    fn bad_char_names_offset_and_byte() {
        let err = decode(b"TRE_T#").unwrap_err();
        assert_eq!(
            err,
            DecodeError::BadChar {
                offset: 5,
                byte: b'#'
            }
        );
        assert_eq!(
            err.to_string(),
            "byte 0x23 ('#') at offset 5 is outside the 6-bit alphabet 0x3c..=0x7b"
        );
        assert_eq!(
            decode(b"T|").unwrap_err(),
            DecodeError::BadChar {
                offset: 1,
                byte: b'|'
            }
        );
        assert_eq!(
            decode(b";L").unwrap_err(),
            DecodeError::BadChar {
                offset: 0,
                byte: b';'
            }
        );
        assert!(decode(b"TL\x80")
            .unwrap_err()
            .to_string()
            .contains("0x80 at offset 2"));
    }

    #[test]
    fn length_one_mod_four_is_rejected() {
        assert_eq!(decode(b"T").unwrap_err(), DecodeError::BadLength { len: 1 });
        assert_eq!(
            decode(b"TRE_T").unwrap_err(),
            DecodeError::BadLength { len: 5 }
        );
        assert!(decode(b"TRE_T")
            .unwrap_err()
            .to_string()
            .contains("length 5"));
    }

    #[test]
    fn alphabet_edges_decode() {
        assert_eq!(decode(b"<<").unwrap(), [0]);
        assert_eq!(decode(b"{{{{").unwrap(), [0xFF, 0xFF, 0xFF]);
    }
}
