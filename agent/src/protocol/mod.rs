//! The protocol layer: what a connection that speaks a protocol over its WebSocket
//! (`connect: { protocol: socketio }`) does with whole messages, between the VU's steps and the
//! socket. A connection without a protocol has no layer and pays nothing for it: the VU checks
//! one `Option` per message read.
//!
//! Each protocol is a variant of [`Layer`] holding its session state, and answers four things:
//! - its handshake after the upgrade: the packets to send ([`Layer::handshake_messages`] once
//!   [`Layer::opened`]) and when it is done ([`Layer::ready`], or refused);
//! - what an incoming message is ([`Layer::decode`]): zero or one [`Decoded`] item: an event for
//!   the steps and handlers, an acknowledgement of something the VU sent, a heartbeat the layer
//!   answers itself, a refusal, a session the server ended, or a violation;
//! - how a protocol step becomes messages (Socket.IO: [`socketio::Session::emit`]);
//! - what a client close says first ([`Layer::goodbye_messages`]).
//!
//! The VU's glue (`agent/src/vu/protocol.rs`) counts, times and routes what the layer decodes;
//! the layer itself does no I/O and reads no clock, so it is tested with plain values.

pub mod graphql;
pub mod mqtt;
pub mod socketio;
pub mod stomp;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;

/// A connection's protocol session.
pub enum Layer {
    SocketIo(socketio::Session),
}

/// A protocol event for the steps and handlers.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    /// Socket.IO's namespace (`/` for the main one).
    pub namespace: String,
    /// The arguments, a JSON array (attachments stay as their placeholders).
    pub args: String,
    /// The acknowledgement id the server asked for, if any.
    pub ack_id: Option<u64>,
    /// Binary attachments, in placeholder order.
    pub attachments: Vec<Bytes>,
    /// The text message that announced a binary event (the message that completed it is its
    /// last attachment); `None` when the event came in one message.
    pub packet: Option<Message>,
}

/// An acknowledgement of an event the VU emitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub namespace: String,
    pub id: u64,
    /// The acknowledgement's arguments, a JSON array.
    pub args: String,
    pub attachments: Vec<Bytes>,
    /// As for [`Event::packet`].
    pub packet: Option<Message>,
}

/// What one incoming message is, once the layer read it.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// A packet for the layer alone (the open packet, a no-op, a pong).
    Handled,
    /// Part of an event or acknowledgement whose attachments are still arriving: counted with it.
    Partial,
    /// A heartbeat: this message answers it.
    Heartbeat(Message),
    /// A session the server accepted (Socket.IO: a namespace connected).
    Connected(String),
    /// An event, with the messages that carried it (the packet, then its attachments).
    Event(Box<Event>),
    Ack(Box<Ack>),
    /// The server refused a session (Socket.IO `connect_error`), with its message.
    Refused {
        namespace: String,
        message: String,
    },
    /// The server ended a session (Socket.IO disconnect), or the whole connection (`None`).
    Disconnected(Option<String>),
    /// A message that breaks the protocol.
    Violation(String),
}

impl Layer {
    /// Reads one incoming message.
    pub fn decode(&mut self, message: &Message) -> Decoded {
        match self {
            Layer::SocketIo(session) => session.decode(message),
        }
    }

    /// Whether the server's side of the handshake began (Socket.IO: the open packet came).
    pub fn opened(&self) -> bool {
        match self {
            Layer::SocketIo(session) => session.opened(),
        }
    }

    /// Whether every session the connection asked for was accepted.
    pub fn ready(&self) -> bool {
        match self {
            Layer::SocketIo(session) => session.ready(),
        }
    }

    /// Whether the server ended every session the connection held: the connection is over.
    pub fn ended(&self) -> bool {
        match self {
            Layer::SocketIo(session) => session.ended(),
        }
    }

    /// Messages a client sends once the connection is open, before its steps; `auth` renders
    /// each session's auth payload.
    pub fn handshake_messages(&mut self, auth: &dyn Fn(usize) -> Option<String>) -> Vec<Message> {
        match self {
            Layer::SocketIo(session) => session.connect_messages(auth),
        }
    }

    /// Messages a client sends before it closes the connection.
    pub fn goodbye_messages(&mut self) -> Vec<Message> {
        match self {
            Layer::SocketIo(session) => session.disconnect_messages(),
        }
    }

    pub fn as_socketio(&mut self) -> Option<&mut socketio::Session> {
        match self {
            Layer::SocketIo(session) => Some(session),
        }
    }
}
