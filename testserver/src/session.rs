//! One WebSocket connection after the handshake: the message loop for the echo,
//! json and broadcast endpoints, the scripted misbehaviour that happens on an
//! open connection, and every way the connection ends.
//!
//! The loop ([`Session::drive`]) decides *how* the connection ends and returns
//! that as an [`Ending`]; [`Session::finish`] then carries it out with a bounded
//! wait. Shutdown cancels `drive` at any await point and finishes with 1001, so
//! every connection closes the same way whatever it was doing.
//!
//! Replies are batched: the loop answers every frame that is already readable
//! (in tungstenite's read buffer or the socket's), and flushes once when the
//! next read would wait, or after [`BATCH_LIMIT`] replies. A client that
//! pipelines 16 messages gets its 16 echoes in one write, as from the upstream
//! tokio-tungstenite echo example (`StreamExt::forward`), instead of 16 writes.

use futures_util::{FutureExt, SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, Utf8Bytes};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::json;
use crate::modes::{Endpoint, Modes};
use crate::rooms::{Membership, RoomMessage};
use crate::stats::{Counters, OpenConnection, Tally};
use crate::transport::Transport;

/// How long the server waits for the client's side of a close handshake, or for
/// the client to go after a protocol failure. Shorter than the shutdown grace
/// period so that a shutdown closes every well-behaved connection gracefully.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// `oversize` messages are sent as fragments of this many bytes, all slices of
/// one static zeroed buffer, so even a huge message allocates nothing.
const OVERSIZE_FRAGMENT_BYTES: usize = 64 * 1024;
static ZEROS: [u8; OVERSIZE_FRAGMENT_BYTES] = [0; OVERSIZE_FRAGMENT_BYTES];

/// The raw frame `malformed=1` writes: FIN, all three reserved bits set, the
/// reserved data opcode 0x3, no mask, empty payload. Any RFC 6455 client must
/// fail the connection on it.
const MALFORMED_FRAME: [u8; 2] = [0b1111_0011, 0x00];

/// Replies buffered before the loop flushes even though more frames are ready:
/// keeps a client that never stops sending from delaying its echoes (and the
/// counters) for long. tungstenite writes out every `write_buffer_size` bytes
/// meanwhile, so this bounds the time between flushes, not the write size.
const BATCH_LIMIT: u32 = 256;

/// The reason sent with 1001 Going Away when the server shuts down.
const GOING_AWAY_REASON: &str = "server shutting down";

/// Everything a connection needs after the handshake.
pub(crate) struct Session {
    /// The `X-Session-Id` sent in the handshake; also the broadcast sender id.
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) endpoint: Endpoint,
    pub(crate) modes: Modes,
    pub(crate) counters: Arc<Counters>,
    /// The broadcast room, joined before the `101` was written so that a client
    /// that sees its handshake succeed is already a member.
    pub(crate) membership: Option<Membership>,
    /// Keeps the connection counted as open for exactly as long as the session
    /// lives, including when a hard stop drops it.
    pub(crate) _open: OpenConnection,
}

/// How a connection ends.
#[derive(Debug)]
enum Ending {
    /// The client sent a close frame; tungstenite has queued the echo of it.
    ClosedByClient,
    /// The server closes with this frame and waits for the client's reply.
    Close(CloseFrame),
    /// The client broke the protocol or sent too much: send this close frame,
    /// stop reading WebSocket frames (the stream is out of sync) and end.
    Fail(CloseFrame),
    /// `drop_after`: reset the TCP connection without a close frame.
    Reset,
    /// The connection is already gone (EOF, IO error, reset by the client).
    Gone,
}

/// What woke the message loop.
enum Event {
    Incoming(Option<Result<Message, WsError>>),
    Room(Result<RoomMessage, RecvError>),
}

