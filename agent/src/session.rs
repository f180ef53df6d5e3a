//! The agent's session with its controller: one `Attach` stream for the agent's lifetime,
//! hello and refusal, clock probes, heartbeats both ways, assignments, reshares and stops, and
//! the run messages the outbox holds (sent until acknowledged). When the controller goes silent
//! or away, the load stops; what was measured stays in the outbox for the next stream.
//!
//! The stream's messages are read and written in the agent's terms (`crate::wire`); a
//! [`Session`] handles one event per method.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use wsfleet_proto::v1::fleet_client::FleetClient;
use wsfleet_proto::v1::{AgentMessage, ControllerMessage};
use wsfleet_proto::{MAX_MESSAGE_BYTES, MIN_PROTOCOL_REVISION, PROTOCOL_REVISION, PROTOCOL_VERSION};

use crate::capacity::ProcessUsage;
use crate::clock::unix_nanos_now;
use crate::config::AgentConfig;
use crate::outbox::Outbox;
use crate::run::{Player, RunControl};
use crate::wire::{Answer, Arrival, Assignment, Beat, ClockReply, Command, Registration, StopOrder, Terms};

/// How long the controller may take to answer the hello (a stalled network must not hang the
/// agent: it retries instead).
const HELLO_ANSWER_LIMIT: Duration = Duration::from_secs(5);

/// The shortest heartbeat period and silence limit the agent accepts from a welcome.
const MIN_HEARTBEAT_EVERY: Duration = Duration::from_millis(100);
const MIN_SILENCE_LIMIT: Duration = Duration::from_millis(500);

/// Room for outgoing messages on the stream.
const OUTGOING_CAPACITY: usize = 4096;

/// How long VUs get to close their connections when a session ends under load, before the
/// process may exit.
const CLOSE_ON_DETACH: Duration = Duration::from_millis(200);

/// Why an agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("controller address `{0}` is not valid ({1}): write it as http://HOST:PORT")]
    BadControllerUrl(String, String),
    #[error("cannot reach controller at {0}: {1}")]
    Unreachable(String, String),
    #[error("the controller refused this agent: {0}")]
    Refused(String),
    #[error("this agent cannot work with the controller: {0}")]
    Incompatible(String),
    #[error("lost the controller: {0}")]
    Detached(String),
}

