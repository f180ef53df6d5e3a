//! The wsfleet test server: a WebSocket server for functional tests, demos and
//! benchmarks, in-process ([`TestServer`]) or as a future ([`run`], behind
//! `wsfleet testserver`).
//!
//! This crate owns the server side of every test: the upgrade done by hand over
//! plain TCP or TLS, the endpoints (`/echo`, `/json`, `/broadcast/<room>`, plain
//! `GET /stats` and `/healthz`), HTTP endpoints with keep-alive (`POST /login`, `/http/echo`,
//! and the `/auth/` WebSocket endpoints a login unlocks), subprotocol selection, scripted misbehaviour
//! chosen by query parameters (delays, scripted closes, resets, refused or
//! unanswered handshakes, oversized and malformed frames), and exact [`Stats`].
//! See `docs/testserver.md` for the user-facing reference.
//!
//! It is built to hold many connections cheaply: one task per connection, small
//! configurable buffers, and no locks on the echo path.

mod connection;
mod deflate;
mod handshake;
mod http;
mod json;
mod modes;
mod overload;
mod rooms;
mod server;
mod session;
mod shared;
mod stats;
mod tls;
mod transport;

use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

pub use server::TestServer;
pub use stats::Stats;

/// Bounds for the buffer settings: generous, but small enough that a typo
/// cannot make every connection allocate gigabytes.
const MAX_BUFFER_SIZE: usize = 64 << 20;
const MAX_MESSAGE_SIZE_LIMIT: usize = 1 << 30;
/// Below this the read buffer cannot hold a frame header and the reads get silly.
const MIN_READ_BUFFER_SIZE: usize = 256;

/// Server settings. Unknown fields are rejected; missing ones take the defaults.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Subprotocols the server supports. It picks the first protocol the client
    /// offers that is in this list; with no match, the response has no
    /// `Sec-WebSocket-Protocol` header.
    pub subprotocols: Vec<String>,
    /// Serve `wss` with a self-signed certificate generated at start for
    /// `localhost`, `127.0.0.1` and `::1` (see [`TestServer::ca_certificate_pem`]).
    pub tls: bool,
    /// Bytes read from the socket at a time, allocated per connection. Default
    /// 4096: tungstenite's 128 KiB default would cost 12.8 GB at 100k connections.
    pub read_buffer_size: usize,
    /// Bytes of outgoing frames buffered before a write. Replies to the frames
    /// read together are flushed together; this bounds how much of a batch
    /// waits before tungstenite writes it out. Default 16 KiB: against a client
    /// that never waits (fire-and-count), 4 KiB writes echoed 1.02-1.21M msg/s
    /// and 16 KiB ones 1.08-1.94M in the same rounds. The buffer is empty until
    /// a connection replies and grows only to its largest batch, so idle
    /// connections do not pay for it.
    pub write_buffer_size: usize,
    /// Largest message (and frame) accepted, in bytes; a bigger one closes the
    /// connection with 1009. Default 16 MiB.
    pub max_message_size: usize,
    /// Set `SO_REUSEPORT` so several processes can share one port (Unix only).
    pub reuse_port: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            subprotocols: Vec::new(),
            tls: false,
            read_buffer_size: 4096,
            write_buffer_size: 16 * 1024,
            max_message_size: 16 << 20,
            reuse_port: false,
        }
    }
}

