//! The broadcast and json endpoints, and the plain HTTP side of the port.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{Bytes, Message};
use wsfleet_testserver::Stats;

#[tokio::test]
async fn broadcast_reaches_every_client_in_the_room_including_the_sender() {
    let server = start_default().await;
    let (mut alice, _) = connect(&server, "/broadcast/lobby").await;
    let (mut bob, _) = connect(&server, "/broadcast/lobby").await;
    let (mut carol, _) = connect(&server, "/broadcast/lobby").await;
    let (mut outsider, _) = connect(&server, "/broadcast/other").await;

    alice.send(Message::text("hi all")).await.expect("send");
    for client in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(recv(client).await, Message::text("hi all"));
    }
    bob.send(Message::binary(vec![1u8, 2, 3])).await.expect("send");
    for client in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(recv(client).await, Message::binary(vec![1u8, 2, 3]));
    }
    // The other room saw none of it: its first message is its own.
    outsider.send(Message::text("anyone?")).await.expect("send");
    assert_eq!(recv(&mut outsider).await, Message::text("anyone?"));

    let stats = server.stats();
    assert_eq!(stats.messages_received, 3);
    assert_eq!(stats.messages_sent, 7);
    assert_eq!(stats.payload_bytes_sent, 3 * 6 + 3 * 3 + 7);
    assert_eq!(server.broadcast_messages_dropped(), 0);
}

#[tokio::test]
async fn broadcast_with_echo_self_false_skips_the_sender() {
    let server = start_default().await;
    let (mut alice, _) = connect(&server, "/broadcast/quiet?echo_self=false").await;
    let (mut bob, _) = connect(&server, "/broadcast/quiet").await;
    let (mut carol, _) = connect(&server, "/broadcast/quiet").await;

    alice.send(Message::text("from alice")).await.expect("send");
    assert_eq!(recv(&mut bob).await, Message::text("from alice"));
    assert_eq!(recv(&mut carol).await, Message::text("from alice"));
    // Alice's first delivery is Bob's message, so hers never came back.
    bob.send(Message::text("from bob")).await.expect("send");
    assert_eq!(recv(&mut alice).await, Message::text("from bob"));
    assert_eq!(recv(&mut bob).await, Message::text("from bob"));
    assert_eq!(recv(&mut carol).await, Message::text("from bob"));
}

#[tokio::test]
async fn broadcast_rooms_can_be_rejoined_after_everyone_left() {
    let server = start_default().await;
    let (mut first, _) = connect(&server, "/broadcast/again").await;
    first.close(None).await.expect("close");
    wait_until_closed(&server).await;
    let (mut second, _) = connect(&server, "/broadcast/again").await;
    second.send(Message::text("new room")).await.expect("send");
    assert_eq!(recv(&mut second).await, Message::text("new room"));
}

async fn json_reply(client: &mut Client, request: &str) -> Value {
    client.send(Message::text(request)).await.expect("send");
    match recv(client).await {
        Message::Text(text) => serde_json::from_str(&text).expect("reply is json"),
        other => panic!("expected a text reply, got {other:?}"),
    }
}

#[tokio::test]
async fn json_endpoint_answers_requests_by_type_and_id() {
    let server = start_default().await;
    let (mut client, _) = connect(&server, "/json").await;
    assert_eq!(
        json_reply(&mut client, r#"{"id":"42","type":"msg","body":"hi"}"#).await,
        json!({"id": "42", "type": "msg_ok", "request": {"id": "42", "type": "msg", "body": "hi"}})
    );
    assert_eq!(
        json_reply(&mut client, r#"{"type":"join","room":"3","id":1}"#).await,
        json!({"type": "joined", "room": "3", "id": 1})
    );
    assert_eq!(
        json_reply(&mut client, r#"{"body":"no type"}"#).await,
        json!({"id": null, "type": "reply", "request": {"body": "no type"}})
    );
    let error = json_reply(&mut client, "not json").await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"], "invalid json: expected ident at line 1 column 2");

    client
        .send(Message::Binary(Bytes::from_static(b"{}")))
        .await
        .expect("send");
    match recv(&mut client).await {
        Message::Text(text) => assert_eq!(
            serde_json::from_str::<Value>(&text).expect("json"),
            json!({"type": "error", "error": "binary messages are not part of the /json protocol; send json objects as text messages"})
        ),
        other => panic!("expected a text reply, got {other:?}"),
    }
}

#[tokio::test]
async fn stats_and_healthz_are_served_over_plain_http() {
    let server = start_default().await;
    let (mut client, _) = connect(&server, "/echo").await;
    client.send(Message::text("abc")).await.expect("send");
    assert_eq!(recv(&mut client).await, Message::text("abc"));

    let response = http_get(server.local_addr(), "/stats").await;
    let (head, body) = split_response(&response);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Type: application/json\r\n"), "{head}");
    let stats: Stats = serde_json::from_str(body).expect("stats json");
    assert_eq!(
        stats,
        Stats {
            open_connections: 1,
            total_connections: 1,
            refused_handshakes: 0,
            messages_received: 1,
            messages_sent: 1,
            payload_bytes_received: 3,
            payload_bytes_sent: 3,
            ..Stats::default()
        }
    );

    let response = http_get(server.local_addr(), "/healthz").await;
    let (head, body) = split_response(&response);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, "ok\n");
    assert_eq!(server.stats().refused_handshakes, 0, "plain endpoints are not refusals");
}

#[tokio::test]
async fn other_plain_requests_get_400_saying_an_upgrade_is_expected() {
    let server = start_default().await;
    let response = http_get(server.local_addr(), "/echo").await;
    let (head, body) = split_response(&response);
    assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
    assert_eq!(
        body,
        "this is a websocket server: send GET with `Upgrade: websocket` \
         (plain http serves GET /stats, GET /healthz, POST /login and /http/echo)\n"
    );
    assert_eq!(server.stats().refused_handshakes, 1);
}

#[tokio::test]
async fn invalid_upgrades_get_400_with_the_reason() {
    let server = start_default().await;
    let upgrade = |extra: &str| {
        format!("GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}\r\n")
    };
    let cases = [
        (
            upgrade("Sec-WebSocket-Version: 13\r\n"),
            "missing Sec-WebSocket-Key header\n",
        ),
        (
            upgrade("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n"),
            "unsupported Sec-WebSocket-Version \"8\"; this server speaks version 13\n",
        ),
        (
            upgrade("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
                .replace("/echo", "/echo?delay=soon"),
            "delay=\"soon\" is not a duration; write an integer with a unit, e.g. 250ms or 2s\n",
        ),
    ];
    for (request, expected_body) in &cases {
        let response = raw_exchange(server.local_addr(), request.as_bytes()).await;
        let (head, body) = split_response(&response);
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert_eq!(body, *expected_body);
    }
    let stats = server.stats();
    assert_eq!(stats.refused_handshakes, 3);
    assert_eq!(stats.total_connections, 0);
}
