//! `mirtool`: the client side of a Mir2 login path.
//!
//! One module per subcommand; [`main`] parses the command line and dispatches.
//! The login client ([`login::conn::Conn`]) is public so that tests drive a gate
//! with the same client an operator runs.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod backend;
mod bench;
mod gameserver;
mod inspect;
pub mod login;
pub mod proxy;

#[derive(Parser)]
#[command(
    name = "mirtool",
    version,
    about = "Mir2 client toolbox: packet inspector, scripted login, load generator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print one client-style packet built from a header and a GBK body.
    Encode(inspect::EncodeArgs),
    /// Decode `#…!` packets (arguments, else one per line on stdin) to JSON lines.
    Decode(inspect::DecodeArgs),
    /// Log in like a real client: optionally register, log in, list and select a server.
    Login(login::Args),
    /// Load generator and benchmark scenarios.
    Bench(bench::Args),
    /// Benchmark backends: a LoginSrv-shaped echo and a plain packet echo.
    Backend(backend::Args),
    /// Game-server double on the LoginSrv's port 5600: reports a count, prints sessions.
    Gameserver(gameserver::Args),
}

/// The `mirtool` command line: parse the process arguments and run the subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Encode(args) => inspect::encode(args),
        Command::Decode(args) => inspect::decode(args),
        Command::Login(args) => login::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Backend(args) => backend::run(args),
        Command::Gameserver(args) => gameserver::run(args),
    }
}
