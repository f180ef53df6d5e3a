//! Socket.IO v4 end to end against a real server from PyPI: python-socketio under uvicorn
//! (`tests/data/socketio_server.py`), started per test on a port the kernel picks. The server
//! counts what it receives and sends; the run's summary must say the same, exactly: echoes with
//! acknowledgements, rooms and broadcast, a namespace that takes an auth payload and refuses a
//! bad one, binary attachments both ways, a server-side disconnect, and a run longer than the
//! server's ping interval plus timeout in which no connection is dropped for a missed pong.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::python::python;
use common::*;
use serde_json::Value;

/// A python-socketio server, stopped (by its process id) when dropped.
struct SocketIoServer {
    child: Child,
    port: u16,
}

impl SocketIoServer {
    /// Starts the server with its heartbeat settings, in seconds; returns once it listens.
    fn start(ping_interval: f64, ping_timeout: f64) -> SocketIoServer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/socketio_server.py");
        let mut child = Command::new(python())
            .arg(script)
            .args(["--ping-interval", &ping_interval.to_string()])
            .args(["--ping-timeout", &ping_timeout.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the Socket.IO server");
        // The first line says the port, once the socket listens; bounded by a reader thread.
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = match receiver.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("the Socket.IO server did not say its port within 30 s");
            }
        };
        let port = line
            .trim()
            .strip_prefix("port ")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("the Socket.IO server said `{line}`, not its port"));
        SocketIoServer { child, port }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// What the server counted.
    fn stats(&self) -> Value {
        let (status, body) = http("GET", self.port, "/stats", None, None);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for SocketIoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn count(stats: &Value, name: &str) -> u64 {
    stats[name].as_u64().unwrap_or(0)
}

/// Runs `scenario` on one local agent; returns the summary and the exit code.
fn run(scenario: &str) -> (Value, i32) {
    run_summary("socketio.yaml", scenario, 1, Duration::from_secs(60))
}

fn errors(summary: &Value) -> &Value {
    &summary["totals"]["errors"]
}

#[test]
fn echoes_with_acknowledgements_count_what_the_server_counts() {
    let server = SocketIoServer::start(25.0, 20.0);
    let scenario = format!(
        "load: {{ vus: 3, iterations: 2 }}
steps:
  - connect: {{ url: '{}', protocol: socketio }}
  - repeat:
      count: 5
      steps:
        - emit:
            name: ask
            event: echo
            args: [ {{ vu: '${{vu}}', round: '${{iteration}}' }}, 7 ]
            ack: {{ timeout: 5s, match: {{ json: /0/round, equals: '${{iteration}}' }}, extract: {{ seven: {{ json: /1 }} }} }}
        - check: {{ value: '${{seven}}', equals: '7' }}
  - close: {{}}
",
        server.url()
    );
    let (summary, code) = run(&scenario);
    assert_eq!(code, 0, "{summary:#}");
    let stats = server.stats();
    assert_eq!(count(&stats, "received.echo"), 30, "{stats}");
    assert_eq!(count(&stats, "acks_sent"), 30, "{stats}");
    assert_eq!(count(&stats, "connect./"), 6, "{stats}");
    assert_eq!(count(&stats, "disconnect.client disconnect"), 6, "{stats}");
    assert_eq!(step_counter(&summary, "event:echo", "events_sent"), 30);
    assert_eq!(step_counter(&summary, "event:echo", "acks_received"), 30);
    assert_eq!(step_latency_count(&summary, "event:echo", "ack_latency"), 30);
    // Each echo and its acknowledgement are one message each way, in the emit's set.
    assert_eq!(step_counter(&summary, "ask", "messages_sent"), 30);
    assert_eq!(step_counter(&summary, "ask", "messages_received"), 30);
    assert_eq!(step_counter(&summary, "connect", "protocol_connects"), 6);
    assert_eq!(counter(&summary, "iterations"), 6);
    assert!(
        errors(&summary).as_object().is_none_or(|found| found.is_empty()),
        "{summary:#}"
    );
}

#[test]
fn rooms_broadcast_to_everyone_in_them() {
    let server = SocketIoServer::start(25.0, 20.0);
    // Four VUs in two rooms; once all have joined, each says one thing and hears its room's two.
    let scenario = format!(
        "load: {{ vus: 4, iterations: 1 }}
steps:
  - connect: {{ url: '{}', protocol: socketio }}
  - emit: {{ name: join, event: join, args: [ 'room-${{vu % 2}}' ], ack: {{ timeout: 5s }} }}
  - rendezvous: {{ count: 4, timeout: 20s }}
  - emit: {{ name: say, event: say, args: [ 'room-${{vu % 2}}', 'hello from ${{vu}}' ] }}
  - repeat:
      count: 2
      steps:
        - receive: {{ name: heard, timeout: 5s, match: {{ event: said, json: /0/room, equals: 'room-${{vu % 2}}' }} }}
  - close: {{}}
",
        server.url()
    );
    let (summary, code) = run(&scenario);
    assert_eq!(code, 0, "{summary:#}");
    let stats = server.stats();
    assert_eq!(count(&stats, "received.join"), 4, "{stats}");
    assert_eq!(count(&stats, "received.say"), 4, "{stats}");
    assert_eq!(count(&stats, "sent.said"), 8, "{stats}");
    assert_eq!(step_counter(&summary, "event:said", "events_received"), 8);
    assert_eq!(step_counter(&summary, "heard", "messages_received"), 8);
    assert_eq!(step_counter(&summary, "event:say", "events_sent"), 4);
    assert_eq!(counter(&summary, "messages_unread"), 0, "{summary:#}");
}

#[test]
fn a_namespace_takes_a_good_auth_payload_and_refuses_a_bad_one() {
    let server = SocketIoServer::start(25.0, 20.0);
    let url = server.url();
    let scenario = format!(
        "scenarios:
  - name: good
    load: {{ vus: 2, iterations: 1 }}
    steps:
      - connect: {{ url: '{url}', protocol: socketio, socketio: {{ namespaces: [ {{ name: /admin, auth: {{ token: secret }} }} ] }} }}
      - emit: {{ name: status, event: status, namespace: /admin, ack: {{ timeout: 5s, match: {{ json: /0, equals: ok }} }} }}
      - close: {{}}
  - name: bad
    load: {{ vus: 3, iterations: 1 }}
    steps:
      - connect: {{ url: '{url}', protocol: socketio, socketio: {{ namespaces: [ {{ name: /admin, auth: {{ token: 'wrong-${{vu}}' }} }} ] }} }}
      - emit: {{ event: status, namespace: /admin }}
    on_error:
      - {{ kinds: [connect_error], then: end_iteration }}
"
    );
    let (summary, code) = run(&scenario);
    assert_eq!(code, 0, "{summary:#}");
    let stats = server.stats();
    assert_eq!(count(&stats, "connect./admin"), 2, "{stats}");
    assert_eq!(count(&stats, "refused./admin"), 3, "{stats}");
    assert_eq!(count(&stats, "received./admin.status"), 2, "{stats}");
    assert_eq!(step_counter(&summary, "good.event:status", "acks_received"), 2);
    assert_eq!(step_counter(&summary, "bad.connect", "errors.connect_error"), 3);
    assert_eq!(step_counter(&summary, "bad.event:status", "events_sent"), 0);
    assert_eq!(counter(&summary, "iterations"), 2);
    assert_eq!(counter(&summary, "iterations_skipped"), 3);
}

#[test]
fn binary_attachments_travel_both_ways() {
    let server = SocketIoServer::start(25.0, 20.0);
    let scenario = format!(
        "load: {{ vus: 2, iterations: 3 }}
steps:
  - connect: {{ url: '{}', protocol: socketio }}
  - emit:
      name: up
      event: upload
      args: [ {{ name: 'f${{vu}}' }}, {{ $binary: '\\x00\\x01\\x02\\xff' }} ]
      ack: {{ timeout: 5s, match: {{ json: /0, equals: '4' }} }}
  - receive: {{ name: down, timeout: 5s, match: {{ event: download, json: /0/name, equals: 'f${{vu}}' }} }}
  - close: {{}}
",
        server.url()
    );
    let (summary, code) = run(&scenario);
    assert_eq!(code, 0, "{summary:#}");
    let stats = server.stats();
    assert_eq!(count(&stats, "received.upload"), 6, "{stats}");
    assert_eq!(count(&stats, "upload_bytes"), 24, "{stats}");
    assert_eq!(count(&stats, "sent.download"), 6, "{stats}");
    // Each upload is its packet and one attachment; each download likewise.
    assert_eq!(step_counter(&summary, "up", "messages_sent"), 12);
    assert_eq!(step_counter(&summary, "up", "binary_messages_sent"), 6);
    assert_eq!(step_counter(&summary, "event:download", "events_received"), 6);
    assert_eq!(step_counter(&summary, "down", "messages_received"), 12);
    assert_eq!(step_counter(&summary, "down", "binary_messages_received"), 6);
}

#[test]
fn the_server_disconnects_a_client_and_the_scenario_sees_it() {
    let server = SocketIoServer::start(25.0, 20.0);
    let scenario = format!(
        "load: {{ vus: 2, iterations: 1 }}
steps:
  - connect: {{ url: '{}', protocol: socketio }}
  - emit: {{ event: kick }}
  - receive: {{ name: wait, timeout: 5s }}
on_close:
  - {{ then: end_iteration }}
",
        server.url()
    );
    let (summary, code) = run(&scenario);
    assert_eq!(code, 0, "{summary:#}");
    let stats = server.stats();
    assert_eq!(count(&stats, "received.kick"), 2, "{stats}");
    assert_eq!(count(&stats, "disconnect.server disconnect"), 2, "{stats}");
    assert_eq!(counter(&summary, "protocol_disconnects"), 2, "{summary:#}");
    assert_eq!(counter(&summary, "iterations_skipped"), 2, "{summary:#}");
}

#[test]
fn heartbeats_keep_connections_open_past_the_ping_timeout() {
    // The server pings every second and drops a client that has not answered within one more;
    // each VU idles 4 s between two echoes.
    let server = SocketIoServer::start(1.0, 1.0);
    let scenario = format!(
        "load: {{ vus: 3, iterations: 1 }}
steps:
  - connect: {{ url: '{}', protocol: socketio }}
  - emit: {{ name: before, event: echo, ack: {{ timeout: 5s }} }}
  - think: 4s
  - emit: {{ name: after, event: echo, ack: {{ timeout: 5s }} }}
  - close: {{}}
",
        server.url()
    );
    let (summary, code) = run(&scenario);
    assert_eq!(code, 0, "{summary:#}");
    let stats = server.stats();
    assert_eq!(count(&stats, "received.echo"), 6, "{stats}");
    assert_eq!(count(&stats, "disconnect.client disconnect"), 3, "{stats}");
    assert_eq!(count(&stats, "disconnect.ping timeout"), 0, "{stats}");
    let heartbeats = counter(&summary, "heartbeats_received");
    assert!(heartbeats >= 9, "three VUs idle 4 s with a ping a second: {heartbeats}");
    assert_eq!(counter(&summary, "heartbeats_sent"), heartbeats);
    assert!(
        errors(&summary).as_object().is_none_or(|found| found.is_empty()),
        "{summary:#}"
    );
}

#[test]
fn the_chat_example_runs_against_the_server() {
    let server = SocketIoServer::start(25.0, 20.0);
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/socketio-chat.yaml")).unwrap();
    let scenario = example.replace("ws://127.0.0.1:8000", &server.url());
    assert_ne!(scenario, example, "the example names ws://127.0.0.1:8000");
    let (summary, code) = run(&scenario);
    assert_eq!(code, 0, "{summary:#}");
    let stats = server.stats();
    assert_eq!(
        step_counter(&summary, "event:echo", "acks_received"),
        count(&stats, "received.echo")
    );
    assert_eq!(
        step_counter(&summary, "event:said", "events_received"),
        count(&stats, "sent.said")
    );
    assert_eq!(count(&stats, "refused./admin"), 0, "{stats}");
    assert!(count(&stats, "received.echo") > 0, "{stats}");
}

#[test]
fn a_rule_acknowledges_the_servers_calls() {
    let server = SocketIoServer::start(25.0, 20.0);
    // The server answers each quiz by calling the client back (`sio.call("question")`), and
    // acknowledges the quiz with the client's acknowledgement.
    let scenario = format!(
        "load: {{ vus: 2, iterations: 2 }}
steps:
  - connect: {{ url: '{}', protocol: socketio }}
  - repeat:
      count: 3
      steps:
        - emit: {{ name: quiz, event: quiz, args: [ '${{iteration}}' ], ack: {{ timeout: 5s, match: {{ json: /0/from, equals: '${{vu}}' }} }} }}
  - close: {{}}
on_message:
  - {{ name: answer, when: {{ event: question }}, ack: [ {{ from: '${{vu}}' }} ] }}
",
        server.url()
    );
    let (summary, code) = run(&scenario);
    assert_eq!(code, 0, "{summary:#}");
    let stats = server.stats();
    assert_eq!(count(&stats, "sent.question"), 12, "{stats}");
    assert_eq!(count(&stats, "answers"), 12, "{stats}");
    assert_eq!(step_counter(&summary, "event:question", "events_received"), 12);
    assert_eq!(step_counter(&summary, "event:question", "acks_sent"), 12);
    assert_eq!(step_counter(&summary, "answer", "messages_sent"), 12);
    assert_eq!(step_counter(&summary, "event:quiz", "acks_received"), 12);
}
