//! Opening one WebSocket connection: DNS, TCP, TLS and the upgrade, each phase timed, over a
//! stream that counts every byte that crosses the socket (so handshakes, frame headers, masks
//! and TLS records are all in the wire totals).
//!
//! This is the VU's seam to its connections. A connect step opens its connection through the
//! run's [`Connector`] (the network in production, an in-memory stream in unit tests); what it
//! gets is a [`Socket`], a WebSocket over a [`Transport`] enum that dispatches each read and
//! write by `match`. Where the layers still to come belong:
//! - write coalescing (several frames per `write` call) is in [`Counted`], below the WebSocket
//!   (and below TLS, so records coalesce too): once the upgrade is done, what the WebSocket writes
//!   waits in a buffer until a flush or until [`COALESCE_BOUND`] bytes wait;
//!   [`Transport::wrote_everything`] reports `false` while bytes wait, and the VU flushes when
//!   it is about to wait (`vu/outgoing.rs`);
//! - permessage-deflate: offered in the upgrade request (`upgrade.rs`), its answer checked
//!   there, and applied per message between the VU's outgoing messages and inbox and the socket;
//! - Socket.IO (STOMP, MQTT to come): above this module, on whole messages: `crate::protocol`
//!   and the VU's `protocol` module run the handshake after the upgrade and read every message.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use wsfleet_metrics::{Counter, ErrorKind, Hist, Recorder, SetId};

use crate::clock;
use crate::deflate::DeflateSocket;
use crate::failure::{io_error, ConnectError};
use crate::read_buffer::{self, Unread};
use crate::upgrade::{UpgradeRequest, Upgraded};

