//! The STOMP session as a protocol layer: each message's frames as `Decoded` items (MESSAGE as
//! an event keyed by its destination, RECEIPT as an acknowledgement by its numeric id, ERROR as
//! a refused login before CONNECTED and a `stomp_error` after it, heart-beats), the heart-beat
//! timers (the client's heart-beats on a fixed period, as stomp.js sends them; a server silent
//! for twice its agreed period), and the frames of the STOMP steps, with the subscriptions (each
//! with the metric set its deliveries count in) and the transactions they open.

use std::time::Instant;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;
use wsfleet_metrics::ErrorKind;
pub use wsfleet_scenario::protocol::stomp::AckMode;
use wsfleet_scenario::FrameKind;

use super::frame::Frame;
use super::{heartbeat_message, to_message, Received, Session, State};
use crate::protocol::{Ack, Decoded, Event, Tick};
use wsfleet_scenario::StepId;

/// The prefix of the receipt ids this client asks for (`receipt:r-7`).
const RECEIPT_PREFIX: &str = "r-";

/// The prefix of the transaction ids `stomp_begin` takes by default (`transaction:tx-0`).
const TRANSACTION_PREFIX: &str = "tx-";

/// A subscription this session made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: String,
    /// As rendered.
    pub destination: String,
    pub ack: AckMode,
    /// The metric set its deliveries count in; `None`: the set of each delivery's destination.
    pub set: Option<StepId>,
}

impl Session {
    /// Reads one message, arrived at `now`: its frames and heart-beats as items, in order. A
    /// message that only continues a frame yields none.
    pub fn decode_into(&mut self, message: &Message, now: Instant, out: &mut Vec<Decoded>) {
        self.last_received = Some(now);
        if let Err(why) = self.feed(message) {
            out.push(Decoded::Violation(why));
            return;
        }
        // An end of line right after a frame is the frame's padding (RabbitMQ ends frames
        // `\0\n`), not a heart-beat: those come alone or between frames' silences.
        let mut after_frame = false;
        while let Some(received) = self.next_received() {
            let heartbeat = received == Received::Heartbeat;
            if heartbeat && after_frame {
                continue;
            }
            after_frame = !heartbeat;
            out.push(self.item(received, now));
        }
    }

    fn item(&mut self, received: Received, now: Instant) -> Decoded {
        match received {
            Received::Connected => {
                self.accepted = true;
                self.last_received = Some(now);
                self.next_beat = self.send_every().map(|every| now + every);
                Decoded::Connected(self.version().unwrap_or("1.0").to_owned())
            }
            Received::Heartbeat => Decoded::Heartbeat(None),
            Received::Receipt(id) => match id.strip_prefix(RECEIPT_PREFIX).and_then(|n| n.parse().ok()) {
                Some(id) => Decoded::Ack(Box::new(Ack {
                    id,
                    body: Bytes::new(),
                    attachments: Vec::new(),
                    packet: None,
                })),
                None => Decoded::Violation(format!("a RECEIPT for `{id}`, which this client never asked for")),
            },
            Received::Error(why, _) => {
                if self.accepted {
                    Decoded::Failed {
                        kind: ErrorKind::StompError,
                        message: why,
                    }
                } else {
                    Decoded::Refused {
                        kind: ErrorKind::ConnectError,
                        namespace: String::new(),
                        message: why,
                    }
                }
            }
            Received::Message(frame) => self.message_event(frame),
        }
    }

    fn message_event(&self, frame: Frame) -> Decoded {
        let destination = frame.get("destination").unwrap_or_default().to_owned();
        let subscription = frame.get("subscription").unwrap_or_default().to_owned();
        let known = self.subscriptions.iter().find(|known| known.id == subscription);
        let mode = known.map_or(AckMode::Auto, |known| known.ack);
        let set = known.and_then(|known| known.set);
        // STOMP 1.2 acknowledges by the `ack` header, 1.1 by `message-id`.
        let reply_to = match mode {
            AckMode::Auto => None,
            _ => frame.get("ack").or_else(|| frame.get("message-id")).map(str::to_owned),
        };
        let kind = if std::str::from_utf8(&frame.body).is_ok() {
            FrameKind::Text
        } else {
            FrameKind::Binary
        };
        Decoded::Event(Box::new(Event {
            name: destination,
            namespace: subscription,
            headers: frame.headers,
            body: frame.body,
            kind,
            reply_to,
            attachments: Vec::new(),
            packet: None,
            set,
            sent_micros: None,
        }))
    }

    /// When the session next acts: its next heart-beat, or when the server's silence becomes
    /// too long; nothing before CONNECTED or after the session ended.
    pub fn next_due(&self) -> Option<Instant> {
        if self.state != State::Connected {
            return None;
        }
        let silent = self.last_received.and_then(|last| self.silent_after(last));
        match (self.next_beat, silent) {
            (Some(beat), Some(silent)) => Some(beat.min(silent)),
            (beat, silent) => beat.or(silent),
        }
    }

