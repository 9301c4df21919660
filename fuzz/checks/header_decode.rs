//! Header decoding is total and a bijection on valid 16-char text.
use mir2_proto::MsgHeader;

/// The property, for one input; panics when it does not hold.
pub fn check(data: &[u8]) {
    if let Ok(h) = MsgHeader::decode(data) {
        assert_eq!(&h.encode()[..], data);
        assert_eq!(MsgHeader::from_bytes(&h.to_bytes()), h);
    }
}
