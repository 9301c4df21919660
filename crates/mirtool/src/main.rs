//! The `mirtool` binary; the commands live in the library.

fn main() -> std::process::ExitCode {
    mirtool::main()
}
