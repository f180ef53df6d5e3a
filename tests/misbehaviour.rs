//! Every scripted misbehaviour of the test server costs a counted error of the documented kind,
//! never a hung VU or a crashed agent.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Runs 4 VUs x 1 iteration of connect, send, receive, close against `query` on the test server
/// and returns the summary.
fn run_against(server: &wsfleet_testserver::TestServer, query: &str, receive_timeout: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(
        dir.path(),
        "misbehaviour.yaml",
        &format!(
            "name: misbehaviour
load: {{ vus: 4, iterations: 1 }}
steps:
  - connect: {{ url: 'ws://{}/echo?{query}', timeout: 2s }}
  - send: {{ text: hello }}
  - receive: {{ timeout: {receive_timeout} }}
  - close: {{ code: 1000, timeout: 2s }}
",
            server.local_addr()
        ),
    );
    let out = dir.path().join("summary.json");
    let mut command = wsfleet();
    command
        .arg("run")
        .arg(&scenario)
        .args(["--quiet", "--out"])
        .arg(format!("json={}", out.display()));
    let started = Instant::now();
    let output = run_bounded(command, Duration::from_secs(60));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{query}: took {:?}",
        started.elapsed()
    );
    assert!(output.status.code().is_some(), "{query}: killed by a signal");
    read_json(&out)
}

fn errors(summary: &serde_json::Value) -> serde_json::Value {
    summary["totals"]["errors"].clone()
}

#[test]
fn each_misbehaviour_is_counted_as_its_error_kind() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = wsfleet_testserver::Config {
        max_message_size: 64 * 1024 * 1024,
        ..wsfleet_testserver::Config::default()
    };
    let server = runtime
        .block_on(wsfleet_testserver::TestServer::start(
            "127.0.0.1:0".parse().unwrap(),
            config,
        ))
        .unwrap();

    // The handshake never answered: the connect step's timeout.
    let summary = run_against(&server, "handshake=never", "2s");
    assert_eq!(counter(&summary, "connections_failed"), 4);
    assert_eq!(errors(&summary)["timeout"], 4, "{summary:#}");

    // The upgrade refused with an HTTP status: http_<status>.
    let summary = run_against(&server, "handshake_status=503", "2s");
    assert_eq!(counter(&summary, "connections_failed"), 4);
    assert_eq!(errors(&summary)["http_503"], 4);

    // Dropped right after the handshake: the connection opened, then a reset.
    let summary = run_against(&server, "drop_after=0", "2s");
    assert_eq!(counter(&summary, "connections_opened"), 4);
    assert_eq!(counter(&summary, "iterations_failed"), 4);
    assert_eq!(errors(&summary)["reset"], 4, "{summary:#}");

    // Closed by the server with a chosen code: `closed`, and the code is counted.
    let summary = run_against(&server, "close_on_open=4001", "2s");
    assert_eq!(errors(&summary)["closed"], 4, "{summary:#}");
    assert_eq!(summary["totals"]["close_codes"]["4001"], 4);

    // A message over the agent's 16 MiB limit.
    let summary = run_against(&server, &format!("oversize={}&reply_count=0", 17 * 1024 * 1024), "5s");
    assert_eq!(errors(&summary)["message_too_big"], 4, "{summary:#}");

    // A frame that breaks the protocol.
    let summary = run_against(&server, "malformed=1&reply_count=0", "2s");
    assert_eq!(errors(&summary)["protocol"], 4, "{summary:#}");

    // Replies slower than the receive timeout: counted timeouts, not errors.
    let summary = run_against(&server, "delay=1500ms", "300ms");
    assert_eq!(counter(&summary, "receive_timeouts"), 4);
    // The late replies may still arrive while the failed iteration closes its connection: they
    // are received, but no step took them.
    assert_eq!(
        counter(&summary, "messages_received"),
        counter(&summary, "messages_unread"),
        "{summary:#}"
    );

    runtime.block_on(server.shutdown());
}
