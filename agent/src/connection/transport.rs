//! The byte stream under a connection's WebSocket: [`Counted`], which counts every byte that
//! crosses the socket and holds writes for a flush (write coalescing), and [`Transport`], the
//! enum of counted streams (plain TCP, TLS over TCP, in memory) whose reads and writes dispatch
//! by `match`.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use wsfleet_metrics::{Counter, Recorder, SetId};

use crate::clock;
use crate::read_buffer::{self, Unread};

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

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::Message;

    use crate::connection::websocket_config;

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
