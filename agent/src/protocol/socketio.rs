//! A Socket.IO v4 session over Engine.IO v4's WebSocket transport: the open packet, the
//! namespaces asked for and what the server answered, acknowledgement ids, and binary packets
//! whose attachments are still arriving. The codec is in `packet`.

pub mod packet;

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;

use wsfleet_metrics::ErrorKind;

use self::packet::{EnginePacket, Kind, OpenSettings};
use super::{Ack, Decoded, Event};

/// Where a namespace stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceState {
    /// Not asked for yet (the open packet has not come).
    Idle,
    /// Asked for, no answer yet.
    Pending,
    Connected,
    Refused,
    /// The server or the client ended it.
    Disconnected,
}

/// A binary event or acknowledgement waiting for its attachments.
struct Partial {
    /// The text message of the packet.
    packet: Message,
    kind: Kind,
    namespace: String,
    id: Option<u64>,
    data: String,
    expected: usize,
    attachments: Vec<Bytes>,
}

/// One connection's Socket.IO session.
pub struct Session {
    settings: Option<OpenSettings>,
    /// When the server was last heard from (socket.io-client's ping timeout runs from there).
    last_heard: Option<Instant>,
    namespaces: Vec<(String, NamespaceState)>,
    next_id: u64,
    partial: Option<Partial>,
}

/// An emit on a namespace this session has not connected.
#[derive(Debug, PartialEq, Eq)]
pub struct NotConnected;

impl Session {
    /// A session that will connect `namespaces`, in order, once the server's open packet came.
    pub fn new(namespaces: impl IntoIterator<Item = String>) -> Session {
        Session {
            settings: None,
            last_heard: None,
            namespaces: namespaces
                .into_iter()
                .map(|name| (name, NamespaceState::Idle))
                .collect(),
            next_id: 0,
            partial: None,
        }
    }

    pub fn opened(&self) -> bool {
        self.settings.is_some()
    }

    /// The server's open packet, once it came.
    pub fn settings(&self) -> Option<&OpenSettings> {
        self.settings.as_ref()
    }

    /// Every namespace asked for was accepted.
    pub fn ready(&self) -> bool {
        self.opened()
            && self
                .namespaces
                .iter()
                .all(|(_, state)| *state == NamespaceState::Connected)
    }

    /// Whether no namespace is connected or being connected any more (the server disconnected
    /// them all, or closed the session).
    pub fn ended(&self) -> bool {
        self.namespaces
            .iter()
            .all(|(_, state)| matches!(state, NamespaceState::Disconnected | NamespaceState::Refused))
    }

    /// The first namespace the server refused.
    pub fn refused(&self) -> Option<&str> {
        self.namespaces
            .iter()
            .find(|(_, state)| *state == NamespaceState::Refused)
            .map(|(name, _)| name.as_str())
    }

    pub fn state(&self, namespace: &str) -> Option<NamespaceState> {
        self.namespaces
            .iter()
            .find(|(name, _)| name == namespace)
            .map(|(_, state)| *state)
    }

    fn set_state(&mut self, namespace: &str, state: NamespaceState) -> bool {
        match self.namespaces.iter_mut().find(|(name, _)| name == namespace) {
            Some(entry) => {
                entry.1 = state;
                true
            }
            None => false,
        }
    }

    /// The connect packets of every namespace, which are then pending; `auth` renders the
    /// auth payload of the namespace at that index.
    pub fn connect_messages(&mut self, auth: &dyn Fn(usize) -> Option<String>) -> Vec<Message> {
        let mut messages = Vec::with_capacity(self.namespaces.len());
        for (index, (name, state)) in self.namespaces.iter_mut().enumerate() {
            *state = NamespaceState::Pending;
            messages.push(Message::text(packet::connect(name, auth(index).as_deref())));
        }
        messages
    }

    /// The disconnect packets of every connected namespace (socket.io-client's `disconnect()`).
    pub fn disconnect_messages(&mut self) -> Vec<Message> {
        let mut messages = Vec::new();
        for (name, state) in &mut self.namespaces {
            if *state == NamespaceState::Connected {
                *state = NamespaceState::Disconnected;
                messages.push(Message::text(packet::disconnect(name)));
            }
        }
        messages
    }

