//! The signals that stop wsfleet: Ctrl-C (SIGINT) from a terminal, and SIGTERM, which `docker
//! stop`, Compose, Swarm, Kubernetes and systemd send to ask a service to stop. Both ask for the
//! same orderly stop: a controller lets iterations finish, collects the last reports and writes
//! the summary; an agent closes its connections; the test server closes its sessions.

/// Resolves at the next SIGINT or SIGTERM; an error when neither can be listened for.
pub async fn stop_requested() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => interrupted,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
