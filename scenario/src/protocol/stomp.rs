//! STOMP 1.2 over WebSocket (`connect: { protocol: stomp, stomp: {...} }`): the connect options
//! and the STOMP steps (`stomp_subscribe`, `stomp_unsubscribe`, `stomp_send`, `stomp_ack`,
//! `stomp_nack`, `stomp_disconnect`), as written and as compiled. Events are MESSAGE frames, keyed
//! by destination (metric sets `destination:/queue/a`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::steps::{ConnId, Flush, StepId};
use crate::template::Template;

/// The subprotocols a STOMP connection offers when its connect step names none.
pub const SUBPROTOCOLS: &[&str] = &["v12.stomp", "v11.stomp"];

/// The prefix of a destination's metric set name: `destination:/queue/a`.
pub const SET_PREFIX: &str = "destination:";

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
    /// The subscription to this destination (the connection's latest one).
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
    pub destination: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
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
        destination: String,
        id: Option<Template>,
        ack: AckMode,
        headers: Vec<(String, Template)>,
    },
    Unsubscribe {
        id: Option<Template>,
        destination: Option<String>,
        headers: Vec<(String, Template)>,
    },
    Send {
        destination: String,
        headers: Vec<(String, Template)>,
        body: StompBody,
        flush: Flush,
    },
    /// ACK, or NACK with `nack`.
    Ack {
        nack: bool,
        id: Option<Template>,
        transaction: Option<Template>,
    },
    Disconnect {
        receipt: bool,
        timeout: Duration,
    },
}

/// A SEND's body.
#[derive(Clone, Debug)]
pub enum StompBody {
    Text(Template),
    Bytes(Vec<u8>),
}
