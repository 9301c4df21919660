//! Throughput of the hot paths: 6-bit codec, header decode, both framers.
//! Run: `cargo bench -p mir2-proto -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mir2_proto::link::{self, Dialect, LinkFramer};
use mir2_proto::records::{UserEntry, UserEntryAdd};
use mir2_proto::{codec, ids, packet, ClientFramer, MsgHeader};

/// A deterministic pseudo-random byte pattern (no rand dependency needed).
fn pattern(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// The messages of real logins: handshake, login, server choice and account creation.
fn login_messages() -> Vec<Vec<u8>> {
    let entry = UserEntry {
        account: "player01".into(),
        password: "secret1".into(),
        ..Default::default()
    };
    let add = UserEntryAdd {
        birthday: "1990/01/01".into(),
        ..Default::default()
    };
    let (e, a) = (entry.to_bytes().unwrap(), add.to_bytes().unwrap());
    let mut msgs = Vec::new();
    let mut push = |seq: u8, ident: u16, recog: i32, parts: &[&[u8]]| {
        let mut m = Vec::new();
        packet::write_client_packet(
            &mut m,
            Some(seq),
            &MsgHeader::new(ident, recog, 0, 0, 0),
            parts,
        );
        msgs.push(m);
    };
    push(1, ids::CM_PROTOCOL, 20_020_522, &[]);
    push(2, ids::CM_IDPASSWORD, 0, &[b"player01/secret1"]);
    push(3, ids::CM_SELECTSERVER, 0, &[b"MirServer1"]);
    push(4, ids::CM_ADDNEWUSER, 0, &[&e, &a]);
    msgs
}

/// About 1 MiB of client stream made of `msgs` repeated, with the Delphi `*` acks.
fn client_stream(msgs: &[Vec<u8>]) -> Vec<u8> {
    let mut s = Vec::with_capacity(1 << 20);
    while s.len() < 1 << 20 {
        for m in msgs {
            s.extend_from_slice(m);
            s.push(b'*');
        }
    }
    s
}

fn bench_codec(c: &mut Criterion) {
    let raw = pattern(1024);
    let text = codec::encode(&raw);
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(raw.len() as u64));
    let mut out = Vec::with_capacity(2048);
    g.bench_function("encode_1KiB", |b| {
        b.iter(|| {
            out.clear();
            codec::encode_into(black_box(&raw), &mut out);
            black_box(out.len())
        })
    });
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("decode_1KiB", |b| {
        b.iter(|| {
            out.clear();
            codec::decode_into(black_box(&text), &mut out).unwrap();
            black_box(out.len())
        })
    });
    g.finish();

    let hdr = MsgHeader::new(ids::SM_SELECTSERVER_OK, 12345, 1, 2, 3).encode();
    let mut g = c.benchmark_group("header");
    g.throughput(Throughput::Bytes(16));
    g.bench_function("decode", |b| {
        b.iter(|| MsgHeader::decode(black_box(&hdr)).unwrap())
    });
    g.bench_function("encode", |b| {
        b.iter(|| black_box(MsgHeader::new(2001, 7, 0, 0, 0)).encode())
    });
    g.finish();
}

fn bench_client_framer(c: &mut Criterion) {
    let mut g = c.benchmark_group("client_framer");
    let all = login_messages();
    let cases = [
        ("login_mix", client_stream(&all)),
        ("idpassword_only", client_stream(&all[1..2])),
        ("addnewuser_only", client_stream(&all[3..4])),
    ];
    for (name, stream) in cases {
        g.throughput(Throughput::Bytes(stream.len() as u64));
        g.bench_function(name, |b| {
            b.iter_batched(
                || BytesMut::from(&stream[..]),
                |mut buf| {
                    let mut framer = ClientFramer::new(8192);
                    let mut n = 0usize;
                    while let Some(m) = framer.decode(&mut buf).unwrap() {
                        n += m.len();
                    }
                    black_box(n)
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn bench_link_framer(c: &mut Criterion) {
    let mut g = c.benchmark_group("link_framer");
    let msgs = login_messages();
    let mut stream = BytesMut::with_capacity(1 << 20);
    let mut id = 1u32;
    while stream.len() < 1 << 20 {
        for m in &msgs {
            link::write_data(Dialect::Delphi, &mut stream, id, m);
            id = id.wrapping_add(7919);
        }
        link::write_open(
            Dialect::Delphi,
            &mut stream,
            id,
            IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        );
    }
    let stream = stream.freeze();
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("frames_only", |b| {
        b.iter_batched(
            || BytesMut::from(&stream[..]),
            |mut buf| {
                let mut framer = LinkFramer::new(16 * 1024);
                let mut n = 0usize;
                while let Some(f) = framer.next_frame(&mut buf).unwrap() {
                    n += f.len();
                }
                black_box(n)
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("frames_and_parse", |b| {
        b.iter_batched(
            || BytesMut::from(&stream[..]),
            |mut buf| {
                let mut framer = LinkFramer::new(16 * 1024);
                let mut n = 0usize;
                while let Some(f) = framer.next_frame(&mut buf).unwrap() {
                    let (frame, _) = link::detect_gate_frame(f).unwrap();
                    n += matches!(frame, link::GateFrame::Data { .. }) as usize;
                }
                black_box(n)
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("frames_and_parse_table", |b| {
        b.iter_batched(
            || BytesMut::from(&stream[..]),
            |mut buf| {
                let mut framer = LinkFramer::new(16 * 1024);
                let mut n = 0usize;
                while let Some(f) = framer.next_frame(&mut buf).unwrap() {
                    let frame = link::parse_gate_frame(Dialect::Delphi, f).unwrap();
                    n += matches!(frame, link::GateFrame::Data { .. }) as usize;
                }
                black_box(n)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// The gate's side of the link: encoding every client message and open frame of about
/// 1 MiB of traffic into one reused buffer.
fn bench_link_writer(c: &mut Criterion) {
    let mut g = c.benchmark_group("link_writer");
    let msgs = login_messages();
    let per_round: usize = msgs.iter().map(|m| m.len()).sum();
    let rounds = (1 << 20) / per_round;
    g.throughput(Throughput::Bytes((rounds * per_round) as u64));
    let mut out = BytesMut::with_capacity(2 << 20);
    g.bench_function("data_and_open", |b| {
        b.iter(|| {
            out.clear();
            let mut id = 1u32;
            for _ in 0..rounds {
                for m in &msgs {
                    link::write_data(Dialect::Delphi, &mut out, id, m);
                    id = id.wrapping_add(7919);
                }
                link::write_open(
                    Dialect::Delphi,
                    &mut out,
                    id,
                    IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                );
            }
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_codec,
    bench_client_framer,
    bench_link_framer,
    bench_link_writer
);
criterion_main!(benches);
