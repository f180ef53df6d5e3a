//! The echo endpoint, exact stats, subprotocols, session ids, and the protocol
//! failures the server reports with close codes.

mod common;

use common::*;
use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use wsfleet_testserver::{Config, Stats};

#[tokio::test]
async fn echo_returns_text_and_binary_with_the_same_payload() {
    let server = start_default().await;
    let (mut client, _) = connect(&server, "/echo").await;
    let large: Vec<u8> = (0..100_000u32).map(|index| (index % 251) as u8).collect();
    let messages = [
        Message::text("hello"),
        Message::text(""),
        Message::text("héllo wörld ✓"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::binary(large),
    ];
    for message in messages {
        client.send(message.clone()).await.expect("send");
        assert_eq!(recv(&mut client).await, message);
    }
    // The root path and unknown paths echo too.
    for path in ["/", "/some/other/path"] {
        let (mut client, _) = connect(&server, path).await;
        client.send(Message::text("ping")).await.expect("send");
        assert_eq!(recv(&mut client).await, Message::text("ping"));
    }
}

#[tokio::test]
async fn pings_get_pongs_and_a_client_close_is_answered() {
    let server = start_default().await;
    let (mut client, _) = connect(&server, "/").await;
    client
        .send(Message::Ping(Bytes::from_static(b"are you there")))
        .await
        .expect("send ping");
    assert_eq!(
        recv(&mut client).await,
        Message::Pong(Bytes::from_static(b"are you there"))
    );
    client.send(close_message(1000, "bye")).await.expect("send close");
    assert_eq!(recv(&mut client).await, close_message(1000, "bye"));
    assert!(next(&mut client).await.is_none());
    let stats = wait_until_closed(&server).await;
    assert_eq!(stats.messages_received, 0, "control frames are not messages");
}

#[tokio::test]
async fn stats_count_connections_and_messages_exactly() {
    let server = start_default().await;
    assert_eq!(server.stats(), Stats::default());
    let (mut first, _) = connect(&server, "/echo").await;
    let (mut second, _) = connect(&server, "/echo").await;
    for (client, payloads) in [(&mut first, ["a", "bb", "ccc"]), (&mut second, ["dddd", "", "e"])] {
        for payload in payloads {
            client.send(Message::text(payload)).await.expect("send");
            assert_eq!(recv(client).await, Message::text(payload));
        }
    }
    assert_eq!(
        server.stats(),
        Stats {
            open_connections: 2,
            total_connections: 2,
            refused_handshakes: 0,
            messages_received: 6,
            messages_sent: 6,
            payload_bytes_received: 11,
            payload_bytes_sent: 11,
            ..Stats::default()
        }
    );

    first.close(None).await.expect("close first");
    let after_first = wait_for_stats(&server, |stats| stats.open_connections == 1).await;
    assert_eq!(after_first.total_connections, 2);
    // The second client just disappears: the count must still go down.
    drop(second);
    let stats = wait_until_closed(&server).await;
    assert_eq!(
        stats,
        Stats {
            open_connections: 0,
            total_connections: 2,
            refused_handshakes: 0,
            messages_received: 6,
            messages_sent: 6,
            payload_bytes_received: 11,
            payload_bytes_sent: 11,
            ..Stats::default()
        }
    );
}

/// Pipelined messages that arrive together are answered together: the 16
/// echoes of 16 frames sent in one write leave in one write, so the client's
/// first read after they start arriving holds all of them. (Answered one write
/// each, the first read would usually hold only the first few.) The counts are
/// exact once the client has seen the echoes.
#[tokio::test]
async fn pipelined_messages_are_answered_in_one_write() {
    const IN_FLIGHT: usize = 16;
    const ROUNDS: u64 = 20;
    let server = start_default().await;
    let (mut client, _) = connect(&server, "/echo").await;
    let payload = "x".repeat(64);
    // An unmasked server frame: 2 header bytes and the payload.
    let echoes_len = IN_FLIGHT * (2 + payload.len());
    let mut buffer = vec![0u8; 2 * echoes_len];
    for round in 0..ROUNDS {
        // The client's write buffer (128 KiB by default) holds all 16 until the flush.
        for _ in 0..IN_FLIGHT {
            client.feed(Message::text(payload.as_str())).await.expect("feed");
        }
        client.flush().await.expect("one write of 16 frames");
        let tcp = client.get_ref();
        let read = tokio::time::timeout(WAIT, async {
            loop {
                tcp.readable().await?;
                match tcp.try_read(&mut buffer) {
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                    other => return other,
                }
            }
        })
        .await
        .expect("echoes within the wait")
        .expect("read");
        assert_eq!(read, echoes_len, "round {round}: the first read holds every echo");
        for frame in buffer[..read].chunks(2 + payload.len()) {
            assert_eq!(frame[..2], [0x81, 64]);
            assert_eq!(&frame[2..], payload.as_bytes());
        }
    }
    let sent = ROUNDS * IN_FLIGHT as u64;
    let stats = server.stats();
    assert_eq!((stats.messages_received, stats.messages_sent), (sent, sent));
    assert_eq!(stats.payload_bytes_sent, sent * 64);
}

#[tokio::test]
async fn the_first_offered_supported_subprotocol_is_selected() {
    let server = start(Config {
        subprotocols: vec!["chat.v1".to_owned(), "chat.v2".to_owned()],
        ..Config::default()
    })
    .await;
    let cases = [
        (Some("chat.v2, chat.v1"), Some("chat.v2")),
        (Some("json, chat.v1"), Some("chat.v1")),
        (None, None),
    ];
    for (offered, expected) in cases {
        let mut request = request(&server, "/echo");
        if let Some(offered) = offered {
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", offered.parse().expect("header value"));
        }
        let (_client, response) = try_connect_request(server.local_addr(), request, None)
            .await
            .expect("handshake succeeds");
        assert_eq!(
            header(&response, "Sec-WebSocket-Protocol"),
            expected,
            "offered {offered:?}"
        );
    }

    // With no match the server still upgrades, without the header (tungstenite
    // clients then refuse the connection themselves, so look at the raw bytes).
    let request = b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: json\r\n\r\n";
    let mut tcp = TcpStream::connect(server.local_addr()).await.expect("connect");
    tcp.write_all(request).await.expect("write");
    let expected_head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nX-Session-Id: 4\r\n\r\n";
    let mut received = vec![0u8; expected_head.len()];
    tokio::time::timeout(WAIT, tcp.read_exact(&mut received))
        .await
        .expect("answer within the wait")
        .expect("read");
    assert_eq!(String::from_utf8_lossy(&received), expected_head);
}

#[tokio::test]
async fn every_handshake_carries_a_session_id_counting_from_1() {
    let server = start_default().await;
    for expected in ["1", "2", "3"] {
        let (_client, response) = connect(&server, "/echo").await;
        assert_eq!(header(&response, "X-Session-Id"), Some(expected));
    }
    // Refused handshakes carry the next id too.
    let refused = try_connect_request(server.local_addr(), request(&server, "/?handshake_status=503"), None).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let id = response.headers().get("X-Session-Id").map(|value| value.as_bytes());
            assert_eq!(id, Some(&b"4"[..]));
        }
        other => panic!("expected an http error, got {other:?}"),
    }
}

