//! The account records carried by CM_ADDNEWUSER / CM_UPDATEUSER: Delphi `TUserEntry` and
//! `TUserEntryAdd`, fixed-size runs of Pascal short strings (1 length byte + capacity), GBK.

use crate::codec;
use crate::text::{self, TextError};

/// Why a record could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Fewer bytes than the record size.
    #[error("record needs {need} bytes, got {got}")]
    Short { need: usize, got: usize },
    /// A field's GBK bytes do not fit its capacity.
    #[error("field {field} is {len} bytes in GBK, capacity is {capacity}")]
    FieldTooLong {
        field: &'static str,
        len: usize,
        capacity: usize,
    },
    /// A length byte larger than the field's capacity.
    #[error("field {field} has length byte {len}, capacity is {capacity}")]
    BadLength {
        field: &'static str,
        len: usize,
        capacity: usize,
    },
    /// A field that is not valid GBK, or has no GBK form.
    #[error("field {field}: {source}")]
    Text {
        field: &'static str,
        source: TextError,
    },
}

/// Writes one Pascal short string field.
fn put_field(
    out: &mut [u8],
    at: &mut usize,
    field: &'static str,
    capacity: usize,
    value: &str,
) -> Result<(), RecordError> {
    let bytes = text::gbk_encode(value).map_err(|source| RecordError::Text { field, source })?;
    if bytes.len() > capacity {
        return Err(RecordError::FieldTooLong {
            field,
            len: bytes.len(),
            capacity,
        });
    }
    let slot = out
        .get_mut(*at..*at + 1 + capacity)
        .ok_or(RecordError::Short {
            need: *at + 1 + capacity,
            got: 0,
        })?;
    slot.fill(0);
    slot[0] = bytes.len() as u8;
    slot[1..=bytes.len()].copy_from_slice(&bytes);
    *at += 1 + capacity;
    Ok(())
}

/// Reads one Pascal short string field; the caller checked the total length.
fn get_field(
    src: &[u8],
    at: &mut usize,
    field: &'static str,
    capacity: usize,
) -> Result<String, RecordError> {
    let need = *at + 1 + capacity;
    let slot = src.get(*at..need).ok_or(RecordError::Short {
        need,
        got: src.len(),
    })?;
    let len = usize::from(slot[0]);
    if len > capacity {
        return Err(RecordError::BadLength {
            field,
            len,
            capacity,
        });
    }
    *at = need;
    text::gbk_decode(&slot[1..=len]).map_err(|source| RecordError::Text { field, source })
}

