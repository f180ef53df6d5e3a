//! The Socket.IO v4 packet codec over Engine.IO v4's WebSocket transport: one WebSocket text
//! message is one Engine.IO packet (a type digit, then its data); an Engine.IO `message` (`4`)
//! carries one Socket.IO packet (`<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`); a
//! binary event's or acknowledgement's attachments follow as binary WebSocket messages, one
//! each, in placeholder order. Pure functions over text: no I/O, no state.

use std::fmt::Write as _;

/// Attachments one packet may announce; more is a protocol violation (it would let a server
/// make the client buffer without bound).
pub const MAX_ATTACHMENTS: usize = 64;

/// Why a packet could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PacketError(pub String);

fn error(message: impl Into<String>) -> PacketError {
    PacketError(message.into())
}

/// An Engine.IO packet read from a text message.
#[derive(Debug, PartialEq, Eq)]
pub enum EnginePacket<'a> {
    /// The handshake: a JSON object with `sid`, `pingInterval`, `pingTimeout`, `maxPayload`.
    Open(&'a str),
    Close,
    /// The server's heartbeat, answered with a pong carrying the same data.
    Ping(&'a str),
    Pong(&'a str),
    /// A Socket.IO packet.
    Message(&'a str),
    Upgrade,
    Noop,
}

/// Reads an Engine.IO packet.
pub fn engine_packet(text: &str) -> Result<EnginePacket<'_>, PacketError> {
    let mut chars = text.chars();
    let kind = chars.next().ok_or_else(|| error("an empty Engine.IO packet"))?;
    let data = chars.as_str();
    Ok(match kind {
        '0' => EnginePacket::Open(data),
        '1' => EnginePacket::Close,
        '2' => EnginePacket::Ping(data),
        '3' => EnginePacket::Pong(data),
        '4' => EnginePacket::Message(data),
        '5' => EnginePacket::Upgrade,
        '6' => EnginePacket::Noop,
        other => return Err(error(format!("unknown Engine.IO packet type `{other}`"))),
    })
}

/// The open packet's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSettings {
    pub sid: String,
    /// Milliseconds between the server's pings.
    pub ping_interval: u64,
    /// Milliseconds the server waits for a pong.
    pub ping_timeout: u64,
    /// The largest packet the server accepts, in bytes (0 when it says nothing).
    pub max_payload: u64,
}

/// Reads the open packet's JSON.
pub fn open_settings(data: &str) -> Result<OpenSettings, PacketError> {
    let value: serde_json::Value =
        serde_json::from_str(data).map_err(|problem| error(format!("the open packet is not JSON: {problem}")))?;
    let sid = value
        .get("sid")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| error("the open packet has no `sid`"))?;
    let number = |name: &str| value.get(name).and_then(serde_json::Value::as_u64);
    Ok(OpenSettings {
        sid: sid.to_owned(),
        ping_interval: number("pingInterval").ok_or_else(|| error("the open packet has no `pingInterval`"))?,
        ping_timeout: number("pingTimeout").ok_or_else(|| error("the open packet has no `pingTimeout`"))?,
        max_payload: number("maxPayload").unwrap_or(0),
    })
}

/// A Socket.IO packet's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Connect,
    Disconnect,
    Event,
    Ack,
    ConnectError,
    BinaryEvent,
    BinaryAck,
}

impl Kind {
    fn digit(self) -> char {
        match self {
            Kind::Connect => '0',
            Kind::Disconnect => '1',
            Kind::Event => '2',
            Kind::Ack => '3',
            Kind::ConnectError => '4',
            Kind::BinaryEvent => '5',
            Kind::BinaryAck => '6',
        }
    }

    fn is_binary(self) -> bool {
        matches!(self, Kind::BinaryEvent | Kind::BinaryAck)
    }
}

/// A Socket.IO packet, borrowed from its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    pub kind: Kind,
    /// `/` unless the packet names another.
    pub namespace: &'a str,
    pub id: Option<u64>,
    /// Binary messages that follow (binary events and acknowledgements).
    pub attachments: usize,
    /// The JSON payload, empty when there is none.
    pub data: &'a str,
}

