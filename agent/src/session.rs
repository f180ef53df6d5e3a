//! The agent's session with its controller: one `Attach` stream for the agent's lifetime,
//! hello and refusal, clock probes, heartbeats both ways, assignments, reshares and stops, and
//! the run messages the outbox holds (sent until acknowledged). When the controller goes silent
//! or away, the load stops; what was measured stays in the outbox for the next stream.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use wsfleet_proto::v1::fleet_client::FleetClient;
use wsfleet_proto::v1::{
    agent_message, controller_message, AgentMessage, ClockReply, Heartbeat, Hello, RendezvousArrive, Reshare,
};
use wsfleet_proto::{MAX_MESSAGE_BYTES, PROTOCOL_REVISION, PROTOCOL_VERSION};
use wsfleet_scenario::plan::reshare::Takeover;

use crate::outbox::Outbox;
use crate::run::{play, RunControl};
use crate::{AgentConfig, AgentError};

/// How long the controller may take to answer the hello (a stalled network must not hang the
/// agent: it retries instead).
const HELLO_ANSWER_LIMIT: Duration = Duration::from_secs(5);

/// How a session ended.
pub enum SessionEnd {
    /// The agent was asked to stop.
    Cancelled,
    /// The controller closed the stream or went silent; the load was stopped.
    Detached(String),
}

fn unix_nanos_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as i64)
        .unwrap_or(0)
}

/// An error with its causes, which carry the useful part (e.g. the TLS alert).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What a failed `Attach` call means, with a hint for TLS failures.
fn status_text(status: &tonic::Status, tls: bool) -> String {
    let mut text = status.message().to_owned();
    if let Some(source) = std::error::Error::source(status) {
        text.push_str(": ");
        text.push_str(&error_chain(source));
    }
    if tls {
        text.push_str(" (with TLS on, check that --ca signed the controller's certificate and, if the controller requires client certificates, that --cert and --key are given)");
    }
    text
}

fn message(kind: agent_message::Kind) -> AgentMessage {
    AgentMessage { kind: Some(kind) }
}

/// What the agent keeps from one session to the next.
pub struct AgentState {
    pub agent_id: Arc<str>,
    /// Chosen once per process: tells the controller a reattachment from a second agent that
    /// took the same id.
    pub instance: String,
    pub outbox: Arc<Outbox>,
    /// Set when the agent is one thread: its worker runs there.
    pub here: Option<crate::worker::AgentThread>,
}

