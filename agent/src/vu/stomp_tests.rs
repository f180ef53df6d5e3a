//! STOMP through the connection seam: the test plays the broker on an in-memory stream with the
//! clock paused, and reads back exact counts and latencies: frames that share a WebSocket message
//! and a frame that spans two, receipts timed per destination, the last message acknowledged,
//! heart-beats sent by the layer while the VU thinks, a silent server dropped at the instant its
//! heart-beats allow, and an ERROR frame as `stomp_error`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::{sleep, Instant};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use super::testing::{drain, Harness, Metrics, ServerSocket, Target};

async fn play<F: std::future::Future<Output = ()>>(yaml: &str, server: impl FnOnce(Target) -> F) -> Metrics {
    let (harness, target) = Harness::new(yaml);
    tokio::join!(harness.play(0), server(target));
    harness.metrics()
}

async fn send(socket: &mut ServerSocket, text: &str) {
    socket.send(Message::text(text)).await.expect("send");
}

/// The next data message, as text.
async fn next_text(socket: &mut ServerSocket) -> String {
    loop {
        match socket.next().await.expect("a message").expect("no error") {
            Message::Text(text) => return text.to_string(),
            Message::Binary(bytes) => return String::from_utf8_lossy(&bytes).into_owned(),
            _ => {}
        }
    }
}

/// Accepts the upgrade (checking the subprotocols offered) and answers CONNECT with
/// `heart_beat` (the server's `sx,sy`).
async fn connected(target: &mut Target, heart_beat: &str) -> ServerSocket {
    let mut socket = target
        .accept_with(|request, mut response| {
            let offered = request
                .headers()
                .get("sec-websocket-protocol")
                .map(|value| value.to_str().unwrap_or(""));
            assert_eq!(offered, Some("v12.stomp, v11.stomp"));
            response
                .headers_mut()
                .insert("sec-websocket-protocol", HeaderValue::from_static("v12.stomp"));
            response
        })
        .await;
    let connect = next_text(&mut socket).await;
    assert!(
        connect.starts_with("CONNECT\naccept-version:1.2,1.1\nhost:/\n"),
        "{connect:?}"
    );
    send(
        &mut socket,
        &format!("CONNECTED\nversion:1.2\nheart-beat:{heart_beat}\n\n\0"),
    )
    .await;
    socket
}

fn within(sample: u64, micros: u64) -> bool {
    sample >= micros && sample <= micros + micros / 100
}

