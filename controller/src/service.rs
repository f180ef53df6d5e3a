//! The `wsfleet.v1.Fleet` gRPC service: one `Attach` stream per agent.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use wsfleet_proto::v1::fleet_server::Fleet;
use wsfleet_proto::v1::{agent_message, controller_message, AgentMessage, ClockProbe, ControllerMessage, ReportAck};

use crate::registry::{AgentEvent, AgentInfo, Registry};
use crate::settings::ControllerSettings;
use crate::wire;

/// Clock probes sent to each agent after its hello; the one with the shortest round trip wins.
const CLOCK_PROBES: u64 = 5;

/// How long an agent has to answer one clock probe.
const CLOCK_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why an agent was dropped while its clock was measured.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("stream closed during clock probes")]
    Closed,
    #[error("no answer to a clock probe within {CLOCK_PROBE_TIMEOUT:?}")]
    Silent,
    #[error("stream error: {0}")]
    Stream(String),
    #[error("agent closed the stream")]
    Ended,
}

pub fn unix_nanos_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as i64)
        .unwrap_or(0)
}

pub struct FleetService {
    pub registry: Arc<Registry>,
    pub settings: Arc<ControllerSettings>,
    /// Ends every agent stream when the controller shuts down, so agents learn at once.
    pub shutdown: CancellationToken,
}

type OutboundStream = Pin<Box<dyn Stream<Item = Result<ControllerMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Fleet for FleetService {
    type AttachStream = OutboundStream;

    async fn attach(&self, request: Request<Streaming<AgentMessage>>) -> Result<Response<Self::AttachStream>, Status> {
        let address = request.remote_addr().map(|addr| addr.to_string()).unwrap_or_default();
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("the stream ended before the agent's hello"))?;
        let Some(agent_message::Kind::Hello(hello)) = first.kind else {
            return Err(Status::invalid_argument(
                "the first message on the stream must be a hello",
            ));
        };
        let (sender, receiver) = mpsc::channel::<ControllerMessage>(1024);
        let outbound: OutboundStream = Box::pin(tokio_stream::StreamExt::map(ReceiverStream::new(receiver), Ok));

        let refusal = wire::hello_refusal(&hello).or_else(|| {
            if self.settings.token.as_ref().is_some_and(|token| *token != hello.token) {
                Some(format!(
                    "agent `{}` presented a wrong or missing token: start it with the controller's --token",
                    hello.agent_id
                ))
            } else if hello.agent_id.is_empty() {
                Some("the agent sent an empty id: give it one with --id".to_owned())
            } else {
                // The same agent process coming back (its old stream broke) is welcome.
                self.registry
                    .refuse_duplicate(&hello.agent_id, &hello.instance)
                    .map(|error| error.to_string())
            }
        });
        if let Some(reason) = refusal {
            tracing::warn!(agent = %hello.agent_id, %address, %reason, "agent refused");
            let _ = sender.send(wire::refusal(reason)).await;
            return Ok(Response::new(outbound));
        }
        // The welcome goes out before the agent is registered, so nothing (an assignment) can
        // overtake it; read_agent registers the agent once its clock offset is known.
        let _ = sender.send(wire::welcome(&self.settings)).await;
        let info = wire::agent_of_hello(&hello, address, sender.clone(), self.registry.next_connection());
        tokio::spawn(read_agent(
            info,
            inbound,
            sender,
            self.registry.clone(),
            self.settings.clone(),
            self.shutdown.clone(),
        ));
        Ok(Response::new(outbound))
    }
}

/// Measures the agent's clock offset with a few probes: the probe with the shortest round
/// trip gives `agent_time - (sent + rtt / 2)`. Run messages that come meanwhile (an agent
/// that reattached resends its reports at once) are kept in `early` for after registration.
async fn probe_clock(
    agent: &mut AgentInfo,
    inbound: &mut Streaming<AgentMessage>,
    sender: &mpsc::Sender<ControllerMessage>,
    early: &mut Vec<AgentMessage>,
) -> Result<(), ProbeError> {
    for probe_id in 0..CLOCK_PROBES {
        let sent_at = unix_nanos_now();
        let probe = ClockProbe { probe_id };
        if sender
            .send(wire::message(controller_message::Kind::ClockProbe(probe)))
            .await
            .is_err()
        {
            return Err(ProbeError::Closed);
        }
        loop {
            let next = tokio::time::timeout(CLOCK_PROBE_TIMEOUT, inbound.message())
                .await
                .map_err(|_| ProbeError::Silent)?
                .map_err(|status| ProbeError::Stream(status.message().to_owned()))?
                .ok_or(ProbeError::Ended)?;
            match next.kind {
                Some(agent_message::Kind::ClockReply(reply)) if reply.probe_id == probe_id => {
                    let rtt = unix_nanos_now() - sent_at;
                    if rtt < agent.clock_rtt_nanos {
                        agent.clock_rtt_nanos = rtt;
                        agent.clock_offset_nanos = reply.agent_unix_nanos - (sent_at + rtt / 2);
                    }
                    break;
                }
                Some(agent_message::Kind::Report(_)) | Some(agent_message::Kind::RunStatus(_)) => early.push(next),
                // Heartbeats may interleave; they say nothing before registration.
                _ => continue,
            }
        }
    }
    Ok(())
}