/// Per-connection buffer sizes. tungstenite's read buffer is held by every connection for its
/// whole life and zero-filled up to its size at each read (the default is 128 KiB: ~135 KB of
/// RSS a connection). It reads from [`Counted`], which reads the socket [`read_buffer::READ_CHUNK`]
/// bytes at a time into a buffer lent by the worker: tungstenite's reads are copies out of it,
/// and its own buffer only needs room for a few small frames.
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(WEBSOCKET_READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(16 * 1024 * 1024)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

/// tungstenite's read buffer: what it takes from [`Counted`] per read, and what each connection
/// holds (with its allocation's header) while idle.
pub const WEBSOCKET_READ_BUFFER: usize = 256;

/// The largest message an agent accepts from a target; larger ones end the connection with
/// error kind `message_too_big`.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Bytes a connection holds for a flush before it writes them out: frames sent one after another
/// leave in one write up to this, and a burst larger than it in writes of about this size.
pub const COALESCE_BOUND: usize = 64 * 1024;

/// The capacity a held buffer starts with (it doubles from there): a burst of small frames
/// takes one allocation, freed once written when past [`KEPT_BUFFER_CAPACITY`].
const HELD_BUFFER_START: usize = 4096;

/// A held buffer whose capacity is past this is freed once written out, so a connection that
/// once sent a burst does not keep its buffer while idle (one allocation per larger burst);
/// a buffer that held a few small messages is kept for the next.
const KEPT_BUFFER_CAPACITY: usize = 512;

/// A socket stream that records the bytes it moves into the worker's recorder, and when the
/// last read that brought bytes returned. Once [`Counted::coalesce`] is on, writes wait in a
/// buffer until a flush (or until [`COALESCE_BOUND`] bytes wait): bytes are counted as sent when
/// they reach the socket.
pub struct Counted<S> {
    inner: S,
    recorder: Rc<RefCell<Recorder>>,
    last_read: Instant,
    /// The WebSocket upgrade is under way: its bytes are also `handshake_bytes_*`, counted as
    /// they move, so an upgrade that is refused, broken or cut short by the timeout still
    /// counts what it moved.
    upgrading: bool,
    /// The last write could not go out (it returned `Pending`).
    write_pending: bool,
    /// Writes wait in `held` for a flush (set after the upgrade).
    coalesce: bool,
    /// Writes go straight to the socket while nothing is held: a message flushed as soon as it
    /// is written (`flush: each`, or a send just before a receive) would only be copied there.
    through: bool,
    /// Bytes written but not yet handed to the socket, oldest first.
    held: Vec<u8>,
    /// Bytes taken by writes (held or handed on) and bytes handed to the socket, since the
    /// stream was made: the bytes of a write are in the socket once `handed` reaches what
    /// `taken` was after it.
    taken: u64,
    handed: u64,
    /// Bytes read from the socket that the reader above has not taken yet, in a buffer lent by
    /// the worker (none while the connection is idle).
    unread: Unread,
}

impl<S> Counted<S> {
    pub fn new(inner: S, recorder: Rc<RefCell<Recorder>>) -> Self {
        Counted {
            inner,
            recorder,
            last_read: clock::now(),
            upgrading: false,
            write_pending: false,
            coalesce: false,
            through: false,
            held: Vec::new(),
            taken: 0,
            handed: 0,
            unread: Unread::default(),
        }
    }

    /// Where writes stand: bytes taken so far, bytes handed to the socket so far, and whether
    /// the last write was refused (what it carried waits above this stream, not counted in
    /// `taken`).
    pub fn write_offsets(&self) -> WriteOffsets {
        WriteOffsets {
            taken: self.taken,
            handed: self.handed,
            refused: self.write_pending,
        }
    }

    /// Holds writes for a flush (or until [`COALESCE_BOUND`] bytes wait) from now on.
    pub fn coalesce(&mut self) {
        self.coalesce = true;
    }

    /// Writes straight through while nothing is held (see [`Counted::through`]), or hold them.
    pub fn write_through(&mut self, through: bool) {
        self.through = through;
    }

    /// Whether everything written so far is in the socket: nothing held, and the last write
    /// was not refused.
    pub fn wrote_everything(&self) -> bool {
        !self.write_pending && self.held.is_empty()
    }

    /// Starts or ends counting the bytes moved as the upgrade's.
    pub fn set_upgrading(&mut self, upgrading: bool) {
        self.upgrading = upgrading;
    }

    /// When the last read that brought bytes returned: the arrival of every frame it completed.
    /// A frame is decoded from buffered bytes without a read only when an earlier read brought
    /// all of it, so this is each message's arrival even when one read brings many.
    pub fn last_read(&self) -> Instant {
        self.last_read
    }

    fn count_sent(&mut self, result: &Poll<io::Result<usize>>) {
        self.write_pending = result.is_pending();
        if let Poll::Ready(Ok(written)) = result {
            self.handed += *written as u64;
            if *written > 0 {
                let mut recorder = self.recorder.borrow_mut();
                recorder.add_untimed(SetId::Connection, Counter::BytesSent, *written as u64);
                recorder.add_untimed(SetId::Connection, Counter::SocketWrites, 1);
                if self.upgrading {
                    recorder.add_untimed(SetId::Connection, Counter::HandshakeBytesSent, *written as u64);
                }
            }
        }
    }
}

impl<S> Counted<S> {
    fn count_received(&mut self, read: usize) {
        if read > 0 {
            self.last_read = clock::now();
            let mut recorder = self.recorder.borrow_mut();
            recorder.add_untimed(SetId::Connection, Counter::BytesReceived, read as u64);
            if self.upgrading {
                recorder.add_untimed(SetId::Connection, Counter::HandshakeBytesReceived, read as u64);
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    /// Bytes a read brings are counted (and `last_read` set) when they leave the socket. Once
    /// the upgrade is done, a read for fewer than [`read_buffer::READ_CHUNK`] bytes (the
    /// WebSocket's, whose buffer is small) reads the socket into a buffer lent by the worker and
    /// hands the bytes on from it; the buffer goes back once all are taken, so an idle connection
    /// holds none. The upgrade reads straight into its own buffer: what it reads is exactly what
    /// is counted as the handshake's.
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.unread.is_empty() {
            self.unread.take_into(buf);
            return Poll::Ready(Ok(()));
        }
        if self.upgrading || buf.remaining() >= read_buffer::READ_CHUNK {
            let before = buf.filled().len();
            let result = Pin::new(&mut self.inner).poll_read(cx, buf);
            let read = buf.filled().len() - before;
            self.count_received(read);
            return result;
        }
        let mut chunk = read_buffer::lend();
        let mut into = ReadBuf::new(&mut chunk[..]);
        let result = Pin::new(&mut self.inner).poll_read(cx, &mut into);
        let read = into.filled().len();
        if read == 0 {
            read_buffer::give_back(chunk);
            return result;
        }
        self.count_received(read);
        self.unread.hold(chunk, read);
        self.unread.take_into(buf);
        result
    }
}

impl<S: AsyncWrite + Unpin> Counted<S> {
    /// Hands the held bytes to the socket, as much as it takes; `Ready` once none are held.
    fn poll_write_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut written = 0;
        let result = loop {
            if written == self.held.len() {
                break Poll::Ready(Ok(()));
            }
            let result = Pin::new(&mut self.inner).poll_write(cx, &self.held[written..]);
            self.count_sent(&result);
            match result {
                Poll::Ready(Ok(0)) => break Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(count)) => written += count,
                Poll::Ready(Err(error)) => break Poll::Ready(Err(error)),
                Poll::Pending => break Poll::Pending,
            }
        };
        if written == self.held.len() {
            if self.held.capacity() > KEPT_BUFFER_CAPACITY {
                self.held = Vec::new();
            } else {
                self.held.clear();
            }
        } else if written > 0 {
            self.held.drain(..written);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if self.coalesce && !(self.through && self.held.is_empty()) {
            if self.held.len() + data.len() > COALESCE_BOUND {
                // Past the bound: what waits goes first, then this write is held or, when it
                // alone fills the bound, written through.
                if self.poll_write_held(cx)?.is_pending() {
                    return Poll::Pending;
                }
            }
            if data.len() < COALESCE_BOUND {
                self.write_pending = false;
                let held = self.held.len();
                if self.held.capacity() - held < data.len() {
                    // One allocation for a burst of small frames, not a growth step every few.
                    self.held.reserve(data.len().max(held).max(HELD_BUFFER_START));
                }
                self.held.extend_from_slice(data);
                self.taken += data.len() as u64;
                return Poll::Ready(Ok(data.len()));
            }
        }
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        self.count_sent(&result);
        if let Poll::Ready(Ok(written)) = result {
            self.taken += written as u64;
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.coalesce {
            // Held like any other write: the first buffer that has bytes.
            let first = buffers
                .iter()
                .find(|buffer| !buffer.is_empty())
                .map_or(&[][..], |buffer| &**buffer);
            return self.poll_write(cx, first);
        }
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, buffers);
        self.count_sent(&result);
        if let Poll::Ready(Ok(written)) = result {
            self.taken += written as u64;
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        !self.coalesce && self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.poll_write_held(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.poll_write_held(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Where a counted stream's writes stand (see [`Counted::write_offsets`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOffsets {
    pub taken: u64,
    pub handed: u64,
    pub refused: bool,
}

/// A counted socket, plain or under TLS (TLS records are what get counted), or an in-memory
/// stream whose other end a test (or a simulated target) holds. An enum, not a trait object:
/// every read and write dispatches with a match, no virtual call per message.
pub enum Transport {
    Plain(Counted<TcpStream>),
    Tls(Box<TlsStream<Counted<TcpStream>>>),
    Memory(Counted<DuplexStream>),
}

impl Transport {
    /// Starts or ends counting the socket's bytes (under TLS, its records) as the upgrade's.
    pub fn set_upgrading(&mut self, upgrading: bool) {
        match self {
            Transport::Plain(stream) => stream.set_upgrading(upgrading),
            Transport::Tls(stream) => stream.get_mut().0.set_upgrading(upgrading),
            Transport::Memory(stream) => stream.set_upgrading(upgrading),
        }
    }

    /// Whether everything written so far is in the kernel: over plain TCP, when nothing is held
    /// for a flush and the last write was not refused for want of room. The WebSocket hands a
    /// frame on as it takes it (its write buffer is 0 bytes); the counted stream below holds
    /// it until a flush (or the bound) once the connection is open. Under TLS records may wait
    /// in the TLS layer until a flush: always `false`. In memory, as over plain TCP: the stream
    /// holds what it took.
    pub fn wrote_everything(&self) -> bool {
        match self {
            Transport::Plain(stream) => stream.wrote_everything(),
            Transport::Tls(_) => false,
            Transport::Memory(stream) => stream.wrote_everything(),
        }
    }

    /// Hands the held bytes to the socket without going through the WebSocket's flush, when
    /// nothing can wait above the counted stream: over plain TCP and in memory, when no write
    /// was refused (a refused frame waits in the WebSocket's buffer). `None`: flush the
    /// WebSocket instead (under TLS, or after a refusal). The socket's own flush is a no-op.
    pub fn poll_write_held(&mut self, cx: &mut Context<'_>) -> Option<Poll<io::Result<()>>> {
        match self {
            Transport::Plain(stream) if !stream.write_pending => Some(stream.poll_write_held(cx)),
            Transport::Memory(stream) if !stream.write_pending => Some(stream.poll_write_held(cx)),
            _ => None,
        }
    }

    /// Writes straight through while nothing is held, or hold them (see [`Counted::write_through`]).
    pub fn write_through(&mut self, through: bool) {
        match self {
            Transport::Plain(stream) => stream.write_through(through),
            Transport::Tls(stream) => stream.get_mut().0.write_through(through),
            Transport::Memory(stream) => stream.write_through(through),
        }
    }

    /// Where the socket's writes stand (under TLS, in bytes of its records).
    pub fn write_offsets(&self) -> WriteOffsets {
        match self {
            Transport::Plain(stream) => stream.write_offsets(),
            Transport::Tls(stream) => stream.get_ref().0.write_offsets(),
            Transport::Memory(stream) => stream.write_offsets(),
        }
    }

    /// Holds writes for a flush from now on (see [`Counted::coalesce`]).
    pub fn coalesce(&mut self) {
        match self {
            Transport::Plain(stream) => stream.coalesce(),
            Transport::Tls(stream) => stream.get_mut().0.coalesce(),
            Transport::Memory(stream) => stream.coalesce(),
        }
    }

    /// When the last socket read that brought bytes returned (under TLS, ciphertext).
    pub fn last_read(&self) -> Instant {
        match self {
            Transport::Plain(stream) => stream.last_read(),
            Transport::Tls(stream) => stream.get_ref().0.last_read(),
            Transport::Memory(stream) => stream.last_read(),
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
            Transport::Memory(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_write(cx, data),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, data),
            Transport::Memory(stream) => Pin::new(stream).poll_write(cx, data),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, buffers),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, buffers),
            Transport::Memory(stream) => Pin::new(stream).poll_write_vectored(cx, buffers),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(stream) => stream.is_write_vectored(),
            Transport::Tls(stream) => stream.is_write_vectored(),
            Transport::Memory(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
            Transport::Memory(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
            Transport::Memory(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}

/// An open WebSocket: tungstenite over the transport, or, when the server agreed to
/// permessage-deflate, yawc over the same transport (`deflate.rs`; tungstenite refuses
/// compressed frames). Reads and writes dispatch by `match`: a connection without compression
/// runs tungstenite's code as it always did.
// The plain variant is the common one and is not boxed: boxing would cost an allocation per
// connection and a pointer chase per message.
#[allow(clippy::large_enum_variant)]
pub enum Socket {
    Plain(WebSocketStream<Transport>),
    Deflate(Box<DeflateSocket>),
}

impl Socket {
    /// When the last socket read that brought bytes returned (see [`Transport::last_read`]).
    pub fn last_read(&self) -> Instant {
        match self {
            Socket::Plain(socket) => socket.get_ref().last_read(),
            Socket::Deflate(socket) => socket.last_read(),
        }
    }

    /// Where the socket's writes stand (see [`Transport::write_offsets`]).
    pub fn write_offsets(&self) -> WriteOffsets {
        match self {
            Socket::Plain(socket) => socket.get_ref().write_offsets(),
            Socket::Deflate(socket) => socket.write_offsets(),
        }
    }

    /// Whether everything written so far is in the kernel (see [`Transport::wrote_everything`]).
    pub fn wrote_everything(&self) -> bool {
        match self {
            Socket::Plain(socket) => socket.get_ref().wrote_everything(),
            Socket::Deflate(socket) => socket.wrote_everything(),
        }
    }

    /// Writes straight through while nothing is held, or hold them (see
    /// [`Counted::write_through`]); with permessage-deflate writes are always held.
    pub fn write_through(&mut self, through: bool) {
        if let Socket::Plain(socket) = self {
            socket.get_mut().write_through(through);
        }
    }

    /// Hands the held bytes to the socket when nothing waits above the counted stream (see
    /// [`Transport::poll_write_held`]).
    pub fn poll_write_held(&mut self, cx: &mut Context<'_>) -> Option<Poll<io::Result<()>>> {
        match self {
            Socket::Plain(socket) => socket.get_mut().poll_write_held(cx),
            Socket::Deflate(socket) => socket.poll_write_held(cx),
        }
    }

    /// The payload bytes on the wire (after compression) of the oldest data message sent and
    /// not yet settled; `None` without permessage-deflate.
    pub fn take_sent_wire(&mut self) -> Option<u64> {
        match self {
            Socket::Plain(_) => None,
            Socket::Deflate(socket) => socket.take_sent_wire(),
        }
    }

    /// The payload bytes on the wire (before inflating) of the data message last read; `None`
    /// without permessage-deflate.
    pub fn take_received_wire(&mut self) -> Option<u64> {
        match self {
            Socket::Plain(_) => None,
            Socket::Deflate(socket) => socket.take_received_wire(),
        }
    }

    /// Sends a close frame and flushes.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), WsError> {
        match self {
            Socket::Plain(socket) => socket.close(frame).await,
            Socket::Deflate(socket) => socket.send_close(frame).await,
        }
    }
}

impl Stream for Socket {
    type Item = Result<Message, WsError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut() {
            Socket::Plain(socket) => socket.poll_next_unpin(cx),
            Socket::Deflate(socket) => socket.poll_next_unpin(cx),
        }
    }
}

impl Sink<Message> for Socket {
    type Error = WsError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        match self.get_mut() {
            Socket::Plain(socket) => socket.poll_ready_unpin(cx),
            Socket::Deflate(socket) => socket.poll_ready_unpin(cx),
        }
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), WsError> {
        match self.get_mut() {
            Socket::Plain(socket) => socket.start_send_unpin(message),
            Socket::Deflate(socket) => socket.start_send_unpin(message),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        match self.get_mut() {
            Socket::Plain(socket) => socket.poll_flush_unpin(cx),
            Socket::Deflate(socket) => socket.poll_flush_unpin(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        match self.get_mut() {
            Socket::Plain(socket) => socket.poll_close_unpin(cx),
            Socket::Deflate(socket) => socket.poll_close_unpin(cx),
        }
    }
}

/// What a connect step asks for, rendered.
pub struct ConnectRequest<'a> {
    /// The upgrade request, laid out once per distinct URL, headers and subprotocols.
    pub upgrade: &'a UpgradeRequest,
    pub timeout: Duration,
    /// The local address to bind before connecting (`None`: the kernel picks).
    pub source: Option<std::net::IpAddr>,
    /// The TLS settings for wss:// (the run's default or the step's own).
    pub tls: &'a TlsConfig,
    /// The name the server certificate is checked against, when not the URL's host.
    pub server_name: Option<&'a str>,
    pub proxy: Option<&'a wsfleet_scenario::Proxy>,
    /// The handshake status that counts as success (101, or e.g. 401 to test refusals).
    pub expect_status: u16,
    /// Copy the response headers into `Opened::headers` (only when a step reads them).
    pub keep_headers: bool,
}

/// Local source addresses, handed out in turn. Each (source, destination) pair has its own
/// ~28k ephemeral ports, so an agent spreading over N addresses can hold N times as many
/// connections to one target.
pub struct SourceAddresses {
    addresses: Arc<Vec<std::net::IpAddr>>,
    next: std::cell::Cell<usize>,
}

impl SourceAddresses {
    pub fn new(addresses: Arc<Vec<std::net::IpAddr>>, start: usize) -> Self {
        SourceAddresses {
            addresses,
            next: std::cell::Cell::new(start),
        }
    }

    pub fn next(&self) -> Option<std::net::IpAddr> {
        if self.addresses.is_empty() {
            return None;
        }
        let index = self.next.get();
        self.next.set(index.wrapping_add(1));
        Some(self.addresses[index % self.addresses.len()])
    }
}

/// The outcome of a handshake the scenario expected.
pub struct Opened {
    /// The open WebSocket; `None` when the expected status was a refusal.
    pub socket: Option<Socket>,
    pub status: u16,
    /// Response headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The permessage-deflate parameters the server agreed to; `None` without compression
    /// (not offered, or declined).
    pub agreed: Option<wsfleet_scenario::Agreed>,
}

/// Shared TLS client settings (one per run).
pub type TlsConfig = Arc<rustls::ClientConfig>;

/// Trusts the public web roots (webpki-roots) with the ring provider.
pub fn default_tls_config() -> Result<TlsConfig, rustls::Error> {
    run_tls_config(None)
}

/// Trusts the public web roots, plus the run's test server certificate when there is one.
pub fn run_tls_config(testserver_pem: Option<&str>) -> Result<TlsConfig, rustls::Error> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = testserver_pem {
        for certificate in rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()).flatten() {
            roots.add(certificate)?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// TLS settings for a connect step that trusts its own CA or skips verification.
pub fn step_tls_config(
    options: &wsfleet_scenario::TlsOptions,
    testserver_pem: Option<&str>,
) -> Result<TlsConfig, String> {
    use rustls_pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?;
    let config = if options.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &options.ca_pem {
            Some(pem) => {
                for certificate in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
                    let certificate = certificate.map_err(|error| format!("cannot read the CA file: {error}"))?;
                    roots
                        .add(certificate)
                        .map_err(|error| format!("cannot trust a certificate of the CA file: {error}"))?;
                }
                if roots.is_empty() {
                    return Err("the CA file holds no certificate".into());
                }
            }
            None => {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                for certificate in testserver_pem
                    .map(|pem| rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()))
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    roots
                        .add(certificate)
                        .map_err(|error| format!("cannot trust the test server's certificate: {error}"))?;
                }
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// `insecure_skip_verify`: any certificate is accepted; signatures are still checked so the
/// handshake itself is sound.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &rustls_pki_types::CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &rustls_pki_types::CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The future of a connection being opened.
pub type OpenFuture<'a> = Pin<Box<dyn Future<Output = Result<Opened, ConnectError>> + 'a>>;

/// How a connect step opens its connection: the seam between a VU and its transport. One call
/// per connection (a virtual call and the one box the handshake's state needs anyway, never
/// per message); what it returns is a [`Socket`] over a [`Transport`], whose reads and writes
/// dispatch by `match`.
///
/// [`Network`] dials for real. A test's connector hands the VU one end of an in-memory stream
/// ([`Transport::Memory`]) and plays the server on the other. Later layers plug in here too: a
/// connector that speaks a protocol's own handshake after the upgrade (Socket.IO, STOMP, MQTT),
/// or a transport that coalesces writes (see the module's notes on [`Transport`]).
pub trait Connector {
    /// Opens the connection `request` asks for, recording phase timings and handshake bytes in
    /// `step`'s set, within `request.timeout`.
    fn open<'a>(
        &'a self,
        request: &'a ConnectRequest<'a>,
        recorder: &'a Rc<RefCell<Recorder>>,
        step: SetId,
    ) -> OpenFuture<'a>;
}

/// Opens connections over the network: DNS, TCP (from the chosen source address, through a
/// proxy when the step names one), TLS for `wss://`, then the upgrade.
pub struct Network;

impl Connector for Network {
    fn open<'a>(
        &'a self,
        request: &'a ConnectRequest<'a>,
        recorder: &'a Rc<RefCell<Recorder>>,
        step: SetId,
    ) -> OpenFuture<'a> {
        Box::pin(open(request, recorder, step))
    }
}

/// Opens a connection over the network, recording phase timings and handshake bytes in
/// `step`'s set.
pub async fn open(
    request: &ConnectRequest<'_>,
    recorder: &Rc<RefCell<Recorder>>,
    step: SetId,
) -> Result<Opened, ConnectError> {
    let started = clock::now();
    within_timeout(request.timeout, async {
        let transport = dial(request, recorder, step).await?;
        handshake(transport, request, recorder, step, started).await
    })
    .await
}

/// Bounds the opening of a connection by the connect step's timeout (error kind `timeout`).
pub async fn within_timeout(
    timeout: Duration,
    opening: impl Future<Output = Result<Opened, ConnectError>>,
) -> Result<Opened, ConnectError> {
    match tokio::time::timeout(timeout, opening).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::new(
            ErrorKind::Timeout,
            format!("connect did not finish within {timeout:?}"),
        )),
    }
}

/// Resolves, connects, tunnels through the proxy and runs TLS: the transport the upgrade goes
/// over.
async fn dial(
    request: &ConnectRequest<'_>,
    recorder: &Rc<RefCell<Recorder>>,
    step: SetId,
) -> Result<Transport, ConnectError> {
    let upgrade = request.upgrade;
    let (host, port) = (&upgrade.host, upgrade.port);
    // With a proxy, the TCP connection goes to the proxy and a CONNECT opens the tunnel.
    let (dial_host, dial_port): (&str, u16) = match request.proxy {
        Some(proxy) => (&proxy.host, proxy.port),
        None => (host, port),
    };
    let address = resolve(dial_host, dial_port, recorder, step).await?;
    let tcp_started = clock::now();
    let tcp = match request.source {
        None => TcpStream::connect(address).await,
        Some(source) => connect_from(source, address).await,
    }
    .map_err(|error| io_error(&error, &format!("connect to {address}")))?;
    let _ = tcp.set_nodelay(true);
    let mut counted = Counted::new(tcp, recorder.clone());
    if let Some(proxy) = request.proxy {
        tunnel(&mut counted, proxy, host, port).await?;
    }
    let now = clock::now();
    recorder
        .borrow_mut()
        .record(now, step, Hist::TcpConnect, now - tcp_started);

    let transport = if upgrade.secure {
        let tls_started = clock::now();
        let name = request.server_name.unwrap_or(host).to_owned();
        let server_name = rustls_pki_types::ServerName::try_from(name.clone())
            .map_err(|_| ConnectError::new(ErrorKind::Tls, format!("`{name}` is not a valid TLS server name")))?;
        let stream = tokio_rustls::TlsConnector::from(request.tls.clone())
            .connect(server_name, counted)
            .await
            .map_err(|error| tls_or_io(&error))?;
        let now = clock::now();
        recorder
            .borrow_mut()
            .record(now, step, Hist::TlsHandshake, now - tls_started);
        Transport::Tls(Box::new(stream))
    } else {
        Transport::Plain(counted)
    };
    Ok(transport)
}

/// The WebSocket upgrade over an open transport, timed from `started` (the connect's start)
/// for `handshake`, and the checks of the status the step expects.
pub async fn handshake(
    mut transport: Transport,
    request: &ConnectRequest<'_>,
    recorder: &Rc<RefCell<Recorder>>,
    step: SetId,
    started: Instant,
) -> Result<Opened, ConnectError> {
    let upgrade = request.upgrade;
    transport.set_upgrading(true);
    let upgrade_started = clock::now();
    let upgraded = crate::upgrade::upgrade(transport, upgrade, request.keep_headers).await?;
    let now = clock::now();
    let (socket, status, headers, agreed) = match upgraded {
        Upgraded::Open {
            mut stream,
            early,
            headers,
            extensions,
        } => {
            stream.set_upgrading(false);
            stream.coalesce();
            if request.expect_status != 101 {
                return Err(ConnectError::new(
                    ErrorKind::Expectation,
                    format!(
                        "the server accepted the upgrade; the step expected HTTP {}",
                        request.expect_status
                    ),
                ));
            }
            let agreed = match &upgrade.deflate {
                None => None,
                Some(deflate) => wsfleet_scenario::compression::check_answer(extensions.as_deref(), deflate)
                    .map_err(|why| ConnectError::new(ErrorKind::Protocol, why))?
                    .map(|agreed| (agreed, deflate.threshold)),
            };
            let socket = match &agreed {
                None => Socket::Plain(crate::upgrade::websocket(stream, early, websocket_config()).await),
                Some((agreed, threshold)) => Socket::Deflate(Box::new(
                    DeflateSocket::new(stream, early, agreed, *threshold)
                        .map_err(|error| ConnectError::new(ErrorKind::Protocol, error.to_string()))?,
                )),
            };
            (Some(socket), 101, headers, agreed.map(|(agreed, _)| agreed))
        }
        // The refused connection closes here, its bytes counted.
        Upgraded::Refused { status, headers, .. } if status == request.expect_status => (None, status, headers, None),
        Upgraded::Refused { status, .. } => return Err(ConnectError::http_status(status)),
    };
    let mut recorder = recorder.borrow_mut();
    recorder.record(now, step, Hist::WsUpgrade, now - upgrade_started);
    recorder.record(now, step, Hist::Handshake, now - started);
    Ok(Opened {
        socket,
        status,
        headers,
        agreed,
    })
}

/// Resolves a host name (timed as `dns`); an IP address is used as it is.
pub(crate) async fn resolve(
    host: &str,
    port: u16,
    recorder: &Rc<RefCell<Recorder>>,
    step: SetId,
) -> Result<SocketAddr, ConnectError> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let lookup_started = clock::now();
    let mut addresses = tokio::net::lookup_host((host, port))
        .await
        .map_err(|error| ConnectError::new(ErrorKind::Dns, format!("cannot resolve `{host}`: {error}")))?;
    let now = clock::now();
    recorder.borrow_mut().record(now, step, Hist::Dns, now - lookup_started);
    addresses
        .next()
        .ok_or_else(|| ConnectError::new(ErrorKind::Dns, format!("`{host}` resolved to no address")))
}

/// Opens an HTTP CONNECT tunnel to `host:port` through a proxy (for connect and http steps).
pub(crate) async fn tunnel<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    proxy: &wsfleet_scenario::Proxy,
    host: &str,
    port: u16,
) -> Result<(), ConnectError> {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(credentials) = &proxy.credentials {
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        request.push_str(&format!("Proxy-Authorization: Basic {encoded}\r\n"));
    }
    request.push_str("\r\n");
    let failed = |detail: String| ConnectError::new(ErrorKind::Proxy, detail);
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| failed(format!("cannot send CONNECT to the proxy: {error}")))?;
    // Byte by byte: nothing past the response's blank line may be consumed, it belongs to
    // the tunnel.
    let mut response = Vec::with_capacity(128);
    while !response.ends_with(b"\r\n\r\n") {
        if response.len() > 8 * 1024 {
            return Err(failed("the proxy's response header is over 8 KiB".into()));
        }
        let byte = stream
            .read_u8()
            .await
            .map_err(|error| failed(format!("the proxy closed or failed before answering CONNECT: {error}")))?;
        response.push(byte);
    }
    let status_line = String::from_utf8_lossy(&response);
    let status_line = status_line.lines().next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| failed(format!("the proxy answered `{status_line}`, not an HTTP status line")))?;
    if !(200..300).contains(&status) {
        return Err(failed(format!(
            "the proxy refused the tunnel to {authority}: `{status_line}`"
        )));
    }
    Ok(())
}

