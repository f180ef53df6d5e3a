//! The VU's step semantics through the connection seam: each step kind, each handler outcome,
//! each `on_error` / `on_close` outcome and pacing lateness, with the test as the server on
//! in-memory streams and the clock paused. Counts are read from the recorder, exactly.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::{sleep, Instant};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::testing::{drain, Harness, Metrics, ServerSocket, Target};

/// A histogram value within hdr's precision (3 significant digits) of `micros`, give or take
/// the timer wheel's millisecond.
fn near(value: u64, micros: u64) -> bool {
    value.abs_diff(micros) <= micros / 500 + 1_000
}

/// Plays VU 0 against `server`, then returns what it recorded.
async fn play<F: std::future::Future<Output = ()>>(yaml: &str, server: impl FnOnce(Target) -> F) -> Metrics {
    let (harness, target) = Harness::new(yaml);
    tokio::join!(harness.play(0), server(target));
    harness.metrics()
}

/// Accepts one connection and answers every data message with itself after `delay`.
async fn echo(target: &mut Target, delay: Duration) -> usize {
    let mut socket = target.accept().await;
    let mut echoed = 0;
    while let Some(Ok(message)) = socket.next().await {
        if message.is_text() || message.is_binary() {
            sleep(delay).await;
            socket.send(message).await.expect("echo");
            echoed += 1;
        }
    }
    echoed
}

async fn text(socket: &mut ServerSocket, body: &str) {
    socket.send(Message::text(body)).await.expect("send");
}

const ONE: &str = "load: { vus: 1, iterations: 1 }\n";

#[tokio::test(start_paused = true)]
async fn send_and_receive_count_each_message_and_time_the_answer() {
    let yaml = "load: { vus: 1, iterations: 2 }
steps:
  - connect: { url: 'ws://target.test/' }
  - send: { name: hello, text: 'hi ${vu}' }
  - receive: { name: answer, timeout: 1s }
";
    let metrics = play(yaml, |mut target| async move {
        for _ in 0..2 {
            assert_eq!(echo(&mut target, Duration::from_millis(20)).await, 1);
        }
    })
    .await;
    assert_eq!(metrics.step("connect", "connections_opened"), 2, "{}", metrics.dump());
    assert_eq!(metrics.step("hello", "messages_sent"), 2);
    assert_eq!(metrics.step("hello", "text_messages_sent"), 2);
    assert_eq!(metrics.step("hello", "payload_bytes_sent"), 8);
    assert_eq!(metrics.step("answer", "messages_received"), 2);
    assert_eq!(metrics.step("answer", "text_messages_received"), 2);
    assert_eq!(metrics.step("answer", "payload_bytes_received"), 8);
    let latencies = metrics.samples("answer", "message_latency");
    assert_eq!(latencies.len(), 2);
    assert!(latencies.iter().all(|&micros| near(micros, 20_000)), "{latencies:?}");
    assert_eq!(metrics.conn("iterations"), 2);
    assert_eq!(metrics.conn("connections_closed"), 2);
    assert_eq!(metrics.conn("messages_unread"), 0);
    // The server's answers to the VU's closes, counted in the connection set.
    assert_eq!(metrics.conn("close_codes.1000"), 2);
}

#[tokio::test(start_paused = true)]
async fn sends_go_as_binary_as_text_and_as_binary_frames() {
    let yaml = format!(
        "{ONE}steps:
  - connect: {{ url: 'ws://target.test/' }}
  - send: {{ name: bin, binary: '\\x01\\x02' }}
  - send: {{ name: bin_as_text, binary: 'ab', as_text: true }}
  - send: {{ name: text_as_bin, text: 'xy', as_binary: true }}
"
    );
    let metrics = play(&yaml, |mut target| async move {
        let mut socket = target.accept().await;
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(socket.next().await.expect("message").expect("frame"));
        }
        assert_eq!(
            got,
            [
                Message::binary(vec![1u8, 2]),
                Message::text("ab"),
                Message::binary(b"xy".to_vec())
            ]
        );
        drain(socket).await;
    })
    .await;
    assert_eq!(metrics.step("bin", "binary_messages_sent"), 1);
    assert_eq!(metrics.step("bin_as_text", "text_messages_sent"), 1);
    assert_eq!(metrics.step("text_as_bin", "binary_messages_sent"), 1);
    assert_eq!(metrics.total("messages_sent"), 3);
    assert_eq!(metrics.total("payload_bytes_sent"), 6);
}

/// Three fragments are three masked frames on the wire (2 + 4 header bytes each, then the
/// 8-byte close frame) and one message at the server.
#[tokio::test(start_paused = true)]
async fn a_fragmented_send_is_one_message_in_several_frames() {
    let yaml = format!(
        "{ONE}steps:
  - connect: {{ url: 'ws://target.test/' }}
  - send: {{ name: parts, text: abcdefghijkl, fragments: 3 }}
"
    );
    let metrics = play(&yaml, |mut target| async move {
        let mut socket = target.accept().await;
        let message = socket.next().await.expect("message").expect("frames");
        assert_eq!(message, Message::text("abcdefghijkl"));
        drain(socket).await;
    })
    .await;
    assert_eq!(metrics.step("parts", "messages_sent"), 1);
    assert_eq!(metrics.step("parts", "payload_bytes_sent"), 12);
    let frames = metrics.conn("bytes_sent") - metrics.conn("handshake_bytes_sent");
    assert_eq!(frames, 3 * (2 + 4 + 4) + 8);
}

