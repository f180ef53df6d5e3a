//! The checked-in wire fixtures: `fixtures/hello.v1.bin` (an `AgentMessage` carrying the hello an
//! agent opens its stream with), `fixtures/assignment.v1.bin` (a `ControllerMessage` carrying
//! an assignment) and `fixtures/run_control.v1.bin` (revision 3: the operator's changes to a
//! run) and `fixtures/reshare_join.v1.bin` (revision 4: a reshare with an agent that joined),
//! encoded by an earlier build. Decoding them field by field with this build
//! fails if `fleet.proto` changes in a way an older peer cannot follow (a field renumbered,
//! retyped or moved); additive changes keep them decoding as they were.
//!
//! The files are written once and then left alone: an incompatible change should fail here, not
//! be papered over by regenerating. When a deliberate new protocol version needs new ones, add
//! files with the new version in their name and write them with:
//!
//! ```text
//! WSFLEET_WRITE_FIXTURES=1 cargo test -p wsfleet-proto --test fixtures
//! ```
//!
//! (which writes what `hello()` and `assignment()` below build, then decodes it as usual).

use std::collections::HashMap;
use std::path::PathBuf;

use prost::Message;
use wsfleet_proto::v1::{
    agent_message, controller_message, AgentMessage, Assignment, Capacity, ChangeKind, ControllerMessage, Hello,
    Joined, PartChange, Reshare, RunControl, Takeover,
};

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

/// The hello of the fixture: every field set, none to its default.
fn hello() -> AgentMessage {
    AgentMessage {
        kind: Some(agent_message::Kind::Hello(Hello {
            protocol_version: 1,
            agent_id: "agent-7".into(),
            agent_version: "0.1.0".into(),
            capacity: Some(Capacity {
                cores: 4,
                open_file_limit: 1_048_576,
                max_connections: 1_048_512,
                weight: 2.5,
                source_addresses: vec!["127.0.0.2".into(), "127.0.0.3".into()],
            }),
            token: "s3cret".into(),
            hostname: "loadbox-1".into(),
            revision: 2,
            instance: "0f1e2d3c4b5a69788796a5b4c3d2e1f0".into(),
        })),
    }
}

const SCENARIO_SOURCE: &str = "name: fixture\ntarget: \"ws://127.0.0.1:9/echo\"\nload:\n  vus: 2\n  iterations: 1\nsteps:\n  - connect: { url: \"${target}\" }\n  - send: { name: file, file: payloads/hello.bin }\n  - close: { code: 1000 }\n";

/// The assignment of the fixture: every field set, none to its default.
fn assignment() -> ControllerMessage {
    ControllerMessage {
        kind: Some(controller_message::Kind::Assignment(Assignment {
            run_id: "run-42".into(),
            scenario_source: SCENARIO_SOURCE.into(),
            scenario_path: "scenarios/fixture.yaml".into(),
            files: HashMap::from([("payloads/hello.bin".into(), b"WSFL\x00\x01\xfe\xff".to_vec())]),
            // `Bundle::hash` of the source and the file (the agent's test checks it).
            scenario_hash: "dcb2d6e425cd818359010313815993b584af2b6c".into(),
            agent_index: 1,
            weights: vec![4.0, 2.5, 0.5],
            start_unix_nanos: 1_700_000_000_123_456_789,
            variables: HashMap::from([("testserver.url".into(), "ws://127.0.0.1:9".into())]),
        })),
    }
}

