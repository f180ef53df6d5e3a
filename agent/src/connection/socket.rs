//! The open WebSocket a connect step hands its VU: [`Socket`], tungstenite or (with
//! permessage-deflate) yawc over a [`Transport`], and the buffer sizes of tungstenite's side
//! ([`websocket_config`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::{Transport, WriteOffsets};
use crate::deflate::DeflateSocket;

/// Per-connection buffer sizes. tungstenite's read buffer is held by every connection for its
/// whole life and zero-filled up to its size at each read (the default is 128 KiB: ~135 KB of
/// RSS a connection). It reads from [`Counted`](super::Counted), which reads the socket
/// [`read_buffer::READ_CHUNK`](crate::read_buffer::READ_CHUNK) bytes at a time into a buffer
/// lent by the worker: tungstenite's reads are copies out of it, and its own buffer only needs
/// room for a few small frames.
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(WEBSOCKET_READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(16 * 1024 * 1024)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

/// tungstenite's read buffer: what it takes from [`Counted`](super::Counted) per read, and what
/// each connection holds (with its allocation's header) while idle.
pub const WEBSOCKET_READ_BUFFER: usize = 256;

/// The largest message an agent accepts from a target; larger ones end the connection with
/// error kind `message_too_big`.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

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
    /// [`Counted::write_through`](super::Counted::write_through)); with permessage-deflate
    /// writes are always held.
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
