//! Packet parsing is total; an accepted packet holds only legal bytes and its body decodes
//! or fails without panicking.
use bytes::Bytes;
use mir2_proto::Packet;

/// The property, for one input; panics when it does not hold.
pub fn check(data: &[u8]) {
    if let Ok(p) = Packet::parse(Bytes::copy_from_slice(data)) {
        assert_eq!(data.first(), Some(&b'#'));
        assert_eq!(data.last(), Some(&b'!'));
        assert_eq!(p.body_offset() + p.body.len() + 1, data.len());
        let _ = p.body_decoded();
        let _ = p.body_parts(&[Some(148), None]);
    }
}
