//! The wsfleet agent: the load engine. It attaches to a controller over one gRPC stream,
//! receives assignments, plays its exact share of each scenario's VUs over WebSocket
//! connections on per-core worker threads, and streams per-second metric reports back.
//!
//! Tasks: the session (stream, heartbeats, stops load when the controller goes away), the
//! executor of a run (grows and shrinks VUs by the plan and the takeovers of lost agents' share),
//! one task per VU on a worker, and the reporter (merges the workers' intervals into one report
//! each, held in the outbox until the controller acknowledges it, across reattachments).
//!
//! Where each part lives: `session` (the stream and its events), `wire` (every conversion
//! between the `wsfleet.v1` messages and the agent's types), `run` (one assignment: prepare,
//! start the workers, play), `executor` (one scenario part by its load model), `reporter`,
//! `outbox`, `worker` (the threads VUs run on), `vu` (one VU), `connection` and `upgrade` (its
//! socket), `failure` (failure kinds), `rendezvous`, `stop`, `capacity`, `clock` and `config`.

pub mod capacity;
mod clock;
pub mod config;
pub mod connection;
mod deflate;
mod executor;
pub mod failure;
pub mod http;
pub mod outbox;
pub mod protocol;
mod read_buffer;
pub mod rendezvous;
mod reporter;
pub mod run;
pub mod session;
pub mod stop;
pub mod upgrade;
pub mod vu;
pub mod wire;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use config::{parse_source_addresses, AgentConfig, ClientTls, SourceAddressError};
pub use session::AgentError;

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
            // Final: attaching again would be refused again.
            Err(error @ (AgentError::Refused(_) | AgentError::Incompatible(_))) => return Err(error),
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
