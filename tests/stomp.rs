//! STOMP 1.2 over WebSocket against a real RabbitMQ (`common/brokers.rs`): the agent's STOMP
//! session and codec (`wsfleet_agent::protocol::stomp`) speak to the broker over a plain
//! WebSocket, and what they read is checked against what was sent and what the broker counts.
//! One broker for the whole file (it takes 10-16 s to boot): its cases run in one test.

mod common;

use std::time::{Duration, Instant};

use common::brokers::RabbitMq;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsfleet_agent::protocol::stomp::frame::Frame;
use wsfleet_agent::protocol::stomp::{heartbeat_message, to_message, ConnectOptions, Received, Session, State};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const LIMIT: Duration = Duration::from_secs(10);

/// Messages each case sends.
const SENT: usize = 20;

async fn open(url: &str) -> Socket {
    let mut request = url.into_client_request().expect("request");
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("v12.stomp"));
    let (socket, _) = tokio::time::timeout(LIMIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("upgrade within the limit")
        .expect("upgrade");
    socket
}

/// Reads messages into the session until it has something to say; counts the WebSocket
/// messages read.
async fn next(socket: &mut Socket, session: &mut Session, deadline: Instant) -> Received {
    loop {
        if let Some(received) = session.next_received() {
            return received;
        }
        let message = tokio::time::timeout_at(deadline.into(), socket.next())
            .await
            .expect("a frame before the deadline")
            .expect("the socket is open")
            .expect("a message");
        session.feed(&message).expect("well-formed frames");
    }
}

/// The next frame that is not a heart-beat; heart-beats are counted in `beats`.
async fn next_frame(socket: &mut Socket, session: &mut Session, beats: &mut usize) -> Received {
    let deadline = Instant::now() + LIMIT;
    loop {
        match next(socket, session, deadline).await {
            Received::Heartbeat => *beats += 1,
            other => return other,
        }
    }
}

fn options(passcode: &str, heartbeat: Option<Duration>) -> ConnectOptions {
    ConnectOptions {
        host: "/".into(),
        login: Some("guest".into()),
        passcode: Some(passcode.into()),
        send_heartbeat: heartbeat,
        want_heartbeat: heartbeat,
        headers: Vec::new(),
    }
}

fn unacknowledged(broker: &RabbitMq, queue: &str) -> u64 {
    let listing = broker.ctl(&["list_queues", "name", "messages_unacknowledged", "--quiet"]);
    listing
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .find(|(name, _)| *name == queue)
        .map(|(_, count)| count.trim().parse().expect("a count"))
        .unwrap_or_else(|| panic!("queue {queue} in {listing}"))
}

#[test]
fn stomp_session_against_rabbitmq() {
    let Some(broker) = RabbitMq::start() else {
        eprintln!("skipped: RabbitMQ is not installed");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        subscribe_send_receipts_and_acks(&broker).await;
        heart_beats_keep_a_quiet_session_alive(&broker).await;
        a_bad_login_is_an_error_frame(&broker).await;
    });
}

/// SUBSCRIBE (ack: client) and SEND with receipts: every message comes back whole (escaped
/// headers, NULs in bodies), every receipt comes, and the broker holds exactly the messages
/// not acknowledged yet until one cumulative ACK settles them all.
async fn subscribe_send_receipts_and_acks(broker: &RabbitMq) {
    let mut socket = open(&broker.stomp_url()).await;
    let mut session = Session::new(options("guest", None));
    let mut beats = 0;
    socket.send(session.connect_message()).await.expect("send CONNECT");
    assert_eq!(
        next_frame(&mut socket, &mut session, &mut beats).await,
        Received::Connected
    );
    assert_eq!(session.version(), Some("1.2"));

    let queue = "stomp-codec";
    let subscription = session.subscription_id();
    let receipt = session.receipt_id();
    let subscribe = Frame::new("SUBSCRIBE")
        .header("id", &subscription)
        .header("destination", &format!("/queue/{queue}"))
        .header("ack", "client")
        .header("receipt", &receipt);
    socket.send(to_message(&subscribe)).await.expect("send SUBSCRIBE");
    assert_eq!(
        next_frame(&mut socket, &mut session, &mut beats).await,
        Received::Receipt(receipt)
    );

    let mut receipts = Vec::new();
    for index in 0..SENT {
        let receipt = session.receipt_id();
        let send = Frame::new("SEND")
            .header("destination", &format!("/queue/{queue}"))
            .header("x-note", &format!("n:{index}\nline\\two"))
            .header("receipt", &receipt)
            .with_body(format!("body {index}\0after a NUL").into_bytes());
        socket.send(to_message(&send)).await.expect("send SEND");
        receipts.push(receipt);
    }
    let (mut messages, mut got_receipts) = (Vec::new(), Vec::new());
    while messages.len() < SENT || got_receipts.len() < SENT {
        match next_frame(&mut socket, &mut session, &mut beats).await {
            Received::Message(frame) => messages.push(frame),
            Received::Receipt(id) => got_receipts.push(id),
            other => panic!("unexpected {other:?}"),
        }
    }
    got_receipts.sort();
    receipts.sort();
    assert_eq!(got_receipts, receipts);
    for (index, message) in messages.iter().enumerate() {
        assert_eq!(message.get("subscription"), Some(subscription.as_str()));
        assert_eq!(message.get("destination"), Some(format!("/queue/{queue}").as_str()));
        assert_eq!(message.get("x-note"), Some(format!("n:{index}\nline\\two").as_str()));
        assert_eq!(&message.body[..], format!("body {index}\0after a NUL").as_bytes());
    }
    assert_eq!(unacknowledged(broker, queue), SENT as u64);

    // ack: client is cumulative: the last message's ACK settles all of them.
    let last = messages
        .last()
        .and_then(|message| message.get("ack"))
        .expect("an ack header");
    let receipt = session.receipt_id();
    let ack = Frame::new("ACK").header("id", last).header("receipt", &receipt);
    socket.send(to_message(&ack)).await.expect("send ACK");
    assert_eq!(
        next_frame(&mut socket, &mut session, &mut beats).await,
        Received::Receipt(receipt)
    );
    assert_eq!(unacknowledged(broker, queue), 0);

    // RabbitMQ answers DISCONNECT by closing (no RECEIPT): the close comes, nothing else.
    socket
        .send(session.disconnect_message(Some("bye")))
        .await
        .expect("send DISCONNECT");
    let deadline = Instant::now() + LIMIT;
    loop {
        match tokio::time::timeout_at(deadline.into(), socket.next()).await {
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(message))) => {
                session.feed(&message).expect("well-formed frames");
                while let Some(received) = session.next_received() {
                    assert!(
                        matches!(received, Received::Heartbeat | Received::Receipt(_)),
                        "{received:?}"
                    );
                }
            }
            Err(_) => panic!("no close within the limit"),
        }
    }
}