/// Connects from a chosen local address (port chosen by the kernel).
pub(crate) async fn connect_from(source: std::net::IpAddr, target: SocketAddr) -> io::Result<TcpStream> {
    let socket = if target.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(target).await
}

pub(crate) fn tls_or_io(error: &io::Error) -> ConnectError {
    let is_tls = error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
    if is_tls || error.kind() == io::ErrorKind::InvalidData {
        ConnectError::new(ErrorKind::Tls, format!("TLS handshake failed: {error}"))
    } else {
        io_error(error, "TLS handshake")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Over plain TCP everything written is in the kernel unless the last write was refused
    /// for want of room, and again once a write goes out.
    #[tokio::test]
    async fn a_refused_write_is_held_until_one_goes_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (near, far) = tokio::join!(TcpStream::connect(address), listener.accept());
        let (mut far, _) = far.unwrap();
        let recorder = Rc::new(RefCell::new(Recorder::new(clock::now(), Vec::new())));
        let mut transport = Transport::Plain(Counted::new(near.unwrap(), recorder));
        assert!(transport.wrote_everything());

        let waker = futures_util::task::noop_waker();
        let mut context = Context::from_waker(&waker);
        let chunk = vec![0u8; 64 * 1024];
        let mut written = 0;
        // Bounded: loopback socket buffers hold a few MB.
        for _ in 0..10_000 {
            match Pin::new(&mut transport).poll_write(&mut context, &chunk) {
                Poll::Ready(Ok(count)) => written += count,
                Poll::Ready(Err(error)) => panic!("{error}"),
                Poll::Pending => break,
            }
        }
        assert!(
            !transport.wrote_everything(),
            "{written} bytes written and the socket never refused one"
        );

        let mut drained = vec![0u8; written];
        far.read_exact(&mut drained).await.unwrap();
        let count = std::future::poll_fn(|cx| Pin::new(&mut transport).poll_write(cx, b"x"))
            .await
            .unwrap();
        assert_eq!(count, 1);
        assert!(transport.wrote_everything());
    }

    /// A read that brings bytes moves the arrival instant; one that finds nothing leaves it, and
    /// the bytes are counted either way.
    #[tokio::test]
    async fn the_last_read_that_brought_bytes_is_the_arrival() {
        let (near, mut far) = tokio::io::duplex(1024);
        let recorder = Rc::new(RefCell::new(Recorder::new(clock::now(), Vec::new())));
        let mut counted = Counted::new(near, recorder.clone());
        let opened = counted.last_read();

        far.write_all(b"two frames in one read").await.unwrap();
        let before_read = clock::now();
        let mut buffer = [0u8; 64];
        let read = counted.read(&mut buffer).await.unwrap();
        assert_eq!(read, 22);
        let arrival = counted.last_read();
        assert!(arrival >= before_read && arrival > opened);

        // Nothing to read: the instant stays.
        let waker = futures_util::task::noop_waker();
        let mut context = Context::from_waker(&waker);
        let mut read_buffer = ReadBuf::new(&mut buffer);
        assert!(Pin::new(&mut counted)
            .poll_read(&mut context, &mut read_buffer)
            .is_pending());
        assert_eq!(counted.last_read(), arrival);
        let intervals = recorder.borrow_mut().take_all(clock::now());
        let counted_bytes = |name: &str| -> u64 { intervals.iter().map(|(_, sets)| sets.total().counter(name)).sum() };
        assert_eq!((counted_bytes("bytes_sent"), counted_bytes("bytes_received")), (0, 22));
    }

    /// A server's unmasked frame: FIN, `opcode`, the payload's length, the payload.
    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            length @ 0..=125 => frame.push(length as u8),
            length @ 126..=0xffff => {
                frame.push(126);
                frame.extend_from_slice(&(length as u16).to_be_bytes());
            }
            length => {
                frame.push(127);
                frame.extend_from_slice(&(length as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(payload);
        frame
    }

    /// Messages larger than a socket read and many small ones in one read come through whole
    /// and counted to the byte, read through buffers lent by the worker; once they are taken the
    /// idle connection holds no read buffer (only tungstenite's small one).
    #[tokio::test]
    async fn an_idle_connection_holds_no_lent_read_buffer() {
        let (near, mut far) = tokio::io::duplex(256 * 1024);
        let recorder = Rc::new(RefCell::new(Recorder::new(clock::now(), Vec::new())));
        let transport = Transport::Memory(Counted::new(near, recorder.clone()));
        let mut socket = crate::upgrade::websocket(transport, Vec::new(), websocket_config()).await;

        let large: Vec<u8> = (0..100_000u32).map(|index| index as u8).collect();
        let mut wire = server_frame(0x2, &large);
        for index in 0..50 {
            wire.extend(server_frame(0x1, format!("small message {index}").as_bytes()));
        }
        far.write_all(&wire).await.unwrap();

        let Some(Ok(Message::Binary(first))) = socket.next().await else {
            panic!("the large message did not come first");
        };
        assert_eq!(&first[..], &large[..]);
        for index in 0..50 {
            let Some(Ok(Message::Text(text))) = socket.next().await else {
                panic!("small message {index} is missing");
            };
            assert_eq!(text.as_str(), format!("small message {index}"));
        }
        let Transport::Memory(counted) = socket.get_ref() else {
            unreachable!()
        };
        assert!(
            counted.unread.is_empty(),
            "a read buffer is held after every byte was taken"
        );

        // Idle: a read that finds nothing takes no buffer with it.
        let waker = futures_util::task::noop_waker();
        let mut context = Context::from_waker(&waker);
        assert!(socket.poll_next_unpin(&mut context).is_pending());
        let Transport::Memory(counted) = socket.get_ref() else {
            unreachable!()
        };
        assert!(counted.unread.is_empty());
        let intervals = recorder.borrow_mut().take_all(clock::now());
        let received: u64 = intervals
            .iter()
            .map(|(_, sets)| sets.total().counter("bytes_received"))
            .sum();
        assert_eq!(received, wire.len() as u64);
    }
}
