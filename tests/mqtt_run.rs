//! MQTT over WebSocket through the real binary (`wsfleet run` with two local agents) against
//! mosquitto (`common/brokers.rs`): a fan-out whose delivery counts equal the broker's own
//! `$SYS` statistics, every PUBACK and PUBCOMP measured, every delivery timed from its send
//! stamp, QoS 2 both ways, keep-alive over a run longer than it, and a refused login counted;
//! 3.1.1 deliveries timed by a payload stamp that is gone before the scenario reads them, and
//! deliveries without a stamp counted as untimed, their packets as the scenario wrote them.

#![allow(clippy::unwrap_used)]

mod common;
// Not in `common`: it links the agent crate into every test that uses `common`.
#[path = "common/mqtt.rs"]
mod mqtt;

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::brokers::Mosquitto;
use common::*;
use futures_util::StreamExt;
use mqtt::Client;
use serde_json::Value;
use wsfleet_agent::protocol::mqtt::{Publish, QoS, Received, Version};

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

/// The run passed with no error, every receive matched (a timeout is no error: it fails the
/// iteration) and every check held.
fn assert_every_step_held(summary: &Value, code: i32) {
    assert_eq!(code, 0, "{summary:#}");
    assert!(
        errors(summary).as_object().is_none_or(|found| found.is_empty()),
        "{summary:#}"
    );
    assert_eq!(counter(summary, "receive_timeouts"), 0, "{summary:#}");
    assert_eq!(counter(summary, "iterations_failed"), 0, "{summary:#}");
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
    assert_eq!(counter(&summary, "deliveries_untimed"), 0, "{summary:#}");
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

/// A client of the test's own that subscribes to `filter` before the run and keeps the first
/// `count` deliveries as they came over the wire (payload and properties untouched), within a
/// minute; the receiver says when its SUBACK came.
fn watch(
    url: String,
    version: Version,
    client_id: &'static str,
    filter: &'static str,
    count: usize,
) -> (mpsc::Receiver<()>, JoinHandle<Vec<Publish>>) {
    let (subscribed, ready) = mpsc::channel();
    let watcher = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let mut client = Client::connected(&url, version, client_id).await;
            client.subscribe(&[(filter, QoS::AtLeastOnce)]).await;
            subscribed.send(()).unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut deliveries = Vec::new();
            while deliveries.len() < count {
                while let Some(received) = client.session.next_received() {
                    if let Received::Message(delivery) = received {
                        deliveries.push(delivery);
                    }
                }
                if deliveries.len() >= count {
                    break;
                }
                let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline.into(), client.socket.next()).await else {
                    break;
                };
                client.session.feed(&message).expect("well-formed packets");
                client.send_replies().await;
            }
            deliveries
        })
    });
    (ready, watcher)
}

/// Waits for a watcher's SUBACK.
fn subscribed(ready: &mpsc::Receiver<()>) {
    ready
        .recv_timeout(Duration::from_secs(15))
        .expect("the watcher subscribed");
}

fn unix_micros() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    since.as_micros() as i64
}

/// MQTT 3.1.1 publishers with `delivery_stamp: payload`, on two agents: every delivery to
/// subscribers of either version (whose own option is the default) is timed from the stamp,
/// none untimed; each subscriber's match, extraction and check see the payload as published,
/// and `payload_bytes_received` counts it without the stamp; on the wire (a client of the
/// test's own) each payload is the 33-byte stamp, with a send instant within the run, then
/// the scenario's payload.
#[test]
fn payload_stamps_time_3_1_1_deliveries_and_come_off_before_matching() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let url = broker.ws_url();
    const PUBLISHERS: u64 = 2;
    const EACH: u64 = 5;
    const PAYLOAD: &str = r#"{"reading": 7}"#;
    let messages = PUBLISHERS * EACH;
    let (ready, watcher) = watch(
        url.clone(),
        Version::V311,
        "watcher",
        "stamped/+/data",
        messages as usize,
    );
    subscribed(&ready);
    let started = unix_micros();
    let subscriber = |name: &str, version: &str| {
        format!(
            "  - name: {name}
    load: {{ vus: 2, iterations: 1 }}
    steps:
      - connect: {{ url: '{url}', protocol: mqtt, mqtt: {{ version: {version}, client_id: '{name}-${{agent}}-${{vu}}' }} }}
      - mqtt_subscribe: {{ filters: ['stamped/+/data'], qos: 1 }}
      - repeat:
          count: {messages}
          steps:
            - receive:
                name: delivery
                timeout: 10s
                match: {{ event: 'stamped/+/data', json: /reading, equals: '7' }}
                extract: {{ whole: {{ body: true }} }}
            - check: {{ name: as_published, value: '${{whole}}', equals: '{PAYLOAD}' }}
      - think: 300ms
      - mqtt_disconnect: {{}}
"
        )
    };
    let scenario = format!(
        "scenarios:
{}{}  - name: publishers
    load: {{ vus: {PUBLISHERS}, iterations: 1 }}
    steps:
      - think: 2s
      - connect: {{ url: '{url}', protocol: mqtt, mqtt: {{ client_id: 'pub-${{agent}}-${{vu}}', delivery_stamp: payload }} }}
      - repeat:
          count: {EACH}
          steps:
            - mqtt_publish: {{ topic: 'stamped/${{vu}}/data', payload: '{PAYLOAD}', qos: 1, ack: {{}} }}
      - mqtt_disconnect: {{}}
",
        subscriber("old", "3.1.1"),
        subscriber("new", "5"),
    );
    let (summary, code) = run(&scenario);
    let ended = unix_micros();
    assert_every_step_held(&summary, code);
    assert_eq!(counter(&summary, "iterations"), 2 + 2 + PUBLISHERS, "{summary:#}");
    for part in ["old", "new"] {
        let set = format!("{part}.topic:stamped/+/data");
        let delivered = 2 * messages;
        assert_eq!(
            step_counter(&summary, &format!("{part}.delivery"), "messages_received"),
            delivered,
            "{summary:#}"
        );
        assert_eq!(
            step_counter(&summary, &set, "events_received"),
            delivered,
            "{summary:#}"
        );
        assert_eq!(
            step_latency_count(&summary, &set, "delivery_latency"),
            delivered,
            "{summary:#}"
        );
        assert_eq!(step_counter(&summary, &set, "deliveries_untimed"), 0, "{summary:#}");
        assert_eq!(
            step_counter(&summary, &set, "payload_bytes_received"),
            delivered * PAYLOAD.len() as u64,
            "the payloads without their stamps"
        );
    }
    assert_eq!(counter(&summary, "deliveries_untimed"), 0);
    assert_eq!(
        summary["totals"]["latency"]["delivery_latency"]["count"].as_u64(),
        Some(4 * messages)
    );
    let deliveries = watcher.join().expect("the watcher");
    assert_eq!(deliveries.len() as u64, messages);
    for delivery in deliveries {
        let payload = &delivery.payload[..];
        assert_eq!(payload.len(), 33 + PAYLOAD.len(), "{payload:?}");
        assert_eq!(&payload[..13], b"wsfleet-sent:");
        assert_eq!(payload[32], b';');
        assert_eq!(&payload[33..], PAYLOAD.as_bytes());
        let sent: i64 = std::str::from_utf8(&payload[13..32]).unwrap().parse().unwrap();
        assert!((started..=ended).contains(&sent), "{sent} not in {started}..={ended}");
    }
}

