//! `logingate` binary (wired up in a later step).
fn main() {}