/// Reads a Socket.IO packet (the data of an Engine.IO `message`).
pub fn packet(text: &str) -> Result<Packet<'_>, PacketError> {
    let bytes = text.as_bytes();
    let kind = match bytes.first() {
        Some(b'0') => Kind::Connect,
        Some(b'1') => Kind::Disconnect,
        Some(b'2') => Kind::Event,
        Some(b'3') => Kind::Ack,
        Some(b'4') => Kind::ConnectError,
        Some(b'5') => Kind::BinaryEvent,
        Some(b'6') => Kind::BinaryAck,
        Some(_) => return Err(error(format!("unknown Socket.IO packet type in `{}`", preview(text)))),
        None => return Err(error("an empty Socket.IO packet")),
    };
    let mut at = 1;
    let mut attachments = 0;
    if kind.is_binary() {
        let digits = count_digits(&bytes[at..]);
        if digits == 0 || bytes.get(at + digits) != Some(&b'-') {
            return Err(error(format!(
                "a binary packet without its attachment count: `{}`",
                preview(text)
            )));
        }
        attachments = text[at..at + digits]
            .parse::<usize>()
            .ok()
            .filter(|count| *count <= MAX_ATTACHMENTS)
            .ok_or_else(|| error(format!("more than {MAX_ATTACHMENTS} attachments: `{}`", preview(text))))?;
        at += digits + 1;
    }
    let mut namespace = "/";
    if bytes.get(at) == Some(&b'/') {
        match text[at..].find(',') {
            Some(comma) => {
                namespace = &text[at..at + comma];
                at += comma + 1;
            }
            None => {
                namespace = &text[at..];
                at = text.len();
            }
        }
    }
    let digits = count_digits(&bytes[at..]);
    let id = if digits > 0 {
        let id = text[at..at + digits]
            .parse::<u64>()
            .map_err(|_| error(format!("an acknowledgement id out of range: `{}`", preview(text))))?;
        at += digits;
        Some(id)
    } else {
        None
    };
    Ok(Packet {
        kind,
        namespace,
        id,
        attachments,
        data: &text[at..],
    })
}

fn count_digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|byte| byte.is_ascii_digit()).count()
}