/// Registers the agent once its clock is known, then reads its stream until it ends (or the
/// agent is silent for the limit, or comes back on a new stream): heartbeats and run messages.
/// Each report is acknowledged, so the agent can forget it.
async fn read_agent(
    mut agent: AgentInfo,
    mut inbound: Streaming<AgentMessage>,
    sender: mpsc::Sender<ControllerMessage>,
    registry: Arc<Registry>,
    settings: Arc<ControllerSettings>,
    shutdown: CancellationToken,
) {
    let agent_id = agent.id.clone();
    let connection = agent.connection;
    let replaced = agent.closed.clone();
    let acknowledges = agent.revision >= 1;
    let mut early = Vec::new();
    if let Err(reason) = probe_clock(&mut agent, &mut inbound, &sender, &mut early).await {
        tracing::warn!(agent = %agent_id, %reason, "agent dropped before registration");
        return;
    }
    let cores = agent.capacity.cores;
    let offset_us = agent.clock_offset_nanos / 1000;
    if let Err(error) = registry.attach(agent) {
        let _ = sender.send(wire::refusal(error.to_string())).await;
        return;
    }
    tracing::info!(agent = %agent_id, cores, clock_offset_us = offset_us, "agent attached");
    for message in early {
        if let Some(kind) = message.kind {
            deliver_run_message(&registry, &agent_id, &sender, acknowledges, kind);
        }
    }
    let mut heartbeat = tokio::time::interval(settings.heartbeat_interval);
    let mut last_heard = tokio::time::Instant::now();
    let reason = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break "controller shutting down".to_owned(),
            _ = replaced.cancelled() => break "replaced by the agent's new stream".to_owned(),
            _ = heartbeat.tick() => {
                let beat = wsfleet_proto::v1::Heartbeat {
                    sent_unix_nanos: unix_nanos_now(),
                    ..Default::default()
                };
                let _ = sender.try_send(wire::message(controller_message::Kind::Heartbeat(beat)));
            }
            // Silence is measured from the last message, whatever else the loop does meanwhile.
            _ = tokio::time::sleep_until(last_heard + settings.silence_timeout) => {
                break format!("agent silent for {:?}", settings.silence_timeout);
            }
            next = inbound.message() => {
                let message = match next {
                    Err(status) => break format!("stream error: {}", status.message()),
                    Ok(None) => break "agent closed the stream".to_owned(),
                    Ok(Some(message)) => message,
                };
                last_heard = tokio::time::Instant::now();
                registry.update(&agent_id, |agent| {
                    if agent.connection == connection {
                        agent.last_seen = Instant::now();
                    }
                });
                match message.kind {
                    Some(
                        kind @ (agent_message::Kind::Report(_)
                        | agent_message::Kind::RunStatus(_)
                        | agent_message::Kind::RendezvousArrive(_)),
                    ) => {
                        deliver_run_message(&registry, &agent_id, &sender, acknowledges, kind);
                    }
                    Some(agent_message::Kind::Heartbeat(beat)) => {
                        registry.update(&agent_id, |agent| {
                            if agent.connection == connection {
                                agent.usage.cpu_percent = beat.cpu_percent;
                                agent.usage.rss_bytes = beat.rss_bytes;
                                agent.usage.reports_unacknowledged = beat.reports_unacknowledged;
                            }
                        });
                    }
                    Some(agent_message::Kind::ClockReply(_)) => {}
                    Some(agent_message::Kind::Hello(_)) => {
                        tracing::warn!(agent = %agent_id, "second hello on one stream ignored");
                    }
                    None => {}
                }
            }
        }
    };
    tracing::info!(agent = %agent_id, %reason, "agent detached");
    registry.detach(&agent_id, connection, &reason);
}

/// Routes an agent's report or run status to the active run, and acknowledges a report so the
/// agent can forget it. Received is enough: the run counts each (agent, interval) once, and a
/// report of a run that is over has nowhere to go. A full queue loses the acknowledgement, and
/// the agent sends the report again on its next stream.
fn deliver_run_message(
    registry: &Registry,
    agent_id: &str,
    sender: &mpsc::Sender<ControllerMessage>,
    acknowledges: bool,
    kind: agent_message::Kind,
) {
    match kind {
        agent_message::Kind::Report(report) => {
            let run_id = report.run_id.clone();
            let interval = report.interval;
            registry.deliver(agent_id, &run_id, AgentEvent::Report(report));
            if acknowledges {
                let ack = ReportAck { run_id, interval };
                let _ = sender.try_send(wire::message(controller_message::Kind::ReportAck(ack)));
            }
        }
        agent_message::Kind::RunStatus(status) => {
            let run_id = status.run_id.clone();
            registry.deliver(agent_id, &run_id, AgentEvent::Status(status));
        }
        agent_message::Kind::RendezvousArrive(arrive) => {
            let run_id = arrive.run_id.clone();
            registry.deliver(agent_id, &run_id, AgentEvent::Rendezvous(arrive));
        }
        _ => {}
    }
}