    /// The messages of an event: the packet, then one binary message per attachment. `args`
    /// is the arguments' JSON, each preceded by a comma. With `ack`, the packet asks for an
    /// acknowledgement under the id returned.
    pub fn emit(
        &mut self,
        namespace: &str,
        event: &str,
        args: &str,
        attachments: &[Bytes],
        ack: bool,
    ) -> Result<(Vec<Message>, Option<u64>), NotConnected> {
        if self.state(namespace) != Some(NamespaceState::Connected) {
            return Err(NotConnected);
        }
        let id = ack.then(|| {
            let id = self.next_id;
            self.next_id += 1;
            id
        });
        let mut text = packet::event_start(namespace, event, attachments.len(), id);
        text.push_str(args);
        text.push(']');
        let mut messages = Vec::with_capacity(1 + attachments.len());
        messages.push(Message::text(text));
        messages.extend(attachments.iter().cloned().map(Message::Binary));
        Ok((messages, id))
    }

    /// When the server counts as gone, as socket.io-client has it: no message for its ping
    /// interval plus its ping timeout since the last one (the server pings every interval).
    pub fn silent_after(&self) -> Option<Instant> {
        let settings = self.settings.as_ref()?;
        let allowed = Duration::from_millis(settings.ping_interval.saturating_add(settings.ping_timeout));
        self.last_heard?.checked_add(allowed)
    }

    /// Reads one incoming data message, arrived at `now`.
    pub fn decode_at(&mut self, message: &Message, now: Instant) -> Decoded {
        self.last_heard = Some(now);
        self.decode(message)
    }

    /// Reads one incoming data message.
    pub fn decode(&mut self, message: &Message) -> Decoded {
        match message {
            Message::Binary(bytes) => self.attachment(bytes.clone()),
            Message::Text(text) => {
                if let Some(partial) = self.partial.take() {
                    return Decoded::Violation(format!(
                        "a text message came while {} of a binary packet's {} attachments were still due",
                        partial.expected - partial.attachments.len(),
                        partial.expected
                    ));
                }
                self.text(text.as_str(), message)
            }
            _ => Decoded::Handled,
        }
    }

    fn attachment(&mut self, bytes: Bytes) -> Decoded {
        let Some(partial) = self.partial.as_mut() else {
            return Decoded::Violation("a binary message that no binary packet announced".into());
        };
        partial.attachments.push(bytes);
        if partial.attachments.len() < partial.expected {
            return Decoded::Partial;
        }
        match self.partial.take() {
            Some(partial) => finish(partial),
            None => Decoded::Partial,
        }
    }

    fn text(&mut self, text: &str, message: &Message) -> Decoded {
        let engine = match packet::engine_packet(text) {
            Ok(engine) => engine,
            Err(error) => return Decoded::Violation(error.0),
        };
        match engine {
            EnginePacket::Open(data) => {
                if self.settings.is_some() {
                    return Decoded::Violation("a second open packet".into());
                }
                match packet::open_settings(data) {
                    Ok(settings) => {
                        self.settings = Some(settings);
                        Decoded::Handled
                    }
                    Err(error) => Decoded::Violation(error.0),
                }
            }
            EnginePacket::Close => {
                for (_, state) in &mut self.namespaces {
                    *state = NamespaceState::Disconnected;
                }
                Decoded::Disconnected(None)
            }
            EnginePacket::Ping(data) => Decoded::Heartbeat(Some(Message::text(packet::pong(data)))),
            EnginePacket::Pong(_) | EnginePacket::Noop | EnginePacket::Upgrade => Decoded::Handled,
            EnginePacket::Message(data) => self.socket_packet(data, message),
        }
    }

