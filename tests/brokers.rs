//! The third-party brokers the protocol tests run against (`common/brokers.rs`) start on
//! loopback, speak their protocol over WebSocket, and count what they served: checked here with a
//! plain WebSocket client, so a broken broker set-up shows as itself and not as a protocol failure.

mod common;

use std::time::Duration;

use common::brokers::{GraphQl, Mosquitto, RabbitMq};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const LIMIT: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn open(url: &str, subprotocol: &str) -> Socket {
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_str(subprotocol).expect("header"),
    );
    let (socket, response) = tokio::time::timeout(LIMIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("upgrade within the limit")
        .expect("upgrade");
    assert_eq!(
        response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|value| value.as_bytes()),
        Some(subprotocol.as_bytes()),
        "{url} agrees to {subprotocol}"
    );
    socket
}

/// The next data message (text or binary), skipping pings.
async fn next_data(socket: &mut Socket) -> Vec<u8> {
    loop {
        let message = tokio::time::timeout(LIMIT, socket.next())
            .await
            .expect("a message within the limit")
            .expect("the socket is open")
            .expect("a message");
        match message {
            Message::Text(text) => return text.as_bytes().to_vec(),
            Message::Binary(bytes) => return bytes.to_vec(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// An MQTT 3.1.1 packet: fixed header byte, remaining length (one byte: every packet here is
/// short), body.
fn mqtt_packet(header: u8, body: &[u8]) -> Vec<u8> {
    assert!(body.len() < 128);
    let mut packet = vec![header, body.len() as u8];
    packet.extend_from_slice(body);
    packet
}

fn mqtt_string(text: &str) -> Vec<u8> {
    let mut bytes = (text.len() as u16).to_be_bytes().to_vec();
    bytes.extend_from_slice(text.as_bytes());
    bytes
}

/// CONNECT, SUBSCRIBE to a topic, PUBLISH to it at QoS 0, and the broker delivers it back.
async fn mqtt_round_trip(url: &str) {
    let mut socket = open(url, "mqtt").await;
    let mut connect = mqtt_string("MQTT");
    connect.extend_from_slice(&[4, 0x02, 0, 60]);
    connect.extend(mqtt_string("brokers-check"));
    socket
        .send(Message::binary(mqtt_packet(0x10, &connect)))
        .await
        .expect("send CONNECT");
    assert_eq!(next_data(&mut socket).await, [0x20, 2, 0, 0], "CONNACK, accepted");

    let mut subscribe = vec![0, 1];
    subscribe.extend(mqtt_string("wsfleet/check"));
    subscribe.push(0);
    socket
        .send(Message::binary(mqtt_packet(0x82, &subscribe)))
        .await
        .expect("send SUBSCRIBE");
    assert_eq!(next_data(&mut socket).await, [0x90, 3, 0, 1, 0], "SUBACK, QoS 0");

    let mut publish = mqtt_string("wsfleet/check");
    publish.extend_from_slice(b"hello");
    let publish = mqtt_packet(0x30, &publish);
    socket
        .send(Message::binary(publish.clone()))
        .await
        .expect("send PUBLISH");
    assert_eq!(next_data(&mut socket).await, publish, "the broker delivers the PUBLISH");
    socket
        .send(Message::binary(vec![0xE0, 0]))
        .await
        .expect("send DISCONNECT");
}

#[test]
fn mosquitto_speaks_mqtt_over_websocket() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    runtime().block_on(mqtt_round_trip(&broker.ws_url()));
}

#[test]
fn rabbitmq_speaks_stomp_and_mqtt_over_websocket() {
    let Some(broker) = RabbitMq::start() else {
        return;
    };
    runtime().block_on(async {
        let mut socket = open(&broker.stomp_url(), "v12.stomp").await;
        let frames = [
            "CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\nheart-beat:0,0\n\n\0",
            "SUBSCRIBE\nid:0\ndestination:/queue/wsfleet-check\nack:auto\n\n\0",
            "SEND\ndestination:/queue/wsfleet-check\nreceipt:r1\ncontent-type:text/plain\n\nhello\0",
        ];
        socket.send(Message::text(frames[0])).await.expect("send CONNECT");
        let connected = String::from_utf8(next_data(&mut socket).await).expect("text");
        assert!(connected.starts_with("CONNECTED\n"), "{connected:?}");
        for frame in &frames[1..] {
            socket.send(Message::text(*frame)).await.expect("send a frame");
        }
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let frame = String::from_utf8(next_data(&mut socket).await).expect("text");
            if frame == "\n" {
                continue; // a heart-beat
            }
            seen.push(frame);
        }
        seen.sort();
        assert!(
            seen[0].starts_with("MESSAGE\n") && seen[0].ends_with("\n\nhello\0\n"),
            "{seen:?}"
        );
        assert!(seen[1].starts_with("RECEIPT\nreceipt-id:r1\n"), "{seen:?}");

        mqtt_round_trip(&broker.mqtt_url()).await;
    });
    let queues = broker.ctl(&["list_queues", "name", "messages", "--quiet"]);
    assert!(queues.contains("wsfleet-check"), "rabbitmqctl list_queues: {queues}");
}

#[test]
fn strawberry_speaks_both_graphql_subprotocols_and_counts() {
    let server = GraphQl::start();
    runtime().block_on(async {
        let mut socket = open(&server.ws_url(), "graphql-transport-ws").await;
        let init = r#"{"type":"connection_init"}"#;
        socket.send(Message::text(init)).await.expect("send connection_init");
        assert_eq!(
            next_data(&mut socket).await,
            br#"{"type":"connection_ack","payload":{"server":"strawberry"}}"#
        );
        let subscribe =
            r#"{"id":"1","type":"subscribe","payload":{"query":"subscription { count(to: 3, intervalMs: 5) }"}}"#;
        socket.send(Message::text(subscribe)).await.expect("send subscribe");
        for value in 1..=3 {
            let next: serde_json::Value = serde_json::from_slice(&next_data(&mut socket).await).expect("JSON");
            assert_eq!(next["type"], "next");
            assert_eq!(next["payload"]["data"]["count"], value);
        }
        let complete: serde_json::Value = serde_json::from_slice(&next_data(&mut socket).await).expect("JSON");
        assert_eq!(complete["type"], "complete");

        let mut legacy = open(&server.ws_url(), "graphql-ws").await;
        legacy.send(Message::text(init)).await.expect("send connection_init");
        let start = r#"{"id":"1","type":"start","payload":{"query":"subscription { count(to: 2, intervalMs: 5) }"}}"#;
        legacy.send(Message::text(start)).await.expect("send start");
        let mut data = 0;
        loop {
            let message: serde_json::Value = serde_json::from_slice(&next_data(&mut legacy).await).expect("JSON");
            match message["type"].as_str() {
                Some("connection_ack") | Some("ka") => {}
                Some("data") => data += 1,
                Some("complete") => break,
                other => panic!("unexpected {other:?}: {message}"),
            }
        }
        assert_eq!(data, 2);
    });
    let stats = server.stats();
    assert_eq!(stats["subscriptions"], 2, "{stats}");
    assert_eq!(stats["events"], 5, "{stats}");
    assert_eq!(stats["ended"], 2, "{stats}");
    assert_eq!(stats["connections"], 2, "{stats}");
}
