//! The HTTP client against a server on 127.0.0.1 that answers with bytes the test writes and
//! counts what it reads: wire bytes are exact, a VU's requests share one connection, a server's
//! close opens another, cookies go back and into upgrades of the same origin, timeouts end the
//! connection.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;
use wsfleet_metrics::sets::{SetData, CONNECTION_SET};
use wsfleet_metrics::{Counter, ErrorKind, Hist, Recorder, SetId};

use super::{HttpSession, HttpTarget};
use crate::clock;
use crate::failure::FailureKind;

/// What the server saw: connections accepted, bytes read, bytes written.
#[derive(Default)]
struct Seen {
    connections: AtomicU64,
    read: AtomicU64,
    written: AtomicU64,
}

/// Answers each request head (no request bodies here) with `response`; after `per_connection`
/// answers it closes the connection. `delay` waits before each answer.
async fn serve(
    listener: TcpListener,
    response: &'static [u8],
    per_connection: usize,
    delay: Duration,
    seen: Arc<Seen>,
) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        seen.connections.fetch_add(1, Ordering::Relaxed);
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut buffer = Vec::new();
            let mut answered = 0;
            while answered < per_connection {
                let mut chunk = [0u8; 4096];
                let Ok(read) = socket.read(&mut chunk).await else {
                    return;
                };
                if read == 0 {
                    return;
                }
                seen.read.fetch_add(read as u64, Ordering::Relaxed);
                buffer.extend_from_slice(&chunk[..read]);
                while let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
                    buffer.drain(..end + 4);
                    tokio::time::sleep(delay).await;
                    if socket.write_all(response).await.is_err() {
                        return;
                    }
                    seen.written.fetch_add(response.len() as u64, Ordering::Relaxed);
                    answered += 1;
                }
            }
        });
    }
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: sid=abc; Path=/\r\n\r\nok";

struct Client {
    session: HttpSession,
    recorder: Rc<RefCell<Recorder>>,
    tls: crate::connection::TlsConfig,
}

impl Client {
    fn new() -> Client {
        Client {
            session: HttpSession::default(),
            recorder: Rc::new(RefCell::new(Recorder::new(clock::now(), vec!["get".into()]))),
            tls: crate::connection::default_tls_config().unwrap(),
        }
    }

    async fn get(&mut self, url: &str, timeout: Duration) -> Result<super::Response, crate::failure::ConnectError> {
        let url = Url::parse(url).unwrap();
        let mut request = hyper::Request::builder().uri(url.path());
        request = request.header(hyper::header::HOST, url.authority());
        if let Some(cookie) = self.session.cookie_header(&url) {
            request = request.header(hyper::header::COOKIE, cookie);
        }
        let request = request.body(Full::new(Bytes::new())).unwrap();
        let target = HttpTarget {
            url: &url,
            tls: &self.tls,
            server_name: None,
            proxy: None,
            source: None,
        };
        let deadline = clock::now() + timeout;
        let response = self
            .session
            .send(
                &target,
                request,
                true,
                deadline,
                deadline,
                &self.recorder,
                SetId::Step(0),
            )
            .await?;
        self.session.store_cookies(&response.headers, &url);
        Ok(response)
    }

    /// Everything recorded so far: the step's set and the connection set, over all intervals.
    fn take(&self) -> (SetData, SetData) {
        let intervals = self.recorder.borrow_mut().take_all(clock::now());
        let mut step = SetData::default();
        let mut connection = SetData::default();
        for (_, sets) in &intervals {
            if let Some(data) = sets.sets.get("get") {
                step.merge(data).unwrap();
            }
            if let Some(data) = sets.sets.get(CONNECTION_SET) {
                connection.merge(data).unwrap();
            }
        }
        (step, connection)
    }
}

fn histogram_count(set: &SetData, hist: Hist) -> u64 {
    set.histograms.get(hist.name()).map_or(0, |histogram| histogram.len())
}