/// The next rendezvous arrival of the current run; never, without one.
async fn next_arrival(arrivals: &mut Option<(String, mpsc::UnboundedReceiver<(u32, u64)>)>) -> (u32, u64) {
    match arrivals {
        Some((_, receiver)) => match receiver.recv().await {
            Some(arrival) => arrival,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// The takeovers a reshare carries, in the agent's terms.
fn takeovers_of(reshare: &Reshare) -> Vec<Takeover> {
    reshare
        .takeovers
        .iter()
        .map(|takeover| Takeover {
            lost: takeover.lost_agents.iter().map(|agent| *agent as usize).collect(),
            from: Duration::from_millis(takeover.from_run_millis),
        })
        .collect()
}

/// One attachment to the controller, until it ends.
pub async fn attach_once(
    config: &AgentConfig,
    state: &AgentState,
    cancel: &CancellationToken,
) -> Result<SessionEnd, AgentError> {
    let agent_id = &state.agent_id;
    let outbox = &state.outbox;
    let mut endpoint = tonic::transport::Endpoint::from_shared(config.controller.clone())
        .map_err(|error| AgentError::BadControllerUrl(config.controller.clone(), error.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    if let Some(tls) = &config.tls {
        let mut tls_config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca_pem));
        if let Some((certificate, key)) = &tls.identity {
            tls_config = tls_config.identity(tonic::transport::Identity::from_pem(certificate, key));
        }
        if let Some(domain) = &tls.domain {
            tls_config = tls_config.domain_name(domain.clone());
        }
        endpoint = endpoint
            .tls_config(tls_config)
            .map_err(|error| AgentError::BadControllerUrl(config.controller.clone(), error_chain(&error)))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|error| AgentError::Unreachable(config.controller.clone(), error_chain(&error)))?;
    let mut client = FleetClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let (outgoing, receiver) = mpsc::channel::<AgentMessage>(4096);
    let capacity = crate::capacity::measure(config.max_connections, config.weight, &config.source_addresses);
    let hello = Hello {
        protocol_version: config.protocol_version.unwrap_or(PROTOCOL_VERSION),
        agent_id: agent_id.to_string(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        capacity: Some(capacity),
        token: config.token.clone().unwrap_or_default(),
        hostname: hostname::get()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
        revision: PROTOCOL_REVISION,
        instance: state.instance.clone(),
    };
    // The channel is empty and its receiver alive: this cannot fail.
    let _ = outgoing.send(message(agent_message::Kind::Hello(hello))).await;
    let response = match tokio::time::timeout(HELLO_ANSWER_LIMIT, client.attach(ReceiverStream::new(receiver))).await {
        Err(_) => {
            return Err(AgentError::Unreachable(
                config.controller.clone(),
                format!("no answer to hello within {HELLO_ANSWER_LIMIT:?}"),
            ))
        }
        Ok(response) => response.map_err(|status| {
            AgentError::Unreachable(config.controller.clone(), status_text(&status, config.tls.is_some()))
        })?,
    };
    let mut inbound = response.into_inner();

    let welcome = match tokio::time::timeout(HELLO_ANSWER_LIMIT, inbound.message()).await {
        Err(_) => {
            return Err(AgentError::Unreachable(
                config.controller.clone(),
                "no answer to hello within 10 s".into(),
            ))
        }
        Ok(Err(status)) => {
            return Err(AgentError::Unreachable(
                config.controller.clone(),
                status.message().to_owned(),
            ))
        }
        Ok(Ok(None)) => {
            return Err(AgentError::Unreachable(
                config.controller.clone(),
                "stream closed after hello".into(),
            ))
        }
        Ok(Ok(Some(first))) => match first.kind {
            Some(controller_message::Kind::Welcome(welcome)) => welcome,
            Some(controller_message::Kind::Refusal(refusal)) => {
                return Err(AgentError::Refused(refusal.reason));
            }
            _ => {
                return Err(AgentError::Unreachable(
                    config.controller.clone(),
                    "unexpected first message".into(),
                ))
            }
        },
    };
    let heartbeat_every = Duration::from_millis(u64::from(welcome.heartbeat_interval_ms.max(100)));
    let silence_limit = Duration::from_millis(u64::from(welcome.controller_silence_timeout_ms.max(500)));
    let revision = welcome.revision.min(PROTOCOL_REVISION);
    // Everything not acknowledged yet goes out again, oldest first; an older controller does
    // not acknowledge, so then a report is forgotten once sent.
    outbox.rewind(revision >= 1);
    tracing::info!(agent = %agent_id, controller = %config.controller, revision, resending = outbox.unacknowledged(), "attached");

    let mut heartbeat = tokio::time::interval(heartbeat_every);
    let mut usage = crate::capacity::ProcessUsage::new();
    let mut current_run: Option<(String, RunControl)> = None;
    // Rendezvous arrivals of the current run, reported to the controller as they come.
    let mut arrivals: Option<(String, mpsc::UnboundedReceiver<(u32, u64)>)> = None;
    // Run messages taken from the outbox, waiting for room on the stream. Never awaited
    // unconditionally: a stalled stream must not keep the session from noticing the silence.
    let mut pending: VecDeque<AgentMessage> = VecDeque::new();
    let mut last_heard = tokio::time::Instant::now();
    let end = loop {
        tokio::select! {
            _ = cancel.cancelled() => break SessionEnd::Cancelled,
            _ = heartbeat.tick() => {
                let (cpu_percent, rss_bytes) = usage.sample();
                let beat = Heartbeat {
                    sent_unix_nanos: unix_nanos_now(),
                    cpu_percent,
                    rss_bytes,
                    reports_unacknowledged: outbox.unacknowledged() as u64,
                };
                let _ = outgoing.try_send(message(agent_message::Kind::Heartbeat(beat)));
            }
            _ = tokio::time::sleep_until(last_heard + silence_limit) => {
                break SessionEnd::Detached(format!("controller silent for {silence_limit:?}"));
            }
            _ = outbox.queued.notified() => pending.extend(outbox.take_unsent()),
            arrival = next_arrival(&mut arrivals) => {
                let Some((run_id, receiver)) = arrivals.as_mut() else { continue };
                // Everything that arrived meanwhile goes in one message per point and generation,
                // ahead of reports: other agents' VUs may be waiting for these.
                let mut counts: std::collections::BTreeMap<(u32, u64), u64> = std::collections::BTreeMap::new();
                *counts.entry(arrival).or_insert(0) += 1;
                while let Ok(more) = receiver.try_recv() {
                    *counts.entry(more).or_insert(0) += 1;
                }
                for ((point, generation), count) in counts.into_iter().rev() {
                    let arrive = RendezvousArrive { run_id: run_id.clone(), point, generation, count };
                    pending.push_front(message(agent_message::Kind::RendezvousArrive(arrive)));
                }
            }
            permit = outgoing.reserve(), if !pending.is_empty() => {
                let Ok(permit) = permit else {
                    break SessionEnd::Detached("the stream to the controller closed".into());
                };
                if let Some(next) = pending.pop_front() {
                    permit.send(next);
                }
            }
            next = inbound.message() => {
                let next = match next {
                    Err(status) => break SessionEnd::Detached(format!("stream error: {}", status.message())),
                    Ok(None) => break SessionEnd::Detached("controller closed the stream".into()),
                    Ok(Some(next)) => next,
                };
                last_heard = tokio::time::Instant::now();
                match next.kind {
                    Some(controller_message::Kind::ClockProbe(probe)) => {
                        let reply = ClockReply { probe_id: probe.probe_id, agent_unix_nanos: unix_nanos_now() };
                        let _ = outgoing.send(message(agent_message::Kind::ClockReply(reply))).await;
                    }
                    Some(controller_message::Kind::Assignment(assignment)) => {
                        if let Some((_, control)) = current_run.take() {
                            // A new assignment replaces a finished or abandoned one.
                            control.hard.cancel();
                        }
                        let control = RunControl::new();
                        arrivals = control
                            .rendezvous_arrivals
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .take()
                            .map(|receiver| (assignment.run_id.clone(), receiver));
                        current_run = Some((assignment.run_id.clone(), control.clone()));
                        tracing::info!(run = %assignment.run_id, "assignment received");
                        tokio::spawn(play(
                            assignment,
                            agent_id.clone(),
                            config.workers,
                            state.here.clone(),
                            config.source_addresses.clone(),
                            outbox.clone(),
                            control,
                        ));
                    }
                    Some(controller_message::Kind::Stop(stop)) => {
                        if let Some((run_id, control)) = &current_run {
                            if *run_id == stop.run_id || stop.run_id.is_empty() {
                                tracing::info!(run = %run_id, reason = %stop.reason, "stop received");
                                control.stop(Duration::from_millis(u64::from(stop.graceful_ms)));
                            }
                        }
                    }
                    Some(controller_message::Kind::Reshare(reshare)) => {
                        match &current_run {
                            Some((run_id, control)) if *run_id == reshare.run_id => {
                                let takeovers = takeovers_of(&reshare);
                                tracing::info!(run = %run_id, takeovers = takeovers.len(), "reshare received: taking over lost agents' load");
                                control.takeovers.send_replace(takeovers);
                            }
                            _ => tracing::debug!(run = %reshare.run_id, "reshare for a run not playing here ignored"),
                        }
                    }
                    Some(controller_message::Kind::ReportAck(ack)) => outbox.acknowledge(&ack.run_id, ack.interval),
                    Some(controller_message::Kind::RendezvousRelease(release)) => {
                        if let Some((run_id, control)) = &current_run {
                            if *run_id == release.run_id {
                                control.rendezvous.release(release.point, release.generation);
                            }
                        }
                    }
                    Some(controller_message::Kind::Heartbeat(_)) | None => {}
                    Some(controller_message::Kind::Welcome(_)) | Some(controller_message::Kind::Refusal(_)) => {}
                }
            }
        }
    };
    // Whatever ended the session, the load stops now (connections are closed with close frames).
    if let Some((run_id, control)) = current_run.filter(|(_, control)| !control.done.is_cancelled()) {
        tracing::warn!(run = %run_id, "stopping load: session ended");
        control.graceful.cancel();
        control.hard.cancel();
        // Give VUs their bounded close before the process may exit.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(end)
}
