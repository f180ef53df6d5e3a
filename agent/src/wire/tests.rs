//! Round trips through the wire (the agent's type, its message, the bytes, and back) for every
//! conversion, and the checked-in fixtures read into the agent's types. The way back is the
//! controller's side of each conversion, written here only to read what the agent sends and to
//! write what it reads.

use std::collections::BTreeMap;
use std::net::IpAddr;

use prost::Message;

use super::*;

/// What the other end decodes: the message through its encoded bytes.
fn through_bytes<M: Message + Default>(message: M) -> M {
    M::decode(message.encode_to_vec().as_slice()).expect("a message decodes from its own bytes")
}

fn kind_of(message: AgentMessage) -> agent_message::Kind {
    through_bytes(message).kind.expect("an agent message carries a kind")
}

fn registration_of(message: AgentMessage) -> Registration {
    let agent_message::Kind::Hello(hello) = kind_of(message) else {
        panic!("not a hello");
    };
    let capacity = hello.capacity.expect("a hello carries a capacity");
    Registration {
        protocol_version: hello.protocol_version,
        revision: hello.revision,
        agent_id: hello.agent_id,
        agent_version: hello.agent_version,
        instance: hello.instance,
        hostname: hello.hostname,
        token: Some(hello.token).filter(|token| !token.is_empty()),
        capacity: Capacity {
            cores: capacity.cores,
            open_file_limit: capacity.open_file_limit,
            max_connections: capacity.max_connections,
            weight: capacity.weight,
            source_addresses: capacity
                .source_addresses
                .iter()
                .map(|address| address.parse::<IpAddr>().expect("an IP address"))
                .collect(),
        },
    }
}

fn controller_message(kind: controller_message::Kind) -> ControllerMessage {
    ControllerMessage { kind: Some(kind) }
}

fn answer_message(answer: &Answer) -> ControllerMessage {
    controller_message(match answer {
        Answer::Welcome(terms) => controller_message::Kind::Welcome(v1::Welcome {
            protocol_version: 1,
            controller_version: "0.1.0".into(),
            heartbeat_interval_ms: terms.heartbeat_every.as_millis() as u32,
            controller_silence_timeout_ms: terms.silence_limit.as_millis() as u32,
            revision: terms.revision,
        }),
        Answer::Refusal { reason } => controller_message::Kind::Refusal(v1::Refusal {
            reason: reason.clone(),
            protocol_version: 1,
        }),
        // A controller never opens with a probe.
        Answer::Unexpected => controller_message::Kind::ClockProbe(v1::ClockProbe { probe_id: 1 }),
    })
}

