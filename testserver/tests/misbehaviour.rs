//! Every scripted misbehaviour, checked by what a client observes.

mod common;

use common::*;
use futures_util::SinkExt;
use std::io::ErrorKind;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};
use wsfleet_testserver::Stats;

fn is_connection_reset(item: &Option<Result<Message, WsError>>) -> bool {
    matches!(item, Some(Err(WsError::Io(error))) if error.kind() == ErrorKind::ConnectionReset)
}

#[tokio::test]
async fn delay_holds_each_reply() {
    let server = start_default().await;
    let (mut client, _) = connect(&server, "/echo?delay=300ms").await;
    for payload in ["one", "two"] {
        let sent_at = Instant::now();
        client.send(Message::text(payload)).await.expect("send");
        assert_eq!(recv(&mut client).await, Message::text(payload));
        let elapsed = sent_at.elapsed();
        assert!(
            elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2),
            "reply after {elapsed:?}"
        );
    }
}

#[tokio::test]
async fn close_after_answers_n_messages_then_closes_with_the_code_and_reason() {
    let server = start_default().await;
    let (mut client, _) = connect(&server, "/echo?close_after=2&close_code=4001&close_reason=see+you").await;
    for payload in ["a", "b"] {
        client.send(Message::text(payload)).await.expect("send");
        assert_eq!(recv(&mut client).await, Message::text(payload));
    }
    assert_eq!(recv(&mut client).await, close_message(4001, "see you"));
    // tungstenite replied to the close; the server then ends the stream.
    assert!(next(&mut client).await.is_none());
    let stats = wait_until_closed(&server).await;
    assert_eq!(stats.messages_received, 2);
    assert_eq!(stats.messages_sent, 2);
}

#[tokio::test]
async fn close_after_defaults_to_1000() {
    let server = start_default().await;
    let (mut client, _) = connect(&server, "/echo?close_after=1").await;
    client.send(Message::text("only")).await.expect("send");
    assert_eq!(recv(&mut client).await, Message::text("only"));
    assert_eq!(recv(&mut client).await, close_message(1000, ""));
}

#[tokio::test]
async fn close_on_open_closes_right_after_the_handshake() {
    let server = start_default().await;
    let (mut client, _) = connect(&server, "/echo?close_on_open=4002&close_reason=go+away").await;
    assert_eq!(recv(&mut client).await, close_message(4002, "go away"));
    assert!(next(&mut client).await.is_none());
    let stats = wait_until_closed(&server).await;
    assert_eq!(stats.total_connections, 1);
}

#[tokio::test]
async fn send_on_open_comes_first_then_the_close_on_open() {
    let server = start_default().await;
    let (mut client, _) = connect(
        &server,
        "/echo?send_on_open=%7B%22type%22%3A%22welcome%22%7D&close_on_open=1000",
    )
    .await;
    assert_eq!(recv(&mut client).await, Message::text(r#"{"type":"welcome"}"#));
    assert_eq!(recv(&mut client).await, close_message(1000, ""));
    let stats = wait_until_closed(&server).await;
    assert_eq!(stats.messages_sent, 1);
    assert_eq!(stats.payload_bytes_sent, 18);
}

#[tokio::test]
async fn drop_after_resets_the_connection_without_a_close_frame() {
    let server = start_default().await;
    let (mut client, _) = connect(&server, "/echo?drop_after=2").await;
    client.send(Message::text("a")).await.expect("send");
    assert_eq!(recv(&mut client).await, Message::text("a"));
    client.send(Message::text("b")).await.expect("send");
    assert_eq!(recv(&mut client).await, Message::text("b"));
    let after_drop = next(&mut client).await;
    assert!(is_connection_reset(&after_drop), "expected a reset, got {after_drop:?}");
    let stats = wait_until_closed(&server).await;
    assert_eq!(stats.total_connections, 1);
}

#[tokio::test]
async fn drop_after_0_resets_right_after_the_handshake() {
    let server = start_default().await;
    let (mut client, _) = connect(&server, "/echo?drop_after=0").await;
    let after_drop = next(&mut client).await;
    assert!(is_connection_reset(&after_drop), "expected a reset, got {after_drop:?}");
    wait_until_closed(&server).await;
}

#[tokio::test]
async fn handshake_never_leaves_the_client_waiting() {
    let server = start_default().await;
    let tcp = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    let handshake = tokio_tungstenite::client_async(request(&server, "/echo?handshake=never"), tcp);
    let outcome = tokio::time::timeout(Duration::from_millis(500), handshake).await;
    assert!(outcome.is_err(), "the handshake must not be answered");
    assert_eq!(server.stats(), Stats::default());
}

#[tokio::test]
async fn handshake_status_refuses_with_that_status() {
    let server = start_default().await;
    for status in [503u16, 401] {
        let outcome = try_connect_request(
            server.local_addr(),
            request(&server, &format!("/echo?handshake_status={status}")),
            None,
        )
        .await;
        match outcome {
            Err(WsError::Http(response)) => {
                assert_eq!(response.status().as_u16(), status);
                let body = response.body().as_deref().map(String::from_utf8_lossy);
                let expected = format!("handshake refused by handshake_status={status}\n");
                assert_eq!(body.as_deref(), Some(expected.as_str()));
            }
            other => panic!("expected an http error, got {other:?}"),
        }
    }
    let stats = server.stats();
    assert_eq!(stats.refused_handshakes, 2);
    assert_eq!(stats.total_connections, 0);
}

#[tokio::test]
async fn handshake_delay_holds_the_101() {
    let server = start_default().await;
    let started = Instant::now();
    let (mut client, _) = connect(&server, "/echo?handshake_delay=300ms").await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2),
        "handshake after {elapsed:?}"
    );
    client.send(Message::text("x")).await.expect("send");
    assert_eq!(recv(&mut client).await, Message::text("x"));
}

