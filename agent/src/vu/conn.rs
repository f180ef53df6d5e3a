//! One open connection and what the steps remember about it: its queue of messages that
//! arrived before a step took them, when each send went out (for latencies), and what outlives
//! the connection (the handshake's headers and the last message, for `extract`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Instant;

use tokio_tungstenite::tungstenite::{Bytes, Message};
use wsfleet_metrics::catalog::ACTIVE_CONNECTIONS;
use wsfleet_metrics::{Counter, Recorder, SetId};
use wsfleet_scenario::{FrameKind, StepId};

use crate::clock;
use crate::connection::Socket;

/// Messages a connection keeps for later receives; past this the oldest is dropped (and
/// counted as unread), so a VU that never reads a busy connection cannot grow without bound.
pub const QUEUED_MESSAGES_PER_CONNECTION: usize = 1024;

/// A data message that arrived before anything took it.
pub(super) struct Arrived {
    /// The message; for a protocol event, the one that carried it (its attachments are in
    /// `event`), or `None` when an earlier event of the same message carries it (STOMP frames and
    /// MQTT packets share messages: the message counts once, with its first item).
    pub(super) message: Option<Message>,
    pub(super) at: Instant,
    /// Read just now by the step that takes it (not from the queue).
    pub(super) fresh: bool,
    /// Its payload in frames on the wire, on a connection with permessage-deflate.
    pub(super) compressed: Option<u64>,
    /// The protocol event the message carried (connections that speak a protocol).
    pub(super) event: Option<Box<crate::protocol::Event>>,
}

impl Arrived {
    /// What matchers and extractions see: the message, or an event's body.
    pub(super) fn incoming(&self) -> (Bytes, FrameKind) {
        match (&self.event, &self.message) {
            (Some(event), _) => (event.body.clone(), event.kind),
            (None, Some(message)) => message_bytes(message),
            (None, None) => (Bytes::new(), FrameKind::Text),
        }
    }

    /// Counts the message (and an event's attachments) as taken in `set`.
    pub(super) fn count(&self, recorder: &mut Recorder, now: Instant, set: SetId) {
        if let Some(message) = &self.message {
            count_message(recorder, now, set, message, self.compressed);
        }
        if let Some(event) = &self.event {
            for attachment in &event.attachments {
                // Attachments arrive as frames of their own, read by the protocol layer: their
                // wire size is not known here.
                count_message(recorder, now, set, &Message::Binary(attachment.clone()), None);
            }
        }
    }
}

/// One open connection and what the steps need to remember about it.
pub(super) struct Conn {
    pub(super) socket: Socket,
    pub(super) recorder: Rc<RefCell<Recorder>>,
    /// Data messages read while waiting for something else, for later receives.
    pub(super) pending: VecDeque<Arrived>,
    /// When each send last went out (less the pacing lag), for `latency_of`; a scenario has
    /// few sends, so a list beats hashing on every message.
    pub(super) send_times: Vec<(StepId, Instant)>,
    /// The most recent send not yet answered by a receive.
    pub(super) unanswered_send: Option<Instant>,
    pub(super) keep_open: bool,
    /// Messages sent whose bytes are not all in the socket yet, oldest first: counted, and
    /// their send instant taken, when they are (see `settle_written`).
    pub(super) held: VecDeque<HeldSend>,
    /// The protocol spoken over the WebSocket, with its session state and the
    /// acknowledgements the VU waits for; `None` for plain messages (one pointer per
    /// connection, and the only thing the hot path checks).
    pub(super) protocol: Option<Box<super::protocol::Speaking>>,
}

/// A message sent but not yet all in the socket (its frames wait for a flush).
pub(super) struct HeldSend {
    /// The socket's `taken` offset after its last byte; `u64::MAX` while it is unknown (its
    /// last frame waits above the counted stream), until a later message's end is known.
    pub(super) end: u64,
    pub(super) set: SetId,
    pub(super) step: StepId,
    pub(super) counter: Counter,
    pub(super) payload_bytes: u64,
    /// The pacing lag when it was sent: it is timed from when it was due.
    pub(super) lag: std::time::Duration,
}

/// Settled sends not yet counted: a run of one set and kind.
#[derive(Default)]
struct SettledRun {
    kind: Option<(SetId, Counter)>,
    messages: u64,
    payload_bytes: u64,
}

impl Conn {
    /// Keeps a message just written (or held) until its bytes are in the socket.
    pub(super) fn hold(&mut self, mut send: HeldSend) {
        let offsets = self.socket.write_offsets();
        send.end = if offsets.refused { u64::MAX } else { offsets.taken };
        // Frames leave in order: what waited above the stream before this one is below it now
        // (most sends find the one before them already placed).
        if !offsets.refused && self.held.back().is_some_and(|last| last.end == u64::MAX) {
            for earlier in self.held.iter_mut().rev() {
                if earlier.end != u64::MAX {
                    break;
                }
                earlier.end = send.end;
            }
        }
        self.held.push_back(send);
    }

