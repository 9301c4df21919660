//! `logingate` binary: parse flags, load config (exit 2 on errors), run.

use std::process::ExitCode;
use std::sync::Arc;

use bootstrap::EXIT_CONFIG;
use clap::Parser;
use logingate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Restart { pid_file }) = &cli.command {
        return match logingate::handover::signal_restart(pid_file) {
            Ok(pid) => {
                println!("logingate: asked the gate (pid {pid}) to restart");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("logingate restart: {}: {e}", pid_file.display());
                ExitCode::from(bootstrap::EXIT_RUNTIME)
            }
        };
    }
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
    if cli.check_config {
        println!("logingate: configuration is valid");
        return ExitCode::SUCCESS;
    }
    if cli.print_config {
        print!("{}", config.effective_toml());
        return ExitCode::SUCCESS;
    }
    // Before any thread exists: it clears the convention's environment variables.
    let inherited = match logingate::handover::Inherited::take() {
        Ok(inherited) => inherited,
        Err(e) => {
            eprintln!("logingate: cannot take the inherited sockets: {e}");
            return ExitCode::from(bootstrap::EXIT_RUNTIME);
        }
    };
    let log = Arc::new(bootstrap::logging::init_with(
        config.log_format,
        config.log_timestamps,
        &config.log_filter,
    ));
    // Before the runtime: a list file that cannot be read is a configuration error.
    if let Err(e) = config.prepare_list_files() {
        eprintln!("logingate: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let startup = logingate::app::Startup {
        source: Some(Box::new(move || cli.effective_config())),
        inherited,
        log: Some(log),
        accept_once_linked: false,
    };
    let threads = config.gate.worker_threads;
    bootstrap::run_main("logingate", threads, logingate::app::run(config, startup))
}