    fn socket_packet(&mut self, data: &str, message: &Message) -> Decoded {
        let read = match packet::packet(data) {
            Ok(read) => read,
            Err(error) => return Decoded::Violation(error.0),
        };
        match read.kind {
            Kind::Connect => {
                if self.set_state(read.namespace, NamespaceState::Connected) {
                    Decoded::Connected(read.namespace.to_owned())
                } else {
                    Decoded::Violation(format!("a connect for namespace `{}`, never asked for", read.namespace))
                }
            }
            Kind::ConnectError => {
                self.set_state(read.namespace, NamespaceState::Refused);
                Decoded::Refused {
                    kind: ErrorKind::ConnectError,
                    namespace: read.namespace.to_owned(),
                    message: packet::connect_error_message(read.data),
                }
            }
            Kind::Disconnect => {
                self.set_state(read.namespace, NamespaceState::Disconnected);
                Decoded::Disconnected(Some(read.namespace.to_owned()))
            }
            Kind::Event | Kind::Ack | Kind::BinaryEvent | Kind::BinaryAck => {
                let partial = Partial {
                    packet: message.clone(),
                    kind: read.kind,
                    namespace: read.namespace.to_owned(),
                    id: read.id,
                    data: read.data.to_owned(),
                    expected: read.attachments,
                    attachments: Vec::with_capacity(read.attachments),
                };
                if read.attachments == 0 {
                    finish(partial)
                } else {
                    self.partial = Some(partial);
                    Decoded::Partial
                }
            }
        }
    }
}

