//! The scenario file as written: serde structures that refuse unknown fields. Validation turns
//! them into the typed model in `model`.

use std::collections::BTreeMap;

use serde::Deserialize;

mod http;

pub use http::{RawHttp, RawHttpBody, RawHttpExpect, RawStatuses};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    pub name: Option<String>,
    pub description: Option<String>,
    /// The default target URL, available as `${target}`.
    pub target: Option<String>,
    pub testserver: Option<RawTestServer>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Data feeds: CSV files whose rows VUs take in turn (`${feed.column}`).
    #[serde(default)]
    pub data: BTreeMap<String, RawFeed>,
    /// One scenario's load; with `scenarios`, each part has its own.
    pub load: Option<RawLoad>,
    /// Conditions that decide whether the run passed.
    #[serde(default)]
    pub thresholds: BTreeMap<String, RawThreshold>,
    /// Steps are written as single-key maps (`- send: {...}`), nested ones too.
    #[serde(default, with = "serde_norway::with::singleton_map_recursive")]
    pub steps: Vec<RawStep>,
    /// Several scenarios in one run, each with its own load, steps and handlers.
    #[serde(default)]
    pub scenarios: Vec<RawPart>,
    /// Rules applied to every incoming message while the steps run (LoadRunner's OnMessage).
    #[serde(default)]
    pub on_message: Vec<RawMessageRule>,
    /// Rules for a connection the server closes while the steps still use it.
    #[serde(default)]
    pub on_close: Vec<RawCloseRule>,
    /// Rules for a failing step: fail the iteration (the default), end it quietly, or go on.
    #[serde(default)]
    pub on_error: Vec<RawErrorRule>,
    /// When sends go to the socket unless a send says otherwise: `batch` (the default) or `each`.
    pub flush: Option<String>,
}

/// One of several scenarios of a run (`scenarios: [{ name, load, steps }]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPart {
    pub name: String,
    pub load: RawLoad,
    #[serde(with = "serde_norway::with::singleton_map_recursive")]
    pub steps: Vec<RawStep>,
    #[serde(default)]
    pub on_message: Vec<RawMessageRule>,
    #[serde(default)]
    pub on_close: Vec<RawCloseRule>,
    #[serde(default)]
    pub on_error: Vec<RawErrorRule>,
}

/// `users: { csv: users.csv, order: unique }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeed {
    pub csv: String,
    /// `sequential` (each VU walks the rows from the top), `random`, or `unique` (a row per VU
    /// across the fleet).
    pub order: Option<String>,
    /// Whether the row changes every `iteration` (the default) or once per `vu`.
    pub per: Option<String>,
    /// `unique` only: what a VU past the last row does: `fail` (the default) or `wrap`.
    pub on_exhausted: Option<String>,
    /// The field separator, one character (default `,`).
    pub delimiter: Option<String>,
}

