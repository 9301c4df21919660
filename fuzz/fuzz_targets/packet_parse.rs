//! libFuzzer entry for `fuzz/checks/packet_parse.rs`, where the property lives so that
//! `cargo test` replays the kept inputs on stable.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../checks/packet_parse.rs"]
mod check;

fuzz_target!(|data: &[u8]| check::check(data));
