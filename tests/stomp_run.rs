//! STOMP 1.2 scenarios end to end: the real binary (`wsfleet run`) against RabbitMQ's
//! Web-STOMP (Debian's package, started by `common/brokers.rs` with its management API for the
//! broker's own statistics). One broker serves three runs:
//! - a fan-out through two agents: 4 subscribers and 2 publishers on one topic, where the
//!   summary's per-destination deliveries and publishes equal the broker's own counts exactly,
//!   and every RECEIPT asked for is measured; thresholds read the destination's set;
//! - faults: a refused login counted as `connect_error`, an ERROR frame as `stomp_error` (an
//!   `on_error` rule names it), a message acknowledged with client acks;
//! - heart-beats of one second kept across a five-second idle wait, sent and checked by the
//!   layer and counted apart, with no connection lost.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::brokers::RabbitMq;
use common::*;
use serde_json::Value;

/// Runs `scenario` on `agents` local agents; returns the summary and the exit code.
fn run(scenario: &str, agents: u32) -> (Value, i32) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "stomp.yaml", scenario);
    let out = dir.path().join("summary.json");
    let mut command = wsfleet();
    command
        .arg("run")
        .arg(&path)
        .args(["--agents", &agents.to_string(), "--quiet", "--out"])
        .arg(format!("json={}", out.display()));
    let output = run_bounded(command, Duration::from_secs(90));
    let code = output.status.code().unwrap_or(-1);
    assert!(
        out.exists(),
        "no summary (exit {code})\nstdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    (read_json(&out), code)
}

