//! The scenario language end to end: every example in `scenarios/` runs as it is against the
//! test server it starts, with exact counts per step; then the checks, extractions, handlers,
//! timeout and error policies, TLS options and the CONNECT proxy behave as documented.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::connect_proxy::connect_proxy;
use common::*;
use serde_json::Value;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name)
}

/// Runs a scenario file on `agents` local agents; returns the summary and the exit code.
fn run_file(path: &Path, agents: u32) -> (Value, i32) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("summary.json");
    let mut command = wsfleet();
    command
        .arg("run")
        .arg(path)
        .args(["--agents", &agents.to_string(), "--quiet", "--out"])
        .arg(format!("json={}", out.display()));
    let output = run_bounded(command, Duration::from_secs(90));
    let code = output.status.code().unwrap_or(-1);
    assert!(
        out.exists(),
        "{}: no summary (exit {code})\nstdout:\n{}\nstderr:\n{}",
        path.display(),
        text(&output.stdout),
        text(&output.stderr)
    );
    (read_json(&out), code)
}

fn run_ok(path: &Path, agents: u32) -> Value {
    let (summary, code) = run_file(path, agents);
    assert_eq!(code, 0, "{}: {summary:#}", path.display());
    summary
}

fn no_errors(summary: &Value) {
    let errors = &summary["totals"]["errors"];
    assert!(
        errors.as_object().is_none_or(|errors| errors.is_empty()),
        "errors: {errors:#}"
    );
    assert_eq!(counter(summary, "iterations_failed"), 0, "{summary:#}");
}

/// Every data message received is counted once: by the step or handler that took it, or as
/// unread (in the closing step, or in the connection set, which is not a step).
fn received_adds_up(summary: &Value) {
    let steps = summary["steps"].as_array().unwrap();
    let by_steps: u64 = steps
        .iter()
        .map(|step| step["counters"]["messages_received"].as_u64().unwrap_or(0))
        .sum();
    let total = counter(summary, "messages_received");
    assert!(by_steps <= total, "{summary:#}");
    assert!(total - by_steps <= counter(summary, "messages_unread"), "{summary:#}");
}

#[test]
fn example_echo() {
    let summary = run_ok(&example("echo.yaml"), 2);
    no_errors(&summary);
    let iterations = counter(&summary, "iterations");
    assert!(iterations >= 100, "{summary:#}");
    assert_eq!(step_counter(&summary, "connect", "connections_opened"), iterations);
    assert_eq!(step_counter(&summary, "message", "messages_sent"), 20 * iterations);
    assert_eq!(step_counter(&summary, "echo", "messages_received"), 20 * iterations);
    assert_eq!(step_latency_count(&summary, "echo", "message_latency"), 20 * iterations);
    assert_eq!(counter(&summary, "messages_unread"), 0);
    received_adds_up(&summary);
}

#[test]
fn example_chat_broadcast() {
    let summary = run_ok(&example("chat-broadcast.yaml"), 2);
    no_errors(&summary);
    assert_eq!(step_counter(&summary, "join", "connections_opened"), 30);
    assert_eq!(step_counter(&summary, "post", "messages_sent"), 300);
    // Each VU got its own 10 posts back through its room, matched by sequence number.
    assert_eq!(step_counter(&summary, "own_copy", "messages_received"), 300);
    assert_eq!(step_latency_count(&summary, "own_copy", "message_latency"), 300);
    // The others' posts were taken by the handler (9 others per room post up to 10 each).
    let others = step_counter(&summary, "others", "messages_received");
    assert!(others > 0 && others <= 30 * 9 * 10, "others: {others}");
    assert_eq!(step_counter(&summary, "mine", "messages_received"), 0);
    received_adds_up(&summary);
}

