//! One accepted TCP connection from the first byte to the WebSocket: the TLS
//! handshake when serving `wss`, the request head (10 s deadline), plain HTTP
//! answers, refusals, the scripted handshake modes, and the `101` response that
//! hands the stream to a [`session`](crate::session).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::handshake::{self, HeadError, PlainEndpoint, Rejection, RequestHead, Route};
use crate::modes::{Endpoint, Modes};
use crate::session::Session;
use crate::shared::Shared;
use crate::transport::Transport;

/// How long a client has, from the TCP accept, to finish the TLS handshake and
/// send its whole request head.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long writing a small HTTP response and shutting down may take.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves one accepted connection until it ends or `cancel` fires.
///
/// Every connection task runs this one future type, so its size is paid per
/// connection. The TLS path (over 1 KiB of rustls state) is boxed so plain
/// connections do not pay for it, and the handshake phase is boxed and returns
/// before the session starts, so a connection's future is small for its life.
pub(crate) async fn serve(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr, cancel: CancellationToken) {
    // One deadline covers the TLS handshake and the request head together.
    let deadline = Instant::now() + HEAD_TIMEOUT;
    match shared.tls.clone() {
        None => serve_transport(&shared, tcp, peer, deadline, &cancel).await,
        Some(acceptor) => Box::pin(serve_tls(&shared, acceptor, tcp, peer, deadline, &cancel)).await,
    }
}

async fn serve_tls(
    shared: &Shared,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    deadline: Instant,
    cancel: &CancellationToken,
) {
    let accepted = tokio::select! {
        accepted = tokio::time::timeout_at(deadline, acceptor.accept(tcp)) => accepted,
        () = cancel.cancelled() => return,
    };
    match accepted {
        // The stream is boxed too, so the session future holds a pointer.
        Ok(Ok(tls)) => serve_transport(shared, Box::new(tls), peer, deadline, cancel).await,
        Ok(Err(error)) => debug!(%peer, %error, "tls handshake failed; closing"),
        Err(_elapsed) => debug!(%peer, "tls handshake not finished within 10s; closing"),
    }
}

async fn serve_transport<S: Transport>(
    shared: &Shared,
    stream: S,
    peer: SocketAddr,
    deadline: Instant,
    cancel: &CancellationToken,
) {
    // Boxed: the handshake state (request head, modes, response) is needed for
    // a moment, so it lives on the heap then instead of in every connection.
    let handshake = Box::pin(handshake_phase(shared, stream, peer, deadline, cancel));
    let Some(mut upgraded) = handshake.await else {
        return;
    };
    let Upgraded { framing, session } = &mut *upgraded;
    match framing {
        Framing::Plain(websocket) => session.run(websocket, cancel).await,
        Framing::Deflate { stream, early, agreed } => {
            // Boxed: only connections that agreed to deflate pay for yawc's state.
            let Some(stream) = stream.take() else {
                return;
            };
            Box::pin(crate::deflate::serve(
                stream,
                std::mem::take(early),
                agreed,
                session,
                cancel,
            ))
            .await;
        }
    }
    // Dropping the session here ends its `open_connections` count.
}

/// A connection after its `101`, boxed: the future that plays it then holds a
/// pointer, and the state moves once, into the box, instead of being copied
/// into each future it passes through.
struct Upgraded<S: Transport> {
    framing: Framing<S>,
    session: Session,
}

/// Who reads and writes the frames: tungstenite, or yawc when the client's permessage-deflate
/// offer was accepted (tungstenite refuses compressed frames).
// Lives inside the `Upgraded` box: the size difference costs nothing per connection.
#[allow(clippy::large_enum_variant)]
enum Framing<S: Transport> {
    Plain(WebSocketStream<S>),
    /// The stream (taken once to serve it), the bytes read past the request head, the answer.
    Deflate {
        stream: Option<S>,
        early: Vec<u8>,
        agreed: String,
    },
}

