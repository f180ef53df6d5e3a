use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::Message;
use wsfleet_metrics::ErrorKind;

use super::*;
use crate::protocol::graphql::Options;

fn decode(layer: &mut GraphQlLayer, text: &str, now: Instant) -> Vec<Decoded> {
    let mut out = Vec::new();
    layer.decode(&Message::text(text), now, &mut out);
    out
}

fn ready(options: Options, now: Instant) -> GraphQlLayer {
    let mut layer = GraphQlLayer::new(Session::new(options));
    assert_eq!(layer.handshake_messages(now).len(), 1);
    let acked = decode(&mut layer, r#"{"type":"connection_ack"}"#, now);
    assert_eq!(acked, vec![Decoded::Connected(String::new())]);
    layer
}

const QUERY: &str = r#"{"query":"subscription { count(to: 2) }"}"#;

#[test]
fn a_subscriptions_first_result_acknowledges_it_and_every_result_is_an_event() {
    let now = Instant::now();
    let mut layer = ready(Options::new(Subprotocol::TransportWs), now);
    let (id, _) = layer.start(QUERY, "Count", false, 7).unwrap();
    assert_eq!(layer.operation_of(7), Some(id));
    let first = decode(
        &mut layer,
        r#"{"type":"next","id":"0","payload":{"data":{"count":1}}}"#,
        now,
    );
    let [Decoded::Ack(ack), Decoded::Event(event)] = &first[..] else {
        panic!("{first:?}")
    };
    assert_eq!((ack.id, ack.body.is_empty()), (id, true));
    assert_eq!((event.name.as_str(), event.namespace.as_str()), ("Count", "0"));
    assert_eq!(&event.body[..], br#"{"data":{"count":1}}"#);
    let second = decode(
        &mut layer,
        r#"{"type":"next","id":"0","payload":{"data":{"count":2}}}"#,
        now,
    );
    assert!(matches!(&second[..], [Decoded::Event(_)]), "{second:?}");
    let failed = decode(
        &mut layer,
        r#"{"type":"next","id":"0","payload":{"data":null,"errors":[{"message":"x"}]}}"#,
        now,
    );
    assert!(
        matches!(
            &failed[..],
            [
                Decoded::Failed {
                    kind: ErrorKind::GraphqlError,
                    ..
                },
                Decoded::Event(_)
            ]
        ),
        "{failed:?}"
    );
    assert_eq!(
        decode(&mut layer, r#"{"type":"complete","id":"0"}"#, now),
        vec![Decoded::Handled]
    );
    assert_eq!(layer.operation_of(7), None);
}

#[test]
fn a_querys_result_or_error_is_the_acknowledgement_its_step_awaits() {
    let now = Instant::now();
    let mut layer = ready(Options::new(Subprotocol::TransportWs), now);
    layer.start(r#"{"query":"{ hello }"}"#, "Hello", true, 1).unwrap();
    let result = decode(
        &mut layer,
        r#"{"type":"next","id":"0","payload":{"data":{"hello":"x"}}}"#,
        now,
    );
    let [Decoded::Ack(ack)] = &result[..] else {
        panic!("{result:?}")
    };
    assert_eq!(&ack.body[..], br#"{"data":{"hello":"x"}}"#);

    layer.start(r#"{"query":"{ nope }"}"#, "Nope", true, 2).unwrap();
    let error = decode(
        &mut layer,
        r#"{"type":"error","id":"1","payload":[{"message":"no field nope"}]}"#,
        now,
    );
    let [Decoded::Ack(ack)] = &error[..] else {
        panic!("{error:?}")
    };
    assert_eq!(&ack.body[..], br#"{"errors":[{"message":"no field nope"}]}"#);

    // A subscription's error is the connection's to report.
    layer.start(QUERY, "Count", false, 3).unwrap();
    let error = decode(
        &mut layer,
        r#"{"type":"error","id":"2","payload":[{"message":"bad"}]}"#,
        now,
    );
    assert!(
        matches!(
            &error[..],
            [Decoded::Failed {
                kind: ErrorKind::GraphqlError,
                ..
            }]
        ),
        "{error:?}"
    );
}

#[test]
fn refusals_heartbeats_and_violations() {
    let now = Instant::now();
    let mut options = Options::new(Subprotocol::LegacyWs);
    options.init_payload = Some(r#"{"token":"t"}"#.into());
    let mut layer = GraphQlLayer::new(Session::new(options));
    let init = layer.handshake_messages(now);
    assert_eq!(
        init,
        vec![Message::text(r#"{"type":"connection_init","payload":{"token":"t"}}"#)]
    );
    let refused = decode(
        &mut layer,
        r#"{"type":"connection_error","payload":{"message":"no"}}"#,
        now,
    );
    assert!(
        matches!(&refused[..], [Decoded::Refused { kind: ErrorKind::ConnectError, message, .. }] if message == "no"),
        "{refused:?}"
    );
    assert!(layer.ended());

    let mut layer = ready(Options::new(Subprotocol::TransportWs), now);
    let ping = decode(&mut layer, r#"{"type":"ping"}"#, now);
    assert_eq!(
        ping,
        vec![Decoded::Heartbeat(Some(Message::text(r#"{"type":"pong"}"#)))]
    );
    let broken = decode(&mut layer, "{", now);
    assert!(matches!(&broken[..], [Decoded::Violation(_)]), "{broken:?}");
}

#[test]
fn the_client_pings_after_each_pong_and_a_missing_pong_is_silence() {
    let start = Instant::now();
    let mut options = Options::new(Subprotocol::TransportWs);
    options.keep_alive = Some(Duration::from_secs(10));
    let mut layer = ready(options, start);
    let due = start + Duration::from_secs(10);
    assert_eq!(layer.next_due(), Some(due));
    let mut ticks = Vec::new();
    layer.tick(due, &mut ticks);
    assert_eq!(ticks, vec![Tick::Heartbeat(Message::text(r#"{"type":"ping"}"#))]);
    // The pong is due within the interval.
    assert_eq!(layer.next_due(), Some(due + Duration::from_secs(10)));
    let later = due + Duration::from_secs(1);
    assert_eq!(
        decode(&mut layer, r#"{"type":"pong"}"#, later),
        vec![Decoded::Heartbeat(None)]
    );
    assert_eq!(layer.next_due(), Some(later + Duration::from_secs(10)));
    layer.tick(later + Duration::from_secs(10), &mut ticks);
    ticks.clear();
    layer.tick(later + Duration::from_secs(20), &mut ticks);
    assert!(matches!(&ticks[..], [Tick::Silent(_)]), "{ticks:?}");

    // graphql-ws: silent once the server's keep-alives stop for `ka_timeout`.
    let mut options = Options::new(Subprotocol::LegacyWs);
    options.ka_timeout = Some(Duration::from_secs(30));
    let mut legacy = ready(options, start);
    assert_eq!(legacy.next_due(), None, "no `ka` yet");
    decode(&mut legacy, r#"{"type":"ka"}"#, start);
    assert_eq!(legacy.next_due(), Some(start + Duration::from_secs(30)));
    let mut ticks = Vec::new();
    legacy.tick(start + Duration::from_secs(29), &mut ticks);
    assert!(ticks.is_empty());
    legacy.tick(start + Duration::from_secs(30), &mut ticks);
    assert!(matches!(&ticks[..], [Tick::Silent(_)]), "{ticks:?}");
}
