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

use base64::Engine as _;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Uri};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use wsfleet_metrics::ErrorKind;
use wsfleet_scenario::{Compression, Deflate};

use crate::failure::{io_error, ConnectError};

/// The GUID that RFC 6455 section 1.3 appends to the key.
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A response head larger than this ends the handshake with a protocol error.
pub const MAX_RESPONSE_HEAD_BYTES: usize = 64 * 1024;

/// Room for a typical `101` response (about 130 bytes) and a few extra headers, read in one go.
const INITIAL_RESPONSE_CAPACITY: usize = 1024;

/// Headers parsed from the stack; a response with more is parsed again with room for
/// [`MAX_RESPONSE_HEADERS`].
const STACK_HEADERS: usize = 32;
const MAX_RESPONSE_HEADERS: usize = 1024;

/// The length of a key: 16 random bytes in base64.
const KEY_LENGTH: usize = 24;

/// A connect step's upgrade request, rendered: built once per distinct (URL, headers,
/// subprotocols) and shared by every connection that asks for the same.
#[derive(Debug)]
pub struct UpgradeRequest {
    /// What it was built from, to tell whether the next connection asks for the same.
    url: String,
    headers: Vec<(String, String)>,
    subprotocols: Vec<String>,
    /// `wss://`.
    pub secure: bool,
    /// The URL's host (IPv6 without brackets) and port, the scheme's default when absent.
    pub host: String,
    pub port: u16,
    /// The request head up to the key's value, and from after it to the blank line.
    before_key: Vec<u8>,
    after_key: Vec<u8>,
    /// A key the scenario set itself (a `Sec-WebSocket-Key` header); otherwise each
    /// connection draws its own.
    fixed_key: Option<String>,
    /// The subprotocols offered, when the request offers any: a subprotocol in the response
    /// must be one of them.
    offered: Option<Vec<String>>,
    /// The permessage-deflate offers, when the step asks for compression.
    pub deflate: Option<Deflate>,
}

impl UpgradeRequest {
    /// Lays out the request for `url` with the step's extra headers and offered subprotocols.
    /// Headers replace the defaults of the same name (so `Host` or `Origin` can be set).
    pub fn new(url: &str, headers: &[(&str, &str)], subprotocols: &[&str]) -> Result<UpgradeRequest, ConnectError> {
        let bad_url =
            |why: &dyn std::fmt::Display| ConnectError::new(ErrorKind::Protocol, format!("bad URL `{url}`: {why}"));
        let uri: Uri = url.parse().map_err(|error| bad_url(&error))?;
        let secure = match uri.scheme_str() {
            Some("wss") => true,
            Some("ws") => false,
            _ => {
                return Err(ConnectError::new(
                    ErrorKind::Protocol,
                    format!("`{url}` is not a ws:// or wss:// URL"),
                ))
            }
        };
        let authority = uri.authority().ok_or_else(|| bad_url(&"no host"))?.as_str();
        // The Host header leaves out any user:password@.
        let host_header = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(bad_url(&"empty host"));
        }
        // `http` parses `:99999` and then reports no port; an out-of-range port is an error
        // rather than a silent fallback to the default.
        let written_port = host_header
            .rsplit_once(':')
            .filter(|_| !host_header.ends_with(']'))
            .map(|(_, port)| port)
            .filter(|port| !port.is_empty());
        let port = match (uri.port_u16(), written_port) {
            (Some(port), _) => port,
            (None, Some(port)) => return Err(bad_url(&format_args!("port `{port}` is not a number from 0 to 65535"))),
            (None, None) => {
                if secure {
                    443
                } else {
                    80
                }
            }
        };
        let target = match uri.path_and_query().map(|path| path.as_str()) {
            Some(path) if !path.is_empty() => path,
            _ => "/",
        };

