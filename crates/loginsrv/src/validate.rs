//! Validation of client-supplied account names, passwords and free text.

use mir2_proto::text::gbk_encode;
use unicode_normalization::UnicodeNormalization as _;

use crate::config::MAX_PASSWORD_BYTES;

/// The classic client's TUserEntry account field holds 10 bytes.
pub const MAX_ACCOUNT_BYTES: usize = 10;

/// Why a client value was refused (also the metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Empty or longer than the client's field.
    Length,
    /// A character outside the allowed set.
    Character,
    /// Not representable in GBK.
    Encoding,
}

impl Invalid {
    /// Metric / log label.
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::Length => "bad_length",
            Invalid::Character => "bad_character",
            Invalid::Encoding => "bad_encoding",
        }
    }
}

/// Account names: 1..=10 GBK bytes of ASCII letters, digits, `_` and CJK
/// ideographs. Everything else (notably `/ \t # ! % $` and controls, which
/// carry meaning on the wire) is refused.
pub fn account(name: &str) -> Result<(), Invalid> {
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || is_cjk(c))
    {
        return Err(Invalid::Character);
    }
    let gbk = gbk_encode(name).map_err(|_| Invalid::Encoding)?;
    if gbk.is_empty() || gbk.len() > MAX_ACCOUNT_BYTES {
        return Err(Invalid::Length);
    }
    Ok(())
}

/// The lookup key: the name in Unicode NFC, compared ASCII-case-insensitively.
///
/// NFC maps each CJK compatibility ideograph (U+F900..U+FAFF) with a canonical
/// equivalent to its unified form, so `郎` typed as U+F92C and as U+90CE — the
/// same character, drawn the same — name one account. NFC rather than NFKC:
/// the only other characters names may hold are ASCII letters, digits and `_`,
/// which neither form changes, and NFKC's extra folding (width, ligatures,
/// circled digits) would merge characters that are not the same.
pub fn account_key(name: &str) -> String {
    name.nfc().collect::<String>().to_ascii_lowercase()
}

/// Passwords: `min..=10` GBK bytes, no control characters and no `/`
/// (CM_IDPASSWORD separates account and password with it).
pub fn password(pw: &str, min_len: usize) -> Result<(), Invalid> {
    if pw.chars().any(|c| c.is_control() || c == '/') {
        return Err(Invalid::Character);
    }
    let gbk = gbk_encode(pw).map_err(|_| Invalid::Encoding)?;
    if gbk.len() < min_len || gbk.len() > MAX_PASSWORD_BYTES {
        return Err(Invalid::Length);
    }
    Ok(())
}

/// Free text fields (names, quiz, memo): no control characters (tabs
/// separate CM_GETBACKPASSWORD fields) and at most `max` GBK bytes.
pub fn text(s: &str, max: usize) -> Result<(), Invalid> {
    if s.chars().any(char::is_control) {
        return Err(Invalid::Character);
    }
    let gbk = gbk_encode(s).map_err(|_| Invalid::Encoding)?;
    if gbk.len() > max {
        return Err(Invalid::Length);
    }
    Ok(())
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF     // CJK Unified Ideographs (all of GBK's hanzi)
        | 0x3400..=0x4DBF   // Extension A
        | 0xF900..=0xFAFF) // Compatibility Ideographs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names() {
        assert_eq!(account("player_01"), Ok(()));
        assert_eq!(account("传奇玩家"), Ok(()));
        assert_eq!(account(""), Err(Invalid::Length));
        assert_eq!(account("abcdefghijk"), Err(Invalid::Length));
        assert_eq!(
            account("传奇传奇传奇"),
            Err(Invalid::Length),
            "12 GBK bytes"
        );
        for bad in [
            "a/b", "a\tb", "a#", "a!", "a%", "a$", "a\\b", "a b", "a\u{0}", "é",
        ] {
            assert_eq!(account(bad), Err(Invalid::Character), "{bad:?}");
        }
        assert_eq!(account_key("AdMin"), "admin");
        // A compatibility ideograph and its unified form are one account.
        assert_eq!(account_key("\u{F92C}a"), account_key("\u{90CE}A"));
        assert_eq!(account_key("\u{F92C}"), "\u{90CE}");
    }

    #[test]
    fn passwords_and_text() {
        assert_eq!(password("abc", 3), Ok(()));
        assert_eq!(password("ab", 3), Err(Invalid::Length));
        assert_eq!(password("abcdefghijk", 3), Err(Invalid::Length));
        assert_eq!(password("a/bc", 3), Err(Invalid::Character));
        assert_eq!(password("a\tbc", 3), Err(Invalid::Character));
        assert_eq!(text("hello 世界", 20), Ok(()));
        assert_eq!(text("a\tb", 20), Err(Invalid::Character));
        assert_eq!(text("abcdef", 5), Err(Invalid::Length));
    }
}
