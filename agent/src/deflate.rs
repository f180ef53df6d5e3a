//! Connections that agreed to permessage-deflate (RFC 7692): frames read and written by yawc
//! over the same counted [`Transport`] as every other connection.
//!
//! tungstenite refuses every frame with RSV1 set, so a connection whose server agreed to
//! deflate is handed to yawc instead (`Socket::Deflate`, `connection/socket.rs`); connections without
//! compression stay on tungstenite, untouched. yawc owns the stream, so the transport sits in
//! a [`Staging`] shared with this socket (one `Rc<RefCell<_>>`, one thread): the VU reads the
//! transport's offsets and arrival instants through it as it does for plain connections.
//!
//! What the staging adds:
//! - the bytes the upgrade read past the 101 response, handed to yawc before the socket's
//!   (yawc's `from_stream_with_extensions` starts with an empty buffer);
//! - coalesced writes: yawc's framing buffer is drained into the counted stream as each frame
//!   is sent (with the stream's flush held back), so a frame is in the counted stream's
//!   `taken` offset as soon as it is sent, exactly as with tungstenite, and leaves at the VU's
//!   flush;
//! - the size of every data message on the wire, read from the frame headers that cross it
//!   each way ([`FrameSizes`]): the payload after compression, for the `compressed_bytes_*`
//!   counters.
//!
//! Memory: deflate state is made on a connection's first compressed message, not at the
//! upgrade. A direction agreed without context takeover borrows its state from a process-wide
//! [`yawc::DeflatePool`] for one message, so an idle connection holds none; with context
//! takeover the state stays with the connection (see docs/scenarios.md for the figures).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data as OpData, OpCode as TungOpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Utf8Bytes};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use wsfleet_scenario::Agreed;
use yawc::close::CloseCode;
use yawc::{CompressionLevel, DeflatePool, Frame, OpCode, Options, Role, WebSocket, WebSocketError};

use crate::connection::{Transport, WriteOffsets, MAX_MESSAGE_BYTES};
use crate::failure::ProtocolViolation;

/// Idle deflate states kept per window size and direction, shared by every connection of the
/// process that agreed no context takeover: enough for the messages compressed at one moment
/// (one per worker thread at a time, a few in flight), not one per connection.
const POOLED_STATES: usize = 64;

/// The read buffer a connection starts with, as for plain connections (`websocket_config`).
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// The framing buffer between yawc and the counted stream: drained as each frame is sent, so it
/// rarely holds more than one frame.
const WRITE_BUFFER_BYTES: usize = 1024;

fn pool() -> DeflatePool {
    static POOL: OnceLock<DeflatePool> = OnceLock::new();
    POOL.get_or_init(|| DeflatePool::new(POOLED_STATES)).clone()
}

/// The sizes of data messages on the wire, read from the frame headers of one direction's
/// bytes as they cross: each completed message's frame payloads, summed.
#[derive(Default)]
struct FrameSizes {
    header: [u8; 14],
    header_len: usize,
    /// Payload bytes left in the frame being crossed.
    remaining: u64,
    /// The frame being crossed: data (not control), and the message's last.
    data: bool,
    fin: bool,
    /// Payload bytes of the data message so far.
    message: u64,
    /// Completed data messages, oldest first.
    done: VecDeque<u64>,
}

impl FrameSizes {
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let taken = self.remaining.min(bytes.len() as u64);
                self.remaining -= taken;
                bytes = &bytes[taken as usize..];
                if self.remaining == 0 {
                    self.frame_done();
                }
                continue;
            }
            self.header[self.header_len] = bytes[0];
            self.header_len += 1;
            bytes = &bytes[1..];
            let Some(length) = self.header_complete() else {
                continue;
            };
            let opcode = self.header[0] & 0x0f;
            self.data = opcode < 0x8;
            self.fin = self.header[0] & 0x80 != 0;
            self.header_len = 0;
            self.remaining = length;
            if self.data {
                self.message += length;
            }
            if length == 0 {
                self.frame_done();
            }
        }
    }

    /// The payload length once the header held so far is whole.
    fn header_complete(&self) -> Option<u64> {
        if self.header_len < 2 {
            return None;
        }
        let mask = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
        let (extended, needed) = match self.header[1] & 0x7f {
            126 => (2, 4),
            127 => (8, 10),
            _ => (0, 2),
        };
        if self.header_len < needed + mask {
            return None;
        }
        let length = match extended {
            0 => u64::from(self.header[1] & 0x7f),
            2 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            _ => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&self.header[2..10]);
                u64::from_be_bytes(bytes)
            }
        };
        Some(length)
    }

    fn frame_done(&mut self) {
        if self.data && self.fin {
            self.done.push_back(self.message);
            self.message = 0;
        }
    }
}

