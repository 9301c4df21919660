//! The link framer and both frame parsers are total; the framer is bounded, frames never
//! contain '%' or '$', and chunking does not change the result.
use bytes::Bytes;
use mir2_proto::link::{self, Dialect, LinkError, LinkFramer};

use crate::chunked;

fn run(input: &[u8], cuts: &[u8], max: usize) -> (Vec<Bytes>, Option<LinkError>, u64) {
    let mut framer = LinkFramer::new(max);
    let (out, err) = chunked::feed(input, cuts, max, |buf| framer.next_frame(buf));
    (out, err, framer.junk_skipped())
}

/// The property, for one input; panics when it does not hold.
pub fn check(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let ncuts = usize::from(head % 8).min(rest.len());
    let (cuts, input) = rest.split_at(ncuts);
    let max = 2 + usize::from(head);
    let whole = run(input, &[], max);
    let split = run(input, cuts, max);
    assert_eq!(whole.0, split.0);
    assert_eq!(whole.1, split.1);
    if whole.1.is_none() {
        assert_eq!(whole.2, split.2);
    }
    for body in whole.0 {
        assert!(body.len() + 2 <= max);
        assert!(!body.contains(&b'%') && !body.contains(&b'$'));
        for d in Dialect::ALL {
            let _ = link::parse_server_frame(d, body.clone());
            let _ = link::parse_gate_frame(d, body.clone());
        }
        let _ = link::detect_gate_frame(body);
    }
    // The parsers must also be total on raw input, not only on framed bodies.
    for d in Dialect::ALL {
        let _ = link::parse_server_frame(d, Bytes::copy_from_slice(input));
        let _ = link::parse_gate_frame(d, Bytes::copy_from_slice(input));
    }
    let _ = link::detect_gate_frame(Bytes::copy_from_slice(input));
}
