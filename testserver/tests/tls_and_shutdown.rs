//! `wss` with the self-signed certificate, graceful shutdown, the `run` entry
//! point, and binding with `SO_REUSEPORT`.

mod common;

use common::*;
use futures_util::SinkExt;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use wsfleet_testserver::{bind_listener, run, Config, Error, TestServer};

/// A TLS connection that trusts only the server's own certificate.
async fn tls_connect(server: &TestServer, server_name: &str) -> TlsStream<TcpStream> {
    let pem = server.ca_certificate_pem().expect("a tls server has a certificate");
    let certificate = CertificateDer::from_pem_slice(pem.as_bytes()).expect("valid pem");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate).expect("certificate is a valid root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = ServerName::try_from(server_name.to_owned()).expect("valid server name");
    let connect = async {
        let tcp = TcpStream::connect(server.local_addr()).await?;
        TlsConnector::from(Arc::new(config)).connect(server_name, tcp).await
    };
    tokio::time::timeout(WAIT, connect)
        .await
        .expect("tls connect within the wait")
        .expect("tls handshake succeeds")
}

async fn wss_connect(server: &TestServer, server_name: &str, path: &str) -> WebSocketStream<TlsStream<TcpStream>> {
    let tls = tls_connect(server, server_name).await;
    let (client, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request(server, path), tls))
        .await
        .expect("handshake within the wait")
        .expect("websocket handshake over tls");
    client
}

#[tokio::test]
async fn wss_echoes_with_a_certificate_for_localhost_and_loopback_ips() {
    let server = start(Config {
        tls: true,
        ..Config::default()
    })
    .await;
    assert!(server.url().starts_with("wss://127.0.0.1:"), "{}", server.url());
    for server_name in ["localhost", "127.0.0.1", "::1"] {
        let mut client = wss_connect(&server, server_name, "/echo").await;
        client.send(Message::text("secret")).await.expect("send");
        let reply = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut client)).await;
        assert!(
            matches!(reply, Ok(Some(Ok(ref message))) if *message == Message::text("secret")),
            "{server_name}: {reply:?}"
        );
        client.close(None).await.expect("close");
    }
    let stats = wait_until_closed(&server).await;
    assert_eq!(stats.total_connections, 3);
}

#[tokio::test]
async fn stats_are_served_over_https_too() {
    let server = start(Config {
        tls: true,
        ..Config::default()
    })
    .await;
    let mut tls = tls_connect(&server, "localhost").await;
    let exchange = async {
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut response = String::new();
        tls.read_to_string(&mut response).await?;
        std::io::Result::Ok(response)
    };
    let response = tokio::time::timeout(WAIT, exchange)
        .await
        .expect("answer within the wait")
        .expect("https exchange");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nok\n"), "{response}");
}

#[tokio::test]
async fn a_plain_server_has_no_certificate() {
    let server = start_default().await;
    assert_eq!(server.ca_certificate_pem(), None);
    assert!(server.url().starts_with("ws://127.0.0.1:"));
}

#[tokio::test]
async fn shutdown_closes_every_connection_with_1001_within_2s() {
    let server = start_default().await;
    let addr = server.local_addr();
    let (mut idle, _) = connect(&server, "/echo").await;
    let (mut waiting_for_delay, _) = connect(&server, "/echo?delay=10s").await;
    waiting_for_delay.send(Message::text("slow")).await.expect("send");
    let (mut in_room, _) = connect(&server, "/broadcast/lobby").await;
    // Connections that never became WebSockets must not hold the shutdown up.
    let _silent_tcp = TcpStream::connect(addr).await.expect("connect");
    let _unanswered = {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tokio::spawn(tokio_tungstenite::client_async(
            request(&server, "/?handshake=never"),
            tcp,
        ))
    };
    wait_for_stats(&server, |stats| stats.open_connections == 3).await;

    let started = Instant::now();
    let shutdown = tokio::spawn(server.shutdown());
    for client in [&mut idle, &mut waiting_for_delay, &mut in_room] {
        assert_eq!(recv(client).await, close_message(1001, "server shutting down"));
        assert!(next(client).await.is_none());
    }
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown within the wait")
        .expect("shutdown task");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(2), "shutdown took {elapsed:?}");
    let refused = TcpStream::connect(addr).await.map(|_| ());
    assert!(refused.is_err(), "the listener must be closed after shutdown");
}

#[tokio::test]
async fn shutdown_does_not_wait_past_2s_for_a_client_that_never_answers_the_close() {
    let server = start_default().await;
    let mut tcp = TcpStream::connect(server.local_addr()).await.expect("connect");
    tcp.write_all(
        b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .expect("write");
    wait_for_stats(&server, |stats| stats.open_connections == 1).await;

    let started = Instant::now();
    tokio::time::timeout(WAIT, server.shutdown())
        .await
        .expect("shutdown within the wait");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(2100), "shutdown took {elapsed:?}");

    // The client got the 101, then the 1001 close frame, then the end.
    let mut received = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut received))
        .await
        .expect("server closed within the wait")
        .expect("read");
    let close_frame = [&[0x88, 22, 0x03, 0xe9][..], b"server shutting down"].concat();
    assert!(received.ends_with(&close_frame), "{received:?}");
}

#[tokio::test]
async fn run_serves_until_cancelled() {
    let listener = bind_listener(SocketAddr::from(([127, 0, 0, 1], 0)), false).expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let cancel = CancellationToken::new();
    let running = tokio::spawn(run(listener, Config::default(), cancel.clone()));

    let request = format!("ws://{addr}/echo");
    let request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(request).expect("request");
    let (mut client, _) = try_connect_request(addr, request, None).await.expect("handshake");
    client.send(Message::text("hello")).await.expect("send");
    assert_eq!(recv(&mut client).await, Message::text("hello"));

    cancel.cancel();
    assert_eq!(recv(&mut client).await, close_message(1001, "server shutting down"));
    let finished = tokio::time::timeout(WAIT, running)
        .await
        .expect("run ends within the wait")
        .expect("run task");
    assert!(finished.is_ok(), "{finished:?}");
}

#[tokio::test]
async fn run_rejects_an_invalid_config_before_serving() {
    let listener = bind_listener(SocketAddr::from(([127, 0, 0, 1], 0)), false).expect("bind");
    let config = Config {
        max_message_size: 0,
        ..Config::default()
    };
    let outcome = tokio::time::timeout(WAIT, run(listener, config, CancellationToken::new()))
        .await
        .expect("run returns at once");
    assert!(
        matches!(
            outcome,
            Err(Error::InvalidConfig {
                field: "max_message_size",
                ..
            })
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn binding_a_used_port_fails_unless_both_reuse_it() {
    let first = bind_listener(SocketAddr::from(([127, 0, 0, 1], 0)), false).expect("bind");
    let addr = first.local_addr().expect("local addr");
    match bind_listener(addr, false) {
        Err(error) => assert!(
            error
                .to_string()
                .starts_with(&format!("cannot bind test server to {addr}: ")),
            "{error}"
        ),
        Ok(_) => panic!("a second bind on {addr} must fail"),
    }

    let shared = bind_listener(SocketAddr::from(([127, 0, 0, 1], 0)), true).expect("bind");
    let shared_addr = shared.local_addr().expect("local addr");
    let config = Config {
        reuse_port: true,
        ..Config::default()
    };
    let server = TestServer::start(shared_addr, config)
        .await
        .expect("a second server shares the port");
    assert_eq!(server.local_addr(), shared_addr);
    server.shutdown().await;
}