/// The transport as yawc and the VU share it.
struct Staging {
    transport: Transport,
    /// Bytes the upgrade read past the 101 response, read first.
    early: Bytes,
    /// While set, yawc's flush moves its frames into the counted stream and stops there.
    holding: bool,
    sent: FrameSizes,
    received: FrameSizes,
}

/// yawc's stream: the shared staging.
struct Staged(Rc<RefCell<Staging>>);

impl AsyncRead for Staged {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut staging = self.0.borrow_mut();
        let staging = &mut *staging;
        if !staging.early.is_empty() {
            let count = staging.early.len().min(buf.remaining());
            let early = staging.early.split_to(count);
            staging.received.feed(&early);
            buf.put_slice(&early);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut staging.transport).poll_read(cx, buf);
        staging.received.feed(&buf.filled()[before..]);
        result
    }
}

impl AsyncWrite for Staged {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let mut staging = self.0.borrow_mut();
        let staging = &mut *staging;
        let result = Pin::new(&mut staging.transport).poll_write(cx, data);
        if let Poll::Ready(Ok(written)) = result {
            staging.sent.feed(&data[..written]);
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut staging = self.0.borrow_mut();
        if staging.holding {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut staging.transport).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0.borrow_mut().transport).poll_shutdown(cx)
    }
}

/// A WebSocket that agreed permessage-deflate, read and written as tungstenite messages so the
/// VU handles it like any other connection.
pub struct DeflateSocket {
    websocket: WebSocket<Staged>,
    staging: Rc<RefCell<Staging>>,
    /// The server's close frame was returned: the stream ends after it.
    close_received: bool,
    ended: bool,
    /// The wire size of the data message last returned, until the VU takes it.
    received_wire: Option<u64>,
}

impl DeflateSocket {
    /// Wraps an upgraded transport (`early`: bytes read past the 101 response) with the
    /// agreed parameters; messages smaller than `threshold` bytes go uncompressed.
    pub fn new(transport: Transport, early: Vec<u8>, agreed: &Agreed, threshold: usize) -> io::Result<DeflateSocket> {
        let staging = Rc::new(RefCell::new(Staging {
            transport,
            early: Bytes::from(early),
            holding: false,
            sent: FrameSizes::default(),
            received: FrameSizes::default(),
        }));
        let options = Options::default()
            .with_compression_level(CompressionLevel::default())
            .with_compression_threshold(threshold)
            .with_deflate_pool(pool())
            .with_limits(MAX_MESSAGE_BYTES + 1, MAX_MESSAGE_BYTES + 1)
            .with_read_buffer_capacity(READ_BUFFER_BYTES)
            .with_write_buffer_capacity(WRITE_BUFFER_BYTES);
        let websocket = WebSocket::from_stream_with_extensions(
            Staged(staging.clone()),
            Role::Client,
            Some(&agreed.canonical()),
            options,
        )
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error.to_string()))?;
        Ok(DeflateSocket {
            websocket,
            staging,
            close_received: false,
            ended: false,
            received_wire: None,
        })
    }

    pub fn last_read(&self) -> Instant {
        self.staging.borrow().transport.last_read()
    }

    pub fn write_offsets(&self) -> WriteOffsets {
        self.staging.borrow().transport.write_offsets()
    }

    pub fn wrote_everything(&self) -> bool {
        self.staging.borrow().transport.wrote_everything()
    }

    /// As [`Transport::poll_write_held`]: what yawc sends is drained into the counted stream
    /// as it is sent, so nothing waits above it unless a write was refused.
    pub fn poll_write_held(&mut self, cx: &mut Context<'_>) -> Option<Poll<io::Result<()>>> {
        self.staging.borrow_mut().transport.poll_write_held(cx)
    }

    /// The payload bytes on the wire of the oldest data message sent and not yet taken.
    pub fn take_sent_wire(&mut self) -> Option<u64> {
        self.staging.borrow_mut().sent.done.pop_front()
    }

    /// The payload bytes on the wire of the data message last returned.
    pub fn take_received_wire(&mut self) -> Option<u64> {
        self.received_wire.take()
    }

    /// Moves what yawc framed into the counted stream, without flushing that stream: the
    /// frame is then `taken`, and leaves with the VU's flush (or when the bound is reached). A
    /// write the stream refuses leaves the rest in yawc's buffer, and the refusal in the
    /// stream's offsets, so the VU flushes through this socket.
    fn stage_written(&mut self) -> Result<(), WsError> {
        self.staging.borrow_mut().holding = true;
        let waker = futures_util::task::noop_waker();
        let mut context = Context::from_waker(&waker);
        let result = Pin::new(&mut self.websocket).poll_flush(&mut context);
        self.staging.borrow_mut().holding = false;
        match result {
            Poll::Ready(Err(error)) => Err(ws_error(error, false)),
            _ => Ok(()),
        }
    }

    /// Sends a close frame and flushes (`Message::Close(None)` sends 1000: yawc builds close
    /// frames from a code).
    pub async fn send_close(&mut self, frame: Option<CloseFrame>) -> Result<(), WsError> {
        self.send(Message::Close(frame)).await
    }
}

