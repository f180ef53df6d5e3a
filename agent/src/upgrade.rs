//! The client side of the WebSocket upgrade (RFC 6455 section 4), done here rather than by
//! tungstenite's client handshake so that a connect step's request is parsed and laid out once,
//! not once per connection.
//!
//! [`UpgradeRequest`] holds the request head as bytes around the `Sec-WebSocket-Key` value,
//! where to dial and what the response must say. Each connection then costs a fresh key, one
//! write, reads into a small buffer until the response head is complete, one parse and the
//! checks tungstenite makes (status, `Upgrade`, `Connection`, `Sec-WebSocket-Accept`, the
//! subprotocol), before the socket is handed to tungstenite for the frames. Against the
//! connection-rate workload this takes the agent from ~38k to ~10k instructions per upgrade.
//!
//! Its parts: `request` (the request, laid out once) and `response` (the response head, parsed
//! and checked); this module holds the exchange itself and hands the socket to tungstenite.

mod request;
mod response;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use wsfleet_metrics::ErrorKind;

use crate::failure::{io_error, ConnectError};

pub use request::UpgradeRequest;
use response::{accept_key, parse_response, Response};

/// A response head larger than this ends the handshake with a protocol error.
pub const MAX_RESPONSE_HEAD_BYTES: usize = 64 * 1024;

/// Room for a typical `101` response (about 130 bytes) and a few extra headers, read in one go.
const INITIAL_RESPONSE_CAPACITY: usize = 1024;

/// The length of a key: 16 random bytes in base64.
const KEY_LENGTH: usize = 24;

/// The end of a handshake whose response was complete and well formed.
// Moved once, right away: boxing the socket would cost an allocation per connection.
#[allow(clippy::large_enum_variant)]
pub enum Upgraded<S> {
    /// `101`, verified: the stream, with anything the server sent after the head (`early`),
    /// and the `Sec-WebSocket-Extensions` answer, for the caller to frame (see [`websocket`]).
    Open {
        stream: S,
        early: Vec<u8>,
        headers: Vec<(String, String)>,
        extensions: Option<String>,
    },
    /// Another status; dropping the stream closes the connection.
    Refused {
        status: u16,
        headers: Vec<(String, String)>,
        stream: S,
    },
}

/// Sends the upgrade request over `stream` and reads the response. Response headers are
/// returned (names in lower case) only when `keep_headers` asks for them.
pub async fn upgrade<S>(
    mut stream: S,
    request: &UpgradeRequest,
    keep_headers: bool,
) -> Result<Upgraded<S>, ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut drawn = [0u8; KEY_LENGTH];
    let key: &[u8] = match &request.fixed_key {
        Some(key) => key.as_bytes(),
        None => {
            let random: [u8; 16] = rand::random();
            base64::engine::general_purpose::STANDARD
                .encode_slice(random, &mut drawn)
                .map_err(|_| ConnectError::new(ErrorKind::Protocol, "cannot encode the key"))?;
            &drawn
        }
    };
    stream
        .write_all(&request.head(key))
        .await
        .map_err(|error| io_error(&error, "sending the upgrade request"))?;
    stream
        .flush()
        .await
        .map_err(|error| io_error(&error, "sending the upgrade request"))?;
    let accept = accept_key(key);

    let mut buffer = Vec::with_capacity(INITIAL_RESPONSE_CAPACITY);
    loop {
        if buffer.len() == buffer.capacity() {
            if buffer.len() >= MAX_RESPONSE_HEAD_BYTES {
                return Err(ConnectError::new(
                    ErrorKind::Protocol,
                    format!(
                        "the server's response head is over {} KiB",
                        MAX_RESPONSE_HEAD_BYTES / 1024
                    ),
                ));
            }
            buffer.reserve(buffer.len());
        }
        let read = stream
            .read_buf(&mut buffer)
            .await
            .map_err(|error| io_error(&error, "reading the upgrade response"))?;
        if read == 0 {
            return Err(ConnectError::new(
                ErrorKind::Reset,
                "the connection ended during the handshake",
            ));
        }
        let Some(response) = parse_response(&buffer, request, &accept, keep_headers)? else {
            continue;
        };
        return Ok(match response {
            Response::Switching {
                head_len,
                headers,
                extensions,
            } => {
                let early = buffer.split_off(head_len);
                drop(buffer);
                Upgraded::Open {
                    stream,
                    early,
                    headers,
                    extensions,
                }
            }
            Response::Other { status, headers } => Upgraded::Refused {
                status,
                headers,
                stream,
            },
        });
    }
}

