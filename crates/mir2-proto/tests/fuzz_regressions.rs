//! Replays, on stable and in every `cargo test`, the inputs kept under
//! `tests/fuzz_regressions/<target>/` through the same property the cargo-fuzz
//! target checks (`fuzz/checks/<target>.rs`). An input that once crashed a
//! target is copied there, so the bug stays fixed without nightly.

#[path = "../../../fuzz/checks/replay.rs"]
mod replay;
// The chunked feeder the framer properties share.
#[path = "../../../fuzz/checks/chunked.rs"]
mod chunked;

macro_rules! targets {
    ($($name:ident => $path:literal),* $(,)?) => {
        $(
            #[path = $path]
            mod $name;
        )*

        #[test]
        fn every_kept_input_still_holds() {
            $( replay::replay(env!("CARGO_MANIFEST_DIR"), stringify!($name), $name::check); )*
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
    game_frame => "../../../fuzz/checks/game_frame.rs",
);
