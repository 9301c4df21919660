//! Splits a client stream (either direction) into whole `#…!` messages.
//!
//! Only bytes a real client sends are accepted: `#`, one check digit `1`-`9` right after it,
//! 6-bit text (`0x3C..=0x7B`), `!`, and a lone `*` between messages. Anything else is an
//! error: such a byte could inject `%…$` frames into the gate link (PROTOCOL.md §6.1).

use bytes::{Buf, Bytes, BytesMut};

use crate::codec::{first_non_alphabet, ByteDisplay};
use crate::header::MsgHeader;
use crate::packet::check_digit;

/// Why a client stream must be closed. Every variant is fatal for the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientFrameError {
    /// A byte no real client sends at that place; `offset` counts from the stream start.
    #[error("forbidden byte {} at stream offset {offset}", ByteDisplay(*byte))]
    ForbiddenByte { offset: u64, byte: u8 },
    /// A message (counting `#` and `!`) longer than the configured maximum.
    #[error("message longer than {max} bytes")]
    TooLong { max: usize },
    /// A message whose text after the check digit is shorter than a header; `len` is the
    /// whole message length including `#` and `!`.
    #[error("message of {len} bytes is shorter than its 16-char header")]
    TooShort { len: usize },
}

impl ClientFrameError {
    /// Stable label for metrics and close reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            ClientFrameError::ForbiddenByte { .. } => "forbidden_byte",
            ClientFrameError::TooLong { .. } => "oversize",
            ClientFrameError::TooShort { .. } => "short_packet",
        }
    }
}

/// Incremental `#…!` framer. Feed it the connection's read buffer after every read.
#[derive(Debug, Clone)]
pub struct ClientFramer {
    /// Largest message accepted, counting `#` and `!`; bounds the buffered partial message.
    max_message: usize,
    /// How many bytes at the front of the buffer were already validated as a message prefix,
    /// so re-polling a partial message does not rescan it. 0 = between messages.
    scanned: usize,
    /// Stream offset of the buffer's first byte, for error reports.
    consumed: u64,
}

impl ClientFramer {
    /// A framer accepting messages of at most `max_message_bytes` (counting `#` and `!`).
    /// Values below the smallest valid message (18) are raised to 18.
    pub fn new(max_message_bytes: usize) -> Self {
        ClientFramer {
            max_message: max_message_bytes.max(MIN_MESSAGE),
            scanned: 0,
            consumed: 0,
        }
    }

    /// The configured maximum message size.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// Changes the maximum for the messages still to come (a configuration reload);
    /// raised to 18 like [`ClientFramer::new`].
    pub fn set_max_message(&mut self, max_message_bytes: usize) {
        self.max_message = max_message_bytes.max(MIN_MESSAGE);
    }

    /// Stream offset of the next unconsumed byte.
    pub fn stream_offset(&self) -> u64 {
        self.consumed
    }

    fn forbidden(&self, at: usize, byte: u8) -> ClientFrameError {
        ClientFrameError::ForbiddenByte {
            offset: self.consumed + at as u64,
            byte,
        }
    }

    /// Returns the next whole `#…!` message, `Ok(None)` when more bytes are needed (the
    /// partial tail stays in `buf`). Lone `*` bytes between messages are consumed.
    /// After an error the stream must be closed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, ClientFrameError> {
        if self.scanned == 0 {
            let acks = buf.iter().take_while(|&&b| b == b'*').count();
            if acks > 0 {
                buf.advance(acks);
                self.consumed += acks as u64;
            }
            match buf.first() {
                None => return Ok(None),
                Some(b'#') => self.scanned = 1,
                Some(&byte) => return Err(self.forbidden(0, byte)),
            }
        }
        let body_start = match buf.get(1).copied() {
            None => return Ok(None),
            Some(b) if check_digit(b).is_some() => 2,
            Some(_) => 1,
        };
        let from = self.scanned.max(body_start);
        // Never look (or wait) past the largest allowed message.
        let limit = buf.len().min(self.max_message);
        let window = buf.get(from..limit).unwrap_or_default();
        match first_non_alphabet(window) {
            Some(i) => {
                let at = from + i;
                let byte = window[i];
                if byte != b'!' {
                    return Err(self.forbidden(at, byte));
                }
                let len = at + 1;
                if at - body_start < MsgHeader::ENCODED_LEN {
                    return Err(ClientFrameError::TooShort { len });
                }
                self.scanned = 0;
                self.consumed += len as u64;
                Ok(Some(buf.split_to(len).freeze()))
            }
            None if buf.len() >= self.max_message => Err(ClientFrameError::TooLong {
                max: self.max_message,
            }),
            None => {
                self.scanned = limit;
                Ok(None)
            }
        }
    }
}

