//! Coalesced writes end to end: the real binary plays pipelined echo against the test server
//! (in this process, so its own counts can be read); sends that follow each other leave in one
//! write, `flush: each` writes each on its own, and every count is exact on both sides.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

const VUS: u64 = 10;
const ROUNDS: u64 = 40;
const IN_FLIGHT: u64 = 16;

/// Plays `ROUNDS` rounds of `IN_FLIGHT` sends then as many receives on each of `VUS`
/// connections, with the scenario-level `flush` given; returns the summary and the server's
/// counts.
fn pipelined_echo(flush: &str) -> (serde_json::Value, wsfleet_testserver::Stats) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = test_server(&runtime);
    let sends = "        - send: { text: '0123456789abcdef' }\n".repeat(IN_FLIGHT as usize);
    let receives = "        - receive: { timeout: 5s }\n".repeat(IN_FLIGHT as usize);
    let scenario = format!(
        "name: pipelined
flush: {flush}
load: {{ vus: {VUS}, iterations: 1 }}
steps:
  - connect: {{ url: 'ws://{}/echo' }}
  - repeat:
      count: {ROUNDS}
      steps:
{sends}{receives}  - close: {{ code: 1000 }}
",
        server.local_addr()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "pipelined.yaml", &scenario);
    let out = dir.path().join("summary.json");
    let mut command = wsfleet();
    command
        .arg("run")
        .arg(&path)
        .args(["--agents", "1", "--quiet", "--out"])
        .arg(format!("json={}", out.display()));
    let output = run_bounded(command, Duration::from_secs(90));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let summary = read_json(&out);
    // The server counts a connection's end when it sees it; the run is over, so it will.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.stats().open_connections != 0 {
        assert!(std::time::Instant::now() < deadline, "connections left open");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = server.stats();
    runtime.block_on(server.shutdown());
    (summary, stats)
}

#[test]
fn pipelined_sends_leave_together_and_every_count_is_exact() {
    let messages = VUS * ROUNDS * IN_FLIGHT;
    for (flush, writes_per_vu) in [("batch", ROUNDS), ("each", ROUNDS * IN_FLIGHT)] {
        let (summary, server) = pipelined_echo(flush);
        assert_eq!(counter(&summary, "messages_sent"), messages, "{flush}");
        assert_eq!(server.messages_received, messages, "{flush}");
        assert_eq!(server.messages_sent, messages, "{flush}");
        assert_eq!(counter(&summary, "messages_received"), messages, "{flush}");
        assert_eq!(counter(&summary, "payload_bytes_sent"), messages * 16, "{flush}");
        assert_eq!(server.payload_bytes_received, messages * 16, "{flush}");
        assert_eq!(counter(&summary, "messages_unread"), 0, "{flush}");
        assert_eq!(counter(&summary, "iterations"), VUS, "{flush}");
        // Per connection: the upgrade request, the rounds' writes, the close frame.
        assert_eq!(
            counter(&summary, "socket_writes"),
            VUS * (1 + writes_per_vu + 1),
            "{flush}"
        );
        // One echo a round is timed: the round's first receive answers its most recent send.
        let timed: u64 = summary["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|step| step["latency"]["message_latency"]["count"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(timed, VUS * ROUNDS, "{flush}");
    }
}

/// A VU that only sends (a repeat of one send, no waits, as in fire-and-count) reads its echoes
/// while it sends: after each full buffer goes out it reads what has come, so an `on_message`
/// rule takes echoes during the sends instead of every echo waiting in the socket until the
/// close reads it as unread. Every count stays exact.
#[test]
fn a_sender_that_never_waits_reads_its_echoes_as_it_sends() {
    const SENDS: u64 = 20_000;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = test_server(&runtime);
    let scenario = format!(
        "name: fire
load: {{ vus: 1, iterations: 1 }}
on_message:
  - name: echoes
steps:
  - connect: {{ url: 'ws://{}/echo' }}
  - repeat:
      count: {SENDS}
      steps:
        - send: {{ text: '{}' }}
  - close: {{ code: 1000, timeout: 30s }}
",
        server.local_addr(),
        "x".repeat(64)
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "fire.yaml", &scenario);
    let out = dir.path().join("summary.json");
    let mut command = wsfleet();
    command
        .arg("run")
        .arg(&path)
        .args(["--agents", "1", "--quiet", "--out"])
        .arg(format!("json={}", out.display()));
    let output = run_bounded(command, Duration::from_secs(90));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let summary = read_json(&out);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.stats().open_connections != 0 {
        assert!(std::time::Instant::now() < deadline, "connections left open");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = server.stats();
    runtime.block_on(server.shutdown());
    assert_eq!(counter(&summary, "messages_sent"), SENDS);
    assert_eq!(stats.messages_received, SENDS);
    assert_eq!(stats.messages_sent, SENDS);
    assert_eq!(counter(&summary, "messages_received"), SENDS);
    // 20,000 frames of 70 bytes fill the 64 KiB buffer about 21 times: the rule takes what
    // came back between them; the close reads the rest.
    let taken = step_counter(&summary, "echoes", "messages_received");
    assert!(taken > 0, "no echo was read while sending");
    assert_eq!(taken + counter(&summary, "messages_unread"), SENDS);
}
