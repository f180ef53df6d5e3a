//! MQTT over WebSocket (`connect: { protocol: mqtt, mqtt: {...} }`): the connection's options
//! and the MQTT steps (`publish`, `subscribe`, `unsubscribe`, `disconnect`) as written
//! ([`RawMqtt`], [`RawPublish`], ...) and as compiled ([`Mqtt`], [`Publish`], ...), and topic
//! names and filters ([`topic`]). The compiling is in `compile`, with every problem located
//! at its field; the agent's MQTT session plays the result.

mod compile;
pub mod topic;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

pub(crate) use self::compile::{
    compile_disconnect, compile_options, compile_publish, compile_subscribe, compile_unsubscribe, Fields,
};
use crate::template::Template;

/// The WebSocket subprotocol a connect step offers when it gives none.
pub const SUBPROTOCOL: &str = "mqtt";

/// The prefix of the metric set names of MQTT deliveries and publishes: `topic:` and the topic
/// or topic filter as written (variables as `+`), e.g. `topic:sensors/+/temperature`.
pub const TOPIC_SET_PREFIX: &str = "topic:";

/// The keep-alive when `keep_alive` is not given (MQTT.js's and paho's default).
pub const DEFAULT_KEEP_ALIVE: u16 = 60;

/// How long `subscribe` and `unsubscribe` wait for their acknowledgement, and a `publish` with
/// `ack` for its PUBACK or PUBCOMP, unless given (MQTT.js's default is 30 s; a load test wants
/// to know sooner).
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// `mqtt: { version, client_id, clean, username, password, keep_alive, will, delivery_stamp,
/// properties }`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    /// `3.1.1` (the default) or `5`.
    pub version: Option<RawScalar>,
    /// A template; without it each connection gets a random id (`wsfleet-` and 16 hex digits).
    pub client_id: Option<String>,
    /// Clean session (3.1.1) or clean start (5.0); `true` by default.
    pub clean: Option<bool>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Seconds (`30`) or a duration (`30s`); 0 turns keep-alive off; 60 s by default.
    pub keep_alive: Option<RawScalar>,
    pub will: Option<RawWill>,
    /// Where publishes carry their send stamp: `property` (5.0's default), `payload`, or `off`
    /// (3.1.1's default).
    pub delivery_stamp: Option<String>,
    /// MQTT 5.0 CONNECT properties.
    pub properties: Option<RawConnectProperties>,
}

/// A number or a string, as YAML writes `5`, `3.1.1` or `30s`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawScalar {
    Number(u64),
    Float(f64),
    Text(String),
}

impl RawScalar {
    fn text(&self) -> String {
        match self {
            RawScalar::Number(number) => number.to_string(),
            RawScalar::Float(number) => number.to_string(),
            RawScalar::Text(text) => text.clone(),
        }
    }
}

/// `will: { topic, payload, qos, retain, delay, properties }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWill {
    pub topic: String,
    pub payload: Option<RawPayload>,
    pub qos: Option<u8>,
    #[serde(default)]
    pub retain: bool,
    /// MQTT 5.0: how long the broker waits before publishing it (`5s`).
    pub delay: Option<String>,
    pub properties: Option<RawMessageProperties>,
}

/// `properties: { session_expiry, receive_maximum, maximum_packet_size, user_properties }`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnectProperties {
    /// How long the broker keeps the session after the connection ends (`1h`).
    pub session_expiry: Option<String>,
    pub receive_maximum: Option<u16>,
    pub maximum_packet_size: Option<u32>,
    #[serde(default)]
    pub user_properties: BTreeMap<String, String>,
}

