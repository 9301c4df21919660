//! `loginsrv`: the reference LoginSrv binary.

use std::future::Future as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::task::Poll;

use bootstrap::{LogFormat, EXIT_CONFIG};
use clap::Parser;
use loginsrv::Config;

#[derive(Parser)]
#[command(
    name = "loginsrv",
    version,
    about = "Reference Legend of Mir 2 LoginSrv (gate link on 5500)"
)]
struct Cli {
    /// TOML configuration file (defaults apply to missing keys).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Gate listen address, overrides `listen`.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Database URL (`sqlite://file`, a path, or `postgres://…`), overrides `database`.
    #[arg(long)]
    database: Option<String>,
    /// Console address IP:PORT ("" = off), overrides `admin.listen`.
    #[arg(long, value_name = "ADDR")]
    admin: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Validate the configuration (the file and the flags) and exit: 0 when valid,
    /// 2 naming the first bad key. Run it before a reload.
    #[arg(long)]
    check_config: bool,
    /// Log lines as `text` or `json` (one object per line).
    #[arg(long, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Print the TOML equivalent of a Delphi LoginSrv directory (Logsrv.ini,
    /// !ServerAddr.txt, !UserLimit.txt, !addrtable.txt); unmapped settings become comments.
    ImportDelphi {
        /// The Delphi LoginSrv's directory.
        dir: PathBuf,
    },
}

fn load(cli: &Cli) -> Result<Config, loginsrv::ConfigError> {
    let mut config = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                loginsrv::ConfigError::new("config", format!("cannot read {}: {e}", path.display()))
            })?;
            Config::from_toml_at(&text, path)?
        }
        None => Config::default(),
    };
    if let Some(listen) = cli.listen {
        config.listen = listen;
    }
    if let Some(db) = &cli.database {
        config.database.clone_from(db);
    }
    if let Some(admin) = &cli.admin {
        config.admin.listen.clone_from(admin);
    }
    config.validate()?;
    Ok(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Sub::ImportDelphi { dir }) = &cli.command {
        return match loginsrv::import_delphi::import(dir) {
            Ok(toml) => {
                print!("{toml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("loginsrv import-delphi: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }
    let config = match load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loginsrv: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.check_config {
        println!("loginsrv: configuration is valid");
        return ExitCode::SUCCESS;
    }
    if cli.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    bootstrap::logging::init_with(cli.log_format, config.log_timestamps, "");
    let cli = std::sync::Arc::new(cli);
    bootstrap::run_main("loginsrv", 0, async move {
        // Polled once before anything starts, so the handlers are installed: a
        // signal while the server starts stops it in order instead of killing it.
        let mut stop = std::pin::pin!(bootstrap::shutdown_signal());
        let early = std::future::poll_fn(|cx| Poll::Ready(stop.as_mut().poll(cx).is_ready())).await;
        if early {
            return Ok(());
        }
        if !config.admin.listen.trim().is_empty() {
            // Before the server registers anything with the metrics facade.
            loginsrv::admin::install_metrics();
        }
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = signal(SignalKind::hangup())?;
        let mut server = loginsrv::start(config).await?;
        if let Err(e) = server.start_console().await {
            server.shutdown().await;
            return Err(e);
        }
        let source = std::sync::Arc::clone(&cli);
        server.reload_from(Box::new(move || load(&source)));
        bootstrap::notify::ready();
        loop {
            tokio::select! {
                () = &mut stop => break,
                () = server.failed() => {
                    server.shutdown().await;
                    anyhow::bail!("this instance was removed from loginsrv_instances (see the log)");
                }
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    bootstrap::notify::reloading();
                    let source = std::sync::Arc::clone(&cli);
                    let outcome = match tokio::task::spawn_blocking(move || load(&source)).await {
                        Ok(Ok(config)) => server.reload(config),
                        Ok(Err(e)) => loginsrv::refuse(e),
                        Err(e) => loginsrv::refuse(loginsrv::ConfigError::new("config", e.to_string())),
                    };
                    bootstrap::notify::reloaded(if outcome.ok { "serving (reloaded)" } else { "serving (reload refused)" });
                }
            }
        }
        tracing::info!("signal received, shutting down");
        bootstrap::notify::stopping();
        server.shutdown().await;
        Ok::<(), anyhow::Error>(())
    })
}
