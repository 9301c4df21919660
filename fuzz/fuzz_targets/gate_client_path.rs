//! libFuzzer entry for `fuzz/checks/gate_client_path.rs`, where the property lives so
//! that `cargo test` replays the kept inputs on stable.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../checks/gate_client_path.rs"]
mod check;

fuzz_target!(|data: &[u8]| check::check(data));
