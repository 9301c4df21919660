//! GBK text helpers: Chinese deployments put GBK in every text field.

use encoding_rs::{DecoderResult, EncoderResult, GBK};

/// Why text could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// A character with no GBK form; `offset` is its byte offset in the UTF-8 input.
    #[error("character {ch:?} at offset {offset} has no GBK encoding")]
    Unmappable { ch: char, offset: usize },
    /// Bytes that are not valid GBK; `offset` is where the bad sequence starts.
    #[error("invalid GBK byte sequence at offset {offset}")]
    Malformed { offset: usize },
}

/// Strict GBK encoding: fails on the first character GBK cannot represent.
pub fn gbk_encode(s: &str) -> Result<Vec<u8>, TextError> {
    // GBK never needs more than 2 bytes per char, and UTF-8 never fewer than 1.
    let mut out = vec![0u8; s.len() * 2];
    let mut encoder = GBK.new_encoder();
    let (result, read, written) = encoder.encode_from_utf8_without_replacement(s, &mut out, true);
    match result {
        EncoderResult::InputEmpty => {
            out.truncate(written);
            Ok(out)
        }
        EncoderResult::Unmappable(ch) => Err(TextError::Unmappable {
            ch,
            offset: read.saturating_sub(ch.len_utf8()),
        }),
        // Unreachable with a 2x buffer; report as unmappable rather than panic.
        EncoderResult::OutputFull => Err(TextError::Unmappable {
            ch: '\u{FFFD}',
            offset: read,
        }),
    }
}

/// Strict GBK decoding: fails on the first invalid sequence.
pub fn gbk_decode(b: &[u8]) -> Result<String, TextError> {
    let mut decoder = GBK.new_decoder_without_bom_handling();
    let mut out = String::with_capacity(b.len() * 3 / 2 + 4);
    let (result, read) = decoder.decode_to_string_without_replacement(b, &mut out, true);
    match result {
        DecoderResult::InputEmpty => {
            // encoding_rs decodes GBK as GB18030 (four-byte forms, a few legacy mappings).
            // Strict means the bytes are exactly the GBK form of the text: re-encode and compare.
            match gbk_encode(&out) {
                Ok(again) if again == b => Ok(out),
                Ok(again) => {
                    let offset = again.iter().zip(b).take_while(|(x, y)| x == y).count();
                    Err(TextError::Malformed { offset })
                }
                Err(_) => {
                    let offset = first_non_gbk(b);
                    Err(TextError::Malformed { offset })
                }
            }
        }
        DecoderResult::Malformed(bad, unread) => {
            let offset = read.saturating_sub(usize::from(bad) + usize::from(unread));
            Err(TextError::Malformed { offset })
        }
        DecoderResult::OutputFull => Err(TextError::Malformed { offset: read }),
    }
}

/// Offset of the first character of `b` whose bytes do not survive a GBK round trip.
fn first_non_gbk(b: &[u8]) -> usize {
    let mut at = 0;
    while at < b.len() {
        let width = if b[at] < 0x80 {
            1
        } else if b.get(at + 1).is_some_and(|t| t.is_ascii_digit()) {
            4
        } else {
            2
        };
        let end = (at + width).min(b.len());
        let chunk = &b[at..end];
        let ok = GBK
            .decode_without_bom_handling_and_without_replacement(chunk)
            .and_then(|s| gbk_encode(&s).ok())
            .is_some_and(|again| again == chunk);
        if !ok {
            return at;
        }
        at = end;
    }
    0
}

/// Lossy GBK decoding: invalid sequences become U+FFFD. For display only.
pub fn gbk_decode_lossy(b: &[u8]) -> String {
    GBK.decode_without_bom_handling(b).0.into_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn chinese_roundtrip() {
        let s = "传奇2 user";
        let b = gbk_encode(s).unwrap();
        assert_eq!(&b[..4], &[0xB4, 0xAB, 0xC6, 0xE6]);
        assert_eq!(gbk_decode(&b).unwrap(), s);
        assert_eq!(gbk_decode_lossy(&b), s);
    }

    #[test]
    fn unmappable_is_an_error() {
        assert_eq!(
            gbk_encode("ab😀").unwrap_err(),
            TextError::Unmappable {
                ch: '😀',
                offset: 2
            }
        );
    }

    #[test]
    fn malformed_is_strict_error_and_lossy_replacement() {
        let bad = [b'a', b'b', 0xB4, 0x20];
        assert!(matches!(gbk_decode(&bad), Err(TextError::Malformed { .. })));
        assert!(gbk_decode_lossy(&bad).starts_with("ab\u{FFFD}"));
        assert!(gbk_decode(&[0xB4]).is_err(), "truncated double-byte char");
    }

    #[test]
    fn gb18030_only_forms_are_not_gbk() {
        // 0x81 0x30 0x81 0x30 is GB18030's four-byte form of U+0080: not GBK.
        assert_eq!(
            gbk_decode(b"ab\x81\x30\x81\x30"),
            Err(TextError::Malformed { offset: 2 })
        );
    }
}
