//! libFuzzer entry for `fuzz/checks/import_ini.rs`, where the property lives so that
//! `cargo test -p logingate` replays the kept inputs on stable.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../checks/import_ini.rs"]
mod check;

fuzz_target!(|data: &[u8]| check::check(data));
