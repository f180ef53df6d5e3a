//! The MQTT session as a protocol layer: what each packet becomes for the VU (events, the
//! acknowledgements of publishes and subscriptions keyed by packet id, keep-alive answers,
//! refusals and failure reason codes; a delivery's send stamp read, and a payload stamp cut off
//! before anything sees the payload), and the keep-alive timer (PINGREQ after a keep-alive with
//! nothing sent; silence when a PINGREQ goes unanswered for a keep-alive).

use std::time::Instant;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;
use wsfleet_metrics::ErrorKind;
use wsfleet_scenario::protocol::mqtt::DeliveryStamp;
use wsfleet_scenario::FrameKind;

use super::{stamp, Received, Session, State};
use crate::protocol::{Ack, Decoded, Event, Tick};

/// An MQTT session with the instants its keep-alive needs.
pub struct Connection {
    pub session: Session,
    /// Where its publishes carry their send stamp.
    pub delivery_stamp: DeliveryStamp,
    /// When the client last sent a packet (the keep-alive counts from it).
    last_sent: Option<Instant>,
    /// When the PINGREQ now unanswered went.
    ping_sent: Option<Instant>,
}

impl Connection {
    pub fn new(session: Session, delivery_stamp: DeliveryStamp) -> Connection {
        Connection {
            session,
            delivery_stamp,
            last_sent: None,
            ping_sent: None,
        }
    }

    /// Notes that the client sent a packet at `now` (a publish, a subscribe).
    pub fn sent_at(&mut self, now: Instant) {
        self.last_sent = Some(now);
    }

    /// The CONNECT packet.
    pub fn handshake(&mut self, now: Instant) -> Vec<Message> {
        self.last_sent = Some(now);
        vec![self.session.connect_message()]
    }

    pub fn ready(&self) -> bool {
        self.session.ready()
    }

    /// The server refused the session or ended it.
    pub fn ended(&self) -> bool {
        matches!(self.session.state(), State::Refused | State::Ended)
    }

    /// A DISCONNECT before a client close, when connected.
    pub fn goodbye(&mut self) -> Vec<Message> {
        if self.session.state() != State::Connected {
            return Vec::new();
        }
        vec![self.session.disconnect_message(false)]
    }

    /// The keep-alive's next instant: the silence deadline of an unanswered PINGREQ, or when the
    /// next PINGREQ is due.
    pub fn next_due(&self) -> Option<Instant> {
        if let Some(sent) = self.ping_sent {
            return self.session.silent_after(sent);
        }
        if self.session.state() != State::Connected {
            return None;
        }
        Some(self.last_sent? + self.session.keep_alive()?)
    }

    pub fn tick(&mut self, now: Instant, out: &mut Vec<Tick>) {
        if let Some(silent) = self.ping_sent.and_then(|sent| self.session.silent_after(sent)) {
            if now >= silent {
                out.push(Tick::Silent("no PINGRESP within the keep-alive".into()));
            }
            return;
        }
        if self.last_sent.is_some_and(|last| self.session.ping_due(last, now)) {
            out.push(Tick::Heartbeat(self.session.ping_message()));
            self.last_sent = Some(now);
            self.ping_sent = Some(now);
        }
    }

    /// Reads one message: every packet it completes becomes an item, followed by the answers
    /// the session owes.
    pub fn decode(&mut self, message: &Message, out: &mut Vec<Decoded>) {
        let fed = self.session.feed(message);
        while let Some(received) = self.session.next_received() {
            out.push(self.item(received));
        }
        for reply in self.session.replies() {
            out.push(Decoded::Reply(reply));
        }
        if let Err(error) = fed {
            out.push(Decoded::Violation(error.0));
        }
    }

    fn item(&mut self, received: Received) -> Decoded {
        match received {
            Received::Connected { .. } => Decoded::Connected(String::new()),
            Received::Refused(reason) => Decoded::Refused {
                kind: ErrorKind::ConnectError,
                namespace: String::new(),
                message: format!("CONNACK refused: {reason}"),
            },
            Received::Message(mut publish) => {
                // Whatever this connection's own option: a subscriber times what it is sent.
                let sent_micros = match stamp::read(&mut publish.payload, &publish.properties.user_properties) {
                    stamp::Read::Sent(sent) => Some(sent),
                    stamp::Read::Absent => None,
                    stamp::Read::Malformed => {
                        tracing::debug!(topic = %publish.topic, "a delivery's send stamp is malformed: not timed");
                        None
                    }
                };
                let kind = if std::str::from_utf8(&publish.payload).is_ok() {
                    FrameKind::Text
                } else {
                    FrameKind::Binary
                };
                Decoded::Event(Box::new(Event {
                    name: publish.topic,
                    namespace: String::new(),
                    headers: publish.properties.user_properties,
                    body: publish.payload,
                    kind,
                    reply_to: (publish.packet_id != 0).then(|| publish.packet_id.to_string()),
                    attachments: Vec::new(),
                    packet: None,
                    set: None,
                    sent_micros,
                }))
            }
            Received::Published {
                packet_id,
                failure: None,
                ..
            } => ack(packet_id, Bytes::new()),
            Received::Published {
                packet_id,
                failure: Some(reason),
                ..
            } => failed(format!("the publish with packet id {packet_id} failed: {reason}")),
            Received::Subscribed { packet_id, granted } => {
                if let Some(reason) = granted.iter().find_map(|granted| granted.as_ref().err()) {
                    return failed(format!("SUBACK refused a filter: {reason}"));
                }
                let levels: Vec<String> = granted
                    .iter()
                    .filter_map(|granted| granted.as_ref().ok())
                    .map(|qos| (*qos as u8).to_string())
                    .collect();
                ack(packet_id, Bytes::from(format!("[{}]", levels.join(","))))
            }
            Received::Unsubscribed { packet_id, failures } => match failures.first() {
                Some(reason) => failed(format!("UNSUBACK refused a filter: {reason}")),
                None => ack(packet_id, Bytes::new()),
            },
            Received::Pong => {
                self.ping_sent = None;
                Decoded::Heartbeat(None)
            }
            Received::Disconnected(reason) if reason.code < super::reason::FAILURE => Decoded::Disconnected(None),
            Received::Disconnected(reason) => failed(format!("the server disconnected: {reason}")),
        }
    }
}

fn ack(packet_id: u16, body: Bytes) -> Decoded {
    Decoded::Ack(Box::new(Ack {
        id: u64::from(packet_id),
        body,
        attachments: Vec::new(),
        packet: None,
    }))
}

fn failed(message: String) -> Decoded {
    Decoded::Failed {
        kind: ErrorKind::MqttFailure,
        message,
    }
}