/// MQTT 5.0 properties of a message: `{ user_properties, message_expiry, content_type,
/// response_topic, correlation_data, utf8 }`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMessageProperties {
    /// Values are templates.
    #[serde(default)]
    pub user_properties: BTreeMap<String, String>,
    /// How long the broker keeps the message for subscribers that have not had it (`30s`).
    pub message_expiry: Option<String>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    /// A template; sent as its UTF-8 bytes.
    pub correlation_data: Option<String>,
    /// Payload format indicator: the payload is UTF-8.
    #[serde(default)]
    pub utf8: bool,
}

/// A payload: a template string, or `{ text: ... }`, or `{ file: path }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawPayload {
    Text(String),
    Spec(RawPayloadSpec),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPayloadSpec {
    pub text: Option<String>,
    /// A file sent as it is, relative to the scenario file.
    pub file: Option<String>,
}

/// `publish: { topic, payload, qos, retain, properties, ack }`: MQTT.js's
/// `client.publish(topic, payload, { qos, retain, properties })`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPublish {
    pub name: Option<String>,
    pub connection: Option<String>,
    /// A template; no wildcards.
    pub topic: String,
    pub payload: Option<RawPayload>,
    /// 0 (the default), 1 or 2.
    pub qos: Option<u8>,
    #[serde(default)]
    pub retain: bool,
    pub properties: Option<RawMessageProperties>,
    /// Wait for the PUBACK (QoS 1) or PUBCOMP (QoS 2) before the next step; without it the
    /// acknowledgement is still awaited and timed, in the background.
    pub ack: Option<RawAckWait>,
    /// `batch` or `each`, as for `send`.
    pub flush: Option<String>,
}

/// `ack: { timeout }`; `ack: {}` waits with the default timeout.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAckWait {
    pub timeout: Option<String>,
}

/// `subscribe: { filters, qos, timeout, user_properties }`: MQTT.js's
/// `client.subscribe(filters, { qos })`; waits for the SUBACK.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubscribe {
    pub name: Option<String>,
    pub connection: Option<String>,
    /// Filters: strings (with `qos` below), or `{ filter, qos, no_local, retain_as_published,
    /// retain_handling }`.
    pub filters: Vec<RawFilter>,
    /// The QoS of filters written as strings (0 by default).
    pub qos: Option<u8>,
    pub timeout: Option<String>,
    /// MQTT 5.0; values are templates.
    #[serde(default)]
    pub user_properties: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawFilter {
    Filter(String),
    Spec(RawFilterSpec),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFilterSpec {
    pub filter: String,
    pub qos: Option<u8>,
    /// MQTT 5.0 subscription options.
    #[serde(default)]
    pub no_local: bool,
    #[serde(default)]
    pub retain_as_published: bool,
    /// `send` (0, the default), `new` (1: only for a new subscription) or `never` (2).
    pub retain_handling: Option<String>,
}

/// `unsubscribe: { filters, timeout }`: waits for the UNSUBACK.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnsubscribe {
    pub name: Option<String>,
    pub connection: Option<String>,
    pub filters: Vec<String>,
    pub timeout: Option<String>,
    #[serde(default)]
    pub user_properties: BTreeMap<String, String>,
}

/// `disconnect: { with_will }`: sends DISCONNECT, then closes the WebSocket.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDisconnect {
    pub name: Option<String>,
    pub connection: Option<String>,
    /// MQTT 5.0: ask the broker to publish the will anyway (reason code 0x04).
    #[serde(default)]
    pub with_will: bool,
}

/// The MQTT version a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V311,
    V5,
}

/// Where a connection's publishes carry their send stamp, for subscribers' `delivery_latency`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStamp {
    /// The user property `wsfleet-sent` (5.0 only; the default there).
    Property,
    /// In front of the payload, stripped by the subscriber (3.1.1 and 5.0).
    Payload,
    /// None (3.1.1's default).
    Off,
}