impl Session {
    /// Plays the connection until it ends or `cancel` fires, then closes it.
    ///
    /// Both are borrowed, not moved: a moved value would be stored twice in
    /// the connection's future, once by the caller and once here.
    pub(crate) async fn run<S: Transport>(&mut self, websocket: &mut WebSocketStream<S>, cancel: &CancellationToken) {
        let mut membership = self.membership.take();
        let ending = tokio::select! {
            ending = self.drive(websocket, &mut membership) => ending,
            () = cancel.cancelled() => Ending::Close(close_frame(1001, GOING_AWAY_REASON.into())),
        };
        // Leave the room before the close handshake: nothing more is delivered.
        drop(membership);
        debug!(session_id = self.id, peer = %self.peer, ?ending, "connection ending");
        // Boxed: the close path is rare and short, so its state lives on the
        // heap for that moment instead of in every connection's future.
        Box::pin(self.finish(websocket, ending)).await;
    }

    /// The message loop. Cancel-safe at every await: a shutdown drops it mid-way
    /// and tungstenite keeps any half-written frame in its buffer for the close;
    /// the counts of the batch are committed when `tally` drops.
    async fn drive<S: Transport>(
        &self,
        websocket: &mut WebSocketStream<S>,
        membership: &mut Option<Membership>,
    ) -> Ending {
        let mut tally = Tally::new(&self.counters);
        if let Some(text) = &self.modes.send_on_open {
            let sent = self.send_copies(websocket, Message::text(text.as_str()), 1, &mut tally);
            if let Err(error) = sent.await {
                return ending_for_error(error);
            }
            if let Err(error) = flush(websocket, &mut tally).await {
                return ending_for_error(error);
            }
        }
        if let Some(code) = self.modes.close_on_open {
            return Ending::Close(close_frame(code, self.modes.close_reason.as_str().into()));
        }
        if let Some(ending) = self.scripted_ending(0) {
            return ending;
        }
        let mut received: u64 = 0;
        // Replies fed to tungstenite since the last flush.
        let mut unflushed: u32 = 0;
        loop {
            let event = if unflushed == 0 {
                next_event(websocket, membership).await
            } else {
                // Answer what is already readable first; flush once the next
                // read would wait (or the batch is long enough).
                let ready = if unflushed < BATCH_LIMIT {
                    next_event(websocket, membership).now_or_never()
                } else {
                    None
                };
                match ready {
                    Some(event) => event,
                    None => {
                        if let Err(error) = flush(websocket, &mut tally).await {
                            return ending_for_error(error);
                        }
                        unflushed = 0;
                        continue;
                    }
                }
            };
            let outcome = match event {
                Event::Incoming(None) => return Ending::Gone,
                Event::Incoming(Some(Err(error))) => return ending_for_error(error),
                Event::Incoming(Some(Ok(Message::Close(_)))) => return Ending::ClosedByClient,
                Event::Incoming(Some(Ok(message @ (Message::Text(_) | Message::Binary(_))))) => {
                    received += 1;
                    tally.received(message.len());
                    let outcome = self.respond(websocket, message, membership.as_ref(), &mut tally).await;
                    unflushed += 1;
                    if received == 1 && outcome.is_ok() {
                        self.after_first_message(websocket, &mut tally).await
                    } else {
                        outcome
                    }
                }
                // Pings are answered by tungstenite on the next read or write.
                Event::Incoming(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => Ok(()),
                Event::Room(Ok(delivered)) => {
                    if self.modes.echo_self || delivered.sender != self.id {
                        unflushed += 1;
                        self.send_copies(websocket, delivered.message, 1, &mut tally).await
                    } else {
                        Ok(())
                    }
                }
                Event::Room(Err(RecvError::Lagged(skipped))) => {
                    let total = self.counters.broadcast_dropped(skipped);
                    debug!(
                        session_id = self.id,
                        skipped, total, "slow broadcast client skipped messages"
                    );
                    Ok(())
                }
                // The room's sender lives in `membership`, so this cannot
                // happen; leaving the room keeps the loop from spinning on it.
                Event::Room(Err(RecvError::Closed)) => {
                    *membership = None;
                    Ok(())
                }
            };
            if let Err(error) = outcome {
                return ending_for_error(error);
            }
            if let Some(ending) = self.scripted_ending(received) {
                // The message that reached the count is answered before the
                // connection closes or drops.
                if let Err(error) = flush(websocket, &mut tally).await {
                    return ending_for_error(error);
                }
                return ending;
            }
        }
    }

    /// The reply to one data message: `reply_count` echoes, json replies, or
    /// publications to the room, after `delay`. Replies are fed, not flushed.
    async fn respond<S: Transport>(
        &self,
        websocket: &mut WebSocketStream<S>,
        message: Message,
        membership: Option<&Membership>,
        tally: &mut Tally<'_>,
    ) -> Result<(), WsError> {
        let overloaded = self.modes.overload.as_ref().and_then(|overload| {
            let rate = if overload.rate.is_some() {
                self.counters.rate_meter.arrive(std::time::Instant::now())
            } else {
                0
            };
            overload.reply_delay(self.counters.open_now(), rate)
        });
        let delay = match (self.modes.delay, overloaded) {
            (None, None) => None,
            (fixed, extra) => Some(fixed.unwrap_or_default() + extra.unwrap_or_default()),
        };
        if let Some(delay) = delay {
            // What is already answered leaves before the wait, as without a delay.
            flush(websocket, tally).await?;
            tokio::time::sleep(delay).await;
        }
        let copies = self.modes.reply_count;
        match &self.endpoint {
            Endpoint::Echo => self.send_copies(websocket, message, copies, tally).await,
            Endpoint::Json => {
                let reply = match &message {
                    Message::Text(text) => json::reply_to_text(text),
                    _ => json::reply_to_binary(),
                };
                self.send_copies(websocket, Message::text(reply), copies, tally).await
            }
            Endpoint::Broadcast { .. } => {
                if let Some(membership) = membership {
                    for _ in 0..copies {
                        membership.publish(RoomMessage {
                            sender: self.id,
                            message: message.clone(),
                        });
                    }
                }
                Ok(())
            }
        }
    }

    /// Feeds `copies` of a message to tungstenite without flushing. Each copy is
    /// tallied once tungstenite has taken it; the tally reaches the counters
    /// before the flush, so a client never sees a message the stats do not.
    async fn send_copies<S: Transport>(
        &self,
        websocket: &mut WebSocketStream<S>,
        message: Message,
        copies: u32,
        tally: &mut Tally<'_>,
    ) -> Result<(), WsError> {
        if copies == 0 {
            return Ok(());
        }
        let payload_len = message.len();
        for _ in 1..copies {
            // Cloning a message bumps a reference count; the payload is shared.
            websocket.feed(message.clone()).await?;
            tally.sent(payload_len);
        }
        websocket.feed(message).await?;
        tally.sent(payload_len);
        Ok(())
    }

    /// `oversize` and `malformed` happen once, after the first message's reply.
    async fn after_first_message<S: Transport>(
        &self,
        websocket: &mut WebSocketStream<S>,
        tally: &mut Tally<'_>,
    ) -> Result<(), WsError> {
        if let Some(size) = self.modes.oversize {
            self.send_oversize(websocket, size, tally).await?;
        }
        if self.modes.malformed {
            // Everything tungstenite buffered goes first, then the raw bytes
            // straight onto the transport, where tungstenite cannot refuse them.
            flush(websocket, tally).await?;
            let transport = websocket.get_mut();
            transport.write_all(&MALFORMED_FRAME).await?;
            transport.flush().await?;
        }
        Ok(())
    }

    /// One binary message of `size` zero bytes, as fragments of the static buffer.
    async fn send_oversize<S: Transport>(
        &self,
        websocket: &mut WebSocketStream<S>,
        size: u64,
        tally: &mut Tally<'_>,
    ) -> Result<(), WsError> {
        tally.sent(usize::try_from(size).unwrap_or(usize::MAX));
        let mut remaining = size;
        let mut opcode = OpCode::Data(Data::Binary);
        loop {
            let fragment_len = usize::try_from(remaining).map_or(OVERSIZE_FRAGMENT_BYTES, |remaining| {
                remaining.min(OVERSIZE_FRAGMENT_BYTES)
            });
            remaining -= fragment_len as u64;
            let payload = Bytes::from_static(&ZEROS[..fragment_len]);
            let is_final = remaining == 0;
            websocket
                .feed(Message::Frame(Frame::message(payload, opcode, is_final)))
                .await?;
            if is_final {
                return flush(websocket, tally).await;
            }
            opcode = OpCode::Data(Data::Continue);
        }
    }

    /// `close_after` or `drop_after` when `received` reaches their count.
    fn scripted_ending(&self, received: u64) -> Option<Ending> {
        if self.modes.close_after == Some(received) {
            let reason = self.modes.close_reason.as_str().into();
            return Some(Ending::Close(close_frame(self.modes.close_code, reason)));
        }
        if self.modes.drop_after == Some(received) {
            return Some(Ending::Reset);
        }
        None
    }

    /// Carries out an [`Ending`], every wait bounded by [`CLOSE_TIMEOUT`].
    async fn finish<S: Transport>(&self, websocket: &mut WebSocketStream<S>, ending: Ending) {
        match ending {
            Ending::Gone => {}
            Ending::Reset => {
                // SO_LINGER 0 turns the close into a RST: the client sees a
                // reset, not an orderly end of stream.
                if let Err(error) = websocket.get_ref().tcp().set_zero_linger() {
                    debug!(session_id = self.id, %error, "cannot set SO_LINGER 0; the drop will be a plain close");
                }
            }
            Ending::ClosedByClient => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.close_handshake(websocket, None)).await;
            }
            Ending::Close(frame) => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.close_handshake(websocket, Some(frame))).await;
            }
            Ending::Fail(frame) => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, fail(websocket, frame)).await;
            }
        }
    }

    /// Sends our close frame (or the queued echo of the client's), reads until
    /// the handshake completes, then shuts the transport down.
    async fn close_handshake<S: Transport>(&self, websocket: &mut WebSocketStream<S>, frame: Option<CloseFrame>) {
        if let Some(frame) = frame {
            if websocket.close(Some(frame)).await.is_err() {
                return;
            }
        }
        // Messages the client sent before it saw our close still count.
        while let Some(Ok(message)) = websocket.next().await {
            if message.is_text() || message.is_binary() {
                self.counters.message_received(message.len());
            }
        }
        let _ = websocket.get_mut().shutdown().await;
    }
}

