//! The protocol layer: what a connection that speaks a protocol over its WebSocket
//! (`connect: { protocol: socketio }`; STOMP, MQTT and GraphQL in their own files) does with
//! whole messages, between the VU's steps and the socket. A connection without a protocol has no
//! layer and pays nothing for it: the VU checks one `Option` per message read.
//!
//! Each protocol is a variant of [`Layer`] holding its session state (in `protocol/NAME.rs`,
//! its codec below it), and answers five things:
//! - its handshake after the upgrade: the messages to send ([`Layer::handshake_messages`] once
//!   [`Layer::opened`]) and when it is done ([`Layer::ready`], or refused);
//! - what an incoming message holds ([`Layer::decode`]): any number of [`Decoded`] items, since
//!   STOMP frames and MQTT packets may share a message (or span several: a message that only
//!   continues one yields nothing): events for the steps and handlers, acknowledgements of
//!   something the VU sent, heartbeats, answers the layer sends itself, refusals, errors the
//!   server reported, ended sessions and violations;
//! - its timers ([`Layer::next_due`], [`Layer::tick`]): heartbeats or keep-alives it sends on
//!   its own, and a server silent for too long; the VU wakes at the instant whatever step it
//!   waits in;
//! - how its steps become messages (Socket.IO: [`socketio::Session::emit`]);
//! - what a client close says first ([`Layer::goodbye_messages`]).
//!
//! The VU's glue (`agent/src/vu/protocol.rs`) counts, times and routes what the layer decodes;
//! the layer itself does no I/O and reads no clock (instants are handed to it), so it is tested
//! with plain values.

pub mod graphql;
pub mod mqtt;
pub mod socketio;
pub mod stomp;

use std::time::Instant;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;
use wsfleet_metrics::ErrorKind;
use wsfleet_scenario::FrameKind;

/// A connection's protocol session.
// Variants differ in size (an MQTT session holds its CONNECT, packet ids and buffers); a layer
// lives in a connection's boxed `Speaking`, one per connection that speaks a protocol, so
// boxing a variant would only add an indirection per packet.
#[allow(clippy::large_enum_variant)]
pub enum Layer {
    SocketIo(socketio::Session),
    Mqtt(mqtt::layer::Connection),
    GraphQl(graphql::layer::GraphQlLayer),
    Stomp(stomp::Session),
}

/// A protocol event for the steps and handlers: a Socket.IO event, a STOMP MESSAGE, an MQTT
/// PUBLISH, a GraphQL `next`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// What names the event's metric set and what `match: { event }` compares: the Socket.IO
    /// event name, the STOMP destination, the MQTT topic, the GraphQL operation name.
    pub name: String,
    /// Where in the session it came: Socket.IO's namespace (`/` for the main one), a STOMP
    /// subscription id, a GraphQL operation id; empty when the protocol has none.
    pub namespace: String,
    /// Headers or properties, in order (STOMP headers, MQTT user properties); matchers read them.
    pub headers: Vec<(String, String)>,
    /// What matchers, extractions and scripts see: Socket.IO's arguments as a JSON array
    /// (attachments as their placeholders), a STOMP body, an MQTT payload, a GraphQL payload.
    pub body: Bytes,
    /// Whether the body is text or bytes, for `match: { kind }`.
    pub kind: FrameKind,
    /// What the server asked to have answered, in the protocol's own terms: Socket.IO's
    /// acknowledgement id, the STOMP `ack` header of a subscription with client acks, the MQTT
    /// packet id. `None` when it asked for nothing.
    pub reply_to: Option<String>,
    /// Socket.IO's binary attachments, in placeholder order (counted with the event).
    pub attachments: Vec<Bytes>,
    /// The text message that announced a binary event (the message that completed it is its
    /// last attachment); `None` when the event came in one message.
    pub packet: Option<Message>,
    /// The metric set the layer knows the event belongs to: a STOMP MESSAGE's is its
    /// subscription's (exact whatever each VU's destination rendered to). `None`: the set of
    /// the event's name.
    pub set: Option<wsfleet_scenario::StepId>,
    /// An MQTT delivery's send stamp (`mqtt::stamp`): its publisher's wall clock when it
    /// published, Unix microseconds; `None` without a usable one, and for other protocols.
    pub sent_micros: Option<i64>,
}

