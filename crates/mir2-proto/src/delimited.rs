//! The scan shared by the two peer-to-peer framings: the gate link's `%…$` and the
//! game-server port's `(…)`.
//!
//! Both streams put each frame between an opening and a closing byte that never occur
//! inside it, may carry separators or junk between frames, and are resynchronised the
//! way the Delphi receivers do it: an opening byte inside an unterminated frame
//! abandons what came before and starts the frame there. The client's `#…!` framing is
//! not one of these: it must also judge every byte inside the frame
//! ([`crate::client_framer`]).

use bytes::{Buf, Bytes, BytesMut};

/// A frame grew past the bound without its closing byte; fatal for the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTooLong {
    /// The bound, counting both delimiters.
    pub max: usize,
}

/// Incremental framer for frames written `open body close`.
#[derive(Debug, Clone)]
pub struct DelimitedFramer {
    /// The byte that starts a frame.
    open: u8,
    /// The byte that ends a frame.
    close: u8,
    /// Bytes between frames that are expected separators, not junk (a Wemade link puts
    /// 0x00 after each frame; game servers end lines with CR LF).
    separator: fn(u8) -> bool,
    /// Largest frame accepted, counting both delimiters; bounds the buffered partial frame.
    max_frame: usize,
    /// Bytes at the front of the buffer already scanned inside the current frame
    /// (0 = not inside a frame), so re-polling a partial frame does not rescan it.
    scanned: usize,
    /// Bytes skipped outside frames or dropped by a restart, separators excepted.
    junk: u64,
}

impl DelimitedFramer {
    /// A framer for `open … close` frames of at most `max_frame_bytes` (counting both
    /// delimiters; at least 2). `separator` names the bytes between frames that are not junk.
    pub fn new(open: u8, close: u8, separator: fn(u8) -> bool, max_frame_bytes: usize) -> Self {
        DelimitedFramer {
            open,
            close,
            separator,
            max_frame: max_frame_bytes.max(2),
            scanned: 0,
            junk: 0,
        }
    }

    /// The bound on one frame, counting both delimiters.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Bytes skipped so far, separators excepted.
    pub fn junk_skipped(&self) -> u64 {
        self.junk
    }

    fn skip(&mut self, buf: &mut BytesMut, n: usize) {
        let separator = self.separator;
        self.junk += buf
            .get(..n)
            .unwrap_or_default()
            .iter()
            .filter(|&&b| !separator(b))
            .count() as u64;
        buf.advance(n);
    }

    /// The body (between the delimiters) of the next whole frame, `Ok(None)` when more
    /// bytes are needed.
    pub fn next_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameTooLong> {
        loop {
            if self.scanned == 0 {
                match memchr::memchr(self.open, buf) {
                    Some(start) => {
                        self.skip(buf, start);
                        self.scanned = 1;
                    }
                    None => {
                        let all = buf.len();
                        self.skip(buf, all);
                        return Ok(None);
                    }
                }
            }
            let limit = buf.len().min(self.max_frame);
            let window = buf.get(self.scanned..limit).unwrap_or_default();
            match memchr::memchr2(self.close, self.open, window) {
                Some(i) if window.get(i) == Some(&self.close) => {
                    let end = self.scanned + i;
                    self.scanned = 0;
                    let frame = buf.split_to(end + 1).freeze();
                    return Ok(Some(frame.slice(1..end)));
                }
                Some(i) => {
                    // An unterminated frame: restart at the new opening byte.
                    let restart = self.scanned + i;
                    self.skip(buf, restart);
                    self.scanned = 1;
                }
                None if buf.len() >= self.max_frame => {
                    return Err(FrameTooLong {
                        max: self.max_frame,
                    });
                }
                None => {
                    self.scanned = limit.max(1);
                    return Ok(None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framer(max: usize) -> DelimitedFramer {
        DelimitedFramer::new(b'<', b'>', |b| b == b'\n', max)
    }

    fn all(f: &mut DelimitedFramer, buf: &mut BytesMut) -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Ok(Some(body)) = f.next_frame(buf) {
            out.push(body);
        }
        out
    }

    #[test]
    fn frames_separators_and_junk() {
        let mut f = framer(64);
        let mut b = BytesMut::from(&b"x<a>\n<bc>yz<"[..]);
        assert_eq!(all(&mut f, &mut b), vec![&b"a"[..], &b"bc"[..]]);
        assert_eq!(f.junk_skipped(), 3, "x, y, z; the separator is not junk");
        assert_eq!(&b[..], b"<", "the partial frame stays buffered");
    }

    #[test]
    fn an_opening_byte_restarts_an_unterminated_frame() {
        let mut f = framer(64);
        let mut b = BytesMut::from(&b"<ab<cd>"[..]);
        assert_eq!(all(&mut f, &mut b), vec![&b"cd"[..]]);
        assert_eq!(f.junk_skipped(), 3);
    }

    #[test]
    fn a_frame_split_across_reads_is_scanned_once_and_found() {
        let mut f = framer(64);
        let mut b = BytesMut::new();
        for &byte in b"<hello>" {
            b.extend_from_slice(&[byte]);
            if let Some(body) = f.next_frame(&mut b).expect("bounded") {
                assert_eq!(&body[..], b"hello");
                return;
            }
        }
        panic!("the frame was never found");
    }

    #[test]
    fn a_frame_at_the_bound_passes_one_past_it_is_fatal() {
        let mut f = framer(4);
        let mut b = BytesMut::from(&b"<ab>"[..]);
        assert_eq!(all(&mut f, &mut b), vec![&b"ab"[..]]);
        let mut b = BytesMut::from(&b"<abc"[..]);
        assert_eq!(f.next_frame(&mut b), Err(FrameTooLong { max: 4 }));
    }
}
