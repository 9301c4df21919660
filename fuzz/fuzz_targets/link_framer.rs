//! libFuzzer entry for `fuzz/checks/link_framer.rs`, where the property lives so that
//! `cargo test` replays the kept inputs on stable.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../checks/chunked.rs"]
mod chunked;
#[path = "../checks/link_framer.rs"]
mod check;

fuzz_target!(|data: &[u8]| check::check(data));
