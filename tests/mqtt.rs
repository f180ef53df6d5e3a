//! MQTT 3.1.1 and 5.0 over WebSocket against real brokers (`common/brokers.rs`): the agent's
//! MQTT session and codec (`wsfleet_agent::protocol::mqtt`) speak to mosquitto and to RabbitMQ's
//! Web-MQTT over plain WebSockets, and what they read is checked against what was sent. The
//! session's own answers (PUBACK, PUBREC, PUBREL, PUBCOMP) go out as it asks; a broker that did
//! not get them would redeliver or stall, which the exact counts below would show.

mod common;
// Not in `common`: it links the agent crate into every test that uses `common`.
#[path = "common/mqtt.rs"]
mod mqtt;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::brokers::{Mosquitto, RabbitMq};
use futures_util::StreamExt;
use mqtt::{Client, LIMIT};
use tokio_tungstenite::tungstenite::Message;
use wsfleet_agent::protocol::mqtt::{Connect, Filter, MessageProperties, Publish, QoS, Received, State, Version, Will};

/// Messages each case publishes per QoS.
const SENT: usize = 20;

fn message(topic: &str, payload: String, qos: QoS) -> Publish {
    Publish {
        topic: topic.into(),
        payload: Bytes::from(payload),
        qos,
        ..Publish::default()
    }
}

#[test]
fn mqtt_sessions_against_mosquitto() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let url = broker.ws_url();
        for version in [Version::V311, Version::V5] {
            every_qos_both_ways_through_a_wildcard(&url, version).await;
            retained_messages_and_unsubscribe(&url, version).await;
            keep_alive_over_a_quiet_session(&url, version).await;
            the_will_of_a_dropped_connection(&url, version).await;
        }
        v5_properties_and_reason_codes(&url).await;
    });
}

/// One publisher sends SENT messages at each QoS to topics under a `+` filter subscribed at
/// QoS 2: every QoS 1 publish gets its PUBACK and every QoS 2 one its PUBCOMP, exactly once;
/// the subscriber gets each message once, whole, at the QoS it was published with, and its
/// session answered every QoS 1 and 2 delivery (one PUBACK per QoS 1 delivery, PUBREC and
/// PUBCOMP per QoS 2 one), or mosquitto would hold the rest back.
async fn every_qos_both_ways_through_a_wildcard(url: &str, version: Version) {
    let mut subscriber = Client::connected(url, version, &format!("sub-{version:?}")).await;
    assert_eq!(
        subscriber.subscribe(&[("fleet/+/data", QoS::ExactlyOnce)]).await,
        vec![QoS::ExactlyOnce]
    );
    let mut publisher = Client::connected(url, version, &format!("pub-{version:?}")).await;
    let mut waiting = std::collections::BTreeMap::new();
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        for index in 0..SENT {
            let topic = format!("fleet/{}/data", qos as u8);
            let id = publisher
                .publish(message(&topic, format!("{index} at {qos:?}"), qos))
                .await;
            if qos != QoS::AtMostOnce {
                assert!(
                    waiting.insert(id, qos).is_none(),
                    "packet id {id} reused while in flight"
                );
            }
        }
    }
    let mut acknowledged = [0usize; 3];
    while !waiting.is_empty() {
        match publisher.next().await {
            Received::Published {
                packet_id,
                qos,
                failure: None,
            } => {
                assert_eq!(waiting.remove(&packet_id), Some(qos));
                acknowledged[qos as usize] += 1;
            }
            other => panic!("an acknowledgement, not {other:?}"),
        }
    }
    assert_eq!(acknowledged, [0, SENT, SENT]);
    assert_eq!(publisher.replies[6], SENT, "one PUBREL per QoS 2 publish");
    // MQTT 5.0: mosquitto's receive maximum is 20, so half the QoS 1 and 2 publishes waited
    // for a slot and went as replies.
    let held = match version {
        Version::V311 => 0,
        Version::V5 => SENT,
    };
    assert_eq!(publisher.replies[3], held);
    assert_eq!(publisher.session.publishes_in_flight(), 0);

    let mut delivered = [0usize; 3];
    for _ in 0..3 * SENT {
        let Received::Message(delivery) = subscriber.next().await else {
            panic!("a delivery")
        };
        let qos = delivery.qos as usize;
        assert_eq!(delivery.topic, format!("fleet/{qos}/data"));
        assert_eq!(
            delivery.payload,
            format!("{} at {:?}", delivered[qos], delivery.qos).as_bytes()
        );
        assert!(!delivery.retain);
        delivered[qos] += 1;
    }
    assert_eq!(delivered, [SENT; 3]);
    subscriber.nothing_for(Duration::from_millis(300)).await;
    assert_eq!(
        subscriber.replies[4..8],
        [SENT, SENT, 0, SENT],
        "PUBACK per QoS 1, PUBREC and PUBCOMP per QoS 2"
    );
}

