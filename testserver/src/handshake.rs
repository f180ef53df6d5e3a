//! The HTTP/1.1 side of a connection: reading the request head, deciding what it
//! asks for (a WebSocket upgrade, a plain endpoint, or nothing valid), and
//! writing the responses.
//!
//! The upgrade is done here rather than by tungstenite's `accept` so the server
//! controls every byte before the WebSocket starts: scripted refusals, delays,
//! never answering, extra headers, and the plain `/stats` endpoint on the same port.

use base64::Engine as _;
use sha1::{Digest, Sha1};
use std::fmt::Write as _;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The largest request head accepted; larger heads get `431`.
pub(crate) const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The head buffer starts small and doubles up to [`MAX_HEAD_BYTES`], so a
/// typical 300-byte upgrade request costs one small allocation.
const INITIAL_HEAD_CAPACITY: usize = 1024;

/// More headers than this get `431`.
const MAX_HEADERS: usize = 64;

/// The GUID that RFC 6455 section 1.3 appends to the key.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What the server needs from a request head, copied out of the read buffer so
/// the buffer can be freed before the connection lives on.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct RequestHead {
    pub(crate) method: String,
    /// The request target as sent: path and optional `?query`.
    pub(crate) target: String,
    /// The minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub(crate) http_minor_version: u8,
    /// `Upgrade` names `websocket` (case-insensitive).
    pub(crate) upgrade_websocket: bool,
    /// `Connection` has the `upgrade` token (case-insensitive).
    pub(crate) connection_upgrade: bool,
    pub(crate) websocket_key: Option<String>,
    pub(crate) websocket_version: Option<String>,
    /// Every offered subprotocol, in the client's order, across repeated headers.
    pub(crate) offered_protocols: Vec<String>,
    /// Every `Sec-WebSocket-Extensions` value, in order.
    pub(crate) offered_extensions: Vec<String>,
    /// `Authorization` and `Cookie`, for the `/auth/` endpoints.
    pub(crate) authorization: Option<String>,
    pub(crate) cookie: Option<String>,
}

impl RequestHead {
    /// The target without its query.
    pub(crate) fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(path, _)| path)
    }

    /// The query string after `?`, or `""`.
    pub(crate) fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, query)| query)
    }
}

/// Why no request head could be read.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// The client closed before sending anything: a port probe, not an error.
    ClosedBeforeRequest,
    /// The socket failed or closed mid-head; nothing can be answered.
    Io(std::io::Error),
    /// The head can be answered with an HTTP error.
    Invalid(Rejection),
}

/// An HTTP error response to a request that did not become a WebSocket.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rejection {
    pub(crate) status: u16,
    /// A short plain-text body saying what was wrong and what to send instead.
    pub(crate) reason: String,
    /// Whether to add `Sec-WebSocket-Version: 13` (RFC 6455 section 4.4).
    pub(crate) advertise_version: bool,
}

impl Rejection {
    pub(crate) fn new(status: u16, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            advertise_version: false,
        }
    }
}

/// Reads one request head and returns it with the bytes that followed it
/// (a client may send its first frames right behind the head).
#[cfg(test)]
pub(crate) async fn read_request_head<S>(stream: &mut S) -> Result<(RequestHead, Vec<u8>), HeadError>
where
    S: AsyncRead + Unpin,
{
    let (head, mut bytes, head_len) = read_request(stream).await?;
    Ok((head, bytes.split_off(head_len)))
}

/// Reads one request head; returns it with every byte read (the head's, then those that
/// followed it) and the head's length. An upgrade keeps what follows the head (a client may
/// send its first frames right behind it); an HTTP endpoint hands all of it to hyper.
pub(crate) async fn read_request<S>(stream: &mut S) -> Result<(RequestHead, Vec<u8>, usize), HeadError>
where
    S: AsyncRead + Unpin,
{
    let mut buffer = Vec::with_capacity(INITIAL_HEAD_CAPACITY);
    loop {
        if buffer.len() == buffer.capacity() {
            if buffer.len() >= MAX_HEAD_BYTES {
                return Err(HeadError::Invalid(head_too_large()));
            }
            let grow_by = buffer.capacity().min(MAX_HEAD_BYTES - buffer.len());
            buffer.reserve_exact(grow_by);
        }
        let read = stream.read_buf(&mut buffer).await.map_err(HeadError::Io)?;
        if read == 0 {
            if buffer.is_empty() {
                return Err(HeadError::ClosedBeforeRequest);
            }
            return Err(HeadError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed in the middle of the request head",
            )));
        }
        match parse_request_head(&buffer)? {
            Some((head, head_len)) => return Ok((head, buffer, head_len)),
            None if buffer.len() >= MAX_HEAD_BYTES => {
                return Err(HeadError::Invalid(head_too_large()));
            }
            None => {}
        }
    }
}

