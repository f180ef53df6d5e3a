//! Helpers shared by the integration tests: start a server on port 0, connect a
//! tokio-tungstenite client over a socket the test opens itself, receive with a
//! timeout, poll stats, and speak raw HTTP. Every wait is bounded by [`WAIT`].

#![allow(dead_code)] // each test binary uses its own subset

use futures_util::StreamExt;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use wsfleet_testserver::{Config, Stats, TestServer};

/// The bound on every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(5);

pub type Client = WebSocketStream<TcpStream>;

pub async fn start(config: Config) -> TestServer {
    let bind = SocketAddr::from(([127, 0, 0, 1], 0));
    TestServer::start(bind, config).await.expect("test server starts")
}

pub async fn start_default() -> TestServer {
    start(Config::default()).await
}

/// A client request for `path_and_query` on the server.
pub fn request(server: &TestServer, path_and_query: &str) -> Request {
    format!("{}{path_and_query}", server.url())
        .into_client_request()
        .expect("valid test url")
}

/// Connects and runs the handshake, returning its result.
pub async fn try_connect_request(
    addr: SocketAddr,
    request: Request,
    config: Option<WebSocketConfig>,
) -> Result<(Client, Response), WsError> {
    let tcp = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("tcp connect within the wait")
        .expect("tcp connect");
    tokio::time::timeout(WAIT, tokio_tungstenite::client_async_with_config(request, tcp, config))
        .await
        .expect("handshake answered within the wait")
}

/// Connects to `path_and_query`, expecting the handshake to succeed.
pub async fn connect(server: &TestServer, path_and_query: &str) -> (Client, Response) {
    try_connect_request(server.local_addr(), request(server, path_and_query), None)
        .await
        .expect("websocket handshake succeeds")
}

/// The next item from the client, which must arrive within the wait.
pub async fn next(client: &mut Client) -> Option<Result<Message, WsError>> {
    tokio::time::timeout(WAIT, client.next())
        .await
        .expect("the server answered within the wait")
}

/// The next message, which must be a message and not an error or the end.
pub async fn recv(client: &mut Client) -> Message {
    match next(client).await {
        Some(Ok(message)) => message,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// A close frame as the client sees it.
pub fn close_message(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }))
}

/// Polls the stats until `done` holds, panicking with the last stats after the wait.
pub async fn wait_for_stats(server: &TestServer, done: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = server.stats();
        if done(&stats) {
            return stats;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("stats never reached the expected state: {stats:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until no WebSocket connection is open any more.
pub async fn wait_until_closed(server: &TestServer) -> Stats {
    wait_for_stats(server, |stats| stats.open_connections == 0).await
}

/// Sends raw bytes and reads everything until the server closes.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let exchange = async {
        let mut tcp = TcpStream::connect(addr).await?;
        tcp.write_all(request).await?;
        let mut response = Vec::new();
        tcp.read_to_end(&mut response).await?;
        std::io::Result::Ok(response)
    };
    let response = tokio::time::timeout(WAIT, exchange)
        .await
        .expect("raw http exchange within the wait")
        .expect("raw http exchange");
    String::from_utf8(response).expect("utf-8 response")
}

/// A plain `GET` with `Connection: close`.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    raw_exchange(addr, request.as_bytes()).await
}

/// Splits a response into its head and body.
pub fn split_response(response: &str) -> (&str, &str) {
    response.split_once("\r\n\r\n").expect("response has a complete head")
}

/// A header value from a handshake response.
pub fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().expect("ascii header value"))
}
