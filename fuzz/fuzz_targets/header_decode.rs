//! Header decoding is total and a bijection on valid 16-char text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mir2_proto::MsgHeader;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = MsgHeader::decode(data) {
        assert_eq!(&h.encode()[..], data);
        assert_eq!(MsgHeader::from_bytes(&h.to_bytes()), h);
    }
});
