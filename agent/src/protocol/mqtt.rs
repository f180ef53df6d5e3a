//! An MQTT 3.1.1 or 5.0 session over WebSocket (subprotocol `mqtt`): CONNECT and its CONNACK,
//! keep-alive, packet ids, the acknowledgement flows of QoS 1 and 2 in both directions, SUBSCRIBE
//! and UNSUBSCRIBE, the server's DISCONNECT (5.0), and reason codes. Packets are read whole from
//! binary messages that may split or share them (`packet`); each packet the client writes is one
//! binary message, as MQTT.js and paho's WebSocket transports send them.
//!
//! The session answers the server by itself: a QoS 1 delivery gets its PUBACK, a QoS 2 one its
//! PUBREC and, on PUBREL, its PUBCOMP (delivered once even when the server sends it again before
//! releasing it); a PUBREC of the client's own QoS 2 publish gets its PUBREL. Those answers, and
//! publishes held back by the server's receive maximum (5.0) until a slot frees, wait in
//! [`Session::replies`]. No I/O and no clock: the caller asks [`Session::ping_due`] and
//! [`Session::silent_after`] with the instants it reads.

pub mod layer;
pub mod packet;
pub mod reason;
pub mod stamp;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio_tungstenite::tungstenite::Message;
use wsfleet_scenario::protocol::mqtt::topic;

use self::packet::{Ack, Incoming, Outgoing, PacketError, Reader};
pub use self::packet::{Connect, Filter, MessageProperties, Publish, QoS, Version, Will};

/// Where the session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// CONNECT not sent yet.
    Idle,
    /// CONNECT sent, no CONNACK yet.
    Connecting,
    Connected,
    /// The CONNACK refused the connection.
    Refused,
    /// The client sent DISCONNECT.
    Disconnecting,
    /// The server sent DISCONNECT (5.0).
    Ended,
}

/// A reason code with the server's reason string (5.0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub code: u8,
    pub message: Option<String>,
}

impl Reason {
    fn new(code: u8, message: Option<String>) -> Reason {
        Reason { code, message }
    }

    /// The code's MQTT 5.0 name, e.g. `not_authorized`.
    pub fn name(&self) -> &'static str {
        reason::name(self.code)
    }

    /// The error kind it counts as: `mqtt_` and its name.
    pub fn kind(&self) -> String {
        format!("mqtt_{}", self.name())
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{} (0x{:02x})", self.name(), self.code)?;
        if let Some(message) = &self.message {
            write!(formatter, ": {message}")?;
        }
        Ok(())
    }
}

/// What the server said, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// CONNACK accepted the connection.
    Connected { session_present: bool },
    /// CONNACK refused it.
    Refused(Reason),
    /// A message for a subscription (already acknowledged as its QoS asks).
    Message(Publish),
    /// A QoS 1 or 2 publish of the client's was acknowledged (PUBACK, or PUBCOMP), or refused
    /// by a failure reason code in its PUBACK or PUBREC (5.0).
    Published {
        packet_id: u16,
        qos: QoS,
        failure: Option<Reason>,
    },
    /// A SUBACK: per filter, the QoS granted or why not.
    Subscribed {
        packet_id: u16,
        granted: Vec<Result<QoS, Reason>>,
    },
    /// An UNSUBACK, with the filters' failures (5.0).
    Unsubscribed { packet_id: u16, failures: Vec<Reason> },
    /// PINGRESP.
    Pong,
    /// The server ended the connection with a DISCONNECT (5.0).
    Disconnected(Reason),
}

/// Why the client cannot send what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// The error kind it counts as.
    pub kind: &'static str,
    pub message: String,
}

fn send_error(kind: &'static str, message: impl Into<String>) -> SendError {
    SendError {
        kind,
        message: message.into(),
    }
}

/// What a packet id the client sent waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    PubAck,
    PubRec,
    PubComp,
    /// A SUBACK with this many codes.
    SubAck(usize),
    UnsubAck,
}