#[tokio::test(start_paused = true)]
async fn frames_receipts_acks_and_heart_beats_through_one_session() {
    let yaml = "load: { vus: 1, iterations: 1 }
steps:
  - connect: { url: 'ws://target.test/ws', protocol: stomp, stomp: { login: u, passcode: p, heartbeat: { send: 1s, receive: 1s } } }
  - stomp_subscribe: { destination: /queue/a, ack: client, receipt: true }
  - receive: { name: first, timeout: 5s, match: { destination: /queue/a, equals: one } }
  - receive: { name: second, timeout: 5s, match: { headers: { n: '2' } } }
  - stomp_ack: { name: settle }
  - think: { name: idle, fixed: 3500ms }
  - stomp_send: { name: put, destination: /queue/a, text: hey, receipt: true }
  - stomp_disconnect: { name: bye }
";
    let (beats_sent, beats_read) = (std::cell::Cell::new(0u64), std::cell::Cell::new(0u64));
    let (beats_sent, beats_read) = (&beats_sent, &beats_read);
    let metrics = play(yaml, |mut target| async move {
        let mut socket = connected(&mut target, "1000,1000").await;
        let subscribe = next_text(&mut socket).await;
        assert!(
            subscribe.starts_with("SUBSCRIBE\ndestination:/queue/a\nid:sub-0\nack:client\nreceipt:r-0\n"),
            "{subscribe:?}"
        );
        sleep(Duration::from_millis(100)).await;
        // The receipt, one message and half of another share a WebSocket message (with
        // RabbitMQ's padding); the rest of the second comes in the next.
        let two = "MESSAGE\ndestination:/queue/a\nsubscription:sub-0\nmessage-id:m2\nack:a2\nn:2\n\ntwo\0\n";
        let (head, tail) = two.split_at(30);
        send(
            &mut socket,
            &format!(
                "RECEIPT\nreceipt-id:r-0\n\n\0\nMESSAGE\ndestination:/queue/a\nsubscription:sub-0\nmessage-id:m1\nack:a1\n\none\0\n{head}"
            ),
        )
        .await;
        send(&mut socket, tail).await;
        assert_eq!(next_text(&mut socket).await, "ACK\nid:a2\n\n\0");
        // Heart-beats both ways while the VU thinks, until its SEND.
        let mut ticker = tokio::time::interval(Duration::from_millis(900));
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    send(&mut socket, "\n").await;
                    beats_sent.set(beats_sent.get() + 1);
                }
                text = next_text(&mut socket) => {
                    if text == "\n" {
                        beats_read.set(beats_read.get() + 1);
                        continue;
                    }
                    assert!(text.starts_with("SEND\ndestination:/queue/a\nreceipt:r-1\ncontent-length:3\n\nhey\0"), "{text:?}");
                    break;
                }
            }
        }
        sleep(Duration::from_millis(50)).await;
        send(&mut socket, "RECEIPT\nreceipt-id:r-1\n\n\0").await;
        let disconnect = next_text(&mut socket).await;
        assert_eq!(disconnect, "DISCONNECT\nreceipt:r-2\n\n\0");
        send(&mut socket, "RECEIPT\nreceipt-id:r-2\n\n\0").await;
        drain(socket).await;
    })
    .await;
    let dump = metrics.dump();
    let set = "destination:/queue/a";
    assert_eq!(metrics.step(set, "events_received"), 2, "{dump}");
    assert_eq!(metrics.step(set, "payload_bytes_received"), 6, "{dump}");
    assert_eq!(metrics.step(set, "events_sent"), 1, "{dump}");
    assert_eq!(metrics.step(set, "payload_bytes_sent"), 3, "{dump}");
    // The SUBSCRIBE's and the SEND's receipts, timed from their frames' flush.
    assert_eq!(metrics.step(set, "acks_received"), 2, "{dump}");
    let mut latencies = metrics.samples(set, "ack_latency");
    latencies.sort_unstable();
    assert!(
        latencies.len() == 2 && within(latencies[0], 50_000) && within(latencies[1], 100_000),
        "{latencies:?}"
    );
    assert_eq!(metrics.step("bye", "acks_received"), 1, "{dump}");
    // The message with three items counts once, with its first item (the RECEIPT, in the step
    // that asked for it); the second event's message is the one that completed it.
    assert_eq!(metrics.step("stomp_subscribe", "messages_received"), 1, "{dump}");
    assert_eq!(metrics.step("first", "messages_received"), 0, "{dump}");
    assert_eq!(metrics.step("second", "messages_received"), 1, "{dump}");
    // Every heart-beat the layer sent reached the broker, and every one the broker sent counted.
    assert!(beats_read.get() >= 3, "{}", beats_read.get());
    assert_eq!(metrics.conn("heartbeats_sent"), beats_read.get(), "{dump}");
    assert_eq!(metrics.conn("heartbeats_received"), beats_sent.get(), "{dump}");
    assert_eq!(metrics.step("connect", "protocol_connects"), 1, "{dump}");
    assert_eq!(metrics.conn("iterations"), 1, "{dump}");
    assert_eq!(metrics.total("receive_timeouts"), 0, "{dump}");
}