/// A receive with a match takes the first message that matches; the others wait in the queue
/// for later receives, and their latency runs to when they arrived, not to when they were taken.
#[tokio::test(start_paused = true)]
async fn messages_that_arrive_while_waiting_for_another_are_queued_with_their_arrival() {
    let yaml = format!(
        "{ONE}steps:
  - connect: {{ url: 'ws://target.test/' }}
  - send: {{ name: ask, text: go }}
  - receive: {{ name: wanted, timeout: 1s, match: {{ equals: wanted }} }}
  - receive: {{ name: queued, timeout: 1s, latency_of: ask }}
"
    );
    let metrics = play(&yaml, |mut target| async move {
        let mut socket = target.accept().await;
        socket.next().await.expect("ask").expect("frame");
        text(&mut socket, "noise").await;
        sleep(Duration::from_millis(30)).await;
        text(&mut socket, "wanted").await;
        drain(socket).await;
    })
    .await;
    assert_eq!(metrics.step("wanted", "messages_received"), 1);
    assert_eq!(metrics.step("queued", "messages_received"), 1);
    assert!(near(metrics.samples("wanted", "message_latency")[0], 30_000));
    // `noise` arrived at once: 0 µs, recorded as the histogram's lowest value.
    assert_eq!(metrics.samples("queued", "message_latency"), [1]);
    assert_eq!(metrics.conn("iterations"), 1);
}

/// Messages no step took are received and unread when their connection ends.
#[tokio::test(start_paused = true)]
async fn messages_never_taken_count_as_unread() {
    let yaml = format!(
        "{ONE}steps:
  - connect: {{ url: 'ws://target.test/' }}
  - receive: {{ name: one, timeout: 1s }}
"
    );
    let metrics = play(&yaml, |mut target| async move {
        let mut socket = target.accept().await;
        for body in ["a", "b", "c"] {
            text(&mut socket, body).await;
        }
        drain(socket).await;
    })
    .await;
    assert_eq!(metrics.step("one", "messages_received"), 1);
    assert_eq!(metrics.conn("messages_received"), 2);
    assert_eq!(metrics.conn("messages_unread"), 2);
    assert_eq!(metrics.conn("iterations"), 1);
}

/// A receive that does not wait takes what is there and says so in its state.
#[tokio::test(start_paused = true)]
async fn a_receive_that_does_not_wait_sets_its_state() {
    let yaml = format!(
        "{ONE}steps:
  - connect: {{ url: 'ws://target.test/' }}
  - receive: {{ name: peek, wait: false, state: got }}
  - check: {{ name: none_yet, value: '${{got}}', equals: none }}
  - send: {{ name: ask, text: go }}
  - think: 10ms
  - receive: {{ name: peek_again, wait: false, state: got }}
  - check: {{ name: received, value: '${{got}}', equals: received }}
"
    );
    let metrics = play(&yaml, |mut target| async move {
        assert_eq!(echo(&mut target, Duration::ZERO).await, 1);
    })
    .await;
    assert_eq!(metrics.step("peek_again", "messages_received"), 1);
    assert_eq!(metrics.total("errors.check"), 0, "{}", metrics.dump());
    assert_eq!(metrics.conn("iterations"), 1);
}

