//! Cost of judging one PROXY header (the parse a trusted front's connection pays once).
//! `cargo bench -p netcore --bench proxy_header`

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, Criterion};
use netcore::proxy::header::{decode, encode, Version};
use netcore::ProxyProtocol;

fn headers(c: &mut Criterion) {
    let dst: SocketAddr = "10.0.0.1:7000".parse().expect("addr");
    let cases = [
        ("v1 tcp4", Version::V1, "192.0.2.7:40000"),
        ("v1 tcp6", Version::V1, "[2001:db8::7]:40000"),
        ("v2 tcp4", Version::V2, "192.0.2.7:40000"),
        ("v2 tcp6", Version::V2, "[2001:db8::7]:40000"),
    ];
    for (name, version, src) in cases {
        let dst = if src.starts_with('[') {
            "[2001:db8::1]:7000".parse().expect("addr")
        } else {
            dst
        };
        let mut bytes = encode(version, src.parse().expect("addr"), dst).expect("encode");
        bytes.extend_from_slice(b"#1<<<<<I@C<<<<<<<<YSIaX^ylTSIo!");
        c.bench_function(name, |b| {
            b.iter(|| decode(black_box(ProxyProtocol::Any), black_box(&bytes)))
        });
    }
}

criterion_group!(benches, headers);
criterion_main!(benches);