/// Heart-beats both ways at 1 s over 3.5 s of otherwise silent session: the client sends its
/// own on time, the server's come, it is never silent past the agreed interval, and the
/// session is still usable at the end.
async fn heart_beats_keep_a_quiet_session_alive(broker: &RabbitMq) {
    let every = Duration::from_millis(1000);
    let mut socket = open(&broker.stomp_url()).await;
    let mut session = Session::new(options("guest", Some(every)));
    let mut beats = 0;
    socket.send(session.connect_message()).await.expect("send CONNECT");
    assert_eq!(
        next_frame(&mut socket, &mut session, &mut beats).await,
        Received::Connected
    );
    assert_eq!(session.send_every(), Some(every));
    assert_eq!(session.expect_every(), Some(every));

    let start = Instant::now();
    let end = start + Duration::from_millis(3500);
    let (mut last_sent, mut last_received) = (start, start);
    let mut sent = 0;
    let mut received = 0;
    while Instant::now() < end {
        let wake = (last_sent + every).min(end);
        match tokio::time::timeout_at(wake.into(), socket.next()).await {
            Err(_) => {}
            Ok(message) => {
                let message = message.expect("the socket is open").expect("a message");
                let now = Instant::now();
                assert!(!session.server_silent(last_received, now), "the server went silent");
                last_received = now;
                session.feed(&message).expect("well-formed frames");
                while let Some(item) = session.next_received() {
                    assert_eq!(item, Received::Heartbeat);
                    received += 1;
                }
            }
        }
        let now = Instant::now();
        if session.heartbeat_due(last_sent, now) {
            socket.send(heartbeat_message()).await.expect("send a heart-beat");
            last_sent = now;
            sent += 1;
        }
    }
    assert_eq!(sent, 3, "one heart-beat a second over 3.5 s");
    assert!((2..=4).contains(&received), "server heart-beats: {received}");
    assert!(!session.server_silent(last_received, Instant::now()));
    // Still connected: a receipt comes back.
    let receipt = session.receipt_id();
    let subscribe = Frame::new("SUBSCRIBE")
        .header("id", &session.subscription_id())
        .header("destination", "/topic/quiet")
        .header("receipt", &receipt);
    socket.send(to_message(&subscribe)).await.expect("send SUBSCRIBE");
    assert_eq!(
        next_frame(&mut socket, &mut session, &mut beats).await,
        Received::Receipt(receipt)
    );
}

/// A wrong passcode: RabbitMQ answers with an ERROR frame; the session fails with its message.
async fn a_bad_login_is_an_error_frame(broker: &RabbitMq) {
    let mut socket = open(&broker.stomp_url()).await;
    let mut session = Session::new(options("wrong", None));
    let mut beats = 0;
    socket.send(session.connect_message()).await.expect("send CONNECT");
    let Received::Error(why, frame) = next_frame(&mut socket, &mut session, &mut beats).await else {
        panic!("no ERROR frame")
    };
    assert!(!why.is_empty(), "{frame:?}");
    assert_eq!(session.state(), State::Failed);
    assert!(!session.ready());
}
