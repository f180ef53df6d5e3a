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
    pub(super) message: Message,
    pub(super) at: Instant,
    /// Read just now by the step that takes it (not from the queue).
    pub(super) fresh: bool,
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
}

impl Drop for Conn {
    fn drop(&mut self) {
        let now = clock::now();
        let mut recorder = self.recorder.borrow_mut();
        for arrived in self.pending.drain(..) {
            count_message(&mut recorder, now, SetId::Connection, &arrived.message);
            recorder.add(now, SetId::Connection, Counter::MessagesUnread, 1);
        }
        recorder.gauge_add(ACTIVE_CONNECTIONS, -1);
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
}

pub(super) fn message_bytes(message: &Message) -> (Bytes, FrameKind) {
    match message {
        Message::Text(text) => (Bytes::from(text.clone()), FrameKind::Text),
        Message::Binary(bytes) => (bytes.clone(), FrameKind::Binary),
        _ => (Bytes::new(), FrameKind::Binary),
    }
}

/// Counts a data message taken (or dropped) in `set`.
pub(super) fn count_message(recorder: &mut Recorder, now: Instant, set: SetId, message: &Message) {
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
}
