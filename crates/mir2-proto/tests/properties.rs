//! Property tests: codec and header roundtrips, framer totality and split invariance,
//! link frames roundtripping through writer, framer and parser in every preset and in
//! random valid frame tables.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{Bytes, BytesMut};
use mir2_proto::client_framer::{ClientFrameError, ClientFramer};
use mir2_proto::link::{
    self, BlockLetter, Dialect, Frames, GateFrame, LinkError, LinkFramer, ServerFrame,
};
use mir2_proto::records::{UserEntry, UserEntryAdd};
use mir2_proto::{codec, packet, MsgHeader, Packet};
use proptest::prelude::*;

// ------------------------------------------------------------------ helpers

/// Feeds `input` to `step` in chunks whose sizes come from `cuts`, collecting every item
/// until the first error (after which the stream is dead, as in the gate).
fn run_chunked<T, E>(
    input: &[u8],
    cuts: &[usize],
    mut step: impl FnMut(&mut BytesMut) -> Result<Option<T>, E>,
) -> (Vec<T>, Option<E>, BytesMut) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut cut = cuts.iter().cycle();
    while pos < input.len() {
        let n = if cuts.is_empty() {
            input.len()
        } else {
            (*cut.next().unwrap()).max(1)
        };
        let end = (pos + n).min(input.len());
        buf.extend_from_slice(&input[pos..end]);
        pos = end;
        loop {
            match step(&mut buf) {
                Ok(Some(item)) => out.push(item),
                Ok(None) => break,
                Err(e) => return (out, Some(e), buf),
            }
        }
    }
    (out, None, buf)
}

fn header() -> impl Strategy<Value = MsgHeader> {
    (
        any::<u16>(),
        any::<i32>(),
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(|(i, r, p, t, s)| MsgHeader::new(i, r, p, t, s))
}

/// One valid client→server or server→client message.
fn client_message() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::option::of(1u8..=9),
        header(),
        proptest::collection::vec(any::<u8>(), 0..120),
    )
        .prop_map(|(seq, h, body)| {
            let mut out = Vec::new();
            match seq {
                Some(_) => packet::write_client_packet(&mut out, seq, &h, &[&body]),
                None => packet::write_server_packet(&mut out, &h, &[&body]),
            }
            out
        })
}

/// A valid client stream: messages with lone `*` acks between them.
fn client_stream() -> impl Strategy<Value = (Vec<u8>, Vec<Vec<u8>>)> {
    proptest::collection::vec((client_message(), 0usize..3), 0..12).prop_map(|parts| {
        let mut stream = Vec::new();
        let mut msgs = Vec::new();
        for (m, acks) in parts {
            stream.extend(std::iter::repeat_n(b'*', acks));
            stream.extend_from_slice(&m);
            msgs.push(m);
        }
        (stream, msgs)
    })
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(1usize..40, 1..20)
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
    ]
}

/// Data a gate may put in a frame: validated client bytes (never `%` or `$`).
fn frame_data() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(
        prop_oneof![
            0x3Cu8..=0x7B,
            Just(b'#'),
            Just(b'!'),
            Just(b'*'),
            b'1'..=b'9'
        ],
        0..80,
    )
    .prop_map(Bytes::from)
}

fn gate_frame() -> impl Strategy<Value = GateFrame> {
    prop_oneof![
        (any::<u32>(), ip(), proptest::option::of(ip())).prop_map(|(id, client_ip, gate_ip)| {
            GateFrame::Open {
                id,
                client_ip,
                gate_ip,
            }
        }),
        any::<u32>().prop_map(|id| GateFrame::Close { id }),
        (any::<u32>(), frame_data()).prop_map(|(id, data)| GateFrame::Data { id, data }),
        Just(GateFrame::Heartbeat),
    ]
}

fn server_frame() -> impl Strategy<Value = ServerFrame> {
    prop_oneof![
        (any::<u32>(), frame_data()).prop_map(|(id, data)| ServerFrame::Data { id, data }),
        Just(ServerFrame::HeartbeatReply),
        any::<u32>().prop_map(|id| ServerFrame::Kick { id }),
        (any::<u32>(), any::<bool>())
            .prop_map(|(id, permanent)| ServerFrame::Block { id, permanent }),
    ]
}

fn dialect() -> impl Strategy<Value = Dialect> {
    proptest::sample::select(Dialect::ALL.to_vec())
}