/// How a session ended.
pub enum SessionEnd {
    /// The agent was asked to stop.
    Cancelled,
    /// The controller closed the stream or went silent; the load was stopped.
    Detached(String),
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

/// One attachment to the controller, until it ends.
pub async fn attach_once(
    config: &AgentConfig,
    state: &AgentState,
    cancel: &CancellationToken,
) -> Result<SessionEnd, AgentError> {
    let client = connect(config).await?;
    let (outgoing, inbound, terms) = open_stream(config, state, client).await?;
    let heartbeat_every = terms.heartbeat_every.max(MIN_HEARTBEAT_EVERY);
    let silence_limit = terms.silence_limit.max(MIN_SILENCE_LIMIT);
    let revision = terms.revision.min(PROTOCOL_REVISION);
    // Everything not acknowledged yet goes out again, oldest first; an older controller does
    // not acknowledge, so then a report is forgotten once sent.
    state.outbox.rewind(revision >= 1);
    tracing::info!(agent = %state.agent_id, controller = %config.controller, revision, resending = state.outbox.unacknowledged(), "attached");
    let mut session = Session {
        player: Player {
            agent_id: state.agent_id.clone(),
            workers: config.workers,
            here: state.here.clone(),
            source_addresses: Arc::new(config.source_addresses.clone()),
            outbox: state.outbox.clone(),
        },
        outgoing,
        usage: ProcessUsage::new(),
        current_run: None,
        arrivals: None,
        pending: VecDeque::new(),
    };
    let end = session.serve(inbound, heartbeat_every, silence_limit, cancel).await;
    session.stop_load().await;
    Ok(end)
}

/// A channel to the controller, over TLS when configured.
async fn connect(config: &AgentConfig) -> Result<FleetClient<tonic::transport::Channel>, AgentError> {
    let bad_url = |detail: String| AgentError::BadControllerUrl(config.controller.clone(), detail);
    let mut endpoint = tonic::transport::Endpoint::from_shared(config.controller.clone())
        .map_err(|error| bad_url(error.to_string()))?
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
            .map_err(|error| bad_url(error_chain(&error)))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|error| AgentError::Unreachable(config.controller.clone(), error_chain(&error)))?;
    Ok(FleetClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// The agent's hello, with what it can hold now.
fn registration(config: &AgentConfig, state: &AgentState) -> Registration {
    Registration {
        protocol_version: config.protocol_version.unwrap_or(PROTOCOL_VERSION),
        revision: PROTOCOL_REVISION,
        agent_id: state.agent_id.to_string(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        instance: state.instance.clone(),
        hostname: hostname::get()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
        token: config.token.clone(),
        capacity: crate::capacity::measure(config.max_connections, config.weight, &config.source_addresses),
    }
}

/// Opens the `Attach` stream with the hello and reads the answer: the stream's two ends and
/// the welcome's terms, or why the controller cannot be used.
async fn open_stream(
    config: &AgentConfig,
    state: &AgentState,
    mut client: FleetClient<tonic::transport::Channel>,
) -> Result<(mpsc::Sender<AgentMessage>, tonic::Streaming<ControllerMessage>, Terms), AgentError> {
    let unreachable = |detail: String| AgentError::Unreachable(config.controller.clone(), detail);
    let no_answer = || unreachable(format!("no answer to hello within {HELLO_ANSWER_LIMIT:?}"));
    let (outgoing, receiver) = mpsc::channel::<AgentMessage>(OUTGOING_CAPACITY);
    // The channel is empty and its receiver alive: this cannot fail.
    let _ = outgoing.send(registration(config, state).into()).await;
    let response = tokio::time::timeout(HELLO_ANSWER_LIMIT, client.attach(ReceiverStream::new(receiver)))
        .await
        .map_err(|_| no_answer())?
        .map_err(|status| unreachable(status_text(&status, config.tls.is_some())))?;
    let mut inbound = response.into_inner();
    let first = match tokio::time::timeout(HELLO_ANSWER_LIMIT, inbound.message()).await {
        Err(_) => return Err(no_answer()),
        Ok(Err(status)) => return Err(unreachable(status.message().to_owned())),
        Ok(Ok(None)) => return Err(unreachable("stream closed after hello".into())),
        Ok(Ok(Some(first))) => first,
    };
    match Answer::from(first) {
        Answer::Welcome(terms) => Ok((outgoing, inbound, compatible(terms)?)),
        Answer::Refusal { reason } => Err(AgentError::Refused(reason)),
        Answer::Unexpected => Err(unreachable("unexpected first message".into())),
    }
}

/// The welcome's terms, if this agent can work under them: an older controller splits the
/// load otherwise than this agent would.
fn compatible(terms: Terms) -> Result<Terms, AgentError> {
    if terms.revision < MIN_PROTOCOL_REVISION {
        return Err(AgentError::Incompatible(format!(
            "the controller speaks revision {} of the protocol but this agent needs revision {MIN_PROTOCOL_REVISION} or later (the split of VUs and arrivals changed in revision {MIN_PROTOCOL_REVISION}): run agents and controller of the same wsfleet release",
            terms.revision
        )));
    }
    Ok(terms)
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

/// One stream's session once welcomed.
struct Session {
    /// What each assignment is played with.
    player: Player,
    outgoing: mpsc::Sender<AgentMessage>,
    usage: ProcessUsage,
    current_run: Option<(String, RunControl)>,
    /// Rendezvous arrivals of the current run, reported to the controller as they come.
    arrivals: Option<(String, mpsc::UnboundedReceiver<(u32, u64)>)>,
    /// Run messages taken from the outbox, waiting for room on the stream. Never awaited
    /// unconditionally: a stalled stream must not keep the session from noticing the silence.
    pending: VecDeque<AgentMessage>,
}

impl Session {
    /// Serves the stream until the agent is cancelled or the controller goes away or silent.
    async fn serve(
        &mut self,
        mut inbound: tonic::Streaming<ControllerMessage>,
        heartbeat_every: Duration,
        silence_limit: Duration,
        cancel: &CancellationToken,
    ) -> SessionEnd {
        let mut heartbeat = tokio::time::interval(heartbeat_every);
        let mut last_heard = tokio::time::Instant::now();
        // Owned here: a permit to send borrows its sender while the event is handled.
        let outbox = self.player.outbox.clone();
        let outgoing = self.outgoing.clone();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return SessionEnd::Cancelled,
                _ = heartbeat.tick() => self.beat(),
                _ = tokio::time::sleep_until(last_heard + silence_limit) => {
                    return SessionEnd::Detached(format!("controller silent for {silence_limit:?}"));
                }
                _ = outbox.queued.notified() => self.pending.extend(outbox.take_unsent()),
                arrival = next_arrival(&mut self.arrivals) => self.arrived(arrival),
                permit = outgoing.reserve(), if !self.pending.is_empty() => {
                    let Ok(permit) = permit else {
                        return SessionEnd::Detached("the stream to the controller closed".into());
                    };
                    if let Some(next) = self.pending.pop_front() {
                        permit.send(next);
                    }
                }
                next = inbound.message() => {
                    let next = match next {
                        Err(status) => return SessionEnd::Detached(format!("stream error: {}", status.message())),
                        Ok(None) => return SessionEnd::Detached("controller closed the stream".into()),
                        Ok(Some(next)) => next,
                    };
                    last_heard = tokio::time::Instant::now();
                    self.command(Command::from(next)).await;
                }
            }
        }
    }

    /// A heartbeat is due: say how the process is doing (dropped when the stream is full).
    fn beat(&mut self) {
        let (cpu_percent, rss_bytes) = self.usage.sample();
        let beat = Beat {
            sent_unix_nanos: unix_nanos_now(),
            cpu_percent,
            rss_bytes,
            reports_unacknowledged: self.player.outbox.unacknowledged() as u64,
        };
        let _ = self.outgoing.try_send(beat.into());
    }

    /// VUs reached a rendezvous: everything that arrived meanwhile goes in one message per
    /// point and generation, ahead of reports, since other agents' VUs may be waiting for these.
    fn arrived(&mut self, first: (u32, u64)) {
        let Some((run_id, receiver)) = self.arrivals.as_mut() else {
            return;
        };
        let mut counts: BTreeMap<(u32, u64), u64> = BTreeMap::new();
        *counts.entry(first).or_insert(0) += 1;
        while let Ok(more) = receiver.try_recv() {
            *counts.entry(more).or_insert(0) += 1;
        }
        for ((point, generation), count) in counts.into_iter().rev() {
            let arrival = Arrival {
                run_id: run_id.clone(),
                point,
                generation,
                count,
            };
            self.pending.push_front(arrival.into());
        }
    }

    /// What the controller asks.
    async fn command(&mut self, command: Command) {
        match command {
            Command::ClockProbe { probe_id } => {
                let reply = ClockReply {
                    probe_id,
                    agent_unix_nanos: unix_nanos_now(),
                };
                let _ = self.outgoing.send(reply.into()).await;
            }
            Command::Assign(assignment) => self.assign(assignment),
            Command::Stop(order) => self.stop(&order),
            Command::Reshare { run_id, takeovers } => match &self.current_run {
                Some((current, control)) if *current == run_id => {
                    tracing::info!(run = %run_id, takeovers = takeovers.len(), "reshare received: taking over lost agents' load");
                    control.takeovers.send_replace(takeovers);
                }
                _ => tracing::debug!(run = %run_id, "reshare for a run not playing here ignored"),
            },
            Command::Control { run_id, changes } => match &self.current_run {
                Some((current, control)) if *current == run_id => {
                    tracing::info!(run = %run_id, changes = changes.len(), "the operator changed the run");
                    control.controls.send_replace(changes);
                }
                _ => tracing::debug!(run = %run_id, "a change to a run not playing here ignored"),
            },
            Command::ReportAck { run_id, interval } => self.player.outbox.acknowledge(&run_id, interval),
            Command::Release {
                run_id,
                point,
                generation,
            } => {
                if let Some((current, control)) = &self.current_run {
                    if *current == run_id {
                        control.rendezvous.release(point, generation);
                    }
                }
            }
            Command::Heartbeat | Command::Ignored => {}
        }
    }

    /// A new assignment replaces a finished or abandoned one and starts playing.
    fn assign(&mut self, assignment: Assignment) {
        if let Some((_, control)) = self.current_run.take() {
            control.hard.cancel();
        }
        let control = RunControl::new();
        self.arrivals = control
            .rendezvous_arrivals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
            .map(|receiver| (assignment.run_id.clone(), receiver));
        self.current_run = Some((assignment.run_id.clone(), control.clone()));
        tracing::info!(run = %assignment.run_id, "assignment received");
        tokio::spawn(self.player.clone().play(assignment, control));
    }

    fn stop(&self, order: &StopOrder) {
        if let Some((run_id, control)) = &self.current_run {
            if order.applies_to(run_id) {
                tracing::info!(run = %run_id, reason = %order.reason, "stop received");
                control.stop(order.grace);
            }
        }
    }

    /// Whatever ended the session, the load stops now (connections are closed with close
    /// frames).
    async fn stop_load(&mut self) {
        if let Some((run_id, control)) = self
            .current_run
            .take()
            .filter(|(_, control)| !control.done.is_cancelled())
        {
            tracing::warn!(run = %run_id, "stopping load: session ended");
            control.graceful.cancel();
            control.hard.cancel();
            // Give VUs their bounded close before the process may exit.
            tokio::time::sleep(CLOSE_ON_DETACH).await;
        }
    }
}

#[cfg(test)]
mod tests;