fn head_too_large() -> Rejection {
    Rejection::new(
        431,
        format!("request head is larger than {MAX_HEAD_BYTES} bytes; send fewer or shorter headers"),
    )
}

/// Parses a complete head, or returns `None` when more bytes are needed.
pub(crate) fn parse_request_head(bytes: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(bytes) {
        Ok(httparse::Status::Complete(head_len)) => head_len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::Invalid(Rejection::new(
                431,
                format!("request has more than {MAX_HEADERS} headers; send fewer"),
            )))
        }
        Err(error) => {
            return Err(HeadError::Invalid(Rejection::new(
                400,
                format!("malformed http request ({error}); send an HTTP/1.1 GET with Upgrade: websocket"),
            )))
        }
    };
    let mut head = RequestHead {
        method: request.method.unwrap_or_default().to_owned(),
        target: request.path.unwrap_or_default().to_owned(),
        http_minor_version: request.version.unwrap_or_default(),
        ..RequestHead::default()
    };
    for header in request.headers.iter() {
        // Header values are bytes; a value that is not UTF-8 counts as absent.
        let Ok(value) = std::str::from_utf8(header.value) else {
            continue;
        };
        let name = header.name;
        if name.eq_ignore_ascii_case("upgrade") {
            head.upgrade_websocket |= has_token(value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            head.connection_upgrade |= has_token(value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            head.websocket_key = Some(value.trim().to_owned());
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            head.websocket_version = Some(value.trim().to_owned());
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            head.offered_extensions.push(value.trim().to_owned());
        } else if name.eq_ignore_ascii_case("authorization") {
            head.authorization = Some(value.trim().to_owned());
        } else if name.eq_ignore_ascii_case("cookie") {
            head.cookie = Some(value.trim().to_owned());
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            head.offered_protocols.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|protocol| !protocol.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    Ok(Some((head, head_len)))
}

/// Whether a comma-separated header value holds `token` (case-insensitive).
fn has_token(value: &str, token: &str) -> bool {
    value.split(',').any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// A plain HTTP endpoint served without an upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlainEndpoint {
    Stats,
    Health,
}

/// What a request head asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Route {
    Plain(PlainEndpoint),
    /// One of the HTTP endpoints served with keep-alive (`POST /login`, `/http/echo`).
    Http,
    /// A valid WebSocket upgrade; the key is checked, path and query are not yet.
    Upgrade,
    Reject(Rejection),
}

/// Decides what a request asks for, checking the upgrade rules of RFC 6455
/// section 4.2.1 with reasons a user can act on.
pub(crate) fn classify(head: &RequestHead) -> Route {
    if !head.upgrade_websocket {
        if crate::http::serves(head.path()) {
            return Route::Http;
        }
        if head.method == "GET" {
            match head.path() {
                "/stats" => return Route::Plain(PlainEndpoint::Stats),
                "/healthz" => return Route::Plain(PlainEndpoint::Health),
                _ => {}
            }
        }
        return Route::Reject(Rejection::new(
            400,
            "this is a websocket server: send GET with `Upgrade: websocket` \
             (plain http serves GET /stats, GET /healthz, POST /login and /http/echo)",
        ));
    }
    if head.method != "GET" {
        return Route::Reject(Rejection::new(
            400,
            format!("a websocket upgrade must use GET, not {}", head.method),
        ));
    }
    if head.http_minor_version != 1 {
        return Route::Reject(Rejection::new(400, "a websocket upgrade must use HTTP/1.1"));
    }
    if !head.connection_upgrade {
        return Route::Reject(Rejection::new(
            400,
            "missing `Connection: Upgrade` header in the websocket upgrade",
        ));
    }
    match head.websocket_version.as_deref() {
        Some("13") => {}
        Some(other) => {
            return Route::Reject(Rejection {
                advertise_version: true,
                ..Rejection::new(
                    400,
                    format!("unsupported Sec-WebSocket-Version {other:?}; this server speaks version 13"),
                )
            })
        }
        None => {
            return Route::Reject(Rejection {
                advertise_version: true,
                ..Rejection::new(400, "missing `Sec-WebSocket-Version: 13` header")
            })
        }
    }
    let Some(key) = head.websocket_key.as_deref() else {
        return Route::Reject(Rejection::new(400, "missing Sec-WebSocket-Key header"));
    };
    let key_is_16_bytes = base64::engine::general_purpose::STANDARD
        .decode(key)
        .is_ok_and(|decoded| decoded.len() == 16);
    if !key_is_16_bytes {
        return Route::Reject(Rejection::new(
            400,
            "invalid Sec-WebSocket-Key: expected 16 random bytes in base64",
        ));
    }
    Route::Upgrade
}

/// `Sec-WebSocket-Accept` for a key: base64(sha1(key + GUID)).
pub(crate) fn accept_key(key: &str) -> String {
    let mut hasher = Sha1::new();
    hasher.update(key.as_bytes());
    hasher.update(WEBSOCKET_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(hasher.finalize())
}

/// The first protocol the client offered that the server supports.
pub(crate) fn select_subprotocol<'a>(offered: &'a [String], supported: &[String]) -> Option<&'a str> {
    offered
        .iter()
        .find(|protocol| supported.contains(protocol))
        .map(String::as_str)
}

/// The `101 Switching Protocols` response.
pub(crate) fn switching_protocols(
    key: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
    session_id: u64,
) -> String {
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        accept_key(key)
    );
    if let Some(protocol) = protocol {
        // Writing into a String cannot fail.
        let _ = write!(response, "Sec-WebSocket-Protocol: {protocol}\r\n");
    }
    if let Some(extensions) = extensions {
        let _ = write!(response, "Sec-WebSocket-Extensions: {extensions}\r\n");
    }
    let _ = write!(response, "X-Session-Id: {session_id}\r\n\r\n");
    response
}