/// A retained message reaches a later subscriber with the retain flag; after UNSUBSCRIBE
/// nothing more arrives; an empty retained message clears it.
async fn retained_messages_and_unsubscribe(url: &str, version: Version) {
    let topic = format!("retained/{version:?}");
    let mut publisher = Client::connected(url, version, &format!("retainer-{version:?}")).await;
    let mut retained = message(&topic, "kept".into(), QoS::AtLeastOnce);
    retained.retain = true;
    publisher.publish(retained).await;
    assert!(matches!(
        publisher.next().await,
        Received::Published { failure: None, .. }
    ));

    let mut late = Client::connected(url, version, &format!("late-{version:?}")).await;
    assert_eq!(
        late.subscribe(&[(topic.as_str(), QoS::AtLeastOnce)]).await,
        vec![QoS::AtLeastOnce]
    );
    let Received::Message(delivery) = late.next().await else {
        panic!("the retained message")
    };
    assert!(delivery.retain);
    assert_eq!(delivery.payload, &b"kept"[..]);

    let (id, unsubscribe) = late
        .session
        .unsubscribe(vec![topic.clone()], Vec::new())
        .expect("unsubscribe");
    late.send(unsubscribe).await;
    assert!(
        matches!(late.next().await, Received::Unsubscribed { packet_id, failures } if packet_id == id && failures.is_empty())
    );
    publisher
        .publish(message(&topic, "after".into(), QoS::AtMostOnce))
        .await;
    late.nothing_for(Duration::from_millis(300)).await;

    let mut clear = message(&topic, String::new(), QoS::AtLeastOnce);
    clear.retain = true;
    publisher.publish(clear).await;
    assert!(matches!(
        publisher.next().await,
        Received::Published { failure: None, .. }
    ));
    let mut later = Client::connected(url, version, &format!("later-{version:?}")).await;
    later.subscribe(&[(topic.as_str(), QoS::AtMostOnce)]).await;
    later.nothing_for(Duration::from_millis(300)).await;
}

/// Keep-alive of 1 s over 3.5 s of otherwise silent session: the client sends PINGREQ each
/// second it sent nothing else, every one is answered, the server never counts as silent, and
/// the session is still usable at the end (mosquitto closes a client quiet for 1.5 keep-alives).
async fn keep_alive_over_a_quiet_session(url: &str, version: Version) {
    let connect = Connect {
        client_id: format!("quiet-{version:?}"),
        clean: true,
        keep_alive: 1,
        ..Connect::default()
    };
    let (mut client, verdict) = Client::connect(url, version, connect).await;
    assert_eq!(verdict, Received::Connected { session_present: false });
    assert_eq!(client.session.keep_alive(), Some(Duration::from_secs(1)));
    let start = Instant::now();
    let end = start + Duration::from_millis(3500);
    let mut last_sent = start;
    let (mut pings, mut pongs) = (0, 0);
    while Instant::now() < end {
        let wake = client
            .session
            .silent_after(last_sent)
            .unwrap_or(last_sent + Duration::from_secs(1))
            .min(end);
        if let Ok(message) = tokio::time::timeout_at(wake.into(), client.socket.next()).await {
            let message = message.expect("the socket is open").expect("a message");
            client.session.feed(&message).expect("well-formed packets");
            while let Some(received) = client.session.next_received() {
                assert_eq!(received, Received::Pong);
                pongs += 1;
            }
        }
        let now = Instant::now();
        if let Some(silent) = client.session.silent_after(last_sent) {
            assert!(now < silent, "no PINGRESP within the keep-alive");
        }
        if client.session.ping_due(last_sent, now) {
            let ping = client.session.ping_message();
            client.send(ping).await;
            last_sent = now;
            pings += 1;
        }
    }
    assert_eq!(pings, 3, "one PINGREQ a second over 3.5 s");
    assert!(
        (pings - 1..=pings).contains(&pongs),
        "{pongs} PINGRESP for {pings} PINGREQ"
    );
    assert_eq!(
        client.subscribe(&[("quiet", QoS::AtMostOnce)]).await,
        vec![QoS::AtMostOnce]
    );
}