/// Any table `Frames::check` accepts: three distinct ASCII letters, any fields.
fn frame_table() -> impl Strategy<Value = Frames> {
    let letters: Vec<u8> = (b'A'..=b'Z').chain(b'a'..=b'z').collect();
    (
        proptest::sample::subsequence(letters, 3).prop_shuffle(),
        any::<(bool, bool, bool, bool)>(),
    )
        .prop_map(|(l, (gate_ip, nul, blocks, t))| {
            let f = Frames {
                open: l[0],
                data: l[1],
                close: l[2],
                open_gate_ip: gate_ip,
                nul_after_reply: nul,
                block_frames: blocks,
                temporary_block: if t { BlockLetter::T } else { BlockLetter::B },
            };
            assert!(f.check().is_ok(), "{f:?}");
            f
        })
}

/// Bytes that may sit between link frames: anything but `%`.
fn junk() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        any::<u8>().prop_filter("not a frame start", |b| *b != b'%'),
        0..4,
    )
}

/// What a gate frame looks like after writing with table `t` and parsing back.
fn gate_expected(t: &Frames, f: &GateFrame) -> GateFrame {
    match (t.open_gate_ip, f) {
        (false, GateFrame::Open { id, client_ip, .. }) => GateFrame::Open {
            id: *id,
            client_ip: *client_ip,
            gate_ip: None,
        },
        (
            _,
            GateFrame::Open {
                id,
                client_ip,
                gate_ip: None,
            },
        ) => {
            let unspecified = match client_ip {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            };
            GateFrame::Open {
                id: *id,
                client_ip: *client_ip,
                gate_ip: Some(unspecified),
            }
        }
        _ => f.clone(),
    }
}

fn server_expected(t: &Frames, f: &ServerFrame) -> ServerFrame {
    match (t.block_frames, f) {
        (false, ServerFrame::Block { id, .. }) => ServerFrame::Kick { id: *id },
        _ => f.clone(),
    }
}

/// Writes `frames` with `write`, junk between them, and frames the stream in `cuts`.
fn link_stream<F>(
    frames: &[(F, Vec<u8>)],
    cuts: &[usize],
    mut write: impl FnMut(&F, &mut BytesMut),
) -> Vec<Bytes> {
    let mut stream = BytesMut::new();
    for (f, j) in frames {
        write(f, &mut stream);
        stream.extend_from_slice(j);
    }
    let mut framer = LinkFramer::new(4096);
    let (bodies, err, _) = run_chunked(&stream, cuts, |b| framer.next_frame(b));
    assert!(err.is_none());
    assert_eq!(bodies.len(), frames.len());
    bodies
}

fn assert_valid_message(m: &[u8]) {
    assert_eq!(m.first(), Some(&b'#'));
    assert_eq!(m.last(), Some(&b'!'));
    for (i, &b) in m.iter().enumerate().take(m.len() - 1).skip(1) {
        let digit_ok = i == 1 && (b'1'..=b'9').contains(&b);
        assert!(
            digit_ok || codec::is_alphabet(b),
            "byte {b:#x} at {i} in an emitted message"
        );
    }
}

// ------------------------------------------------------------------ properties

