//! MQTT over WebSocket through the real binary (`wsfleet run` with two local agents) against
//! mosquitto (`common/brokers.rs`): a fan-out whose delivery counts equal the broker's own
//! `$SYS` statistics, every PUBACK and PUBCOMP measured, every delivery timed from its send
//! stamp, QoS 2 both ways, keep-alive over a run
//! longer than it, and a refused login counted.

#![allow(clippy::unwrap_used)]

mod common;
// Not in `common`: it links the agent crate into every test that uses `common`.
#[path = "common/mqtt.rs"]
mod mqtt;

use std::time::Duration;

use common::brokers::Mosquitto;
use common::*;
use mqtt::Client;
use serde_json::Value;

/// Subscribers, publishers, and messages each publisher sends at QoS 1 and again at QoS 2.
const SUBSCRIBERS: u64 = 4;
const PUBLISHERS: u64 = 3;
const EACH: u64 = 10;

/// Runs `scenario` on two local agents; returns the summary and the exit code.
fn run(scenario: &str) -> (Value, i32) {
    run_summary("mqtt.yaml", scenario, 2, Duration::from_secs(90))
}

fn errors(summary: &Value) -> &Value {
    &summary["totals"]["errors"]
}

/// The broker's counts of MQTT packets received from clients and sent to them, less the
/// reader's own CONNECT and CONNACK. (mosquitto 2.0.11's `$SYS/broker/publish/messages/*`
/// count only some publishes, e.g. `sent` stays 0 for QoS 1 and 2 deliveries, so whole packet
/// counts are compared: each MQTT packet is one WebSocket message either way.)
fn broker_packets(broker: &Mosquitto) -> (u64, u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let received = "$SYS/broker/messages/received";
    let sent = "$SYS/broker/messages/sent";
    let values = runtime.block_on(Client::sys_values(
        &broker.ws_url(),
        "$SYS/broker/messages/+",
        &[received, sent],
    ));
    (values[received] - 1, values[sent] - 1)
}

