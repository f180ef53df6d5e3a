//! The agent's side of the wire: every conversion between the `wsfleet.v1` messages and the
//! agent's own types lives here, so the session, the run and the outbox speak in the agent's
//! terms and a change of the wire format touches this file (and its tests) only.
//!
//! Inbound, a [`ControllerMessage`] becomes an [`Answer`] (the first message of a stream) or a
//! [`Command`] (every later one). Outbound, each thing the agent says ([`Registration`],
//! [`Beat`], [`ClockReply`], [`Arrival`], [`RunStatus`], a metric report) becomes an
//! [`AgentMessage`]. Metric reports are encoded by `wsfleet_metrics` (`MetricSets::to_report`),
//! which owns the histogram encoding; they are only put in their envelope here.
//!
//! The checked-in fixtures `proto/fixtures/hello.v1.bin` and `assignment.v1.bin` are decoded by
//! the tests below into the agent's types, field by field.

use std::collections::HashMap;
use std::time::Duration;

use wsfleet_proto::v1::{self, agent_message, controller_message, AgentMessage, ControllerMessage, MetricReport};
use wsfleet_scenario::plan::control::{Control, ControlAction};
use wsfleet_scenario::plan::reshare::{Joined, Takeover};
use wsfleet_scenario::Bundle;

use crate::capacity::Capacity;

/// What the agent says of itself when it attaches: the hello.
#[derive(Clone, Debug, PartialEq)]
pub struct Registration {
    /// The protocol version the agent speaks (`wsfleet_proto::PROTOCOL_VERSION`, unless a test
    /// of refusal overrides it).
    pub protocol_version: u32,
    /// The revision within that version (`wsfleet_proto::PROTOCOL_REVISION`; see
    /// `MIN_PROTOCOL_REVISION` for the lowest a controller takes).
    pub revision: u32,
    pub agent_id: String,
    /// The wsfleet version of the agent binary.
    pub agent_version: String,
    /// Chosen once per process: tells a reattachment from a second agent with the same id.
    pub instance: String,
    pub hostname: String,
    /// The shared secret, when the controller requires one.
    pub token: Option<String>,
    pub capacity: Capacity,
}

impl From<Registration> for AgentMessage {
    fn from(registration: Registration) -> AgentMessage {
        let Capacity {
            cores,
            open_file_limit,
            max_connections,
            weight,
            source_addresses,
        } = registration.capacity;
        envelope(agent_message::Kind::Hello(v1::Hello {
            protocol_version: registration.protocol_version,
            agent_id: registration.agent_id,
            agent_version: registration.agent_version,
            capacity: Some(v1::Capacity {
                cores,
                open_file_limit,
                max_connections,
                weight,
                source_addresses: source_addresses.iter().map(ToString::to_string).collect(),
            }),
            // The wire has no "absent": an empty token is none.
            token: registration.token.unwrap_or_default(),
            hostname: registration.hostname,
            revision: registration.revision,
            instance: registration.instance,
        }))
    }
}

/// The terms a controller's welcome sets for the stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Terms {
    /// How often the agent must send a heartbeat.
    pub heartbeat_every: Duration,
    /// How long the controller may be silent before the agent stops its load.
    pub silence_limit: Duration,
    /// The additive revision the controller speaks.
    pub revision: u32,
}

/// The controller's answer to the hello: the first message of a stream.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    Welcome(Terms),
    /// The controller will not take this agent, for `reason`; final.
    Refusal {
        reason: String,
    },
    /// Anything else: the peer does not speak the protocol.
    Unexpected,
}

impl From<ControllerMessage> for Answer {
    fn from(message: ControllerMessage) -> Answer {
        match message.kind {
            Some(controller_message::Kind::Welcome(welcome)) => Answer::Welcome(Terms {
                heartbeat_every: Duration::from_millis(u64::from(welcome.heartbeat_interval_ms)),
                silence_limit: Duration::from_millis(u64::from(welcome.controller_silence_timeout_ms)),
                revision: welcome.revision,
            }),
            Some(controller_message::Kind::Refusal(refusal)) => Answer::Refusal { reason: refusal.reason },
            _ => Answer::Unexpected,
        }
    }
}

/// A run's part for this agent, as the controller assigned it.
#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    pub run_id: String,
    /// The scenario as written and every file it names.
    pub bundle: Bundle,
    /// The bundle's hash as the controller computed it (hex SHA-1), to check on arrival.
    pub scenario_hash: String,
    /// This agent's index among `weights`.
    pub agent_index: usize,
    /// Every agent's weight: each computes its own exact share from the whole list.
    pub weights: Vec<f64>,
    /// When to start, in this agent's wall clock, Unix epoch nanoseconds.
    pub start_unix_nanos: i64,
    /// Values for `${...}` variables the controller resolved.
    pub variables: HashMap<String, String>,
}

