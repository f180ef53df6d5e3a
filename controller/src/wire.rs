//! The controller's side of the wire: every conversion between `wsfleet.v1` messages and the
//! controller's own types (an agent's hello, an assignment, a takeover, a stop, a rendezvous
//! release, a metric report, a run status). The rest of the controller builds and reads
//! messages only through here, so a change of the proto touches one file.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wsfleet_metrics::{MetricSets, MetricsError};
use wsfleet_proto::v1::{
    controller_message, Assignment, ControllerMessage, Hello, MetricReport, Refusal, RendezvousRelease, Reshare,
    RunPhase, RunStatus, Stop, Welcome,
};
use wsfleet_proto::{MIN_PROTOCOL_REVISION, PROTOCOL_REVISION, PROTOCOL_VERSION};
use wsfleet_scenario::plan;
use wsfleet_scenario::plan::control::{Control, ControlAction};
use wsfleet_scenario::plan::reshare::Takeover;
use wsfleet_scenario::Bundle;

use crate::registry::AgentInfo;
use crate::settings::ControllerSettings;

/// Wraps one kind of controller message.
pub fn message(kind: controller_message::Kind) -> ControllerMessage {
    ControllerMessage { kind: Some(kind) }
}

/// An agent as its hello describes it, before its clock is measured: `address` is where its
/// stream comes from, `sender` the way to its stream, `connection` the stream's number.
pub fn agent_of_hello(
    hello: &Hello,
    address: String,
    sender: mpsc::Sender<ControllerMessage>,
    connection: u64,
) -> AgentInfo {
    let now = Instant::now();
    AgentInfo {
        id: hello.agent_id.clone(),
        version: hello.agent_version.clone(),
        hostname: hello.hostname.clone(),
        address,
        capacity: hello.capacity.clone().unwrap_or_default(),
        clock_offset_nanos: 0,
        clock_rtt_nanos: i64::MAX,
        attached_at: now,
        last_seen: now,
        sender,
        usage: Default::default(),
        instance: hello.instance.clone(),
        // The lower of both sides' revisions applies on the stream.
        revision: hello.revision.min(PROTOCOL_REVISION),
        connection,
        closed: CancellationToken::new(),
    }
}

/// The welcome an accepted agent gets: the protocol and the heartbeat it must keep.
pub fn welcome(settings: &ControllerSettings) -> ControllerMessage {
    message(controller_message::Kind::Welcome(Welcome {
        protocol_version: PROTOCOL_VERSION,
        controller_version: env!("CARGO_PKG_VERSION").to_owned(),
        heartbeat_interval_ms: settings.heartbeat_interval.as_millis() as u32,
        controller_silence_timeout_ms: settings.silence_timeout.as_millis() as u32,
        revision: PROTOCOL_REVISION,
    }))
}

/// Why an agent's hello cannot be taken on protocol grounds, if it cannot: another version, a
/// revision that splits the load otherwise, or a weight no split can take.
pub fn hello_refusal(hello: &Hello) -> Option<String> {
    if hello.protocol_version != PROTOCOL_VERSION {
        return Some(format!(
            "agent `{}` speaks wsfleet protocol version {} but this controller speaks version {}: run agents and controller of the same wsfleet release",
            hello.agent_id, hello.protocol_version, PROTOCOL_VERSION
        ));
    }
    if hello.revision < MIN_PROTOCOL_REVISION {
        return Some(format!(
            "agent `{}` speaks revision {} of wsfleet protocol version {} but this controller needs revision {} or later (the agents' split of VUs and arrivals changed in revision {}): run agents and controller of the same wsfleet release",
            hello.agent_id, hello.revision, PROTOCOL_VERSION, MIN_PROTOCOL_REVISION, MIN_PROTOCOL_REVISION
        ));
    }
    let weight = hello.capacity.as_ref().map_or(0.0, |capacity| capacity.weight);
    if !plan::valid_weight(weight) {
        return Some(format!(
            "agent `{}` announces weight {weight}: a weight is a number from {} to {}, or 0 for the agent's cores; start it with such a --weight",
            hello.agent_id,
            plan::MIN_WEIGHT,
            plan::MAX_WEIGHT
        ));
    }
    None
}