#[test]
fn example_binary() {
    let summary = run_ok(&example("binary.yaml"), 1);
    no_errors(&summary);
    let n = 30;
    assert_eq!(step_counter(&summary, "connect", "connections_opened"), n);
    assert_eq!(step_counter(&summary, "bin", "binary_messages_sent"), n);
    assert_eq!(step_counter(&summary, "bin", "payload_bytes_sent"), 5 * n);
    assert_eq!(step_counter(&summary, "bin_echo", "binary_messages_received"), n);
    assert_eq!(step_counter(&summary, "bin_echo", "payload_bytes_received"), 5 * n);
    assert_eq!(step_counter(&summary, "bin_as_text", "text_messages_sent"), n);
    assert_eq!(step_counter(&summary, "bin_as_text_echo", "text_messages_received"), n);
    assert_eq!(step_counter(&summary, "text_as_bin", "binary_messages_sent"), n);
    assert_eq!(
        step_counter(&summary, "text_as_bin_echo", "binary_messages_received"),
        n
    );
    assert_eq!(step_counter(&summary, "file", "payload_bytes_sent"), 4096 * n);
    assert_eq!(step_counter(&summary, "file_echo", "payload_bytes_received"), 4096 * n);
    // Four frames out, one whole message back.
    assert_eq!(step_counter(&summary, "fragmented", "messages_sent"), n);
    assert_eq!(step_counter(&summary, "fragmented", "payload_bytes_sent"), 4096 * n);
    assert_eq!(step_counter(&summary, "fragmented_echo", "messages_received"), n);
    assert_eq!(
        step_counter(&summary, "fragmented_echo", "payload_bytes_received"),
        4096 * n
    );
    assert_eq!(step_counter(&summary, "keepalive", "pings_sent"), n);
    assert_eq!(step_counter(&summary, "keepalive", "pongs_received"), n);
    assert_eq!(counter(&summary, "messages_unread"), 0);
    received_adds_up(&summary);
}

#[test]
fn example_request_response() {
    let summary = run_ok(&example("request-response.yaml"), 2);
    no_errors(&summary);
    let n = 24; // 12 VUs x 2 iterations
    assert_eq!(counter(&summary, "iterations"), n);
    assert_eq!(step_counter(&summary, "login", "connections_opened"), n);
    assert_eq!(step_counter(&summary, "join", "messages_sent"), n);
    assert_eq!(step_counter(&summary, "joined", "messages_received"), n);
    assert_eq!(step_counter(&summary, "request", "messages_sent"), 5 * n);
    assert_eq!(step_counter(&summary, "reply", "messages_received"), 5 * n);
    assert_eq!(step_latency_count(&summary, "reply", "message_latency"), 5 * n);
    // The greeting handler answered every greeting; its reply was taken by the second rule
    // (or, if it came during the close, left unread).
    assert_eq!(step_counter(&summary, "greeting", "messages_received"), n);
    assert_eq!(step_counter(&summary, "greeting", "messages_sent"), n);
    assert_eq!(
        step_counter(&summary, "greeting_reply", "messages_received") + counter(&summary, "messages_unread"),
        n
    );
    assert_eq!(summary["totals"]["close_codes"]["1000"], n);
    received_adds_up(&summary);
}

#[test]
fn example_subprotocol() {
    let summary = run_ok(&example("subprotocol.yaml"), 1);
    no_errors(&summary);
    // `control` is kept open across the 3 iterations; `data` is opened in each.
    assert_eq!(step_counter(&summary, "open_control", "connections_opened"), 10);
    assert_eq!(step_counter(&summary, "open_data", "connections_opened"), 30);
    assert_eq!(step_counter(&summary, "control_reply", "messages_received"), 30);
    assert_eq!(step_counter(&summary, "data_reply", "messages_received"), 30);
    assert_eq!(counter(&summary, "connections_closed"), 40);
}

#[test]
fn example_wss() {
    let summary = run_ok(&example("wss.yaml"), 1);
    no_errors(&summary);
    assert_eq!(step_counter(&summary, "connect", "connections_opened"), 20);
    assert_eq!(step_latency_count(&summary, "connect", "tls_handshake"), 20);
    assert_eq!(step_counter(&summary, "secure_echo", "messages_received"), 100);
    assert_eq!(step_counter(&summary, "ping", "pongs_received"), 20);
}

#[test]
fn every_example_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "yaml") {
            let output = run_bounded(
                {
                    let mut command = wsfleet();
                    command.arg("validate").arg(&path);
                    command
                },
                Duration::from_secs(30),
            );
            assert!(output.status.success(), "{}: {}", path.display(), text(&output.stderr));
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} examples");
}

// --- behaviours against an in-process test server ---