proptest! {
    #[test]
    fn codec_roundtrips(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let text = codec::encode(&bytes);
        prop_assert_eq!(text.len(), codec::encoded_len(bytes.len()));
        prop_assert!(text.iter().all(|&b| codec::is_alphabet(b)));
        prop_assert_eq!(codec::decode(&text).unwrap(), bytes);
    }

    #[test]
    fn codec_decode_is_total_and_strict(text in proptest::collection::vec(any::<u8>(), 0..200)) {
        match codec::decode(&text) {
            Ok(bytes) => {
                prop_assert!(text.iter().all(|&b| codec::is_alphabet(b)));
                prop_assert_eq!(bytes.len(), codec::decoded_len(text.len()));
            }
            Err(codec::DecodeError::BadChar { offset, byte }) => {
                prop_assert_eq!(text[offset], byte);
                prop_assert!(!codec::is_alphabet(byte));
                prop_assert!(text[..offset].iter().all(|&b| codec::is_alphabet(b)));
            }
            Err(codec::DecodeError::BadLength { len }) => prop_assert_eq!(len % 4, 1),
        }
    }

    #[test]
    fn header_roundtrips(h in header()) {
        prop_assert_eq!(MsgHeader::from_bytes(&h.to_bytes()), h);
        prop_assert_eq!(MsgHeader::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn header_text_is_a_bijection(text in proptest::collection::vec(0x3Cu8..=0x7B, 16)) {
        prop_assert_eq!(MsgHeader::decode(&text).unwrap().encode().to_vec(), text);
    }

    #[test]
    fn packets_roundtrip(seq in proptest::option::of(1u8..=9), h in header(),
                         body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut out = Vec::new();
        packet::write_client_packet(&mut out, seq, &h, &[&body]);
        let p = Packet::parse(Bytes::from(out)).unwrap();
        prop_assert_eq!(p.seq, seq);
        prop_assert_eq!(p.header, h);
        prop_assert_eq!(p.body_decoded().unwrap(), body);
    }

    #[test]
    fn packet_parse_is_total(frame in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(p) = Packet::parse(Bytes::from(frame.clone())) {
            assert_valid_message(&frame);
            prop_assert_eq!(p.body.len() + p.body_offset() + 1, frame.len());
        }
    }

    #[test]
    fn client_framer_split_invariant((stream, msgs) in client_stream(), cuts in cuts()) {
        let mut whole = ClientFramer::new(8192);
        let (one, err, rest) = run_chunked(&stream, &[], |b| whole.decode(b));
        prop_assert!(err.is_none());
        prop_assert!(rest.is_empty());
        let expected: Vec<Bytes> = msgs.into_iter().map(Bytes::from).collect();
        prop_assert_eq!(&one, &expected);
        let mut split = ClientFramer::new(8192);
        let (many, err, _) = run_chunked(&stream, &cuts, |b| split.decode(b));
        prop_assert!(err.is_none());
        prop_assert_eq!(many, expected);
    }

    #[test]
    fn client_framer_total_and_clean_on_noise(
        input in proptest::collection::vec(prop_oneof![
            4 => 0x3Cu8..=0x7B, 1 => Just(b'#'), 1 => Just(b'!'), 1 => Just(b'*'),
            1 => b'0'..=b'9', 1 => any::<u8>()], 0..400),
        cuts in cuts(),
        max in 18usize..120,
    ) {
        let mut whole = ClientFramer::new(max);
        let (one, one_err, _) = run_chunked(&input, &[], |b| whole.decode(b));
        let mut split = ClientFramer::new(max);
        let (many, many_err, rest) = run_chunked(&input, &cuts, |b| split.decode(b));
        for m in &one {
            assert_valid_message(m);
            prop_assert!(m.len() <= max);
            prop_assert!(Packet::parse(m.clone()).is_ok());
        }
        prop_assert_eq!(&one, &many, "same messages however the bytes arrive");
        prop_assert_eq!(one_err, many_err, "same verdict however the bytes arrive");
        if many_err.is_none() {
            prop_assert!(rest.len() < max, "a waiting partial message stays below the bound");
        }
        if let Some(ClientFrameError::ForbiddenByte { offset, byte }) = one_err {
            prop_assert_eq!(input[usize::try_from(offset).unwrap()], byte);
        }
    }

    #[test]
    fn gate_frames_roundtrip(d in dialect(), frames in proptest::collection::vec((gate_frame(), junk()), 0..10),
                             cuts in cuts()) {
        let bodies = link_stream(&frames, &cuts, |f, b| link::write_gate_frame(d, f, b));
        for (body, (f, _)) in bodies.into_iter().zip(&frames) {
            let expected = gate_expected(d.frames(), f);
            prop_assert_eq!(link::parse_gate_frame(d, body.clone()).unwrap(), expected.clone());
            // A LoginSrv that detects the preset reads the same events.
            let (parsed, seen) = link::detect_gate_frame(body).unwrap();
            prop_assert_eq!(parsed, expected);
            if let Some(seen) = seen {
                prop_assert_eq!(seen, d, "a revealed dialect is the writer's");
            }
        }
    }

    #[test]
    fn server_frames_roundtrip(d in dialect(), frames in proptest::collection::vec((server_frame(), junk()), 0..10),
                               cuts in cuts()) {
        let bodies = link_stream(&frames, &cuts, |f, b| link::write_server_frame(d, f, b));
        for (body, (f, _)) in bodies.into_iter().zip(&frames) {
            prop_assert_eq!(link::parse_server_frame(d, body).unwrap(), server_expected(d.frames(), f));
        }
    }

    #[test]
    fn custom_tables_roundtrip_both_ways(
        t in frame_table(),
        gate in proptest::collection::vec((gate_frame(), junk()), 0..10),
        server in proptest::collection::vec((server_frame(), junk()), 0..10),
        cuts in cuts(),
    ) {
        let bodies = link_stream(&gate, &cuts, |f, b| link::write_gate_frame(t, f, b));
        for (body, (f, _)) in bodies.into_iter().zip(&gate) {
            prop_assert_eq!(link::parse_gate_frame(t, body).unwrap(), gate_expected(&t, f));
        }
        let bodies = link_stream(&server, &cuts, |f, b| link::write_server_frame(t, f, b));
        for (body, (f, _)) in bodies.into_iter().zip(&server) {
            prop_assert_eq!(link::parse_server_frame(t, body).unwrap(), server_expected(&t, f));
        }
    }

    #[test]
    fn link_framer_split_invariant_on_noise(
        input in proptest::collection::vec(prop_oneof![
            4 => any::<u8>(), 1 => Just(b'%'), 1 => Just(b'$'), 1 => Just(0u8)], 0..400),
        cuts in cuts(),
        max in 2usize..64,
    ) {
        let mut whole = LinkFramer::new(max);
        let (one, one_err, _) = run_chunked(&input, &[], |b| whole.next_frame(b));
        let mut split = LinkFramer::new(max);
        let (many, many_err, rest) = run_chunked(&input, &cuts, |b| split.next_frame(b));
        prop_assert_eq!(&one, &many);
        prop_assert_eq!(&one_err, &many_err);
        if one_err.is_none() {
            prop_assert!(rest.len() < max, "a waiting partial frame stays below the bound");
            prop_assert_eq!(whole.junk_skipped(), split.junk_skipped());
        }
        for body in one {
            prop_assert!(body.len() + 2 <= max);
            prop_assert!(!body.contains(&b'%') && !body.contains(&b'$'));
            // The parsers are total on whatever the framer yields.
            for d in Dialect::ALL {
                let _ = link::parse_server_frame(d, body.clone());
                let _ = link::parse_gate_frame(d, body.clone());
            }
            let _ = link::detect_gate_frame(body);
        }
        if let Some(e) = one_err {
            prop_assert_eq!(e, LinkError::TooLong { max });
        }
    }

    #[test]
    fn records_roundtrip(fields in proptest::collection::vec("[a-zA-Z0-9@. ]{0,10}", 14)) {
        let e = UserEntry {
            account: fields[0].clone(), password: fields[1].clone(), user_name: fields[2].clone(),
            ss_no: fields[3].clone(), phone: fields[4].clone(), quiz: fields[5].clone(),
            answer: fields[6].clone(), email: fields[7].clone(),
        };
        let a = UserEntryAdd {
            quiz2: fields[8].clone(), answer2: fields[9].clone(), birthday: fields[10].clone(),
            mobile_phone: fields[11].clone(), memo: fields[12].clone(), memo2: fields[13].clone(),
        };
        let (eb, ab) = (e.to_bytes().unwrap(), a.to_bytes().unwrap());
        let mut out = Vec::new();
        packet::write_client_packet(&mut out, Some(1), &MsgHeader::default(), &[&eb, &ab]);
        let p = Packet::parse(Bytes::from(out)).unwrap();
        let parts = p.body_parts(&[Some(UserEntry::SIZE), Some(UserEntryAdd::SIZE)]).unwrap();
        prop_assert_eq!(UserEntry::from_bytes(&parts[0]).unwrap(), e);
        prop_assert_eq!(UserEntryAdd::from_bytes(&parts[1]).unwrap(), a);
    }

    #[test]
    fn records_from_bytes_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(e) = UserEntry::from_bytes(&bytes) {
            prop_assert_eq!(&e.to_bytes().unwrap()[..], &bytes[..UserEntry::SIZE].iter().enumerate()
                .map(|(i, &b)| b & if is_padding(&bytes, i) { 0 } else { 0xFF }).collect::<Vec<_>>()[..]);
        }
        let _ = UserEntryAdd::from_bytes(&bytes);
    }
}

/// True when byte `i` of a raw UserEntry lies past its field's length byte (padding).
fn is_padding(raw: &[u8], i: usize) -> bool {
    let mut at = 0;
    for cap in [10usize, 10, 20, 14, 14, 20, 12, 40] {
        if i < at + 1 + cap {
            return i > at + usize::from(raw[at]);
        }
        at += 1 + cap;
    }
    false
}