fn command_message(command: &Command) -> ControllerMessage {
    let kind = match command.clone() {
        Command::ClockProbe { probe_id } => controller_message::Kind::ClockProbe(v1::ClockProbe { probe_id }),
        Command::Assign(assignment) => controller_message::Kind::Assignment(v1::Assignment {
            run_id: assignment.run_id,
            scenario_source: assignment.bundle.source,
            scenario_path: assignment.bundle.path,
            files: assignment.bundle.files.into_iter().collect(),
            scenario_hash: assignment.scenario_hash,
            agent_index: assignment.agent_index as u32,
            weights: assignment.weights,
            start_unix_nanos: assignment.start_unix_nanos,
            variables: assignment.variables,
        }),
        Command::Stop(stop) => controller_message::Kind::Stop(v1::Stop {
            run_id: stop.run_id.unwrap_or_default(),
            graceful_ms: stop.grace.as_millis() as u32,
            reason: stop.reason,
        }),
        Command::Reshare { run_id, takeovers } => controller_message::Kind::Reshare(v1::Reshare {
            run_id,
            takeovers: takeovers
                .into_iter()
                .map(|takeover| v1::Takeover {
                    lost_agents: takeover.lost.into_iter().map(|agent| agent as u32).collect(),
                    from_run_millis: takeover.from.as_millis() as u64,
                    joined: takeover.joined.map(|joined| v1::Joined {
                        agent: joined.agent as u32,
                        weight: joined.weight,
                    }),
                })
                .collect(),
        }),
        Command::Control { run_id, changes } => controller_message::Kind::RunControl(v1::RunControl {
            run_id,
            changes: changes
                .into_iter()
                .map(|change| {
                    let (kind, value, ramp) = match change.action {
                        ControlAction::Set { value, ramp } => (v1::ChangeKind::Set, value, ramp),
                        ControlAction::Hold => (v1::ChangeKind::Hold, 0.0, Duration::ZERO),
                        ControlAction::Resume => (v1::ChangeKind::Resume, 0.0, Duration::ZERO),
                        ControlAction::Pause => (v1::ChangeKind::Pause, 0.0, Duration::ZERO),
                        ControlAction::Unpause => (v1::ChangeKind::Unpause, 0.0, Duration::ZERO),
                        ControlAction::Stop => (v1::ChangeKind::Stop, 0.0, Duration::ZERO),
                    };
                    v1::PartChange {
                        part: change.part as u32,
                        at_run_millis: change.at.as_millis() as u64,
                        kind: kind as i32,
                        value,
                        ramp_millis: ramp.as_millis() as u64,
                    }
                })
                .collect(),
        }),
        Command::ReportAck { run_id, interval } => {
            controller_message::Kind::ReportAck(v1::ReportAck { run_id, interval })
        }
        Command::Release {
            run_id,
            point,
            generation,
        } => controller_message::Kind::RendezvousRelease(v1::RendezvousRelease {
            run_id,
            point,
            generation,
        }),
        Command::Heartbeat => controller_message::Kind::Heartbeat(v1::Heartbeat::default()),
        Command::Ignored => return ControllerMessage { kind: None },
    };
    controller_message(kind)
}

fn registration() -> Registration {
    Registration {
        protocol_version: 1,
        revision: 2,
        agent_id: "agent-7".into(),
        agent_version: "0.1.0".into(),
        instance: "0f1e2d3c4b5a69788796a5b4c3d2e1f0".into(),
        hostname: "loadbox-1".into(),
        token: Some("s3cret".into()),
        capacity: Capacity {
            cores: 4,
            open_file_limit: 1_048_576,
            max_connections: 1_048_512,
            weight: 2.5,
            source_addresses: vec![[127, 0, 0, 2].into(), [127, 0, 0, 3].into()],
        },
    }
}

fn fixture_assignment() -> Assignment {
    Assignment {
        run_id: "run-42".into(),
        bundle: Bundle {
            path: "scenarios/fixture.yaml".into(),
            source: "name: fixture\ntarget: \"ws://127.0.0.1:9/echo\"\nload:\n  vus: 2\n  iterations: 1\nsteps:\n  - connect: { url: \"${target}\" }\n  - send: { name: file, file: payloads/hello.bin }\n  - close: { code: 1000 }\n".into(),
            files: BTreeMap::from([("payloads/hello.bin".to_owned(), b"WSFL\x00\x01\xfe\xff".to_vec())]),
        },
        scenario_hash: "dcb2d6e425cd818359010313815993b584af2b6c".into(),
        agent_index: 1,
        weights: vec![4.0, 2.5, 0.5],
        start_unix_nanos: 1_700_000_000_123_456_789,
        variables: HashMap::from([("testserver.url".to_owned(), "ws://127.0.0.1:9".to_owned())]),
    }
}

#[test]
fn a_registration_goes_through_the_hello_and_back() {
    assert_eq!(registration_of(registration().into()), registration());
    // No token and no source addresses: the wire's empty values, read back as none.
    let bare = Registration {
        token: None,
        capacity: Capacity {
            source_addresses: Vec::new(),
            ..registration().capacity
        },
        ..registration()
    };
    assert_eq!(registration_of(bare.clone().into()), bare);
}

