use bytes::BytesMut;

use super::*;

fn encoded(version: Version, packet: &Outgoing) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(version, packet, &mut out).unwrap();
    out.to_vec()
}

fn read_all(version: Version, bytes: &[u8]) -> Vec<Incoming> {
    let mut reader = Reader::new();
    reader.push(bytes);
    std::iter::from_fn(|| reader.next_packet(version).unwrap()).collect()
}

#[test]
fn connect_3_1_1_has_level_4_flags_will_and_login() {
    let connect = Connect {
        client_id: "vu-1".into(),
        clean: true,
        keep_alive: 30,
        username: Some("u".into()),
        password: Some("p".into()),
        will: Some(Will {
            topic: "w".into(),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            delay: None,
            properties: MessageProperties::default(),
        }),
        ..Connect::default()
    };
    let bytes = encoded(Version::V311, &Outgoing::Connect(connect));
    #[rustfmt::skip]
    let expected = [
        0x10, 30,
        0, 4, b'M', b'Q', b'T', b'T', 4,
        // username, password, will retain, will QoS 1, will, clean session
        0b1110_1110,
        0, 30,
        0, 4, b'v', b'u', b'-', b'1',
        0, 1, b'w', 0, 3, b'b', b'y', b'e',
        0, 1, b'u', 0, 1, b'p',
    ];
    assert_eq!(bytes, expected);
}

#[test]
fn connect_5_carries_its_properties() {
    let connect = Connect {
        client_id: "c".into(),
        clean: false,
        keep_alive: 10,
        session_expiry: Some(300),
        user_properties: vec![("k".into(), "v".into())],
        ..Connect::default()
    };
    let bytes = encoded(Version::V5, &Outgoing::Connect(connect));
    #[rustfmt::skip]
    let expected = [
        0x10, 26,
        0, 4, b'M', b'Q', b'T', b'T', 5,
        0,
        0, 10,
        // properties: session expiry 300, user property k=v
        12, 0x11, 0, 0, 1, 44, 0x26, 0, 1, b'k', 0, 1, b'v',
        0, 1, b'c',
    ];
    assert_eq!(bytes, expected);
}

#[test]
fn packets_spanning_and_sharing_messages_come_out_whole() {
    let publish = Publish {
        topic: "a/b".into(),
        payload: Bytes::from_static(b"hello"),
        qos: QoS::AtLeastOnce,
        packet_id: 7,
        ..Publish::default()
    };
    let mut bytes = encoded(Version::V311, &Outgoing::Publish(publish.clone()));
    bytes.extend([0xd0, 0x00]); // PINGRESP
    bytes.extend([0x40, 0x02, 0x00, 0x09]); // PUBACK 9
                                            // One byte at a time: nothing before each packet is whole.
    let mut reader = Reader::new();
    let mut packets = Vec::new();
    for byte in &bytes {
        reader.push(&[*byte]);
        while let Some(packet) = reader.next_packet(Version::V311).unwrap() {
            packets.push(packet);
        }
    }
    assert_eq!(reader.pending(), 0);
    assert_eq!(
        packets,
        vec![
            Incoming::Publish(publish),
            Incoming::PingResp,
            Incoming::PubAck(Ack {
                packet_id: 9,
                code: 0,
                reason_string: None
            }),
        ]
    );
    // All in one message: the same.
    assert_eq!(read_all(Version::V311, &bytes).len(), 3);
}

#[test]
fn a_long_remaining_length_is_read_across_messages() {
    let payload = vec![b'x'; 20_000];
    let publish = Publish {
        topic: "t".into(),
        payload: Bytes::from(payload),
        ..Publish::default()
    };
    let bytes = encoded(Version::V5, &Outgoing::Publish(publish.clone()));
    assert_eq!(bytes[1] & 0x80, 0x80, "a multi-byte remaining length");
    let mut reader = Reader::new();
    reader.push(&bytes[..2]);
    assert_eq!(reader.next_packet(Version::V5).unwrap(), None);
    reader.push(&bytes[2..]);
    assert_eq!(
        reader.next_packet(Version::V5).unwrap(),
        Some(Incoming::Publish(publish))
    );
}

