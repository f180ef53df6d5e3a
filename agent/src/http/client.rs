//! A VU's HTTP client: its cookie jar, its kept-alive connections, and one request at a time
//! over them (dial when needed, send, read the response, keep the connection when it may
//! serve the next request).

use std::cell::RefCell;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use cookie_store::CookieStore;
use futures_util::FutureExt as _;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use url::Url;
use wsfleet_metrics::{Counter, ErrorKind, Hist, Recorder, SetId};
use wsfleet_scenario::{Proxy, MAX_HTTP_BODY_BYTES};

use super::stream::{HttpStream, Tallied, Tally};
use crate::clock;
use crate::connection::{self, Counted, TlsConfig};
use crate::failure::{io_error, io_error_kind, ConnectError};

type Conn = Connection<TokioIo<HttpStream>, Full<Bytes>>;

/// Where a request goes and how its connection is made.
pub struct HttpTarget<'a> {
    pub url: &'a Url,
    pub tls: &'a TlsConfig,
    /// The name the certificate is checked against, when not the URL's host.
    pub server_name: Option<&'a str>,
    pub proxy: Option<&'a Proxy>,
    /// The local address a new connection binds to.
    pub source: Option<IpAddr>,
}

/// A response, read to its end.
pub struct Response {
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body when the step keeps it; empty otherwise.
    pub body: Vec<u8>,
}

/// What identifies a connection a later request may reuse: the origin, and how it was reached.
#[derive(PartialEq)]
struct Origin {
    secure: bool,
    host: String,
    port: u16,
    proxy: Option<Proxy>,
    server_name: Option<String>,
    /// The TLS settings, by identity (one `Arc` per step that has its own, else the run's).
    tls: usize,
}

/// A kept-alive connection.
struct Kept {
    origin: Origin,
    sender: SendRequest<Full<Bytes>>,
    /// hyper's connection task, polled by the request that uses it (a VU makes one request at
    /// a time, so no task of its own is needed).
    conn: Pin<Box<Conn>>,
    /// The connection task finished: the server closed, or a response said `Connection: close`.
    ended: bool,
    tally: Rc<Tally>,
}

impl Kept {
    /// Whether a new request may go over this connection: it has not ended, and the server
    /// did not close it while it was idle (polled once here to find out).
    fn usable(&mut self) -> bool {
        if !self.ended && self.conn.as_mut().now_or_never().is_some() {
            self.ended = true;
        }
        !self.ended && !self.sender.is_closed() && self.sender.is_ready()
    }
}

/// A VU's HTTP state: its cookie jar and its connections, kept for the VU's life (as a
/// browser keeps them for a user's).
#[derive(Default)]
pub struct HttpSession {
    jar: CookieStore,
    kept: Vec<Kept>,
}

impl HttpSession {
    /// The `Cookie` header value for a request to `url` (`ws://` and `wss://` match as
    /// `http://` and `https://`), or `None` when no cookie of the jar applies.
    pub fn cookie_header(&self, url: &Url) -> Option<String> {
        // RFC 6265 section 5.4: longer paths first; then by name, so the header is the same
        // from one request to the next (the jar keeps no creation order).
        let mut cookies: Vec<&cookie_store::RawCookie<'_>> =
            self.jar.matches(url).into_iter().map(|cookie| &**cookie).collect();
        if cookies.is_empty() {
            return None;
        }
        cookies.sort_by(|a, b| {
            let path = |cookie: &cookie_store::RawCookie<'_>| cookie.path().map_or(0, str::len);
            path(b).cmp(&path(a)).then_with(|| a.name().cmp(b.name()))
        });
        let pairs: Vec<String> = cookies
            .iter()
            .map(|cookie| format!("{}={}", cookie.name(), cookie.value()))
            .collect();
        Some(pairs.join("; "))
    }

    /// The jar's cookies that apply to `url`, by name.
    pub fn cookies(&self, url: &Url) -> Vec<(String, String)> {
        self.jar
            .get_request_values(url)
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    }

    /// Stores the response's `Set-Cookie` headers for `url`. A cookie the jar refuses (bad
    /// syntax, a domain that does not match) is left out, as a browser leaves it.
    pub fn store_cookies(&mut self, headers: &[(String, String)], url: &Url) {
        for (_, value) in headers.iter().filter(|(name, _)| name == "set-cookie") {
            if let Err(error) = self.jar.parse(value, url) {
                tracing::debug!(%url, cookie = %value, %error, "cookie refused");
            }
        }
    }