#[tokio::test]
async fn frames_sent_right_behind_the_request_head_are_not_lost() {
    let server = start_default().await;
    let mut tcp = TcpStream::connect(server.local_addr()).await.expect("connect");
    // A masked text frame "hi" (mask 1,2,3,4) in the same write as the head.
    let mut bytes = b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n"
        .to_vec();
    bytes.extend_from_slice(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
    tcp.write_all(&bytes).await.expect("write");

    let expected_head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nX-Session-Id: 1\r\n\r\n";
    let mut received = vec![0u8; expected_head.len() + 4];
    tokio::time::timeout(WAIT, tcp.read_exact(&mut received))
        .await
        .expect("answer within the wait")
        .expect("read");
    assert_eq!(&received[..expected_head.len()], expected_head.as_bytes());
    assert_eq!(&received[expected_head.len()..], [0x81, 0x02, b'h', b'i']);
}

#[tokio::test]
async fn a_message_above_max_message_size_closes_with_1009() {
    let server = start(Config {
        max_message_size: 1024,
        ..Config::default()
    })
    .await;
    let (mut client, _) = connect(&server, "/echo").await;
    client
        .send(Message::binary(vec![7u8; 1024]))
        .await
        .expect("send at the limit");
    assert_eq!(recv(&mut client).await, Message::binary(vec![7u8; 1024]));
    client
        .send(Message::binary(vec![7u8; 1025]))
        .await
        .expect("send above the limit");
    assert_eq!(recv(&mut client).await, close_message(1009, "message too big"));
    wait_until_closed(&server).await;
}

#[tokio::test]
async fn invalid_utf8_in_a_text_message_closes_with_1007() {
    let server = start_default().await;
    let (mut client, _) = connect(&server, "/echo").await;
    let invalid_text = Frame::message(Bytes::from_static(&[0xff, 0xfe]), OpCode::Data(Data::Text), true);
    client.send(Message::Frame(invalid_text)).await.expect("send raw frame");
    assert_eq!(
        recv(&mut client).await,
        close_message(1007, "invalid utf-8 in a text message")
    );
    wait_until_closed(&server).await;
}
