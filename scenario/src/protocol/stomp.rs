//! STOMP 1.2 over WebSocket (`connect: { protocol: stomp, stomp: {...} }`): the connect options
//! and the STOMP steps (`stomp_subscribe`, `stomp_unsubscribe`, `stomp_send`, `stomp_ack`,
//! `stomp_nack`, `stomp_begin`, `stomp_commit`, `stomp_abort`, `stomp_disconnect`), as written
//! and as compiled. Events are MESSAGE frames, keyed by destination (metric sets
//! `destination:/queue/a`; a templated destination's set writes each `${...}` as `*`:
//! [`set_key`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::steps::{ConnId, Flush, StepId};
use crate::template::Template;

/// The subprotocols a STOMP connection offers when its connect step names none.
pub const SUBPROTOCOLS: &[&str] = &["v12.stomp", "v11.stomp"];

/// The prefix of a destination's metric set name: `destination:/queue/a`.
pub const SET_PREFIX: &str = "destination:";

/// What a variable of a templated destination is written as in its metric set's name.
pub const WILDCARD: &str = "*";

/// The virtual host when `stomp.host` is not given (RabbitMQ's default vhost).
pub const DEFAULT_HOST: &str = "/";

/// The heart-beat intervals when `stomp.heartbeat` is not given (stomp.js's defaults).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);

/// How long a step waits for its RECEIPT when `receipt: true`.
pub const DEFAULT_RECEIPT_TIMEOUT: Duration = Duration::from_secs(10);

/// `stomp: { host, login, passcode, heartbeat, headers }`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStomp {
    /// The virtual host (`host` header), `/` by default.
    pub host: Option<String>,
    pub login: Option<String>,
    pub passcode: Option<String>,
    /// `{ send: 10s, receive: 10s }`, or `off` for none.
    pub heartbeat: Option<RawHeartbeat>,
    /// Further CONNECT headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `heartbeat: off` or `heartbeat: { send, receive }` (`0` or `off` for either: none).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawHeartbeat {
    Off(String),
    Intervals(RawHeartbeatIntervals),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeartbeatIntervals {
    /// How often the client can send heart-beats (stomp.js `heartbeatOutgoing`).
    pub send: Option<String>,
    /// How often the client wants the server's (stomp.js `heartbeatIncoming`).
    pub receive: Option<String>,
}

/// `receipt: true`, or `receipt: { timeout, wait }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawReceipt {
    Flag(bool),
    Options(RawReceiptOptions),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReceiptOptions {
    pub timeout: Option<String>,
    /// `false`: the step goes on at once; the RECEIPT is measured when it comes.
    pub wait: Option<bool>,
}

/// `stomp_subscribe: { destination, id, ack, headers, receipt }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubscribe {
    pub name: Option<String>,
    pub connection: Option<String>,
    /// A template; its metric set writes each `${...}` as `*`.
    pub destination: String,
    /// The subscription id; `sub-N` by default (N counts the connection's subscriptions).
    pub id: Option<String>,
    /// `auto` (the default), `client` or `client-individual`.
    pub ack: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub receipt: Option<RawReceipt>,
}

/// `stomp_unsubscribe: { id | destination, receipt }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnsubscribe {
    pub name: Option<String>,
    pub connection: Option<String>,
    pub id: Option<String>,
    /// The subscription to this destination (the connection's latest one), a template.
    pub destination: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub receipt: Option<RawReceipt>,
}

/// `stomp_send: { destination, headers, text | file, content_type, receipt, flush }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStompSend {
    pub name: Option<String>,
    pub connection: Option<String>,
    /// A template; its metric set writes each `${...}` as `*`.
    pub destination: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Send inside a transaction: its id, or `true` for the connection's open one.
    pub transaction: Option<RawTransaction>,
    /// The body, a template.
    pub text: Option<String>,
    /// The body: a file's bytes, relative to the scenario file.
    pub file: Option<String>,
    /// The `content-type` header.
    pub content_type: Option<String>,
    pub receipt: Option<RawReceipt>,
    pub flush: Option<String>,
}

/// `stomp_ack: { id, receipt }` / `stomp_nack: {...}`; `stomp_ack: {}` acknowledges the last
/// message a step or handler took on the connection.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStompAck {
    pub name: Option<String>,
    pub connection: Option<String>,
    /// The message's `ack` header (STOMP 1.2; `message-id` in 1.1), e.g. an extracted value.
    pub id: Option<String>,
    /// Acknowledge inside a transaction: its id, or `true` for the connection's open one.
    pub transaction: Option<RawTransaction>,
    pub receipt: Option<RawReceipt>,
}