#[test]
fn v5_publish_properties_round_trip() {
    let properties = MessageProperties {
        user_properties: vec![("sent".into(), "123".into()), ("sent".into(), "again".into())],
        message_expiry: Some(60),
        content_type: Some("text/plain".into()),
        response_topic: Some("replies".into()),
        correlation_data: Some(Bytes::from_static(b"\x01\x02")),
        utf8_payload: true,
    };
    let publish = Publish {
        topic: "t".into(),
        payload: Bytes::from_static(b"p"),
        qos: QoS::ExactlyOnce,
        retain: true,
        packet_id: 3,
        properties,
        ..Publish::default()
    };
    let bytes = encoded(Version::V5, &Outgoing::Publish(publish.clone()));
    assert_eq!(read_all(Version::V5, &bytes), vec![Incoming::Publish(publish)]);
}

#[test]
fn v5_reason_codes_are_read() {
    // CONNACK refused: not authorized, with a reason string.
    let connack = [0x20, 0x09, 0x00, 0x87, 0x06, 0x1f, 0x00, 0x03, b'n', b'o', b'!'];
    let Incoming::ConnAck(read) = &read_all(Version::V5, &connack)[0] else {
        panic!("a CONNACK")
    };
    assert_eq!(read.code, 0x87);
    assert_eq!(read.reason_string.as_deref(), Some("no!"));
    // PUBACK 5: no matching subscribers (a success); PUBREC 6: quota exceeded.
    let acks = [0x40, 0x03, 0x00, 0x05, 0x10, 0x50, 0x03, 0x00, 0x06, 0x97];
    assert_eq!(
        read_all(Version::V5, &acks),
        vec![
            Incoming::PubAck(Ack {
                packet_id: 5,
                code: 0x10,
                reason_string: None
            }),
            Incoming::PubRec(Ack {
                packet_id: 6,
                code: 0x97,
                reason_string: None
            }),
        ]
    );
    // SUBACK: granted QoS 1, then not authorized.
    let suback = [0x90, 0x05, 0x00, 0x02, 0x00, 0x01, 0x87];
    assert_eq!(
        read_all(Version::V5, &suback),
        vec![Incoming::SubAck {
            packet_id: 2,
            codes: vec![1, 0x87],
            reason_string: None
        }]
    );
    // A DISCONNECT with no body is a normal disconnection; one with a reason says it.
    assert_eq!(
        read_all(Version::V5, &[0xe0, 0x00, 0xe0, 0x01, 0x8b, 0xe0, 0x02, 0x98, 0x00]),
        vec![
            Incoming::Disconnect {
                code: 0,
                reason_string: None
            },
            Incoming::Disconnect {
                code: 0x8b,
                reason_string: None
            },
            Incoming::Disconnect {
                code: 0x98,
                reason_string: None
            },
        ]
    );
}

#[test]
fn v3_connack_codes_map_to_v5_names() {
    let Incoming::ConnAck(read) = &read_all(Version::V311, &[0x20, 0x02, 0x00, 0x05])[0] else {
        panic!("a CONNACK")
    };
    assert_eq!(super::super::reason::name(read.code), "not_authorized");
}

#[test]
fn malformed_and_client_packets_are_errors() {
    let mut reader = Reader::new();
    // A CONNACK with a return code 3.1.1 does not have.
    reader.push(&[0x20, 0x02, 0x00, 0x09]);
    let error = reader.next_packet(Version::V311).unwrap_err();
    assert!(error.0.contains("CONNACK"), "{error}");
    // A SUBSCRIBE, which only clients send.
    let subscribe = encoded(
        Version::V311,
        &Outgoing::Subscribe {
            packet_id: 1,
            filters: vec![Filter {
                filter: "a".into(),
                ..Filter::default()
            }],
            user_properties: Vec::new(),
        },
    );
    let mut reader = Reader::new();
    reader.push(&subscribe);
    assert!(reader.next_packet(Version::V311).unwrap_err().0.contains("SUBSCRIBE"));
    // A remaining length past the limit fails before the bytes arrive.
    let mut reader = Reader::new();
    reader.push(&[0x30, 0xff, 0xff, 0xff, 0x7f]);
    assert!(reader.next_packet(Version::V311).unwrap_err().0.contains("limit"));
    // Five length bytes.
    let mut reader = Reader::new();
    reader.push(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]);
    assert!(reader.next_packet(Version::V311).is_err());
}

#[test]
fn a_topic_alias_the_client_did_not_allow_is_an_error() {
    // PUBLISH QoS 0, topic "t", properties: topic alias 1.
    let bytes = [0x30, 0x08, 0x00, 0x01, b't', 0x03, 0x23, 0x00, 0x01, b'p'];
    let mut reader = Reader::new();
    reader.push(&bytes);
    assert!(reader.next_packet(Version::V5).unwrap_err().0.contains("topic alias"));
}
