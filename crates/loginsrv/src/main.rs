//! `loginsrv`: the reference LoginSrv binary.

use std::path::PathBuf;
use std::process::ExitCode;

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
}

/// Exit code for configuration and usage errors.
const EXIT_CONFIG: u8 = 2;

fn load(cli: &Cli) -> Result<Config, String> {
    let mut config = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Config::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?
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
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loginsrv: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // A closed stderr (a pipe whose reader died) must not panic the task that logs.
        .log_internal_errors(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loginsrv: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        // Polled once before anything starts so the handlers are installed: a
        // signal while the server starts stops it in order.
        let mut stop = std::pin::pin!(shutdown_signal());
        if futures_poll_once(stop.as_mut()).await {
            return ExitCode::SUCCESS;
        }
        if !config.admin.listen.trim().is_empty() {
            // Before the server registers anything with the metrics facade.
            loginsrv::admin::install_metrics();
        }
        let mut server = match loginsrv::start(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("loginsrv: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = server.start_console().await {
            eprintln!("loginsrv: {e:#}");
            server.shutdown().await;
            return ExitCode::FAILURE;
        }
        stop.await;
        tracing::info!("signal received, shutting down");
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// Polls `f` once; `true` when it finished.
async fn futures_poll_once(f: std::pin::Pin<&mut impl std::future::Future<Output = ()>>) -> bool {
    let mut f = f;
    std::future::poll_fn(|cx| std::task::Poll::Ready(f.as_mut().poll(cx).is_ready())).await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
