//! The byte stream under an HTTP connection: the counted TCP socket of the WebSocket side
//! (wire bytes into `bytes_sent`/`bytes_received`), plus a [`Tally`] the request reads back:
//! the wire bytes it moved (`http_bytes_*`, TLS records and the proxy tunnel included) and
//! when its response's first byte arrived.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::clock;
use crate::connection::Counted;

/// What one request moved over its connection. Reset when a request starts; a connection
/// serves one request at a time.
#[derive(Default)]
pub struct Tally {
    sent: Cell<u64>,
    received: Cell<u64>,
    /// The first read that brought (plaintext) bytes since the request started.
    first_read: Cell<Option<Instant>>,
}

impl Tally {
    /// A request starts: its bytes and its first read are counted from here.
    pub fn start(&self) {
        self.sent.set(0);
        self.received.set(0);
        self.first_read.set(None);
    }

    /// The response's first bytes came in a read that returned at this instant.
    pub fn first_read(&self) -> Option<Instant> {
        self.first_read.get()
    }

    /// Wire bytes written and read since the request started.
    pub fn bytes(&self) -> (u64, u64) {
        (self.sent.get(), self.received.get())
    }
}

/// Counts the wire bytes of a connection into its tally (below TLS, so records count).
pub struct Tallied<S> {
    inner: S,
    tally: Rc<Tally>,
}

impl<S> Tallied<S> {
    pub fn new(inner: S, tally: Rc<Tally>) -> Self {
        Tallied { inner, tally }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tallied<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        self.tally.received.set(self.tally.received.get() + read);
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tallied<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(written)) = result {
            self.tally.sent.set(self.tally.sent.get() + written as u64);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The wire under an HTTP connection: counted TCP, tallied per request.
pub type Wire = Tallied<Counted<TcpStream>>;

/// An HTTP connection's stream, plain or TLS. The first read that brings bytes after a request
/// started is noted here, above TLS: a TLS 1.3 session ticket arriving after the handshake is
/// not mistaken for the response.
pub struct HttpStream {
    transport: Transport,
    tally: Rc<Tally>,
}

enum Transport {
    Plain(Wire),
    Tls(Box<TlsStream<Wire>>),
}

impl HttpStream {
    pub fn plain(wire: Wire, tally: Rc<Tally>) -> Self {
        HttpStream {
            transport: Transport::Plain(wire),
            tally,
        }
    }

    pub fn tls(stream: TlsStream<Wire>, tally: Rc<Tally>) -> Self {
        HttpStream {
            transport: Transport::Tls(Box::new(stream)),
            tally,
        }
    }
}

impl AsyncRead for HttpStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = match &mut this.transport {
            Transport::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        };
        if buf.filled().len() > before && this.tally.first_read.get().is_none() {
            this.tally.first_read.set(Some(clock::now()));
        }
        result
    }
}

impl AsyncWrite for HttpStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().transport {
            Transport::Plain(stream) => Pin::new(stream).poll_write(cx, data),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().transport {
            Transport::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().transport {
            Transport::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
