//! A GraphQL-over-WebSocket session, in either protocol the server negotiated by subprotocol:
//! `graphql-transport-ws` or the legacy `graphql-ws` (see `message`). It holds the
//! `connection_init` and its answer, the operation ids the client gave out and where each
//! operation stands (waiting for its first result, streaming, ended), and the keep-alives: the
//! server's `ping` answered with a `pong`, the client's own pings (graphql-ws's `keepAlive`)
//! and the legacy server's `ka`.
//!
//! No I/O and no clock: the caller passes the instants it read to [`Session::ping_message`],
//! [`Session::ping_due`], [`Session::pong_overdue`] and [`Session::server_silent`].

pub mod layer;
pub mod message;

use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Message;

pub use self::message::{close_code_name, Subprotocol};
use self::message::{error_message, Envelope, Kind, Outgoing, ResultErrors};

/// What a session's `connection_init` says and how it keeps the connection alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub subprotocol: Subprotocol,
    /// The `connection_init` payload (graphql-ws's `connectionParams`, Apollo's
    /// `connectionParams`), JSON text; `None` sends none.
    pub init_payload: Option<String>,
    /// graphql-transport-ws: the client pings the server this long after its last ping was
    /// answered (graphql-ws's `keepAlive`); a ping still unanswered when the next one is due
    /// means the server is silent. `None`: the client never pings.
    pub keep_alive: Option<Duration>,
    /// graphql-ws: once the server sent a `ka`, how long without another it may go before it
    /// counts as silent (subscriptions-transport-ws's `timeout`, 30 s there).
    pub ka_timeout: Option<Duration>,
}

impl Options {
    pub fn new(subprotocol: Subprotocol) -> Options {
        Options {
            subprotocol,
            init_payload: None,
            keep_alive: None,
            ka_timeout: None,
        }
    }
}

/// Where the session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// `connection_init` not sent yet.
    Idle,
    /// `connection_init` sent, no answer yet.
    Initializing,
    /// `connection_ack` came: operations may start.
    Ready,
    /// The server refused `connection_init` (graphql-ws's `connection_error`; in
    /// graphql-transport-ws the server closes with 4403 instead, which the caller sees).
    Refused,
    /// The client ended the connection.
    Terminated,
}

/// What the server said in one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// `connection_ack`, with its payload's JSON text.
    Acknowledged(Option<String>),
    /// graphql-ws: `connection_error`, with its message.
    Refused(String),
    /// graphql-transport-ws: the server's `ping`; this message (the `pong`, with the ping's
    /// payload) answers it.
    Ping(Message),
    /// graphql-transport-ws: the answer to the client's ping.
    Pong,
    /// graphql-ws: the server's keep-alive.
    KeepAlive,
    /// An operation's result (`next`, or `data` in graphql-ws).
    Next {
        id: u64,
        /// The execution result's JSON text (`{"data": ..., "errors": ...}`).
        payload: String,
        /// Whether it is the operation's first result.
        first: bool,
        /// The result's `errors`, JSON text, when it has some (a resolver failed).
        errors: Option<String>,
    },
    /// The server ended an operation with errors (`error`): the first error's message and the
    /// payload's JSON text. The operation is over.
    Error { id: u64, message: String, payload: String },
    /// The server ended an operation (`complete`).
    Complete { id: u64 },
    /// A message about an operation the client already ended (a result that crossed the
    /// client's `complete`/`stop`, or graphql-ws's `complete` answering a `stop`).
    Stale { id: u64 },
}

/// Where an operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// Started, no result yet.
    Waiting,
    /// At least one result came.
    Streaming,
}

/// An operation the session started before its connection was acknowledged, or with a payload
/// that is not a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    NotReady(State),
    Payload(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::NotReady(state) => write!(out, "the connection is not acknowledged ({state:?})"),
            StartError::Payload(why) => write!(out, "the operation is not a JSON object: {why}"),
        }
    }
}

/// One connection's GraphQL-over-WebSocket session.
pub struct Session {
    options: Options,
    state: State,
    /// The id the next operation gets (ids are decimal strings on the wire: "0", "1", ...).
    next_id: u64,
    /// Operations started and not ended, by id: few at a time, so a list.
    active: Vec<(u64, Progress)>,
    /// The client's ping waiting for its pong, sent at this instant.
    ping_sent: Option<Instant>,
    /// Whether the server sent a `ka` yet (its silence counts only then).
    ka_seen: bool,
}

impl Session {
    pub fn new(options: Options) -> Session {
        Session {
            options,
            state: State::Idle,
            next_id: 0,
            active: Vec::new(),
            ping_sent: None,
            ka_seen: false,
        }
    }