impl Event {
    /// An event with a text body and nothing else.
    pub fn new(name: impl Into<String>, namespace: impl Into<String>, body: impl Into<Bytes>) -> Event {
        Event {
            name: name.into(),
            namespace: namespace.into(),
            headers: Vec::new(),
            body: body.into(),
            kind: FrameKind::Text,
            reply_to: None,
            attachments: Vec::new(),
            packet: None,
            set: None,
            sent_micros: None,
        }
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// An acknowledgement of something the VU sent, by the id the layer gave it: a Socket.IO ack, a
/// STOMP RECEIPT, an MQTT PUBACK or PUBCOMP, a GraphQL `complete`. The glue times it from the
/// send and records `ack_latency` in the metric set the send named.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub id: u64,
    /// What it carries for `match` and `extract`: Socket.IO's arguments (a JSON array), or
    /// empty.
    pub body: Bytes,
    pub attachments: Vec<Bytes>,
    /// As for [`Event::packet`].
    pub packet: Option<Message>,
}

/// One item of an incoming message, once the layer read it.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// A packet for the layer alone (the open packet, a no-op, a pong).
    Handled,
    /// Part of an event or acknowledgement whose attachments are still arriving: counted with it.
    Partial,
    /// A heartbeat from the server, with the message that answers it when the protocol wants
    /// one (Engine.IO's pong; a STOMP heart-beat needs none).
    Heartbeat(Option<Message>),
    /// A message the layer sends in answer to what came (an MQTT PUBACK for a QoS 1 delivery),
    /// counted in the connection set.
    Reply(Message),
    /// A session the server accepted (Socket.IO: a namespace connected; STOMP: CONNECTED).
    Connected(String),
    /// An event, with the messages that carried it (the packet, then its attachments).
    Event(Box<Event>),
    Ack(Box<Ack>),
    /// The server refused a session (Socket.IO `connect_error`, a STOMP login refused), with
    /// the error kind it counts as and the server's message.
    Refused {
        kind: ErrorKind,
        namespace: String,
        message: String,
    },
    /// The server reported an error on a session it had accepted (a STOMP ERROR frame, an MQTT
    /// reason code), with the error kind it counts as and the server's message.
    Failed {
        kind: ErrorKind,
        message: String,
    },
    /// The server ended a session (Socket.IO disconnect), or the whole connection (`None`).
    Disconnected(Option<String>),
    /// A message that breaks the protocol.
    Violation(String),
}

/// What a layer does when its timer is due ([`Layer::tick`]).
#[derive(Debug, PartialEq)]
pub enum Tick {
    /// A heartbeat or keep-alive to send now (a STOMP heart-beat, an MQTT PINGREQ), counted in
    /// `heartbeats_sent`.
    Heartbeat(Message),
    /// The server has been silent past what the protocol allows (`heartbeat_timeout`), with why.
    Silent(String),
}

impl Layer {
    /// Reads one incoming message: its items, in order, are pushed onto `out`.
    pub fn decode(&mut self, message: &Message, now: Instant, out: &mut Vec<Decoded>) {
        match self {
            Layer::SocketIo(session) => out.push(session.decode_at(message, now)),
            Layer::Mqtt(connection) => connection.decode(message, out),
            Layer::GraphQl(layer) => layer.decode(message, now, out),
            Layer::Stomp(session) => session.decode_into(message, now, out),
        }
    }

    /// When the layer next needs to act ([`Layer::tick`]), if ever: its next heartbeat, or the
    /// instant the server's silence becomes too long.
    pub fn next_due(&self) -> Option<Instant> {
        match self {
            Layer::SocketIo(session) => session.silent_after(),
            Layer::Mqtt(connection) => connection.next_due(),
            Layer::GraphQl(layer) => layer.next_due(),
            Layer::Stomp(session) => session.next_due(),
        }
    }