impl From<v1::Assignment> for Assignment {
    fn from(assignment: v1::Assignment) -> Assignment {
        Assignment {
            run_id: assignment.run_id,
            bundle: Bundle {
                path: assignment.scenario_path,
                source: assignment.scenario_source,
                files: assignment.files.into_iter().collect(),
            },
            scenario_hash: assignment.scenario_hash,
            agent_index: assignment.agent_index as usize,
            weights: assignment.weights,
            start_unix_nanos: assignment.start_unix_nanos,
            variables: assignment.variables,
        }
    }
}

/// The controller stops a run.
#[derive(Clone, Debug, PartialEq)]
pub struct StopOrder {
    /// The run to stop; `None` stops whatever runs.
    pub run_id: Option<String>,
    /// How long running iterations may go on before connections are closed.
    pub grace: Duration,
    pub reason: String,
}

impl StopOrder {
    /// Whether the order stops run `run_id`.
    pub fn applies_to(&self, run_id: &str) -> bool {
        self.run_id.as_deref().is_none_or(|stopped| stopped == run_id)
    }
}

/// What the controller asks of the agent once the stream is up.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Answer with the agent's wall clock ([`ClockReply`]).
    ClockProbe {
        probe_id: u64,
    },
    Assign(Assignment),
    Stop(StopOrder),
    /// Every takeover of `run_id` so far, oldest first: this agent's share grows by them.
    Reshare {
        run_id: String,
        takeovers: Vec<Takeover>,
    },
    /// Every change the operator made to `run_id` so far, oldest first.
    Control {
        run_id: String,
        changes: Vec<Control>,
    },
    /// The controller has the report of `run_id`'s `interval`.
    ReportAck {
        run_id: String,
        interval: u64,
    },
    /// VUs waiting at `point` in `generation` go on.
    Release {
        run_id: String,
        point: u32,
        generation: u64,
    },
    /// The controller is there and has nothing to say.
    Heartbeat,
    /// A message out of place (a second welcome or refusal, an empty one): nothing to do.
    Ignored,
}

impl From<ControllerMessage> for Command {
    fn from(message: ControllerMessage) -> Command {
        let Some(kind) = message.kind else {
            return Command::Ignored;
        };
        match kind {
            controller_message::Kind::ClockProbe(probe) => Command::ClockProbe {
                probe_id: probe.probe_id,
            },
            controller_message::Kind::Assignment(assignment) => Command::Assign(assignment.into()),
            controller_message::Kind::Stop(stop) => Command::Stop(StopOrder {
                run_id: Some(stop.run_id).filter(|run_id| !run_id.is_empty()),
                grace: Duration::from_millis(u64::from(stop.graceful_ms)),
                reason: stop.reason,
            }),
            controller_message::Kind::Reshare(reshare) => Command::Reshare {
                run_id: reshare.run_id,
                takeovers: reshare
                    .takeovers
                    .into_iter()
                    .map(|takeover| Takeover {
                        lost: takeover.lost_agents.into_iter().map(|agent| agent as usize).collect(),
                        from: Duration::from_millis(takeover.from_run_millis),
                        joined: takeover.joined.map(|joined| Joined {
                            agent: joined.agent as usize,
                            weight: joined.weight,
                        }),
                    })
                    .collect(),
            },
            controller_message::Kind::RunControl(control) => Command::Control {
                run_id: control.run_id,
                changes: control.changes.into_iter().filter_map(change_of).collect(),
            },
            controller_message::Kind::ReportAck(ack) => Command::ReportAck {
                run_id: ack.run_id,
                interval: ack.interval,
            },
            controller_message::Kind::RendezvousRelease(release) => Command::Release {
                run_id: release.run_id,
                point: release.point,
                generation: release.generation,
            },
            controller_message::Kind::Heartbeat(_) => Command::Heartbeat,
            controller_message::Kind::Welcome(_) | controller_message::Kind::Refusal(_) => Command::Ignored,
        }
    }
}

