//! The byte streams the server speaks over, plain TCP or TLS over TCP: its own module so the
//! upgrade ([`connection`](crate::connection)) and the WebSocket session
//! ([`session`](crate::session)) share it without using each other.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A byte stream the server speaks over: plain TCP or TLS over TCP.
///
/// The upgrade and the WebSocket session are generic over it; `tcp` reaches the
/// socket underneath for the one thing that needs it, the `drop_after` reset.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    fn tcp(&self) -> &TcpStream;
}

impl Transport for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

/// Boxed: see [`connection::serve`](crate::connection).
impl Transport for Box<tokio_rustls::server::TlsStream<TcpStream>> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}
