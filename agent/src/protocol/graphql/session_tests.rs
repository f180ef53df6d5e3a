use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::Message;

use super::*;

fn text(message: Message) -> String {
    message.into_text().unwrap().as_str().to_owned()
}

fn ready(subprotocol: Subprotocol) -> Session {
    let mut session = Session::new(Options::new(subprotocol));
    session.init_message().unwrap();
    let ack = session.decode(&Message::text(r#"{"type":"connection_ack"}"#)).unwrap();
    assert_eq!(ack, Received::Acknowledged(None));
    session
}

const HELLO: &str = r#"{"query":"subscription { count(to: 2) }"}"#;

#[test]
fn init_carries_the_payload_and_waits_for_the_ack() {
    let mut options = Options::new(Subprotocol::TransportWs);
    options.init_payload = Some(r#"{"token":"abc"}"#.into());
    let mut session = Session::new(options);
    assert_eq!(session.start(HELLO), Err(StartError::NotReady(State::Idle)));
    assert_eq!(
        text(session.init_message().unwrap()),
        r#"{"type":"connection_init","payload":{"token":"abc"}}"#
    );
    assert_eq!(session.state(), State::Initializing);
    assert_eq!(session.start(HELLO), Err(StartError::NotReady(State::Initializing)));
    assert_eq!(
        session
            .decode(&Message::text(r#"{"type":"connection_ack","payload":{"v":1}}"#))
            .unwrap(),
        Received::Acknowledged(Some(r#"{"v":1}"#.into()))
    );
    assert!(session.ready());
    assert!(
        session.decode(&Message::text(r#"{"type":"connection_ack"}"#)).is_err(),
        "a second ack"
    );

    let mut options = Options::new(Subprotocol::LegacyWs);
    options.init_payload = Some("{not json".into());
    assert!(Session::new(options).init_message().is_err());
}

#[test]
fn operations_get_fresh_ids_and_each_protocol_its_verbs() {
    let mut session = ready(Subprotocol::TransportWs);
    let (first, message) = session.start(HELLO).unwrap();
    assert_eq!(first, 0);
    assert_eq!(
        text(message),
        r#"{"type":"subscribe","id":"0","payload":{"query":"subscription { count(to: 2) }"}}"#
    );
    let (second, _) = session.start(HELLO).unwrap();
    assert_eq!(second, 1);
    assert_eq!(text(session.stop(first).unwrap()), r#"{"type":"complete","id":"0"}"#);
    assert_eq!(session.stop(first), None, "ended already");
    assert_eq!(session.active().collect::<Vec<_>>(), vec![1]);

    let mut legacy = ready(Subprotocol::LegacyWs);
    let (id, message) = legacy.start(HELLO).unwrap();
    assert!(text(message).starts_with(r#"{"type":"start","id":"0","#));
    assert_eq!(text(legacy.stop(id).unwrap()), r#"{"type":"stop","id":"0"}"#);
    assert!(matches!(legacy.start("[1]"), Err(StartError::Payload(_))));
    assert!(matches!(legacy.start("{"), Err(StartError::Payload(_))));
}

#[test]
fn results_are_numbered_first_then_streaming_and_errors_found() {
    let mut session = ready(Subprotocol::TransportWs);
    let (id, _) = session.start(HELLO).unwrap();
    let next = |value: &str| Message::text(format!(r#"{{"type":"next","id":"0","payload":{value}}}"#));
    assert_eq!(
        session.decode(&next(r#"{"data":{"count":1}}"#)).unwrap(),
        Received::Next {
            id,
            payload: r#"{"data":{"count":1}}"#.into(),
            first: true,
            errors: None
        }
    );
    let Received::Next { first, errors, .. } = session
        .decode(&next(r#"{"data":null,"errors":[{"message":"boom"}]}"#))
        .unwrap()
    else {
        panic!("not a result")
    };
    assert!(!first);
    assert_eq!(errors.as_deref(), Some(r#"[{"message":"boom"}]"#));
    assert_eq!(
        session
            .decode(&Message::text(r#"{"type":"complete","id":"0"}"#))
            .unwrap(),
        Received::Complete { id }
    );
    assert_eq!(session.active().count(), 0);
    // A result that crossed the end is stale, not a violation; an id never given out is.
    assert_eq!(session.decode(&next("{}")).unwrap(), Received::Stale { id });
    let unknown = Message::text(r#"{"type":"next","id":"9","payload":{}}"#);
    assert!(session.decode(&unknown).unwrap_err().contains("never started"));
    let legacy_verb = Message::text(r#"{"type":"data","id":"0","payload":{}}"#);
    assert!(session.decode(&legacy_verb).unwrap_err().contains("`data`"));
}

#[test]
fn error_messages_end_their_operation() {
    let mut session = ready(Subprotocol::TransportWs);
    let (id, _) = session.start(HELLO).unwrap();
    let error = r#"{"type":"error","id":"0","payload":[{"message":"Cannot query field 'x'","locations":[{"line":1,"column":3}]}]}"#;
    let Received::Error { id: ended, message, .. } = session.decode(&Message::text(error)).unwrap() else {
        panic!("not an error")
    };
    assert_eq!((ended, message.as_str()), (id, "Cannot query field 'x'"));
    assert_eq!(session.active().count(), 0);

    let mut legacy = ready(Subprotocol::LegacyWs);
    legacy.start(HELLO).unwrap();
    let error = r#"{"type":"error","id":"0","payload":{"message":"legacy says no"}}"#;
    assert!(matches!(
        legacy.decode(&Message::text(error)).unwrap(),
        Received::Error { message, .. } if message == "legacy says no"
    ));
}

#[test]
fn legacy_sessions_read_data_ka_and_connection_errors() {
    let mut legacy = ready(Subprotocol::LegacyWs);
    let (id, _) = legacy.start(HELLO).unwrap();
    assert_eq!(
        legacy.decode(&Message::text(r#"{"type":"ka"}"#)).unwrap(),
        Received::KeepAlive
    );
    let data = Message::text(r#"{"type":"data","id":"0","payload":{"data":{"count":1}}}"#);
    assert!(matches!(
        legacy.decode(&data).unwrap(),
        Received::Next { first: true, .. }
    ));
    assert!(
        legacy.decode(&Message::text(r#"{"type":"ping"}"#)).is_err(),
        "no ping in graphql-ws"
    );
    assert!(legacy
        .decode(&Message::text(r#"{"type":"next","id":"0","payload":{}}"#))
        .is_err());
    // Stopping: the server's `complete` answering the stop is stale.
    legacy.stop(id).unwrap();
    assert_eq!(
        legacy
            .decode(&Message::text(r#"{"type":"complete","id":"0"}"#))
            .unwrap(),
        Received::Stale { id }
    );
    let goodbye: Vec<String> = {
        legacy.start(HELLO).unwrap();
        legacy.goodbye_messages().into_iter().map(text).collect()
    };
    assert_eq!(
        goodbye,
        vec![r#"{"type":"stop","id":"1"}"#, r#"{"type":"connection_terminate"}"#]
    );
    assert_eq!(legacy.state(), State::Terminated);

    let mut refused = Session::new(Options::new(Subprotocol::LegacyWs));
    refused.init_message().unwrap();
    let error = Message::text(r#"{"type":"connection_error","payload":{"message":"bad token"}}"#);
    assert_eq!(refused.decode(&error).unwrap(), Received::Refused("bad token".into()));
    assert_eq!(refused.state(), State::Refused);
}

#[test]
fn pings_are_answered_with_their_payload_and_the_clients_own_are_timed() {
    let mut options = Options::new(Subprotocol::TransportWs);
    options.keep_alive = Some(Duration::from_secs(5));
    let mut session = Session::new(options);
    session.init_message().unwrap();
    session.decode(&Message::text(r#"{"type":"connection_ack"}"#)).unwrap();
    assert_eq!(
        session
            .decode(&Message::text(r#"{"type":"ping","payload":{"n":1}}"#))
            .unwrap(),
        Received::Ping(Message::text(r#"{"type":"pong","payload":{"n":1}}"#))
    );
    let start = Instant::now();
    assert_eq!(session.ping_due(start), Some(start + Duration::from_secs(5)));
    assert_eq!(text(session.ping_message(start).unwrap()), r#"{"type":"ping"}"#);
    assert_eq!(session.ping_due(start), None, "one ping at a time");
    assert!(!session.pong_overdue(start + Duration::from_millis(4999)));
    assert!(session.pong_overdue(start + Duration::from_secs(5)));
    assert_eq!(
        session.decode(&Message::text(r#"{"type":"pong"}"#)).unwrap(),
        Received::Pong
    );
    assert!(!session.pong_overdue(start + Duration::from_secs(60)));
    assert!(
        !session.server_silent(start, start + Duration::from_secs(3600)),
        "no ka in this protocol"
    );

    let mut options = Options::new(Subprotocol::LegacyWs);
    options.ka_timeout = Some(Duration::from_secs(30));
    options.keep_alive = Some(Duration::from_secs(5));
    let mut legacy = Session::new(options);
    assert_eq!(legacy.ping_message(start), None);
    assert_eq!(legacy.ping_due(start), None);
    legacy.init_message().unwrap();
    legacy.decode(&Message::text(r#"{"type":"connection_ack"}"#)).unwrap();
    // Silence counts only once the server showed it sends keep-alives.
    assert!(!legacy.server_silent(start, start + Duration::from_secs(60)));
    legacy.decode(&Message::text(r#"{"type":"ka"}"#)).unwrap();
    assert!(!legacy.server_silent(start, start + Duration::from_millis(29_999)));
    assert!(legacy.server_silent(start, start + Duration::from_secs(30)));
}

#[test]
fn malformed_messages_are_violations() {
    let mut session = ready(Subprotocol::TransportWs);
    for bad in [
        "not json",
        r#"{"id":"0"}"#,
        r#"{"type":"subscribe","id":"0"}"#,
        r#"{"type":"ka"}"#,
        r#"{"type":"connection_error"}"#,
        r#"{"type":"complete"}"#,
        r#"{"type":"complete","id":"x"}"#,
    ] {
        assert!(session.decode(&Message::text(bad)).is_err(), "{bad}");
    }
    session.start(HELLO).unwrap();
    assert!(session
        .decode(&Message::text(r#"{"type":"next","id":"0"}"#))
        .unwrap_err()
        .contains("without a payload"));
    assert!(session.decode(&Message::binary(vec![0xff, 0xfe])).is_err());
}
