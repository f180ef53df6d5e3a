//! The wsfleet agent: the load engine. It attaches to a controller over one gRPC stream,
//! receives assignments, plays its exact share of each scenario's VUs over WebSocket
//! connections on per-core worker threads, and streams per-second metric reports back.
//!
//! Tasks: the session (stream, heartbeats, stops load when the controller goes away), the
//! executor of a run (grows and shrinks VUs by the plan and the takeovers of lost agents' share),
//! one task per VU on a worker, and the reporter (merges the workers' intervals into one report
//! each, held in the outbox until the controller acknowledges it, across reattachments).

pub mod capacity;
mod clock;
pub mod connection;
pub mod failure;
pub mod outbox;
pub mod rendezvous;
pub mod run;
pub mod session;
pub mod stop;
pub mod upgrade;
pub mod vu;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How an agent is set up.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The controller's gRPC address, e.g. `http://127.0.0.1:7600`.
    pub controller: String,
    /// Defaults to `<hostname>-<pid>`.
    pub agent_id: Option<String>,
    pub token: Option<String>,
    /// Relative share of load; defaults to the number of cores.
    pub weight: Option<f64>,
    /// At most this many connections (never more than the open-file limit allows).
    pub max_connections: Option<u64>,
    /// Worker threads (single-threaded runtimes) that run VUs; defaults to the cores.
    pub workers: usize,
    /// Exit when the controller goes away instead of reattaching (local agents of `wsfleet run`).
    pub once: bool,
    /// Overrides the protocol version sent in the hello (tests of refusal only).
    pub protocol_version: Option<u32>,
    /// TLS to the controller (use an `https://` controller URL).
    pub tls: Option<ClientTls>,
    /// Local addresses to spread connections over, round robin (each gives ~28k ports per
    /// destination); empty lets the kernel choose.
    pub source_addresses: Vec<std::net::IpAddr>,
}

/// Parses `127.0.0.2-127.0.0.9` (an IPv4 range) or `10.0.0.5,10.0.0.6` (a list, ranges allowed).
pub fn parse_source_addresses(spec: &str) -> Result<Vec<std::net::IpAddr>, String> {
    let mut addresses = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|part| !part.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                let (Ok(first), Ok(last)) = (
                    first.trim().parse::<std::net::Ipv4Addr>(),
                    last.trim().parse::<std::net::Ipv4Addr>(),
                ) else {
                    return Err(format!("`{part}` is not an IPv4 range: write e.g. 127.0.0.2-127.0.0.9"));
                };
                let (first, last) = (u32::from(first), u32::from(last));
                if first > last || last - first > 65_535 {
                    return Err(format!(
                        "`{part}` is not an ascending range of at most 65,536 addresses"
                    ));
                }
                addresses.extend((first..=last).map(|address| std::net::IpAddr::V4(address.into())));
            }
            None => addresses.push(part.parse().map_err(|_| format!("`{part}` is not an IP address"))?),
        }
    }
    Ok(addresses)
}

/// The agent's TLS material for the controller channel, PEM-encoded.
#[derive(Clone, Debug)]
pub struct ClientTls {
    /// The CA that signed the controller's certificate.
    pub ca_pem: String,
    /// The agent's certificate and key, for controllers that require mutual TLS.
    pub identity: Option<(String, String)>,
    /// The name to verify in the controller's certificate (default: the URL's host).
    pub domain: Option<String>,
}

impl AgentConfig {
    pub fn new(controller: impl Into<String>) -> Self {
        AgentConfig {
            controller: controller.into(),
            agent_id: None,
            token: None,
            weight: None,
            max_connections: None,
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            once: false,
            protocol_version: None,
            tls: None,
            source_addresses: Vec::new(),
        }
    }
}

/// Why an agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("controller address `{0}` is not valid ({1}): write it as http://HOST:PORT")]
    BadControllerUrl(String, String),
    #[error("cannot reach controller at {0}: {1}")]
    Unreachable(String, String),
    #[error("the controller refused this agent: {0}")]
    Refused(String),
    #[error("lost the controller: {0}")]
    Detached(String),
}

/// Runs the agent until `cancel` fires (or, with `once`, until the controller goes away).
/// Reattaches with backoff otherwise; a refusal is final. Workers run on threads of their own.
pub async fn run(config: AgentConfig, cancel: CancellationToken) -> Result<(), AgentError> {
    run_with(config, cancel, None).await
}

/// Like [`run`], with the first worker on the calling thread. Poll it from a current-thread
/// runtime (`block_on`) with `workers: 1` and the agent is one thread: the session and the VUs
/// share it, and the kernel and libc skip their per-call bookkeeping for threads on every socket
/// read and write (measured: ~0.25 µs per echoed message, ~2% of the echo path).
pub async fn run_on_this_thread(config: AgentConfig, cancel: CancellationToken) -> Result<(), AgentError> {
    let local = tokio::task::LocalSet::new();
    let (here, serve) = worker::AgentThread::new();
    local.spawn_local(serve);
    local.run_until(run_with(config, cancel, Some(here))).await
}

async fn run_with(
    config: AgentConfig,
    cancel: CancellationToken,
    here: Option<worker::AgentThread>,
) -> Result<(), AgentError> {
    let agent_id: Arc<str> = Arc::from(config.agent_id.clone().unwrap_or_else(|| {
        let host = hostname::get()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "agent".into());
        format!("{host}-{}", std::process::id())
    }));
    let state = session::AgentState {
        agent_id,
        instance: uuid::Uuid::new_v4().simple().to_string(),
        outbox: Arc::new(outbox::Outbox::default()),
        here,
    };
    let mut backoff = Duration::from_millis(250);
    loop {
        let outcome = session::attach_once(&config, &state, &cancel).await;
        match outcome {
            Ok(session::SessionEnd::Cancelled) => return Ok(()),
            Ok(session::SessionEnd::Detached(reason)) => {
                if config.once {
                    return Err(AgentError::Detached(reason));
                }
                tracing::warn!(%reason, "detached from controller; reattaching");
                backoff = Duration::from_millis(250);
            }
            Err(AgentError::Refused(reason)) => return Err(AgentError::Refused(reason)),
            Err(error) => {
                if config.once {
                    return Err(error);
                }
                tracing::warn!(%error, retry_in = ?backoff, "cannot attach");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn source_address_specs() {
        let range = super::parse_source_addresses("127.0.0.2-127.0.0.4").unwrap();
        assert_eq!(
            range.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        );
        assert_eq!(super::parse_source_addresses("10.0.0.1, ::1").unwrap().len(), 2);
        assert!(super::parse_source_addresses("127.0.0.9-127.0.0.2").is_err());
        assert!(super::parse_source_addresses("localhost").is_err());
    }
}