        let mut fields: Vec<(String, String)> = vec![
            ("Host".into(), host_header.into()),
            ("Connection".into(), "Upgrade".into()),
            ("Upgrade".into(), "websocket".into()),
            ("Sec-WebSocket-Version".into(), "13".into()),
            ("Sec-WebSocket-Key".into(), String::new()),
        ];
        let mut fixed_key = None;
        let mut set = |name: &str, value: &str| match fields
            .iter_mut()
            .find(|(existing, _)| existing.eq_ignore_ascii_case(name))
        {
            Some(field) => field.1 = value.to_owned(),
            None => fields.push((name.to_owned(), value.to_owned())),
        };
        for (name, value) in headers {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConnectError::new(ErrorKind::Protocol, format!("bad header name `{name}`")))?;
            HeaderValue::from_str(value)
                .map_err(|_| ConnectError::new(ErrorKind::Protocol, format!("bad value for header `{name}`")))?;
            set(name, value);
            if name.eq_ignore_ascii_case("sec-websocket-key") {
                fixed_key = Some((*value).to_owned());
            }
        }
        if !subprotocols.is_empty() {
            let offered = subprotocols.join(", ");
            HeaderValue::from_str(&offered)
                .map_err(|_| ConnectError::new(ErrorKind::Protocol, "bad subprotocol name"))?;
            set("Sec-WebSocket-Protocol", &offered);
        }
        let offered = fields
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-protocol"))
            .map(|(_, value)| value.split(',').map(|name| name.trim().to_owned()).collect());

        let mut before_key = format!("GET {target} HTTP/1.1\r\n").into_bytes();
        let mut after_key = Vec::new();
        let mut past_key = false;
        for (name, value) in &fields {
            let head = if past_key { &mut after_key } else { &mut before_key };
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            if name.eq_ignore_ascii_case("sec-websocket-key") {
                // The key itself goes in between, per connection.
                past_key = true;
                after_key.extend_from_slice(b"\r\n");
            } else {
                head.extend_from_slice(value.as_bytes());
                head.extend_from_slice(b"\r\n");
            }
        }
        after_key.extend_from_slice(b"\r\n");

        Ok(UpgradeRequest {
            url: url.to_owned(),
            headers: headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            subprotocols: subprotocols.iter().map(|name| (*name).to_owned()).collect(),
            secure,
            host: host.to_owned(),
            port,
            before_key,
            after_key,
            fixed_key,
            offered,
            deflate: None,
        })
    }

    /// Offers permessage-deflate as `compression` says (`Sec-WebSocket-Extensions`, last).
    pub fn with_compression(mut self, compression: &Compression) -> UpgradeRequest {
        if let (Compression::Deflate(deflate), Some(value)) = (compression, compression.header_value()) {
            // The head ends with the blank line: the header goes before it.
            self.after_key.truncate(self.after_key.len() - 2);
            self.after_key
                .extend_from_slice(format!("Sec-WebSocket-Extensions: {value}\r\n\r\n").as_bytes());
            self.deflate = Some(deflate.clone());
        }
        self
    }

    /// Whether this request was built from these inputs.
    pub fn is_for(&self, url: &str, headers: &[(&str, &str)], subprotocols: &[&str]) -> bool {
        self.url == url
            && self
                .headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .eq(headers.iter().copied())
            && self
                .subprotocols
                .iter()
                .map(String::as_str)
                .eq(subprotocols.iter().copied())
    }

    /// The request head with `key` in place.
    fn head(&self, key: &[u8]) -> Vec<u8> {
        let mut head = Vec::with_capacity(self.before_key.len() + key.len() + self.after_key.len());
        head.extend_from_slice(&self.before_key);
        head.extend_from_slice(key);
        head.extend_from_slice(&self.after_key);
        head
    }
}

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

/// `Sec-WebSocket-Accept` for a key: base64(sha1(key + GUID)).
fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut hasher = Sha1::new();
    hasher.update(key);
    hasher.update(WEBSOCKET_GUID);
    let mut accept = [0u8; 28];
    // 20 bytes always encode to 28.
    let _ = base64::engine::general_purpose::STANDARD.encode_slice(hasher.finalize(), &mut accept);
    accept
}

