use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio_tungstenite::tungstenite::Message;

use super::packet::{encode, Outgoing};
use super::*;

fn connected(version: Version, connack: &[u8]) -> Session {
    let mut session = Session::new(
        version,
        Connect {
            client_id: "vu-1".into(),
            clean: true,
            keep_alive: 2,
            ..Connect::default()
        },
    );
    session.connect_message();
    session.feed(&Message::binary(connack.to_vec())).unwrap();
    assert_eq!(
        session.next_received(),
        Some(Received::Connected { session_present: false })
    );
    session
}

/// The bytes of a packet as the server would send it (encoded with the client's codec: the
/// same layout both ways for these packets).
fn server(version: Version, packet: Outgoing) -> Message {
    let mut out = BytesMut::new();
    encode(version, &packet, &mut out).unwrap();
    Message::binary(out.freeze())
}

fn bytes(message: &Message) -> Vec<u8> {
    message.clone().into_data().to_vec()
}

fn all(session: &mut Session) -> Vec<Received> {
    std::iter::from_fn(|| session.next_received()).collect()
}

fn publish(topic: &str, qos: QoS) -> Publish {
    Publish {
        topic: topic.into(),
        payload: Bytes::from_static(b"x"),
        qos,
        ..Publish::default()
    }
}

#[test]
fn connack_accepts_or_refuses_with_a_reason() {
    let mut session = Session::new(Version::V311, Connect::default());
    assert_eq!(session.state(), State::Idle);
    let connect = session.connect_message();
    assert!(connect.is_binary());
    assert_eq!(session.state(), State::Connecting);
    session.feed(&Message::binary(vec![0x20, 0x02, 0x00, 0x04])).unwrap();
    let Some(Received::Refused(reason)) = session.next_received() else {
        panic!("refused")
    };
    assert_eq!(reason.kind(), "mqtt_bad_user_name_or_password");
    assert_eq!(session.state(), State::Refused);
    assert!(!session.ready());
    // Nothing more is expected from a refused session.
    assert!(session.feed(&Message::binary(vec![0xd0, 0x00])).is_err());
}

#[test]
fn a_packet_before_the_connack_or_in_text_breaks_the_session() {
    let mut session = Session::new(Version::V311, Connect::default());
    session.connect_message();
    assert!(session.feed(&Message::binary(vec![0xd0, 0x00])).is_err());
    let mut session = Session::new(Version::V311, Connect::default());
    session.connect_message();
    assert!(session.feed(&Message::text("CONNACK")).is_err());
}

#[test]
fn nothing_is_sent_before_the_connack() {
    let mut session = Session::new(Version::V311, Connect::default());
    session.connect_message();
    let error = session.publish(publish("t", QoS::AtMostOnce)).unwrap_err();
    assert_eq!(error.kind, "mqtt_not_connected");
}

#[test]
fn qos_1_publish_waits_for_its_puback() {
    let mut session = connected(Version::V311, &[0x20, 0x02, 0x00, 0x00]);
    let (id, message) = session.publish(publish("a/b", QoS::AtLeastOnce)).unwrap();
    assert_eq!(id, 1);
    assert_eq!(
        bytes(&message.unwrap()),
        [0x32, 0x08, 0, 3, b'a', b'/', b'b', 0, 1, b'x']
    );
    assert_eq!(session.publishes_in_flight(), 1);
    session.feed(&Message::binary(vec![0x40, 0x02, 0x00, 0x01])).unwrap();
    assert_eq!(
        all(&mut session),
        vec![Received::Published {
            packet_id: 1,
            qos: QoS::AtLeastOnce,
            failure: None
        }]
    );
    assert_eq!(session.publishes_in_flight(), 0);
    // Its PUBACK again is a violation: nothing waits for it.
    assert!(session.feed(&Message::binary(vec![0x40, 0x02, 0x00, 0x01])).is_err());
}

#[test]
fn qos_2_publish_goes_through_pubrec_pubrel_pubcomp() {
    let mut session = connected(Version::V311, &[0x20, 0x02, 0x00, 0x00]);
    let (id, _) = session.publish(publish("t", QoS::ExactlyOnce)).unwrap();
    session
        .feed(&Message::binary(vec![0x50, 0x02, 0x00, id as u8]))
        .unwrap();
    assert_eq!(all(&mut session), vec![]);
    let replies = session.replies();
    assert_eq!(
        replies.iter().map(bytes).collect::<Vec<_>>(),
        vec![vec![0x62, 0x02, 0x00, 0x01]]
    );
    // A PUBCOMP before the PUBREC would have been a violation; after it, the publish is done.
    session.feed(&Message::binary(vec![0x70, 0x02, 0x00, 0x01])).unwrap();
    assert_eq!(
        all(&mut session),
        vec![Received::Published {
            packet_id: 1,
            qos: QoS::ExactlyOnce,
            failure: None
        }]
    );
}