/// One connection's MQTT session.
pub struct Session {
    version: Version,
    connect: Connect,
    state: State,
    reader: Reader,
    received: VecDeque<Received>,
    /// Packets the session sends by itself (acknowledgements, released publishes).
    replies: Vec<Message>,
    next_packet_id: u16,
    pending: HashMap<u16, Pending>,
    /// QoS 1 and 2 publishes not completed yet, held ones included.
    publishes_in_flight: usize,
    /// Publishes waiting for a slot under the server's receive maximum.
    held: VecDeque<Publish>,
    /// QoS 2 deliveries received and acknowledged with PUBREC, not released yet.
    unreleased: HashSet<u16>,
    keep_alive: Option<Duration>,
    ping_outstanding: bool,
    /// The server's receive maximum (65,535 when it gives none).
    send_quota: usize,
    maximum_packet_size: Option<u32>,
    maximum_qos: QoS,
    assigned_client_id: Option<String>,
}

impl Session {
    pub fn new(version: Version, connect: Connect) -> Session {
        let keep_alive = (connect.keep_alive > 0).then(|| Duration::from_secs(connect.keep_alive.into()));
        Session {
            version,
            connect,
            state: State::Idle,
            reader: Reader::new(),
            received: VecDeque::new(),
            replies: Vec::new(),
            next_packet_id: 1,
            pending: HashMap::new(),
            publishes_in_flight: 0,
            held: VecDeque::new(),
            unreleased: HashSet::new(),
            keep_alive,
            ping_outstanding: false,
            send_quota: usize::from(u16::MAX),
            maximum_packet_size: None,
            maximum_qos: QoS::ExactlyOnce,
            assigned_client_id: None,
        }
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn ready(&self) -> bool {
        self.state == State::Connected
    }

    /// The client id the server assigned (5.0, when the CONNECT left it empty).
    pub fn assigned_client_id(&self) -> Option<&str> {
        self.assigned_client_id.as_deref()
    }

    /// QoS 1 and 2 publishes sent or held, not completed yet.
    pub fn publishes_in_flight(&self) -> usize {
        self.publishes_in_flight
    }

    /// Publishes held back by the server's receive maximum.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The CONNECT packet.
    pub fn connect_message(&mut self) -> Message {
        self.state = State::Connecting;
        let packet = Outgoing::Connect(self.connect.clone());
        // A CONNECT always encodes: its strings were checked when the scenario was.
        self.message(&packet).unwrap_or_else(|_| Message::binary(Vec::new()))
    }

    /// A PUBLISH: QoS 0 goes at once; QoS 1 and 2 get a packet id and go at once unless the
    /// server's receive maximum is reached, then they wait in the replies until a slot frees.
    /// Returns the packet id (0 for QoS 0) and the message, if it goes now.
    pub fn publish(&mut self, mut publish: Publish) -> Result<(u16, Option<Message>), SendError> {
        self.require_connected("publish")?;
        if let Some(problem) = topic::topic_problem(&publish.topic) {
            return Err(send_error(
                "mqtt_topic_name_invalid",
                format!("cannot publish to `{}`: {problem}", publish.topic),
            ));
        }
        if publish.qos > self.maximum_qos {
            return Err(send_error(
                "mqtt_qos_not_supported",
                format!(
                    "the server takes publishes up to QoS {}, not {}",
                    self.maximum_qos as u8, publish.qos as u8
                ),
            ));
        }
        if self.version == Version::V311 && publish.properties != MessageProperties::default() {
            return Err(send_error(
                "mqtt_properties_need_v5",
                "message properties are MQTT 5.0's; this connection speaks 3.1.1",
            ));
        }
        publish.dup = false;
        if publish.qos == QoS::AtMostOnce {
            publish.packet_id = 0;
            let message = self.message(&Outgoing::Publish(publish)).map_err(too_large)?;
            return Ok((0, Some(message)));
        }
        let packet_id = self.packet_id()?;
        publish.packet_id = packet_id;
        // Encoded now so that a packet too large is refused now, not when it is released.
        let message = self.message(&Outgoing::Publish(publish.clone())).map_err(too_large)?;
        let wait = if publish.qos == QoS::AtLeastOnce {
            Pending::PubAck
        } else {
            Pending::PubRec
        };
        self.pending.insert(packet_id, wait);
        self.publishes_in_flight += 1;
        if self.publishes_in_flight > self.send_quota {
            self.held.push_back(publish);
            return Ok((packet_id, None));
        }
        Ok((packet_id, Some(message)))
    }

    /// A SUBSCRIBE of `filters`; returns its packet id and message.
    pub fn subscribe(
        &mut self,
        filters: Vec<Filter>,
        user_properties: Vec<(String, String)>,
    ) -> Result<(u16, Message), SendError> {
        self.require_connected("subscribe")?;
        if filters.is_empty() {
            return Err(send_error("mqtt_protocol_error", "a SUBSCRIBE needs a topic filter"));
        }
        for filter in &filters {
            if let Some(problem) = topic::filter_problem(&filter.filter) {
                return Err(send_error(
                    "mqtt_topic_filter_invalid",
                    format!("cannot subscribe to `{}`: {problem}", filter.filter),
                ));
            }
        }
        let packet_id = self.packet_id()?;
        let count = filters.len();
        let message = self
            .message(&Outgoing::Subscribe {
                packet_id,
                filters,
                user_properties,
            })
            .map_err(too_large)?;
        self.pending.insert(packet_id, Pending::SubAck(count));
        Ok((packet_id, message))
    }

    /// An UNSUBSCRIBE of `filters`; returns its packet id and message.
    pub fn unsubscribe(
        &mut self,
        filters: Vec<String>,
        user_properties: Vec<(String, String)>,
    ) -> Result<(u16, Message), SendError> {
        self.require_connected("unsubscribe")?;
        if filters.is_empty() {
            return Err(send_error("mqtt_protocol_error", "an UNSUBSCRIBE needs a topic filter"));
        }
        let packet_id = self.packet_id()?;
        let message = self
            .message(&Outgoing::Unsubscribe {
                packet_id,
                filters,
                user_properties,
            })
            .map_err(too_large)?;
        self.pending.insert(packet_id, Pending::UnsubAck);
        Ok((packet_id, message))
    }

    /// The DISCONNECT packet; in 5.0, `with_will` asks the server to publish the will anyway.
    pub fn disconnect_message(&mut self, with_will: bool) -> Message {
        self.state = State::Disconnecting;
        let reason = if with_will { 0x04 } else { 0x00 };
        self.message(&Outgoing::Disconnect { reason })
            .unwrap_or_else(|_| Message::binary(Vec::new()))
    }

    /// The keep-alive agreed: the client's, or the server's (5.0) once connected; `None` when 0.
    pub fn keep_alive(&self) -> Option<Duration> {
        self.keep_alive
    }

    /// Whether a PINGREQ is due: connected, nothing sent since `last_sent` for the keep-alive,
    /// and no PINGREQ unanswered.
    pub fn ping_due(&self, last_sent: Instant, now: Instant) -> bool {
        self.state == State::Connected
            && !self.ping_outstanding
            && self
                .keep_alive
                .is_some_and(|every| now.saturating_duration_since(last_sent) >= every)
    }

    /// The PINGREQ packet.
    pub fn ping_message(&mut self) -> Message {
        self.ping_outstanding = true;
        self.message(&Outgoing::PingReq)
            .unwrap_or_else(|_| Message::binary(Vec::new()))
    }

    /// When the server counts as silent: a PINGREQ sent at `ping_sent` unanswered for the
    /// keep-alive (as MQTT.js and paho judge it); `None` when no PINGREQ is outstanding.
    pub fn silent_after(&self, ping_sent: Instant) -> Option<Instant> {
        match (self.ping_outstanding, self.keep_alive) {
            (true, Some(every)) => Some(ping_sent + every),
            _ => None,
        }
    }

    /// Reads one incoming message: what the server said goes to [`Session::next_received`],
    /// the answers the session owes to [`Session::replies`]. A malformed packet, or one that
    /// breaks the session, is an error.
    pub fn feed(&mut self, message: &Message) -> Result<(), PacketError> {
        match message {
            Message::Binary(bytes) => self.reader.push(bytes),
            Message::Text(_) => {
                return Err(PacketError(
                    "a text message: MQTT over WebSocket sends packets in binary messages".into(),
                ))
            }
            _ => return Ok(()),
        }
        while let Some(packet) = self.reader.next_packet(self.version)? {
            self.incoming(packet)?;
        }
        Ok(())
    }

    /// The next thing the server said, in order.
    pub fn next_received(&mut self) -> Option<Received> {
        self.received.pop_front()
    }

    /// Packets the session owes the server (acknowledgements, released publishes), to send now.
    pub fn replies(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.replies)
    }