/// A connection with a will, dropped without DISCONNECT: mosquitto publishes the will to a
/// subscriber; one that says DISCONNECT leaves no will.
async fn the_will_of_a_dropped_connection(url: &str, version: Version) {
    let topic = format!("wills/{version:?}");
    let mut watcher = Client::connected(url, version, &format!("watcher-{version:?}")).await;
    watcher.subscribe(&[(topic.as_str(), QoS::AtLeastOnce)]).await;
    for drop_it in [false, true] {
        let connect = Connect {
            client_id: format!("mortal-{version:?}-{drop_it}"),
            clean: true,
            keep_alive: 30,
            will: Some(Will {
                topic: topic.clone(),
                payload: Bytes::from_static(b"gone"),
                qos: QoS::AtLeastOnce,
                retain: false,
                delay: None,
                properties: MessageProperties::default(),
            }),
            ..Connect::default()
        };
        let (mut mortal, verdict) = Client::connect(url, version, connect).await;
        assert_eq!(verdict, Received::Connected { session_present: false });
        if drop_it {
            drop(mortal);
            let Received::Message(will) = watcher.next().await else {
                panic!("the will")
            };
            assert_eq!(will.payload, &b"gone"[..]);
        } else {
            let goodbye = mortal.session.disconnect_message(false);
            mortal.send(goodbye).await;
            assert_eq!(mortal.session.state(), State::Disconnecting);
            let _ = mortal.socket.close(None).await;
            watcher.nothing_for(Duration::from_millis(300)).await;
        }
    }
}

/// MQTT 5.0: user properties, message expiry and content type travel to the subscriber; a
/// publish nobody subscribes to is acknowledged with `no_matching_subscribers`, a success; a
/// subscription with no_local does not get its own publishes back; a server-assigned client
/// id is read.
async fn v5_properties_and_reason_codes(url: &str) {
    let mut client = Client::connected(url, Version::V5, "props").await;
    client.subscribe(&[("props/#", QoS::AtLeastOnce)]).await;
    let properties = MessageProperties {
        user_properties: vec![("sent-at".into(), "12345".into()), ("vu".into(), "7".into())],
        message_expiry: Some(60),
        content_type: Some("text/plain".into()),
        ..MessageProperties::default()
    };
    let mut publish = message("props/a", "with properties".into(), QoS::AtLeastOnce);
    publish.properties = properties.clone();
    client.publish(publish).await;
    let (mut delivered, mut acknowledged) = (None, false);
    while delivered.is_none() || !acknowledged {
        match client.next().await {
            Received::Message(delivery) => delivered = Some(delivery),
            Received::Published { failure: None, .. } => acknowledged = true,
            other => panic!("{other:?}"),
        }
    }
    let delivered = delivered.expect("delivered");
    assert_eq!(delivered.properties.user_properties, properties.user_properties);
    assert_eq!(delivered.properties.content_type, properties.content_type);
    let expiry = delivered.properties.message_expiry.expect("the expiry, counted down");
    assert!((59..=60).contains(&expiry), "{expiry}");

    client
        .publish(message("nobody/listens", "x".into(), QoS::AtLeastOnce))
        .await;
    let Received::Published { failure, .. } = client.next().await else {
        panic!("a PUBACK")
    };
    assert_eq!(failure, None, "no_matching_subscribers is a success code");

    let (_, message_) = client
        .session
        .subscribe(
            vec![Filter {
                filter: "own/topic".into(),
                qos: QoS::AtMostOnce,
                no_local: true,
                ..Filter::default()
            }],
            Vec::new(),
        )
        .expect("subscribe");
    client.send(message_).await;
    assert!(matches!(client.next().await, Received::Subscribed { .. }));
    client
        .publish(message("own/topic", "mine".into(), QoS::AtMostOnce))
        .await;
    client.nothing_for(Duration::from_millis(300)).await;

    let (anonymous, verdict) = Client::connect(
        url,
        Version::V5,
        Connect {
            clean: true,
            ..Connect::default()
        },
    )
    .await;
    assert_eq!(verdict, Received::Connected { session_present: false });
    assert!(anonymous.session.assigned_client_id().is_some_and(|id| !id.is_empty()));
}