/// Without a stamp (3.1.1's default; 5.0 with `delivery_stamp: off`) publishes go as the
/// scenario wrote them, payload and properties (clients of the test's own see exactly that),
/// and their deliveries are counted as untimed: `delivery_latency.count + deliveries_untimed`
/// equals the deliveries in each topic's set.
#[test]
fn unstamped_deliveries_are_counted_untimed() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let url = broker.ws_url();
    const EACH: u64 = 5;
    const SUBSCRIBERS: u64 = 2;
    let (ready3, watcher3) = watch(url.clone(), Version::V311, "watcher-3", "plain3/+", EACH as usize);
    let (ready5, watcher5) = watch(url.clone(), Version::V5, "watcher-5", "plain5/+", EACH as usize);
    subscribed(&ready3);
    subscribed(&ready5);
    let scenario = format!(
        "scenarios:
  - name: subscribers
    load: {{ vus: {SUBSCRIBERS}, iterations: 1 }}
    steps:
      - connect: {{ url: '{url}', protocol: mqtt, mqtt: {{ version: 5, client_id: 'sub-${{agent}}-${{vu}}' }} }}
      - mqtt_subscribe: {{ filters: ['plain3/+', 'plain5/+'], qos: 1 }}
      - repeat:
          count: {}
          steps:
            - receive: {{ name: delivery, timeout: 10s }}
      - think: 300ms
      - mqtt_disconnect: {{}}
  - name: old
    load: {{ vus: 1, iterations: 1 }}
    steps:
      - think: 2s
      - connect: {{ url: '{url}', protocol: mqtt, mqtt: {{ client_id: 'old-${{agent}}-${{vu}}' }} }}
      - repeat:
          count: {EACH}
          steps:
            - mqtt_publish: {{ topic: 'plain3/${{vu}}', payload: 'reading', qos: 1, ack: {{}} }}
      - mqtt_disconnect: {{}}
  - name: new
    load: {{ vus: 1, iterations: 1 }}
    steps:
      - think: 2s
      - connect: {{ url: '{url}', protocol: mqtt, mqtt: {{ version: 5, client_id: 'new-${{agent}}-${{vu}}', delivery_stamp: 'off' }} }}
      - repeat:
          count: {EACH}
          steps:
            - mqtt_publish: {{ topic: 'plain5/${{vu}}', payload: 'reading', qos: 1, ack: {{}}, properties: {{ user_properties: {{ unit: celsius }} }} }}
      - mqtt_disconnect: {{}}
",
        2 * EACH
    );
    let (summary, code) = run(&scenario);
    assert_every_step_held(&summary, code);
    for set in ["subscribers.topic:plain3/+", "subscribers.topic:plain5/+"] {
        let delivered = SUBSCRIBERS * EACH;
        assert_eq!(step_counter(&summary, set, "events_received"), delivered, "{summary:#}");
        assert_eq!(
            step_counter(&summary, set, "deliveries_untimed"),
            delivered,
            "{summary:#}"
        );
        assert_eq!(step_latency_count(&summary, set, "delivery_latency"), 0, "{summary:#}");
        assert_eq!(
            step_counter(&summary, set, "payload_bytes_received"),
            delivered * "reading".len() as u64
        );
    }
    assert_eq!(counter(&summary, "deliveries_untimed"), 2 * SUBSCRIBERS * EACH);
    let old = watcher3.join().expect("the 3.1.1 watcher");
    let new = watcher5.join().expect("the 5.0 watcher");
    assert_eq!((old.len() as u64, new.len() as u64), (EACH, EACH));
    for delivery in old.iter().chain(&new) {
        assert_eq!(&delivery.payload[..], b"reading");
    }
    for delivery in &new {
        assert_eq!(
            delivery.properties.user_properties,
            [("unit".to_owned(), "celsius".to_owned())],
            "no `wsfleet-sent` property"
        );
    }
}