/// The refusal of an agent, with why.
pub fn refusal(reason: String) -> ControllerMessage {
    message(controller_message::Kind::Refusal(Refusal {
        reason,
        protocol_version: PROTOCOL_VERSION,
    }))
}

/// One agent's part of a run, as the controller decides it.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentAssignment {
    pub run_id: String,
    pub bundle: Bundle,
    /// The agent's index among `weights`.
    pub agent_index: u32,
    pub weights: Vec<f64>,
    /// The common start, in the agent's own clock.
    pub start_unix_nanos: i64,
    /// Values for `${...}` the controller resolved (e.g. `testserver.url`).
    pub variables: HashMap<String, String>,
}

impl AgentAssignment {
    /// The assignment message, with the bundle's hash for the agent to check.
    pub fn to_message(&self) -> ControllerMessage {
        message(controller_message::Kind::Assignment(Assignment {
            run_id: self.run_id.clone(),
            scenario_source: self.bundle.source.clone(),
            scenario_path: self.bundle.path.clone(),
            files: self.bundle.files.clone().into_iter().collect(),
            scenario_hash: self.bundle.hash(),
            agent_index: self.agent_index,
            weights: self.weights.clone(),
            start_unix_nanos: self.start_unix_nanos,
            variables: self.variables.clone(),
        }))
    }
}

/// The message that tells a survivor every takeover of `run_id` so far.
pub fn reshare(run_id: &str, takeovers: &[Takeover]) -> ControllerMessage {
    message(controller_message::Kind::Reshare(Reshare {
        run_id: run_id.to_owned(),
        takeovers: takeovers
            .iter()
            .map(|takeover| wsfleet_proto::v1::Takeover {
                lost_agents: takeover.lost.iter().map(|agent| *agent as u32).collect(),
                from_run_millis: takeover.from.as_millis() as u64,
                joined: takeover.joined.map(|joined| wsfleet_proto::v1::Joined {
                    agent: joined.agent as u32,
                    weight: joined.weight,
                }),
            })
            .collect(),
    }))
}

/// Every change the operator made to `run_id` so far, oldest first.
pub fn run_control(run_id: &str, controls: &[Control]) -> ControllerMessage {
    use wsfleet_proto::v1::{ChangeKind, PartChange, RunControl};
    message(controller_message::Kind::RunControl(RunControl {
        run_id: run_id.to_owned(),
        changes: controls
            .iter()
            .map(|control| {
                let (kind, value, ramp) = match &control.action {
                    ControlAction::Set { value, ramp } => (ChangeKind::Set, *value, *ramp),
                    ControlAction::Hold => (ChangeKind::Hold, 0.0, Duration::ZERO),
                    ControlAction::Resume => (ChangeKind::Resume, 0.0, Duration::ZERO),
                    ControlAction::Pause => (ChangeKind::Pause, 0.0, Duration::ZERO),
                    ControlAction::Unpause => (ChangeKind::Unpause, 0.0, Duration::ZERO),
                    ControlAction::Stop => (ChangeKind::Stop, 0.0, Duration::ZERO),
                };
                PartChange {
                    part: control.part as u32,
                    at_run_millis: control.at.as_millis() as u64,
                    kind: kind as i32,
                    value,
                    ramp_millis: ramp.as_millis() as u64,
                }
            })
            .collect(),
    }))
}

/// Stops `run_id` on an agent: running iterations get `graceful` to finish.
pub fn stop(run_id: &str, graceful: Duration, reason: &str) -> ControllerMessage {
    message(controller_message::Kind::Stop(Stop {
        run_id: run_id.to_owned(),
        graceful_ms: graceful.as_millis() as u32,
        reason: reason.to_owned(),
    }))
}