/// An error response that closes the connection. Upgrade attempts carry their
/// session id like every handshake response.
pub(crate) fn rejection_response(rejection: &Rejection, session_id: Option<u64>) -> String {
    let mut extra_headers = String::new();
    if rejection.advertise_version {
        extra_headers.push_str("Sec-WebSocket-Version: 13\r\n");
    }
    if let Some(session_id) = session_id {
        let _ = write!(extra_headers, "X-Session-Id: {session_id}\r\n");
    }
    let body = format!("{}\n", rejection.reason);
    http_response(rejection.status, "text/plain; charset=utf-8", &extra_headers, &body)
}

/// A complete `Connection: close` response with a body.
pub(crate) fn http_response(status: u16, content_type: &str, extra_headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n{extra_headers}\r\n{body}",
        reason_phrase(status),
        body.len()
    )
}

/// Reason phrases for the statuses a test is likely to script; clients ignore
/// the phrase, so unknown codes get a neutral one.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID_UPGRADE: &str = "GET /chat?delay=1s HTTP/1.1\r\nHost: localhost\r\n\
        Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Protocol: chat.v2, chat.v1\r\nSec-WebSocket-Protocol: json\r\n\r\n";

    fn parse(text: &str) -> RequestHead {
        match parse_request_head(text.as_bytes()) {
            Ok(Some((head, head_len))) => {
                assert_eq!(head_len, text.len());
                head
            }
            other => panic!("expected a complete head, got {other:?}"),
        }
    }

    fn rejection(route: Route) -> Rejection {
        match route {
            Route::Reject(rejection) => rejection,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn valid_upgrade_is_parsed_and_accepted() {
        let head = parse(VALID_UPGRADE);
        assert_eq!(head.path(), "/chat");
        assert_eq!(head.query(), "delay=1s");
        assert_eq!(head.offered_protocols, ["chat.v2", "chat.v1", "json"]);
        assert_eq!(classify(&head), Route::Upgrade);
    }

    #[test]
    fn partial_head_needs_more_bytes() {
        let partial = &VALID_UPGRADE[..40];
        assert!(matches!(parse_request_head(partial.as_bytes()), Ok(None)));
    }

    #[test]
    fn missing_key_is_rejected_with_reason() {
        let text = VALID_UPGRADE.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
        let rejection = rejection(classify(&parse(&text)));
        assert_eq!(rejection.status, 400);
        assert_eq!(rejection.reason, "missing Sec-WebSocket-Key header");
    }

    #[test]
    fn key_that_is_not_16_bytes_is_rejected() {
        let text = VALID_UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=");
        let rejection = rejection(classify(&parse(&text)));
        assert_eq!(rejection.status, 400);
        assert!(rejection.reason.starts_with("invalid Sec-WebSocket-Key"));
    }

    #[test]
    fn wrong_version_is_rejected_and_advertises_13() {
        let text = VALID_UPGRADE.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
        let rejection = rejection(classify(&parse(&text)));
        assert_eq!(rejection.status, 400);
        assert_eq!(
            rejection.reason,
            "unsupported Sec-WebSocket-Version \"8\"; this server speaks version 13"
        );
        assert!(rejection.advertise_version);
        let response = rejection_response(&rejection, Some(7));
        assert!(response.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(response.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        assert!(response.contains("\r\nX-Session-Id: 7\r\n"));
    }

    #[test]
    fn missing_connection_upgrade_and_wrong_method_are_rejected() {
        let text = VALID_UPGRADE.replace("Connection: keep-alive, Upgrade", "Connection: keep-alive");
        assert_eq!(
            rejection(classify(&parse(&text))).reason,
            "missing `Connection: Upgrade` header in the websocket upgrade"
        );
        let text = VALID_UPGRADE.replace("GET ", "POST ");
        assert_eq!(
            rejection(classify(&parse(&text))).reason,
            "a websocket upgrade must use GET, not POST"
        );
    }

    #[test]
    fn plain_requests_route_to_endpoints_or_400() {
        let get = |path: &str| parse(&format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert_eq!(classify(&get("/stats")), Route::Plain(PlainEndpoint::Stats));
        assert_eq!(classify(&get("/healthz?x=1")), Route::Plain(PlainEndpoint::Health));
        let rejection = rejection(classify(&get("/echo")));
        assert_eq!(rejection.status, 400);
        assert!(rejection.reason.contains("Upgrade: websocket"));
    }

    #[test]
    fn malformed_and_oversized_heads_are_answered() {
        match parse_request_head(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n") {
            Err(HeadError::Invalid(rejection)) => assert_eq!(rejection.status, 400),
            other => panic!("expected 400, got {other:?}"),
        }
        let many_headers: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: y\r\n")).collect();
        let text = format!("GET / HTTP/1.1\r\n{many_headers}\r\n");
        match parse_request_head(text.as_bytes()) {
            Err(HeadError::Invalid(rejection)) => assert_eq!(rejection.status, 431),
            other => panic!("expected 431, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn reader_keeps_bytes_after_the_head_and_limits_size() {
        let mut input = VALID_UPGRADE.as_bytes().to_vec();
        input.extend_from_slice(&[0x81, 0x00]);
        let (head, leftover) = match read_request_head(&mut input.as_slice()).await {
            Ok(parsed) => parsed,
            Err(error) => panic!("head should parse: {error:?}"),
        };
        assert_eq!(head.path(), "/chat");
        assert_eq!(leftover, [0x81, 0x00]);

        input = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(MAX_HEAD_BYTES)).into_bytes();
        match read_request_head(&mut input.as_slice()).await {
            Err(HeadError::Invalid(rejection)) => assert_eq!(rejection.status, 431),
            other => panic!("expected 431, got {other:?}"),
        }
        match read_request_head(&mut [].as_slice()).await {
            Err(HeadError::ClosedBeforeRequest) => {}
            other => panic!("expected an early close, got {other:?}"),
        }
    }

    #[test]
    fn subprotocol_is_the_first_offered_that_is_supported() {
        let offered = ["chat.v2".to_owned(), "chat.v1".to_owned()];
        let supported = ["chat.v1".to_owned(), "chat.v2".to_owned()];
        assert_eq!(select_subprotocol(&offered, &supported), Some("chat.v2"));
        assert_eq!(select_subprotocol(&offered, &["json".to_owned()]), None);
        assert_eq!(select_subprotocol(&[], &supported), None);
    }

    #[test]
    fn switching_protocols_carries_accept_protocol_and_session() {
        let response = switching_protocols("dGhlIHNhbXBsZSBub25jZQ==", Some("chat.v1"), None, 1);
        assert_eq!(
            response,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat.v1\r\n\
             X-Session-Id: 1\r\n\r\n"
        );
    }
}