struct Server {
    runtime: tokio::runtime::Runtime,
    server: Option<wsfleet_testserver::TestServer>,
}

impl Server {
    fn start(config: wsfleet_testserver::Config) -> Server {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let server = runtime
            .block_on(wsfleet_testserver::TestServer::start(
                "127.0.0.1:0".parse().unwrap(),
                config,
            ))
            .unwrap();
        Server {
            runtime,
            server: Some(server),
        }
    }

    fn server(&self) -> &wsfleet_testserver::TestServer {
        self.server.as_ref().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.shutdown());
        }
    }
}

fn run_inline(dir: &Path, source: &str) -> (Value, i32) {
    let path = write(dir, "scenario.yaml", source);
    run_file(&path, 1)
}

#[test]
fn receive_timeout_policies_fail_skip_or_continue() {
    let server = Server::start(Default::default());
    let address = server.server().local_addr();
    let dir = tempfile::tempdir().unwrap();
    let scenario = |policy: &str| {
        format!(
            "load: {{ vus: 3, iterations: 1 }}
steps:
  - connect: {{ url: 'ws://{address}/echo?delay=400ms' }}
  - send: {{ name: slow, text: hi }}
  - receive: {{ name: impatient, timeout: 50ms, on_timeout: {policy} }}
  - receive: {{ name: patient, timeout: 3s }}
  - close: {{ code: 1000 }}
"
        )
    };
    // continue: the timeout is counted, the next receive gets the late reply.
    let (summary, code) = run_inline(dir.path(), &scenario("continue"));
    assert_eq!(code, 0, "{summary:#}");
    assert_eq!(step_counter(&summary, "impatient", "receive_timeouts"), 3);
    assert_eq!(step_counter(&summary, "patient", "messages_received"), 3);
    assert_eq!(counter(&summary, "iterations"), 3);
    // skip: the rest of the iteration is skipped, not failed.
    let (summary, _) = run_inline(dir.path(), &scenario("skip"));
    assert_eq!(step_counter(&summary, "impatient", "receive_timeouts"), 3);
    assert_eq!(step_counter(&summary, "patient", "messages_received"), 0);
    assert_eq!(counter(&summary, "iterations_skipped"), 3);
    assert_eq!(counter(&summary, "iterations_failed"), 0);
    // fail (the default).
    let (summary, _) = run_inline(dir.path(), &scenario("fail"));
    assert_eq!(counter(&summary, "iterations_failed"), 3);
    assert_eq!(counter(&summary, "receive_timeouts"), 3);
}

#[test]
fn on_close_and_on_error_rules_decide_what_a_fault_costs() {
    let server = Server::start(Default::default());
    let address = server.server().local_addr();
    let dir = tempfile::tempdir().unwrap();
    // The server closes with 4000 after the second message; the rule ends the iteration quietly.
    let (summary, code) = run_inline(
        dir.path(),
        &format!(
            "load: {{ vus: 2, iterations: 2 }}
steps:
  - connect: {{ url: 'ws://{address}/echo?close_after=2&close_code=4000' }}
  - repeat:
      count: 5
      steps:
        - send: {{ name: msg, text: hi }}
        - receive: {{ name: reply, timeout: 2s }}
on_close:
  - {{ name: kicked, codes: [4000], then: end_iteration }}
"
        ),
    );
    assert_eq!(code, 0, "{summary:#}");
    assert_eq!(counter(&summary, "iterations_skipped"), 4, "{summary:#}");
    assert_eq!(counter(&summary, "iterations_failed"), 0);
    assert_eq!(step_counter(&summary, "reply", "messages_received"), 8);
    // Each of the 4 server closes is counted once, in the rule's set.
    assert_eq!(summary["totals"]["close_codes"]["4000"], 4, "{summary:#}");
    assert_eq!(step_counter(&summary, "kicked", "close_codes.4000"), 4, "{summary:#}");

    // A refused connection, continued past by an on_error rule; the next check still runs.
    let port = closed_port();
    let (summary, _) = run_inline(
        dir.path(),
        &format!(
            "load: {{ vus: 2, iterations: 1 }}
variables: {{ flag: up }}
steps:
  - connect: {{ url: 'ws://127.0.0.1:{port}/' , timeout: 2s }}
  - check: {{ name: still_here, value: '${{flag}}', equals: up }}
on_error:
  - {{ kinds: [refused], then: continue }}
"
        ),
    );
    assert_eq!(summary["totals"]["errors"]["refused"], 2, "{summary:#}");
    assert_eq!(counter(&summary, "iterations"), 2);
    assert_eq!(counter(&summary, "connections_failed"), 2);
}

