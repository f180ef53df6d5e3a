//! Outgoing messages: the send step, holding sends until the VU waits (and the flush then), the message a send or a handler's reply sends (built once
//! per run when it never changes), fragmentation, and writing while reading what arrives
//! meanwhile, so a VU that only sends never deadlocks against a target that answers.

use std::task::Poll;
use std::time::Instant;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data as OpData, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use wsfleet_metrics::{Counter, ErrorKind, SetId};
use wsfleet_scenario::{ConnId, Flush, FrameKind, Payload, Send, Step, StepId};

use super::conn::{message_bytes, HeldSend};
use super::env::build_message;
use super::inbox::Reply;
use super::outcome::{ws_failure, Failure, StepResult, Stop};
use super::state::{StepFuture, Vu};
use crate::clock;
use crate::connection::Socket;

impl Vu {
    /// Plays a send step; `waits_next`: the next step waits (a receive), so the message leaves
    /// now rather than being held for that step's flush.
    pub(super) async fn send_step(&mut self, step: &Step, send: &Send, iteration: u64, waits_next: bool) -> StepResult {
        let message = self.message_for(step.id, send, iteration)?;
        self.send_message(
            send.conn,
            message,
            send.fragments,
            if waits_next { Flush::Each } else { send.flush },
            SetId::Step(step.id),
            step.id,
            iteration,
        )
        .await
    }

    /// The message a send step (or a handler's reply) sends now.
    pub(super) fn message_for(&self, id: StepId, send: &Send, iteration: u64) -> Result<Message, Failure> {
        if let Some(Some(message)) = self.env.static_messages.get(usize::from(id)) {
            return Ok(message.clone());
        }
        let bytes = match &send.payload {
            Payload::Text(template) => template
                .try_render(&self.parts().scope(iteration))
                .map_err(|error| super::scripted::script_failure(id, None, &error))?
                .into_owned()
                .into_bytes(),
            Payload::Bytes(bytes) => bytes.clone(),
        };
        build_message(bytes, send.frame).ok_or_else(|| Failure::new(id, ErrorKind::Protocol))
    }