/// SUBSCRIBERS VUs subscribe to `fanout/+/data` at QoS 2, PUBLISHERS VUs each publish EACH
/// messages at QoS 1 and EACH at QoS 2 (the QoS 2 ones awaited); two agents share the VUs. Every
/// subscriber gets every message, exactly: the deliveries counted in the filter's set equal what
/// mosquitto says it sent, the publishes what it says it received; every PUBACK and PUBCOMP is
/// counted and timed, and so is every delivery; the subscribers' keep-alive of 1 s runs through a run three times as long
/// with every PINGREQ answered.
#[test]
fn fan_out_counts_equal_the_brokers_own() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let url = broker.ws_url();
    let messages = PUBLISHERS * EACH * 2;
    let scenario = format!(
        "scenarios:
  - name: subscribers
    load: {{ vus: {SUBSCRIBERS}, iterations: 1 }}
    steps:
      - connect: {{ url: '{url}', protocol: mqtt, mqtt: {{ version: 5, client_id: 'sub-${{agent}}-${{vu}}', keep_alive: 1 }} }}
      - mqtt_subscribe: {{ filters: [ {{ filter: 'fanout/+/data', qos: 2 }} ] }}
      - repeat:
          count: {messages}
          steps:
            - receive: {{ name: delivery, timeout: 10s, match: {{ event: 'fanout/+/data' }} }}
      # The last QoS 2 delivery's PUBREL follows it: answered while thinking, not left unread
      # in flight at the close.
      - think: 500ms
      - mqtt_disconnect: {{}}
  - name: publishers
    load: {{ vus: {PUBLISHERS}, iterations: 1 }}
    steps:
      - think: 3s
      - connect: {{ url: '{url}', protocol: mqtt, mqtt: {{ version: 5, client_id: 'pub-${{agent}}-${{vu}}' }} }}
      - repeat:
          count: {EACH}
          steps:
            - mqtt_publish: {{ name: once_at_least, topic: 'fanout/${{vu}}/data', payload: 'q1 from ${{vu}}', qos: 1 }}
            - mqtt_publish: {{ name: once_exactly, topic: 'fanout/${{vu}}/data', payload: 'q2 from ${{vu}}', qos: 2, ack: {{ timeout: 5s }} }}
      - think: 1s
      - mqtt_disconnect: {{}}
"
    );
    let (summary, code) = run(&scenario);
    assert_eq!(code, 0, "{summary:#}");
    assert!(
        errors(&summary).as_object().is_none_or(|found| found.is_empty()),
        "{summary:#}"
    );
    let (broker_received, broker_sent) = broker_packets(&broker);
    assert_eq!(
        broker_received,
        counter(&summary, "messages_sent"),
        "packets mosquitto received"
    );
    assert_eq!(
        broker_sent,
        counter(&summary, "messages_received"),
        "packets mosquitto sent"
    );
    let delivered = SUBSCRIBERS * messages;
    assert_eq!(
        step_counter(&summary, "subscribers.topic:fanout/+/data", "events_received"),
        delivered
    );
    assert_eq!(
        step_counter(&summary, "subscribers.delivery", "messages_received"),
        delivered
    );
    assert_eq!(
        step_counter(&summary, "publishers.topic:fanout/+/data", "events_sent"),
        messages
    );
    // Every PUBACK (QoS 1) and PUBCOMP (QoS 2) counted and timed in the topic's set.
    assert_eq!(
        step_counter(&summary, "publishers.topic:fanout/+/data", "acks_received"),
        messages
    );
    assert_eq!(
        step_latency_count(&summary, "publishers.topic:fanout/+/data", "ack_latency"),
        messages
    );
    // Every delivery timed from its publisher's send stamp (a 5.0 user property), in the
    // topic's set and in the totals, merged over both agents; one machine, one clock: each
    // within the run.
    let timed = &metric_set(&summary, "subscribers.topic:fanout/+/data")["latency"]["delivery_latency"];
    assert_eq!(timed["count"].as_u64(), Some(delivered), "{summary:#}");
    assert_eq!(
        summary["totals"]["latency"]["delivery_latency"]["count"].as_u64(),
        Some(delivered)
    );
    let run_us = (summary["duration_seconds"].as_f64().unwrap() * 1e6) as u64;
    let (fastest, slowest) = (timed["min_us"].as_u64().unwrap(), timed["max_us"].as_u64().unwrap());
    assert!(
        fastest > 0 && slowest < run_us,
        "{fastest} µs to {slowest} µs in a run of {run_us} µs"
    );
    assert_eq!(
        step_latency_count(&summary, "publishers.topic:fanout/+/data", "delivery_latency"),
        0,
        "publishers subscribe to nothing"
    );
    // Subscribers at QoS 2 got half the messages at QoS 2: their sessions answered PUBREC and
    // PUBCOMP, the rest PUBACK; the publishers answered each PUBREC with PUBREL.
    assert_eq!(
        step_counter(&summary, "publishers.once_at_least", "messages_sent"),
        PUBLISHERS * EACH
    );
    assert_eq!(
        step_counter(&summary, "subscribers.mqtt_subscribe", "acks_received"),
        SUBSCRIBERS,
        "one SUBACK each"
    );
    let heartbeats = counter(&summary, "heartbeats_sent");
    assert!(
        heartbeats >= SUBSCRIBERS * 2,
        "four subscribers idle 3 s with a 1 s keep-alive: {heartbeats}"
    );
    assert_eq!(
        counter(&summary, "heartbeats_received"),
        heartbeats,
        "every PINGREQ answered"
    );
    assert_eq!(counter(&summary, "messages_unread"), 0, "{summary:#}");
}

/// mosquitto with a password file: VUs with a wrong password are refused in the CONNACK
/// (`connect_error`, both versions), the right one connects and publishes.
#[test]
fn a_refused_login_is_counted() {
    let Some(broker) = Mosquitto::start_with_login("fleet", "s3cret") else {
        return;
    };
    let url = broker.ws_url();
    let scenario = format!(
        "scenarios:
  - name: intruders
    load: {{ vus: 2, iterations: 1 }}
    steps:
      - connect: {{ url: '{url}', protocol: mqtt, mqtt: {{ username: fleet, password: wrong }} }}
  - name: intruders5
    load: {{ vus: 1, iterations: 1 }}
    steps:
      - connect: {{ url: '{url}', protocol: mqtt, mqtt: {{ version: 5, username: fleet, password: wrong }} }}
  - name: members
    load: {{ vus: 2, iterations: 1 }}
    steps:
      - connect: {{ url: '{url}', protocol: mqtt, mqtt: {{ username: fleet, password: s3cret }} }}
      - mqtt_publish: {{ topic: 'members/${{vu}}', payload: hi, qos: 1, ack: {{}} }}
      - mqtt_disconnect: {{}}
"
    );
    let (summary, code) = run(&scenario);
    assert_eq!(code, 0, "{summary:#}");
    assert_eq!(errors(&summary)["connect_error"].as_u64(), Some(3), "{summary:#}");
    assert_eq!(step_counter(&summary, "intruders.connect", "protocol_connects"), 0);
    assert_eq!(step_counter(&summary, "members.connect", "protocol_connects"), 2);
    assert_eq!(step_counter(&summary, "members.topic:members/+", "acks_received"), 2);
}
