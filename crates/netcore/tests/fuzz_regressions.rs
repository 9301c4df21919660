//! Replays netcore's kept fuzz inputs (`tests/fuzz_regressions/<target>/`) through
//! the property its cargo-fuzz target checks (`fuzz/checks/<target>.rs`), on stable.

#[path = "../../../fuzz/checks/replay.rs"]
mod replay;

#[path = "../../../fuzz/checks/proxy_header.rs"]
mod proxy_header;

#[test]
fn every_kept_input_still_holds() {
    replay::replay(
        env!("CARGO_MANIFEST_DIR"),
        "proxy_header",
        proxy_header::check,
    );
}
