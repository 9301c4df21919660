//! Replays the gate's kept fuzz inputs (`tests/fuzz_regressions/<target>/`) through
//! the property its cargo-fuzz target checks (`fuzz/checks/<target>.rs`), on stable.

#[path = "../../../fuzz/checks/replay.rs"]
mod replay;

#[path = "../../../fuzz/checks/import_ini.rs"]
mod import_ini;

#[test]
fn every_kept_input_still_holds() {
    replay::replay(env!("CARGO_MANIFEST_DIR"), "import_ini", import_ini::check);
}
