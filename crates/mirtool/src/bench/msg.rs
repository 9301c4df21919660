//! The relay message: a real client packet whose every byte is a function of
//! (client, seq), so each reply can be checked without remembering what was sent.
//!
//! `#` + check digit + header(ident CM_IDPASSWORD, recog = seq, param/tag =
//! client) + encode(body) + `!`, where the body is a pseudo-random stream
//! seeded by (client, seq): a flipped byte anywhere shows up as a mismatch.

use bytes::BufMut;
use mir2_proto::codec;
use mir2_proto::MsgHeader;

/// CM_IDPASSWORD: the most common login-path message, so proxies see a realistic id.
const IDENT: u16 = 2001;
/// `#`, check digit, 16 header chars and `!`.
const FRAMING_BYTES: usize = 1 + 1 + MsgHeader::ENCODED_LEN + 1;

/// What a reply turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A well-formed reply for this client carrying `seq` (not yet checked against the expected seq).
    Seq(u32),
    /// Not a reply we could have sent: wrong client, bad header or bytes differ.
    Corrupted,
}

/// Builds and checks messages of one size; holds the scratch space so neither allocates.
pub struct MessageFactory {
    /// Raw body bytes before 6-bit encoding.
    body_bytes: usize,
    /// Raw body of the message being built or checked.
    body: Vec<u8>,
    /// Expected encoding of a message, for byte-exact comparison with a reply.
    expected: Vec<u8>,
}

impl MessageFactory {
    pub fn new(body_bytes: usize) -> Self {
        Self {
            body_bytes,
            body: vec![0; body_bytes],
            expected: Vec::with_capacity(Self::wire_len_for(body_bytes)),
        }
    }

    /// Encoded size of one message.
    pub fn wire_len(&self) -> usize {
        Self::wire_len_for(self.body_bytes)
    }

    fn wire_len_for(body_bytes: usize) -> usize {
        FRAMING_BYTES + codec::encoded_len(body_bytes)
    }

    /// Appends the message for (client, seq) to `dst`.
    pub fn write(&mut self, client: u32, seq: u32, dst: &mut impl BufMut) {
        fill_body(&mut self.body, client, seq);
        dst.put_u8(b'#');
        dst.put_u8(check_digit(seq));
        dst.put_slice(&header(client, seq).encode());
        codec::encode_into(&self.body, dst);
        dst.put_u8(b'!');
    }

    /// Checks one whole `#…!` reply from `client`.
    pub fn verify(&mut self, client: u32, frame: &[u8]) -> Verdict {
        let Some(hdr_text) = frame.get(2..2 + MsgHeader::ENCODED_LEN) else {
            return Verdict::Corrupted;
        };
        let Ok(h) = MsgHeader::decode(hdr_text) else {
            return Verdict::Corrupted;
        };
        let seq = h.recog as u32;
        let mut expected = std::mem::take(&mut self.expected);
        expected.clear();
        self.write(client, seq, &mut expected);
        let verdict = if expected.as_slice() == frame {
            Verdict::Seq(seq)
        } else {
            Verdict::Corrupted
        };
        self.expected = expected;
        verdict
    }
}

fn header(client: u32, seq: u32) -> MsgHeader {
    MsgHeader::new(IDENT, seq as i32, client as u16, (client >> 16) as u16, 0)
}

/// Cycles `1`..`9` like a real client.
fn check_digit(seq: u32) -> u8 {
    b'1' + (seq % 9) as u8
}

/// splitmix64: cheap, and every output bit depends on every seed bit.
fn fill_body(body: &mut [u8], client: u32, seq: u32) {
    let mut state = (u64::from(client) << 32) | u64::from(seq);
    for chunk in body.chunks_mut(8) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let bytes = z.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bytes::BytesMut;
    use mir2_proto::ClientFramer;

    #[test]
    fn message_is_a_client_packet_and_verifies() {
        let mut f = MessageFactory::new(30);
        let mut buf = BytesMut::new();
        f.write(7, 12345, &mut buf);
        assert_eq!(buf.len(), f.wire_len());
        assert_eq!(f.wire_len(), 19 + 40);
        let mut framer = ClientFramer::new(8192);
        let frame = framer.decode(&mut buf).unwrap().unwrap();
        assert_eq!(f.verify(7, &frame), Verdict::Seq(12345));
        assert_eq!(
            f.verify(8, &frame),
            Verdict::Corrupted,
            "another client's reply"
        );
    }

    #[test]
    fn any_flipped_byte_is_corruption() {
        let mut f = MessageFactory::new(30);
        let mut buf = Vec::new();
        f.write(3, 99, &mut buf);
        for i in 1..buf.len() - 1 {
            let mut bad = buf.clone();
            bad[i] ^= 1;
            assert_ne!(
                f.verify(3, &bad),
                Verdict::Seq(99),
                "flip at {i} went unnoticed"
            );
        }
    }
}