    /// Makes one request, within `deadline` (and `connect_deadline` for a new connection's
    /// DNS, TCP, tunnel and TLS). Records the connection's phases (`dns`, `http_connect`,
    /// `http_tls`), `http_connections_opened`, `http_first_byte` and the wire bytes
    /// (`http_bytes_*`) in `set`; the caller records the request's outcome.
    #[allow(clippy::too_many_arguments)]
    pub async fn send(
        &mut self,
        target: &HttpTarget<'_>,
        request: hyper::Request<Full<Bytes>>,
        keep_body: bool,
        deadline: Instant,
        connect_deadline: Instant,
        recorder: &Rc<RefCell<Recorder>>,
        set: SetId,
    ) -> Result<Response, ConnectError> {
        let origin = origin(target)?;
        let reused = match self.kept.iter().position(|kept| kept.origin == origin) {
            Some(index) => {
                let mut kept = self.kept.swap_remove(index);
                kept.usable().then_some(kept)
            }
            None => None,
        };
        // Every connection the request touched, so its bytes are counted whatever happens.
        let tallies: RefCell<Vec<Rc<Tally>>> = RefCell::new(Vec::new());
        let exchange = exchange(
            reused,
            origin,
            target,
            request,
            keep_body,
            connect_deadline,
            recorder,
            set,
            &tallies,
        );
        let result = match tokio::time::timeout_at(deadline.into(), exchange).await {
            Ok(result) => result,
            Err(_) => Err(ConnectError::new(
                ErrorKind::Timeout,
                "the request did not finish within its timeout",
            )),
        };
        let (sent, received) = tallies.borrow().iter().fold((0, 0), |(sent, received), tally| {
            let (more_sent, more_received) = tally.bytes();
            (sent + more_sent, received + more_received)
        });
        let now = clock::now();
        let mut recorder = recorder.borrow_mut();
        recorder.add(now, set, Counter::HttpBytesSent, sent);
        recorder.add(now, set, Counter::HttpBytesReceived, received);
        drop(recorder);
        let (response, kept) = result?;
        if let Some(kept) = kept {
            self.kept.push(kept);
        }
        Ok(response)
    }
}

/// Sends the request over the reused connection, or a new one, and reads the response. A
/// reused connection that turns out closed before the request went out is replaced once by a
/// new one (the request was not sent, so sending it again is safe whatever its method).
#[allow(clippy::too_many_arguments)]
async fn exchange(
    mut reused: Option<Kept>,
    origin: Origin,
    target: &HttpTarget<'_>,
    mut request: hyper::Request<Full<Bytes>>,
    keep_body: bool,
    connect_deadline: Instant,
    recorder: &Rc<RefCell<Recorder>>,
    set: SetId,
    tallies: &RefCell<Vec<Rc<Tally>>>,
) -> Result<(Response, Option<Kept>), ConnectError> {
    // Taken by the first dial; a reused connection that fails over dials with it.
    let mut origin = Some(origin);
    loop {
        let (mut kept, fresh) = match reused.take() {
            Some(kept) => {
                kept.tally.start();
                tallies.borrow_mut().push(kept.tally.clone());
                (kept, false)
            }
            None => {
                let tally = Rc::new(Tally::default());
                tallies.borrow_mut().push(tally.clone());
                let origin = origin
                    .take()
                    .ok_or_else(|| ConnectError::new(ErrorKind::Reset, "the connection closed before the request"))?;
                let dialed =
                    tokio::time::timeout_at(connect_deadline.into(), dial(target, origin, tally, recorder, set))
                        .await
                        .map_err(|_| {
                            ConnectError::new(ErrorKind::Timeout, "connecting did not finish within connect_timeout")
                        })?;
                (dialed?, true)
            }
        };
        let handed = clock::now();
        let sent = drive(&mut kept, |kept| kept.sender.try_send_request(request)).await;
        let response = match sent {
            Ok(response) => response,
            Err(mut error) => match error.take_message() {
                Some(message) if !fresh => {
                    // The reused connection closed while idle: a new one, once.
                    request = message;
                    continue;
                }
                _ => return Err(hyper_error(&error.into_error(), "sending the request")),
            },
        };
        let first_byte = kept.tally.first_read().unwrap_or_else(clock::now);
        recorder.borrow_mut().record(
            clock::now(),
            set,
            Hist::HttpFirstByte,
            first_byte.saturating_duration_since(handed),
        );
        let status = response.status().as_u16();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut incoming = response.into_body();
        let mut body = Vec::new();
        let read: Result<(), ConnectError> = drive(&mut kept, |_| async {
            while let Some(frame) = incoming.frame().await {
                let frame = frame.map_err(|error| hyper_error(&error, "reading the response body"))?;
                if let Ok(data) = frame.into_data() {
                    if keep_body {
                        if body.len() + data.len() > MAX_HTTP_BODY_BYTES {
                            return Err(ConnectError::new(
                                ErrorKind::MessageTooBig,
                                format!("the response body is over {} MiB", MAX_HTTP_BODY_BYTES >> 20),
                            ));
                        }
                        body.extend_from_slice(&data);
                    }
                }
            }
            Ok(())
        })
        .await;
        read?;
        let keep = (!kept.ended).then_some(kept);
        return Ok((Response { status, headers, body }, keep));
    }
}