/// The start of a packet, for error messages.
fn preview(text: &str) -> String {
    let mut end = text.len().min(60);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// An event's name and its arguments as a JSON array (`["name", a, b]` gives `name`, `[a,b]`).
pub fn split_event(data: &str) -> Result<(String, String), PacketError> {
    let value: serde_json::Value =
        serde_json::from_str(data).map_err(|problem| error(format!("an event's data is not JSON: {problem}")))?;
    let serde_json::Value::Array(mut items) = value else {
        return Err(error("an event's data is not a JSON array"));
    };
    if items.is_empty() {
        return Err(error("an event without a name"));
    }
    let serde_json::Value::String(name) = items.remove(0) else {
        return Err(error("an event whose name is not a string"));
    };
    Ok((name, serde_json::Value::Array(items).to_string()))
}

/// An acknowledgement's arguments: a JSON array.
pub fn ack_args(data: &str) -> Result<String, PacketError> {
    let value: serde_json::Value = serde_json::from_str(data)
        .map_err(|problem| error(format!("an acknowledgement's data is not JSON: {problem}")))?;
    if !value.is_array() {
        return Err(error("an acknowledgement's data is not a JSON array"));
    }
    Ok(data.to_owned())
}

/// A refused connect's message: `{"message": ...}` (or a bare string, as older servers send).
pub fn connect_error_message(data: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(data) {
        Ok(serde_json::Value::Object(fields)) => match fields.get("message") {
            Some(serde_json::Value::String(message)) => message.clone(),
            Some(other) => other.to_string(),
            None => data.to_owned(),
        },
        Ok(serde_json::Value::String(message)) => message,
        _ => data.to_owned(),
    }
}

/// Writes the start of a client packet: the Engine.IO `message` type, the Socket.IO type, the
/// attachment count, the namespace and the id.
pub fn header(kind: Kind, namespace: &str, attachments: usize, id: Option<u64>, out: &mut String) {
    out.push('4');
    out.push(kind.digit());
    if kind.is_binary() {
        let _ = write!(out, "{attachments}-");
    }
    if namespace != "/" {
        out.push_str(namespace);
        out.push(',');
    }
    if let Some(id) = id {
        let _ = write!(out, "{id}");
    }
}

/// A namespace connect (`40`, `40/chat,{"token":"x"}`), with the auth payload's JSON.
pub fn connect(namespace: &str, auth: Option<&str>) -> String {
    let mut out = String::new();
    header(Kind::Connect, namespace, 0, None, &mut out);
    if let Some(auth) = auth {
        out.push_str(auth);
    }
    out
}

/// A namespace disconnect (`41`, `41/chat,`).
pub fn disconnect(namespace: &str) -> String {
    let mut out = String::new();
    header(Kind::Disconnect, namespace, 0, None, &mut out);
    out
}

/// The start of an event (`42/chat,7["name"` or `451-["name"`); the caller appends `,arg`
/// for each argument, then `]`.
pub fn event_start(namespace: &str, event: &str, attachments: usize, id: Option<u64>) -> String {
    let kind = if attachments > 0 {
        Kind::BinaryEvent
    } else {
        Kind::Event
    };
    let mut out = String::new();
    header(kind, namespace, attachments, id, &mut out);
    out.push('[');
    out.push_str(&serde_json::Value::String(event.to_owned()).to_string());
    out
}

/// An acknowledgement of the server's event `id` (`43/chat,5["ok"]`); `args` is the arguments'
/// JSON, each preceded by a comma.
pub fn ack(namespace: &str, id: u64, args: &str) -> String {
    let mut out = String::new();
    header(Kind::Ack, namespace, 0, Some(id), &mut out);
    out.push('[');
    out.push_str(args.strip_prefix(',').unwrap_or(args));
    out.push(']');
    out
}

/// The pong that answers a ping carrying `data`.
pub fn pong(data: &str) -> String {
    format!("3{data}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_packets() {
        assert_eq!(engine_packet("2").unwrap(), EnginePacket::Ping(""));
        assert_eq!(engine_packet("2probe").unwrap(), EnginePacket::Ping("probe"));
        assert_eq!(engine_packet("40").unwrap(), EnginePacket::Message("0"));
        assert_eq!(engine_packet("6").unwrap(), EnginePacket::Noop);
        assert_eq!(engine_packet("1").unwrap(), EnginePacket::Close);
        assert!(engine_packet("").is_err());
        assert!(engine_packet("9x").is_err());
        assert!(engine_packet("é").is_err());
        let open =
            open_settings(r#"{"sid":"abc","upgrades":[],"pingInterval":1000,"pingTimeout":2000,"maxPayload":1000000}"#)
                .unwrap();
        assert_eq!(
            open,
            OpenSettings {
                sid: "abc".into(),
                ping_interval: 1000,
                ping_timeout: 2000,
                max_payload: 1_000_000
            }
        );
        assert!(open_settings("{}").is_err());
        assert!(open_settings("not json").is_err());
        assert!(open_settings(r#"{"sid":"a","pingInterval":"x","pingTimeout":1}"#).is_err());
    }

    #[test]
    fn socket_packets_as_the_protocol_writes_them() {
        let read = |text| packet(text).unwrap();
        assert_eq!(
            read("0"),
            Packet {
                kind: Kind::Connect,
                namespace: "/",
                id: None,
                attachments: 0,
                data: ""
            }
        );
        let connected = read(r#"0/admin,{"sid":"x"}"#);
        assert_eq!((connected.namespace, connected.data), ("/admin", r#"{"sid":"x"}"#));
        let event = read(r#"2/chat,12["msg",{"a":1}]"#);
        assert_eq!(
            (event.kind, event.namespace, event.id, event.data),
            (Kind::Event, "/chat", Some(12), r#"["msg",{"a":1}]"#)
        );
        let ack = read(r#"31["ok"]"#);
        assert_eq!((ack.kind, ack.id, ack.data), (Kind::Ack, Some(1), r#"["ok"]"#));
        let binary = read(r#"52-/b,3["up",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#);
        assert_eq!(
            (binary.kind, binary.attachments, binary.namespace, binary.id),
            (Kind::BinaryEvent, 2, "/b", Some(3))
        );
        assert_eq!(read("1/admin,").namespace, "/admin");
        assert_eq!(read("1/admin").namespace, "/admin");
        assert_eq!(read(r#"4{"message":"no"}"#).kind, Kind::ConnectError);
        for bad in ["", "7", "5[\"x\"]", "5x-[]", "599-[]", "299999999999999999999999[]"] {
            assert!(packet(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn events_split_into_name_and_arguments() {
        assert_eq!(
            split_event(r#"["chat",{"t":"hi"},2]"#).unwrap(),
            ("chat".to_owned(), r#"[{"t":"hi"},2]"#.to_owned())
        );
        assert_eq!(
            split_event(r#"["bare"]"#).unwrap(),
            ("bare".to_owned(), "[]".to_owned())
        );
        for bad in ["", "{}", "[]", "[1]", "[\"x\"", "null"] {
            assert!(split_event(bad).is_err(), "{bad}");
        }
        assert!(ack_args("[1]").is_ok());
        assert!(ack_args("{}").is_err());
        assert_eq!(
            connect_error_message(r#"{"message":"Not authorized"}"#),
            "Not authorized"
        );
        assert_eq!(connect_error_message(r#""old""#), "old");
        assert_eq!(connect_error_message("junk"), "junk");
    }

    #[test]
    fn client_packets() {
        assert_eq!(connect("/", None), "40");
        assert_eq!(connect("/admin", Some(r#"{"token":"t"}"#)), r#"40/admin,{"token":"t"}"#);
        assert_eq!(disconnect("/"), "41");
        assert_eq!(disconnect("/chat"), "41/chat,");
        let mut event = event_start("/", "echo", 0, Some(4));
        event.push_str(",1]");
        assert_eq!(event, r#"424["echo",1]"#);
        assert_eq!(event_start("/up", "file", 2, None), r#"452-/up,["file""#);
        assert_eq!(event_start("/", "say \"x\"", 0, None), r#"42["say \"x\"""#);
        assert_eq!(pong(""), "3");
        assert_eq!(ack("/", 5, r#","ok",1"#), r#"435["ok",1]"#);
        assert_eq!(ack("/chat", 0, ""), "43/chat,0[]");
        // What is written reads back the same.
        let written = r#"452-/up,9["file",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
        let read = packet(&written[1..]).unwrap();
        assert_eq!(
            (read.kind, read.attachments, read.namespace, read.id),
            (Kind::BinaryEvent, 2, "/up", Some(9))
        );
    }
}