/// Reads the request and answers it. Returns the WebSocket and its session
/// after a `101`, or `None` when the request was answered otherwise (plain
/// endpoint, refusal) or the connection went away.
async fn handshake_phase<S: Transport>(
    shared: &Shared,
    mut stream: S,
    peer: SocketAddr,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Option<Box<Upgraded<S>>> {
    let read = tokio::select! {
        read = tokio::time::timeout_at(deadline, handshake::read_request(&mut stream)) => read,
        () = cancel.cancelled() => return None,
    };
    let (head, mut bytes, head_len) = match read {
        Ok(Ok(parsed)) => parsed,
        Ok(Err(HeadError::ClosedBeforeRequest)) => return None,
        Ok(Err(HeadError::Io(error))) => {
            debug!(%peer, %error, "cannot read the request head; closing");
            return None;
        }
        Ok(Err(HeadError::Invalid(rejection))) => return refuse(shared, stream, peer, &rejection).await,
        Err(_elapsed) => {
            debug!(%peer, "no complete request head within 10s; closing");
            return None;
        }
    };
    let route = handshake::classify(&head);
    if route == Route::Http {
        // hyper reads the request again from its first byte, and the ones after it.
        crate::http::serve(shared, stream, bytes, cancel).await;
        return None;
    }
    // Only what follows the head is kept; the head's bytes are freed here.
    let leftover = bytes.split_off(head_len);
    drop(bytes);
    match route {
        Route::Http => None,
        Route::Plain(endpoint) => {
            answer_plain(shared, stream, peer, endpoint).await;
            None
        }
        Route::Reject(rejection) => refuse(shared, stream, peer, &rejection).await,
        Route::Upgrade => upgrade(shared, stream, peer, head, leftover, cancel).await,
    }
}

/// Runs the scripted handshake modes and answers `101`.
async fn upgrade<S: Transport>(
    shared: &Shared,
    mut stream: S,
    peer: SocketAddr,
    head: RequestHead,
    leftover: Vec<u8>,
    cancel: &CancellationToken,
) -> Option<Box<Upgraded<S>>> {
    // `/auth/<endpoint>`: the endpoint, for clients that logged in (`POST /login`).
    let (path, needs_login) = match head.path().strip_prefix("/auth") {
        Some(rest) if rest.starts_with('/') => (rest, true),
        _ => (head.path(), false),
    };
    if needs_login && !shared.logins.authorized(&head) {
        let rejection = Rejection::new(
            401,
            "this endpoint needs a login: the token of POST /login (?token= or Authorization: Bearer) and its sid cookie",
        );
        return refuse(shared, stream, peer, &rejection).await;
    }
    let endpoint = match Endpoint::from_path(path) {
        Ok(endpoint) => endpoint,
        Err(rejection) => return refuse(shared, stream, peer, &rejection).await,
    };
    let modes = match Modes::parse(head.query()) {
        Ok(modes) => modes,
        Err(rejection) => return refuse(shared, stream, peer, &rejection).await,
    };
    if modes.handshake_never {
        // Hold the socket, reading and discarding, until the client gives up or
        // the server stops; the client sees its own handshake timeout.
        let mut discard = tokio::io::sink();
        tokio::select! {
            _ = tokio::io::copy(&mut stream, &mut discard) => {}
            () = cancel.cancelled() => {}
        }
        return None;
    }
    if let Some(delay) = modes.handshake_delay {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = cancel.cancelled() => return None,
        }
    }
    if let Some(overload) = &modes.overload {
        let open = shared.counters.open_now();
        if overload.refuses(open) {
            let rejection = Rejection::new(
                503,
                format!(
                    "over capacity: {open} connections open, refuse_over={}",
                    overload.refuse_at.unwrap_or(open)
                ),
            );
            return refuse(shared, stream, peer, &rejection).await;
        }
    }
    if let Some(status) = modes.handshake_status {
        let rejection = Rejection::new(status, format!("handshake refused by handshake_status={status}"));
        return refuse(shared, stream, peer, &rejection).await;
    }

    // `classify` returned `Upgrade`, which requires a key.
    let key = head.websocket_key.as_deref()?;
    let session_id = shared.next_session_id();
    let protocol = handshake::select_subprotocol(&head.offered_protocols, &shared.subprotocols);
    // Only the echo endpoint speaks permessage-deflate, and only with the modes its loop plays
    // (`deflate.rs`); otherwise the answer is no extension and tungstenite serves the modes.
    let agreed = match endpoint {
        Endpoint::Echo if crate::deflate::DeflateModes::plays(&modes) => {
            modes.deflate.negotiate(&head.offered_extensions)
        }
        _ => None,
    };
    if modes.deflate.corrupt && agreed.is_none() {
        let rejection = Rejection::new(
            400,
            "corrupt_deflate=1 needs a connection that agreed to permessage-deflate: offer it, on /echo, without \
             close_on_open, drop_after, send_on_open, oversize, malformed or capacity",
        );
        return refuse(shared, stream, peer, &rejection).await;
    }
    let response = handshake::switching_protocols(key, protocol, agreed.as_deref(), session_id);
    // Joined before the `101` so a client that sees its handshake succeed is
    // already a member and receives everything published after that.
    let membership = match &endpoint {
        Endpoint::Broadcast { room } => Some(shared.rooms.join(room)),
        Endpoint::Echo | Endpoint::Json => None,
    };
    // Counted before the write so a client that sees `101` sees it counted.
    let open = shared.counters.connection_opened();
    if let Err(error) = write_response(&mut stream, &response).await {
        debug!(%peer, session_id, %error, "cannot write the 101 response; closing");
        open.never_opened();
        return None;
    }

    let framing = match agreed {
        Some(agreed) => Framing::Deflate {
            stream: Some(stream),
            early: leftover,
            agreed,
        },
        None => Framing::Plain(
            WebSocketStream::from_partially_read(stream, leftover, Role::Server, Some(shared.websocket_config)).await,
        ),
    };
    let session = Session {
        id: session_id,
        peer,
        endpoint,
        modes,
        counters: Arc::clone(&shared.counters),
        membership,
        _open: open,
    };
    Some(Box::new(Upgraded { framing, session }))
}

