//! The messages of both GraphQL-over-WebSocket protocols as small serde types: what a client
//! sends (encoded from [`Outgoing`]) and what a server sends (decoded through [`Envelope`] into
//! [`Incoming`]). Payloads stay as the exact JSON text the other side wrote (`RawValue`), so an
//! operation's result reaches the scenario's JSON pointers without being re-serialized.
//!
//! - `graphql-transport-ws` (the graphql-ws library, the GraphQL over WebSocket RFC):
//!   `connection_init`/`connection_ack`, `ping`/`pong` both ways, `subscribe`, `next`, `error`
//!   (an array of GraphQL errors), `complete` both ways.
//! - `graphql-ws` (Apollo's legacy subscriptions-transport-ws): `connection_init`/
//!   `connection_ack` or `connection_error`, `start`, `data`, `error` (one error object), `stop`,
//!   `complete`, the server's keep-alive `ka`, and `connection_terminate`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Which of the two protocols a connection negotiated, by its WebSocket subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subprotocol {
    /// `graphql-transport-ws`.
    TransportWs,
    /// `graphql-ws`, the legacy subscriptions-transport-ws protocol.
    LegacyWs,
}

impl Subprotocol {
    pub const ALL: [Subprotocol; 2] = [Subprotocol::TransportWs, Subprotocol::LegacyWs];

    /// The name offered in `Sec-WebSocket-Protocol`.
    pub fn name(self) -> &'static str {
        match self {
            Subprotocol::TransportWs => "graphql-transport-ws",
            Subprotocol::LegacyWs => "graphql-ws",
        }
    }

    pub fn from_name(name: &str) -> Option<Subprotocol> {
        Subprotocol::ALL.into_iter().find(|protocol| protocol.name() == name)
    }
}

/// A message the client sends, in either protocol (the session picks the variants its
/// protocol has).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outgoing<'a> {
    ConnectionInit {
        #[serde(skip_serializing_if = "Option::is_none")]
        payload: Option<&'a RawValue>,
    },
    /// graphql-transport-ws only.
    Ping {
        #[serde(skip_serializing_if = "Option::is_none")]
        payload: Option<&'a RawValue>,
    },
    /// graphql-transport-ws only: the answer to the server's ping, with its payload.
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        payload: Option<&'a RawValue>,
    },
    /// graphql-transport-ws: an operation (`{query, variables, operationName, extensions}`).
    Subscribe { id: &'a str, payload: &'a RawValue },
    /// graphql-transport-ws: the client ends an operation.
    Complete { id: &'a str },
    /// graphql-ws: an operation.
    Start { id: &'a str, payload: &'a RawValue },
    /// graphql-ws: the client ends an operation.
    Stop { id: &'a str },
    /// graphql-ws: the client ends the connection.
    ConnectionTerminate,
}

impl Outgoing<'_> {
    /// The message as JSON text.
    pub fn encode(&self) -> String {
        // Only strings and JSON that already parsed are written: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The `type` of a message a server sends, in either protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    ConnectionAck,
    /// graphql-ws: the server refused `connection_init`.
    ConnectionError,
    Ping,
    Pong,
    /// graphql-ws: a keep-alive.
    Ka,
    /// graphql-transport-ws: an operation's result.
    Next,
    /// graphql-ws: an operation's result.
    Data,
    Error,
    Complete,
    /// A type neither protocol has (or one only clients send).
    #[serde(other)]
    Unknown,
}

/// A server message as it is on the wire: its type, its operation id, its payload's JSON text.
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    #[serde(rename = "type")]
    pub kind: Kind,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, borrow)]
    pub payload: Option<&'a RawValue>,
}

impl<'a> Envelope<'a> {
    /// Reads a message's text; `None` when it is not a JSON object with a known field layout.
    pub fn parse(text: &'a str) -> Result<Envelope<'a>, String> {
        serde_json::from_str(text)
            .map_err(|error| format!("a message that is not a GraphQL-over-WebSocket message ({error})"))
    }
}

/// What an operation's result (`next`/`data` payload) says beyond its data: its GraphQL errors.
#[derive(Debug, Default, Deserialize)]
pub struct ResultErrors<'a> {
    #[serde(default, borrow)]
    pub errors: Option<&'a RawValue>,
}

impl ResultErrors<'_> {
    /// The `errors` of a result payload, when it has a non-empty list of them.
    pub fn of(payload: &RawValue) -> Option<String> {
        let result: ResultErrors<'_> = serde_json::from_str(payload.get()).ok()?;
        let errors = result.errors?;
        let list: Vec<&RawValue> = serde_json::from_str(errors.get()).ok()?;
        (!list.is_empty()).then(|| errors.get().to_owned())
    }
}

