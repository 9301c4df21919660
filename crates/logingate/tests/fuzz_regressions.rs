//! Replays, on stable and in every `cargo test`, the inputs kept under
//! `tests/fuzz_regressions/<target>/` through the same property the cargo-fuzz
//! target checks (`fuzz/checks/<target>.rs`) for the gate's own targets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

#[path = "../../../fuzz/checks/import_ini.rs"]
mod import_ini;

#[test]
fn every_kept_input_still_holds() {
    replay("import_ini", import_ini::check);
}

fn replay(target: &str, check: fn(&[u8])) {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_regressions")
        .join(target);
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    inputs.sort();
    assert!(
        !inputs.is_empty(),
        "{target}: no kept inputs in {}",
        dir.display()
    );
    for path in inputs {
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "{target}: {} breaks the property",
            path.display()
        );
    }
}
