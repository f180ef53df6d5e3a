//! The server's answer to the upgrade: the `Sec-WebSocket-Accept` a key calls for, and the
//! response head parsed (headers on the stack first) and checked as RFC 6455 section 4.1 asks.

use base64::Engine as _;
use sha1::{Digest, Sha1};
use wsfleet_metrics::ErrorKind;

use super::UpgradeRequest;
use crate::failure::ConnectError;

/// The GUID that RFC 6455 section 1.3 appends to the key.
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Headers parsed from the stack; a response with more is parsed again with room for
/// [`MAX_RESPONSE_HEADERS`].
const STACK_HEADERS: usize = 32;
const MAX_RESPONSE_HEADERS: usize = 1024;

/// `Sec-WebSocket-Accept` for a key: base64(sha1(key + GUID)).
pub(super) fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut hasher = Sha1::new();
    hasher.update(key);
    hasher.update(WEBSOCKET_GUID);
    let mut accept = [0u8; 28];
    // 20 bytes always encode to 28.
    let _ = base64::engine::general_purpose::STANDARD.encode_slice(hasher.finalize(), &mut accept);
    accept
}

pub(super) enum Response {
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
pub(super) fn parse_response(
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

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