/// `#` + 16 header chars + `!`.
const MIN_MESSAGE: usize = MsgHeader::ENCODED_LEN + 2;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const LOGIN: &[u8] = b"#1<<<<<I@C<<<<<<<<YSIaX^ylTSIo!";
    const REPLY: &[u8] = b"#JO<<<=D><<<<<<<<HODsG_<jH>tmGoXmH?<kHODoI?P!";

    fn all(framer: &mut ClientFramer, buf: &mut BytesMut) -> Result<Vec<Bytes>, ClientFrameError> {
        let mut out = Vec::new();
        while let Some(m) = framer.decode(buf)? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn many_messages_per_read_with_acks() {
        let mut f = ClientFramer::new(8192);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"*");
        buf.extend_from_slice(LOGIN);
        buf.extend_from_slice(b"**");
        buf.extend_from_slice(REPLY);
        buf.extend_from_slice(b"*");
        let msgs = all(&mut f, &mut buf).unwrap();
        assert_eq!(
            msgs,
            vec![Bytes::from_static(LOGIN), Bytes::from_static(REPLY)]
        );
        assert!(buf.is_empty());
        assert_eq!(f.stream_offset(), (LOGIN.len() + REPLY.len() + 4) as u64);
    }

    #[test]
    fn byte_at_a_time() {
        let mut f = ClientFramer::new(8192);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in LOGIN.iter().chain(REPLY) {
            buf.extend_from_slice(&[b]);
            got.extend(all(&mut f, &mut buf).unwrap());
        }
        assert_eq!(
            got,
            vec![Bytes::from_static(LOGIN), Bytes::from_static(REPLY)]
        );
    }

    #[test]
    fn partial_tail_stays_in_buffer() {
        let mut f = ClientFramer::new(8192);
        let mut buf = BytesMut::from(&LOGIN[..10]);
        assert_eq!(f.decode(&mut buf).unwrap(), None);
        assert_eq!(&buf[..], &LOGIN[..10]);
        buf.extend_from_slice(&LOGIN[10..]);
        assert_eq!(f.decode(&mut buf).unwrap().as_deref(), Some(LOGIN));
    }

    #[test]
    fn injection_is_a_forbidden_byte_with_stream_offset() {
        let mut f = ClientFramer::new(8192);
        let mut buf = BytesMut::from(LOGIN);
        buf.extend_from_slice(b"#1<<<$%X123$");
        assert_eq!(f.decode(&mut buf).unwrap().as_deref(), Some(LOGIN));
        let err = f.decode(&mut buf).unwrap_err();
        assert_eq!(
            err,
            ClientFrameError::ForbiddenByte {
                offset: LOGIN.len() as u64 + 5,
                byte: b'$'
            }
        );
        assert_eq!(err.reason(), "forbidden_byte");
    }

    #[test]
    fn forbidden_outside_and_inside_messages() {
        for (input, offset, byte) in [
            (&b"%X1$"[..], 0u64, b'%'),
            (b"\x00", 0, 0),
            (b"*a", 1, b'a'),
            (b"#0<<<<", 1, b'0'),
            (b"#12<<<", 2, b'2'),
            (b"#<<<#<<<", 4, b'#'),
            (b"#1<<<<\xb0", 6, 0xb0),
            (b"#<<<<<<<<<<<<<<<<<<\n", 19, b'\n'),
        ] {
            let mut f = ClientFramer::new(8192);
            let mut buf = BytesMut::from(input);
            assert_eq!(
                f.decode(&mut buf),
                Err(ClientFrameError::ForbiddenByte { offset, byte }),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn too_short() {
        let mut f = ClientFramer::new(8192);
        let mut buf = BytesMut::from(&b"#1<<<<<I@C<<<<<<<!"[..]);
        assert_eq!(
            f.decode(&mut buf),
            Err(ClientFrameError::TooShort { len: 18 })
        );
        let mut f = ClientFramer::new(8192);
        let mut buf = BytesMut::from(&b"#!"[..]);
        assert_eq!(f.decode(&mut buf).unwrap_err().reason(), "short_packet");
        // Exactly a header is fine, with and without digit.
        for m in [&b"#1<<<<<I@C<<<<<<<<!"[..], b"#<<<<<I@C<<<<<<<<!"] {
            let mut f = ClientFramer::new(8192);
            assert_eq!(
                f.decode(&mut BytesMut::from(m)).unwrap().as_deref(),
                Some(m)
            );
        }
    }

    #[test]
    fn too_long_is_detected_without_waiting_for_more() {
        let max = 64;
        // A message of exactly max bytes passes.
        let mut exact = vec![b'#'];
        exact.extend(std::iter::repeat_n(b'<', max - 2));
        exact.push(b'!');
        let mut f = ClientFramer::new(max);
        assert_eq!(
            f.decode(&mut BytesMut::from(&exact[..]))
                .unwrap()
                .as_deref(),
            Some(&exact[..])
        );
        // One more byte fails as soon as max bytes are buffered without '!'.
        let mut f = ClientFramer::new(max);
        let mut buf = BytesMut::from(&exact[..max - 1]);
        buf.extend_from_slice(b"<");
        assert_eq!(f.decode(&mut buf), Err(ClientFrameError::TooLong { max }));
        // Bytes split across calls: still bounded.
        let mut f = ClientFramer::new(max);
        let mut buf = BytesMut::new();
        let mut result = Ok(None);
        for _ in 0..max {
            buf.extend_from_slice(if buf.is_empty() { b"#" } else { b"<" });
            result = f.decode(&mut buf);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(ClientFrameError::TooLong { max }));
        assert_eq!(buf.len(), max);
    }

    #[test]
    fn block_scanner_finds_first_bad_byte() {
        for len in [0usize, 1, 31, 32, 33, 64, 100] {
            let clean = vec![b'<'; len];
            assert_eq!(first_non_alphabet(&clean), None);
            for bad_at in 0..len {
                let mut s = clean.clone();
                s[bad_at] = b'!';
                if bad_at + 1 < len {
                    s[len - 1] = 0xFF;
                }
                assert_eq!(first_non_alphabet(&s), Some(bad_at));
            }
        }
    }
}
