//! `mirtool encode` / `mirtool decode`: the packet inspector (being built).
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct EncodeArgs {}
#[derive(clap::Args)]
pub struct DecodeArgs {}

pub fn encode(_args: EncodeArgs) -> ExitCode {
    eprintln!("mirtool encode: not built yet");
    ExitCode::from(2)
}
pub fn decode(_args: DecodeArgs) -> ExitCode {
    eprintln!("mirtool decode: not built yet");
    ExitCode::from(2)
}