    /// Sends a message, whole or in `fragments` frames, and records it in `set` once its bytes
    /// are in the socket (its send instant, for latencies, is then). With `Flush::Batch` the
    /// frames wait below the WebSocket with those sent before them, and leave when the VU is
    /// about to wait (`flush_held`) or the bound is reached; with `Flush::Each` they leave now.
    /// While the socket cannot take them (the target is not reading, often because its own
    /// sends to this VU are blocked), what arrives is read meanwhile, through the handlers and
    /// into the queue, so a VU that only sends never deadlocks against a target that answers.
    /// Handler replies to what arrived go out after this message.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn send_message(
        &mut self,
        conn_id: ConnId,
        message: Message,
        fragments: u32,
        flush: Flush,
        set: SetId,
        step: StepId,
        iteration: u64,
    ) -> StepResult {
        let (counter, payload_len) = match &message {
            Message::Text(text) => (Counter::TextMessagesSent, text.len()),
            _ => (Counter::BinaryMessagesSent, message.len()),
        };
        let mut outgoing = Outgoing::new(message, fragments);
        let mut progress = SendProgress::default();
        let mut replies = Vec::new();
        let flushed = {
            let (this, outgoing, progress, replies) = (&mut *self, &mut outgoing, &mut progress, &mut replies);
            let flush = flush == Flush::Each;
            std::future::poll_fn(move |cx| {
                this.poll_write_out(conn_id, outgoing, progress, flush, step, iteration, replies, cx)
            })
            .await?
        };
        let lag = self.lag;
        let conn = self.conn_mut(conn_id, step)?;
        conn.hold(HeldSend {
            end: 0,
            set,
            step,
            counter,
            payload_bytes: payload_len as u64,
            lag,
        });
        let settled = if flushed {
            let now = clock::now();
            conn.settle_all(now);
            Some(now)
        } else {
            let settled = conn.settle_written();
            if settled.is_some() {
                // Held sends reached the bound and went out: a VU that keeps sending reads what
                // came meanwhile now, not only once the socket is full (so the target's sends
                // to it never stall), and lets the other VUs' sends go out between its bursts.
                self.read_arrived(conn_id, step, iteration, &mut replies)?;
                tokio::task::yield_now().await;
            }
            settled
        };
        if replies.is_empty() {
            // Nothing awaited since: the next step may start from this reading.
            self.recent = settled;
        } else {
            self.send_replies(conn_id, replies, iteration).await?;
        }
        Ok(())
    }

    /// Writes `outgoing`'s frames and, with `flush`, flushes them and everything held before
    /// them, reading what arrives while the socket cannot take more (replies to it are left in
    /// `replies`). `true` when a flush completed: every byte written is in the socket. A poll
    /// function rather than an `async fn`: its state is the caller's few locals, so the futures
    /// of the steps that send or flush (and an idle VU holds the largest of them) stay small.
    #[allow(clippy::too_many_arguments)]
    fn poll_write_out(
        &mut self,
        conn_id: ConnId,
        outgoing: &mut Outgoing,
        progress: &mut SendProgress,
        flush: bool,
        step: StepId,
        iteration: u64,
        replies: &mut Vec<Reply>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Result<bool, Stop>> {
        loop {
            let conn = match self.conn_mut(conn_id, step) {
                Ok(conn) => conn,
                Err(failure) => return Poll::Ready(Err(failure.into())),
            };
            let Poll::Ready(event) = poll_send(&mut conn.socket, outgoing, progress, flush, cx) else {
                return Poll::Pending;
            };
            match event {
                SendEvent::Sent(Ok(flushed)) => return Poll::Ready(Ok(flushed)),
                SendEvent::Sent(Err(error)) => return Poll::Ready(Err(ws_failure(step, &error).into())),
                SendEvent::Arrived(next) => {
                    let (arrived, reply) = match self.ingest(conn_id, next, step, iteration) {
                        Ok(ingested) => ingested,
                        Err(stop) => return Poll::Ready(Err(stop)),
                    };
                    replies.extend(reply);
                    if let Some(arrived) = arrived {
                        self.queue(conn_id, arrived);
                    }
                }
            }
        }
    }

    /// Sends handlers' replies, in order. Boxed: only handlers reply, and inline the sends
    /// would size every future that sends or flushes (one allocation per batch of replies).
    fn send_replies(&mut self, conn_id: ConnId, replies: Vec<Reply>, iteration: u64) -> StepFuture<'_> {
        Box::pin(async move {
            for reply in replies {
                self.send_reply_inline(conn_id, reply, iteration).await?;
            }
            Ok(())
        })
    }

    /// Reads what the connection has already brought (at most [`ARRIVED_PER_BURST`] messages),
    /// through the handlers and into the queue; replies to it are left in `replies`.
    fn read_arrived(&mut self, conn_id: ConnId, step: StepId, iteration: u64, replies: &mut Vec<Reply>) -> StepResult {
        for _ in 0..ARRIVED_PER_BURST {
            let Some(conn) = self.conns.get_mut(conn_id).and_then(Option::as_mut) else {
                return Ok(());
            };
            let Some(next) = conn.socket.next().now_or_never() else {
                return Ok(());
            };
            let (arrived, reply) = self.ingest(conn_id, next, step, iteration)?;
            replies.extend(reply);
            if let Some(arrived) = arrived {
                self.queue(conn_id, arrived);
            }
        }
        Ok(())
    }

    /// Whether any connection holds sends whose bytes are not all in the socket yet.
    pub(super) fn holds_sends(&self) -> bool {
        self.conns.iter().flatten().any(|conn| !conn.held.is_empty())
    }

    /// Hands every held send to the socket, on every connection, before the VU waits: a send's
    /// frames never wait for the VU's next wait to end. Failures count in `step` (the step
    /// about to wait). Returns when the last flush completed, if there was one. Handler replies
    /// to what arrived meanwhile are flushed too.
    pub(super) async fn flush_held(&mut self, step: StepId, iteration: u64) -> Result<Option<Instant>, Stop> {
        let mut flushed_at = None;
        // Bounded by what arrives meanwhile: each round flushes what the one before replied.
        while let Some(conn_id) = self
            .conns
            .iter()
            .position(|conn| conn.as_ref().is_some_and(|conn| !conn.held.is_empty()))
        {
            let mut replies = Vec::new();
            {
                // A flush writes no frame of its own, so the only state between polls is
                // whether the socket refused the last write: the message and progress of a
                // send are made afresh at each poll, and the flush's future stays a few words.
                let (this, mut blocked, replies) = (&mut *self, false, &mut replies);
                std::future::poll_fn(move |cx| {
                    let mut nothing = Outgoing::Whole(None);
                    let mut progress = SendProgress { unsent: None, blocked };
                    let polled =
                        this.poll_write_out(conn_id, &mut nothing, &mut progress, true, step, iteration, replies, cx);
                    blocked = progress.blocked;
                    polled
                })
                .await?;
            }
            let now = clock::now();
            if let Some(conn) = self.conns[conn_id].as_mut() {
                conn.settle_all(now);
            }
            flushed_at = Some(now);
            if !replies.is_empty() {
                self.send_replies(conn_id, replies, iteration).await?;
            }
        }
        Ok(flushed_at)
    }
}

/// Messages a VU reads after each full buffer of sends it writes, at most (it reads the rest
/// after the next): a target that sends faster than the VU reads cannot hold it there.
const ARRIVED_PER_BURST: usize = 4096;

/// A message on its way out: whole, or as its fragments.
pub(super) enum Outgoing {
    Whole(Option<Message>),
    Fragments(std::vec::IntoIter<Message>),
}

