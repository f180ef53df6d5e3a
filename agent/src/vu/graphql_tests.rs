//! GraphQL over WebSocket through the connection seam: the test plays the server on an
//! in-memory stream with the clock paused, and reads back exact counts and latencies: the
//! subprotocol offered, connection_init and its payload, subscribe → first result and query →
//! result timed per operation, results routed by operation name, `complete`, the client's pings
//! every `keep_alive` while the VU thinks, a missing pong dropped on time, and `errors` in a
//! result as `graphql_error`.

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

async fn next_text(socket: &mut ServerSocket) -> String {
    loop {
        match socket.next().await.expect("a message").expect("no error") {
            Message::Text(text) => return text.to_string(),
            Message::Binary(bytes) => return String::from_utf8_lossy(&bytes).into_owned(),
            _ => {}
        }
    }
}

/// Accepts the upgrade offering graphql-transport-ws alone, and acknowledges connection_init.
async fn acknowledged(target: &mut Target) -> ServerSocket {
    let mut socket = target
        .accept_with(|request, mut response| {
            let offered = request
                .headers()
                .get("sec-websocket-protocol")
                .map(|value| value.to_str().unwrap_or(""));
            assert_eq!(offered, Some("graphql-transport-ws"));
            assert_eq!(request.uri().path(), "/graphql");
            response.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::from_static("graphql-transport-ws"),
            );
            response
        })
        .await;
    assert_eq!(
        next_text(&mut socket).await,
        r#"{"type":"connection_init","payload":{"token":"t0"}}"#
    );
    send(&mut socket, r#"{"type":"connection_ack"}"#).await;
    socket
}

fn within(sample: u64, micros: u64) -> bool {
    sample >= micros && sample <= micros + micros / 100
}

#[tokio::test(start_paused = true)]
async fn operations_are_timed_and_the_client_pings_while_it_thinks() {
    let yaml = "load: { vus: 1, iterations: 1 }
steps:
  - connect: { url: 'ws://target.test/x', protocol: graphql, graphql: { path: /graphql, init_payload: { token: 't${vu}' }, keep_alive: 1s } }
  - graphql_subscribe: { name: ticks, query: 'subscription Count { count(to: 2) }' }
  - repeat:
      count: 2
      steps:
        - receive: { name: tick, timeout: 5s, match: { event: Count, json: /data/count, regex: '^[12]$' } }
  - graphql_query: { name: hello, query: 'query Hello { hello }', match: { json: /data/hello, equals: hi }, extract: { said: { json: /data/hello } } }
  - think: { name: idle, fixed: 3500ms }
  - graphql_complete: { subscription: ticks }
";
    let pings = std::cell::Cell::new(0u64);
    let pings = &pings;
    let metrics = play(yaml, |mut target| async move {
        let mut socket = acknowledged(&mut target).await;
        let subscribe = next_text(&mut socket).await;
        assert_eq!(
            subscribe,
            r#"{"type":"subscribe","id":"0","payload":{"query":"subscription Count { count(to: 2) }"}}"#
        );
        sleep(Duration::from_millis(40)).await;
        send(
            &mut socket,
            r#"{"type":"next","id":"0","payload":{"data":{"count":1}}}"#,
        )
        .await;
        send(
            &mut socket,
            r#"{"type":"next","id":"0","payload":{"data":{"count":2}}}"#,
        )
        .await;
        let query = next_text(&mut socket).await;
        assert!(query.starts_with(r#"{"type":"subscribe","id":"1","#), "{query}");
        sleep(Duration::from_millis(70)).await;
        send(
            &mut socket,
            r#"{"type":"next","id":"1","payload":{"data":{"hello":"hi"}}}"#,
        )
        .await;
        send(&mut socket, r#"{"type":"complete","id":"1"}"#).await;
        // The client's pings while the VU thinks, answered, until its `complete`.
        let started = Instant::now();
        loop {
            let text = next_text(&mut socket).await;
            if text == r#"{"type":"ping"}"# {
                pings.set(pings.get() + 1);
                send(&mut socket, r#"{"type":"pong"}"#).await;
                continue;
            }
            assert_eq!(text, r#"{"type":"complete","id":"0"}"#);
            break;
        }
        assert_eq!(started.elapsed(), Duration::from_millis(3500));
        drain(socket).await;
    })
    .await;
    let dump = metrics.dump();
    assert_eq!(metrics.step("operation:Count", "events_sent"), 1, "{dump}");
    assert_eq!(metrics.step("operation:Count", "events_received"), 2, "{dump}");
    assert_eq!(metrics.step("operation:Hello", "events_received"), 0, "{dump}");
    // Subscribe → first result (40 ms); query → result (70 ms).
    assert_eq!(metrics.step("operation:Count", "acks_received"), 1, "{dump}");
    let first = metrics.samples("operation:Count", "ack_latency");
    assert!(first.len() == 1 && within(first[0], 40_000), "{first:?}");
    let answered = metrics.samples("operation:Hello", "ack_latency");
    assert!(answered.len() == 1 && within(answered[0], 70_000), "{answered:?}");
    // The first result's message counts in the subscribe step; the second where it was taken.
    assert_eq!(metrics.step("ticks", "messages_received"), 1, "{dump}");
    assert_eq!(metrics.step("tick", "messages_received"), 1, "{dump}");
    // A ping a second after the last pong: three in 3.5 s, each answered and counted.
    assert_eq!(pings.get(), 3, "{dump}");
    assert_eq!(metrics.conn("heartbeats_sent"), 3, "{dump}");
    assert_eq!(metrics.conn("heartbeats_received"), 3, "{dump}");
    assert_eq!(metrics.step("graphql_complete", "messages_sent"), 1, "{dump}");
    assert_eq!(metrics.conn("iterations"), 1, "{dump}");
    assert_eq!(metrics.total("receive_timeouts"), 0, "{dump}");
}

#[tokio::test(start_paused = true)]
async fn a_missing_pong_is_silence_and_errors_in_a_result_are_graphql_errors() {
    let yaml = "load: { vus: 1, iterations: 2 }
steps:
  - connect: { url: 'ws://target.test/graphql', protocol: graphql, graphql: { init_payload: { token: 't${vu}' }, keep_alive: 1s } }
  - graphql_query: { name: ask, query: '{ boom }' }
  - receive: { name: wait, timeout: 10s }
on_error:
  - { kinds: [heartbeat_timeout, graphql_error], then: continue }
";
    let metrics = play(yaml, |mut target| async move {
        for _ in 0..2 {
            let mut socket = acknowledged(&mut target).await;
            let query = next_text(&mut socket).await;
            assert!(query.starts_with(r#"{"type":"subscribe","id":"0","#), "{query}");
            send(
                &mut socket,
                r#"{"type":"next","id":"0","payload":{"data":null,"errors":[{"message":"boom"}]}}"#,
            )
            .await;
            // The ping comes a second after the acknowledgement; no pong: dropped a second later.
            let started = Instant::now();
            assert_eq!(next_text(&mut socket).await, r#"{"type":"ping"}"#);
            drain(socket).await;
            assert_eq!(started.elapsed(), Duration::from_secs(2));
        }
    })
    .await;
    let dump = metrics.dump();
    assert_eq!(metrics.step("ask", "errors.graphql_error"), 2, "{dump}");
    assert_eq!(metrics.step("wait", "errors.heartbeat_timeout"), 2, "{dump}");
    assert_eq!(metrics.step("wait", "receive_timeouts"), 0, "{dump}");
}