#[test]
fn a_failing_v5_pubrec_ends_the_exchange_with_its_reason() {
    let mut session = connected(Version::V5, &[0x20, 0x03, 0x00, 0x00, 0x00]);
    session.publish(publish("t", QoS::ExactlyOnce)).unwrap();
    session
        .feed(&Message::binary(vec![0x50, 0x03, 0x00, 0x01, 0x87]))
        .unwrap();
    let received = all(&mut session);
    let [Received::Published {
        failure: Some(reason), ..
    }] = &received[..]
    else {
        panic!("{received:?}")
    };
    assert_eq!(reason.kind(), "mqtt_not_authorized");
    assert!(session.replies().is_empty(), "no PUBREL after a failing PUBREC");
    assert_eq!(session.publishes_in_flight(), 0);
}

#[test]
fn deliveries_are_acknowledged_as_their_qos_asks_and_qos_2_once() {
    let mut session = connected(Version::V311, &[0x20, 0x02, 0x00, 0x00]);
    let mut delivery = publish("s/1", QoS::AtLeastOnce);
    delivery.packet_id = 10;
    session
        .feed(&server(Version::V311, Outgoing::Publish(delivery.clone())))
        .unwrap();
    assert_eq!(all(&mut session), vec![Received::Message(delivery)]);
    assert_eq!(bytes(&session.replies()[0]), [0x40, 0x02, 0x00, 10]);

    let mut exactly = publish("s/2", QoS::ExactlyOnce);
    exactly.packet_id = 11;
    let message = server(Version::V311, Outgoing::Publish(exactly.clone()));
    session.feed(&message).unwrap();
    // The server sends it again before it has the PUBREC: one delivery, two PUBRECs.
    let mut again = exactly.clone();
    again.dup = true;
    session.feed(&server(Version::V311, Outgoing::Publish(again))).unwrap();
    assert_eq!(all(&mut session), vec![Received::Message(exactly.clone())]);
    let replies: Vec<Vec<u8>> = session.replies().iter().map(bytes).collect();
    assert_eq!(replies, vec![vec![0x50, 0x02, 0x00, 11], vec![0x50, 0x02, 0x00, 11]]);
    // PUBREL releases it: PUBCOMP; the same id may then carry a new message.
    session.feed(&Message::binary(vec![0x62, 0x02, 0x00, 11])).unwrap();
    assert_eq!(bytes(&session.replies()[0]), [0x70, 0x02, 0x00, 11]);
    session.feed(&message).unwrap();
    assert_eq!(all(&mut session).len(), 1);
}

#[test]
fn the_server_receive_maximum_holds_publishes_back() {
    // CONNACK 5.0 with receive maximum 2 (property 0x21).
    let mut session = connected(Version::V5, &[0x20, 0x06, 0x00, 0x00, 0x03, 0x21, 0x00, 0x02]);
    let sent: Vec<(u16, bool)> = (0..3)
        .map(|_| {
            let (id, message) = session.publish(publish("t", QoS::AtLeastOnce)).unwrap();
            (id, message.is_some())
        })
        .collect();
    assert_eq!(sent, vec![(1, true), (2, true), (3, false)]);
    assert_eq!(session.held(), 1);
    assert_eq!(session.publishes_in_flight(), 3);
    session.feed(&Message::binary(vec![0x40, 0x02, 0x00, 0x01])).unwrap();
    let released = session.replies();
    assert_eq!(released.len(), 1);
    assert_eq!(bytes(&released[0])[0], 0x32, "the held PUBLISH goes now");
    assert_eq!(session.held(), 0);
}

#[test]
fn packet_ids_skip_those_in_use_and_wrap() {
    let mut session = connected(Version::V311, &[0x20, 0x02, 0x00, 0x00]);
    session.next_packet_id = u16::MAX;
    let (a, _) = session.publish(publish("t", QoS::AtLeastOnce)).unwrap();
    let (b, _) = session
        .subscribe(
            vec![Filter {
                filter: "t".into(),
                ..Filter::default()
            }],
            Vec::new(),
        )
        .unwrap();
    assert_eq!((a, b), (u16::MAX, 1));
    session.next_packet_id = u16::MAX;
    let (c, _) = session.unsubscribe(vec!["t".into()], Vec::new()).unwrap();
    assert_eq!(c, 2, "65,535 and 1 are in use");
}

