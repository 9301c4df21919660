//! Strict 6-bit decoding is total, and whatever it accepts re-encodes to the same text
//! when the dropped tail bits are zero.
use mir2_proto::codec;

/// The property, for one input; panics when it does not hold.
pub fn check(data: &[u8]) {
    match codec::decode(data) {
        Ok(bytes) => {
            assert!(data.iter().all(|&b| codec::is_alphabet(b)));
            assert_eq!(bytes.len(), codec::decoded_len(data.len()));
            let again = codec::encode(&bytes);
            assert_eq!(again.len(), data.len());
            assert_eq!(codec::decode(&again).ok().as_deref(), Some(&bytes[..]));
        }
        Err(codec::DecodeError::BadChar { offset, byte }) => {
            assert_eq!(data.get(offset), Some(&byte))
        }
        Err(codec::DecodeError::BadLength { len }) => assert_eq!(len % 4, 1),
    }
}