/// An event or acknowledgement with all its attachments.
fn finish(partial: Partial) -> Decoded {
    let packet = (partial.expected > 0).then_some(partial.packet);
    match partial.kind {
        Kind::Event | Kind::BinaryEvent => match packet::split_event(&partial.data) {
            Ok((name, args)) => Decoded::Event(Box::new(Event {
                reply_to: partial.id.map(|id| id.to_string()),
                attachments: partial.attachments,
                packet,
                ..Event::new(name, partial.namespace, args)
            })),
            Err(error) => Decoded::Violation(error.0),
        },
        _ => {
            let Some(id) = partial.id else {
                return Decoded::Violation("an acknowledgement without an id".into());
            };
            match packet::ack_args(&partial.data) {
                Ok(args) => Decoded::Ack(Box::new(Ack {
                    id,
                    body: Bytes::from(args),
                    attachments: partial.attachments,
                    packet,
                })),
                Err(error) => Decoded::Violation(error.0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(session: &mut Session, text: &str) -> Decoded {
        session.decode(&Message::text(text))
    }

    fn opened(namespaces: &[&str]) -> Session {
        let mut session = Session::new(namespaces.iter().map(|name| name.to_string()));
        assert_eq!(
            text(
                &mut session,
                r#"0{"sid":"s","upgrades":[],"pingInterval":1000,"pingTimeout":2000,"maxPayload":100}"#
            ),
            Decoded::Handled
        );
        session
    }

    #[test]
    fn the_handshake_connects_each_namespace() {
        let mut session = opened(&["/", "/admin"]);
        assert!(session.opened() && !session.ready());
        let auth = |index: usize| (index == 1).then(|| r#"{"token":"t"}"#.to_owned());
        let connects = session.connect_messages(&auth);
        assert_eq!(
            connects,
            vec![Message::text("40"), Message::text(r#"40/admin,{"token":"t"}"#)]
        );
        assert_eq!(text(&mut session, r#"40{"sid":"a"}"#), Decoded::Connected("/".into()));
        assert!(!session.ready());
        assert_eq!(
            text(&mut session, r#"40/admin,{"sid":"b"}"#),
            Decoded::Connected("/admin".into())
        );
        assert!(session.ready());
        assert!(matches!(text(&mut session, "40/other,"), Decoded::Violation(_)));
        assert!(matches!(
            text(&mut session, r#"0{"sid":"s","pingInterval":1,"pingTimeout":1}"#),
            Decoded::Violation(_)
        ));
        assert_eq!(
            session.disconnect_messages(),
            vec![Message::text("41"), Message::text("41/admin,")]
        );
        assert_eq!(session.emit("/", "x", "", &[], false), Err(NotConnected));
    }

    #[test]
    fn a_refused_namespace_says_why() {
        let mut session = opened(&["/secret"]);
        session.connect_messages(&|_| None);
        assert_eq!(
            text(&mut session, r#"44/secret,{"message":"Not authorized"}"#),
            Decoded::Refused {
                kind: ErrorKind::ConnectError,
                namespace: "/secret".into(),
                message: "Not authorized".into()
            }
        );
        assert_eq!(session.refused(), Some("/secret"));
        assert!(!session.ready());
    }

    #[test]
    fn heartbeats_events_and_acks() {
        let mut session = opened(&["/"]);
        session.connect_messages(&|_| None);
        text(&mut session, "40");
        assert_eq!(text(&mut session, "2"), Decoded::Heartbeat(Some(Message::text("3"))));
        assert_eq!(text(&mut session, "6"), Decoded::Handled);
        assert_eq!(
            text(&mut session, r#"42["chat",{"from":"a"},7]"#),
            Decoded::Event(Box::new(Event::new("chat", "/", r#"[{"from":"a"},7]"#)))
        );
        let (messages, id) = session.emit("/", "echo", r#",{"n":1}"#, &[], true).unwrap();
        assert_eq!((messages, id), (vec![Message::text(r#"420["echo",{"n":1}]"#)], Some(0)));
        let (_, id) = session.emit("/", "echo", "", &[], true).unwrap();
        assert_eq!(id, Some(1));
        assert_eq!(
            text(&mut session, r#"431["ok"]"#),
            Decoded::Ack(Box::new(Ack {
                id: 1,
                body: Bytes::from_static(br#"["ok"]"#),
                attachments: Vec::new(),
                packet: None,
            }))
        );
        assert!(!session.ended());
        assert_eq!(text(&mut session, "41"), Decoded::Disconnected(Some("/".into())));
        assert_eq!(session.state("/"), Some(NamespaceState::Disconnected));
        assert!(session.ended());
        assert_eq!(text(&mut session, "1"), Decoded::Disconnected(None));
    }

    #[test]
    fn binary_packets_gather_their_attachments() {
        let mut session = opened(&["/"]);
        session.connect_messages(&|_| None);
        text(&mut session, "40");
        let attachments = [Bytes::from_static(b"\x01\x02"), Bytes::from_static(b"\x03")];
        let (messages, _) = session
            .emit(
                "/",
                "up",
                r#",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}"#,
                &attachments,
                false,
            )
            .unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(
            messages[0],
            Message::text(r#"452-["up",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
        );
        assert_eq!(messages[2], Message::Binary(attachments[1].clone()));
        assert_eq!(
            text(
                &mut session,
                r#"452-["down",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
            ),
            Decoded::Partial
        );
        assert_eq!(
            session.decode(&Message::Binary(attachments[0].clone())),
            Decoded::Partial
        );
        let Decoded::Event(event) = session.decode(&Message::Binary(attachments[1].clone())) else {
            panic!("no event");
        };
        assert_eq!(event.name, "down");
        assert_eq!(event.attachments, attachments.to_vec());
        assert_eq!(
            text(&mut session, r#"461-3[{"_placeholder":true,"num":0}]"#),
            Decoded::Partial
        );
        let Decoded::Ack(ack) = session.decode(&Message::Binary(attachments[0].clone())) else {
            panic!("no ack");
        };
        assert_eq!((ack.id, ack.attachments.len()), (3, 1));
    }

    #[test]
    fn malformed_input_is_a_violation_never_a_panic() {
        let mut session = opened(&["/"]);
        for bad in [
            "",
            "x",
            "4",
            "47",
            "42",
            "42{}",
            "42[1]",
            "43[\"no id\"]",
            "45-[]",
            "431{}",
            "0{}",
        ] {
            assert!(matches!(text(&mut session, bad), Decoded::Violation(_)), "{bad:?}");
        }
        assert!(matches!(
            session.decode(&Message::Binary(Bytes::from_static(b"x"))),
            Decoded::Violation(_)
        ));
        assert_eq!(
            text(&mut session, r#"451-["e",{"_placeholder":true,"num":0}]"#),
            Decoded::Partial
        );
        assert!(matches!(text(&mut session, "2"), Decoded::Violation(_)));
        // The next packet reads normally.
        assert_eq!(text(&mut session, "2"), Decoded::Heartbeat(Some(Message::text("3"))));
    }
}