#[test]
fn every_answer_to_the_hello_goes_through_and_back() {
    let answers = [
        Answer::Welcome(Terms {
            heartbeat_every: Duration::from_millis(1_000),
            silence_limit: Duration::from_millis(10_000),
            revision: 2,
        }),
        Answer::Refusal {
            reason: "protocol version 9 is not 1".into(),
        },
        Answer::Unexpected,
    ];
    for answer in answers {
        assert_eq!(Answer::from(through_bytes(answer_message(&answer))), answer);
    }
}

#[test]
fn every_command_goes_through_and_back() {
    let commands = [
        Command::ClockProbe { probe_id: 17 },
        Command::Assign(fixture_assignment()),
        Command::Stop(StopOrder {
            run_id: Some("run-42".into()),
            grace: Duration::from_millis(2_500),
            reason: "stopped by the user".into(),
        }),
        // An empty run id on the wire stops whatever runs.
        Command::Stop(StopOrder {
            run_id: None,
            grace: Duration::ZERO,
            reason: "controller shutting down".into(),
        }),
        Command::Reshare {
            run_id: "run-42".into(),
            takeovers: vec![
                Takeover {
                    lost: vec![0],
                    from: Duration::from_millis(1_500),
                    joined: None,
                },
                Takeover {
                    lost: vec![2, 3],
                    from: Duration::from_millis(9_000),
                    joined: None,
                },
                Takeover {
                    lost: Vec::new(),
                    from: Duration::from_millis(12_000),
                    joined: Some(wsfleet_scenario::plan::reshare::Joined { agent: 4, weight: 2.5 }),
                },
            ],
        },
        Command::Control {
            run_id: "run-42".into(),
            changes: vec![
                Control {
                    part: 1,
                    at: Duration::from_millis(4_000),
                    action: ControlAction::Set {
                        value: 12.5,
                        ramp: Duration::from_millis(3_000),
                    },
                },
                Control {
                    part: 0,
                    at: Duration::from_millis(5_000),
                    action: ControlAction::Hold,
                },
                Control {
                    part: 0,
                    at: Duration::from_millis(6_000),
                    action: ControlAction::Resume,
                },
                Control {
                    part: 0,
                    at: Duration::from_millis(7_000),
                    action: ControlAction::Pause,
                },
                Control {
                    part: 0,
                    at: Duration::from_millis(8_000),
                    action: ControlAction::Unpause,
                },
                Control {
                    part: 2,
                    at: Duration::from_millis(9_000),
                    action: ControlAction::Stop,
                },
            ],
        },
        Command::ReportAck {
            run_id: "run-42".into(),
            interval: 12,
        },
        Command::Release {
            run_id: "run-42".into(),
            point: 3,
            generation: 5,
        },
        Command::Heartbeat,
        Command::Ignored,
    ];
    for command in commands {
        assert_eq!(Command::from(through_bytes(command_message(&command))), command);
    }
    // A welcome or refusal after the first message means nothing.
    let late_welcome = answer_message(&Answer::Welcome(Terms {
        heartbeat_every: Duration::from_secs(1),
        silence_limit: Duration::from_secs(10),
        revision: 2,
    }));
    assert_eq!(Command::from(late_welcome), Command::Ignored);
}

#[test]
fn a_stop_order_names_its_run_or_every_run() {
    let order = |run_id: Option<&str>| StopOrder {
        run_id: run_id.map(str::to_owned),
        grace: Duration::ZERO,
        reason: String::new(),
    };
    assert!(order(Some("a")).applies_to("a"));
    assert!(!order(Some("a")).applies_to("b"));
    assert!(order(None).applies_to("b"));
}

