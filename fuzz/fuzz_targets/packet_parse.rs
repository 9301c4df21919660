//! Packet parsing is total; an accepted packet holds only legal bytes and its body decodes
//! or fails without panicking.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mir2_proto::Packet;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::parse(Bytes::copy_from_slice(data)) {
        assert_eq!(data.first(), Some(&b'#'));
        assert_eq!(data.last(), Some(&b'!'));
        assert_eq!(p.body_offset() + p.body.len() + 1, data.len());
        let _ = p.body_decoded();
        let _ = p.body_parts(&[Some(148), None]);
    }
});