/// A connection's MQTT options, compiled.
#[derive(Clone, Debug)]
pub struct Mqtt {
    pub version: Version,
    /// `None`: a random id per connection.
    pub client_id: Option<Template>,
    pub clean: bool,
    pub username: Option<Template>,
    pub password: Option<Template>,
    /// Seconds; 0 is off.
    pub keep_alive: u16,
    pub will: Option<Will>,
    pub delivery_stamp: DeliveryStamp,
    /// Seconds.
    pub session_expiry: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub maximum_packet_size: Option<u32>,
    pub user_properties: Vec<(String, Template)>,
}

#[derive(Clone, Debug)]
pub struct Will {
    pub topic: Template,
    pub payload: Payload,
    pub qos: u8,
    pub retain: bool,
    /// Seconds.
    pub delay: Option<u32>,
    pub properties: MessageProperties,
}

/// A payload, compiled.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    Text(Template),
    Bytes(Vec<u8>),
}

/// MQTT 5.0 message properties, compiled (empty for 3.1.1).
#[derive(Clone, Debug, Default)]
pub struct MessageProperties {
    pub user_properties: Vec<(String, Template)>,
    /// Seconds.
    pub message_expiry: Option<u32>,
    pub content_type: Option<Template>,
    pub response_topic: Option<Template>,
    pub correlation_data: Option<Template>,
    pub utf8: bool,
}

/// A `publish` step's message.
#[derive(Clone, Debug)]
pub struct Publish {
    pub topic: Template,
    pub payload: Payload,
    pub qos: u8,
    pub retain: bool,
    pub properties: MessageProperties,
    /// Wait this long for the acknowledgement before the next step (QoS 1 and 2).
    pub ack_timeout: Option<Duration>,
}

/// One filter of a `subscribe` step.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    /// As written: a deliveries' metric set is named after it.
    pub written: String,
    pub filter: Template,
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    /// 0, 1 or 2.
    pub retain_handling: u8,
}

#[derive(Clone, Debug)]
pub struct Subscribe {
    pub filters: Vec<Filter>,
    pub timeout: Duration,
    pub user_properties: Vec<(String, Template)>,
}

#[derive(Clone, Debug)]
pub struct Unsubscribe {
    pub filters: Vec<Template>,
    pub timeout: Duration,
    pub user_properties: Vec<(String, Template)>,
}

#[derive(Clone, Debug)]
pub struct Disconnect {
    pub with_will: bool,
}

/// An `mqtt_publish` step.
#[derive(Clone, Debug)]
pub struct PublishStep {
    pub conn: crate::steps::ConnId,
    pub publish: Publish,
    /// The metric set of its topic (`topic:` and the topic as written, variables as `+`):
    /// `events_sent`, and for QoS 1 and 2 `acks_received` and `ack_latency`.
    pub topic_set: crate::steps::StepId,
    pub flush: crate::steps::Flush,
}

/// An `mqtt_subscribe` step.
#[derive(Clone, Debug)]
pub struct SubscribeStep {
    pub conn: crate::steps::ConnId,
    pub subscribe: Subscribe,
}

/// An `mqtt_unsubscribe` step.
#[derive(Clone, Debug)]
pub struct UnsubscribeStep {
    pub conn: crate::steps::ConnId,
    pub unsubscribe: Unsubscribe,
}

/// An `mqtt_disconnect` step.
#[derive(Clone, Debug)]
pub struct DisconnectStep {
    pub conn: crate::steps::ConnId,
    pub disconnect: Disconnect,
}

/// The metric set key of a topic or filter as written: each level holding a variable becomes
/// `+`, so `devices/${vu}/state` counts with `devices/+/state`.
pub fn set_key(written: &str) -> String {
    written
        .split('/')
        .map(|level| if level.contains("${") { "+" } else { level })
        .collect::<Vec<_>>()
        .join("/")
}

/// The file a payload names, if any (files travel with the scenario).
pub fn payload_file(payload: Option<&RawPayload>) -> Option<&str> {
    match payload? {
        RawPayload::Spec(spec) => spec.file.as_deref(),
        RawPayload::Text(_) => None,
    }
}