impl Outgoing {
    pub(super) fn new(message: Message, fragments: u32) -> Outgoing {
        if fragments <= 1 {
            return Outgoing::Whole(Some(message));
        }
        let (bytes, kind) = message_bytes(&message);
        let opcode = match kind {
            FrameKind::Text => OpData::Text,
            FrameKind::Binary => OpData::Binary,
        };
        let count = fragments as usize;
        let size = bytes.len().div_ceil(count).max(1);
        let mut frames = Vec::with_capacity(count);
        let mut offset = 0;
        for index in 0..count {
            let end = if index + 1 == count {
                bytes.len()
            } else {
                (offset + size).min(bytes.len())
            };
            let op = if index == 0 {
                OpCode::Data(opcode)
            } else {
                OpCode::Data(OpData::Continue)
            };
            frames.push(Message::Frame(Frame::message(
                bytes.slice(offset..end),
                op,
                index + 1 == count,
            )));
            offset = end;
        }
        Outgoing::Fragments(frames.into_iter())
    }

    pub(super) fn next(&mut self) -> Option<Message> {
        match self {
            Outgoing::Whole(message) => message.take(),
            Outgoing::Fragments(frames) => frames.next(),
        }
    }
}

pub(super) enum SendEvent {
    /// Every frame is written, and flushed when asked: `true` when a flush completed (or the
    /// send failed).
    Sent(Result<bool, tokio_tungstenite::tungstenite::Error>),
    /// The socket could not take more yet, and something arrived meanwhile.
    Arrived(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
}

/// How far one send's writing got between polls.
#[derive(Default)]
pub(super) struct SendProgress {
    /// A frame the socket was not ready for.
    unsent: Option<Message>,
    /// The socket refused the last write: what has arrived is read before the writes are tried
    /// again, every frame the read buffer holds, rather than one frame per write attempt (a
    /// sender that never waits reads its echoes in runs, as the socket makes room).
    blocked: bool,
}

/// Writes `outgoing` and, with `flush`, flushes; while the socket is not ready, reads instead.
pub(super) fn poll_send(
    socket: &mut Socket,
    outgoing: &mut Outgoing,
    progress: &mut SendProgress,
    flush: bool,
    cx: &mut std::task::Context<'_>,
) -> Poll<SendEvent> {
    if progress.blocked {
        if let Poll::Ready(next) = socket.poll_next_unpin(cx) {
            return Poll::Ready(SendEvent::Arrived(next));
        }
        // Nothing more to read (the read waits with this task's waker): the writes again.
        progress.blocked = false;
        return match poll_write_frames(socket, outgoing, progress, flush, cx) {
            Poll::Ready(sent) => Poll::Ready(sent),
            Poll::Pending => {
                progress.blocked = true;
                Poll::Pending
            }
        };
    }
    match poll_write_frames(socket, outgoing, progress, flush, cx) {
        Poll::Ready(sent) => Poll::Ready(sent),
        Poll::Pending => {
            progress.blocked = true;
            socket.poll_next_unpin(cx).map(SendEvent::Arrived)
        }
    }
}

/// Writes `outgoing`'s frames and, with `flush`, flushes: `Pending` (with the task's waker
/// registered for the write) while the socket cannot take more.
fn poll_write_frames(
    socket: &mut Socket,
    outgoing: &mut Outgoing,
    progress: &mut SendProgress,
    flush: bool,
    cx: &mut std::task::Context<'_>,
) -> Poll<SendEvent> {
    loop {
        let frame = progress.unsent.take().or_else(|| outgoing.next());
        let Some(frame) = frame else {
            if !flush {
                return Poll::Ready(SendEvent::Sent(Ok(false)));
            }
            // Written whole (the socket took every frame): the flush would have nothing to do
            // but register the task's waker once more, once per message.
            if socket.wrote_everything() {
                return Poll::Ready(SendEvent::Sent(Ok(true)));
            }
            // Straight from the counted stream when the WebSocket holds nothing: the
            // WebSocket's flush would register the task's waker twice more per flush.
            match socket.poll_write_held(cx) {
                Some(Poll::Ready(result)) => {
                    let result = result.map(|()| true).map_err(tokio_tungstenite::tungstenite::Error::Io);
                    return Poll::Ready(SendEvent::Sent(result));
                }
                Some(Poll::Pending) => return Poll::Pending,
                None => {}
            }
            return socket
                .poll_flush_unpin(cx)
                .map(|result| SendEvent::Sent(result.map(|()| true)));
        };
        match socket.poll_ready_unpin(cx) {
            Poll::Ready(Ok(())) => {
                // A whole message flushed at once goes straight to the socket when nothing is
                // held before it.
                let through = flush && matches!(outgoing, Outgoing::Whole(_));
                if through {
                    socket.write_through(true);
                }
                let started = socket.start_send_unpin(frame);
                if through {
                    socket.write_through(false);
                }
                if let Err(error) = started {
                    return Poll::Ready(SendEvent::Sent(Err(error)));
                }
            }
            Poll::Ready(Err(error)) => return Poll::Ready(SendEvent::Sent(Err(error))),
            Poll::Pending => {
                progress.unsent = Some(frame);
                return Poll::Pending;
            }
        }
    }
}
