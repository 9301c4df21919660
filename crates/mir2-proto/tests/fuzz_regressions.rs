//! Replays, on stable and in every `cargo test`, the inputs kept under
//! `tests/fuzz_regressions/<target>/` through the same property the cargo-fuzz
//! target checks (`fuzz/checks/<target>.rs`). An input that once crashed a
//! target is copied there, so the bug stays fixed without nightly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

macro_rules! targets {
    ($($name:ident => $path:literal),* $(,)?) => {
        $(
            #[path = $path]
            mod $name;
        )*

        #[test]
        fn every_kept_input_still_holds() {
            $( replay(stringify!($name), $name::check); )*
        }
    };
}

targets!(
    client_framer => "../../../fuzz/checks/client_framer.rs",
    codec_decode => "../../../fuzz/checks/codec_decode.rs",
    header_decode => "../../../fuzz/checks/header_decode.rs",
    link_framer => "../../../fuzz/checks/link_framer.rs",
    packet_parse => "../../../fuzz/checks/packet_parse.rs",
    records => "../../../fuzz/checks/records.rs",
    gate_client_path => "../../../fuzz/checks/gate_client_path.rs",
);

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_regressions")
        .join(target)
}

fn replay(target: &str, check: fn(&[u8])) {
    let dir = corpus_dir(target);
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
