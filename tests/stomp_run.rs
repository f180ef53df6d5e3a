//! STOMP 1.2 scenarios end to end: the real binary (`wsfleet run`) against RabbitMQ's
//! Web-STOMP (Debian's package, started by `common/brokers.rs` with its management API for the
//! broker's own statistics). One broker serves three runs:
//! - a fan-out through two agents: 4 subscribers and 2 publishers on one topic, where the
//!   summary's per-destination deliveries and publishes equal the broker's own counts exactly,
//!   and every RECEIPT asked for is measured; thresholds read the destination's set;
//! - faults: a refused login counted as `connect_error`, an ERROR frame as `stomp_error` (an
//!   `on_error` rule names it), a message acknowledged with client acks;
//! - heart-beats of one second kept across a five-second idle wait, sent and checked by the
//!   layer and counted apart, with no connection lost;
//! - per-room destinations through two agents: members and speakers of three rooms
//!   (`/topic/room.${vu % 3}`), every delivery in the room it was sent to and counted in the
//!   set `destination:/topic/room.*`, equal to what the broker routed;
//! - transactions: a committed one delivers its SENDs, an aborted one none (the listeners'
//!   counts and the broker's prove it), with BEGIN, COMMIT and ABORT receipts timed.

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
    rooms_deliver_to_their_members_only(&broker);
    committed_sends_are_delivered_and_aborted_ones_are_not(&broker);
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

/// A counter of the run's totals, 0 when the run never counted it.
fn total(summary: &Value, name: &str) -> u64 {
    summary["totals"]["counters"][name].as_u64().unwrap_or(0)
}

/// A counter of a metric set, 0 when the summary has no such set.
fn set_counter(summary: &Value, set: &str, name: &str) -> u64 {
    summary["steps"]
        .as_array()
        .and_then(|sets| sets.iter().find(|found| found["name"] == set))
        .and_then(|found| found["counters"][name].as_u64())
        .unwrap_or(0)
}

/// The broker's amq.topic counters (messages in, copies out) now.
fn topic_exchange(broker: &RabbitMq) -> (u64, u64) {
    let stats = broker.api("/api/exchanges/%2F/amq.topic");
    (
        stat(&stats, "/message_stats/publish_in"),
        stat(&stats, "/message_stats/publish_out"),
    )
}

/// Polls amq.topic's counters until they have grown by `published` in and `delivered` out
/// since `before` (or 15 s passed); returns the growth.
fn topic_exchange_growth(broker: &RabbitMq, before: (u64, u64), published: u64, delivered: u64) -> (u64, u64) {
    broker_stats(broker, "/api/exchanges/%2F/amq.topic", |stats| {
        stat(stats, "/message_stats/publish_in") >= before.0 + published
            && stat(stats, "/message_stats/publish_out") >= before.1 + delivered
    });
    // One refresh more: a count past the expected one would show by then.
    std::thread::sleep(Duration::from_millis(600));
    let after = topic_exchange(broker);
    (after.0 - before.0, after.1 - before.1)
}

const ROOMS: u64 = 3;
const MEMBERS: u64 = 6;
const PER_SPEAKER: u64 = 5;

fn rooms_deliver_to_their_members_only(broker: &RabbitMq) {
    let url = broker.stomp_url();
    // Members take VU numbers 0-5 (rooms 0, 1, 2, 0, 1, 2), speakers 6-8 (rooms 0, 1, 2): each
    // room has two members and one speaker, and a member takes only what names its room.
    let delivered = MEMBERS * PER_SPEAKER;
    let published = ROOMS * PER_SPEAKER;
    let scenario = format!(
        "name: stomp-rooms
scenarios:
  - name: members
    load: {{ vus: {MEMBERS}, iterations: 1 }}
    steps:
      - connect: {{ url: '{url}', protocol: stomp, stomp: {{ login: guest, passcode: guest }} }}
      - stomp_subscribe: {{ destination: '/topic/room.${{vu % 3}}', receipt: true }}
      - repeat:
          count: {PER_SPEAKER}
          steps:
            - receive: {{ name: heard, timeout: 20s, match: {{ destination: '/topic/room.${{vu % 3}}', headers: {{ room: '${{vu % 3}}' }} }} }}
      - stomp_unsubscribe: {{ destination: '/topic/room.${{vu % 3}}', receipt: true }}
      - stomp_disconnect: {{}}
  - name: speakers
    load: {{ vus: {ROOMS}, iterations: 1 }}
    steps:
      - think: 3s
      - connect: {{ url: '{url}', protocol: stomp, stomp: {{ login: guest, passcode: guest }} }}
      - repeat:
          count: {PER_SPEAKER}
          steps:
            - stomp_send: {{ name: say, destination: '/topic/room.${{vu % 3}}', headers: {{ room: '${{vu % 3}}' }}, text: 'r${{vu % 3}}', receipt: true }}
      - stomp_disconnect: {{}}
thresholds:
  \"ack_latency{{step=speakers.destination:/topic/room.*}}.p95\": \"< 2s\"
  \"events_received{{step=members.destination:/topic/room.*}}.count\": \"== {delivered}\"
"
    );
    let before = topic_exchange(broker);
    let (summary, code) = run(&scenario, 2);
    assert_eq!(code, 0, "{summary:#}");
    assert_eq!(summary["totals"]["errors"], serde_json::json!({}), "{summary:#}");
    let rooms = "members.destination:/topic/room.*";
    let speaking = "speakers.destination:/topic/room.*";
    // Every delivery counted in the rooms' set, none elsewhere; each member heard its own room:
    // it subscribes to that room only, and each receive's match (the room's destination and
    // `room` header) checks that every delivery names it.
    assert_eq!(
        step_counter(&summary, rooms, "events_received"),
        delivered,
        "{summary:#}"
    );
    assert_eq!(step_counter(&summary, rooms, "payload_bytes_received"), delivered * 2);
    assert_eq!(set_counter(&summary, "members.destination:*", "events_received"), 0);
    assert_eq!(step_counter(&summary, "members.heard", "messages_received"), delivered);
    assert_eq!(total(&summary, "receive_timeouts"), 0, "{summary:#}");
    assert_eq!(step_counter(&summary, speaking, "events_sent"), published);
    // The receipts of the SENDs, SUBSCRIBEs and UNSUBSCRIBEs (by templated destination), timed
    // in the rooms' sets.
    assert_eq!(step_latency_count(&summary, speaking, "ack_latency"), published);
    assert_eq!(step_latency_count(&summary, rooms, "ack_latency"), 2 * MEMBERS);
    // The broker routed each SEND to its room's two members: as many copies out as counted.
    let (routed_in, routed_out) = topic_exchange_growth(broker, before, published, delivered);
    assert_eq!((routed_in, routed_out), (published, delivered));
    eprintln!(
        "rooms: {delivered} deliveries over {ROOMS} rooms, as RabbitMQ routed; receipt p95 {} us",
        metric_set(&summary, speaking)["latency"]["ack_latency"]["p95_us"]
    );
}

