#![allow(dead_code)]

//! An MQTT client for tests: the agent's MQTT session (`wsfleet_agent::protocol::mqtt`) over a
//! plain WebSocket with subprotocol `mqtt`, sending the session's own answers as they come.
//! Used to check the session against brokers and to read a broker's `$SYS` counts.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsfleet_agent::protocol::mqtt::{Connect, Filter, Publish, QoS, Received, Session, Version};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const LIMIT: Duration = Duration::from_secs(10);

/// An MQTT session over its WebSocket.
pub struct Client {
    pub socket: Socket,
    pub session: Session,
    /// Packets the session sent by itself, by packet type (PUBACK 4, PUBREC 5, PUBREL 6,
    /// PUBCOMP 7, and PUBLISH 3 for publishes held back by the server's receive maximum).
    pub replies: [usize; 16],
}

impl Client {
    /// Opens a WebSocket with subprotocol `mqtt`, sends CONNECT, and returns the client with
    /// the CONNACK's verdict.
    pub async fn connect(url: &str, version: Version, connect: Connect) -> (Client, Received) {
        let mut client = Client::open(url, version, connect).await;
        let verdict = client.next().await;
        (client, verdict)
    }

    /// Opens a WebSocket with subprotocol `mqtt` and sends CONNECT.
    pub async fn open(url: &str, version: Version, connect: Connect) -> Client {
        let mut request = url.into_client_request().expect("request");
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
        let (socket, response) = tokio::time::timeout(LIMIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("upgrade within the limit")
            .expect("upgrade");
        assert_eq!(
            response
                .headers()
                .get("Sec-WebSocket-Protocol")
                .map(|value| value.as_bytes()),
            Some(&b"mqtt"[..])
        );
        let mut client = Client {
            socket,
            session: Session::new(version, connect),
            replies: [0; 16],
        };
        let connect = client.session.connect_message();
        client.send(connect).await;
        client
    }

    pub async fn connected(url: &str, version: Version, client_id: &str) -> Client {
        let connect = Connect {
            client_id: client_id.into(),
            clean: true,
            keep_alive: 30,
            ..Connect::default()
        };
        let (client, verdict) = Client::connect(url, version, connect).await;
        assert_eq!(verdict, Received::Connected { session_present: false });
        client
    }

    pub async fn send_replies(&mut self) {
        for reply in self.session.replies() {
            self.replies[usize::from(reply.clone().into_data()[0] >> 4)] += 1;
            self.socket.send(reply).await.expect("send a reply");
        }
    }

    pub async fn send(&mut self, message: Message) {
        self.socket.send(message).await.expect("send");
    }

    /// Reads until the session has something to say, sending its replies as they come.
    pub async fn next(&mut self) -> Received {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(received) = self.session.next_received() {
                return received;
            }
            let message = tokio::time::timeout_at(deadline.into(), self.socket.next())
                .await
                .expect("a packet before the deadline")
                .unwrap_or_else(|| panic!("the socket closed: the session is {:?}", self.session.state()))
                .expect("a message");
            self.session.feed(&message).expect("well-formed packets");
            self.send_replies().await;
        }
    }

    /// Reads for `quiet`, expecting nothing but what the session handles itself.
    pub async fn nothing_for(&mut self, quiet: Duration) {
        let end = Instant::now() + quiet;
        while let Ok(message) = tokio::time::timeout_at(end.into(), self.socket.next()).await {
            let message = message.expect("the socket is open").expect("a message");
            self.session.feed(&message).expect("well-formed packets");
            if let Some(received) = self.session.next_received() {
                panic!("unexpected {received:?}");
            }
            self.send_replies().await;
        }
    }

    pub async fn subscribe(&mut self, filters: &[(&str, QoS)]) -> Vec<QoS> {
        let filters = filters
            .iter()
            .map(|(filter, qos)| Filter {
                filter: (*filter).into(),
                qos: *qos,
                ..Filter::default()
            })
            .collect();
        let (id, message) = self.session.subscribe(filters, Vec::new()).expect("subscribe");
        self.send(message).await;
        match self.next().await {
            Received::Subscribed { packet_id, granted } if packet_id == id => {
                granted.into_iter().map(|granted| granted.expect("granted")).collect()
            }
            other => panic!("a SUBACK, not {other:?}"),
        }
    }

    /// Publishes; returns the packet id (0 at QoS 0).
    pub async fn publish(&mut self, publish: Publish) -> u16 {
        let (id, message) = self.session.publish(publish).expect("publish");
        if let Some(message) = message {
            self.send(message).await;
        }
        id
    }

    /// The retained `$SYS` values under `filter`, by topic. mosquitto republishes them once more
    /// than `sys_interval` whole seconds passed (with `sys_interval 1`, within 2 s): the reader
    /// connects, waits 2.5 s so that the retained values count what came before and its own
    /// CONNECT and CONNACK, then subscribes and takes the first value of each topic (its
    /// SUBSCRIBE is not in them yet).
    pub async fn sys_values(url: &str, filter: &str, topics: &[&str]) -> std::collections::BTreeMap<String, u64> {
        let mut reader = Client::connected(url, Version::V311, "sys-reader").await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        reader.subscribe(&[(filter, QoS::AtMostOnce)]).await;
        let mut values = std::collections::BTreeMap::new();
        while values.len() < topics.len() {
            let Received::Message(delivery) = reader.next().await else {
                continue;
            };
            if topics.contains(&delivery.topic.as_str()) && !values.contains_key(&delivery.topic) {
                let text = String::from_utf8(delivery.payload.to_vec()).expect("a $SYS value is text");
                values.insert(delivery.topic.clone(), text.trim().parse().expect("a count"));
            }
        }
        values
    }
}