    /// What is due at `now`: a heart-beat (the next one a period later), or the server's silence.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Tick>) {
        if self.state != State::Connected {
            return;
        }
        if let Some(last) = self.last_received {
            if self.server_silent(last, now) {
                out.push(Tick::Silent(format!(
                    "no frame or heart-beat from the server for {} ms",
                    now.saturating_duration_since(last).as_millis()
                )));
                return;
            }
        }
        if let (Some(beat), Some(every)) = (self.next_beat, self.send_every()) {
            if beat <= now {
                out.push(Tick::Heartbeat(heartbeat_message()));
                // On a fixed period; a VU that woke late does not send a burst.
                let mut next = beat + every;
                if next <= now {
                    next = now + every;
                }
                self.next_beat = Some(next);
            }
        }
    }

    /// Whether the server ended the session (an ERROR frame).
    pub fn ended(&self) -> bool {
        self.state == State::Failed
    }

    /// A receipt id: the number the layer's acknowledgement carries, and the header's value.
    pub fn next_receipt(&mut self) -> (u64, String) {
        let id = self.next_receipt;
        self.next_receipt += 1;
        (id, format!("{RECEIPT_PREFIX}{id}"))
    }

    /// The SUBSCRIBE frame; `id` `None` takes the next `sub-N`. Its deliveries count in `set`
    /// (`None`: in their destination's).
    pub fn subscribe(
        &mut self,
        destination: &str,
        id: Option<String>,
        ack: AckMode,
        set: Option<StepId>,
        headers: &[(String, String)],
        receipt: Option<&str>,
    ) -> Message {
        let id = id.unwrap_or_else(|| self.subscription_id());
        let mut frame = Frame::new("SUBSCRIBE")
            .header("destination", destination)
            .header("id", &id)
            .header("ack", ack.header());
        for (name, value) in headers {
            frame = frame.header(name, value);
        }
        if let Some(receipt) = receipt {
            frame = frame.header("receipt", receipt);
        }
        self.subscriptions.retain(|known| known.id != id);
        self.subscriptions.push(Subscription {
            id,
            destination: destination.to_owned(),
            ack,
            set,
        });
        to_message(&frame)
    }

    /// The id of the latest subscription to `destination`.
    pub fn subscription_to(&self, destination: &str) -> Option<&str> {
        self.subscriptions
            .iter()
            .rev()
            .find(|known| known.destination == destination)
            .map(|known| known.id.as_str())
    }

    /// The destination of a subscription.
    pub fn destination_of(&self, id: &str) -> Option<&str> {
        self.subscriptions
            .iter()
            .find(|known| known.id == id)
            .map(|known| known.destination.as_str())
    }

    /// The UNSUBSCRIBE frame of subscription `id`.
    pub fn unsubscribe(&mut self, id: &str, headers: &[(String, String)], receipt: Option<&str>) -> Message {
        let mut frame = Frame::new("UNSUBSCRIBE").header("id", id);
        for (name, value) in headers {
            frame = frame.header(name, value);
        }
        if let Some(receipt) = receipt {
            frame = frame.header("receipt", receipt);
        }
        self.subscriptions.retain(|known| known.id != id);
        to_message(&frame)
    }

    /// The SEND frame, inside `transaction` when given.
    pub fn send(
        &self,
        destination: &str,
        headers: &[(String, String)],
        body: Bytes,
        transaction: Option<&str>,
        receipt: Option<&str>,
    ) -> Message {
        let mut frame = Frame::new("SEND").header("destination", destination);
        for (name, value) in headers {
            frame = frame.header(name, value);
        }
        if let Some(transaction) = transaction {
            frame = frame.header("transaction", transaction);
        }
        if let Some(receipt) = receipt {
            frame = frame.header("receipt", receipt);
        }
        to_message(&frame.with_body(body))
    }

    /// The ACK (or NACK) frame of a message's `ack` id (its `message-id` and subscription in
    /// STOMP 1.1).
    pub fn ack(
        &self,
        nack: bool,
        id: &str,
        subscription: Option<&str>,
        transaction: Option<&str>,
        receipt: Option<&str>,
    ) -> Message {
        let command = if nack { "NACK" } else { "ACK" };
        let mut frame = if self.version() == Some("1.1") {
            let frame = Frame::new(command).header("message-id", id);
            match subscription {
                Some(subscription) => frame.header("subscription", subscription),
                None => frame,
            }
        } else {
            Frame::new(command).header("id", id)
        };
        if let Some(transaction) = transaction {
            frame = frame.header("transaction", transaction);
        }
        if let Some(receipt) = receipt {
            frame = frame.header("receipt", receipt);
        }
        to_message(&frame)
    }

    /// The BEGIN frame of transaction `id` (`None`: the next `tx-N` not already open, as one
    /// the scenario named may be), which becomes the connection's open transaction; returns the
    /// id with the frame.
    pub fn begin(&mut self, id: Option<String>, receipt: Option<&str>) -> (String, Message) {
        let id = id.unwrap_or_else(|| loop {
            let number = self.next_transaction;
            self.next_transaction += 1;
            let id = format!("{TRANSACTION_PREFIX}{number}");
            if !self.transactions.contains(&id) {
                break id;
            }
        });
        let mut frame = Frame::new("BEGIN").header("transaction", &id);
        if let Some(receipt) = receipt {
            frame = frame.header("receipt", receipt);
        }
        self.transactions.retain(|open| *open != id);
        self.transactions.push(id.clone());
        (id, to_message(&frame))
    }

    /// The connection's open transaction: the latest one begun and not yet ended.
    pub fn open_transaction(&self) -> Option<&str> {
        self.transactions.last().map(String::as_str)
    }

    /// The COMMIT (or ABORT, without `commit`) frame of transaction `id`, which is no longer
    /// open.
    pub fn end_transaction(&mut self, commit: bool, id: &str, receipt: Option<&str>) -> Message {
        let mut frame = Frame::new(if commit { "COMMIT" } else { "ABORT" }).header("transaction", id);
        if let Some(receipt) = receipt {
            frame = frame.header("receipt", receipt);
        }
        self.transactions.retain(|open| open != id);
        to_message(&frame)
    }

    /// The ABORT frames of every open transaction, oldest first; none is open after them.
    pub fn abort_all(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.transactions)
            .iter()
            .map(|id| to_message(&Frame::new("ABORT").header("transaction", id)))
            .collect()
    }
}