/// Writes the fixtures when asked (see the module documentation), then reads them back.
fn read_fixture(name: &str, build: impl FnOnce() -> Vec<u8>) -> Vec<u8> {
    let path = fixture_path(name);
    if std::env::var_os("WSFLEET_WRITE_FIXTURES").is_some() {
        std::fs::create_dir_all(path.parent().expect("a fixtures folder")).expect("create fixtures/");
        std::fs::write(&path, build()).expect("write the fixture");
    }
    std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

#[test]
fn the_hello_fixture_decodes_field_by_field() {
    let bytes = read_fixture("hello.v1.bin", || hello().encode_to_vec());
    let message = AgentMessage::decode(bytes.as_slice()).expect("the hello fixture decodes");
    let Some(agent_message::Kind::Hello(hello)) = message.kind else {
        panic!("the fixture is not a hello: {message:?}");
    };
    assert_eq!(hello.protocol_version, 1);
    assert_eq!(hello.agent_id, "agent-7");
    assert_eq!(hello.agent_version, "0.1.0");
    assert_eq!(hello.token, "s3cret");
    assert_eq!(hello.hostname, "loadbox-1");
    assert_eq!(hello.revision, 2);
    assert_eq!(hello.instance, "0f1e2d3c4b5a69788796a5b4c3d2e1f0");
    let capacity = hello.capacity.expect("the hello carries a capacity");
    assert_eq!(capacity.cores, 4);
    assert_eq!(capacity.open_file_limit, 1_048_576);
    assert_eq!(capacity.max_connections, 1_048_512);
    assert_eq!(capacity.weight, 2.5);
    assert_eq!(capacity.source_addresses, ["127.0.0.2", "127.0.0.3"]);
}

#[test]
fn the_assignment_fixture_decodes_field_by_field() {
    let bytes = read_fixture("assignment.v1.bin", || assignment().encode_to_vec());
    let message = ControllerMessage::decode(bytes.as_slice()).expect("the assignment fixture decodes");
    let Some(controller_message::Kind::Assignment(assignment)) = message.kind else {
        panic!("the fixture is not an assignment: {message:?}");
    };
    assert_eq!(assignment.run_id, "run-42");
    assert_eq!(assignment.scenario_source, SCENARIO_SOURCE);
    assert_eq!(assignment.scenario_path, "scenarios/fixture.yaml");
    assert_eq!(
        assignment.files,
        HashMap::from([("payloads/hello.bin".to_owned(), b"WSFL\x00\x01\xfe\xff".to_vec())])
    );
    assert_eq!(assignment.scenario_hash, "dcb2d6e425cd818359010313815993b584af2b6c");
    assert_eq!(assignment.agent_index, 1);
    assert_eq!(assignment.weights, [4.0, 2.5, 0.5]);
    assert_eq!(assignment.start_unix_nanos, 1_700_000_000_123_456_789);
    assert_eq!(
        assignment.variables,
        HashMap::from([("testserver.url".to_owned(), "ws://127.0.0.1:9".to_owned())])
    );
}

/// The run control of the fixture: two changes, every field of the second set.
fn run_control() -> ControllerMessage {
    ControllerMessage {
        kind: Some(controller_message::Kind::RunControl(RunControl {
            run_id: "run-42".into(),
            changes: vec![
                PartChange {
                    part: 0,
                    at_run_millis: 5_000,
                    kind: ChangeKind::Pause as i32,
                    value: 0.0,
                    ramp_millis: 0,
                },
                PartChange {
                    part: 2,
                    at_run_millis: 12_345,
                    kind: ChangeKind::Set as i32,
                    value: 250.5,
                    ramp_millis: 10_000,
                },
            ],
        })),
    }
}

#[test]
fn the_run_control_fixture_decodes_field_by_field() {
    let bytes = read_fixture("run_control.v1.bin", || run_control().encode_to_vec());
    let message = ControllerMessage::decode(bytes.as_slice()).expect("the run control fixture decodes");
    let Some(controller_message::Kind::RunControl(control)) = message.kind else {
        panic!("the fixture is not a run control: {message:?}");
    };
    assert_eq!(control.run_id, "run-42");
    assert_eq!(control.changes.len(), 2);
    assert_eq!(control.changes[0].kind(), ChangeKind::Pause);
    assert_eq!(control.changes[0].at_run_millis, 5_000);
    let set = &control.changes[1];
    assert_eq!((set.part, set.at_run_millis, set.kind()), (2, 12_345, ChangeKind::Set));
    assert_eq!((set.value, set.ramp_millis), (250.5, 10_000));
}

/// The reshare of the fixture (revision 4): a loss, then an agent that joined.
fn reshare_with_join() -> ControllerMessage {
    ControllerMessage {
        kind: Some(controller_message::Kind::Reshare(Reshare {
            run_id: "run-42".into(),
            takeovers: vec![
                Takeover {
                    lost_agents: vec![1],
                    from_run_millis: 4_500,
                    joined: None,
                },
                Takeover {
                    lost_agents: Vec::new(),
                    from_run_millis: 9_250,
                    joined: Some(Joined { agent: 3, weight: 1.5 }),
                },
            ],
        })),
    }
}

#[test]
fn the_reshare_with_a_join_fixture_decodes_field_by_field() {
    let bytes = read_fixture("reshare_join.v1.bin", || reshare_with_join().encode_to_vec());
    let message = ControllerMessage::decode(bytes.as_slice()).expect("the reshare fixture decodes");
    let Some(controller_message::Kind::Reshare(reshare)) = message.kind else {
        panic!("the fixture is not a reshare: {message:?}");
    };
    assert_eq!(reshare.run_id, "run-42");
    assert_eq!(reshare.takeovers.len(), 2);
    assert_eq!(reshare.takeovers[0].lost_agents, [1]);
    assert_eq!(reshare.takeovers[0].from_run_millis, 4_500);
    assert_eq!(reshare.takeovers[0].joined, None);
    let join = &reshare.takeovers[1];
    assert!(join.lost_agents.is_empty());
    assert_eq!(join.from_run_millis, 9_250);
    assert_eq!(join.joined, Some(Joined { agent: 3, weight: 1.5 }));
}