/// Releases generation `generation` of rendezvous point `point`.
pub fn rendezvous_release(run_id: &str, point: u32, generation: u64) -> ControllerMessage {
    message(controller_message::Kind::RendezvousRelease(RendezvousRelease {
        run_id: run_id.to_owned(),
        point,
        generation,
    }))
}

/// The figures of an agent's metric report.
pub fn report_figures(report: &MetricReport) -> Result<MetricSets, MetricsError> {
    MetricSets::from_report(report)
}

/// The phase an agent's run status names; an unknown one reads as unspecified.
pub fn phase_of(status: &RunStatus) -> RunPhase {
    RunPhase::try_from(status.phase).unwrap_or(RunPhase::Unspecified)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads an assignment message back, as the agent sees it.
    fn read_assignment(assignment: &Assignment) -> AgentAssignment {
        AgentAssignment {
            run_id: assignment.run_id.clone(),
            bundle: Bundle {
                path: assignment.scenario_path.clone(),
                source: assignment.scenario_source.clone(),
                files: assignment.files.clone().into_iter().collect(),
            },
            agent_index: assignment.agent_index,
            weights: assignment.weights.clone(),
            start_unix_nanos: assignment.start_unix_nanos,
            variables: assignment.variables.clone(),
        }
    }

    /// Encodes and decodes `value` as bytes, as it travels.
    fn over_the_wire<M: prost::Message + Default>(value: &M) -> M {
        M::decode(value.encode_to_vec().as_slice()).expect("decodes")
    }

    #[test]
    fn an_assignment_reads_back_whole() {
        let assignment = AgentAssignment {
            run_id: "run1".into(),
            bundle: Bundle {
                path: "echo.yaml".into(),
                source: "load: { vus: 1, iterations: 1 }\n".into(),
                files: [("payload.bin".to_owned(), vec![0, 1, 2])].into_iter().collect(),
            },
            agent_index: 1,
            weights: vec![1.0, 2.5],
            start_unix_nanos: 1_700_000_000_000_000_000,
            variables: HashMap::from([("testserver.url".to_owned(), "ws://127.0.0.1:1/".to_owned())]),
        };
        let Some(controller_message::Kind::Assignment(sent)) = over_the_wire(&assignment.to_message()).kind else {
            panic!("not an assignment");
        };
        assert_eq!(sent.scenario_hash, assignment.bundle.hash());
        assert_eq!(read_assignment(&sent), assignment);
    }

    #[test]
    fn takeovers_read_back_whole() {
        let takeovers = vec![
            Takeover {
                lost: vec![1],
                from: Duration::from_millis(3_500),
                joined: None,
            },
            Takeover {
                lost: vec![0, 2],
                from: Duration::from_millis(9_000),
                joined: None,
            },
        ];
        let Some(controller_message::Kind::Reshare(sent)) = over_the_wire(&reshare("run1", &takeovers)).kind else {
            panic!("not a reshare");
        };
        assert_eq!(sent.run_id, "run1");
        let read: Vec<(Vec<u32>, u64)> = sent
            .takeovers
            .iter()
            .map(|takeover| (takeover.lost_agents.clone(), takeover.from_run_millis))
            .collect();
        assert_eq!(read, vec![(vec![1], 3_500), (vec![0, 2], 9_000)]);
    }

    #[test]
    fn a_hello_gives_the_agent_it_describes() {
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_id: "a1".into(),
            agent_version: "0.1.0".into(),
            capacity: Some(wsfleet_proto::v1::Capacity {
                cores: 4,
                open_file_limit: 1024,
                max_connections: 1000,
                weight: 0.0,
                source_addresses: vec!["127.0.0.2".into()],
            }),
            token: "secret".into(),
            hostname: "host".into(),
            revision: PROTOCOL_REVISION + 5,
            instance: "i-1".into(),
        };
        let agent = agent_of_hello(&over_the_wire(&hello), "10.0.0.1:5".into(), mpsc::channel(1).0, 7);
        assert_eq!(
            (agent.id.as_str(), agent.hostname.as_str(), agent.instance.as_str()),
            ("a1", "host", "i-1")
        );
        assert_eq!(agent.capacity.max_connections, 1000);
        assert_eq!(agent.capacity.source_addresses, vec!["127.0.0.2".to_owned()]);
        // A newer agent speaks this controller's revision.
        assert_eq!(agent.revision, PROTOCOL_REVISION);
        assert_eq!(agent.connection, 7);
    }

    #[test]
    fn agents_of_another_version_an_older_split_or_a_bad_weight_are_refused() {
        let hello = |protocol_version, revision| Hello {
            protocol_version,
            agent_id: "a1".into(),
            revision,
            ..Default::default()
        };
        assert_eq!(hello_refusal(&hello(PROTOCOL_VERSION, PROTOCOL_REVISION)), None);
        // A newer agent speaks this controller's revision.
        assert_eq!(hello_refusal(&hello(PROTOCOL_VERSION, PROTOCOL_REVISION + 1)), None);
        let older = hello_refusal(&hello(PROTOCOL_VERSION, MIN_PROTOCOL_REVISION - 1)).expect("refused");
        assert!(
            older.contains(&format!("speaks revision {}", MIN_PROTOCOL_REVISION - 1))
                && older.contains(&format!("needs revision {MIN_PROTOCOL_REVISION} or later")),
            "{older}"
        );
        let other = hello_refusal(&hello(PROTOCOL_VERSION + 1, PROTOCOL_REVISION)).expect("refused");
        assert!(other.contains("speaks wsfleet protocol version"), "{other}");
        // A weight no split can take, whatever the rest of the hello.
        let weighed = |weight| Hello {
            capacity: Some(wsfleet_proto::v1::Capacity {
                weight,
                ..Default::default()
            }),
            ..hello(PROTOCOL_VERSION, PROTOCOL_REVISION)
        };
        for weight in [f64::NAN, f64::INFINITY, -1.0, 1e-9, 2e6, 1e300] {
            let refused = hello_refusal(&weighed(weight)).expect("refused");
            assert!(refused.contains("agent `a1` announces weight"), "{refused}");
        }
        for weight in [0.0, 0.000_001, 8.0, 1e6] {
            assert_eq!(hello_refusal(&weighed(weight)), None, "weight {weight}");
        }
    }

    #[test]
    fn a_report_reads_back_whole() {
        let mut sets = MetricSets::default();
        let set = sets.sets.entry("echo".into()).or_default();
        set.counters.insert("messages_sent".into(), 12);
        let mut latency = wsfleet_metrics::new_histogram();
        latency.record(1_500).expect("records");
        set.histograms.insert("message_latency".into(), latency);
        sets.gauges.insert("active_connections".into(), 3);
        let report = over_the_wire(&sets.to_report("run1", 4).expect("encodes"));
        assert_eq!(report.interval, 4);
        let figures = report_figures(&report).expect("decodes");
        assert_eq!(figures.total().counter("messages_sent"), 12);
        assert_eq!(figures.gauge("active_connections"), 3);
        assert_eq!(figures.sets["echo"].histograms["message_latency"].len(), 1);
    }

    #[test]
    fn stops_releases_and_statuses() {
        let Some(controller_message::Kind::Stop(sent)) =
            over_the_wire(&stop("run1", Duration::from_millis(2_500), "stopped by the user")).kind
        else {
            panic!("not a stop");
        };
        assert_eq!((sent.graceful_ms, sent.reason.as_str()), (2_500, "stopped by the user"));
        let Some(controller_message::Kind::RendezvousRelease(sent)) =
            over_the_wire(&rendezvous_release("run1", 2, 5)).kind
        else {
            panic!("not a release");
        };
        assert_eq!((sent.point, sent.generation), (2, 5));
        let status = RunStatus {
            phase: RunPhase::Finished as i32,
            ..RunStatus::default()
        };
        assert_eq!(phase_of(&over_the_wire(&status)), RunPhase::Finished);
        let unknown = RunStatus {
            phase: 99,
            ..RunStatus::default()
        };
        assert_eq!(phase_of(&unknown), RunPhase::Unspecified);
    }
}