#[test]
fn subscribe_and_unsubscribe_get_their_acks() {
    let mut session = connected(Version::V5, &[0x20, 0x03, 0x00, 0x00, 0x00]);
    let filters = vec![
        Filter {
            filter: "a/+".into(),
            qos: QoS::ExactlyOnce,
            no_local: true,
            ..Filter::default()
        },
        Filter {
            filter: "b/#".into(),
            qos: QoS::AtLeastOnce,
            ..Filter::default()
        },
    ];
    let (id, message) = session.subscribe(filters, vec![("k".into(), "v".into())]).unwrap();
    assert_eq!(bytes(&message)[0], 0x82);
    session
        .feed(&Message::binary(vec![0x90, 0x05, 0x00, id as u8, 0x00, 0x02, 0x87]))
        .unwrap();
    let received = all(&mut session);
    let [Received::Subscribed { granted, .. }] = &received[..] else {
        panic!("{received:?}")
    };
    assert_eq!(granted[0], Ok(QoS::ExactlyOnce));
    assert_eq!(granted[1].as_ref().unwrap_err().kind(), "mqtt_not_authorized");

    let (id, _) = session.unsubscribe(vec!["a/+".into()], Vec::new()).unwrap();
    session
        .feed(&Message::binary(vec![0xb0, 0x04, 0x00, id as u8, 0x00, 0x11]))
        .unwrap();
    assert_eq!(
        all(&mut session),
        vec![Received::Unsubscribed {
            packet_id: id,
            failures: Vec::new()
        }]
    );
    // A SUBACK with the wrong number of codes breaks the session.
    let (id, _) = session
        .subscribe(
            vec![Filter {
                filter: "c".into(),
                ..Filter::default()
            }],
            Vec::new(),
        )
        .unwrap();
    assert!(session
        .feed(&Message::binary(vec![0x90, 0x05, 0x00, id as u8, 0x00, 0x00, 0x00]))
        .is_err());
}

#[test]
fn bad_topics_and_filters_are_refused_before_sending() {
    let mut session = connected(Version::V311, &[0x20, 0x02, 0x00, 0x00]);
    assert_eq!(
        session.publish(publish("a/+", QoS::AtMostOnce)).unwrap_err().kind,
        "mqtt_topic_name_invalid"
    );
    let bad = Filter {
        filter: "a/#/b".into(),
        ..Filter::default()
    };
    assert_eq!(
        session.subscribe(vec![bad], Vec::new()).unwrap_err().kind,
        "mqtt_topic_filter_invalid"
    );
    let mut with_properties = publish("t", QoS::AtMostOnce);
    with_properties.properties.message_expiry = Some(5);
    assert_eq!(
        session.publish(with_properties).unwrap_err().kind,
        "mqtt_properties_need_v5"
    );
}

#[test]
fn v5_connack_limits_apply() {
    // Maximum QoS 1 (0x24), maximum packet size 20 (0x27), server keep-alive 5 (0x13).
    let mut session = connected(
        Version::V5,
        &[0x20, 0x0d, 0x00, 0x00, 0x0a, 0x24, 0x01, 0x27, 0, 0, 0, 20, 0x13, 0, 5],
    );
    assert_eq!(session.keep_alive(), Some(Duration::from_secs(5)));
    assert_eq!(
        session.publish(publish("t", QoS::ExactlyOnce)).unwrap_err().kind,
        "mqtt_qos_not_supported"
    );
    let mut large = publish("t", QoS::AtMostOnce);
    large.payload = Bytes::from(vec![0; 32]);
    assert_eq!(session.publish(large).unwrap_err().kind, "mqtt_packet_too_large");
}

#[test]
fn keep_alive_pings_when_idle_and_judges_silence() {
    let mut session = connected(Version::V311, &[0x20, 0x02, 0x00, 0x00]);
    let start = Instant::now();
    assert!(!session.ping_due(start, start + Duration::from_millis(1999)));
    assert!(session.ping_due(start, start + Duration::from_secs(2)));
    assert_eq!(session.silent_after(start), None);
    let ping = session.ping_message();
    assert_eq!(bytes(&ping), [0xc0, 0x00]);
    let sent = start + Duration::from_secs(2);
    assert!(
        !session.ping_due(start, sent + Duration::from_secs(5)),
        "one PINGREQ at a time"
    );
    assert_eq!(session.silent_after(sent), Some(sent + Duration::from_secs(2)));
    session.feed(&Message::binary(vec![0xd0, 0x00])).unwrap();
    assert_eq!(all(&mut session), vec![Received::Pong]);
    assert_eq!(session.silent_after(sent), None);
    assert!(session.ping_due(sent, sent + Duration::from_secs(2)));
}

