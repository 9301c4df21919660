//! Waiting for the operator's stop signal.

/// Completes on SIGINT or SIGTERM. If a handler cannot be installed, waits on the other
/// (and on nothing only if both fail, which is logged).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => Some(term),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM");
            None
        }
    };
    let sigterm = async {
        match term.as_mut() {
            Some(term) => {
                term.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(sigterm);
    tokio::select! {
        res = tokio::signal::ctrl_c() => {
            if let Err(error) = res {
                tracing::warn!(%error, "cannot listen for SIGINT");
                (&mut sigterm).await;
            }
            else { tracing::info!("SIGINT received"); }
        }
        () = &mut sigterm => tracing::info!("SIGTERM received"),
    }
}