#[test]
fn checks_extractions_and_expectations() {
    let server = Server::start(Default::default());
    let address = server.server().local_addr();
    let dir = tempfile::tempdir().unwrap();
    let (summary, code) = run_inline(
        dir.path(),
        &format!(
            "load: {{ vus: 2, iterations: 1 }}
steps:
  - connect:
      url: 'ws://{address}/json'
      extract: {{ session: {{ header: X-Session-Id }} }}
  - send: {{ name: ask, text: '{{\"id\":\"${{vu}}-${{session}}\",\"type\":\"ping\"}}' }}
  - receive:
      name: answer
      timeout: 2s
      match: {{ json: /type, equals: ping_ok }}
      extract: {{ echoed: {{ json: /id }}, digits: {{ regex: '\"id\":\"\\d+-(\\d+)\"' }} }}
  - check: {{ name: same_id, value: '${{echoed}}', equals: '${{vu}}-${{session}}' }}
  - check: {{ name: session_digits, value: '${{digits}}', regex: '^[0-9]+$' }}
  - check: {{ name: soft, value: '${{echoed}}', equals: nothing-like-it, on_fail: continue }}
  - extract: {{ name: missing, values: {{ nothing: {{ json: /nope }} }} }}
  - close: {{ code: 1000 }}
"
        ),
    );
    // Everything held except the soft check (counted, continued) and the extraction of a
    // value that is not there (the iteration fails there).
    assert_eq!(code, 0, "{summary:#}");
    assert_eq!(step_counter(&summary, "answer", "messages_received"), 2);
    assert_eq!(summary["totals"]["errors"]["check"], 2, "{summary:#}");
    assert_eq!(summary["totals"]["errors"]["extract"], 2, "{summary:#}");
    assert_eq!(counter(&summary, "iterations_failed"), 2);
    let steps = summary["steps"].as_array().unwrap();
    let errors_of = |name: &str| {
        steps
            .iter()
            .find(|step| step["name"] == name)
            .map(|step| step["counters"].clone())
            .unwrap()
    };
    assert_eq!(errors_of("soft")["errors.check"], 2, "{summary:#}");
    assert_eq!(errors_of("missing")["errors.extract"], 2, "{summary:#}");

    // A refused upgrade that the step expects is a success without a connection; a wrong
    // subprotocol expectation is an `expectation` error.
    let (summary, _) = run_inline(
        dir.path(),
        &format!(
            "load: {{ vus: 3, iterations: 1 }}
steps:
  - connect: {{ name: refused, url: 'ws://{address}/echo?handshake_status=401', expect: {{ status: 401 }} }}
  - connect: {{ name: picky, connection: second, url: 'ws://{address}/echo', subprotocols: [v9], expect: {{ subprotocol: v9 }} }}
"
        ),
    );
    assert_eq!(step_counter(&summary, "refused", "connections_opened"), 0);
    assert_eq!(step_counter(&summary, "refused", "connections_failed"), 0);
    assert_eq!(summary["totals"]["errors"]["expectation"], 3, "{summary:#}");
}