impl Stream for DeflateSocket {
    type Item = Result<Message, WsError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let frame = match this.websocket.poll_next_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(frame)) => frame,
            Poll::Ready(Err(error)) => {
                this.ended = true;
                if this.close_received && matches!(error, WebSocketError::ConnectionClosed) {
                    return Poll::Ready(None);
                }
                return Poll::Ready(Some(Err(ws_error(error, this.close_received))));
            }
        };
        let (opcode, _, payload) = frame.into_parts();
        let message = match opcode {
            OpCode::Text => match Utf8Bytes::try_from(payload) {
                Ok(text) => Message::Text(text),
                Err(_) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(WsError::Utf8("a text message is not UTF-8".into()))));
                }
            },
            OpCode::Binary => Message::Binary(payload),
            OpCode::Ping => return Poll::Ready(Some(Ok(Message::Ping(payload)))),
            OpCode::Pong => return Poll::Ready(Some(Ok(Message::Pong(payload)))),
            OpCode::Close => {
                this.close_received = true;
                return Poll::Ready(Some(Ok(Message::Close(close_frame(&payload)))));
            }
            // Continuations are assembled by yawc; nothing else reaches here.
            OpCode::Continuation => {
                return Poll::Ready(Some(Err(WsError::Protocol(ProtocolError::UnexpectedContinueFrame))))
            }
        };
        this.received_wire = this.staging.borrow_mut().received.done.pop_front();
        Poll::Ready(Some(Ok(message)))
    }
}