enum Response {
    Switching {
        head_len: usize,
        headers: Vec<(String, String)>,
        extensions: Option<String>,
    },
    Other {
        status: u16,
        headers: Vec<(String, String)>,
    },
}

/// Parses and checks the response head in `buffer`; `None` while it is incomplete. Headers are
/// parsed into room on the stack, and again into room on the heap when there are more.
fn parse_response(
    buffer: &[u8],
    request: &UpgradeRequest,
    accept: &[u8],
    keep_headers: bool,
) -> Result<Option<Response>, ConnectError> {
    let mut on_stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut on_heap = Vec::new();
    let mut parsed = httparse::Response::new(&mut on_stack);
    let mut status = parsed.parse(buffer);
    if matches!(status, Err(httparse::Error::TooManyHeaders)) {
        on_heap.resize(MAX_RESPONSE_HEADERS, httparse::EMPTY_HEADER);
        parsed = httparse::Response::new(&mut on_heap);
        status = parsed.parse(buffer);
    }
    match status {
        Ok(httparse::Status::Complete(head_len)) => {
            check_response(&parsed, head_len, request, accept, keep_headers).map(Some)
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(error) => Err(not_http(error)),
    }
}

fn not_http(error: httparse::Error) -> ConnectError {
    ConnectError::new(
        ErrorKind::Protocol,
        format!("the server's upgrade response is not valid HTTP: {error}"),
    )
}

/// The checks of RFC 6455 section 4.1 (as tungstenite makes them) on a complete head.
fn check_response(
    parsed: &httparse::Response<'_, '_>,
    head_len: usize,
    request: &UpgradeRequest,
    accept: &[u8],
    keep_headers: bool,
) -> Result<Response, ConnectError> {
    let status = parsed.code.unwrap_or_default();
    let headers = if keep_headers {
        parsed
            .headers
            .iter()
            .map(|header| {
                (
                    header.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(header.value).into_owned(),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    if status != 101 {
        return Ok(Response::Other { status, headers });
    }
    let protocol_error = |detail: &str| ConnectError::new(ErrorKind::Protocol, detail.to_owned());
    if parsed.version != Some(1) {
        return Err(protocol_error(
            "the server switched protocols over HTTP/1.0; a WebSocket upgrade needs HTTP/1.1",
        ));
    }
    let field = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case(name))
            .map(|header| header.value)
    };
    if !field("upgrade").is_some_and(|value| value.eq_ignore_ascii_case(b"websocket")) {
        return Err(protocol_error(
            "the server's 101 response has no `Upgrade: websocket` header",
        ));
    }
    let connection_upgrade = field("connection").is_some_and(|value| {
        value
            .split(|byte| *byte == b',')
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
    });
    if !connection_upgrade {
        return Err(protocol_error(
            "the server's 101 response has no `Connection: Upgrade` header",
        ));
    }
    if field("sec-websocket-accept").map(<[u8]>::trim_ascii) != Some(accept) {
        return Err(protocol_error(
            "the server's Sec-WebSocket-Accept does not match the key sent (RFC 6455 section 4.1)",
        ));
    }
    // RFC 6455 section 4.1: a subprotocol the client did not offer fails the connection. A
    // server that picks none is within the rules (browsers then report `""`); `expect:
    // { subprotocol: ... }` is how a step insists on one.
    if let Some(picked) = field("sec-websocket-protocol") {
        let picked = picked.trim_ascii();
        let was_offered = request
            .offered
            .as_ref()
            .is_some_and(|offered| offered.iter().any(|name| name.as_bytes() == picked));
        if !was_offered {
            return Err(ConnectError::new(
                ErrorKind::Expectation,
                format!(
                    "the server picked the subprotocol `{}`, which was not offered",
                    String::from_utf8_lossy(picked)
                ),
            ));
        }
    }
    // Read only when the request offered an extension (checked by the caller against the
    // offers); without an offer the answer is left alone, as before.
    let extensions = match &request.deflate {
        Some(_) => {
            let values: Vec<String> = parsed
                .headers
                .iter()
                .filter(|header| header.name.eq_ignore_ascii_case("sec-websocket-extensions"))
                .map(|header| String::from_utf8_lossy(header.value).trim().to_owned())
                .collect();
            (!values.is_empty()).then(|| values.join(", "))
        }
        None => None,
    };
    Ok(Response::Switching {
        head_len,
        headers,
        extensions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

    fn head_text(request: &UpgradeRequest, key: &str) -> String {
        String::from_utf8(request.head(key.as_bytes())).unwrap()
    }

    #[test]
    fn lays_out_the_request_once_with_the_key_in_between() {
        let request = UpgradeRequest::new("ws://user:pw@127.0.0.1:9001/chat?room=1", &[], &[]).unwrap();
        assert_eq!(
            head_text(&request, "dGhlIHNhbXBsZSBub25jZQ=="),
            "GET /chat?room=1 HTTP/1.1\r\nHost: 127.0.0.1:9001\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        assert_eq!(
            (request.host.as_str(), request.port, request.secure),
            ("127.0.0.1", 9001, false)
        );
    }

    #[test]
    fn defaults_path_and_port_and_unbrackets_ipv6() {
        let request = UpgradeRequest::new("wss://[::1]", &[], &[]).unwrap();
        assert!(head_text(&request, "k").starts_with("GET / HTTP/1.1\r\nHost: [::1]\r\n"));
        assert_eq!(
            (request.host.as_str(), request.port, request.secure),
            ("::1", 443, true)
        );
        let plain = UpgradeRequest::new("ws://example.test/", &[], &[]).unwrap();
        assert_eq!(plain.port, 80);
    }

    #[test]
    fn headers_replace_defaults_and_add_after_them() {
        let request = UpgradeRequest::new(
            "ws://127.0.0.1:1/",
            &[
                ("host", "front.test"),
                ("Origin", "http://front.test"),
                ("X-Token", "abc"),
            ],
            &["v2", "v1"],
        )
        .unwrap();
        assert_eq!(
            head_text(&request, "KEY"),
            "GET / HTTP/1.1\r\nHost: front.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: KEY\r\nOrigin: http://front.test\r\n\
             X-Token: abc\r\nSec-WebSocket-Protocol: v2, v1\r\n\r\n"
        );
        assert_eq!(request.offered, Some(vec!["v2".to_owned(), "v1".to_owned()]));
        assert!(request.is_for(
            "ws://127.0.0.1:1/",
            &[
                ("host", "front.test"),
                ("Origin", "http://front.test"),
                ("X-Token", "abc")
            ],
            &["v2", "v1"]
        ));
        assert!(!request.is_for("ws://127.0.0.1:1/", &[("host", "front.test")], &["v2", "v1"]));
        assert!(!request.is_for(
            "ws://127.0.0.1:2/",
            &[
                ("host", "front.test"),
                ("Origin", "http://front.test"),
                ("X-Token", "abc")
            ],
            &["v2", "v1"]
        ));
    }

    #[test]
    fn bad_input_names_the_problem() {
        let kind_and_detail = |result: Result<UpgradeRequest, ConnectError>| {
            let error = result.unwrap_err();
            (error.kind, error.detail)
        };
        let (kind, detail) = kind_and_detail(UpgradeRequest::new("http://127.0.0.1/", &[], &[]));
        assert_eq!(kind, "protocol");
        assert!(detail.contains("not a ws:// or wss:// URL"), "{detail}");
        let (_, detail) = kind_and_detail(UpgradeRequest::new("ws://127.0.0.1:99999/", &[], &[]));
        assert!(
            detail.starts_with("bad URL `ws://127.0.0.1:99999/`: port `99999`"),
            "{detail}"
        );
        let (_, detail) = kind_and_detail(UpgradeRequest::new("ws://127.0.0.1/", &[("bad name", "x")], &[]));
        assert_eq!(detail, "bad header name `bad name`");
        let (_, detail) = kind_and_detail(UpgradeRequest::new("ws://127.0.0.1/", &[("X-A", "line\r\nbreak")], &[]));
        assert_eq!(detail, "bad value for header `X-A`");
    }

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

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
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