    /// What the layer does at `now`, once [`Layer::next_due`] has come: pushed onto `out`.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Tick>) {
        match self {
            Layer::SocketIo(session) => {
                if session.silent_after().is_some_and(|at| now >= at) {
                    out.push(Tick::Silent(
                        "no Engine.IO ping within the ping interval and timeout".into(),
                    ));
                }
            }
            Layer::Mqtt(connection) => connection.tick(now, out),
            Layer::GraphQl(layer) => layer.tick(now, out),
            Layer::Stomp(session) => session.tick(now, out),
        }
    }

    /// Whether the server's side of the handshake began (Socket.IO: the open packet came).
    pub fn opened(&self) -> bool {
        match self {
            Layer::SocketIo(session) => session.opened(),
            // The client speaks first: CONNECT goes at once.
            Layer::Mqtt(_) => true,
            // The client speaks first (`connection_init`).
            Layer::GraphQl(_) => true,
            // The client speaks first.
            Layer::Stomp(_) => true,
        }
    }

    /// Whether every session the connection asked for was accepted.
    pub fn ready(&self) -> bool {
        match self {
            Layer::SocketIo(session) => session.ready(),
            Layer::Mqtt(connection) => connection.ready(),
            Layer::GraphQl(layer) => layer.ready(),
            Layer::Stomp(session) => session.ready(),
        }
    }

    /// Whether the server ended every session the connection held: the connection is over.
    pub fn ended(&self) -> bool {
        match self {
            Layer::SocketIo(session) => session.ended(),
            Layer::Mqtt(connection) => connection.ended(),
            Layer::GraphQl(layer) => layer.ended(),
            Layer::Stomp(session) => session.ended(),
        }
    }

    /// The prefix of the metric set names of this protocol's events (`event:` for Socket.IO).
    pub fn set_prefix(&self) -> &'static str {
        match self {
            Layer::SocketIo(_) => wsfleet_scenario::protocol::EVENT_SET_PREFIX,
            Layer::Mqtt(_) => wsfleet_scenario::protocol::mqtt::TOPIC_SET_PREFIX,
            Layer::GraphQl(_) => wsfleet_scenario::protocol::graphql::OPERATION_SET_PREFIX,
            Layer::Stomp(_) => wsfleet_scenario::protocol::stomp::SET_PREFIX,
        }
    }

    /// Messages a client sends once the connection is open, before its steps; `auth` renders
    /// each session's auth payload.
    pub fn handshake_messages(&mut self, now: Instant, auth: &dyn Fn(usize) -> Option<String>) -> Vec<Message> {
        match self {
            Layer::SocketIo(session) => {
                let _ = now;
                session.connect_messages(auth)
            }
            Layer::Mqtt(connection) => connection.handshake(now),
            Layer::GraphQl(layer) => layer.handshake_messages(now),
            Layer::Stomp(session) => {
                let _ = (now, auth);
                vec![session.connect_message()]
            }
        }
    }

    /// Messages a client sends before it closes the connection.
    pub fn goodbye_messages(&mut self) -> Vec<Message> {
        match self {
            Layer::SocketIo(session) => session.disconnect_messages(),
            Layer::Mqtt(connection) => connection.goodbye(),
            Layer::GraphQl(layer) => layer.goodbye_messages(),
            // stomp.js's `deactivate()`: DISCONNECT, unless a step already said it.
            Layer::Stomp(session) => match session.state() {
                stomp::State::Connected => vec![session.disconnect_message(None)],
                _ => Vec::new(),
            },
        }
    }

    pub fn as_socketio(&mut self) -> Option<&mut socketio::Session> {
        match self {
            Layer::SocketIo(session) => Some(session),
            _ => None,
        }
    }

    pub fn as_mqtt(&mut self) -> Option<&mut mqtt::layer::Connection> {
        match self {
            Layer::Mqtt(connection) => Some(connection),
            _ => None,
        }
    }

    pub fn as_graphql(&mut self) -> Option<&mut graphql::layer::GraphQlLayer> {
        match self {
            Layer::GraphQl(layer) => Some(layer),
            _ => None,
        }
    }

    pub fn as_stomp(&mut self) -> Option<&mut stomp::Session> {
        match self {
            Layer::Stomp(session) => Some(session),
            _ => None,
        }
    }
}