/// What a message must be like: `{ contains: ok }`, `{ json: /type, equals: joined }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    /// A JSON pointer into the message; the other conditions then apply to the value there.
    pub json: Option<String>,
    #[serde(alias = "text_equals")]
    pub equals: Option<String>,
    #[serde(alias = "text_contains")]
    pub contains: Option<String>,
    pub regex: Option<String>,
    /// Bytes the message starts with, written with `\xNN` escapes.
    pub prefix: Option<String>,
    /// `text` or `binary`: the frame type.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// A protocol event's key (connections that speak a protocol): a Socket.IO event name
    /// (the other conditions then apply to its arguments, a JSON array), a STOMP destination
    /// (`destination` says the same; the conditions apply to the body).
    #[serde(alias = "destination")]
    pub event: Option<String>,
    /// A protocol event's namespace (Socket.IO; `/` is the main one).
    pub namespace: Option<String>,
    /// Headers a protocol event must carry, with these values (STOMP headers); templates.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `name: { json: /token }`, `{ regex: 'id=(\d+)' }`, `{ header: X-Session-Id }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExtract {
    pub json: Option<String>,
    /// The first capture group, or the whole match without groups; after `header`, applied to
    /// the header's value.
    pub regex: Option<String>,
    /// A handshake response header (connect steps), or an HTTP response header (http steps).
    pub header: Option<String>,
    /// A cookie of the VU's jar that applies to the request's URL, by name (http steps).
    pub cookie: Option<String>,
    /// The whole message (`body: true`).
    #[serde(default)]
    pub body: bool,
    /// `code` or `reason` of the server's close frame (close steps).
    pub close: Option<String>,
    /// The value to use when nothing is found; without it, not finding one fails the step.
    pub default: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMessageRule {
    pub name: Option<String>,
    pub connection: Option<String>,
    pub when: Option<RawMatch>,
    /// A reply sent on the same connection.
    pub send: Option<RawSend>,
    #[serde(default)]
    pub extract: BTreeMap<String, RawExtract>,
    /// Fail the VU's iteration (error kind `handler`).
    #[serde(default)]
    pub fail: bool,
    /// Also hand the message to the steps (by default a matched message is the rule's alone).
    #[serde(default)]
    pub pass: bool,
    /// A script condition on the message (`message`), after `when`.
    #[serde(rename = "if")]
    pub condition: Option<String>,
    /// A script run on the message before the reply is built; its top-level `let`s set values.
    pub script: Option<String>,
    /// Socket.IO: acknowledge an event that asks for it with these arguments (JSON values whose
    /// strings are templates), as a client's `socket.on(event, (data, callback) => callback(...))`.
    pub ack: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCloseRule {
    pub name: Option<String>,
    pub connection: Option<String>,
    /// Close codes this rule is for (all when absent).
    pub codes: Option<Vec<u16>>,
    /// `fail` (the default), `end_iteration` or `continue`.
    pub then: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawErrorRule {
    /// Error kinds this rule is for, e.g. `[reset, timeout, receive_timeout]` (all when absent).
    pub kinds: Option<Vec<String>>,
    /// Step names this rule is for (all when absent).
    pub steps: Option<Vec<String>>,
    /// `fail` (the default), `end_iteration`, `continue` or `stop_vu`.
    pub then: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTestServer {
    pub port: u16,
    pub tls: bool,
    pub subprotocols: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoad {
    /// `closed` (concurrent VUs, the default) or `open` (an arrival rate).
    pub model: Option<String>,
    /// Open model: arrivals per second (with `duration`), or where `stages` start (`start_rate`).
    pub rate: Option<f64>,
    pub start_rate: Option<f64>,
    /// Open model caps across the fleet.
    pub max_vus: Option<u64>,
    pub max_handshakes: Option<u64>,
    pub vus: Option<u64>,
    pub iterations: Option<u64>,
    pub duration: Option<String>,
    pub stages: Option<Vec<RawStage>>,
    pub start_vus: Option<u64>,
    pub graceful_stop: Option<String>,
    pub max_duration: Option<String>,
    /// Start each VU iteration on a fixed period, against absolute times.
    pub pacing: Option<String>,
    /// What the run does when an agent is lost: `continue`, `redistribute` or `abort`.
    pub on_agent_lost: Option<String>,
    /// What the run does when an agent attaches while it plays: `wait` or `take_share`.
    pub on_agent_joined: Option<String>,
    /// `model: seek`: how the load steps up and is refined.
    pub seek: Option<RawSeek>,
}

/// `load.seek`: the goal seek's start (`vus` or `rate`), step, highest load, step length and
/// bisection rounds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSeek {
    pub vus: Option<u64>,
    pub rate: Option<f64>,
    pub step: Option<f64>,
    pub max: Option<f64>,
    pub interval: Option<String>,
    pub warmup: Option<String>,
    pub refine: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStage {
    pub duration: String,
    /// Closed model: VUs at the end of the stage.
    pub target: Option<u64>,
    /// Open model: arrivals per second at the end of the stage.
    pub rate: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawStep {
    Connect(RawConnect),
    Send(RawSend),
    Receive(RawReceive),
    Ping(Option<RawPing>),
    Close(Option<RawClose>),
    Think(RawThink),
    Repeat(RawRepeat),
    Extract(RawExtractStep),
    Check(RawCheck),
    Rendezvous(RawRendezvous),
    Http(Box<RawHttp>),
    Script(RawScript),
    If(RawIf),
    While(RawWhile),
    Emit(crate::protocol::RawEmit),
    MqttPublish(crate::protocol::mqtt::RawPublish),
    MqttSubscribe(crate::protocol::mqtt::RawSubscribe),
    MqttUnsubscribe(crate::protocol::mqtt::RawUnsubscribe),
    MqttDisconnect(Option<crate::protocol::mqtt::RawDisconnect>),
    GraphqlSubscribe(crate::protocol::graphql::RawOperation),
    GraphqlQuery(crate::protocol::graphql::RawOperation),
    GraphqlMutation(crate::protocol::graphql::RawOperation),
    GraphqlComplete(crate::protocol::graphql::RawComplete),
    StompSubscribe(crate::protocol::stomp::RawSubscribe),
    StompUnsubscribe(crate::protocol::stomp::RawUnsubscribe),
    StompSend(crate::protocol::stomp::RawStompSend),
    StompAck(Option<crate::protocol::stomp::RawStompAck>),
    StompNack(Option<crate::protocol::stomp::RawStompAck>),
    StompBegin(Option<crate::protocol::stomp::RawStompTransaction>),
    StompCommit(Option<crate::protocol::stomp::RawStompTransaction>),
    StompAbort(Option<crate::protocol::stomp::RawStompTransaction>),
    StompDisconnect(Option<crate::protocol::stomp::RawStompDisconnect>),
}

impl RawStep {
    pub fn kind(&self) -> &'static str {
        match self {
            RawStep::Connect(_) => "connect",
            RawStep::Send(_) => "send",
            RawStep::Receive(_) => "receive",
            RawStep::Ping(_) => "ping",
            RawStep::Close(_) => "close",
            RawStep::Think(_) => "think",
            RawStep::Repeat(_) => "repeat",
            RawStep::Extract(_) => "extract",
            RawStep::Check(_) => "check",
            RawStep::Rendezvous(_) => "rendezvous",
            RawStep::Http(_) => "http",
            RawStep::Emit(_) => "emit",
            RawStep::MqttPublish(_) => "mqtt_publish",
            RawStep::MqttSubscribe(_) => "mqtt_subscribe",
            RawStep::MqttUnsubscribe(_) => "mqtt_unsubscribe",
            RawStep::MqttDisconnect(_) => "mqtt_disconnect",
            RawStep::GraphqlSubscribe(_) => "graphql_subscribe",
            RawStep::GraphqlQuery(_) => "graphql_query",
            RawStep::GraphqlMutation(_) => "graphql_mutation",
            RawStep::GraphqlComplete(_) => "graphql_complete",
            RawStep::StompSubscribe(_) => "stomp_subscribe",
            RawStep::StompUnsubscribe(_) => "stomp_unsubscribe",
            RawStep::StompSend(_) => "stomp_send",
            RawStep::StompAck(_) => "stomp_ack",
            RawStep::StompNack(_) => "stomp_nack",
            RawStep::StompBegin(_) => "stomp_begin",
            RawStep::StompCommit(_) => "stomp_commit",
            RawStep::StompAbort(_) => "stomp_abort",
            RawStep::StompDisconnect(_) => "stomp_disconnect",
            RawStep::Script(_) => "script",
            RawStep::If(_) => "if",
            RawStep::While(_) => "while",
        }
    }

    /// The steps inside this one (`repeat`, `if` with its `else`, `while`).
    pub fn inner_steps(&self) -> Vec<(&'static str, &[RawStep])> {
        match self {
            RawStep::Repeat(repeat) => vec![("steps", &repeat.steps)],
            RawStep::If(branch) => vec![("steps", &branch.steps), ("else", &branch.otherwise)],
            RawStep::While(looped) => vec![("steps", &looped.steps)],
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnect {
    pub name: Option<String>,
    /// The connection's name, for VUs that hold several (LoadRunner's `ID=`).
    pub connection: Option<String>,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub origin: Option<String>,
    #[serde(default)]
    pub subprotocols: Vec<String>,
    pub timeout: Option<String>,
    pub tls: Option<RawTls>,
    /// An HTTP proxy reached with CONNECT: `http://[user:password@]host:port`.
    pub proxy: Option<String>,
    pub expect: Option<RawExpect>,
    #[serde(default)]
    pub extract: BTreeMap<String, RawExtract>,
    /// Keep the connection open across iterations; the step connects only when it is not open.
    #[serde(default)]
    pub keep_open: bool,
    /// permessage-deflate: `off`, `deflate`, `browser`, or its parameters.
    pub compression: Option<RawCompression>,
    /// A protocol spoken over the WebSocket: `socketio` (Socket.IO v4 over Engine.IO v4),
    /// `stomp` (STOMP 1.2), `mqtt` (MQTT 3.1.1 or 5.0).
    pub protocol: Option<String>,
    /// Socket.IO options (with `protocol: socketio`).
    pub socketio: Option<crate::protocol::RawSocketIo>,
    /// GraphQL-over-WebSocket options (with `protocol: graphql`).
    pub graphql: Option<Box<crate::protocol::graphql::RawGraphQl>>,
    /// STOMP options (with `protocol: stomp`).
    pub stomp: Option<Box<crate::protocol::stomp::RawStomp>>,
    /// MQTT options (with `protocol: mqtt`).
    pub mqtt: Option<Box<crate::protocol::mqtt::RawMqtt>>,
}

/// `compression: off | deflate | browser`, or `compression: { <offer parameters>, threshold }`,
/// or `compression: { offers: [<offer parameters>, ...], threshold }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawCompression {
    Named(String),
    Deflate(RawDeflate),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeflate {
    // One offer's parameters, as in `RawDeflateOffer` (serde's `flatten` would lose
    // `deny_unknown_fields`).
    #[serde(default)]
    pub client_no_context_takeover: bool,
    #[serde(default)]
    pub server_no_context_takeover: bool,
    pub server_max_window_bits: Option<u8>,
    pub client_max_window_bits: Option<RawWindowBits>,
    /// Several offers in one header, strictest first (instead of one offer's parameters here).
    pub offers: Option<Vec<RawDeflateOffer>>,
    /// Bytes: data messages smaller than this go uncompressed.
    pub threshold: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeflateOffer {
    #[serde(default)]
    pub client_no_context_takeover: bool,
    #[serde(default)]
    pub server_no_context_takeover: bool,
    pub server_max_window_bits: Option<u8>,
    /// `true` offers it without a value; a number caps it.
    pub client_max_window_bits: Option<RawWindowBits>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawWindowBits {
    Offered(bool),
    Bits(u8),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// A PEM file of CA certificates to trust (instead of the public roots).
    pub ca: Option<String>,
    /// Accept any server certificate. Only for test systems.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// The name to verify the certificate against (default: the URL's host).
    pub server_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    /// The handshake's HTTP status (101 unless the point is a refused upgrade).
    pub status: Option<u16>,
    /// The subprotocol the server must pick; `""` for none.
    pub subprotocol: Option<String>,
    /// Response headers that must have these values.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The permessage-deflate agreement the server must answer with; `""` for none.
    pub extensions: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSend {
    pub name: Option<String>,
    pub connection: Option<String>,
    /// A text message (LoadRunner's `Buffer`).
    pub text: Option<String>,
    /// Bytes written with `\xNN` escapes (LoadRunner's `Buffer/BIN`).
    pub binary: Option<String>,
    /// The contents of a file, relative to the scenario file (LoadRunner's `Buffer/File`).
    pub file: Option<String>,
    /// Split the message into this many frames (one data frame and continuation frames).
    pub fragments: Option<u32>,
    /// Send a `binary` buffer as a text frame (LoadRunner's `IsBinary=0`).
    #[serde(default)]
    pub as_text: bool,
    /// Send a `text` buffer as a binary frame (LoadRunner's `IsBinary=1`).
    #[serde(default)]
    pub as_binary: bool,
    /// `batch` (with the sends that follow it, at the next wait) or `each` (at once); the
    /// scenario's `flush` by default.
    pub flush: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReceive {
    pub name: Option<String>,
    pub connection: Option<String>,
    pub timeout: Option<String>,
    pub latency_of: Option<String>,
    /// Only a message like this one counts; others stay queued for later receives.
    #[serde(rename = "match")]
    pub matcher: Option<RawMatch>,
    /// `false`: do not wait; take a message only if one is already there and set `state`.
    pub wait: Option<bool>,
    /// The variable a non-waiting receive sets to `received` or `none` (default `msgstate`).
    pub state: Option<String>,
    /// On timeout: `fail` the iteration (the default), `skip` the rest of it, or `continue`.
    pub on_timeout: Option<String>,
    #[serde(default)]
    pub extract: BTreeMap<String, RawExtract>,
}

/// Values from the last message a receive took, or from the handshake response.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExtractStep {
    pub name: Option<String>,
    pub connection: Option<String>,
    /// `message` (the last one received, the default) or `handshake`.
    pub from: Option<String>,
    pub values: BTreeMap<String, RawExtract>,
}

/// LoadRunner's `lr_rendezvous`: VUs wait here until `count` (or `share` of the part's peak
/// VUs) have arrived across the fleet, or `timeout` passes after the last arrival, then all go on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRendezvous {
    pub name: Option<String>,
    pub count: Option<u64>,
    /// A percentage, e.g. `50%`.
    pub share: Option<String>,
    pub timeout: Option<String>,
}

/// A condition on a value, e.g. `{ value: '${msgstate}', equals: received }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    pub name: Option<String>,
    pub value: String,
    pub json: Option<String>,
    pub equals: Option<String>,
    pub contains: Option<String>,
    pub regex: Option<String>,
    /// When the check fails: `fail` the iteration (the default), `skip` the rest of it, or
    /// `continue`.
    pub on_fail: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPing {
    pub name: Option<String>,
    pub connection: Option<String>,
    pub body: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClose {
    pub name: Option<String>,
    pub connection: Option<String>,
    pub code: Option<u16>,
    pub reason: Option<String>,
    pub timeout: Option<String>,
    /// Close codes the server may answer with (any when absent).
    pub expect_codes: Option<Vec<u16>>,
    #[serde(default)]
    pub extract: BTreeMap<String, RawExtract>,
}

/// `think: 1s`, `think: { uniform: [500ms, 1500ms] }` or `think: { exponential: 1s }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawThink {
    Fixed(String),
    Spec(RawThinkSpec),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThinkSpec {
    pub name: Option<String>,
    pub fixed: Option<String>,
    pub uniform: Option<[String; 2]>,
    pub exponential: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRepeat {
    pub name: Option<String>,
    pub count: Option<u64>,
    pub duration: Option<String>,
    /// Start each round on a fixed period, against absolute times.
    pub pacing: Option<String>,
    pub steps: Vec<RawStep>,
}

/// `script: 'let id = uuid();'` or `script: { name: sign, run: '...' }`: statements whose
/// top-level `let`s set VU values.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawScript {
    Code(String),
    Spec(RawScriptSpec),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScriptSpec {
    pub name: Option<String>,
    pub run: String,
}

impl RawScript {
    pub fn code(&self) -> &str {
        match self {
            RawScript::Code(code) => code,
            RawScript::Spec(spec) => &spec.run,
        }
    }

    /// The field that holds the code, under the step's field.
    pub fn code_field(&self) -> &'static str {
        match self {
            RawScript::Code(_) => "",
            RawScript::Spec(_) => ".run",
        }
    }
}

/// `if: { condition: 'reply == "ok"', steps: [...], else: [...] }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIf {
    pub name: Option<String>,
    /// A script expression that gives `true` or `false`.
    pub condition: String,
    pub steps: Vec<RawStep>,
    #[serde(default, rename = "else")]
    pub otherwise: Vec<RawStep>,
}

/// `while: { condition: '...', max: 100, steps: [...] }`: rounds while the condition holds,
/// at most `max` of them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWhile {
    pub name: Option<String>,
    pub condition: String,
    /// The most rounds (default 1,000).
    pub max: Option<u64>,
    /// When `max` rounds ran and the condition still holds: `fail` (the default), `skip` the
    /// rest of the iteration, or `continue`.
    pub on_max: Option<String>,
    pub steps: Vec<RawStep>,
}

/// One part of a scenario as validation walks it: the single scenario of a plain file, or one
/// of `scenarios`.
pub struct PartView<'a> {
    /// `None` for a plain file's single scenario.
    pub name: Option<&'a str>,
    /// The path of the part's fields in the file: `""` or `scenarios[N].`.
    pub path: String,
    pub load: Option<&'a RawLoad>,
    pub steps: &'a [RawStep],
    pub on_message: &'a [RawMessageRule],
    pub on_close: &'a [RawCloseRule],
    pub on_error: &'a [RawErrorRule],
}

impl RawScenario {
    /// The parts to validate: the `scenarios`, or the file itself.
    pub fn part_views(&self) -> Vec<PartView<'_>> {
        if self.scenarios.is_empty() {
            return vec![PartView {
                name: None,
                path: String::new(),
                load: self.load.as_ref(),
                steps: &self.steps,
                on_message: &self.on_message,
                on_close: &self.on_close,
                on_error: &self.on_error,
            }];
        }
        self.scenarios
            .iter()
            .enumerate()
            .map(|(index, part)| PartView {
                name: Some(&part.name),
                path: format!("scenarios[{index}]."),
                load: Some(&part.load),
                steps: &part.steps,
                on_message: &part.on_message,
                on_close: &part.on_close,
                on_error: &part.on_error,
            })
            .collect()
    }
}

/// A threshold as written: a condition, or a condition with its abort settings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawThreshold {
    Condition(String),
    Full(RawThresholdSpec),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThresholdSpec {
    pub condition: String,
    #[serde(default)]
    pub abort_on_fail: bool,
    pub delay: Option<String>,
}
