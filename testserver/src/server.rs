//! The accept loop, graceful shutdown, and [`TestServer`], the handle that
//! tests and `wsfleet run` hold on a server running in the background.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::shared::Shared;
use crate::stats::{Counters, Stats};
use crate::{connection, tls, Config, Error};

/// How long a shutdown lets connections close gracefully (1001 and the close
/// handshake) before dropping the ones that remain.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// How long dropped connection tasks get to finish after the grace period.
/// Together with the grace period this keeps a whole shutdown within 2 s.
const HARD_STOP_WAIT: Duration = Duration::from_millis(500);

/// After an accept error that is not about one connection (EMFILE, ENFILE,
/// ENOBUFS), wait this long so a full file table does not spin the loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A configured server, ready to serve a listener.
pub(crate) struct Server {
    pub(crate) shared: Arc<Shared>,
    certificate_pem: Option<String>,
}

impl Server {
    /// Validates the config and generates the TLS certificate when asked.
    pub(crate) fn new(config: &Config, local_addr: SocketAddr) -> Result<Self, Error> {
        let websocket_config = config.websocket_config()?;
        let (tls, certificate_pem) = if config.tls {
            let self_signed = tls::self_signed(local_addr.ip())?;
            (Some(self_signed.acceptor), Some(self_signed.certificate_pem))
        } else {
            (None, None)
        };
        let shared = Shared::new(config.subprotocols.clone(), websocket_config, tls);
        Ok(Self {
            shared: Arc::new(shared),
            certificate_pem,
        })
    }

    /// Accepts connections until `cancel` fires, then shuts down: stop
    /// accepting, let every connection close with 1001, drop stragglers.
    pub(crate) async fn serve(self, listener: TcpListener, cancel: CancellationToken) {
        let tracker = TaskTracker::new();
        // Fired only when the grace period is over: every connection task
        // selects on it and drops its connection at once.
        let hard_stop = CancellationToken::new();
        let mut accept_errors = AcceptErrorLog::default();
        debug!(
            local_addr = ?listener.local_addr().ok(),
            tls = self.shared.tls.is_some(),
            "test server accepting connections"
        );
        loop {
            let accepted = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) if is_about_one_connection(&error) => continue,
                Err(error) => {
                    accept_errors.report(&error);
                    tokio::select! {
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                        () = cancel.cancelled() => break,
                    }
                }
            };
            // Echo latency is what the load generator measures; do not let
            // Nagle's algorithm hold small replies back.
            if let Err(error) = tcp.set_nodelay(true) {
                debug!(%peer, %error, "cannot set TCP_NODELAY");
            }
            let shared = Arc::clone(&self.shared);
            let cancel = cancel.clone();
            let hard_stop = hard_stop.clone();
            tracker.spawn(async move {
                tokio::select! {
                    () = connection::serve(shared, tcp, peer, cancel) => {}
                    () = hard_stop.cancelled() => {}
                }
            });
        }

        // Closing the listener makes the kernel refuse new connections at once.
        drop(listener);
        tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_ok() {
            return;
        }
        warn!(
            remaining = tracker.len(),
            "connections did not close within the shutdown grace period; dropping them"
        );
        hard_stop.cancel();
        if tokio::time::timeout(HARD_STOP_WAIT, tracker.wait()).await.is_err() {
            warn!(
                remaining = tracker.len(),
                "connection tasks still running after the hard stop"
            );
        }
    }
}

/// Errors that concern one connection that died in the backlog: accept the next.
fn is_about_one_connection(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::ConnectionAborted
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionRefused
            | ErrorKind::Interrupted
    )
}

/// Logs accept errors at most once per second, with how many were suppressed.
#[derive(Default)]
struct AcceptErrorLog {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl AcceptErrorLog {
    fn report(&mut self, error: &std::io::Error) {
        let now = Instant::now();
        if self
            .last_logged
            .is_some_and(|last| now.duration_since(last) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        warn!(
            %error,
            suppressed = self.suppressed,
            "cannot accept a connection; backing off 50ms (if this is too many open files, raise `ulimit -n`)"
        );
        self.last_logged = Some(now);
        self.suppressed = 0;
    }
}

/// A server running in the background, stopped by [`TestServer::shutdown`] or
/// by dropping the handle (which cancels without waiting).
#[derive(Debug)]
pub struct TestServer {
    local_addr: SocketAddr,
    url: String,
    certificate_pem: Option<String>,
    counters: Arc<Counters>,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Binds `bind` (port 0 picks a free port) with `SO_REUSEADDR`, and
    /// `SO_REUSEPORT` when `config.reuse_port`, then starts serving.
    pub async fn start(bind: SocketAddr, config: Config) -> Result<TestServer, Error> {
        let listener = crate::bind_listener(bind, config.reuse_port)?;
        Self::start_on(listener, config).await
    }

    /// Starts serving on a listener the caller bound; `config.reuse_port` is
    /// ignored because the socket options are already set.
    pub async fn start_on(listener: TcpListener, config: Config) -> Result<TestServer, Error> {
        let local_addr = listener.local_addr().map_err(|source| Error::LocalAddr { source })?;
        let server = Server::new(&config, local_addr)?;
        let counters = Arc::clone(&server.shared.counters);
        let certificate_pem = server.certificate_pem.clone();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(server.serve(listener, cancel.clone()));
        Ok(TestServer {
            local_addr,
            url: url_for(local_addr, config.tls),
            certificate_pem,
            counters,
            cancel,
            task: Some(task),
        })
    }

    /// The address the server listens on, with the real port when bound to 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `ws://HOST:PORT` or `wss://HOST:PORT`, without a trailing slash. An
    /// unspecified bind address (`0.0.0.0`, `::`) becomes loopback.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// `http://HOST:PORT` or `https://HOST:PORT`: the same server's HTTP endpoints.
    pub fn http_url(&self) -> String {
        match self.url.strip_prefix("ws") {
            Some(rest) => format!("http{rest}"),
            None => self.url.clone(),
        }
    }

    /// The self-signed certificate in PEM when serving TLS, for clients to trust.
    pub fn ca_certificate_pem(&self) -> Option<String> {
        self.certificate_pem.clone()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// Broadcast messages skipped because a client read too slowly (kept out
    /// of [`Stats`], whose shape other crates share).
    pub fn broadcast_messages_dropped(&self) -> u64 {
        self.counters.broadcast_messages_dropped()
    }

    /// Stops accepting, closes every connection with 1001 Going Away and waits
    /// for them, at most about 2 s in all.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            // The serve task bounds its own wait; this bound only guards
            // against a bug there hanging the caller.
            match tokio::time::timeout(SHUTDOWN_GRACE + HARD_STOP_WAIT * 2, task).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => warn!(%error, "test server task failed"),
                Err(_elapsed) => warn!("test server did not stop in time"),
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The URL clients should use for a listening address.
fn url_for(local_addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "wss" } else { "ws" };
    let ip = match local_addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("{scheme}://{}", SocketAddr::new(ip, local_addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_uses_loopback_for_unspecified_addresses() {
        let url = |addr: &str, tls| match addr.parse() {
            Ok(addr) => url_for(addr, tls),
            Err(error) => panic!("bad test address {addr}: {error}"),
        };
        assert_eq!(url("0.0.0.0:9001", false), "ws://127.0.0.1:9001");
        assert_eq!(url("[::]:9001", true), "wss://[::1]:9001");
        assert_eq!(url("10.1.2.3:80", false), "ws://10.1.2.3:80");
    }
}