#[test]
fn a_v5_server_disconnect_ends_the_session_with_its_reason() {
    let mut session = connected(Version::V5, &[0x20, 0x03, 0x00, 0x00, 0x00]);
    session.feed(&Message::binary(vec![0xe0, 0x01, 0x8e])).unwrap();
    let Some(Received::Disconnected(reason)) = session.next_received() else {
        panic!("disconnected")
    };
    assert_eq!(reason.kind(), "mqtt_session_taken_over");
    assert_eq!(session.state(), State::Ended);
}

#[test]
fn disconnect_says_whether_to_publish_the_will() {
    let mut session = connected(Version::V5, &[0x20, 0x03, 0x00, 0x00, 0x00]);
    assert_eq!(bytes(&session.disconnect_message(true)), [0xe0, 0x01, 0x04]);
    let mut session = connected(Version::V311, &[0x20, 0x02, 0x00, 0x00]);
    assert_eq!(bytes(&session.disconnect_message(false)), [0xe0, 0x00]);
    assert_eq!(session.state(), State::Disconnecting);
}

/// Through the layer, whatever the connection's own `delivery_stamp`: a delivery's payload
/// stamp is read and cut off before the event is made (its kind judged on the payload as
/// published), a payload that only looks stamped stays whole and untimed, and a 5.0 property
/// stamp is read and stays among the headers.
#[test]
fn the_layer_reads_a_delivery_stamp_and_cuts_a_payload_stamp_off() {
    use crate::protocol::{Decoded, Event};
    use wsfleet_scenario::protocol::mqtt::DeliveryStamp;
    use wsfleet_scenario::FrameKind;

    let decoded = |version: Version, payload: Bytes, properties: Vec<(&str, &str)>| -> Box<Event> {
        let connack: &[u8] = match version {
            Version::V311 => &[0x20, 0x02, 0x00, 0x00],
            Version::V5 => &[0x20, 0x03, 0x00, 0x00, 0x00],
        };
        let mut layer = layer::Connection::new(connected(version, connack), DeliveryStamp::Off);
        let mut delivery = publish("s/1", QoS::AtMostOnce);
        delivery.payload = payload;
        delivery.properties.user_properties = properties
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        let mut out = Vec::new();
        layer.decode(&server(version, Outgoing::Publish(delivery)), &mut out);
        let Some(Decoded::Event(event)) = out.into_iter().next() else {
            panic!("an event")
        };
        event
    };
    let event = decoded(Version::V311, stamp::stamp_payload(&[0xff, 0x00], 1_000), vec![]);
    assert_eq!(
        (&event.body[..], event.kind, event.sent_micros),
        (&[0xff, 0x00][..], FrameKind::Binary, Some(1_000))
    );
    let event = decoded(Version::V311, stamp::stamp_payload(b"21", 5), vec![]);
    assert_eq!(
        (&event.body[..], event.kind, event.sent_micros),
        (&b"21"[..], FrameKind::Text, Some(5))
    );
    let lookalike = Bytes::from_static(b"wsfleet-sent:1764509000123456;x");
    let event = decoded(Version::V311, lookalike.clone(), vec![]);
    assert_eq!((&event.body, event.sent_micros), (&lookalike, None));
    let event = decoded(Version::V5, Bytes::from_static(b"p"), vec![(stamp::PROPERTY, "777")]);
    assert_eq!((&event.body[..], event.sent_micros), (&b"p"[..], Some(777)));
    assert_eq!(event.header(stamp::PROPERTY), Some("777"));
    let event = decoded(Version::V5, Bytes::from_static(b"p"), vec![(stamp::PROPERTY, "soon")]);
    assert_eq!(event.sent_micros, None);
    // Both: the payload stamp is the one read, and comes off.
    let event = decoded(
        Version::V5,
        stamp::stamp_payload(b"p", 9),
        vec![(stamp::PROPERTY, "777")],
    );
    assert_eq!((&event.body[..], event.sent_micros), (&b"p"[..], Some(9)));
}

/// A payload stamp counts toward the server's maximum packet size: a publish that fits
/// without it is refused with it, before anything is sent.
#[test]
fn a_payload_stamp_can_take_a_publish_past_the_maximum_packet_size() {
    // Maximum packet size 40 (0x27).
    let mut session = connected(Version::V5, &[0x20, 0x08, 0x00, 0x00, 0x05, 0x27, 0, 0, 0, 40]);
    let mut fits = publish("t", QoS::AtMostOnce);
    fits.payload = Bytes::from(vec![b'x'; 20]);
    let mut stamped = fits.clone();
    stamped.payload = stamp::stamp_payload(&fits.payload, 1);
    assert!(session
        .publish(fits)
        .unwrap()
        .1
        .is_some_and(|message| bytes(&message).len() <= 40));
    assert_eq!(session.publish(stamped).unwrap_err().kind, "mqtt_packet_too_large");
}