#[tokio::test(start_paused = true)]
async fn a_silent_server_is_dropped_on_time_and_an_error_frame_is_a_stomp_error() {
    let yaml = "load: { vus: 1, iterations: 2 }
steps:
  - connect: { url: 'ws://target.test/ws', protocol: stomp, stomp: { heartbeat: { send: off, receive: 1s } } }
  - receive: { name: wait, timeout: 10s }
on_error:
  - { kinds: [heartbeat_timeout, stomp_error], then: end_iteration }
";
    let metrics = play(yaml, |mut target| async move {
        // The server promises a heart-beat a second, then says nothing: dropped two seconds on.
        let socket = connected(&mut target, "1000,0").await;
        let started = Instant::now();
        drain(socket).await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        let mut socket = connected(&mut target, "0,0").await;
        send(&mut socket, "ERROR\nmessage:boom\n\n\0").await;
        drain(socket).await;
    })
    .await;
    let dump = metrics.dump();
    assert_eq!(metrics.step("wait", "errors.heartbeat_timeout"), 1, "{dump}");
    assert_eq!(metrics.step("wait", "errors.stomp_error"), 1, "{dump}");
    assert_eq!(metrics.step("wait", "receive_timeouts"), 0, "{dump}");
    assert_eq!(metrics.conn("iterations_skipped"), 2, "{dump}");
}

/// Receipts a step does not wait for are measured when they come while the VU does something
/// else; one that never comes is `acks_missing` when the connection ends. A `close` says
/// DISCONNECT first.
#[tokio::test(start_paused = true)]
async fn receipts_not_waited_for_are_timed_later_or_counted_missing() {
    let yaml = "load: { vus: 1, iterations: 1 }
steps:
  - connect: { url: 'ws://target.test/ws', protocol: stomp, stomp: { heartbeat: off } }
  - stomp_send: { destination: /queue/a, text: x, receipt: { wait: false } }
  - stomp_send: { destination: /queue/a, text: y, receipt: { wait: false } }
  - think: 1s
  - close: {}
";
    let metrics = play(yaml, |mut target| async move {
        let mut socket = connected(&mut target, "0,0").await;
        assert!(next_text(&mut socket).await.contains("receipt:r-0"));
        assert!(next_text(&mut socket).await.contains("receipt:r-1"));
        sleep(Duration::from_millis(200)).await;
        send(&mut socket, "RECEIPT\nreceipt-id:r-1\n\n\0").await;
        assert_eq!(next_text(&mut socket).await, "DISCONNECT\n\n\0");
        drain(socket).await;
    })
    .await;
    let dump = metrics.dump();
    let set = "destination:/queue/a";
    assert_eq!(metrics.step(set, "events_sent"), 2, "{dump}");
    assert_eq!(metrics.step(set, "acks_received"), 1, "{dump}");
    let latencies = metrics.samples(set, "ack_latency");
    assert!(latencies.len() == 1 && within(latencies[0], 200_000), "{latencies:?}");
    assert_eq!(metrics.step(set, "acks_missing"), 1, "{dump}");
    assert_eq!(metrics.conn("iterations"), 1, "{dump}");
}