/// Runs `work` (which uses the connection's sender or response body) while polling the
/// connection's task, which moves the bytes; notes when the task ends.
async fn drive<F, Fut>(kept: &mut Kept, work: F) -> Fut::Output
where
    F: FnOnce(&mut Kept) -> Fut,
    Fut: Future,
{
    let work = work(kept);
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            biased;
            output = &mut work => return output,
            ended = kept.conn.as_mut(), if !kept.ended => {
                kept.ended = true;
                if let Err(error) = ended {
                    tracing::debug!(%error, "http connection ended");
                }
            }
        }
    }
}

/// The origin of a request, checked: `http` or `https` with a host.
fn origin(target: &HttpTarget<'_>) -> Result<Origin, ConnectError> {
    let url = target.url;
    let secure = match url.scheme() {
        "https" => true,
        "http" => false,
        other => {
            return Err(ConnectError::new(
                ErrorKind::Protocol,
                format!("`{url}` is a {other}: URL, not http:// or https://"),
            ))
        }
    };
    let host = match url.host() {
        Some(url::Host::Domain(name)) => name.to_owned(),
        Some(url::Host::Ipv4(address)) => address.to_string(),
        Some(url::Host::Ipv6(address)) => address.to_string(),
        None => return Err(ConnectError::new(ErrorKind::Protocol, format!("`{url}` has no host"))),
    };
    Ok(Origin {
        secure,
        host,
        port: url.port_or_known_default().unwrap_or(if secure { 443 } else { 80 }),
        proxy: target.proxy.cloned(),
        server_name: target.server_name.map(str::to_owned),
        tls: std::sync::Arc::as_ptr(target.tls) as usize,
    })
}

/// Opens a connection: DNS, TCP (through the proxy's tunnel when there is one), TLS for
/// `https`, each phase timed, then hyper's HTTP/1.1 client over it.
async fn dial(
    target: &HttpTarget<'_>,
    origin: Origin,
    tally: Rc<Tally>,
    recorder: &Rc<RefCell<Recorder>>,
    set: SetId,
) -> Result<Kept, ConnectError> {
    let (dial_host, dial_port): (&str, u16) = match &origin.proxy {
        Some(proxy) => (&proxy.host, proxy.port),
        None => (&origin.host, origin.port),
    };
    let address = connection::resolve(dial_host, dial_port, recorder, set).await?;
    let tcp_started = clock::now();
    let tcp = match target.source {
        None => TcpStream::connect(address).await,
        Some(source) => connection::connect_from(source, address).await,
    }
    .map_err(|error| io_error(&error, &format!("connect to {address}")))?;
    let _ = tcp.set_nodelay(true);
    let mut wire = Tallied::new(Counted::new(tcp, recorder.clone()), tally.clone());
    if let Some(proxy) = &origin.proxy {
        connection::tunnel(&mut wire, proxy, &origin.host, origin.port).await?;
    }
    let now = clock::now();
    {
        let mut recorder = recorder.borrow_mut();
        recorder.record(now, set, Hist::HttpConnect, now - tcp_started);
        recorder.add(now, set, Counter::HttpConnectionsOpened, 1);
    }
    let stream = if origin.secure {
        let tls_started = clock::now();
        let name = target.server_name.unwrap_or(&origin.host).to_owned();
        let server_name = rustls_pki_types::ServerName::try_from(name.clone())
            .map_err(|_| ConnectError::new(ErrorKind::Tls, format!("`{name}` is not a valid TLS server name")))?;
        let stream = tokio_rustls::TlsConnector::from(target.tls.clone())
            .connect(server_name, wire)
            .await
            .map_err(|error| connection::tls_or_io(&error))?;
        let now = clock::now();
        recorder.borrow_mut().record(now, set, Hist::HttpTls, now - tls_started);
        HttpStream::tls(stream, tally.clone())
    } else {
        HttpStream::plain(wire, tally.clone())
    };
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|error| hyper_error(&error, "starting HTTP/1.1"))?;
    Ok(Kept {
        origin,
        sender,
        conn: Box::pin(conn),
        ended: false,
        tally,
    })
}

/// Classifies a hyper error: the I/O error under it when there is one, else what hyper says.
fn hyper_error(error: &hyper::Error, doing: &str) -> ConnectError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                return ConnectError::new(ErrorKind::Tls, format!("{doing}: {io}"));
            }
            return ConnectError::new(io_error_kind(io), format!("{doing}: {io}"));
        }
        source = cause.source();
    }
    let kind = if error.is_parse() || error.is_parse_status() || error.is_parse_too_large() {
        ErrorKind::Protocol
    } else if error.is_incomplete_message() || error.is_canceled() || error.is_closed() || error.is_body_write_aborted()
    {
        ErrorKind::Reset
    } else {
        ErrorKind::Protocol
    };
    ConnectError::new(kind, format!("{doing}: {error}"))
}
