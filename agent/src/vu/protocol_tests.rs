//! The protocol layer through the connection seam: the test plays a Socket.IO server on an
//! in-memory stream with the clock paused, and reads back exact counts: the handshake, the
//! heartbeat answered by the layer and never seen by a receive, emits with and without
//! acknowledgements, events matched by name and arguments, binary attachments both ways,
//! refusals, timeouts and malformed packets as error kinds.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::sleep;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use super::testing::{drain, Harness, Metrics, ServerSocket, Target};

const OPEN: &str = r#"0{"sid":"e1","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;

async fn play<F: std::future::Future<Output = ()>>(yaml: &str, server: impl FnOnce(Target) -> F) -> Metrics {
    let (harness, target) = Harness::new(yaml);
    tokio::join!(harness.play(0), server(target));
    harness.metrics()
}

async fn send(socket: &mut ServerSocket, text: &str) {
    socket.send(Message::text(text)).await.expect("send");
}

/// The next data message, as text (binary as lossy text).
async fn next_text(socket: &mut ServerSocket) -> String {
    loop {
        match socket.next().await.expect("a message").expect("no error") {
            Message::Text(text) => return text.to_string(),
            Message::Binary(bytes) => return String::from_utf8_lossy(&bytes).into_owned(),
            _ => {}
        }
    }
}