/// `transaction: tx-${vu}` (an id, a template) or `transaction: true` (the transaction the
/// connection's latest `stomp_begin` opened and nothing has committed or aborted yet).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawTransaction {
    Open(bool),
    Id(String),
}

/// `stomp_begin: { transaction, receipt }`, `stomp_commit: {...}`, `stomp_abort: {...}`.
/// BEGIN's id is `tx-N` by default (N counts the connection's transactions); COMMIT and ABORT
/// end the connection's open transaction unless they name one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStompTransaction {
    pub name: Option<String>,
    pub connection: Option<String>,
    /// The transaction id, a template.
    pub transaction: Option<String>,
    pub receipt: Option<RawReceipt>,
}

/// `stomp_disconnect: { receipt, timeout }`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStompDisconnect {
    pub name: Option<String>,
    pub connection: Option<String>,
    /// Ask for a RECEIPT (the default) and wait for it, or for the server's close, up to
    /// `timeout`.
    pub receipt: Option<bool>,
    pub timeout: Option<String>,
}

/// STOMP options of a connect step.
#[derive(Clone, Debug)]
pub struct Stomp {
    pub host: Template,
    pub login: Option<Template>,
    pub passcode: Option<Template>,
    /// The smallest interval the client sends heart-beats at; `None`: none.
    pub send_heartbeat: Option<Duration>,
    /// The interval the client wants the server's heart-beats at; `None`: none.
    pub want_heartbeat: Option<Duration>,
    pub headers: Vec<(String, Template)>,
}

/// A RECEIPT asked for: how long to wait, or not to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub timeout: Duration,
    pub wait: bool,
}

/// `ack` of a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckMode {
    Auto,
    Client,
    ClientIndividual,
}

impl AckMode {
    pub fn header(self) -> &'static str {
        match self {
            AckMode::Auto => "auto",
            AckMode::Client => "client",
            AckMode::ClientIndividual => "client-individual",
        }
    }
}

/// A STOMP step, compiled.
#[derive(Clone, Debug)]
pub struct StompStep {
    pub conn: ConnId,
    /// The set of `acks_received` and `ack_latency` of its RECEIPT, and of `events_sent`: the
    /// destination's, or the step's own when it names none.
    pub set: StepId,
    pub receipt: Option<Receipt>,
    pub action: StompAction,
}

#[derive(Clone, Debug)]
pub enum StompAction {
    Subscribe {
        destination: Template,
        id: Option<Template>,
        ack: AckMode,
        headers: Vec<(String, Template)>,
    },
    Unsubscribe {
        id: Option<Template>,
        destination: Option<Template>,
        headers: Vec<(String, Template)>,
    },
    Send {
        destination: Template,
        headers: Vec<(String, Template)>,
        body: StompBody,
        transaction: Option<Transaction>,
        flush: Flush,
    },
    /// ACK, or NACK with `nack`.
    Ack {
        nack: bool,
        id: Option<Template>,
        transaction: Option<Transaction>,
    },
    /// BEGIN; `id` `None` takes the next `tx-N`.
    Begin {
        id: Option<Template>,
    },
    /// COMMIT, or ABORT without `commit`; `id` `None` ends the connection's open transaction.
    End {
        commit: bool,
        id: Option<Template>,
    },
    Disconnect {
        receipt: bool,
        timeout: Duration,
    },
}

/// The transaction a SEND, ACK or NACK belongs to.
#[derive(Clone, Debug)]
pub enum Transaction {
    /// The connection's open transaction (its latest BEGIN not yet committed or aborted).
    Open,
    Id(Template),
}

/// The metric set key of a destination: as written, each `${...}` as `*`, so
/// `/topic/room.${vu % 3}` counts in `destination:/topic/room.*`.
pub fn set_key(destination: &Template) -> String {
    destination.pattern(WILDCARD)
}

/// Whether a destination falls under a set key with `*`s, each standing for any text (what a
/// variable rendered to): `/topic/room.7` under `/topic/room.*`.
pub fn key_matches(key: &str, destination: &str) -> bool {
    let mut pieces = key.split(WILDCARD);
    let first = pieces.next().unwrap_or_default();
    let Some(mut rest) = destination.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = pieces.collect();
    let Some((last, middle)) = pieces.split_last() else {
        // No `*`: the same text.
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// A SEND's body.
#[derive(Clone, Debug)]
pub enum StompBody {
    Text(Template),
    Bytes(Vec<u8>),
}