async fn silent_receive(options: &str, rules: &str) -> Metrics {
    let yaml = format!(
        "load: {{ vus: 1, iterations: 1 }}
steps:
  - connect: {{ url: 'ws://target.test/' }}
  - receive: {{ name: wait, timeout: 500ms{options} }}
  - think: {{ name: after, fixed: 1s }}
{rules}"
    );
    play(&yaml, |mut target| async move {
        let socket = target.accept().await;
        drain(socket).await;
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn a_receive_timeout_follows_on_timeout_and_on_error() {
    let failed = silent_receive("", "").await;
    assert_eq!(failed.step("wait", "receive_timeouts"), 1);
    assert_eq!(failed.total("errors.receive_timeout"), 0, "counted as a timeout only");
    assert_eq!(failed.conn("iterations_failed"), 1);

    let skipped = silent_receive(", on_timeout: skip", "").await;
    assert_eq!(skipped.step("wait", "receive_timeouts"), 1);
    assert_eq!(skipped.conn("iterations_skipped"), 1);

    let continued = silent_receive(", on_timeout: continue", "").await;
    assert_eq!(continued.step("wait", "receive_timeouts"), 1);
    assert_eq!(continued.conn("iterations"), 1);

    let rule = "on_error: [{ kinds: [receive_timeout], then: continue }]\n";
    let by_rule = silent_receive("", rule).await;
    assert_eq!(by_rule.step("wait", "receive_timeouts"), 1);
    assert_eq!(by_rule.conn("iterations"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_ping_is_timed_to_its_pong_or_times_out() {
    let yaml = format!(
        "{ONE}steps:
  - connect: {{ url: 'ws://target.test/' }}
  - ping: {{ name: p, body: hello, timeout: 1s }}
"
    );
    let answered = play(&yaml, |mut target| async move {
        drain(target.accept().await).await;
    })
    .await;
    assert_eq!(answered.step("p", "pings_sent"), 1);
    assert_eq!(answered.step("p", "pongs_received"), 1);
    assert_eq!(answered.samples("p", "ping_latency").len(), 1);
    assert_eq!(answered.conn("iterations"), 1);

    // A server that never reads never answers.
    let unanswered = play(&yaml, |mut target| async move {
        let socket = target.accept().await;
        sleep(Duration::from_secs(10)).await;
        drop(socket);
    })
    .await;
    assert_eq!(unanswered.step("p", "pings_sent"), 1);
    assert_eq!(unanswered.step("p", "pongs_received"), 0);
    assert_eq!(unanswered.step("p", "errors.timeout"), 1);
    assert_eq!(unanswered.conn("iterations_failed"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_close_checks_the_answer_and_extracts_from_it() {
    let close = |expect: &str| {
        format!(
            "{ONE}steps:
  - connect: {{ url: 'ws://target.test/' }}
  - close: {{ name: bye, code: 4000, reason: done, expect_codes: [{expect}], extract: {{ why: {{ close: reason }} }} }}
  - check: {{ name: reason, value: '${{why}}', equals: done }}
"
        )
    };
    // tungstenite answers a close with the same code and reason.
    let accepted = play(&close("4000"), |mut target| async move {
        drain(target.accept().await).await;
    })
    .await;
    assert_eq!(accepted.step("bye", "close_codes.4000"), 1);
    assert_eq!(accepted.samples("bye", "close_latency").len(), 1);
    assert_eq!(accepted.total("errors.check"), 0);
    assert_eq!(accepted.conn("iterations"), 1);
    assert_eq!(accepted.conn("connections_closed"), 1);

    let unexpected = play(&close("1000"), |mut target| async move {
        drain(target.accept().await).await;
    })
    .await;
    assert_eq!(unexpected.step("bye", "errors.expectation"), 1);
    assert_eq!(unexpected.conn("iterations_failed"), 1);
}

/// The server closes while a receive waits: `on_close` decides.
async fn server_closes(rules: &str) -> Metrics {
    let yaml = format!(
        "load: {{ vus: 1, iterations: 1 }}
steps:
  - connect: {{ url: 'ws://target.test/' }}
  - receive: {{ name: wait, timeout: 5s }}
  - think: {{ name: after, fixed: 10ms }}
{rules}"
    );
    play(&yaml, |mut target| async move {
        let mut socket = target.accept().await;
        let frame = CloseFrame {
            code: CloseCode::Away,
            reason: "".into(),
        };
        socket.close(Some(frame)).await.expect("close");
        drain(socket).await;
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn a_close_from_the_server_follows_on_close() {
    let unhandled = server_closes("").await;
    assert_eq!(unhandled.step("wait", "close_codes.1001"), 1);
    assert_eq!(unhandled.step("wait", "errors.closed"), 1);
    assert_eq!(unhandled.conn("iterations_failed"), 1);

    let continued = server_closes("on_close: [{ name: gone, codes: [1001], then: continue }]\n").await;
    assert_eq!(continued.step("gone", "close_codes.1001"), 1);
    assert_eq!(continued.step("wait", "close_codes.1001"), 0);
    assert_eq!(continued.total("errors.closed"), 0);
    assert_eq!(continued.conn("iterations"), 1);

    let ended = server_closes("on_close: [{ name: gone, then: end_iteration }]\n").await;
    assert_eq!(ended.step("gone", "close_codes.1001"), 1);
    assert_eq!(ended.conn("iterations_skipped"), 1);

    let failed = server_closes("on_close: [{ name: gone, then: fail }]\n").await;
    assert_eq!(failed.step("gone", "close_codes.1001"), 1);
    assert_eq!(failed.step("wait", "errors.closed"), 1);
    assert_eq!(failed.conn("iterations_failed"), 1);

    // A rule for other codes leaves the close to the default.
    let other = server_closes("on_close: [{ name: gone, codes: [4000], then: continue }]\n").await;
    assert_eq!(other.step("wait", "errors.closed"), 1);
    assert_eq!(other.conn("iterations_failed"), 1);
}

#[tokio::test(start_paused = true)]
async fn think_waits_its_time_between_steps() {
    let yaml = format!(
        "{ONE}steps:
  - connect: {{ url: 'ws://target.test/' }}
  - send: {{ name: first, text: one }}
  - think: 2s
  - send: {{ name: second, text: two }}
"
    );
    play(&yaml, |mut target| async move {
        let mut socket = target.accept().await;
        socket.next().await.expect("first").expect("frame");
        let first = Instant::now();
        socket.next().await.expect("second").expect("frame");
        let waited = first.elapsed();
        assert!(
            waited >= Duration::from_secs(2) && waited <= Duration::from_millis(2_001),
            "{waited:?}"
        );
        drain(socket).await;
    })
    .await;
}

/// Values come from the handshake's headers and from messages, and go into later sends.
#[tokio::test(start_paused = true)]
async fn extracted_values_feed_later_steps() {
    let yaml = format!(
        "{ONE}steps:
  - connect: {{ url: 'ws://target.test/', extract: {{ sid: {{ header: x-session }} }} }}
  - receive: {{ name: hello, timeout: 1s }}
  - extract: {{ name: pick, values: {{ n: {{ json: /n }} }} }}
  - extract: {{ name: again, from: handshake, values: {{ sid2: {{ header: x-session }} }} }}
  - send: {{ name: use, text: '${{sid}} ${{sid2}} ${{n}}' }}
"
    );
    let metrics = play(&yaml, |mut target| async move {
        let mut socket = target
            .accept_with(|_: &Request, mut response: Response| {
                response
                    .headers_mut()
                    .insert("x-session", HeaderValue::from_static("abc"));
                response
            })
            .await;
        text(&mut socket, r#"{"n": 7}"#).await;
        let used = socket.next().await.expect("use").expect("frame");
        assert_eq!(used, Message::text("abc abc 7"));
        drain(socket).await;
    })
    .await;
    assert_eq!(metrics.conn("iterations"), 1, "{}", metrics.dump());

    // Nothing to extract fails the step.
    let missing = format!(
        "{ONE}steps:
  - connect: {{ url: 'ws://target.test/' }}
  - receive: {{ name: hello, timeout: 1s, extract: {{ n: {{ json: /missing }} }} }}
"
    );
    let metrics = play(&missing, |mut target| async move {
        let mut socket = target.accept().await;
        text(&mut socket, r#"{"n": 7}"#).await;
        drain(socket).await;
    })
    .await;
    assert_eq!(metrics.step("hello", "errors.extract"), 1);
    assert_eq!(metrics.conn("iterations_failed"), 1);
}

async fn failing_check(on_fail: &str) -> Metrics {
    let yaml = format!(
        "{ONE}steps:
  - check: {{ name: test, value: 'a', equals: b, on_fail: {on_fail} }}
  - connect: {{ name: later, url: 'ws://target.test/' }}
"
    );
    play(&yaml, |mut target| async move {
        if on_fail == "continue" {
            drain(target.accept().await).await;
        }
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn a_check_fails_skips_or_continues() {
    let failed = failing_check("fail").await;
    assert_eq!(failed.step("test", "errors.check"), 1);
    assert_eq!(failed.conn("iterations_failed"), 1);
    assert_eq!(failed.step("later", "connections_opened"), 0);

    let skipped = failing_check("skip").await;
    assert_eq!(skipped.step("test", "errors.check"), 1);
    assert_eq!(skipped.conn("iterations_skipped"), 1);
    assert_eq!(skipped.step("later", "connections_opened"), 0);

    let continued = failing_check("continue").await;
    assert_eq!(continued.step("test", "errors.check"), 1);
    assert_eq!(continued.conn("iterations"), 1);
    assert_eq!(continued.step("later", "connections_opened"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_repeat_plays_its_rounds() {
    let yaml = format!(
        "{ONE}steps:
  - connect: {{ url: 'ws://target.test/' }}
  - repeat:
      count: 3
      steps:
        - send: {{ name: ask, text: 'round ${{iteration}}' }}
        - receive: {{ name: answer, timeout: 1s, match: {{ equals: 'round ${{iteration}}' }} }}
"
    );
    let metrics = play(&yaml, |mut target| async move {
        assert_eq!(echo(&mut target, Duration::from_millis(5)).await, 3);
    })
    .await;
    assert_eq!(metrics.step("ask", "messages_sent"), 3);
    assert_eq!(metrics.step("answer", "messages_received"), 3);
    assert_eq!(metrics.samples("answer", "message_latency").len(), 3);
    assert_eq!(metrics.conn("iterations"), 1);
}

/// Iteration N is due N periods after the first; one that starts late times its sends from
/// when it was due, so the target's answer carries the lateness.
#[tokio::test(start_paused = true)]
async fn a_late_paced_iteration_times_its_sends_from_when_they_were_due() {
    let yaml = "load: { vus: 1, iterations: 2, pacing: 100ms }
steps:
  - connect: { name: open, url: 'ws://target.test/', keep_open: true }
  - send: { name: ask, text: go }
  - receive: { name: answer, timeout: 1s }
  - think: 250ms
";
    let metrics = play(yaml, |mut target| async move {
        assert_eq!(echo(&mut target, Duration::ZERO).await, 2);
    })
    .await;
    let mut latencies = metrics.samples("answer", "message_latency");
    latencies.sort_unstable();
    // The first iteration is on time (0 µs, recorded as 1); the second was due at 100 ms and
    // started at 250 ms.
    assert_eq!(latencies.len(), 2);
    assert_eq!(latencies[0], 1);
    assert!(near(latencies[1], 150_000), "{latencies:?}");
    assert_eq!(metrics.step("open", "connections_opened"), 1);
    assert_eq!(metrics.conn("iterations"), 2);
}

/// A repeat's rounds are paced the same way, from when the repeat was due.
#[tokio::test(start_paused = true)]
async fn a_late_paced_round_carries_its_lateness() {
    let yaml = format!(
        "{ONE}steps:
  - connect: {{ url: 'ws://target.test/' }}
  - repeat:
      count: 2
      pacing: 100ms
      steps:
        - send: {{ name: ask, text: go }}
        - receive: {{ name: answer, timeout: 1s }}
        - think: 130ms
"
    );
    let metrics = play(&yaml, |mut target| async move {
        assert_eq!(echo(&mut target, Duration::ZERO).await, 2);
    })
    .await;
    let mut latencies = metrics.samples("answer", "message_latency");
    latencies.sort_unstable();
    assert_eq!(latencies.len(), 2);
    assert_eq!(latencies[0], 1);
    assert!(near(latencies[1], 30_000), "{latencies:?}");
}

async fn with_handler(
    rule: &str,
    server: impl FnOnce(ServerSocket) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
) -> Metrics {
    let yaml = format!(
        "{ONE}steps:
  - connect: {{ url: 'ws://target.test/' }}
  - receive: {{ name: data, timeout: 1s }}
on_message: [{rule}]
"
    );
    play(&yaml, |mut target| async move {
        let socket = target.accept().await;
        server(socket).await;
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn a_handler_replies_and_keeps_what_it_matched() {
    let metrics = with_handler(
        "{ name: answer_ping, when: { equals: ping }, send: { text: pong } }",
        |mut socket| {
            Box::pin(async move {
                text(&mut socket, "ping").await;
                let reply = socket.next().await.expect("reply").expect("frame");
                assert_eq!(reply, Message::text("pong"));
                text(&mut socket, "data").await;
                drain(socket).await;
            })
        },
    )
    .await;
    assert_eq!(metrics.step("answer_ping", "messages_received"), 1);
    assert_eq!(metrics.step("answer_ping", "messages_sent"), 1);
    assert_eq!(metrics.step("data", "messages_received"), 1);
    assert_eq!(metrics.conn("iterations"), 1);
}

/// A rule that passes counts nothing itself: the message goes on to the steps; what it
/// extracted is there for later steps.
#[tokio::test(start_paused = true)]
async fn a_handler_that_passes_leaves_the_message_to_the_steps() {
    let yaml = format!(
        "{ONE}steps:
  - connect: {{ url: 'ws://target.test/' }}
  - receive: {{ name: data, timeout: 1s }}
  - send: {{ name: tell, text: 'saw ${{seen}}' }}
on_message: [{{ name: look, when: {{ contains: x }}, pass: true, extract: {{ seen: {{ body: true }} }}, send: {{ text: ack }} }}]
"
    );
    let metrics = play(&yaml, |mut target| async move {
        let mut socket = target.accept().await;
        text(&mut socket, "xyz").await;
        let mut got = Vec::new();
        for _ in 0..2 {
            got.push(socket.next().await.expect("reply").expect("frame"));
        }
        assert_eq!(got, [Message::text("ack"), Message::text("saw xyz")]);
        drain(socket).await;
    })
    .await;
    assert_eq!(metrics.step("look", "messages_received"), 0);
    assert_eq!(metrics.step("look", "messages_sent"), 1);
    assert_eq!(metrics.step("data", "messages_received"), 1);
    assert_eq!(metrics.step("tell", "messages_sent"), 1);
    assert_eq!(metrics.conn("iterations"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_handler_that_fails_fails_the_iteration() {
    let metrics = with_handler("{ name: bad, when: { equals: bad }, fail: true }", |mut socket| {
        Box::pin(async move {
            text(&mut socket, "bad").await;
            drain(socket).await;
        })
    })
    .await;
    assert_eq!(metrics.step("bad", "messages_received"), 1);
    assert_eq!(metrics.step("bad", "errors.handler"), 1);
    assert_eq!(metrics.step("data", "messages_received"), 0);
    assert_eq!(metrics.conn("iterations_failed"), 1);
}

/// While a VU thinks, handlers keep reading: what they do not take waits for a receive.
#[tokio::test(start_paused = true)]
async fn handlers_read_while_the_vu_thinks() {
    let yaml = format!(
        "{ONE}steps:
  - connect: {{ url: 'ws://target.test/' }}
  - think: 1s
  - receive: {{ name: later, timeout: 1ms }}
on_message: [{{ name: tick, when: {{ equals: tick }} }}]
"
    );
    let metrics = play(&yaml, |mut target| async move {
        let mut socket = target.accept().await;
        text(&mut socket, "tick").await;
        text(&mut socket, "kept").await;
        drain(socket).await;
    })
    .await;
    assert_eq!(metrics.step("tick", "messages_received"), 1);
    assert_eq!(metrics.step("later", "messages_received"), 1);
    assert_eq!(metrics.step("later", "receive_timeouts"), 0);
    assert_eq!(metrics.conn("iterations"), 1);
}

/// An upgrade refused with HTTP 503, under an `on_error` rule (or none).
async fn refused(rules: &str, iterations: u64) -> Metrics {
    let yaml = format!(
        "load: {{ vus: 1, iterations: {iterations} }}
steps:
  - connect: {{ name: open, url: 'ws://target.test/' }}
  - think: {{ name: after, fixed: 1s }}
{rules}"
    );
    play(&yaml, |mut target| async move {
        for _ in 0..iterations {
            target.refuse("503 Service Unavailable").await;
        }
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn on_error_rules_decide_what_a_failure_does() {
    let failed = refused("", 1).await;
    assert_eq!(failed.step("open", "errors.http_503"), 1);
    assert_eq!(failed.step("open", "connections_failed"), 1);
    assert_eq!(failed.conn("iterations_failed"), 1);

    let continued = refused("on_error: [{ kinds: [http_503], then: continue }]\n", 1).await;
    assert_eq!(continued.step("open", "errors.http_503"), 1);
    assert_eq!(continued.conn("iterations"), 1);

    let ended = refused("on_error: [{ kinds: [http_503], then: end_iteration }]\n", 1).await;
    assert_eq!(ended.conn("iterations_skipped"), 1);

    let explicit = refused("on_error: [{ kinds: [http_503], then: fail }]\n", 1).await;
    assert_eq!(explicit.conn("iterations_failed"), 1);

    // Stopping the VU ends it after the first of three iterations.
    let (harness, mut target) = Harness::new(
        "load: { vus: 1, iterations: 3 }
steps:
  - connect: { name: open, url: 'ws://target.test/' }
on_error: [{ steps: [open], then: stop_vu }]
",
    );
    tokio::join!(harness.play(0), target.refuse("503 Service Unavailable"));
    let stopped = harness.metrics();
    assert_eq!(stopped.step("open", "errors.http_503"), 1);
    assert_eq!(stopped.conn("iterations_failed"), 1);
    assert_eq!(stopped.total("iterations"), 0);

    // A rule for another kind, or for other steps, leaves the failure alone.
    let other_kind = refused("on_error: [{ kinds: [http_404, reset], then: continue }]\n", 1).await;
    assert_eq!(other_kind.conn("iterations_failed"), 1);
    let other_step = refused("on_error: [{ steps: [after], then: continue }]\n", 1).await;
    assert_eq!(other_step.conn("iterations_failed"), 1);
}

/// A connect checks the status, subprotocol and headers the step expects.
#[tokio::test(start_paused = true)]
async fn connect_expectations() {
    // A refusal the step expects is a success, with no connection opened.
    let expected_refusal = format!(
        "{ONE}steps:
  - connect: {{ name: open, url: 'ws://target.test/', expect: {{ status: 401 }} }}
"
    );
    let metrics = play(&expected_refusal, |mut target| async move {
        target.refuse("401 Unauthorized").await;
    })
    .await;
    assert_eq!(metrics.step("open", "connections_opened"), 0);
    assert_eq!(metrics.step("open", "connections_failed"), 0);
    assert_eq!(metrics.conn("iterations"), 1, "{}", metrics.dump());

    let pick = |picked: &'static str| {
        move |_: &Request, mut response: Response| {
            response
                .headers_mut()
                .insert("sec-websocket-protocol", HeaderValue::from_static(picked));
            response
                .headers_mut()
                .insert("x-version", HeaderValue::from_static("2"));
            response
        }
    };
    let subprotocol = |wanted: &str, version: &str| {
        format!(
            "{ONE}steps:
  - connect: {{ name: open, url: 'ws://target.test/', subprotocols: [chat, superchat],
               expect: {{ subprotocol: {wanted}, headers: {{ x-version: '{version}' }} }} }}
"
        )
    };
    let right = play(&subprotocol("chat", "2"), |mut target| async move {
        drain(target.accept_with(pick("chat")).await).await;
    })
    .await;
    assert_eq!(right.step("open", "connections_opened"), 1);
    assert_eq!(right.conn("iterations"), 1);

    let wrong_protocol = play(&subprotocol("chat", "2"), |mut target| async move {
        drain(target.accept_with(pick("superchat")).await).await;
    })
    .await;
    assert_eq!(wrong_protocol.step("open", "errors.expectation"), 1);
    assert_eq!(wrong_protocol.conn("iterations_failed"), 1);

    let wrong_header = play(&subprotocol("chat", "3"), |mut target| async move {
        drain(target.accept_with(pick("chat")).await).await;
    })
    .await;
    assert_eq!(wrong_header.step("open", "errors.expectation"), 1);
    assert_eq!(wrong_header.conn("iterations_failed"), 1);

    // Accepted when the step expected a refusal.
    let accepted = play(&expected_refusal, |mut target| async move {
        drain(target.accept().await).await;
    })
    .await;
    assert_eq!(accepted.step("open", "errors.expectation"), 1);
    assert_eq!(accepted.step("open", "connections_failed"), 1);
}

/// A connect that does not finish in time fails with `timeout`.
#[tokio::test(start_paused = true)]
async fn a_handshake_that_never_answers_times_out() {
    let yaml = format!(
        "{ONE}steps:
  - connect: {{ name: open, url: 'ws://target.test/', timeout: 2s }}
"
    );
    let metrics = play(&yaml, |mut target| async move {
        let stream = target.raw().await;
        sleep(Duration::from_secs(5)).await;
        drop(stream);
    })
    .await;
    assert_eq!(metrics.step("open", "errors.timeout"), 1);
    assert_eq!(metrics.step("open", "connections_failed"), 1);
    assert_eq!(metrics.conn("iterations_failed"), 1);
}

/// VUs wait at a rendezvous until the point is released; the wait is recorded.
#[tokio::test(start_paused = true)]
async fn a_rendezvous_waits_for_its_release() {
    let (harness, mut target) = Harness::new(&format!(
        "{ONE}steps:
  - rendezvous: {{ name: meet, count: 1 }}
"
    ));
    let hub = harness.env.rendezvous.clone();
    let release = async move {
        let (point, generation) = target.arrivals.recv().await.expect("arrival");
        sleep(Duration::from_millis(300)).await;
        hub.release(point, generation);
    };
    tokio::join!(harness.play(0), release);
    let metrics = harness.metrics();
    let waits = metrics.samples("meet", "rendezvous_wait");
    assert_eq!(waits.len(), 1);
    assert!(near(waits[0], 300_000), "{waits:?}");
    assert_eq!(metrics.conn("iterations"), 1);
}

/// A graceful stop lets the iteration finish; the VU plays no more.
#[tokio::test(start_paused = true)]
async fn a_graceful_stop_finishes_the_iteration() {
    let (harness, mut target) = Harness::new(
        "load: { vus: 1, iterations: 5 }
steps:
  - connect: { url: 'ws://target.test/' }
  - think: 1s
",
    );
    let control = super::testing::control();
    let graceful = control.graceful.clone();
    let server = async move {
        let socket = target.accept().await;
        sleep(Duration::from_millis(500)).await;
        graceful.cancel();
        drain(socket).await;
    };
    tokio::join!(harness.play_with(0, control), server);
    let metrics = harness.metrics();
    assert_eq!(metrics.conn("iterations"), 1);
    assert_eq!(metrics.step("connect", "connections_opened"), 1);
}

/// A hard stop ends the VU at once: the iteration is not counted and its connection closes
/// with 1001 (going away).
#[tokio::test(start_paused = true)]
async fn a_hard_stop_closes_at_once() {
    let (harness, mut target) = Harness::new(
        "load: { vus: 1, iterations: 5 }
steps:
  - connect: { url: 'ws://target.test/' }
  - think: 10s
",
    );
    let control = super::testing::control();
    let hard = control.hard.clone();
    let server = async move {
        let mut socket = target.accept().await;
        sleep(Duration::from_millis(500)).await;
        hard.fire();
        let close = socket.next().await.expect("close").expect("frame");
        assert!(
            matches!(&close, Message::Close(Some(frame)) if frame.code == CloseCode::Away),
            "{close:?}"
        );
        drain(socket).await;
    };
    let started = Instant::now();
    tokio::join!(harness.play_with(0, control), server);
    assert!(started.elapsed() < Duration::from_secs(1));
    let metrics = harness.metrics();
    assert_eq!(metrics.conn("iterations") + metrics.conn("iterations_failed"), 0);
    assert_eq!(metrics.conn("connections_closed"), 1);
}

/// A VU past the last row of a `unique` feed stops, unless an `on_error` rule for
/// `data_exhausted` says otherwise.
#[tokio::test(start_paused = true)]
async fn a_vu_past_the_last_unique_row_follows_on_error() {
    let exhausted = |rules: &str| {
        let yaml = format!(
            "load: {{ vus: 1, iterations: 2 }}
data: {{ users: {{ csv: users.csv, order: unique }} }}
steps:
  - think: 10ms
{rules}"
        );
        let files = std::collections::BTreeMap::from([("users.csv".to_owned(), b"name\nann\n".to_vec())]);
        let (harness, _target) = Harness::with_files(&yaml, files);
        async move {
            // VU 1 (as numbered when the fleet grows past the plan's start): the feed has one
            // row, VU 0's.
            harness.play(1).await;
            harness.metrics()
        }
    };
    let stopped = exhausted("").await;
    assert_eq!(stopped.conn("errors.data_exhausted"), 1, "{}", stopped.dump());
    assert_eq!(stopped.conn("iterations_failed"), 1);
    assert_eq!(stopped.conn("iterations"), 0);

    // A `unique` row is the VU's for all its iterations: only the first looks for one.
    let continued = exhausted("on_error: [{ kinds: [data_exhausted], then: continue }]\n").await;
    assert_eq!(continued.conn("errors.data_exhausted"), 1);
    assert_eq!(continued.conn("iterations"), 2);

    let skipped = exhausted("on_error: [{ kinds: [data_exhausted], then: end_iteration }]\n").await;
    assert_eq!(skipped.conn("errors.data_exhausted"), 1);
    assert_eq!(skipped.conn("iterations_skipped"), 1);
    assert_eq!(skipped.conn("iterations"), 1);
}

/// A burst of sends, then a receive: with `flush` as given (the scenario's default otherwise).
fn burst(flush: &str) -> String {
    format!(
        "{ONE}{flush}steps:
  - connect: {{ url: 'ws://target.test/' }}
  - repeat: {{ count: 16, steps: [ {{ send: {{ name: burst, text: 'm${{iteration}}' }} }} ] }}
  - receive: {{ name: answer, timeout: 1s }}
"
    )
}

/// Reads `count` messages (in order), answers the last one, then drains until the close.
async fn take_burst(mut target: Target, count: usize) {
    let mut socket = target.accept().await;
    let mut got = Vec::new();
    for _ in 0..count {
        match socket.next().await.expect("message").expect("frame") {
            Message::Text(text) => got.push(text.to_string()),
            other => panic!("{other:?}"),
        }
    }
    let expected: Vec<String> = (0..count).map(|index| format!("m{index}")).collect();
    assert_eq!(got, expected);
    text(&mut socket, "done").await;
    drain(socket).await;
}

/// Sixteen sends without a wait between them leave in one write, before the receive waits;
/// with `flush: each` each is its own write. The upgrade request is one write and the close
/// frame another, either way.
#[tokio::test(start_paused = true)]
async fn sends_without_a_wait_between_them_leave_in_one_write() {
    for (flush, writes) in [("", 3), ("flush: batch\n", 3), ("flush: each\n", 18)] {
        let metrics = play(&burst(flush), |target| take_burst(target, 16)).await;
        assert_eq!(metrics.step("burst", "messages_sent"), 16, "{flush}{}", metrics.dump());
        assert_eq!(metrics.step("burst", "payload_bytes_sent"), 10 * 2 + 6 * 3);
        assert_eq!(metrics.step("answer", "messages_received"), 1);
        assert_eq!(metrics.conn("socket_writes"), writes, "{flush}{}", metrics.dump());
        // 16 frames of 2 + 4 header bytes and their payloads, the close frame (2 + 4 + 2).
        let frames = 16 * 6 + 10 * 2 + 6 * 3 + 8;
        assert_eq!(
            metrics.conn("bytes_sent") - metrics.conn("handshake_bytes_sent"),
            frames,
            "{flush}"
        );
    }
}

/// A send's own `flush: each` writes it and everything held before it.
#[tokio::test(start_paused = true)]
async fn a_send_that_flushes_takes_what_waits_before_it() {
    let yaml = format!(
        "{ONE}steps:
  - connect: {{ url: 'ws://target.test/' }}
  - send: {{ name: one, text: 'm0' }}
  - send: {{ name: two, text: 'm1' }}
  - send: {{ name: three, text: 'm2', flush: each }}
  - send: {{ name: four, text: 'm3', flush: each }}
  - send: {{ name: five, text: 'm4' }}
  - receive: {{ name: answer, timeout: 1s }}
"
    );
    let metrics = play(&yaml, |target| take_burst(target, 5)).await;
    assert_eq!(metrics.total("messages_sent"), 5, "{}", metrics.dump());
    // The upgrade; one, two and three; four; five before the receive; the close.
    assert_eq!(metrics.conn("socket_writes"), 5, "{}", metrics.dump());
}

/// Handler replies to messages read together leave together, before the VU waits again, and
/// are counted then; with `flush: each` each reply is its own write.
#[tokio::test(start_paused = true)]
async fn handler_replies_leave_together_before_the_vu_waits() {
    for (flush, writes) in [("", 3), ("flush: each\n", 5)] {
        handler_replies(flush, writes).await;
    }
}

async fn handler_replies(flush: &str, writes: u64) {
    let yaml = format!(
        "{ONE}{flush}on_message:
  - name: pong
    when: {{ text_contains: ping }}
    send: {{ text: pong }}
steps:
  - connect: {{ url: 'ws://target.test/' }}
  - receive: {{ name: answer, timeout: 1s, match: {{ contains: done }} }}
"
    );
    let metrics = play(&yaml, |mut target| async move {
        let mut socket = target.accept().await;
        for _ in 0..3 {
            text(&mut socket, "ping").await;
        }
        for _ in 0..3 {
            let reply = socket.next().await.expect("reply").expect("frame");
            assert_eq!(reply, Message::text("pong"));
        }
        text(&mut socket, "done").await;
        drain(socket).await;
    })
    .await;
    assert_eq!(metrics.step("pong", "messages_received"), 3, "{}", metrics.dump());
    assert_eq!(metrics.step("pong", "messages_sent"), 3);
    assert_eq!(metrics.step("answer", "messages_received"), 1);
    // The upgrade, the replies, the close.
    assert_eq!(metrics.conn("socket_writes"), writes, "{flush}{}", metrics.dump());
}

/// A burst larger than the socket takes: the target reads nothing for 100 ms, then echoes each
/// message as it reads it. The first message was in the socket at once, so its answer took the
/// 100 ms; the others were handed to the socket only when the target began to read, and their
/// latency is measured from then, not from when they were sent and buffered.
#[tokio::test(start_paused = true)]
async fn a_pipelined_burst_is_timed_from_when_its_bytes_reach_the_socket() {
    let body = "x".repeat(40_000);
    let yaml = format!(
        "{ONE}steps:
  - connect: {{ url: 'ws://target.test/' }}
  - send: {{ name: a, text: '{body}' }}
  - send: {{ name: b, text: '{body}' }}
  - send: {{ name: c, text: '{body}' }}
  - receive: {{ name: answer_a, timeout: 1s, latency_of: a }}
  - receive: {{ name: answer_b, timeout: 1s, latency_of: b }}
  - receive: {{ name: answer_c, timeout: 1s, latency_of: c }}
"
    );
    let metrics = play(&yaml, |mut target| async move {
        let socket = target.accept().await;
        sleep(Duration::from_millis(100)).await;
        let (mut sink, mut stream) = socket.split();
        for _ in 0..3 {
            let message = stream.next().await.expect("message").expect("frame");
            sink.send(message).await.expect("echo");
        }
        let socket = sink.reunite(stream).expect("one socket");
        drain(socket).await;
    })
    .await;
    assert_eq!(metrics.total("messages_sent"), 3, "{}", metrics.dump());
    assert_eq!(metrics.total("messages_received"), 3, "{}", metrics.dump());
    let first = metrics.samples("answer_a", "message_latency");
    assert!(first.len() == 1 && near(first[0], 100_000), "{first:?}");
    for later in ["answer_b", "answer_c"] {
        let latencies = metrics.samples(later, "message_latency");
        assert!(latencies.len() == 1 && latencies[0] < 1_000, "{later}: {latencies:?}");
    }
}