#[test]
fn a_beat_goes_through_and_back() {
    let beat = Beat {
        sent_unix_nanos: 1_700_000_000_000_000_001,
        cpu_percent: 187.5,
        rss_bytes: 48 << 20,
        reports_unacknowledged: 3,
    };
    let agent_message::Kind::Heartbeat(sent) = kind_of(beat.clone().into()) else {
        panic!("not a heartbeat");
    };
    let read = Beat {
        sent_unix_nanos: sent.sent_unix_nanos,
        cpu_percent: sent.cpu_percent,
        rss_bytes: sent.rss_bytes,
        reports_unacknowledged: sent.reports_unacknowledged,
    };
    assert_eq!(read, beat);
}

#[test]
fn a_clock_reply_goes_through_and_back() {
    let reply = ClockReply {
        probe_id: 17,
        agent_unix_nanos: -5,
    };
    let agent_message::Kind::ClockReply(sent) = kind_of(reply.clone().into()) else {
        panic!("not a clock reply");
    };
    let read = ClockReply {
        probe_id: sent.probe_id,
        agent_unix_nanos: sent.agent_unix_nanos,
    };
    assert_eq!(read, reply);
}

#[test]
fn an_arrival_goes_through_and_back() {
    let arrival = Arrival {
        run_id: "run-42".into(),
        point: 3,
        generation: 5,
        count: 250,
    };
    let agent_message::Kind::RendezvousArrive(sent) = kind_of(arrival.clone().into()) else {
        panic!("not an arrival");
    };
    let read = Arrival {
        run_id: sent.run_id,
        point: sent.point,
        generation: sent.generation,
        count: sent.count,
    };
    assert_eq!(read, arrival);
}

#[test]
fn a_status_of_every_phase_goes_through_and_back() {
    let phases = [
        (RunPhase::Ready, v1::RunPhase::Ready),
        (RunPhase::Running, v1::RunPhase::Running),
        (RunPhase::Finished, v1::RunPhase::Finished),
        (RunPhase::Failed, v1::RunPhase::Failed),
    ];
    for (phase, on_the_wire) in phases {
        let status = RunStatus {
            run_id: "run-42".into(),
            phase,
            message: "scenario does not compile on the agent".into(),
            last_interval: 59,
            reports_dropped: 2,
        };
        let agent_message::Kind::RunStatus(sent) = kind_of(status.clone().into()) else {
            panic!("not a status");
        };
        assert_eq!(sent.phase(), on_the_wire);
        let read = RunStatus {
            run_id: sent.run_id,
            phase,
            message: sent.message,
            last_interval: sent.last_interval,
            reports_dropped: sent.reports_dropped,
        };
        assert_eq!(read, status);
    }
}

#[test]
fn a_report_goes_in_its_envelope_unchanged() {
    let report = MetricReport {
        run_id: "run-42".into(),
        interval: 7,
        sets: vec![v1::MetricSet {
            step: "connect".into(),
            counters: HashMap::from([("connects".to_owned(), 10)]),
            histograms: HashMap::from([("connect_time".to_owned(), vec![1, 2, 3])]),
        }],
        gauges: HashMap::from([("active_vus".to_owned(), 10)]),
    };
    let agent_message::Kind::Report(sent) = kind_of(report_message(report.clone())) else {
        panic!("not a report");
    };
    assert_eq!(sent, report);
}

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../proto/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

#[test]
fn the_hello_fixture_reads_as_the_registration_the_agent_sends() {
    let fixture = AgentMessage::decode(fixture("hello.v1.bin").as_slice()).expect("the hello fixture decodes");
    assert_eq!(registration_of(fixture.clone()), registration());
    // And what the agent sends for that registration is what the fixture holds.
    assert_eq!(AgentMessage::from(registration()), fixture);
}

#[test]
fn the_assignment_fixture_reads_as_an_assignment_with_its_bundle_intact() {
    let fixture =
        ControllerMessage::decode(fixture("assignment.v1.bin").as_slice()).expect("the assignment fixture decodes");
    let Command::Assign(assignment) = Command::from(fixture) else {
        panic!("the fixture is not an assignment");
    };
    assert_eq!(assignment, fixture_assignment());
    assert_eq!(assignment.bundle.hash(), assignment.scenario_hash);
}