#[tokio::test]
async fn requests_share_a_connection_and_count_the_exact_wire_bytes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    tokio::spawn(serve(listener, OK, usize::MAX, Duration::ZERO, seen.clone()));
    let mut client = Client::new();
    for _ in 0..5 {
        let response = client
            .get(&format!("http://{address}/x"), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!((response.status, response.body.as_slice()), (200, &b"ok"[..]));
    }
    assert_eq!(seen.connections.load(Ordering::Relaxed), 1);
    let (step, connection) = client.take();
    let sent = step.counter(Counter::HttpBytesSent.name());
    let received = step.counter(Counter::HttpBytesReceived.name());
    assert_eq!(sent, seen.read.load(Ordering::Relaxed));
    assert_eq!(received, seen.written.load(Ordering::Relaxed));
    assert_eq!(received, 5 * OK.len() as u64);
    // The same bytes are in the wire totals.
    assert_eq!(connection.counter(Counter::BytesSent.name()), sent);
    assert_eq!(connection.counter(Counter::BytesReceived.name()), received);
    assert_eq!(step.counter(Counter::HttpConnectionsOpened.name()), 1);
    assert_eq!(histogram_count(&step, Hist::HttpConnect), 1);
    assert_eq!(histogram_count(&step, Hist::HttpFirstByte), 5);
    // The cookie of the first response went with the four after it.
    assert_eq!(
        client
            .session
            .cookie_header(&Url::parse(&format!("http://{address}/y")).unwrap()),
        Some("sid=abc".to_owned())
    );
}

#[tokio::test]
async fn a_connection_the_server_closed_is_replaced() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    // One answer per connection, then the server closes it (without saying so in the answer).
    tokio::spawn(serve(listener, OK, 1, Duration::ZERO, seen.clone()));
    let mut client = Client::new();
    for _ in 0..3 {
        client
            .get(&format!("http://{address}/x"), Duration::from_secs(5))
            .await
            .unwrap();
        // Let the close arrive before the next request.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen.connections.load(Ordering::Relaxed), 3);
    let (step, _) = client.take();
    assert_eq!(step.counter(Counter::HttpConnectionsOpened.name()), 3);
    assert_eq!(
        step.counter(Counter::HttpBytesSent.name()),
        seen.read.load(Ordering::Relaxed)
    );
}

#[tokio::test]
async fn a_late_answer_is_a_timeout_and_its_connection_is_not_reused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    tokio::spawn(serve(
        listener,
        OK,
        usize::MAX,
        Duration::from_millis(400),
        seen.clone(),
    ));
    let mut client = Client::new();
    let started = std::time::Instant::now();
    let error = client
        .get(&format!("http://{address}/x"), Duration::from_millis(100))
        .await
        .err()
        .unwrap();
    assert_eq!(error.kind, FailureKind::Catalog(ErrorKind::Timeout));
    assert!(
        started.elapsed() < Duration::from_millis(350),
        "{:?}",
        started.elapsed()
    );
    // The request's bytes are counted though it failed.
    let (step, _) = client.take();
    assert_eq!(
        step.counter(Counter::HttpBytesSent.name()),
        seen.read.load(Ordering::Relaxed)
    );
    client
        .get(&format!("http://{address}/x"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(seen.connections.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn a_refused_connection_is_kind_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let mut client = Client::new();
    let error = client
        .get(&format!("http://{address}/x"), Duration::from_secs(5))
        .await
        .err()
        .unwrap();
    assert_eq!(error.kind, FailureKind::Catalog(ErrorKind::Refused));
}

/// Secure cookies go only to https (and wss), host-only cookies only to their host.
#[test]
fn the_jar_matches_cookies_to_urls() {
    let mut session = HttpSession::default();
    let login = Url::parse("https://app.test/login").unwrap();
    session.store_cookies(
        &[
            ("set-cookie".to_owned(), "sid=1; Path=/; Secure; HttpOnly".to_owned()),
            ("set-cookie".to_owned(), "theme=dark; Path=/".to_owned()),
            ("set-cookie".to_owned(), "bad cookie without a value".to_owned()),
            ("x-other".to_owned(), "a=b".to_owned()),
        ],
        &login,
    );
    let header = |url: &str| session.cookie_header(&Url::parse(url).unwrap());
    assert_eq!(header("https://app.test/ws").as_deref(), Some("sid=1; theme=dark"));
    assert_eq!(header("http://app.test/ws").as_deref(), Some("theme=dark"));
    assert_eq!(header("https://other.test/"), None);
    assert_eq!(session.cookies(&login).len(), 2);
}