/// A change of the wire as the plan's; `None` for a kind this build does not know (a newer
/// controller's), which is left out rather than misread.
fn change_of(change: wsfleet_proto::v1::PartChange) -> Option<Control> {
    use wsfleet_proto::v1::ChangeKind;
    let action = match change.kind() {
        ChangeKind::Set => ControlAction::Set {
            value: change.value,
            ramp: Duration::from_millis(change.ramp_millis),
        },
        ChangeKind::Hold => ControlAction::Hold,
        ChangeKind::Resume => ControlAction::Resume,
        ChangeKind::Pause => ControlAction::Pause,
        ChangeKind::Unpause => ControlAction::Unpause,
        ChangeKind::Stop => ControlAction::Stop,
        ChangeKind::Unspecified => return None,
    };
    Some(Control {
        part: change.part as usize,
        at: Duration::from_millis(change.at_run_millis),
        action,
    })
}

/// The agent's heartbeat, with how the process is doing.
#[derive(Clone, Debug, PartialEq)]
pub struct Beat {
    /// The agent's wall clock, Unix epoch nanoseconds.
    pub sent_unix_nanos: i64,
    /// CPU use since the previous beat (100 = one core).
    pub cpu_percent: f64,
    pub rss_bytes: u64,
    /// Metric reports held for the controller, not yet acknowledged.
    pub reports_unacknowledged: u64,
}

impl From<Beat> for AgentMessage {
    fn from(beat: Beat) -> AgentMessage {
        envelope(agent_message::Kind::Heartbeat(v1::Heartbeat {
            sent_unix_nanos: beat.sent_unix_nanos,
            cpu_percent: beat.cpu_percent,
            rss_bytes: beat.rss_bytes,
            reports_unacknowledged: beat.reports_unacknowledged,
        }))
    }
}

/// The answer to a clock probe.
#[derive(Clone, Debug, PartialEq)]
pub struct ClockReply {
    pub probe_id: u64,
    /// The agent's wall clock when it handled the probe, Unix epoch nanoseconds.
    pub agent_unix_nanos: i64,
}

impl From<ClockReply> for AgentMessage {
    fn from(reply: ClockReply) -> AgentMessage {
        envelope(agent_message::Kind::ClockReply(v1::ClockReply {
            probe_id: reply.probe_id,
            agent_unix_nanos: reply.agent_unix_nanos,
        }))
    }
}

/// `count` VUs of `run_id` reached rendezvous `point` in `generation`.
#[derive(Clone, Debug, PartialEq)]
pub struct Arrival {
    pub run_id: String,
    pub point: u32,
    pub generation: u64,
    pub count: u64,
}

impl From<Arrival> for AgentMessage {
    fn from(arrival: Arrival) -> AgentMessage {
        envelope(agent_message::Kind::RendezvousArrive(v1::RendezvousArrive {
            run_id: arrival.run_id,
            point: arrival.point,
            generation: arrival.generation,
            count: arrival.count,
        }))
    }
}

/// Where a run stands on this agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunPhase {
    /// Assignment accepted, waiting for the start time.
    Ready,
    Running,
    /// Every VU is done and every report was handed over.
    Finished,
    /// The assignment could not be played (the status's message says why).
    Failed,
}

impl From<RunPhase> for v1::RunPhase {
    fn from(phase: RunPhase) -> v1::RunPhase {
        match phase {
            RunPhase::Ready => v1::RunPhase::Ready,
            RunPhase::Running => v1::RunPhase::Running,
            RunPhase::Finished => v1::RunPhase::Finished,
            RunPhase::Failed => v1::RunPhase::Failed,
        }
    }
}

/// A run's status, as the controller is told it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunStatus {
    pub run_id: String,
    pub phase: RunPhase,
    /// Why the run failed; empty otherwise.
    pub message: String,
    /// The last interval reported (with [`RunPhase::Finished`]).
    pub last_interval: u64,
    /// Reports of the run the agent could not keep while the controller was away.
    pub reports_dropped: u64,
}

impl From<RunStatus> for AgentMessage {
    fn from(status: RunStatus) -> AgentMessage {
        envelope(agent_message::Kind::RunStatus(v1::RunStatus {
            run_id: status.run_id,
            phase: v1::RunPhase::from(status.phase) as i32,
            message: status.message,
            last_interval: status.last_interval,
            reports_dropped: status.reports_dropped,
        }))
    }
}

/// A metric report (encoded by `wsfleet_metrics`) in its envelope.
pub fn report_message(report: MetricReport) -> AgentMessage {
    envelope(agent_message::Kind::Report(report))
}

fn envelope(kind: agent_message::Kind) -> AgentMessage {
    AgentMessage { kind: Some(kind) }
}

#[cfg(test)]
mod tests;
