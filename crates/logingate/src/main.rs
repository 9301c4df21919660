//! `logingate` binary: parse flags, load config (exit 2 on errors), run.

use std::process::ExitCode;

use bootstrap::EXIT_CONFIG;
use clap::Parser;
use logingate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::ImportIni { file }) = &cli.command {
        return match logingate::import_ini::import_file(file) {
            Ok(toml) => {
                print!("{toml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("logingate: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }
    let config = match cli.effective_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("logingate: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.print_config {
        print!("{}", config.effective_toml());
        return ExitCode::SUCCESS;
    }
    bootstrap::logging::init(config.log_format);
    bootstrap::run_main("logingate", logingate::app::run(config))
}