/// A templated destination renders per VU and its deliveries count in the set of the
/// subscription they came through (`subscription` header), whatever destination the MESSAGE
/// names; BEGIN, a SEND inside the open transaction and COMMIT carry its id, their RECEIPTs
/// timed in their own sets; a destination or transaction id that renders empty and an ABORT
/// with no open transaction fail their steps with `expectation`, sending nothing.
#[tokio::test(start_paused = true)]
async fn templated_destinations_count_per_subscription_and_transactions_carry_their_id() {
    let yaml = "load: { vus: 1, iterations: 1 }
variables: { nowhere: '' }
steps:
  - connect: { url: 'ws://target.test/ws', protocol: stomp, stomp: { heartbeat: off } }
  - stomp_subscribe: { destination: '/topic/room.${vu + 1}' }
  - stomp_subscribe: { destination: '/exchange/alerts/${vu}.*' }
  - receive: { name: mine, timeout: 5s, match: { destination: '/topic/room.${vu + 1}' } }
  - receive: { name: alert, timeout: 5s }
  - stomp_begin: { name: open, receipt: true }
  - stomp_send: { name: say, destination: '/topic/room.${vu + 1}', text: hi, transaction: true }
  - stomp_commit: { name: done, receipt: true }
  - stomp_send: { name: lost, destination: '${nowhere}', text: x }
  - stomp_begin: { name: blank, transaction: '${nowhere}' }
  - stomp_abort: { name: orphan }
  - stomp_send: { name: last, destination: /queue/end, text: bye }
on_error:
  - { kinds: [expectation], then: continue }
";
    let metrics = play(yaml, |mut target| async move {
        let mut socket = connected(&mut target, "0,0").await;
        assert_eq!(
            next_text(&mut socket).await,
            "SUBSCRIBE\ndestination:/topic/room.1\nid:sub-0\nack:auto\n\n\0"
        );
        assert_eq!(
            next_text(&mut socket).await,
            "SUBSCRIBE\ndestination:/exchange/alerts/0.*\nid:sub-1\nack:auto\n\n\0"
        );
        // A delivery through each subscription; the second names a destination no set's
        // pattern matches: its subscription alone places it.
        send(
            &mut socket,
            "MESSAGE\ndestination:/topic/room.1\nsubscription:sub-0\nmessage-id:m1\n\nhello\0",
        )
        .await;
        send(
            &mut socket,
            "MESSAGE\ndestination:/exchange/alerts/fire\nsubscription:sub-1\nmessage-id:m2\n\nfire\0",
        )
        .await;
        assert_eq!(
            next_text(&mut socket).await,
            "BEGIN\ntransaction:tx-0\nreceipt:r-0\n\n\0"
        );
        sleep(Duration::from_millis(30)).await;
        send(&mut socket, "RECEIPT\nreceipt-id:r-0\n\n\0").await;
        assert_eq!(
            next_text(&mut socket).await,
            "SEND\ndestination:/topic/room.1\ntransaction:tx-0\ncontent-length:2\n\nhi\0"
        );
        assert_eq!(
            next_text(&mut socket).await,
            "COMMIT\ntransaction:tx-0\nreceipt:r-1\n\n\0"
        );
        sleep(Duration::from_millis(40)).await;
        send(&mut socket, "RECEIPT\nreceipt-id:r-1\n\n\0").await;
        // Neither the empty destination's SEND, the empty BEGIN nor the orphan ABORT reached
        // the wire.
        assert_eq!(
            next_text(&mut socket).await,
            "SEND\ndestination:/queue/end\ncontent-length:3\n\nbye\0"
        );
        drain(socket).await;
    })
    .await;
    let dump = metrics.dump();
    let rooms = "destination:/topic/room.*";
    assert_eq!(metrics.step(rooms, "events_received"), 1, "{dump}");
    assert_eq!(metrics.step(rooms, "payload_bytes_received"), 5, "{dump}");
    assert_eq!(metrics.step(rooms, "events_sent"), 1, "{dump}");
    let alerts = "destination:/exchange/alerts/*.*";
    assert_eq!(metrics.step(alerts, "events_received"), 1, "{dump}");
    assert_eq!(metrics.step("destination:*", "events_received"), 0, "{dump}");
    assert_eq!(metrics.step("mine", "messages_received"), 1, "{dump}");
    assert_eq!(metrics.step("alert", "messages_received"), 1, "{dump}");
    assert_eq!(metrics.step("open", "acks_received"), 1, "{dump}");
    assert_eq!(metrics.step("done", "acks_received"), 1, "{dump}");
    let begin = metrics.samples("open", "ack_latency");
    assert!(begin.len() == 1 && within(begin[0], 30_000), "{begin:?}");
    let commit = metrics.samples("done", "ack_latency");
    assert!(commit.len() == 1 && within(commit[0], 40_000), "{commit:?}");
    assert_eq!(metrics.step("lost", "errors.expectation"), 1, "{dump}");
    assert_eq!(metrics.step("blank", "errors.expectation"), 1, "{dump}");
    assert_eq!(metrics.step("orphan", "errors.expectation"), 1, "{dump}");
    assert_eq!(metrics.step("destination:/queue/end", "events_sent"), 1, "{dump}");
    assert_eq!(metrics.step("destination:*", "events_sent"), 0, "{dump}");
}
