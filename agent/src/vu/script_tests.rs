//! Scripts through the connection seam: `script` steps setting values that later steps send,
//! `if` and `while` with their exact rounds, rules with a script condition and action, the
//! sandbox's limits hit at run time and the `script` error kind counted and matched by
//! `on_error`. The test plays the server; the clock is paused.

use std::collections::BTreeMap;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::testing::{drain, Harness, Metrics, ServerSocket, Target};

async fn play<F: std::future::Future<Output = ()>>(yaml: &str, server: impl FnOnce(Target) -> F) -> Metrics {
    let (harness, target) = Harness::new(yaml);
    tokio::join!(harness.play(0), server(target));
    harness.metrics()
}

/// The next `count` data messages the server gets, as text.
async fn texts(socket: &mut ServerSocket, count: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < count {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => got.push(text.to_string()),
            Some(Ok(_)) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
    got
}

const HEAD: &str = "load: { vus: 1, iterations: 1 }\nsteps:\n  - connect: { url: 'ws://target.test/' }\n";

/// A script computes an HMAC of a body with a secret from a data feed; the send carries both,
/// and a `${...}` expression computes the same signature inline.
#[tokio::test(start_paused = true)]
async fn a_script_step_signs_a_body_with_a_secret_from_a_feed() {
    let yaml = "load: { vus: 1, iterations: 2 }
data:
  users: { csv: users.csv }
steps:
  - connect: { url: 'ws://target.test/' }
  - script: |
      let body = json(#{ user: users.name, n: vu_iteration });
      let signature = hex(hmac_sha256(users.secret, body));
  - send: { name: signed, text: '${body}|${signature}|${hex(hmac_sha256(users.secret, body))}' }
";
    let files = BTreeMap::from([("users.csv".to_owned(), b"name,secret\nann,Jefe\nbob,key2\n".to_vec())]);
    let (harness, mut target) = Harness::with_files(yaml, files);
    let server = async move {
        let mut got = Vec::new();
        for _ in 0..2 {
            let mut socket = target.accept().await;
            got.extend(texts(&mut socket, 1).await);
            drain(socket).await;
        }
        got
    };
    let ((), got) = tokio::join!(harness.play(0), server);
    let expected = |body: &str, key: &[u8]| {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        mac.update(body.as_bytes());
        let signature: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        format!("{body}|{signature}|{signature}")
    };
    assert_eq!(
        got,
        [
            expected(r#"{"n":0,"user":"ann"}"#, b"Jefe"),
            expected(r#"{"n":1,"user":"bob"}"#, b"key2")
        ]
    );
    let metrics = harness.metrics();
    assert_eq!(metrics.step("signed", "messages_sent"), 2, "{}", metrics.dump());
    assert_eq!(metrics.conn("iterations"), 2);
    assert_eq!(metrics.total("errors.script"), 0);
}

/// `if` branches on a value extracted from the server's reply: the `welcome` branch and the
/// `else` branch each send their own message.
#[tokio::test(start_paused = true)]
async fn if_branches_on_the_servers_reply() {
    let yaml = "load: { vus: 1, iterations: 2 }
steps:
  - connect: { url: 'ws://target.test/' }
  - receive: { name: hello, extract: { reply: { body: true } } }
  - if:
      condition: 'json_get(reply, \"/type\") == \"welcome\"'
      steps:
        - send: { name: join, text: 'join' }
      else:
        - send: { name: retry, text: 'retry ${json_get(reply, \"/after\")}' }
";
    let metrics = play(yaml, |mut target| async move {
        for reply in [r#"{"type":"welcome"}"#, r#"{"type":"busy","after":5}"#] {
            let mut socket = target.accept().await;
            socket.send(Message::text(reply)).await.unwrap();
            let got = texts(&mut socket, 1).await;
            let wanted = if reply.contains("welcome") { "join" } else { "retry 5" };
            assert_eq!(got, [wanted]);
            drain(socket).await;
        }
    })
    .await;
    assert_eq!(metrics.step("join", "messages_sent"), 1, "{}", metrics.dump());
    assert_eq!(metrics.step("retry", "messages_sent"), 1);
    assert_eq!(metrics.conn("iterations"), 2);
}

/// `while` plays rounds while its condition holds; round N reads `iteration` as N; a loop that
/// reaches `max` fails with `script`, or goes on with `on_max: continue`.
#[tokio::test(start_paused = true)]
async fn while_loops_until_its_condition_fails_and_is_bounded() {
    let yaml = format!(
        "variables: {{ n: '0' }}
{HEAD}  - while:
      condition: 'parse_int(n) < 3'
      steps:
        - script: 'let n = parse_int(n) + 1;'
        - send: {{ name: tick, text: '${{n}}/${{iteration}}' }}
  - while: {{ name: capped, condition: 'true', max: 2, on_max: continue, steps: [ {{ send: {{ name: capped_send, text: c }} }} ] }}
  - while: {{ name: runaway, condition: 'true', max: 2, steps: [ {{ send: {{ name: runaway_send, text: r }} }} ] }}
  - send: {{ name: never, text: x }}
"
    );
    let metrics = play(&yaml, |mut target| async move {
        let mut socket = target.accept().await;
        assert_eq!(texts(&mut socket, 7).await, ["1/0", "2/1", "3/2", "c", "c", "r", "r"]);
        assert_eq!(drain(socket).await, 0);
    })
    .await;
    assert_eq!(metrics.step("tick", "messages_sent"), 3, "{}", metrics.dump());
    assert_eq!(metrics.step("capped", "errors.script"), 1);
    assert_eq!(metrics.step("capped_send", "messages_sent"), 2);
    assert_eq!(metrics.step("runaway", "errors.script"), 1);
    assert_eq!(metrics.step("never", "messages_sent"), 0);
    assert_eq!(metrics.conn("iterations_failed"), 1);
    assert_eq!(metrics.total("errors.script"), 2);
}

/// A script that runs away hits the operations limit; one that fails in a template fails its
/// send. Both count `errors.script` in their step, and `on_error` rules match the kind.
#[tokio::test(start_paused = true)]
async fn script_failures_are_counted_and_on_error_rules_match_them() {
    let yaml = format!(
        "variables: {{ raw: 'not json' }}
{HEAD}  - script: {{ name: spin, run: 'let n = 0; loop {{ n += 1; }}' }}
  - send: {{ name: bad_template, text: '${{json_parse(raw)}}' }}
  - if: {{ name: bad_condition, condition: '42', steps: [ {{ send: {{ name: unreachable, text: u }} }} ] }}
  - send: {{ name: after, text: 'still here' }}
on_error:
  - {{ kinds: [script], steps: [spin, bad_template], then: continue }}
"
    );
    let metrics = play(&yaml, |mut target| async move {
        let socket = target.accept().await;
        assert_eq!(drain(socket).await, 0);
    })
    .await;
    assert_eq!(metrics.step("spin", "errors.script"), 1, "{}", metrics.dump());
    assert_eq!(metrics.step("bad_template", "errors.script"), 1);
    assert_eq!(metrics.step("bad_template", "messages_sent"), 0);
    // No rule names `bad_condition`: the iteration fails there.
    assert_eq!(metrics.step("bad_condition", "errors.script"), 1);
    assert_eq!(metrics.step("unreachable", "messages_sent"), 0);
    assert_eq!(metrics.step("after", "messages_sent"), 0);
    assert_eq!(metrics.conn("iterations_failed"), 1);
    assert_eq!(metrics.total("errors.script"), 3);
}

/// An `on_message` rule takes only the messages its script condition accepts, and its script
/// computes what the reply carries.
#[tokio::test(start_paused = true)]
async fn rules_take_messages_by_script_and_reply_with_what_it_computed() {
    let yaml = format!(
        "{HEAD}  - receive: {{ name: rest, timeout: 1s }}
on_message:
  - name: challenge
    if: 'json_get(message, \"/type\") == \"challenge\"'
    script: 'let answer = hex(sha256(json_get(message, \"/nonce\")));'
    send: {{ text: '{{\"answer\":\"${{answer}}\"}}' }}
"
    );
    let metrics = play(&yaml, |mut target| async move {
        let mut socket = target.accept().await;
        socket
            .send(Message::text(r#"{"type":"challenge","nonce":"abc"}"#))
            .await
            .unwrap();
        assert_eq!(
            texts(&mut socket, 1).await,
            [r#"{"answer":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}"#]
        );
        socket.send(Message::text(r#"{"type":"news"}"#)).await.unwrap();
        drain(socket).await;
    })
    .await;
    assert_eq!(metrics.step("challenge", "messages_received"), 1, "{}", metrics.dump());
    assert_eq!(metrics.step("challenge", "messages_sent"), 1);
    assert_eq!(metrics.step("rest", "messages_received"), 1);
    assert_eq!(metrics.conn("iterations"), 1);
}

/// A `${...}` script that fails in a match's `equals` or `contains` or in a check fails that
/// step with `errors.script` instead of comparing with empty text; the message it was tried
/// on stays for the next receive.
#[tokio::test(start_paused = true)]
async fn failing_expressions_in_matchers_and_checks_fail_their_steps() {
    let yaml = format!(
        "variables: {{ raw: 'not json' }}
{HEAD}  - receive: {{ name: bad_equals, timeout: 1s, match: {{ equals: '${{json_parse(raw)}}' }} }}
  - check: {{ name: bad_check, value: x, equals: 'x${{json_parse(raw)}}' }}
  - send: {{ name: go, text: go }}
  - receive: {{ name: bad_contains, timeout: 1s, match: {{ contains: '${{json_parse(raw)}}' }} }}
  - receive: {{ name: first, timeout: 1s }}
  - receive: {{ name: second, timeout: 1s }}
on_error:
  - {{ kinds: [script], steps: [bad_equals, bad_check, bad_contains], then: continue }}
"
    );
    let metrics = play(&yaml, |mut target| async move {
        let mut socket = target.accept().await;
        socket.send(Message::text("one")).await.unwrap();
        assert_eq!(texts(&mut socket, 1).await, ["go"]);
        socket.send(Message::text("two")).await.unwrap();
        drain(socket).await;
    })
    .await;
    assert_eq!(metrics.step("bad_equals", "errors.script"), 1, "{}", metrics.dump());
    assert_eq!(metrics.step("bad_check", "errors.script"), 1);
    assert_eq!(metrics.step("bad_check", "errors.check"), 0);
    assert_eq!(metrics.step("bad_contains", "errors.script"), 1);
    assert_eq!(metrics.step("bad_equals", "messages_received"), 0);
    assert_eq!(metrics.step("first", "messages_received"), 1);
    assert_eq!(metrics.step("second", "messages_received"), 1);
    assert_eq!(metrics.total("errors.script"), 3);
    assert_eq!(metrics.conn("iterations"), 1);
}

/// An `on_message` rule whose `when` holds a failing `${...}` script fails the rule with
/// `errors.script` (as a failing `if` of the rule does), rather than never taking a message.
#[tokio::test(start_paused = true)]
async fn a_failing_expression_in_a_rules_when_fails_the_rule() {
    let yaml = format!(
        "variables: {{ raw: 'not json' }}
{HEAD}  - receive: {{ name: rest, timeout: 1s }}
on_message:
  - name: bad_when
    when: {{ contains: '${{json_parse(raw)}}' }}
    extract: {{ got: {{ body: true }} }}
"
    );
    let metrics = play(&yaml, |mut target| async move {
        let mut socket = target.accept().await;
        socket.send(Message::text("news")).await.unwrap();
        drain(socket).await;
    })
    .await;
    assert_eq!(metrics.step("bad_when", "errors.script"), 1, "{}", metrics.dump());
    assert_eq!(metrics.step("rest", "messages_received"), 0);
    assert_eq!(metrics.conn("iterations_failed"), 1);
}
