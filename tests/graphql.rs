//! GraphQL over WebSocket against a real strawberry-graphql server (`common/brokers.rs`,
//! `data/graphql_server.py`): the agent's session (`wsfleet_agent::protocol::graphql`) speaks
//! both protocols over a plain WebSocket, negotiated by subprotocol, and what it reads is checked
//! against what the scenario asked for and against the server's own counts.

mod common;

use std::time::{Duration, Instant};

use common::brokers::GraphQl;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsfleet_agent::protocol::graphql::{close_code_name, Options, Received, Session, State, Subprotocol};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const LIMIT: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A connection and its session; keep-alives and the server's pings are counted and answered
/// while reading.
struct Client {
    socket: Socket,
    session: Session,
    keep_alives: usize,
    pings_answered: usize,
}

/// What ended a read: something the session decoded, or the server's close.
#[derive(Debug)]
enum Read {
    Received(Received),
    Closed(Option<u16>),
}

impl Client {
    /// Opens a connection offering `subprotocol` alone, which the server must agree to.
    async fn open(server: &GraphQl, options: Options) -> Client {
        let name = options.subprotocol.name();
        let mut request = server.ws_url().into_client_request().expect("request");
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(name));
        let (socket, response) = tokio::time::timeout(LIMIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("upgrade within the limit")
            .expect("upgrade");
        let agreed = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|value| value.as_bytes());
        assert_eq!(agreed, Some(name.as_bytes()), "the server agrees to {name}");
        Client {
            socket,
            session: Session::new(options),
            keep_alives: 0,
            pings_answered: 0,
        }
    }

    /// Opens a connection and has it acknowledged.
    async fn ready(server: &GraphQl, subprotocol: Subprotocol) -> Client {
        let mut client = Client::open(server, Options::new(subprotocol)).await;
        client.init().await;
        match client.read().await {
            Read::Received(Received::Acknowledged(payload)) => {
                assert_eq!(payload.as_deref(), Some(r#"{"server":"strawberry"}"#))
            }
            other => panic!("{other:?} instead of connection_ack"),
        }
        assert!(client.session.ready());
        client
    }

    async fn init(&mut self) {
        let init = self.session.init_message().expect("init payload is JSON");
        self.socket.send(init).await.expect("send connection_init");
    }

    async fn send(&mut self, message: Message) {
        self.socket.send(message).await.expect("send");
    }

    async fn start(&mut self, query: &str) -> u64 {
        let payload = serde_json::json!({ "query": query }).to_string();
        let (id, message) = self.session.start(&payload).expect("the connection is ready");
        self.send(message).await;
        id
    }

    /// The next thing the server says that is not a keep-alive or a ping.
    async fn read(&mut self) -> Read {
        let deadline = Instant::now() + LIMIT;
        loop {
            let message = tokio::time::timeout_at(deadline.into(), self.socket.next())
                .await
                .expect("a message within the limit");
            let message = match message {
                Some(Ok(message)) => message,
                Some(Err(_)) | None => return Read::Closed(None),
            };
            let received = match &message {
                Message::Text(_) | Message::Binary(_) => self.session.decode(&message).expect("a well-formed message"),
                Message::Close(frame) => return Read::Closed(frame.as_ref().map(|frame| u16::from(frame.code))),
                _ => continue,
            };
            match received {
                Received::KeepAlive => self.keep_alives += 1,
                Received::Ping(answer) => {
                    self.pings_answered += 1;
                    self.send(answer).await;
                }
                other => return Read::Received(other),
            }
        }
    }

    async fn received(&mut self) -> Received {
        match self.read().await {
            Read::Received(received) => received,
            Read::Closed(code) => panic!("the server closed ({code:?})"),
        }
    }

    /// Reads until operation `id` ends; its results' payloads, and how it ended.
    async fn results(&mut self, id: u64) -> (Vec<Value>, Received) {
        let mut results = Vec::new();
        loop {
            match self.received().await {
                Received::Next {
                    id: of, payload, first, ..
                } if of == id => {
                    assert_eq!(first, results.is_empty(), "only the first result is first");
                    results.push(serde_json::from_str(&payload).expect("payload is JSON"));
                }
                end @ (Received::Complete { id: of } | Received::Error { id: of, .. }) if of == id => {
                    return (results, end)
                }
                other => panic!("{other:?} while reading operation {id}"),
            }
        }
    }
}

/// The server's counts once `ready` holds for them, within the limit (the server ends a
/// stopped subscription after it answered the `stop`).
fn stats_when(server: &GraphQl, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + LIMIT;
    loop {
        let stats = server.stats();
        if ready(&stats) || Instant::now() > deadline {
            return stats;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn subscriptions_arrive_whole_in_both_protocols() {
    let server = GraphQl::start();
    runtime().block_on(async {
        for subprotocol in Subprotocol::ALL {
            let mut client = Client::ready(&server, subprotocol).await;
            // Three subscriptions at once on one connection, their results interleaved.
            let mut ids = Vec::new();
            for to in [20, 15, 10] {
                ids.push((
                    client
                        .start(&format!("subscription {{ count(to: {to}, intervalMs: 2) }}"))
                        .await,
                    to,
                ));
            }
            let mut seen: Vec<Vec<i64>> = vec![Vec::new(); ids.len()];
            let mut firsts = 0;
            let mut completed = 0;
            while completed < ids.len() {
                match client.received().await {
                    Received::Next {
                        id,
                        payload,
                        first,
                        errors,
                    } => {
                        assert_eq!(errors, None);
                        firsts += usize::from(first);
                        let value: Value = serde_json::from_str(&payload).expect("JSON");
                        seen[id as usize].push(value["data"]["count"].as_i64().expect("a count"));
                    }
                    Received::Complete { .. } => completed += 1,
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(firsts, 3, "{subprotocol:?}: one first result per subscription");
            for ((_, to), values) in ids.iter().zip(&seen) {
                assert_eq!(*values, (1..=*to).collect::<Vec<i64>>(), "{subprotocol:?}");
            }
            assert_eq!(client.session.active().count(), 0);
        }
    });
    let stats = server.stats();
    assert_eq!(stats["connections"], 2, "{stats}");
    assert_eq!(stats["subscriptions"], 6, "{stats}");
    assert_eq!(stats["events"], 90, "{stats}");
    assert_eq!(stats["ended"], 6, "{stats}");
}

#[test]
fn queries_and_mutations_over_the_socket_reach_subscribers() {
    let server = GraphQl::start();
    runtime().block_on(async {
        let mut client = Client::ready(&server, Subprotocol::TransportWs).await;
        let id = client.start(r#"query Hello { hello(name: "fleet") }"#).await;
        let (results, end) = client.results(id).await;
        assert_eq!(results, vec![serde_json::json!({ "data": { "hello": "hello fleet" } })]);
        assert_eq!(end, Received::Complete { id });

        for subprotocol in Subprotocol::ALL {
            let mut listener = Client::ready(&server, subprotocol).await;
            let topic = subprotocol.name();
            let subscription = listener
                .start(&format!(r#"subscription {{ messages(topic: "{topic}") }}"#))
                .await;
            // The server registers the subscriber when its resolver first runs: publish until
            // the mutation says it reached one.
            let mut reached = 0;
            for attempt in 0..100 {
                let mutation = client
                    .start(&format!(
                        r#"mutation {{ publish(topic: "{topic}", text: "m-{attempt}") }}"#
                    ))
                    .await;
                let (results, end) = client.results(mutation).await;
                assert_eq!(end, Received::Complete { id: mutation });
                reached = results[0]["data"]["publish"].as_i64().expect("a count");
                if reached == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(reached, 1, "the mutation reached the subscriber");
            let Received::Next { payload, first, .. } = listener.received().await else {
                panic!("no result")
            };
            assert!(first);
            let value: Value = serde_json::from_str(&payload).expect("JSON");
            assert!(value["data"]["messages"]
                .as_str()
                .is_some_and(|text| text.starts_with("m-")));

            let stop = listener.session.stop(subscription).expect("active");
            listener.send(stop).await;
            if subprotocol == Subprotocol::LegacyWs {
                // graphql-ws answers a stop with a complete, which the session knows as stale.
                assert_eq!(listener.received().await, Received::Stale { id: subscription });
            }
        }

        // strawberry's graphql-ws runs subscriptions only: a query is answered with an error.
        let mut legacy = Client::ready(&server, Subprotocol::LegacyWs).await;
        let id = legacy.start("{ hello }").await;
        match legacy.received().await {
            Received::Error { id: of, message, .. } => {
                assert_eq!((of, message.as_str()), (id, "queries are not allowed"))
            }
            other => panic!("{other:?}"),
        }
    });
    let stats = stats_when(&server, |stats| stats["ended"] == 2);
    assert_eq!(stats["queries"], 1, "{stats}");
    assert_eq!(stats["subscriptions"], 2, "{stats}");
    assert_eq!(stats["ended"], 2, "{stats}");
    assert_eq!(stats["events"], 2, "{stats}");
}

#[test]
fn resolver_errors_and_invalid_operations_are_told_apart() {
    let server = GraphQl::start();
    runtime().block_on(async {
        for subprotocol in Subprotocol::ALL {
            let mut client = Client::ready(&server, subprotocol).await;
            if subprotocol == Subprotocol::TransportWs {
                // A query whose resolver raises: a result with `errors` (strawberry's
                // graphql-ws runs no queries).
                let id = client.start("{ boom }").await;
                match client.received().await {
                    Received::Next {
                        errors: Some(errors), ..
                    } => {
                        assert!(errors.contains("boom on purpose"), "{errors}")
                    }
                    other => panic!("{subprotocol:?}: {other:?}"),
                }
                assert_eq!(client.received().await, Received::Complete { id });
            }

            // A subscription that fails after two events.
            let id = client.start("subscription { fail(after: 2) }").await;
            let mut clean = 0;
            let mut failed = 0;
            loop {
                match client.received().await {
                    Received::Next { errors: None, .. } => clean += 1,
                    Received::Next { errors: Some(_), .. } => failed += 1,
                    Received::Error { message, .. } => {
                        assert!(message.contains("failed on purpose"), "{message}");
                        failed += 1;
                        break;
                    }
                    Received::Complete { id: of } if of == id => break,
                    other => panic!("{subprotocol:?}: {other:?}"),
                }
            }
            assert_eq!((clean, failed), (2, 1), "{subprotocol:?}");

            // An operation that does not validate: an `error` message, located.
            let id = client.start("subscription { nope }").await;
            match client.received().await {
                Received::Error {
                    id: of,
                    message,
                    payload,
                } => {
                    assert_eq!(of, id);
                    assert!(message.contains("nope"), "{message}");
                    assert!(payload.contains("locations"), "{payload}");
                }
                other => panic!("{subprotocol:?}: {other:?}"),
            }
        }
    });
    let stats = server.stats();
    assert_eq!(stats["errors"], 3, "{stats}");
    assert_eq!(stats["events"], 4, "{stats}");
}

#[test]
fn keep_alives_are_answered_and_counted() {
    let server = GraphQl::start();
    runtime().block_on(async {
        // graphql-transport-ws: the client pings, the server answers.
        let mut client = Client::ready(&server, Subprotocol::TransportWs).await;
        let now = Instant::now();
        for _ in 0..3 {
            let ping = client.session.ping_message(now).expect("a ping");
            client.send(ping).await;
            assert_eq!(client.received().await, Received::Pong);
            assert!(!client.session.pong_overdue(now + Duration::from_secs(3600)));
        }

        // graphql-ws: the server sends `ka` (every 0.5 s here) while a subscription runs.
        let mut options = Options::new(Subprotocol::LegacyWs);
        options.ka_timeout = Some(Duration::from_secs(5));
        let mut legacy = Client::open(&server, options).await;
        legacy.init().await;
        assert!(matches!(legacy.received().await, Received::Acknowledged(_)));
        let id = legacy.start("subscription { count(to: 3, intervalMs: 600) }").await;
        let (results, end) = legacy.results(id).await;
        assert_eq!((results.len(), end), (3, Received::Complete { id }));
        // One on acknowledgement, then one each 0.5 s over the subscription's 1.8 s.
        assert!(
            (3..=6).contains(&legacy.keep_alives),
            "{} keep-alives",
            legacy.keep_alives
        );
        let now = Instant::now();
        assert!(!legacy.session.server_silent(now, now + Duration::from_millis(4999)));
        assert!(legacy.session.server_silent(now, now + Duration::from_secs(5)));
    });
}

#[test]
fn a_refused_init_is_told_in_each_protocols_way() {
    let server = GraphQl::start();
    runtime().block_on(async {
        for subprotocol in Subprotocol::ALL {
            let mut options = Options::new(subprotocol);
            options.init_payload = Some(r#"{"token":"refuse"}"#.into());
            let mut client = Client::open(&server, options).await;
            client.init().await;
            match (subprotocol, client.read().await) {
                (Subprotocol::TransportWs, Read::Closed(Some(code))) => {
                    assert_eq!(close_code_name(code), Some("forbidden"), "{code}")
                }
                (Subprotocol::LegacyWs, Read::Received(Received::Refused(message))) => {
                    assert_eq!(message, "token refused");
                    assert_eq!(client.session.state(), State::Refused);
                    assert!(matches!(client.read().await, Read::Closed(_)));
                }
                (_, other) => panic!("{subprotocol:?}: {other:?}"),
            }
        }
    });
    let stats = server.stats();
    assert_eq!(
        (stats["refused"].as_i64(), stats["connections"].as_i64()),
        (Some(2), Some(0)),
        "{stats}"
    );
}