/// Answers `/stats` or `/healthz` and closes.
async fn answer_plain<S: Transport>(shared: &Shared, mut stream: S, peer: SocketAddr, endpoint: PlainEndpoint) {
    let response = match endpoint {
        PlainEndpoint::Health => handshake::http_response(200, "text/plain; charset=utf-8", "", "ok\n"),
        PlainEndpoint::Stats => match serde_json::to_string(&shared.counters.snapshot()) {
            Ok(body) => handshake::http_response(200, "application/json", "", &body),
            Err(error) => handshake::http_response(500, "text/plain; charset=utf-8", "", &format!("{error}\n")),
        },
    };
    if let Err(error) = write_and_shutdown(&mut stream, &response).await {
        debug!(%peer, %error, "cannot write the http response");
    }
}

/// Answers with an HTTP error, counted as a refused handshake. Returns `None`
/// so the handshake phase can end with `return refuse(..).await`.
async fn refuse<S: Transport, T>(shared: &Shared, mut stream: S, peer: SocketAddr, rejection: &Rejection) -> Option<T> {
    shared.counters.handshake_refused();
    let session_id = shared.next_session_id();
    debug!(%peer, session_id, status = rejection.status, reason = %rejection.reason, "refusing the request");
    let response = handshake::rejection_response(rejection, Some(session_id));
    if let Err(error) = write_and_shutdown(&mut stream, &response).await {
        debug!(%peer, %error, "cannot write the refusal");
    }
    None
}

async fn write_response<S: Transport>(stream: &mut S, response: &str) -> std::io::Result<()> {
    tokio::time::timeout(RESPONSE_TIMEOUT, async {
        stream.write_all(response.as_bytes()).await?;
        stream.flush().await
    })
    .await
    .unwrap_or_else(|_elapsed| Err(std::io::ErrorKind::TimedOut.into()))
}

/// Writes a final response, then shuts down the write side (a TLS close_notify
/// and a TCP FIN) so the client reads the whole response before end of stream.
async fn write_and_shutdown<S: Transport>(stream: &mut S, response: &str) -> std::io::Result<()> {
    write_response(stream, response).await?;
    tokio::time::timeout(RESPONSE_TIMEOUT, stream.shutdown())
        .await
        .unwrap_or_else(|_elapsed| Err(std::io::ErrorKind::TimedOut.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection task holds this future for its whole life, so bytes
    /// added to it are multiplied by the connection count (100k in the
    /// benchmark). About 1 KiB in release builds; more in debug builds.
    #[tokio::test]
    async fn the_connection_future_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let server = crate::server::Server::new(&crate::Config::default(), addr).expect("server");
        let future = serve(Arc::clone(&server.shared), tcp, addr, CancellationToken::new());
        let size = std::mem::size_of_val(&future);
        let limit = if cfg!(debug_assertions) { 4096 } else { 1536 };
        assert!(size <= limit, "the connection future is {size} bytes, over {limit}");
    }
}