macro_rules! record {
    ($(#[$doc:meta])* $name:ident, $size:expr, { $( $(#[$fdoc:meta])* $field:ident : $cap:expr ),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $name { $( $(#[$fdoc])* pub $field: String ),+ }

        // The declared size must equal the sum of the fields (checked at compile time).
        const _: () = assert!(0 $( + 1 + $cap )+ == $size);

        impl $name {
            /// Raw size in bytes.
            pub const SIZE: usize = $size;
            /// Size once 6-bit encoded.
            pub const ENCODED_LEN: usize = codec::encoded_len($size);

            /// The raw record; fails naming the first field that does not fit or has no GBK form.
            pub fn to_bytes(&self) -> Result<[u8; $size], RecordError> {
                let mut out = [0u8; $size];
                let mut at = 0;
                $( put_field(&mut out, &mut at, stringify!($field), $cap, &self.$field)?; )+
                Ok(out)
            }

            /// Reads a raw record from the first `SIZE` bytes of `src` (extra bytes are ignored).
            pub fn from_bytes(src: &[u8]) -> Result<Self, RecordError> {
                if src.len() < Self::SIZE {
                    return Err(RecordError::Short { need: Self::SIZE, got: src.len() });
                }
                let mut at = 0;
                Ok($name { $( $field: get_field(src, &mut at, stringify!($field), $cap)? ),+ })
            }
        }
    };
}

record!(
    /// Delphi `TUserEntry`: 148 bytes.
    UserEntry, 148, {
        /// Login name.
        account: 10,
        /// Password as typed (only ever hashed by the LoginSrv).
        password: 10,
        /// Real name.
        user_name: 20,
        /// ID card number.
        ss_no: 14,
        /// Phone number.
        phone: 14,
        /// First recovery question.
        quiz: 20,
        /// First recovery answer.
        answer: 12,
        /// E-mail address.
        email: 40,
    }
);

record!(
    /// Delphi `TUserEntryAdd`: 101 bytes.
    UserEntryAdd, 101, {
        /// Second recovery question.
        quiz2: 20,
        /// Second recovery answer.
        answer2: 12,
        /// Birthday as typed.
        birthday: 10,
        /// Mobile phone number.
        mobile_phone: 13,
        /// Free text.
        memo: 20,
        /// Free text.
        memo2: 20,
    }
);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry() -> UserEntry {
        UserEntry {
            account: "user1".into(),
            password: "secret".into(),
            user_name: "张三".into(),
            ss_no: "110101".into(),
            phone: "555".into(),
            quiz: "q1".into(),
            answer: "a1".into(),
            email: "u@example.com".into(),
        }
    }

    #[test]
    fn sizes() {
        assert_eq!((UserEntry::SIZE, UserEntry::ENCODED_LEN), (148, 198));
        assert_eq!((UserEntryAdd::SIZE, UserEntryAdd::ENCODED_LEN), (101, 135));
    }

    #[test]
    fn layout_is_pascal_short_strings() {
        let b = entry().to_bytes().unwrap();
        assert_eq!(&b[0..6], b"\x05user1");
        assert_eq!(&b[6..11], &[0; 5], "padding is zero");
        assert_eq!(&b[11..18], b"\x06secret");
        assert_eq!(
            &b[22..27],
            &[4, 0xD5, 0xC5, 0xC8, 0xFD],
            "GBK user_name at offset 22"
        );
        assert_eq!(UserEntry::from_bytes(&b).unwrap(), entry());
        let add = UserEntryAdd {
            quiz2: "q2".into(),
            memo2: "end".into(),
            ..Default::default()
        };
        let b = add.to_bytes().unwrap();
        assert_eq!(&b[80..84], b"\x03end", "memo2 is the last 21 bytes");
        assert_eq!(UserEntryAdd::from_bytes(&b).unwrap(), add);
    }

    #[test]
    fn parsed_records_always_serialise_again() {
        // Found by the `records` fuzz target: GB18030's four-byte form C9 30 C9 37 decoded,
        // then could not be written back as GBK.
        let mut raw = [0u8; UserEntryAdd::SIZE];
        raw[80..85].copy_from_slice(&[4, 0xC9, 0x30, 0xC9, 0x37]);
        assert!(matches!(
            UserEntryAdd::from_bytes(&raw),
            Err(RecordError::Text { field: "memo2", .. })
        ));
    }

    #[test]
    fn errors_name_the_field() {
        let mut e = entry();
        e.account = "elevenchars".into();
        let err = e.to_bytes().unwrap_err();
        assert_eq!(
            err,
            RecordError::FieldTooLong {
                field: "account",
                len: 11,
                capacity: 10
            }
        );
        assert!(err.to_string().contains("account"));
        let mut e = entry();
        e.email = "😀".into();
        assert!(matches!(
            e.to_bytes(),
            Err(RecordError::Text { field: "email", .. })
        ));

        let mut b = entry().to_bytes().unwrap();
        assert_eq!(
            UserEntry::from_bytes(&b[..147]),
            Err(RecordError::Short {
                need: 148,
                got: 147
            })
        );
        b[11] = 11;
        assert_eq!(
            UserEntry::from_bytes(&b),
            Err(RecordError::BadLength {
                field: "password",
                len: 11,
                capacity: 10
            })
        );
    }
}