/// An upgrade's bytes are `handshake_bytes_*` whatever its outcome: refused with a status the
/// step did not expect, or cut short by the connect timeout. Such connections carry nothing
/// else, so their handshake bytes are all their wire bytes.
#[test]
fn an_upgrade_that_fails_still_counts_its_bytes_as_handshake_bytes() {
    let server = Server::start(Default::default());
    let address = server.server().local_addr();
    let dir = tempfile::tempdir().unwrap();
    let path = "/echo?handshake_status=403";
    let (summary, _) = run_inline(
        dir.path(),
        &format!("load: {{ vus: 3, iterations: 1 }}\nsteps:\n  - connect: {{ url: 'ws://{address}{path}' }}\n"),
    );
    assert_eq!(summary["totals"]["errors"]["http_403"], 3, "{summary:#}");
    assert_eq!(
        counter(&summary, "handshake_bytes_sent"),
        3 * upgrade_request_len(&address.to_string(), path)
    );
    assert_eq!(
        counter(&summary, "bytes_sent"),
        counter(&summary, "handshake_bytes_sent")
    );
    // At least a status line and a blank line each.
    assert!(counter(&summary, "handshake_bytes_received") >= 3 * 30, "{summary:#}");
    assert_eq!(
        counter(&summary, "bytes_received"),
        counter(&summary, "handshake_bytes_received")
    );

    // A server that takes the request and never answers: the request is counted when the
    // timeout ends the connect.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_address = silent.local_addr().unwrap();
    silent.set_nonblocking(true).unwrap();
    let held = std::thread::spawn(move || {
        // Accepts and holds, silent, for longer than the agents wait.
        let mut accepted = Vec::new();
        let until = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < until {
            if let Ok((stream, _)) = silent.accept() {
                accepted.push(stream);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        accepted.len()
    });
    let (summary, _) = run_inline(
        dir.path(),
        &format!(
            "load: {{ vus: 2, iterations: 1 }}\nsteps:\n  - connect: {{ url: 'ws://{silent_address}/echo', timeout: 500ms }}\n"
        ),
    );
    assert_eq!(held.join().unwrap(), 2);
    assert_eq!(summary["totals"]["errors"]["timeout"], 2, "{summary:#}");
    assert_eq!(
        counter(&summary, "handshake_bytes_sent"),
        2 * upgrade_request_len(&silent_address.to_string(), "/echo")
    );
    assert_eq!(counter(&summary, "handshake_bytes_received"), 0);
}

#[test]
fn tls_trusts_a_ca_file_or_skips_verification_only_when_told() {
    let server = Server::start(wsfleet_testserver::Config {
        tls: true,
        ..Default::default()
    });
    let address = server.server().local_addr();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ca.pem", &server.server().ca_certificate_pem().unwrap());
    let scenario = |tls: &str| {
        format!(
            "load: {{ vus: 2, iterations: 1 }}
steps:
  - connect: {{ url: 'wss://{address}/echo', timeout: 3s{tls} }}
  - send: {{ text: secret }}
  - receive: {{ name: back, timeout: 2s }}
  - close: {{ code: 1000 }}
"
        )
    };
    let (summary, code) = run_inline(dir.path(), &scenario(", tls: { ca: ca.pem }"));
    assert_eq!(code, 0, "{summary:#}");
    assert_eq!(step_counter(&summary, "back", "messages_received"), 2);
    let (summary, _) = run_inline(dir.path(), &scenario(", tls: { insecure_skip_verify: true }"));
    assert_eq!(step_counter(&summary, "back", "messages_received"), 2, "{summary:#}");
    // Without either, the generated certificate is not trusted.
    let (summary, _) = run_inline(dir.path(), &scenario(""));
    assert_eq!(summary["totals"]["errors"]["tls"], 2, "{summary:#}");
    assert_eq!(counter(&summary, "connections_opened"), 0);
}

#[test]
fn connections_go_through_an_http_connect_proxy() {
    let server = Server::start(Default::default());
    let address = server.server().local_addr();
    let tunnels = Arc::new(AtomicU64::new(0));
    let listener = server
        .runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    // "tester:s3cret" in Base64.
    server
        .runtime
        .spawn(connect_proxy(listener, "dGVzdGVyOnMzY3JldA==".into(), tunnels.clone()));
    let dir = tempfile::tempdir().unwrap();
    let scenario = |credentials: &str| {
        format!(
            "load: {{ vus: 3, iterations: 2 }}
steps:
  - connect: {{ url: 'ws://{address}/echo', proxy: 'http://{credentials}@127.0.0.1:{proxy_port}' }}
  - send: {{ text: through the tunnel }}
  - receive: {{ name: back, timeout: 2s }}
  - close: {{ code: 1000 }}
"
        )
    };
    let (summary, code) = run_inline(dir.path(), &scenario("tester:s3cret"));
    assert_eq!(code, 0, "{summary:#}");
    assert_eq!(step_counter(&summary, "back", "messages_received"), 6);
    assert_eq!(tunnels.load(Ordering::SeqCst), 6);
    assert_eq!(server.server().stats().total_connections, 6);
    // Wrong credentials: the proxy refuses, counted as `proxy` errors.
    let (summary, _) = run_inline(dir.path(), &scenario("tester:wrong"));
    assert_eq!(summary["totals"]["errors"]["proxy"], 6, "{summary:#}");
    assert_eq!(tunnels.load(Ordering::SeqCst), 6);
}

#[test]
fn scenario_files_travel_and_missing_ones_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(
        dir.path(),
        "files.yaml",
        "load: { vus: 1, iterations: 1 }
data:
  users: { csv: nowhere.csv }
steps:
  - connect: { url: 'ws://127.0.0.1:9/' }
  - send: { file: payloads/missing.bin }
",
    );
    let mut command = wsfleet();
    command.arg("validate").arg(&scenario);
    let output = run_bounded(command, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(3));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("files.yaml:3:"), "{stderr}");
    assert!(stderr.contains("data.users.csv"), "{stderr}");
    assert!(stderr.contains("files.yaml:6:"), "{stderr}");
    assert!(stderr.contains("steps[1].send.file"), "{stderr}");
    assert!(stderr.contains("cannot read"), "{stderr}");
}

