//! Outgoing messages: the send step, the message a send or a handler's reply sends (built once
//! per run when it never changes), fragmentation, and writing while reading what arrives
//! meanwhile, so a VU that only sends never deadlocks against a target that answers.

use std::task::Poll;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data as OpData, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use wsfleet_metrics::{Counter, ErrorKind, SetId};
use wsfleet_scenario::{ConnId, FrameKind, Payload, Send, Step, StepId};

use super::conn::message_bytes;
use super::env::build_message;
use super::outcome::{ws_failure, Failure, StepResult};
use super::state::Vu;
use crate::clock;
use crate::connection::Socket;

impl Vu {
    pub(super) async fn send_step(&mut self, step: &Step, send: &Send, iteration: u64) -> StepResult {
        let message = self.message_for(step.id, send, iteration)?;
        self.send_message(
            send.conn,
            message,
            send.fragments,
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
                .render(&self.parts().scope(iteration))
                .into_owned()
                .into_bytes(),
            Payload::Bytes(bytes) => bytes.clone(),
        };
        build_message(bytes, send.frame).ok_or_else(|| Failure::new(id, ErrorKind::Protocol))
    }

    /// Sends a message, whole or in `fragments` frames, and records it in `set`. While the
    /// socket cannot take it (the target is not reading, often because its own sends to this VU
    /// are blocked), what arrives is read meanwhile, through the handlers and into the queue, so
    /// a VU that only sends never deadlocks against a target that answers. Handler replies to
    /// what arrived go out after this message.
    pub(super) async fn send_message(
        &mut self,
        conn_id: ConnId,
        message: Message,
        fragments: u32,
        set: SetId,
        step: StepId,
        iteration: u64,
    ) -> StepResult {
        let (counter, payload_len) = match &message {
            Message::Text(text) => (Counter::TextMessagesSent, text.len()),
            _ => (Counter::BinaryMessagesSent, message.len()),
        };
        let sent_at = clock::now();
        let mut outgoing = Outgoing::new(message, fragments);
        let mut unsent: Option<Message> = None;
        let mut replies = Vec::new();
        let mut waited = false;
        loop {
            let event = {
                let conn = self.conn_mut(conn_id, step)?;
                let mut polls = 0;
                let event = std::future::poll_fn(|cx| {
                    polls += 1;
                    poll_send(&mut conn.socket, &mut outgoing, &mut unsent, cx)
                })
                .await;
                waited |= polls > 1;
                event
            };
            match event {
                SendEvent::Sent(Ok(())) => break,
                SendEvent::Sent(Err(error)) => return Err(ws_failure(step, &error).into()),
                SendEvent::Arrived(next) => {
                    let (arrived, reply) = self.ingest(conn_id, next, step, iteration)?;
                    replies.extend(reply);
                    if let Some(arrived) = arrived {
                        self.queue(conn_id, arrived);
                    }
                }
            }
        }
        // Timed from when it was due: a paced send that went out late carries its lateness.
        let due = sent_at.checked_sub(self.lag).unwrap_or(sent_at);
        let conn = self.conn_mut(conn_id, step)?;
        match conn.send_times.iter_mut().find(|(id, _)| *id == step) {
            Some(entry) => entry.1 = due,
            None => conn.send_times.push((step, due)),
        }
        conn.unanswered_send = Some(due);
        conn.recorder.borrow_mut().add_counts(
            sent_at,
            set,
            [
                (Counter::MessagesSent, 1),
                (counter, 1),
                (Counter::PayloadBytesSent, payload_len as u64),
            ],
        );
        if !waited && replies.is_empty() {
            self.recent = Some(sent_at);
        }
        // Checked first: a loop over an empty list still builds and drops its iterator.
        if !replies.is_empty() {
            for reply in replies {
                self.send_reply(conn_id, reply, iteration).await?;
            }
        }
        Ok(())
    }
}

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
    /// Every frame is written and flushed (or the send failed).
    Sent(Result<(), tokio_tungstenite::tungstenite::Error>),
    /// The socket could not take more yet, and something arrived meanwhile.
    Arrived(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
}

/// Writes `outgoing` (`unsent` holds a frame the socket was not ready for) and flushes; while
/// the socket is not ready, reads instead.
pub(super) fn poll_send(
    socket: &mut Socket,
    outgoing: &mut Outgoing,
    unsent: &mut Option<Message>,
    cx: &mut std::task::Context<'_>,
) -> Poll<SendEvent> {
    loop {
        let frame = unsent.take().or_else(|| outgoing.next());
        let Some(frame) = frame else {
            // Written whole (the socket took every frame): the flush would have nothing to do
            // but register the task's waker once more, once per message.
            if socket.get_ref().wrote_everything() {
                return Poll::Ready(SendEvent::Sent(Ok(())));
            }
            match socket.poll_flush_unpin(cx) {
                Poll::Ready(result) => return Poll::Ready(SendEvent::Sent(result)),
                Poll::Pending => break,
            }
        };
        match socket.poll_ready_unpin(cx) {
            Poll::Ready(Ok(())) => {
                if let Err(error) = socket.start_send_unpin(frame) {
                    return Poll::Ready(SendEvent::Sent(Err(error)));
                }
            }
            Poll::Ready(Err(error)) => return Poll::Ready(SendEvent::Sent(Err(error))),
            Poll::Pending => {
                *unsent = Some(frame);
                break;
            }
        }
    }
    socket.poll_next_unpin(cx).map(SendEvent::Arrived)
}