#[tokio::test]
async fn oversize_exceeds_the_clients_max_message_size() {
    let server = start_default().await;
    let client_config = WebSocketConfig::default().max_message_size(Some(1024));
    let (mut client, _) = try_connect_request(
        server.local_addr(),
        request(&server, "/echo?oversize=4096"),
        Some(client_config),
    )
    .await
    .expect("handshake");
    client.send(Message::text("first")).await.expect("send");
    assert_eq!(recv(&mut client).await, Message::text("first"));
    match next(&mut client).await {
        Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
            assert_eq!((size, max_size), (4096, 1024));
        }
        other => panic!("expected the message to be too long, got {other:?}"),
    }
}

#[tokio::test]
async fn oversize_is_one_binary_message_of_exactly_n_zero_bytes() {
    let server = start_default().await;
    // Larger than one 64 KiB fragment, so the message is reassembled.
    let (mut client, _) = connect(&server, "/echo?oversize=200000").await;
    client.send(Message::text("first")).await.expect("send");
    assert_eq!(recv(&mut client).await, Message::text("first"));
    assert_eq!(recv(&mut client).await, Message::binary(vec![0u8; 200_000]));
    let stats = server.stats();
    assert_eq!(stats.messages_sent, 2);
    assert_eq!(stats.payload_bytes_sent, 200_005);
}

#[tokio::test]
async fn malformed_writes_a_frame_the_client_rejects() {
    let server = start_default().await;
    let (mut client, _) = connect(&server, "/echo?malformed=1").await;
    client.send(Message::text("first")).await.expect("send");
    assert_eq!(recv(&mut client).await, Message::text("first"));
    match next(&mut client).await {
        // The frame has reserved bits and the reserved opcode 0x3; tungstenite
        // checks the opcode first, while parsing the header.
        Some(Err(WsError::Protocol(ProtocolError::InvalidOpcode(3)))) => {}
        other => panic!("expected a protocol error, got {other:?}"),
    }
    drop(client);
    wait_until_closed(&server).await;
}

#[tokio::test]
async fn reply_count_sends_n_copies_and_0_none() {
    let server = start_default().await;
    let (mut client, _) = connect(&server, "/echo?reply_count=3").await;
    client.send(Message::text("m")).await.expect("send");
    for _ in 0..3 {
        assert_eq!(recv(&mut client).await, Message::text("m"));
    }
    // Nothing more: a ping sent now is answered before any fourth copy.
    client
        .send(Message::Ping(Bytes::from_static(b"p")))
        .await
        .expect("ping");
    assert_eq!(recv(&mut client).await, Message::Pong(Bytes::from_static(b"p")));
    assert_eq!(server.stats().messages_sent, 3);

    let (mut silent, _) = connect(&server, "/echo?reply_count=0").await;
    silent.send(Message::text("m")).await.expect("send");
    silent
        .send(Message::Ping(Bytes::from_static(b"p")))
        .await
        .expect("ping");
    assert_eq!(recv(&mut silent).await, Message::Pong(Bytes::from_static(b"p")));
    let stats = server.stats();
    assert_eq!(stats.messages_received, 2);
    assert_eq!(stats.messages_sent, 3);
}

#[tokio::test]
async fn modes_combine_on_the_json_endpoint() {
    let server = start_default().await;
    let (mut client, _) = connect(&server, "/json?reply_count=2&close_after=1&close_code=4000").await;
    client
        .send(Message::text(r#"{"id":1,"type":"ping"}"#))
        .await
        .expect("send");
    let expected = r#"{"id":1,"request":{"id":1,"type":"ping"},"type":"ping_ok"}"#;
    assert_eq!(recv(&mut client).await, Message::text(expected));
    assert_eq!(recv(&mut client).await, Message::text(expected));
    assert_eq!(recv(&mut client).await, close_message(4000, ""));
}

/// The clock is paused and jumps ahead whenever the runtime idles, so the 10 s
/// request-head timeout is checked without waiting 10 s.
#[tokio::test(start_paused = true)]
async fn a_client_that_sends_no_request_head_is_closed_after_10s() {
    let server = start_default().await;
    let mut tcp = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    let started = tokio::time::Instant::now();
    let mut received = Vec::new();
    let read = tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut received);
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("closed within the (virtual) wait")
        .expect("read");
    assert!(received.is_empty(), "nothing is answered: {received:?}");
    assert_eq!(started.elapsed().as_secs(), 10);
    assert_eq!(server.stats(), Stats::default());
}