impl Config {
    /// Checks the sizes and turns them into tungstenite's config.
    fn websocket_config(&self) -> Result<WebSocketConfig, Error> {
        let invalid = |field, reason: String| Err(Error::InvalidConfig { field, reason });
        if !(MIN_READ_BUFFER_SIZE..=MAX_BUFFER_SIZE).contains(&self.read_buffer_size) {
            return invalid(
                "read_buffer_size",
                format!(
                    "is {}; use {MIN_READ_BUFFER_SIZE} to {MAX_BUFFER_SIZE} bytes",
                    self.read_buffer_size
                ),
            );
        }
        if self.write_buffer_size > MAX_BUFFER_SIZE {
            return invalid(
                "write_buffer_size",
                format!("is {}; use 0 to {MAX_BUFFER_SIZE} bytes", self.write_buffer_size),
            );
        }
        if !(1..=MAX_MESSAGE_SIZE_LIMIT).contains(&self.max_message_size) {
            return invalid(
                "max_message_size",
                format!("is {}; use 1 to {MAX_MESSAGE_SIZE_LIMIT} bytes", self.max_message_size),
            );
        }
        // tungstenite writes its buffer out once it holds more than
        // `write_buffer_size`, and a feed waits while a write is blocked, so the
        // buffer holds at most that plus one reply; the bound has to fit the
        // largest reply. A json reply embeds its request, re-serialized (numbers
        // can grow), so allow twice the largest message plus room for control
        // frames.
        let max_write_buffer_size = self.write_buffer_size + 2 * self.max_message_size + (64 << 10);
        Ok(WebSocketConfig::default()
            .read_buffer_size(self.read_buffer_size)
            .write_buffer_size(self.write_buffer_size)
            .max_write_buffer_size(max_write_buffer_size)
            .max_message_size(Some(self.max_message_size))
            // Checking the frame size too rejects a huge single frame from its
            // header, before its payload is buffered.
            .max_frame_size(Some(self.max_message_size)))
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listening socket could not be created, configured or bound.
    #[error("cannot bind test server to {addr}: {source} (is the port in use? port 0 picks a free one)")]
    Bind { addr: SocketAddr, source: std::io::Error },
    /// The listener given to [`TestServer::start_on`] or [`run`] has no address.
    #[error("cannot read the test server's listening address: {source}")]
    LocalAddr { source: std::io::Error },
    /// A [`Config`] value is out of range.
    #[error("invalid test server config: {field} {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    /// rcgen could not generate the self-signed certificate.
    #[error("cannot generate the test server's self-signed tls certificate: {source}")]
    Certificate { source: rcgen::Error },
    /// rustls rejected the generated certificate or key.
    #[error("cannot build the test server's tls config: {source}")]
    Tls { source: rustls::Error },
}

/// Runs the server on `listener` until `cancel` fires, then shuts down like
/// [`TestServer::shutdown`]. Fails only before serving, on an invalid config or
/// certificate; the caller prints the address itself.
pub async fn run(listener: TcpListener, config: Config, cancel: CancellationToken) -> Result<(), Error> {
    let local_addr = listener.local_addr().map_err(|source| Error::LocalAddr { source })?;
    let server = server::Server::new(&config, local_addr)?;
    server.serve(listener, cancel).await;
    Ok(())
}

/// Binds a listener with `SO_REUSEADDR` (quick restarts on the same port),
/// optionally `SO_REUSEPORT` (several processes sharing one port, Unix only),
/// and a backlog of 4096 so connection bursts are not dropped.
///
/// Must be called inside a tokio runtime, which registers the socket.
pub fn bind_listener(addr: SocketAddr, reuse_port: bool) -> Result<TcpListener, Error> {
    use socket2::{Domain, Protocol, Socket, Type};
    let bind_error = |source| Error::Bind { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(bind_error)?;
    socket.set_reuse_address(true).map_err(bind_error)?;
    if reuse_port {
        set_reuse_port(&socket).map_err(bind_error)?;
    }
    socket.set_nonblocking(true).map_err(bind_error)?;
    socket.bind(&addr.into()).map_err(bind_error)?;
    socket.listen(4096).map_err(bind_error)?;
    TcpListener::from_std(socket.into()).map_err(bind_error)
}

#[cfg(all(
    unix,
    not(any(
        target_os = "solaris",
        target_os = "illumos",
        target_os = "cygwin",
        target_os = "nuttx"
    ))
))]
fn set_reuse_port(socket: &socket2::Socket) -> std::io::Result<()> {
    socket.set_reuse_port(true)
}

#[cfg(not(all(
    unix,
    not(any(
        target_os = "solaris",
        target_os = "illumos",
        target_os = "cygwin",
        target_os = "nuttx"
    ))
)))]
fn set_reuse_port(_socket: &socket2::Socket) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "SO_REUSEPORT is not supported on this platform; set reuse_port to false",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_unknown_fields() {
        let config: Config = match serde_json::from_str(r#"{"tls": true}"#) {
            Ok(config) => config,
            Err(error) => panic!("config should parse: {error}"),
        };
        assert!(config.tls);
        assert_eq!(config.read_buffer_size, 4096);
        assert_eq!(config.max_message_size, 16 << 20);
        let error = serde_json::from_str::<Config>(r#"{"tsl": true}"#).map(|_| ());
        assert!(error.is_err_and(|error| error.to_string().starts_with("unknown field `tsl`")));
    }

    #[test]
    fn out_of_range_sizes_are_rejected_with_the_field() {
        let config = Config {
            read_buffer_size: 0,
            ..Config::default()
        };
        let error = config.websocket_config().map(|_| ());
        assert!(error.is_err_and(|error| error.to_string()
            == format!("invalid test server config: read_buffer_size is 0; use 256 to {MAX_BUFFER_SIZE} bytes")));
        let config = Config {
            max_message_size: 0,
            ..Config::default()
        };
        assert!(config.websocket_config().is_err());
    }

    #[test]
    fn websocket_config_bounds_the_write_buffer() {
        let config = match Config::default().websocket_config() {
            Ok(config) => config,
            Err(error) => panic!("default config is valid: {error}"),
        };
        assert_eq!(config.read_buffer_size, 4096);
        assert_eq!(config.max_message_size, Some(16 << 20));
        assert_eq!(config.max_frame_size, Some(16 << 20));
        assert!(config.max_write_buffer_size > config.write_buffer_size);
        assert!(config.max_write_buffer_size < 64 << 20);
    }
}