    fn require_connected(&self, what: &str) -> Result<(), SendError> {
        if self.state == State::Connected {
            return Ok(());
        }
        Err(send_error(
            "mqtt_not_connected",
            format!("cannot {what}: the MQTT session is {:?}", self.state).to_lowercase(),
        ))
    }

    /// The next free packet id (1 to 65,535, in turn, skipping those in use).
    fn packet_id(&mut self) -> Result<u16, SendError> {
        if self.pending.len() >= usize::from(u16::MAX) {
            return Err(send_error(
                "mqtt_packet_ids_exhausted",
                "all 65,535 packet ids are waiting for acknowledgements",
            ));
        }
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = if id == u16::MAX { 1 } else { id + 1 };
            if !self.pending.contains_key(&id) {
                return Ok(id);
            }
        }
    }

    fn message(&self, packet: &Outgoing) -> Result<Message, PacketError> {
        let mut out = BytesMut::new();
        packet::encode(self.version, packet, &mut out)?;
        if let Some(limit) = self.maximum_packet_size {
            if out.len() > limit as usize {
                return Err(PacketError(format!(
                    "a packet of {} bytes, past the server's maximum packet size of {limit}",
                    out.len()
                )));
            }
        }
        Ok(Message::binary(out.freeze()))
    }

    fn reply(&mut self, packet: Outgoing) {
        // Acknowledgements always encode.
        if let Ok(message) = self.message(&packet) {
            self.replies.push(message);
        }
    }

    fn incoming(&mut self, packet: Incoming) -> Result<(), PacketError> {
        if self.state == State::Connecting {
            let Incoming::ConnAck(connack) = packet else {
                return Err(PacketError("a packet before the CONNACK".into()));
            };
            return self.connack(connack);
        }
        if self.state == State::Idle || self.state == State::Refused {
            return Err(PacketError("a packet the client did not ask for".into()));
        }
        let received = match packet {
            Incoming::ConnAck(_) => return Err(PacketError("a second CONNACK".into())),
            Incoming::Publish(publish) => match self.delivery(publish)? {
                Some(publish) => Received::Message(publish),
                None => return Ok(()),
            },
            Incoming::PubAck(ack) => {
                self.settle(ack.packet_id, Pending::PubAck, "PUBACK")?;
                Received::Published {
                    packet_id: ack.packet_id,
                    qos: QoS::AtLeastOnce,
                    failure: failure(&ack),
                }
            }
            Incoming::PubRec(ack) => {
                match self.pending.get(&ack.packet_id) {
                    Some(Pending::PubRec) => {}
                    // A PUBREC again (its PUBREL crossed it): PUBREL again.
                    Some(Pending::PubComp) => {
                        self.reply(Outgoing::PubRel {
                            packet_id: ack.packet_id,
                            reason: 0,
                        });
                        return Ok(());
                    }
                    _ => return Err(unexpected("PUBREC", ack.packet_id)),
                }
                if let Some(failure) = failure(&ack) {
                    // 5.0: a failing PUBREC ends the exchange.
                    self.settle(ack.packet_id, Pending::PubRec, "PUBREC")?;
                    Received::Published {
                        packet_id: ack.packet_id,
                        qos: QoS::ExactlyOnce,
                        failure: Some(failure),
                    }
                } else {
                    self.pending.insert(ack.packet_id, Pending::PubComp);
                    self.reply(Outgoing::PubRel {
                        packet_id: ack.packet_id,
                        reason: 0,
                    });
                    return Ok(());
                }
            }
            Incoming::PubComp(ack) => {
                self.settle(ack.packet_id, Pending::PubComp, "PUBCOMP")?;
                Received::Published {
                    packet_id: ack.packet_id,
                    qos: QoS::ExactlyOnce,
                    failure: failure(&ack),
                }
            }
            Incoming::PubRel(ack) => {
                let known = self.unreleased.remove(&ack.packet_id);
                let reason = if known || self.version == Version::V311 {
                    0
                } else {
                    0x92
                };
                self.reply(Outgoing::PubComp {
                    packet_id: ack.packet_id,
                    reason,
                });
                return Ok(());
            }
            Incoming::SubAck {
                packet_id,
                codes,
                reason_string,
            } => {
                let Some(Pending::SubAck(count)) = self.pending.get(&packet_id).copied() else {
                    return Err(unexpected("SUBACK", packet_id));
                };
                if codes.len() != count {
                    return Err(PacketError(format!(
                        "a SUBACK with {} codes for a SUBSCRIBE of {count} filters",
                        codes.len()
                    )));
                }
                self.pending.remove(&packet_id);
                let granted = codes
                    .into_iter()
                    .map(|code| QoS::from_u8(code).ok_or_else(|| Reason::new(code, reason_string.clone())))
                    .collect();
                Received::Subscribed { packet_id, granted }
            }
            Incoming::UnsubAck {
                packet_id,
                codes,
                reason_string,
            } => {
                if self.pending.get(&packet_id) != Some(&Pending::UnsubAck) {
                    return Err(unexpected("UNSUBACK", packet_id));
                }
                self.pending.remove(&packet_id);
                let failures = codes
                    .into_iter()
                    .filter(|code| *code >= reason::FAILURE)
                    .map(|code| Reason::new(code, reason_string.clone()))
                    .collect();
                Received::Unsubscribed { packet_id, failures }
            }
            Incoming::PingResp => {
                self.ping_outstanding = false;
                Received::Pong
            }
            Incoming::Disconnect { code, reason_string } => {
                self.state = State::Ended;
                Received::Disconnected(Reason::new(code, reason_string))
            }
        };
        self.received.push_back(received);
        Ok(())
    }

    fn connack(&mut self, connack: packet::ConnAck) -> Result<(), PacketError> {
        if connack.code >= reason::FAILURE {
            self.state = State::Refused;
            self.received
                .push_back(Received::Refused(Reason::new(connack.code, connack.reason_string)));
            return Ok(());
        }
        self.state = State::Connected;
        if let Some(seconds) = connack.server_keep_alive {
            self.keep_alive = (seconds > 0).then(|| Duration::from_secs(seconds.into()));
        }
        if let Some(quota) = connack.receive_maximum {
            self.send_quota = usize::from(quota.max(1));
        }
        self.maximum_packet_size = connack.maximum_packet_size;
        if let Some(level) = connack.maximum_qos.and_then(QoS::from_u8) {
            self.maximum_qos = level;
        }
        self.assigned_client_id = connack.assigned_client_id;
        self.received.push_back(Received::Connected {
            session_present: connack.session_present,
        });
        Ok(())
    }

    /// A PUBLISH from the server: acknowledged as its QoS asks; `None` for a QoS 2 message
    /// received before and not released yet (the server sent it again).
    fn delivery(&mut self, publish: Publish) -> Result<Option<Publish>, PacketError> {
        match publish.qos {
            QoS::AtMostOnce => Ok(Some(publish)),
            QoS::AtLeastOnce => {
                self.reply(Outgoing::PubAck {
                    packet_id: publish.packet_id,
                    reason: 0,
                });
                Ok(Some(publish))
            }
            QoS::ExactlyOnce => {
                let first = self.unreleased.insert(publish.packet_id);
                self.reply(Outgoing::PubRec {
                    packet_id: publish.packet_id,
                    reason: 0,
                });
                Ok(first.then_some(publish))
            }
        }
    }

    /// Ends the wait of `packet_id` for `expected`, and frees a slot for a held publish.
    fn settle(&mut self, packet_id: u16, expected: Pending, name: &str) -> Result<(), PacketError> {
        if self.pending.get(&packet_id) != Some(&expected) {
            return Err(unexpected(name, packet_id));
        }
        self.pending.remove(&packet_id);
        self.publishes_in_flight -= 1;
        if self.publishes_in_flight >= self.send_quota {
            if let Some(publish) = self.held.pop_front() {
                self.reply(Outgoing::Publish(publish));
            }
        }
        Ok(())
    }
}

fn failure(ack: &Ack) -> Option<Reason> {
    (ack.code >= reason::FAILURE).then(|| Reason::new(ack.code, ack.reason_string.clone()))
}

fn unexpected(name: &str, packet_id: u16) -> PacketError {
    PacketError(format!("a {name} for packet id {packet_id}, which waits for none"))
}

fn too_large(error: PacketError) -> SendError {
    send_error("mqtt_packet_too_large", error.0)
}

#[cfg(test)]
#[path = "mqtt/session_tests.rs"]
mod tests;