/// Accepts a connection and plays the server's side of the handshake for `namespaces`, checking
/// the request's path and query.
async fn handshake(target: &mut Target, namespaces: &[&str]) -> ServerSocket {
    let mut socket = target
        .accept_with(|request, response| {
            assert_eq!(request.uri().path(), "/socket.io/");
            assert_eq!(request.uri().query(), Some("EIO=4&transport=websocket&room=r+1"));
            response
        })
        .await;
    send(&mut socket, OPEN).await;
    for namespace in namespaces {
        let connect = next_text(&mut socket).await;
        if *namespace == "/" {
            assert_eq!(connect, "40");
            send(&mut socket, r#"40{"sid":"s1"}"#).await;
        } else {
            assert!(connect.starts_with(&format!("40{namespace},")), "{connect}");
            send(&mut socket, &format!(r#"40{namespace},{{"sid":"s2"}}"#)).await;
        }
    }
    socket
}

const CONNECT: &str =
    "  - connect: { url: 'ws://target.test', protocol: socketio, socketio: { query: { room: 'r 1' } } }\n";

#[tokio::test(start_paused = true)]
async fn heartbeats_are_answered_and_events_and_acks_are_counted_per_name() {
    let yaml = format!(
        "load: {{ vus: 1, iterations: 1 }}
steps:
{CONNECT}  - emit: {{ name: ask, event: echo, args: [{{ n: '${{vu}}' }}, 2], ack: {{ timeout: 1s, match: {{ json: /0/n, equals: '0' }}, extract: {{ got: {{ json: /1 }} }} }} }}
  - receive: {{ name: news, match: {{ event: news, json: /0/n, equals: '${{got}}' }}, timeout: 1s }}
  - emit: {{ name: tell, event: note, args: [hello] }}
  - think: 100ms
  - close: {{}}
"
    );
    let metrics = play(&yaml, |mut target| async move {
        let mut socket = handshake(&mut target, &["/"]).await;
        // A heartbeat: answered by the layer (once the emit is out), not taken by a step.
        send(&mut socket, "2").await;
        assert_eq!(next_text(&mut socket).await, r#"420["echo",{"n":"0"},2]"#);
        assert_eq!(next_text(&mut socket).await, "3");
        sleep(Duration::from_millis(30)).await;
        // An event the receive does not want (another name), then the acknowledgement.
        send(&mut socket, r#"42["other",{"n":2}]"#).await;
        send(&mut socket, r#"430[{"n":"0"},2]"#).await;
        send(&mut socket, r#"42["news",{"n":2}]"#).await;
        assert_eq!(next_text(&mut socket).await, r#"42["note","hello"]"#);
        send(&mut socket, "2").await;
        assert_eq!(next_text(&mut socket).await, "3");
        assert_eq!(next_text(&mut socket).await, "41");
        drain(socket).await;
    })
    .await;
    let dump = metrics.dump();
    assert_eq!(metrics.conn("iterations"), 1, "{dump}");
    assert_eq!(metrics.step("connect", "protocol_connects"), 1, "{dump}");
    assert_eq!(metrics.conn("heartbeats_received"), 2, "{dump}");
    assert_eq!(metrics.conn("heartbeats_sent"), 2, "{dump}");
    assert_eq!(metrics.step("event:echo", "events_sent"), 1, "{dump}");
    assert_eq!(metrics.step("event:echo", "acks_received"), 1, "{dump}");
    assert_eq!(metrics.step("event:note", "events_sent"), 1, "{dump}");
    assert_eq!(metrics.step("event:news", "events_received"), 1, "{dump}");
    assert_eq!(metrics.step("event:*", "events_received"), 1, "{dump}");
    let acks = metrics.samples("event:echo", "ack_latency");
    assert_eq!(acks.len(), 1);
    assert!(acks[0].abs_diff(30_000) <= 1_100, "{acks:?}");
    // The event the receive took is counted in its set; the other one stayed unread.
    assert_eq!(metrics.step("news", "messages_received"), 1, "{dump}");
    assert_eq!(metrics.conn("messages_unread"), 1, "{dump}");
    // The acknowledgement's message counts in the emit's set.
    assert_eq!(metrics.step("ask", "messages_received"), 1, "{dump}");
    // The open packet, the connect answer and the two heartbeats, in the connection set.
    assert_eq!(metrics.conn("messages_received"), 5, "{dump}");
    // The connect, two pongs; the emits in their steps; the disconnect in the close step.
    assert_eq!(metrics.step("connect", "messages_sent"), 1, "{dump}");
    assert_eq!(metrics.conn("messages_sent"), 2, "{dump}");
    assert_eq!(metrics.step("ask", "messages_sent"), 1, "{dump}");
    assert_eq!(metrics.step("close", "messages_sent"), 1, "{dump}");
}

#[tokio::test(start_paused = true)]
async fn binary_attachments_go_out_and_come_back_with_their_event() {
    let yaml = format!(
        "load: {{ vus: 1, iterations: 1 }}
steps:
{CONNECT}  - emit: {{ name: up, event: file, args: [{{ name: a, data: {{ $binary: '\\x01\\x02\\x03' }} }}] }}
  - receive: {{ name: down, match: {{ event: file, json: /0/name, equals: b }}, timeout: 1s }}
"
    );
    let metrics = play(&yaml, |mut target| async move {
        let mut socket = handshake(&mut target, &["/"]).await;
        assert_eq!(
            next_text(&mut socket).await,
            // Object keys in JSON's order-free form, sorted.
            r#"451-["file",{"data":{"_placeholder":true,"num":0},"name":"a"}]"#
        );
        match socket.next().await {
            Some(Ok(Message::Binary(bytes))) => assert_eq!(&bytes[..], b"\x01\x02\x03"),
            other => panic!("no attachment: {other:?}"),
        }
        send(
            &mut socket,
            r#"452-["file",{"name":"b","data":[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]}]"#,
        )
        .await;
        socket
            .send(Message::Binary(Bytes::from_static(b"\x09")))
            .await
            .expect("send");
        socket
            .send(Message::Binary(Bytes::from_static(b"\x08\x07")))
            .await
            .expect("send");
        drain(socket).await;
    })
    .await;
    let dump = metrics.dump();
    assert_eq!(metrics.conn("iterations"), 1, "{dump}");
    assert_eq!(metrics.step("up", "messages_sent"), 2, "{dump}");
    assert_eq!(metrics.step("up", "binary_messages_sent"), 1, "{dump}");
    assert_eq!(metrics.step("event:file", "events_sent"), 1, "{dump}");
    assert_eq!(metrics.step("event:file", "events_received"), 1, "{dump}");
    // The packet and its two attachments, in the receive that took the event.
    assert_eq!(metrics.step("down", "messages_received"), 3, "{dump}");
    assert_eq!(metrics.step("down", "binary_messages_received"), 2, "{dump}");
}

#[tokio::test(start_paused = true)]
async fn a_refused_namespace_is_a_connect_error_that_on_error_rules_match() {
    let yaml = "load: { vus: 1, iterations: 2 }
steps:
  - connect: { url: 'ws://target.test', protocol: socketio, socketio: { namespaces: [ { name: /admin, auth: { token: '${vu}' } } ] } }
  - emit: { event: never, namespace: /admin }
on_error:
  - { kinds: [connect_error], then: end_iteration }
";
    let metrics = play(yaml, |mut target| async move {
        for _ in 0..2 {
            let mut socket = target.accept().await;
            send(&mut socket, OPEN).await;
            assert_eq!(next_text(&mut socket).await, r#"40/admin,{"token":"0"}"#);
            send(&mut socket, r#"44/admin,{"message":"Not authorized"}"#).await;
            // Nothing else: the VU gives up on the connection.
            assert_eq!(drain(socket).await, 0);
        }
    })
    .await;
    let dump = metrics.dump();
    assert_eq!(metrics.step("connect", "errors.connect_error"), 2, "{dump}");
    assert_eq!(metrics.conn("iterations_skipped"), 2, "{dump}");
    assert_eq!(metrics.total("events_sent"), 0, "{dump}");
}

#[tokio::test(start_paused = true)]
async fn a_missing_ack_times_out_and_malformed_packets_are_protocol_errors() {
    let yaml = format!(
        "load: {{ vus: 1, iterations: 1 }}
steps:
{CONNECT}  - emit: {{ name: ask, event: echo, ack: {{ timeout: 500ms }} }}
  - receive: {{ name: any, timeout: 1s }}
on_error:
  - {{ kinds: [ack_timeout, protocol], then: continue }}
"
    );
    let metrics = play(&yaml, |mut target| async move {
        let mut socket = handshake(&mut target, &["/"]).await;
        assert_eq!(next_text(&mut socket).await, r#"420["echo"]"#);
        sleep(Duration::from_millis(600)).await;
        // The late acknowledgement is counted, untimed; then a broken packet; then an event.
        send(&mut socket, r#"430["late"]"#).await;
        send(&mut socket, r#"42{"not":"an array"}"#).await;
        send(&mut socket, r#"42["fine"]"#).await;
        drain(socket).await;
    })
    .await;
    let dump = metrics.dump();
    assert_eq!(metrics.step("ask", "errors.ack_timeout"), 1, "{dump}");
    assert_eq!(metrics.step("event:echo", "acks_received"), 1, "{dump}");
    assert!(metrics.samples("event:echo", "ack_latency").is_empty(), "{dump}");
    assert_eq!(metrics.step("any", "errors.protocol"), 1, "{dump}");
    assert_eq!(metrics.conn("iterations"), 1, "{dump}");
}

#[tokio::test(start_paused = true)]
async fn a_server_disconnect_of_the_last_namespace_ends_the_connection_through_on_close() {
    for (rules, skipped, closed) in [("on_close:\n  - { then: end_iteration }\n", 1, 0), ("", 0, 1)] {
        let yaml = format!(
            "load: {{ vus: 1, iterations: 1 }}
steps:
{CONNECT}  - receive: {{ name: wait, timeout: 5s }}
{rules}"
        );
        let metrics = play(&yaml, |mut target| async move {
            let mut socket = handshake(&mut target, &["/"]).await;
            send(&mut socket, "41").await;
            // The client closes the connection itself, as socket.io-client does.
            assert_eq!(drain(socket).await, 0);
        })
        .await;
        let dump = metrics.dump();
        assert_eq!(metrics.conn("protocol_disconnects"), 1, "{dump}");
        assert_eq!(metrics.conn("iterations_skipped"), skipped, "{dump}");
        assert_eq!(metrics.step("wait", "errors.closed"), closed, "{dump}");
        assert_eq!(metrics.step("wait", "receive_timeouts"), 0, "{dump}");
        assert_eq!(metrics.conn("connections_closed"), 1, "{dump}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_rule_acknowledges_the_events_that_ask_for_it() {
    let yaml = format!(
        "load: {{ vus: 1, iterations: 1 }}
steps:
{CONNECT}  - think: 1s
on_message:
  - {{ name: answer, when: {{ event: question }}, ack: [ {{ from: '${{vu}}' }}, 42 ] }}
"
    );
    let metrics = play(&yaml, |mut target| async move {
        let mut socket = handshake(&mut target, &["/"]).await;
        send(&mut socket, r#"42["question",{"q":1}]"#).await;
        send(&mut socket, r#"427["question",{"q":2}]"#).await;
        assert_eq!(next_text(&mut socket).await, r#"437[{"from":"0"},42]"#);
        drain(socket).await;
    })
    .await;
    let dump = metrics.dump();
    assert_eq!(metrics.step("event:question", "events_received"), 2, "{dump}");
    assert_eq!(metrics.step("event:question", "acks_sent"), 1, "{dump}");
    assert_eq!(metrics.step("answer", "messages_received"), 2, "{dump}");
    assert_eq!(metrics.step("answer", "messages_sent"), 1, "{dump}");
}

/// The layer's timer wakes a VU in whatever it waits in: a server that stops pinging for its
/// ping interval plus timeout is dropped as socket.io-client drops it, the waiting step failing
/// with `heartbeat_timeout` at that instant, not at the end of its own wait.
#[tokio::test(start_paused = true)]
async fn a_server_silent_past_its_ping_timeout_fails_the_waiting_step_at_that_instant() {
    const SHORT: &str = r#"0{"sid":"e1","upgrades":[],"pingInterval":1000,"pingTimeout":500,"maxPayload":1000000}"#;
    for wait in [
        "think: { name: wait, fixed: 10s }",
        "receive: { name: wait, timeout: 10s }",
    ] {
        let yaml = format!(
            "load: {{ vus: 1, iterations: 1 }}
steps:
  - connect: {{ url: 'ws://target.test', protocol: socketio }}
  - {wait}
on_error:
  - {{ kinds: [heartbeat_timeout], then: end_iteration }}
"
        );
        let metrics = play(&yaml, |mut target| async move {
            let mut socket = target.accept().await;
            send(&mut socket, SHORT).await;
            assert_eq!(next_text(&mut socket).await, "40");
            send(&mut socket, r#"40{"sid":"s1"}"#).await;
            let started = tokio::time::Instant::now();
            // Two pings a second apart, each answered, then silence.
            for _ in 0..2 {
                sleep(Duration::from_secs(1)).await;
                send(&mut socket, "2").await;
                assert_eq!(next_text(&mut socket).await, "3");
            }
            drain(socket).await;
            // Dropped 1.5 s after the last ping, long before the step's own 10 s.
            assert_eq!(started.elapsed(), Duration::from_millis(3500));
        })
        .await;
        let dump = metrics.dump();
        assert_eq!(metrics.step("wait", "errors.heartbeat_timeout"), 1, "{wait}: {dump}");
        assert_eq!(metrics.conn("heartbeats_received"), 2, "{wait}: {dump}");
        assert_eq!(metrics.conn("iterations_skipped"), 1, "{wait}: {dump}");
        assert_eq!(metrics.step("wait", "receive_timeouts"), 0, "{wait}: {dump}");
    }
}