/// Sends a close frame after a protocol failure, then ends the stream and
/// discards whatever the client still sends until it goes: closing a socket
/// with unread input would reset it and could destroy the close frame in flight.
async fn fail<S: Transport>(websocket: &mut WebSocketStream<S>, frame: CloseFrame) {
    let _ = websocket.close(Some(frame)).await;
    let transport = websocket.get_mut();
    let _ = transport.shutdown().await;
    let _ = tokio::io::copy(transport, &mut tokio::io::sink()).await;
}

/// The next message from the client or, in a room, from the room.
async fn next_event<S: Transport>(websocket: &mut WebSocketStream<S>, membership: &mut Option<Membership>) -> Event {
    match membership {
        None => Event::Incoming(websocket.next().await),
        Some(membership) => tokio::select! {
            incoming = websocket.next() => Event::Incoming(incoming),
            delivered = membership.recv() => Event::Room(delivered),
        },
    }
}

/// Commits the batch's counts, then writes out everything tungstenite holds.
async fn flush<S: Transport>(websocket: &mut WebSocketStream<S>, tally: &mut Tally<'_>) -> Result<(), WsError> {
    tally.commit();
    websocket.flush().await
}

fn close_frame(code: u16, reason: Utf8Bytes) -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(code),
        reason,
    }
}

/// Maps a read or write error to how the connection ends: size and protocol
/// violations get the RFC 6455 close code, transport errors end silently.
fn ending_for_error(error: WsError) -> Ending {
    match error {
        WsError::Capacity(_) => Ending::Fail(close_frame(1009, Utf8Bytes::from_static("message too big"))),
        WsError::Protocol(tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => {
            Ending::Gone
        }
        WsError::Protocol(_) => Ending::Fail(close_frame(1002, Utf8Bytes::from_static("protocol error"))),
        WsError::Utf8(_) => Ending::Fail(close_frame(
            1007,
            Utf8Bytes::from_static("invalid utf-8 in a text message"),
        )),
        WsError::WriteBufferFull(_) => Ending::Fail(close_frame(1011, Utf8Bytes::from_static("reply too big"))),
        _ => Ending::Gone,
    }
}