#[test]
fn a_failure_inside_a_repeat_is_counted_once_and_rules_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let (summary, _) = run_inline(
        dir.path(),
        "load: { vus: 3, iterations: 2 }
variables: { flag: down }
steps:
  - repeat:
      count: 4
      steps:
        - repeat:
            count: 2
            steps:
              - check: { name: deep, value: '${flag}', equals: up }
",
    );
    // Each iteration fails at its first check: 6 failures, each counted once.
    assert_eq!(summary["totals"]["errors"]["check"], 6, "{summary:#}");
    assert_eq!(step_counter(&summary, "deep", "errors.check"), 6);
    assert_eq!(counter(&summary, "iterations_failed"), 6);
}

#[test]
fn example_listeners_writers_two_scenarios_in_one_run() {
    let summary = run_ok(&example("listeners-writers.yaml"), 2);
    no_errors(&summary);
    assert_eq!(step_counter(&summary, "listeners.connect", "connections_opened"), 18);
    assert_eq!(step_counter(&summary, "writers.connect", "connections_opened"), 2);
    assert_eq!(step_counter(&summary, "writers.post", "messages_sent"), 20);
    // Every listener heard all 20 posts; the writers' VU numbers (18, 19) passed every check.
    assert_eq!(step_counter(&summary, "listeners.news", "messages_received"), 18 * 20);
    assert_eq!(step_counter(&summary, "listeners.writer_number", "errors.check"), 0);
    received_adds_up(&summary);
}

fn run_agents(dir: &Path, source: &str, agents: u32) -> (Value, i32) {
    let path = write(dir, "scenario.yaml", source);
    run_file(&path, agents)
}

fn step_latency(summary: &Value, name: &str, hist: &str, stat: &str) -> u64 {
    let steps = summary["steps"].as_array().unwrap();
    let step = steps.iter().find(|step| step["name"] == name).unwrap();
    step["latency"][hist][stat].as_u64().unwrap_or(0)
}

