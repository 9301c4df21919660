//! PROXY header decoding is total: any bytes get a verdict without panicking, a
//! complete header never claims more bytes than it was given or than the bound, and
//! more bytes never change a verdict that was not `Incomplete`.
use netcore::proxy::header::{decode, Decoded, MAX_HEADER_BYTES};
use netcore::ProxyProtocol;

/// The property, for one input; panics when it does not hold.
pub fn check(data: &[u8]) {
    for accept in [ProxyProtocol::V1, ProxyProtocol::V2, ProxyProtocol::Any] {
        let whole = decode(accept, data);
        match whole {
            Decoded::Incomplete => assert!(data.len() < MAX_HEADER_BYTES),
            Decoded::Complete { len, .. } => assert!(len <= data.len() && len <= MAX_HEADER_BYTES),
            Decoded::Missing | Decoded::Invalid(_) => {}
        }
        // Split at every byte, as reads may deliver it: an early verdict is final.
        for cut in 0..data.len().min(MAX_HEADER_BYTES + 1) {
            let early = decode(accept, &data[..cut]);
            if early != Decoded::Incomplete {
                assert_eq!(early, whole, "verdict changed after {cut} bytes");
            }
        }
    }
}
