//! The gate's whole client path, bytes in to link frames out: whatever a client
//! sends, the link carries exactly the whole messages the client framer accepted,
//! each as one data frame of the session, none holding a byte a real client never
//! sends; nothing after a rejected byte is forwarded; and no client input can make
//! the LoginSrv see another frame (an open, a close, another session's data).
use bytes::{Bytes, BytesMut};
use mir2_proto::client_framer::ClientFramer;
use mir2_proto::codec;
use mir2_proto::link::{self, Dialect, GateFrame, LinkFramer};

/// The session id every forwarded message must carry.
const ID: u32 = 7;

/// The property, for one input; panics when it does not hold.
pub fn check(data: &[u8]) {
    let Some((&head, input)) = data.split_first() else {
        return;
    };
    let dialect = Dialect::ALL[usize::from(head) % Dialect::ALL.len()];
    let max = 18 + usize::from(head) * 4;

    // Client side: what the gate's handler does with each read.
    let mut framer = ClientFramer::new(max);
    let mut buf = BytesMut::from(input);
    let mut forwarded = Vec::new();
    let mut wire = BytesMut::new();
    while let Ok(Some(message)) = framer.decode(&mut buf) {
        link::write_data(dialect, &mut wire, ID, &message);
        forwarded.push(message);
    }

    // LoginSrv side: every frame on the wire is one of ours, in order.
    let mut link_framer = LinkFramer::new(max + 32);
    let mut seen: Vec<Bytes> = Vec::new();
    loop {
        match link_framer.next_frame(&mut wire) {
            Ok(Some(body)) => match link::parse_gate_frame(dialect, body) {
                Ok(GateFrame::Data { id, data }) => {
                    assert_eq!(id, ID, "a client reached another session");
                    seen.push(data);
                }
                Ok(other) => panic!("client bytes produced a {other:?} frame"),
                Err(e) => panic!("the gate wrote a frame the LoginSrv cannot parse: {e}"),
            },
            Ok(None) => break,
            Err(e) => panic!("the gate wrote an unframable link stream: {e}"),
        }
    }
    assert!(wire.is_empty(), "bytes left outside any frame");
    assert_eq!(seen, forwarded);
    for message in &seen {
        assert!(message.len() <= max);
        assert_eq!(message.first(), Some(&b'#'));
        assert_eq!(message.last(), Some(&b'!'));
        let inner = &message[1..message.len() - 1];
        for (i, &b) in inner.iter().enumerate() {
            assert!(
                codec::is_alphabet(b) || (i == 0 && (b'1'..=b'9').contains(&b)),
                "forwarded a byte a real client never sends: {b:#04x}"
            );
        }
    }
}
