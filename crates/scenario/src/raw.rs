//! The scenario file as written: serde structures that refuse unknown fields. Validation turns
//! them into the typed model in `model`.

use std::collections::BTreeMap;

use serde::Deserialize;

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
    pub load: RawLoad,
    /// Conditions that decide whether the run passed.
    #[serde(default)]
    pub thresholds: BTreeMap<String, crate::thresholds::RawThreshold>,
    /// Steps are written as single-key maps (`- send: {...}`), nested ones too.
    #[serde(with = "serde_norway::with::singleton_map_recursive")]
    pub steps: Vec<RawStep>,
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
    /// What the run does when an agent is lost: `continue`, `redistribute` or `abort`.
    pub on_agent_lost: Option<String>,
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
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnect {
    pub name: Option<String>,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub subprotocols: Vec<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSend {
    pub name: Option<String>,
    /// A text message (LoadRunner's `Buffer`).
    pub text: Option<String>,
    /// Bytes written with `\xNN` escapes (LoadRunner's `Buffer/BIN`).
    pub binary: Option<String>,
    /// Send a `binary` buffer as a text frame (LoadRunner's `IsBinary=0`).
    #[serde(default)]
    pub as_text: bool,
    /// Send a `text` buffer as a binary frame (LoadRunner's `IsBinary=1`).
    #[serde(default)]
    pub as_binary: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReceive {
    pub name: Option<String>,
    pub timeout: Option<String>,
    pub latency_of: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPing {
    pub name: Option<String>,
    pub body: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClose {
    pub name: Option<String>,
    pub code: Option<u16>,
    pub reason: Option<String>,
    pub timeout: Option<String>,
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
    pub steps: Vec<RawStep>,
}