/// A number in the broker's statistics, 0 when absent.
fn stat(value: &Value, pointer: &str) -> u64 {
    value.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

/// Polls the broker's statistics (refreshed every 500 ms) until `ready` holds for them, for at
/// most 15 s; returns the last reading.
fn broker_stats(broker: &RabbitMq, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let stats = broker.api(path);
        if ready(&stats) || Instant::now() > deadline {
            return stats;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn stomp_scenarios_against_rabbitmq() {
    let Some(broker) = RabbitMq::start() else {
        return;
    };
    fan_out_counts_equal_the_brokers(&broker);
    refused_logins_and_error_frames_are_error_kinds(&broker);
    heart_beats_keep_idle_connections_alive(&broker);
}

const SUBSCRIBERS: u64 = 4;
const PUBLISHERS: u64 = 2;
const PER_PUBLISHER: u64 = 10;

fn fan_out_counts_equal_the_brokers(broker: &RabbitMq) {
    let url = broker.stomp_url();
    let per_subscriber = PUBLISHERS * PER_PUBLISHER;
    let scenario = format!(
        "name: stomp-fanout
scenarios:
  - name: subscribers
    load: {{ vus: {SUBSCRIBERS}, iterations: 1 }}
    steps:
      - connect: {{ url: '{url}', protocol: stomp, stomp: {{ login: guest, passcode: guest }} }}
      - stomp_subscribe: {{ destination: /topic/fanout, receipt: true }}
      - repeat:
          count: {per_subscriber}
          steps:
            - receive: {{ name: delivery, timeout: 20s, match: {{ destination: /topic/fanout, headers: {{ kind: news }} }} }}
      - stomp_disconnect: {{}}
  - name: publishers
    load: {{ vus: {PUBLISHERS}, iterations: 1 }}
    steps:
      - think: 3s
      - connect: {{ url: '{url}', protocol: stomp, stomp: {{ login: guest, passcode: guest }} }}
      - repeat:
          count: {PER_PUBLISHER}
          steps:
            - stomp_send:
                name: publish
                destination: /topic/fanout
                headers: {{ kind: news }}
                content_type: text/plain
                text: 'm ${{vu}} ${{iteration}}'
                receipt: true
      - stomp_disconnect: {{}}
thresholds:
  \"ack_latency{{step=publishers.destination:/topic/fanout}}.p95\": \"< 2s\"
  \"events_received{{step=subscribers.destination:/topic/fanout}}.count\": \"== {total}\"
",
        total = SUBSCRIBERS * per_subscriber,
    );
    let (summary, code) = run(&scenario, 2);
    let delivered = SUBSCRIBERS * per_subscriber;
    let published = PUBLISHERS * PER_PUBLISHER;
    assert_eq!(code, 0, "{summary:#}");
    assert_eq!(summary["totals"]["errors"], serde_json::json!({}), "{summary:#}");
    let subscribed = "subscribers.destination:/topic/fanout";
    let publishing = "publishers.destination:/topic/fanout";
    assert_eq!(step_counter(&summary, subscribed, "events_received"), delivered);
    // Every body is `m V I` with one-digit VU numbers and rounds: 5 bytes.
    assert_eq!(
        step_counter(&summary, subscribed, "payload_bytes_received"),
        delivered * 5
    );
    assert_eq!(
        step_counter(&summary, "subscribers.delivery", "messages_received"),
        delivered
    );
    assert_eq!(step_counter(&summary, publishing, "events_sent"), published);
    assert_eq!(step_counter(&summary, publishing, "payload_bytes_sent"), published * 5);
    // Every RECEIPT asked for came and was timed: the SENDs' and the SUBSCRIBEs'.
    assert_eq!(step_counter(&summary, publishing, "acks_received"), published);
    assert_eq!(step_latency_count(&summary, publishing, "ack_latency"), published);
    assert_eq!(step_counter(&summary, subscribed, "acks_received"), SUBSCRIBERS);
    assert_eq!(step_latency_count(&summary, subscribed, "ack_latency"), SUBSCRIBERS);
    assert_eq!(counter(&summary, "protocol_connects"), SUBSCRIBERS + PUBLISHERS);
    assert_eq!(
        summary["totals"]["counters"]["acks_missing"].as_u64().unwrap_or(0),
        0,
        "{summary:#}"
    );
    // The broker's own counts: every SEND went into amq.topic once and out once per subscriber,
    // and every copy was delivered.
    let exchange = broker_stats(broker, "/api/exchanges/%2F/amq.topic", |stats| {
        stat(stats, "/message_stats/publish_out") >= delivered
    });
    assert_eq!(stat(&exchange, "/message_stats/publish_in"), published, "{exchange:#}");
    assert_eq!(stat(&exchange, "/message_stats/publish_out"), delivered, "{exchange:#}");
    let overview = broker_stats(broker, "/api/overview", |stats| {
        stat(stats, "/message_stats/deliver_get") >= delivered
    });
    assert_eq!(stat(&overview, "/message_stats/deliver_get"), delivered, "{overview:#}");
    assert_eq!(stat(&overview, "/message_stats/publish"), published, "{overview:#}");
    eprintln!(
        "fan-out: {delivered} deliveries and {published} publishes, as RabbitMQ counted; receipt p95 {} us",
        metric_set(&summary, publishing)["latency"]["ack_latency"]["p95_us"]
    );
}

fn refused_logins_and_error_frames_are_error_kinds(broker: &RabbitMq) {
    let url = broker.stomp_url();
    let scenario = format!(
        "name: stomp-faults
scenarios:
  - name: intruders
    load: {{ vus: 2, iterations: 1 }}
    steps:
      - connect: {{ url: '{url}', protocol: stomp, stomp: {{ login: guest, passcode: wrong }} }}
  - name: strays
    load: {{ vus: 1, iterations: 1 }}
    steps:
      - connect: {{ url: '{url}', protocol: stomp, stomp: {{ login: guest, passcode: guest }} }}
      - stomp_send: {{ name: astray, destination: /nowhere/at-all, text: lost }}
      - receive: {{ name: answer, timeout: 5s }}
    on_error:
      - {{ kinds: [stomp_error], then: end_iteration }}
  - name: ackers
    load: {{ vus: 1, iterations: 1 }}
    steps:
      - connect: {{ url: '{url}', protocol: stomp, stomp: {{ login: guest, passcode: guest }} }}
      - stomp_subscribe: {{ destination: /queue/acked, ack: client-individual, receipt: true }}
      - stomp_send: {{ destination: /queue/acked, text: one }}
      - receive: {{ name: got, timeout: 5s, match: {{ destination: /queue/acked, equals: one }}, extract: {{ mid: {{ header: message-id }} }} }}
      - stomp_ack: {{ name: settle, receipt: true }}
      - stomp_disconnect: {{}}
"
    );
    let (summary, _) = run(&scenario, 1);
    assert_eq!(
        step_counter(&summary, "intruders.connect", "errors.connect_error"),
        2,
        "{summary:#}"
    );
    assert_eq!(
        step_counter(&summary, "strays.answer", "errors.stomp_error"),
        1,
        "{summary:#}"
    );
    assert_eq!(
        step_counter(&summary, "strays.connect", "protocol_connects"),
        1,
        "{summary:#}"
    );
    assert_eq!(
        step_counter(&summary, "ackers.got", "messages_received"),
        1,
        "{summary:#}"
    );
    assert_eq!(
        step_counter(&summary, "ackers.settle", "acks_received"),
        1,
        "{summary:#}"
    );
    assert_eq!(
        step_latency_count(&summary, "ackers.settle", "ack_latency"),
        1,
        "{summary:#}"
    );
    assert_eq!(summary["totals"]["errors"]["connect_error"], 2, "{summary:#}");
    assert_eq!(summary["totals"]["errors"]["stomp_error"], 1, "{summary:#}");
    // The acknowledged message left the queue: the broker holds nothing for it.
    let queue = broker_stats(broker, "/api/queues/%2F/acked", |stats| {
        stat(stats, "/message_stats/ack") >= 1
    });
    assert_eq!(stat(&queue, "/message_stats/ack"), 1, "{queue:#}");
    assert_eq!(stat(&queue, "/messages"), 0, "{queue:#}");
}

fn heart_beats_keep_idle_connections_alive(broker: &RabbitMq) {
    let url = broker.stomp_url();
    let scenario = format!(
        "name: stomp-heartbeats
load: {{ vus: 2, iterations: 1 }}
steps:
  - connect: {{ url: '{url}', protocol: stomp, stomp: {{ login: guest, passcode: guest, heartbeat: {{ send: 1s, receive: 1s }} }} }}
  - stomp_subscribe: {{ destination: /queue/quiet }}
  - think: 5s
  - stomp_send: {{ destination: /queue/quiet, text: still-here }}
  - receive: {{ name: alive, timeout: 5s, match: {{ equals: still-here }} }}
  - stomp_disconnect: {{}}
"
    );
    let (summary, code) = run(&scenario, 1);
    assert_eq!(code, 0, "{summary:#}");
    assert_eq!(summary["totals"]["errors"], serde_json::json!({}), "{summary:#}");
    assert_eq!(step_counter(&summary, "alive", "messages_received"), 2, "{summary:#}");
    // One a second each way for five seconds and more, on two connections.
    let sent = counter(&summary, "heartbeats_sent");
    let received = counter(&summary, "heartbeats_received");
    eprintln!("heart-beats over the idle wait: {sent} sent, {received} received");
    assert!((10..=14).contains(&sent), "heart-beats sent: {sent}");
    assert!((8..=14).contains(&received), "heart-beats received: {received}");
}