    pub fn subprotocol(&self) -> Subprotocol {
        self.options.subprotocol
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// graphql-ws: whether the server sent a `ka` yet.
    pub fn ka_seen(&self) -> bool {
        self.ka_seen
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn ready(&self) -> bool {
        self.state == State::Ready
    }

    /// The operations started and not ended, by id.
    pub fn active(&self) -> impl Iterator<Item = u64> + '_ {
        self.active.iter().map(|(id, _)| *id)
    }

    /// The `connection_init` message; the session then waits for its answer. A payload that is
    /// not JSON is refused.
    pub fn init_message(&mut self) -> Result<Message, String> {
        let payload = match &self.options.init_payload {
            Some(text) => Some(raw(text).map_err(|why| format!("the connection_init payload is not JSON: {why}"))?),
            None => None,
        };
        self.state = State::Initializing;
        Ok(Message::text(
            Outgoing::ConnectionInit {
                payload: payload.as_deref(),
            }
            .encode(),
        ))
    }

    /// Starts an operation (a subscription, or a query or mutation over the socket): its id and
    /// its message (`subscribe`, or `start` in graphql-ws). `payload` is the operation's JSON
    /// object: `{"query": ..., "variables": ..., "operationName": ...}`.
    pub fn start(&mut self, payload: &str) -> Result<(u64, Message), StartError> {
        if self.state != State::Ready {
            return Err(StartError::NotReady(self.state));
        }
        let payload = raw(payload).map_err(StartError::Payload)?;
        if !payload.get().trim_start().starts_with('{') {
            return Err(StartError::Payload(
                "a query is sent as an object with a `query` field".into(),
            ));
        }
        let id = self.next_id;
        self.next_id += 1;
        let id_text = id.to_string();
        let outgoing = match self.options.subprotocol {
            Subprotocol::TransportWs => Outgoing::Subscribe {
                id: &id_text,
                payload: &payload,
            },
            Subprotocol::LegacyWs => Outgoing::Start {
                id: &id_text,
                payload: &payload,
            },
        };
        self.active.push((id, Progress::Waiting));
        Ok((id, Message::text(outgoing.encode())))
    }

    /// Ends an operation from the client's side (`complete`, or `stop` in graphql-ws); `None`
    /// when it is not active (it ended already).
    pub fn stop(&mut self, id: u64) -> Option<Message> {
        let index = self.active.iter().position(|(active, _)| *active == id)?;
        self.active.swap_remove(index);
        let id = id.to_string();
        let outgoing = match self.options.subprotocol {
            Subprotocol::TransportWs => Outgoing::Complete { id: &id },
            Subprotocol::LegacyWs => Outgoing::Stop { id: &id },
        };
        Some(Message::text(outgoing.encode()))
    }

    /// What a client sends before it closes: graphql-ws's client stops every operation and
    /// sends `connection_terminate`; graphql-transport-ws's client just closes (1000).
    pub fn goodbye_messages(&mut self) -> Vec<Message> {
        let mut messages = Vec::new();
        if self.options.subprotocol == Subprotocol::LegacyWs && self.state == State::Ready {
            let ids: Vec<u64> = self.active().collect();
            messages.extend(ids.into_iter().filter_map(|id| self.stop(id)));
            messages.push(Message::text(Outgoing::ConnectionTerminate.encode()));
        }
        self.active.clear();
        self.state = State::Terminated;
        messages
    }

    /// The client's `ping` (graphql-transport-ws), sent at `now`; its pong is then awaited.
    /// `None` in graphql-ws, which has no client ping.
    pub fn ping_message(&mut self, now: Instant) -> Option<Message> {
        if self.options.subprotocol != Subprotocol::TransportWs {
            return None;
        }
        self.ping_sent.get_or_insert(now);
        Some(Message::text(Outgoing::Ping { payload: None }.encode()))
    }

    /// When the client's next ping is due, given when it last heard a pong (or the connection
    /// was acknowledged): `None` without `keep_alive`, or while a ping waits for its pong.
    pub fn ping_due(&self, since: Instant) -> Option<Instant> {
        let every = self.options.keep_alive.filter(|every| !every.is_zero())?;
        if self.options.subprotocol != Subprotocol::TransportWs || self.ping_sent.is_some() {
            return None;
        }
        Some(since + every)
    }

    /// Whether the client's ping has waited for its pong as long as `keep_alive` at `now`.
    pub fn pong_overdue(&self, now: Instant) -> bool {
        match (self.ping_sent, self.options.keep_alive) {
            (Some(sent), Some(every)) => now.saturating_duration_since(sent) >= every,
            _ => false,
        }
    }

    /// graphql-ws: whether the server, which sends keep-alives, sent none (nor anything else)
    /// since `last_received` for `ka_timeout` at `now`.
    pub fn server_silent(&self, last_received: Instant, now: Instant) -> bool {
        match self.options.ka_timeout {
            Some(limit) if self.ka_seen => now.saturating_duration_since(last_received) >= limit,
            _ => false,
        }
    }

    /// Reads one incoming data message; an error is a message that breaks the protocol.
    pub fn decode(&mut self, message: &Message) -> Result<Received, String> {
        let text = match message {
            Message::Text(text) => text.as_str(),
            Message::Binary(bytes) => {
                std::str::from_utf8(bytes).map_err(|_| "a binary message that is not UTF-8 JSON".to_owned())?
            }
            _ => return Err("not a data message".into()),
        };
        let envelope = Envelope::parse(text)?;
        let transport = self.options.subprotocol == Subprotocol::TransportWs;
        let kind = envelope.kind;
        let unexpected = || {
            format!(
                "a `{}` message, which {} servers do not send",
                type_name(text),
                self.options.subprotocol.name()
            )
        };
        match kind {
            Kind::ConnectionAck => {
                if self.state != State::Initializing {
                    return Err("a connection_ack the client did not ask for".into());
                }
                self.state = State::Ready;
                Ok(Received::Acknowledged(
                    envelope.payload.map(|payload| payload.get().to_owned()),
                ))
            }
            Kind::ConnectionError if !transport => {
                self.state = State::Refused;
                Ok(Received::Refused(error_message(envelope.payload)))
            }
            Kind::Ping if transport => {
                let answer = Outgoing::Pong {
                    payload: envelope.payload,
                };
                Ok(Received::Ping(Message::text(answer.encode())))
            }
            Kind::Pong if transport => {
                self.ping_sent = None;
                Ok(Received::Pong)
            }
            Kind::Ka if !transport => {
                self.ka_seen = true;
                Ok(Received::KeepAlive)
            }
            Kind::Next | Kind::Data if (kind == Kind::Next) == transport => {
                let id = self.operation_id(envelope.id.as_deref())?;
                let Some(index) = self.position(id) else {
                    return Ok(Received::Stale { id });
                };
                let payload = envelope
                    .payload
                    .ok_or_else(|| format!("a `{}` message without a payload", type_name(text)))?;
                let first = self.active[index].1 == Progress::Waiting;
                self.active[index].1 = Progress::Streaming;
                Ok(Received::Next {
                    id,
                    payload: payload.get().to_owned(),
                    first,
                    errors: ResultErrors::of(payload),
                })
            }
            Kind::Error => {
                let id = self.operation_id(envelope.id.as_deref())?;
                let Some(index) = self.position(id) else {
                    return Ok(Received::Stale { id });
                };
                self.active.swap_remove(index);
                Ok(Received::Error {
                    id,
                    message: error_message(envelope.payload),
                    payload: envelope
                        .payload
                        .map_or_else(String::new, |payload| payload.get().to_owned()),
                })
            }
            Kind::Complete => {
                let id = self.operation_id(envelope.id.as_deref())?;
                let Some(index) = self.position(id) else {
                    return Ok(Received::Stale { id });
                };
                self.active.swap_remove(index);
                Ok(Received::Complete { id })
            }
            _ => Err(unexpected()),
        }
    }

    fn position(&self, id: u64) -> Option<usize> {
        self.active.iter().position(|(active, _)| *active == id)
    }

    /// The operation a message names: one the client gave out.
    fn operation_id(&self, id: Option<&str>) -> Result<u64, String> {
        let id = id.ok_or("an operation message without an id")?;
        match id.parse::<u64>() {
            Ok(number) if number < self.next_id => Ok(number),
            _ => Err(format!(
                "a message for operation `{id}`, which the client never started"
            )),
        }
    }
}

/// A JSON text as a raw value (checked, not kept parsed).
fn raw(text: &str) -> Result<Box<RawValue>, String> {
    RawValue::from_string(text.to_owned()).map_err(|error| error.to_string())
}

/// The `type` field of a message, for errors.
fn type_name(text: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "type")]
        kind: String,
    }
    serde_json::from_str::<Typed>(text).map_or_else(|_| "?".into(), |typed| typed.kind)
}

#[cfg(test)]
#[path = "graphql/session_tests.rs"]
mod tests;