/// tungstenite's WebSocket over an upgraded stream, with the bytes read past the response.
pub async fn websocket<S>(stream: S, early: Vec<u8>, config: WebSocketConfig) -> WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    WebSocketStream::from_partially_read(stream, early, Role::Client, Some(config)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
    use wsfleet_scenario::Compression;

    use super::request::tests::head_text;

    /// Plays the server: reads the request head, answers with `response(key)`.
    async fn serve(mut server: DuplexStream, response: impl FnOnce(&str) -> Vec<u8> + Send + 'static) -> String {
        let mut request = Vec::new();
        while !request.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            server.read_exact(&mut byte).await.unwrap();
            request.push(byte[0]);
        }
        let request = String::from_utf8(request).unwrap();
        let key = key_of(&request).to_owned();
        // The response may come in pieces: write it in two halves. A client that gave up
        // (a head over the limit) makes the second write fail, which is not the server's
        // business here.
        let bytes = response(&key);
        let (first, second) = bytes.split_at(bytes.len() / 2);
        if server.write_all(first).await.is_ok() {
            tokio::task::yield_now().await;
            let _ = server.write_all(second).await;
        }
        request
    }

    fn key_of(request: &str) -> &str {
        request
            .lines()
            .find_map(|line| line.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
    }

    /// A well-formed `101` for `key`, with `from` replaced by `to`.
    fn switching_with(key: &str, from: &str, to: &str) -> Vec<u8> {
        String::from_utf8(switching(key, ""))
            .unwrap()
            .replace(from, to)
            .into_bytes()
    }

    fn switching(key: &str, extra: &str) -> Vec<u8> {
        let accept = String::from_utf8(accept_key(key.as_bytes()).to_vec()).unwrap();
        format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{extra}\r\n")
            .into_bytes()
    }

    async fn handshake(
        request: &UpgradeRequest,
        keep_headers: bool,
        response: impl FnOnce(&str) -> Vec<u8> + Send + 'static,
    ) -> Result<Upgraded<DuplexStream>, ConnectError> {
        let (client, server) = duplex(64 * 1024);
        let served = tokio::spawn(serve(server, response));
        let result = upgrade(client, request, keep_headers).await;
        served.await.unwrap();
        result
    }

    #[tokio::test]
    async fn a_verified_101_opens_the_socket_and_keeps_what_followed_the_head() {
        use futures_util::StreamExt;
        let request = UpgradeRequest::new("ws://127.0.0.1/echo", &[], &[]).unwrap();
        let upgraded = handshake(&request, true, |key| {
            let mut bytes = switching(key, "X-Server: test\r\n");
            // A text frame "hi" right behind the head, in the same write.
            bytes.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
            bytes
        })
        .await
        .unwrap();
        let Upgraded::Open {
            stream,
            early,
            headers,
            extensions,
        } = upgraded
        else {
            panic!("expected an open socket");
        };
        // Nothing was offered: the answer is not read.
        assert_eq!(extensions, None);
        let mut socket = websocket(stream, early, WebSocketConfig::default()).await;
        assert!(
            headers.contains(&("x-server".to_owned(), "test".to_owned())),
            "{headers:?}"
        );
        let message = socket.next().await.unwrap().unwrap();
        assert_eq!(message.into_text().unwrap().as_str(), "hi");
    }

    #[tokio::test]
    async fn keys_are_fresh_per_connection_unless_the_scenario_sets_one() {
        let request = UpgradeRequest::new("ws://127.0.0.1/", &[], &[]).unwrap();
        let mut keys = Vec::new();
        for _ in 0..2 {
            let (client, server) = duplex(64 * 1024);
            let served = tokio::spawn(serve(server, |key| switching(key, "")));
            assert!(matches!(
                upgrade(client, &request, false).await,
                Ok(Upgraded::Open { .. })
            ));
            let sent = served.await.unwrap();
            let key = key_of(&sent).to_owned();
            assert_eq!(
                base64::engine::general_purpose::STANDARD.decode(&key).unwrap().len(),
                16
            );
            keys.push(key);
        }
        assert_ne!(keys[0], keys[1]);
        let fixed = UpgradeRequest::new(
            "ws://127.0.0.1/",
            &[("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")],
            &[],
        )
        .unwrap();
        assert!(
            head_text(&fixed, "dGhlIHNhbXBsZSBub25jZQ==")
                .matches("Sec-WebSocket-Key")
                .count()
                == 1
        );
        assert!(matches!(
            handshake(&fixed, false, |key| switching(key, "")).await,
            Ok(Upgraded::Open { .. })
        ));
    }

    #[tokio::test]
    async fn another_status_is_a_refusal_with_its_headers() {
        let request = UpgradeRequest::new("ws://127.0.0.1/", &[], &[]).unwrap();
        let refused = handshake(&request, true, |_| {
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n".to_vec()
        })
        .await
        .unwrap();
        let Upgraded::Refused { status, headers, .. } = refused else {
            panic!("expected a refusal");
        };
        assert_eq!(status, 401);
        assert_eq!(headers[0], ("www-authenticate".to_owned(), "Basic".to_owned()));
    }

    #[tokio::test]
    async fn a_response_that_breaks_the_rules_is_an_error_naming_the_rule() {
        let request = UpgradeRequest::new("ws://127.0.0.1/", &[], &[]).unwrap();
        type Respond = Box<dyn FnOnce(&str) -> Vec<u8> + Send>;
        let cases: Vec<(Respond, &str, &str)> = vec![
            (
                Box::new(|_| {
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\n\r\n".to_vec()
                }),
                "protocol",
                "Sec-WebSocket-Accept does not match",
            ),
            (
                Box::new(|key| switching_with(key, "Upgrade: WebSocket", "Upgrade: h2c")),
                "protocol",
                "`Upgrade: websocket`",
            ),
            (
                Box::new(|key| switching_with(key, "keep-alive, Upgrade", "close")),
                "protocol",
                "`Connection: Upgrade`",
            ),
            (
                Box::new(|key| switching_with(key, "HTTP/1.1", "HTTP/1.0")),
                "protocol",
                "HTTP/1.0",
            ),
            (
                Box::new(|_| b"SSH-2.0-OpenSSH\r\n\r\n".to_vec()),
                "protocol",
                "not valid HTTP",
            ),
            (
                Box::new(|key| switching(key, "Sec-WebSocket-Protocol: v1\r\n")),
                "expectation",
                "`v1`, which was not offered",
            ),
            (
                Box::new(|_| b"HTTP/1.1 101 Switching".to_vec()),
                "reset",
                "ended during the handshake",
            ),
        ];
        for (response, kind, detail) in cases {
            let error = match handshake(&request, false, response).await {
                Err(error) => error,
                Ok(_) => panic!("expected `{detail}` to fail the handshake"),
            };
            assert_eq!(error.kind, kind, "{}", error.detail);
            assert!(
                error.detail.contains(detail),
                "{} does not mention {detail}",
                error.detail
            );
        }
    }

    #[tokio::test]
    async fn compression_is_offered_last_and_its_answer_read() {
        let request = UpgradeRequest::new("ws://127.0.0.1/", &[("X-A", "1")], &[])
            .unwrap()
            .with_compression(&Compression::browser());
        assert!(head_text(&request, "k").ends_with(
            "Sec-WebSocket-Key: k\r\nX-A: 1\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        ));
        let answer = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12\r\n";
        let Ok(Upgraded::Open { extensions, .. }) = handshake(&request, false, move |key| switching(key, answer)).await
        else {
            panic!("expected an open socket");
        };
        assert_eq!(
            extensions.as_deref(),
            Some("permessage-deflate; server_max_window_bits=12")
        );
        let Ok(Upgraded::Open { extensions, .. }) = handshake(&request, false, |key| switching(key, "")).await else {
            panic!("expected an open socket");
        };
        assert_eq!(extensions, None);
        // Without compression the request is as before.
        let plain = UpgradeRequest::new("ws://127.0.0.1/", &[], &[])
            .unwrap()
            .with_compression(&Compression::Off);
        assert!(!head_text(&plain, "k").contains("Extensions"));
    }

    #[tokio::test]
    async fn a_picked_subprotocol_must_be_one_of_those_offered() {
        let request = UpgradeRequest::new("ws://127.0.0.1/", &[], &["v2", "v1"]).unwrap();
        assert!(matches!(
            handshake(&request, false, |key| switching(key, "Sec-WebSocket-Protocol: v1\r\n")).await,
            Ok(Upgraded::Open { .. })
        ));
        let picked_other = handshake(&request, false, |key| switching(key, "Sec-WebSocket-Protocol: v3\r\n")).await;
        assert!(picked_other.is_err_and(|error| error.kind == "expectation" && error.detail.contains("`v3`")));
        // Picking none is allowed (RFC 6455 section 4.1); the step's `expect` decides.
        assert!(matches!(
            handshake(&request, false, |key| switching(key, "")).await,
            Ok(Upgraded::Open { .. })
        ));
    }

    #[tokio::test]
    async fn a_long_response_head_grows_the_buffer_up_to_the_limit() {
        let request = UpgradeRequest::new("ws://127.0.0.1/", &[], &[]).unwrap();
        // 60 headers of ~100 bytes: past the first buffer and past the headers on the stack.
        let extra: String = (0..60)
            .map(|index| format!("X-Filler-{index}: {}\r\n", "f".repeat(90)))
            .collect();
        let upgraded = handshake(&request, true, move |key| switching(key, &extra))
            .await
            .unwrap();
        let Upgraded::Open { headers, .. } = upgraded else {
            panic!("expected an open socket");
        };
        assert_eq!(headers.len(), 63);
        let huge: String = (0..700)
            .map(|index| format!("X-Filler-{index}: {}\r\n", "f".repeat(90)))
            .collect();
        let too_big = handshake(&request, false, move |key| switching(key, &huge)).await;
        assert!(too_big.is_err_and(|error| error.kind == "protocol" && error.detail.contains("over 64 KiB")));
    }
}
