//! The HTTP endpoints, served with hyper's HTTP/1.1 server on the connection their first
//! request came on, kept alive for the requests that follow on it:
//!
//! - `POST /login` with a JSON body `{"user": U, "password": "secret"}`: `200` with a
//!   `Set-Cookie: sid=...` and `{"token": T, "user": U}`; another password is `401`, a body that
//!   is not such JSON `400`. The WebSocket endpoints under `/auth/` (`/auth/echo`, `/auth/json`,
//!   `/auth/broadcast/<room>`) accept an upgrade only with a login's token (`?token=T` or
//!   `Authorization: Bearer T`) and the same login's `sid` cookie, and refuse it with `401`
//!   otherwise.
//! - `/http/echo` (any method): `{"method", "path", "query", "cookie", "body"}` of the request;
//!   `?status=N` answers with that status, `?delay_ms=N` waits first, `?set_cookie=NAME=VALUE`
//!   sets a cookie, `?close=1` answers with `Connection: close`.
//!
//! Counted in [`Stats`](crate::Stats): `http_connections`, `http_requests`, `logins`,
//! `logins_refused`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::handshake::RequestHead;
use crate::shared::Shared;

/// The password `/login` accepts.
pub(crate) const PASSWORD: &str = "secret";

/// The largest request body the endpoints read.
const MAX_BODY_BYTES: usize = 1 << 20;

/// The longest `delay_ms`.
const MAX_DELAY_MS: u64 = 60_000;

/// Whether a request for `path` (without an upgrade) is one of the HTTP endpoints.
pub(crate) fn serves(path: &str) -> bool {
    path == "/login" || path == "/http/echo"
}

/// The logins so far: each token with its session cookie.
#[derive(Default)]
pub(crate) struct Logins {
    sessions: Mutex<HashMap<String, String>>,
    made: AtomicU64,
}

impl Logins {
    /// A new login: its token and its `sid`.
    fn open(&self) -> (String, String) {
        let number = self.made.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let digest = |what: &str| -> String {
            Sha1::digest(format!("{what}:{number}:{nanos}").as_bytes())
                .iter()
                .take(12)
                .map(|byte| format!("{byte:02x}"))
                .collect()
        };
        let (token, sid) = (digest("token"), digest("sid"));
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.insert(token.clone(), sid.clone());
        }
        (token, sid)
    }

    /// Whether an upgrade request carries a login's token and that login's `sid` cookie.
    pub(crate) fn authorized(&self, head: &RequestHead) -> bool {
        let from_query = head.query().split('&').find_map(|pair| pair.strip_prefix("token="));
        let from_header = head
            .authorization
            .as_deref()
            .and_then(|value| value.strip_prefix("Bearer "));
        let Some(token) = from_query.or(from_header) else {
            return false;
        };
        let sid = head
            .cookie
            .as_deref()
            .and_then(|cookies| cookies.split(';').find_map(|cookie| cookie.trim().strip_prefix("sid=")));
        let Ok(sessions) = self.sessions.lock() else {
            return false;
        };
        sid.is_some() && sessions.get(token).map(String::as_str) == sid
    }
}

/// Serves the connection's requests, the first of which was already read (`bytes` holds it
/// and whatever followed), until the client closes, a response closes it, or `cancel` fires.
pub(crate) async fn serve<S>(shared: &Shared, stream: S, bytes: Vec<u8>, cancel: &CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    shared.counters.http_connection();
    let io = TokioIo::new(Replayed {
        bytes,
        at: 0,
        inner: stream,
    });
    let service = hyper::service::service_fn(|request| answer(shared, request));
    let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(%error, "http connection ended");
            }
        }
        () = cancel.cancelled() => {}
    }
}

async fn answer(shared: &Shared, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    shared.counters.http_request();
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            return Ok(text(
                413,
                &format!("cannot read the body (at most {MAX_BODY_BYTES} bytes): {error}"),
            ))
        }
    };
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or("");
    Ok(match path {
        "/login" if parts.method == hyper::Method::POST => login(shared, &body),
        "/login" => text(
            405,
            "log in with POST /login and a JSON body {\"user\": ..., \"password\": ...}",
        ),
        _ => echo(&parts, query, &body).await,
    })
}