#[test]
fn rendezvous_releases_vus_of_three_agents_together_or_after_the_timeout() {
    let server = Server::start(Default::default());
    let address = server.server().local_addr();
    let dir = tempfile::tempdir().unwrap();
    // 12 VUs on 3 agents arrive over up to a second; none goes on before the twelfth is there,
    // so the first ones wait about as long as the arrivals are spread.
    let (summary, code) = run_agents(
        dir.path(),
        &format!(
            "load: {{ vus: 12, iterations: 3 }}
steps:
  - connect: {{ url: 'ws://{address}/echo' }}
  - think: {{ uniform: [0ms, 1s] }}
  - rendezvous: {{ name: burst, count: 12, timeout: 20s }}
  - send: {{ name: go, text: 'vu ${{vu}}' }}
  - receive: {{ timeout: 2s }}
  - close: {{ code: 1000 }}
"
        ),
        3,
    );
    assert_eq!(code, 0, "{summary:#}");
    no_errors(&summary);
    assert_eq!(
        step_latency(&summary, "burst", "rendezvous_wait", "count"),
        36,
        "{summary:#}"
    );
    assert!(
        step_latency(&summary, "burst", "rendezvous_wait", "max_us") >= 300_000,
        "{summary:#}"
    );
    assert_eq!(step_counter(&summary, "go", "messages_sent"), 36);

    // A count that is never reached: released 500 ms after the last arrival.
    let (summary, code) = run_agents(
        dir.path(),
        &format!(
            "load: {{ vus: 4, iterations: 2 }}
steps:
  - connect: {{ url: 'ws://{address}/echo' }}
  - rendezvous: {{ name: never_full, share: 100%, timeout: 500ms }}
  - rendezvous: {{ name: too_many, count: 1000, timeout: 500ms }}
  - close: {{ code: 1000 }}
"
        ),
        2,
    );
    assert_eq!(code, 0, "{summary:#}");
    assert_eq!(step_latency(&summary, "too_many", "rendezvous_wait", "count"), 8);
    assert!(
        step_latency(&summary, "too_many", "rendezvous_wait", "min_us") >= 400_000,
        "{summary:#}"
    );
    // `share: 100%` of 4 VUs is reached by count, well before the timeout.
    assert!(
        step_latency(&summary, "never_full", "rendezvous_wait", "max_us") < 400_000,
        "{summary:#}"
    );
}

#[test]
fn slow_replies_are_timed_in_full() {
    let server = Server::start(Default::default());
    let address = server.server().local_addr();
    let dir = tempfile::tempdir().unwrap();
    let (summary, code) = run_inline(
        dir.path(),
        &format!(
            "load: {{ vus: 3, iterations: 2 }}
steps:
  - connect: {{ url: 'ws://{address}/echo?delay=350ms' }}
  - send: {{ name: ask, text: slow }}
  - receive: {{ name: answer, timeout: 5s, latency_of: ask }}
  - close: {{ code: 1000 }}
"
        ),
    );
    assert_eq!(code, 0, "{summary:#}");
    let min = step_latency(&summary, "answer", "message_latency", "min_us");
    let max = step_latency(&summary, "answer", "message_latency", "max_us");
    assert!((350_000..1_500_000).contains(&min), "{summary:#}");
    assert!(max >= min, "{summary:#}");
}

/// A VU that only sends, against a target that answers every message: once the socket buffers
/// fill, the VU's sends wait for the target, whose own sends wait for the VU. The VU reads while
/// its sends wait, so the run finishes with every message sent and every answer counted.
#[test]
fn a_vu_that_only_sends_reads_while_its_sends_wait() {
    let server = Server::start(Default::default());
    let address = server.server().local_addr();
    let dir = tempfile::tempdir().unwrap();
    let payload = "x".repeat(1000);
    let (summary, code) = run_inline(
        dir.path(),
        &format!(
            "load: {{ vus: 2, iterations: 1, duration: 60s }}
on_message:
  - name: echoes
steps:
  - connect: {{ url: 'ws://{address}/echo' }}
  - repeat:
      count: 30000
      steps:
        - send: {{ name: fire, text: '{payload}' }}
  - close: {{ name: bye, code: 1000 }}
"
        ),
    );
    assert_eq!(code, 0, "{summary:#}");
    no_errors(&summary);
    assert_eq!(step_counter(&summary, "fire", "messages_sent"), 60_000);
    assert_eq!(step_counter(&summary, "fire", "payload_bytes_sent"), 60_000_000);
    // Every echo is counted once: by the handler, while sends waited or while closing.
    assert_eq!(counter(&summary, "messages_received"), 60_000, "{summary:#}");
    assert_eq!(counter(&summary, "payload_bytes_received"), 60_000_000, "{summary:#}");
    assert!(step_counter(&summary, "echoes", "messages_received") > 0, "{summary:#}");
    assert_eq!(counter(&summary, "iterations"), 2);
    received_adds_up(&summary);
    // `duration` bounds a plan of counted iterations; the run ends when they are done.
    let seconds = summary["duration_seconds"].as_f64().unwrap();
    assert!(seconds < 30.0, "the run waited for its duration: {seconds} s");
}