    /// Counts, as sent now, the held messages whose bytes are all in the socket: a message's
    /// send instant is when its bytes were handed to the kernel. Returns that instant when any
    /// were (the clock is read only then).
    pub(super) fn settle_written(&mut self) -> Option<Instant> {
        let handed = self.socket.write_offsets().handed;
        if self.held.front().is_none_or(|send| send.end > handed) {
            return None;
        }
        let now = clock::now();
        let mut run = SettledRun::default();
        while self.held.front().is_some_and(|send| send.end <= handed) {
            if let Some(send) = self.held.pop_front() {
                self.settle(send, now, &mut run);
            }
        }
        self.count_settled(&run, now);
        Some(now)
    }

    /// Counts every held message as sent at `now`: a flush has just handed them all over.
    pub(super) fn settle_all(&mut self, now: Instant) {
        let mut run = SettledRun::default();
        while let Some(send) = self.held.pop_front() {
            self.settle(send, now, &mut run);
        }
        self.count_settled(&run, now);
    }

    /// Counts a run of settled sends of one step and kind with one recorder lookup.
    fn count_settled(&mut self, run: &SettledRun, now: Instant) {
        let Some((set, counter)) = run.kind else {
            return;
        };
        self.recorder.borrow_mut().add_counts(
            now,
            set,
            [
                (Counter::MessagesSent, run.messages),
                (counter, run.messages),
                (Counter::PayloadBytesSent, run.payload_bytes),
            ],
        );
    }

    fn settle(&mut self, send: HeldSend, now: Instant, run: &mut SettledRun) {
        // Timed from when it was due: a paced send that went out late carries its lateness.
        let due = now.checked_sub(send.lag).unwrap_or(now);
        match self.send_times.iter_mut().find(|(id, _)| *id == send.step) {
            Some(entry) => entry.1 = due,
            None => self.send_times.push((send.step, due)),
        }
        self.unanswered_send = Some(due);
        let compressed = self.socket.take_sent_wire();
        // Sends of one set and kind in a row (a burst of one step's messages) count together.
        if run.kind != Some((send.set, send.counter)) {
            self.count_settled(run, now);
            *run = SettledRun {
                kind: Some((send.set, send.counter)),
                ..SettledRun::default()
            };
        }
        run.messages += 1;
        run.payload_bytes += send.payload_bytes;
        if let Some(compressed) = compressed {
            let mut recorder = self.recorder.borrow_mut();
            recorder.add_counts(
                now,
                send.set,
                [
                    (Counter::UncompressedBytesSent, send.payload_bytes),
                    (Counter::CompressedBytesSent, compressed),
                ],
            );
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let now = clock::now();
        // Messages whose bytes never all reached the socket (the connection failed first) were
        // not sent: they are not counted.
        let mut recorder = self.recorder.borrow_mut();
        for arrived in self.pending.drain(..) {
            arrived.count(&mut recorder, now, SetId::Connection);
            recorder.add(now, SetId::Connection, Counter::MessagesUnread, 1);
        }
        if let Some(speaking) = &mut self.protocol {
            speaking.ended(&mut recorder, now);
        }
        recorder.gauge_add(now, ACTIVE_CONNECTIONS, -1);
        recorder.add(now, SetId::Connection, Counter::ConnectionsClosed, 1);
    }
}

/// What a VU remembers of a connection beyond its life: for `extract` steps and checks.
#[derive(Default)]
pub(super) struct ConnInfo {
    /// The handshake response's headers.
    pub(super) headers: Vec<(String, String)>,
    /// The last data message a step or handler took.
    pub(super) last: Option<(Bytes, FrameKind)>,
    /// What the last protocol event a step or handler took asked to have answered, with its
    /// namespace (a STOMP message's `ack` id and subscription), for `stomp_ack` without an id.
    pub(super) last_reply: Option<(String, String)>,
}

pub(super) fn message_bytes(message: &Message) -> (Bytes, FrameKind) {
    match message {
        Message::Text(text) => (Bytes::from(text.clone()), FrameKind::Text),
        Message::Binary(bytes) => (bytes.clone(), FrameKind::Binary),
        _ => (Bytes::new(), FrameKind::Binary),
    }
}

/// Counts a data message taken (or dropped) in `set`; `compressed`: its payload on the wire,
/// on a connection with permessage-deflate.
pub(super) fn count_message(
    recorder: &mut Recorder,
    now: Instant,
    set: SetId,
    message: &Message,
    compressed: Option<u64>,
) {
    let (counter, length) = match message {
        Message::Text(text) => (Counter::TextMessagesReceived, text.len()),
        Message::Binary(bytes) => (Counter::BinaryMessagesReceived, bytes.len()),
        _ => return,
    };
    recorder.add_counts(
        now,
        set,
        [
            (Counter::MessagesReceived, 1),
            (counter, 1),
            (Counter::PayloadBytesReceived, length as u64),
        ],
    );
    if let Some(compressed) = compressed {
        recorder.add_counts(
            now,
            set,
            [
                (Counter::UncompressedBytesReceived, length as u64),
                (Counter::CompressedBytesReceived, compressed),
            ],
        );
    }
}
