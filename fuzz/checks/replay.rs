//! Replays kept inputs through a fuzz property on stable, for `cargo test`: every
//! file under `<crate>/tests/fuzz_regressions/<target>/` must satisfy it. An input
//! that once crashed a target is copied there so the bug stays fixed.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Run `check` on every kept input of `target` below `manifest_dir`; panics naming
/// the first input that breaks it, or when there are none (a vacuous replay).
pub fn replay(manifest_dir: &str, target: &str, check: fn(&[u8])) {
    let dir = Path::new(manifest_dir)
        .join("tests/fuzz_regressions")
        .join(target);
    let mut inputs: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    inputs.sort();
    assert!(
        !inputs.is_empty(),
        "{target}: no kept inputs in {}",
        dir.display()
    );
    for path in inputs {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "{target}: {} breaks the property",
            path.display()
        );
    }
}
