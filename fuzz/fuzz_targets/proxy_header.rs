//! libFuzzer entry for `fuzz/checks/proxy_header.rs`, where the property lives so that
//! `cargo test` replays the kept inputs on stable.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../checks/proxy_header.rs"]
mod check;

fuzz_target!(|data: &[u8]| check::check(data));
