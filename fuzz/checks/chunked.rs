//! Feeds one input to an incremental framer whole or in chunks whose sizes come from the
//! fuzz input, so a property can check that chunking never changes what is framed.
use bytes::BytesMut;

/// Feeds `input` to `next` (one poll of a framer) in chunks of the sizes in `cuts`
/// (cycled; everything at once when empty), polling after each chunk until it needs more
/// bytes, and stops at the first error. After each chunk the buffered rest must stay
/// under `bound`: a framer never holds a partial frame as long as its limit.
pub fn feed<T, E>(
    input: &[u8],
    cuts: &[u8],
    bound: usize,
    mut next: impl FnMut(&mut BytesMut) -> Result<Option<T>, E>,
) -> (Vec<T>, Option<E>) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut cut = cuts.iter().cycle();
    while pos < input.len() {
        let n = match cut.next() {
            Some(&c) => usize::from(c).max(1),
            None => input.len(),
        };
        let end = (pos + n).min(input.len());
        buf.extend_from_slice(&input[pos..end]);
        pos = end;
        loop {
            match next(&mut buf) {
                Ok(Some(frame)) => out.push(frame),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
        assert!(buf.len() < bound);
    }
    (out, None)
}