/// Mosquitto with a password file: a wrong password, or none, is refused in the CONNACK with a
/// reason code (the session ends Refused); the right one connects.
#[test]
fn mqtt_logins_against_mosquitto() {
    let Some(broker) = Mosquitto::start_with_login("fleet", "s3cret") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let url = broker.ws_url();
        let login = |password: Option<&str>| Connect {
            client_id: "login".into(),
            clean: true,
            keep_alive: 30,
            username: password.map(|_| "fleet".to_owned()),
            password: password.map(str::to_owned),
            ..Connect::default()
        };
        for (version, expected) in [
            (Version::V311, "mqtt_not_authorized"),
            (Version::V5, "mqtt_not_authorized"),
        ] {
            for password in [Some("wrong"), None] {
                let (client, verdict) = Client::connect(&url, version, login(password)).await;
                let Received::Refused(reason) = verdict else {
                    panic!("refused, not {verdict:?}")
                };
                assert_eq!(reason.kind(), expected, "{version:?}, password {password:?}: {reason}");
                assert_eq!(client.session.state(), State::Refused);
            }
            let (_, verdict) = Client::connect(&url, version, login(Some("s3cret"))).await;
            assert_eq!(verdict, Received::Connected { session_present: false });
        }
    });
}

#[test]
fn mqtt_sessions_against_rabbitmq() {
    let Some(broker) = RabbitMq::start() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let url = broker.mqtt_url();
        let guest = |client_id: &str, password: &str| Connect {
            client_id: client_id.into(),
            clean: true,
            keep_alive: 30,
            username: Some("guest".into()),
            password: Some(password.into()),
            ..Connect::default()
        };
        // A wrong password: RabbitMQ 3.10 sends no CONNACK; it closes the WebSocket (1002,
        // "unauthenticated") while the session waits for one.
        let mut refused = Client::open(&url, Version::V311, guest("intruder", "wrong")).await;
        let closed = tokio::time::timeout(LIMIT, refused.socket.next())
            .await
            .expect("an answer within the limit");
        let Some(Ok(Message::Close(Some(frame)))) = closed else {
            panic!("a close frame, not {closed:?}")
        };
        assert_eq!(frame.reason.as_str(), "unauthenticated");
        assert_eq!(refused.session.state(), State::Connecting);

        let (mut subscriber, verdict) = Client::connect(&url, Version::V311, guest("rabbit-sub", "guest")).await;
        assert_eq!(verdict, Received::Connected { session_present: false });
        assert_eq!(
            subscriber.subscribe(&[("rabbit/#", QoS::AtLeastOnce)]).await,
            vec![QoS::AtLeastOnce]
        );
        let (mut publisher, _) = Client::connect(&url, Version::V311, guest("rabbit-pub", "guest")).await;
        for index in 0..SENT {
            publisher
                .publish(message(
                    &format!("rabbit/{index}"),
                    format!("m{index}"),
                    QoS::AtLeastOnce,
                ))
                .await;
        }
        for _ in 0..SENT {
            assert!(matches!(
                publisher.next().await,
                Received::Published { failure: None, .. }
            ));
        }
        let mut payloads = Vec::new();
        for _ in 0..SENT {
            let Received::Message(delivery) = subscriber.next().await else {
                panic!("a delivery")
            };
            assert_eq!(delivery.topic, format!("rabbit/{}", payloads.len()));
            payloads.push(String::from_utf8(delivery.payload.to_vec()).expect("UTF-8"));
        }
        assert_eq!(payloads, (0..SENT).map(|index| format!("m{index}")).collect::<Vec<_>>());
        subscriber.nothing_for(Duration::from_millis(300)).await;
        assert_eq!(subscriber.replies[4], SENT, "one PUBACK per QoS 1 delivery");
    });
}
