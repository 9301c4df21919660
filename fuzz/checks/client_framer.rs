//! The client framer never panics, never emits a message with a forbidden byte, never lets
//! a waiting partial message reach the bound, and gives the same result however the input
//! is chunked (chunk sizes come from the first input bytes).
use bytes::Bytes;
use mir2_proto::client_framer::{ClientFrameError, ClientFramer};
use mir2_proto::codec;

use crate::chunked;

fn run(input: &[u8], cuts: &[u8], max: usize) -> (Vec<Bytes>, Option<ClientFrameError>) {
    let mut framer = ClientFramer::new(max);
    let bound = framer.max_message();
    chunked::feed(input, cuts, bound, |buf| framer.decode(buf))
}

/// The property, for one input; panics when it does not hold.
pub fn check(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let ncuts = usize::from(head % 8).min(rest.len());
    let (cuts, input) = rest.split_at(ncuts);
    let max = 18 + usize::from(head) * 2;
    let (whole, whole_err) = run(input, &[], max);
    let (split, split_err) = run(input, cuts, max);
    assert_eq!(whole, split);
    assert_eq!(whole_err, split_err);
    for m in &whole {
        assert!(m.len() <= max);
        assert_eq!(m.first(), Some(&b'#'));
        assert_eq!(m.last(), Some(&b'!'));
        for (i, &b) in m.iter().enumerate().take(m.len() - 1).skip(1) {
            assert!(codec::is_alphabet(b) || (i == 1 && (b'1'..=b'9').contains(&b)));
        }
        assert!(mir2_proto::Packet::parse(m.clone()).is_ok());
    }
}