/// The first GraphQL error's `message` in an `error` payload (an array in
/// graphql-transport-ws, one object in graphql-ws) or a `connection_error` payload, or the
/// payload's text when it has none.
pub fn error_message(payload: Option<&RawValue>) -> String {
    #[derive(Deserialize)]
    struct Located {
        message: String,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Errors {
        Many(Vec<Located>),
        One(Located),
    }
    let Some(payload) = payload else {
        return "no error payload".into();
    };
    match serde_json::from_str::<Errors>(payload.get()) {
        Ok(Errors::Many(errors)) if !errors.is_empty() => {
            errors.into_iter().next().map(|error| error.message).unwrap_or_default()
        }
        Ok(Errors::One(error)) => error.message,
        _ => payload.get().to_owned(),
    }
}

/// The name of a close code the GraphQL-over-WebSocket protocol gives a meaning to (the
/// graphql-ws library and the RFC's `CloseCode`), for error kinds and messages.
pub fn close_code_name(code: u16) -> Option<&'static str> {
    Some(match code {
        4400 => "bad_request",
        4401 => "unauthorized",
        4403 => "forbidden",
        4406 => "subprotocol_not_acceptable",
        4408 => "connection_initialisation_timeout",
        4409 => "subscriber_already_exists",
        4429 => "too_many_initialisation_requests",
        4500 => "internal_server_error",
        4504 => "connection_acknowledgement_timeout",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn client_messages_encode_as_each_protocol_spells_them() {
        let payload = raw(r#"{"query":"{ hello }","variables":{"n":1}}"#);
        assert_eq!(
            Outgoing::ConnectionInit { payload: None }.encode(),
            r#"{"type":"connection_init"}"#
        );
        let token = raw(r#"{"token":"t"}"#);
        assert_eq!(
            Outgoing::ConnectionInit { payload: Some(&token) }.encode(),
            r#"{"type":"connection_init","payload":{"token":"t"}}"#
        );
        assert_eq!(
            Outgoing::Subscribe {
                id: "1",
                payload: &payload
            }
            .encode(),
            r#"{"type":"subscribe","id":"1","payload":{"query":"{ hello }","variables":{"n":1}}}"#
        );
        assert_eq!(
            Outgoing::Start {
                id: "2",
                payload: &payload
            }
            .encode(),
            r#"{"type":"start","id":"2","payload":{"query":"{ hello }","variables":{"n":1}}}"#
        );
        assert_eq!(
            Outgoing::Complete { id: "1" }.encode(),
            r#"{"type":"complete","id":"1"}"#
        );
        assert_eq!(Outgoing::Stop { id: "2" }.encode(), r#"{"type":"stop","id":"2"}"#);
        assert_eq!(Outgoing::Ping { payload: None }.encode(), r#"{"type":"ping"}"#);
        assert_eq!(
            Outgoing::Pong { payload: Some(&token) }.encode(),
            r#"{"type":"pong","payload":{"token":"t"}}"#
        );
        assert_eq!(
            Outgoing::ConnectionTerminate.encode(),
            r#"{"type":"connection_terminate"}"#
        );
    }

    #[test]
    fn server_messages_keep_their_payload_text() {
        let text = r#"{"type":"next","id":"7","payload":{"data":{"count": 3}}}"#;
        let envelope = Envelope::parse(text).unwrap();
        assert_eq!(envelope.kind, Kind::Next);
        assert_eq!(envelope.id.as_deref(), Some("7"));
        assert_eq!(envelope.payload.map(RawValue::get), Some(r#"{"data":{"count": 3}}"#));
        assert_eq!(Envelope::parse(r#"{"type":"ka"}"#).unwrap().kind, Kind::Ka);
        assert_eq!(
            Envelope::parse(r#"{"type":"subscribe","id":"1"}"#).unwrap().kind,
            Kind::Unknown
        );
        assert!(Envelope::parse(r#"{"id":"1"}"#).is_err());
        assert!(Envelope::parse("[1]").is_err());
        assert!(Envelope::parse("not json").is_err());
    }

    #[test]
    fn errors_are_found_in_results_and_error_payloads() {
        assert_eq!(ResultErrors::of(&raw(r#"{"data":{"a":1}}"#)), None);
        assert_eq!(ResultErrors::of(&raw(r#"{"data":null,"errors":[]}"#)), None);
        assert_eq!(
            ResultErrors::of(&raw(r#"{"data":null,"errors":[{"message":"boom"}]}"#)).as_deref(),
            Some(r#"[{"message":"boom"}]"#)
        );
        assert_eq!(
            error_message(Some(&raw(r#"[{"message":"boom","path":["a"]}]"#))),
            "boom"
        );
        assert_eq!(error_message(Some(&raw(r#"{"message":"legacy"}"#))), "legacy");
        assert_eq!(error_message(Some(&raw(r#""plain""#))), r#""plain""#);
        assert_eq!(error_message(None), "no error payload");
    }

    #[test]
    fn subprotocols_and_close_codes_have_names() {
        for protocol in Subprotocol::ALL {
            assert_eq!(Subprotocol::from_name(protocol.name()), Some(protocol));
        }
        assert_eq!(Subprotocol::from_name("graphql"), None);
        assert_eq!(close_code_name(4401), Some("unauthorized"));
        assert_eq!(close_code_name(4409), Some("subscriber_already_exists"));
        assert_eq!(close_code_name(1000), None);
    }
}