const LISTENERS: u64 = 2;
const COMMITTED: u64 = 4;
const ABORTED: u64 = 3;

fn committed_sends_are_delivered_and_aborted_ones_are_not(broker: &RabbitMq) {
    let url = broker.stomp_url();
    // The payer commits COMMITTED sends, aborts ABORTED, then sends a last one outside any
    // transaction: a listener that has that one has had everything the broker would deliver
    // before it.
    let scenario = format!(
        "name: stomp-transactions
scenarios:
  - name: listeners
    load: {{ vus: {LISTENERS}, iterations: 1 }}
    steps:
      - connect: {{ url: '{url}', protocol: stomp, stomp: {{ login: guest, passcode: guest }} }}
      - stomp_subscribe: {{ destination: /topic/ledger, receipt: true }}
      - repeat:
          count: {COMMITTED}
          steps:
            - receive: {{ name: paid, timeout: 20s, match: {{ destination: /topic/ledger, contains: paid }} }}
      - receive: {{ name: last, timeout: 20s, match: {{ destination: /topic/ledger, equals: last }} }}
      - stomp_disconnect: {{}}
  - name: payers
    load: {{ vus: 1, iterations: 1 }}
    steps:
      - think: 3s
      - connect: {{ url: '{url}', protocol: stomp, stomp: {{ login: guest, passcode: guest }} }}
      - stomp_begin: {{ name: open, receipt: true }}
      - repeat:
          count: {COMMITTED}
          steps:
            - stomp_send: {{ name: pay, destination: /topic/ledger, text: 'paid ${{iteration}}', transaction: true }}
      - stomp_commit: {{ name: settle, receipt: true }}
      - stomp_begin: {{ name: void, transaction: 'void-${{vu}}', receipt: true }}
      - repeat:
          count: {ABORTED}
          steps:
            - stomp_send: {{ name: unpay, destination: /topic/ledger, text: 'paid ${{iteration}}', transaction: 'void-${{vu}}' }}
      - stomp_abort: {{ name: cancel, transaction: 'void-${{vu}}', receipt: true }}
      - stomp_send: {{ name: final, destination: /topic/ledger, text: last, receipt: true }}
      - stomp_disconnect: {{}}
"
    );
    let before = topic_exchange(broker);
    let (summary, code) = run(&scenario, 1);
    assert_eq!(code, 0, "{summary:#}");
    assert_eq!(summary["totals"]["errors"], serde_json::json!({}), "{summary:#}");
    let ledger = "listeners.destination:/topic/ledger";
    // Each listener had the committed sends and the last one, and nothing of the aborted ones:
    // the set counts every MESSAGE that came, taken or not.
    assert_eq!(
        step_counter(&summary, ledger, "events_received"),
        LISTENERS * (COMMITTED + 1),
        "{summary:#}"
    );
    assert_eq!(
        step_counter(&summary, "listeners.paid", "messages_received"),
        LISTENERS * COMMITTED
    );
    assert_eq!(total(&summary, "messages_unread"), 0, "{summary:#}");
    // Every SEND counted when written, inside a transaction or not.
    assert_eq!(
        step_counter(&summary, "payers.destination:/topic/ledger", "events_sent"),
        COMMITTED + ABORTED + 1
    );
    // BEGIN, COMMIT and ABORT receipts, each timed in its step's set.
    for step in ["payers.open", "payers.settle", "payers.void", "payers.cancel"] {
        assert_eq!(step_counter(&summary, step, "acks_received"), 1, "{step}: {summary:#}");
        assert_eq!(
            step_latency_count(&summary, step, "ack_latency"),
            1,
            "{step}: {summary:#}"
        );
    }
    assert_eq!(total(&summary, "acks_missing"), 0, "{summary:#}");
    // The broker took in only what was committed (and the last one), and delivered it to both.
    let (routed_in, routed_out) = topic_exchange_growth(broker, before, COMMITTED + 1, LISTENERS * (COMMITTED + 1));
    assert_eq!((routed_in, routed_out), (COMMITTED + 1, LISTENERS * (COMMITTED + 1)));
    eprintln!(
        "transactions: {} committed sends delivered to {LISTENERS} listeners, {ABORTED} aborted delivered to none; commit receipt {} us",
        COMMITTED,
        metric_set(&summary, "payers.settle")["latency"]["ack_latency"]["max_us"]
    );
}