fn login(shared: &Shared, body: &[u8]) -> Response<Full<Bytes>> {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice::<serde_json::Value>(body) else {
        shared.counters.login_refused();
        return text(400, "send a JSON object {\"user\": ..., \"password\": ...}");
    };
    let user = fields.get("user").and_then(serde_json::Value::as_str).unwrap_or("");
    let password = fields.get("password").and_then(serde_json::Value::as_str);
    if user.is_empty() || password != Some(PASSWORD) {
        shared.counters.login_refused();
        return json(401, &serde_json::json!({ "error": "unknown user or wrong password" }));
    }
    let (token, sid) = shared.logins.open();
    shared.counters.logged_in();
    let mut response = json(200, &serde_json::json!({ "token": token, "user": user }));
    if let Ok(cookie) = hyper::header::HeaderValue::from_str(&format!("sid={sid}; Path=/; HttpOnly")) {
        response.headers_mut().insert(hyper::header::SET_COOKIE, cookie);
    }
    response
}

async fn echo(parts: &hyper::http::request::Parts, query: &str, body: &[u8]) -> Response<Full<Bytes>> {
    let mut status = 200;
    let mut set_cookie = None;
    let mut close = false;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "status" => match value.parse::<u16>() {
                Ok(code) if (200..=599).contains(&code) => status = code,
                _ => return text(400, &format!("status={value} is not an HTTP status from 200 to 599")),
            },
            "delay_ms" => match value.parse::<u64>() {
                Ok(delay) if delay <= MAX_DELAY_MS => tokio::time::sleep(Duration::from_millis(delay)).await,
                _ => {
                    return text(
                        400,
                        &format!("delay_ms={value} is not a number of milliseconds up to {MAX_DELAY_MS}"),
                    )
                }
            },
            "set_cookie" => set_cookie = Some(value.to_owned()),
            "close" => close = value == "1",
            _ => {}
        }
    }
    let cookie = parts
        .headers
        .get(hyper::header::COOKIE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let mut response = json(
        status,
        &serde_json::json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": query,
            "cookie": cookie,
            "body": String::from_utf8_lossy(body),
        }),
    );
    if let Some(cookie) = set_cookie {
        match hyper::header::HeaderValue::from_str(&format!("{cookie}; Path=/")) {
            Ok(value) => {
                response.headers_mut().insert(hyper::header::SET_COOKIE, value);
            }
            Err(_) => return text(400, "set_cookie must be NAME=VALUE in header characters"),
        }
    }
    if close {
        response.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    response
}

fn json(status: u16, value: &serde_json::Value) -> Response<Full<Bytes>> {
    respond(status, "application/json", value.to_string())
}

fn text(status: u16, message: &str) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", format!("{message}\n"))
}

fn respond(status: u16, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

/// The stream with the bytes already read from it put back in front.
struct Replayed<S> {
    bytes: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Replayed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.at < self.bytes.len() {
            let take = (self.bytes.len() - self.at).min(buf.remaining());
            let start = self.at;
            buf.put_slice(&self.bytes[start..start + take]);
            self.at += take;
            if self.at == self.bytes.len() {
                self.bytes = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replayed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(target: &str, authorization: Option<&str>, cookie: Option<&str>) -> RequestHead {
        RequestHead {
            method: "GET".into(),
            target: target.into(),
            authorization: authorization.map(str::to_owned),
            cookie: cookie.map(str::to_owned),
            ..RequestHead::default()
        }
    }

    /// A login's token (in the query or as a bearer) opens `/auth/` only with that login's sid.
    #[test]
    fn an_upgrade_needs_a_logins_token_and_its_cookie() {
        let logins = Logins::default();
        let (token, sid) = logins.open();
        let (other_token, other_sid) = logins.open();
        assert_ne!(token, other_token);
        let cookie = format!("theme=dark; sid={sid}");
        assert!(logins.authorized(&head(&format!("/auth/echo?token={token}"), None, Some(&cookie))));
        assert!(logins.authorized(&head(
            "/auth/echo",
            Some(&format!("Bearer {token}")),
            Some(&format!("sid={sid}"))
        )));
        // Missing, unknown or mismatched pieces.
        assert!(!logins.authorized(&head(&format!("/auth/echo?token={token}"), None, None)));
        assert!(!logins.authorized(&head("/auth/echo", None, Some(&cookie))));
        assert!(!logins.authorized(&head("/auth/echo?token=nope", None, Some(&cookie))));
        assert!(!logins.authorized(&head(
            &format!("/auth/echo?token={token}"),
            None,
            Some(&format!("sid={other_sid}"))
        )));
    }
}