impl Sink<Message> for DeflateSocket {
    type Error = WsError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.get_mut().websocket)
            .poll_ready(cx)
            .map_err(|error| ws_error(error, false))
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), WsError> {
        let this = self.get_mut();
        let frame = match message {
            Message::Text(text) => Frame::text(Bytes::from(text)),
            Message::Binary(bytes) => Frame::binary(bytes),
            Message::Ping(bytes) => Frame::ping(bytes),
            Message::Pong(bytes) => Frame::pong(bytes),
            Message::Close(None) => Frame::close(CloseCode::Normal, b""),
            Message::Close(Some(close)) => {
                Frame::close(CloseCode::from(u16::from(close.code)), close.reason.as_bytes())
            }
            Message::Frame(frame) => {
                let fin = frame.header().is_final;
                let opcode = frame.header().opcode;
                let payload = frame.into_payload();
                let frame = match opcode {
                    TungOpCode::Data(OpData::Text) => Frame::text(payload),
                    TungOpCode::Data(OpData::Binary) => Frame::binary(payload),
                    TungOpCode::Data(OpData::Continue) => Frame::continuation(payload),
                    _ => return Err(WsError::Protocol(ProtocolError::UnknownControlFrameType(0))),
                };
                frame.with_fin(fin)
            }
        };
        Pin::new(&mut this.websocket)
            .start_send(frame)
            .map_err(|error| ws_error(error, false))?;
        this.stage_written()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let this = self.get_mut();
        // yawc writes the frames it owes (pongs, the answer to a close) when a read waits or
        // the socket is made ready; a flush must send them too, as tungstenite's does.
        match Pin::new(&mut this.websocket).poll_ready(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(WebSocketError::ConnectionClosed)) if this.close_received => return Poll::Ready(Ok(())),
            Poll::Ready(Err(error)) => return Poll::Ready(Err(ws_error(error, this.close_received))),
            Poll::Ready(Ok(())) => {}
        }
        Pin::new(&mut this.websocket)
            .poll_flush(cx)
            .map_err(|error| ws_error(error, false))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.get_mut().websocket)
            .poll_close(cx)
            .map_err(|error| ws_error(error, false))
    }
}

fn close_frame(payload: &[u8]) -> Option<CloseFrame> {
    if payload.len() < 2 {
        return None;
    }
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    let reason = String::from_utf8_lossy(&payload[2..]).into_owned();
    Some(CloseFrame {
        code: code.into(),
        reason: reason.into(),
    })
}

/// yawc's errors as tungstenite's, so that `classify_ws_error` counts them under the same
/// kinds: a message past the limit is `message_too_big`, the end of the stream without a close
/// frame is `reset`, I/O keeps its kind, and everything else the server did wrong (a frame
/// that does not inflate, bad framing) is `protocol`.
fn ws_error(error: WebSocketError, close_received: bool) -> WsError {
    match error {
        WebSocketError::FrameTooLarge => WsError::Capacity(CapacityError::MessageTooLong {
            size: MAX_MESSAGE_BYTES + 1,
            max_size: MAX_MESSAGE_BYTES,
        }),
        WebSocketError::ConnectionClosed if close_received => WsError::ConnectionClosed,
        WebSocketError::ConnectionClosed => WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
        // yawc reports a frame that does not inflate as `InvalidInput` I/O.
        WebSocketError::IoError(io) if io.kind() == io::ErrorKind::InvalidInput => {
            ProtocolViolation::error(format!("permessage-deflate: {io}"))
        }
        WebSocketError::IoError(io) => WsError::Io(io),
        other => ProtocolViolation::error(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(opcode: u8, fin: bool, payload: usize, masked: bool) -> Vec<u8> {
        let mut bytes = vec![if fin { 0x80 | opcode } else { opcode }];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload {
            0..=125 => bytes.push(mask_bit | payload as u8),
            126..=0xffff => {
                bytes.push(mask_bit | 126);
                bytes.extend_from_slice(&(payload as u16).to_be_bytes());
            }
            _ => {
                bytes.push(mask_bit | 127);
                bytes.extend_from_slice(&(payload as u64).to_be_bytes());
            }
        }
        if masked {
            bytes.extend_from_slice(&[1, 2, 3, 4]);
        }
        bytes.extend(std::iter::repeat_n(7u8, payload));
        bytes
    }

    /// Messages are summed over their frames, control frames between fragments are skipped,
    /// and bytes may arrive one at a time.
    #[test]
    fn frame_sizes_follow_the_headers() {
        let mut stream = Vec::new();
        stream.extend(frame(0x1, true, 5, true));
        stream.extend(frame(0x2, false, 300, false));
        stream.extend(frame(0x9, true, 4, false));
        stream.extend(frame(0x0, true, 70_000, false));
        stream.extend(frame(0x2, true, 0, true));
        let mut whole = FrameSizes::default();
        whole.feed(&stream);
        assert_eq!(whole.done, [5, 70_300, 0]);
        let mut bytewise = FrameSizes::default();
        for byte in &stream {
            bytewise.feed(std::slice::from_ref(byte));
        }
        assert_eq!(bytewise.done, [5, 70_300, 0]);
    }
}
