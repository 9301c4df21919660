//! mirtool's command line, built in this package for its tests.

fn main() -> std::process::ExitCode {
    mirtool::main()
}
