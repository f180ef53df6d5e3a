//! The step model: the steps a VU plays, the handlers that react while it plays them, and
//! their defaults. `crate::validate` builds them from the raw form; agents play them.

use std::time::Duration;

use wsfleet_metrics::catalog::{ErrorKind, RECEIVE_TIMEOUT};

pub use crate::matcher::FrameKind;
use crate::matcher::{Extraction, Matcher};
use crate::template::Template;

mod http;

pub use http::{Http, HttpBody, HttpExpect, JsonTemplate, DEFAULT_HTTP_TIMEOUT, MAX_HTTP_BODY_BYTES};

/// Index of a step in `Scenario::step_names`, used to key per-step metrics.
pub type StepId = u16;

/// Index of a connection in `Scenario::connections`.
pub type ConnId = usize;

#[derive(Clone, Debug)]
pub struct Step {
    pub id: StepId,
    pub name: String,
    pub action: Action,
}

#[derive(Clone, Debug)]
pub enum Action {
    Connect(Box<Connect>),
    Send(Send),
    Receive(Box<Receive>),
    Ping(Ping),
    Close(Close),
    Think(Think),
    Repeat(Repeat),
    Extract(ExtractStep),
    Check(Check),
    Rendezvous(Rendezvous),
    Script(Script),
    If(Box<If>),
    While(Box<While>),
    Http(Box<Http>),
    /// A protocol event (`emit`, Socket.IO).
    Emit(Box<crate::protocol::Emit>),
    MqttPublish(Box<crate::protocol::mqtt::PublishStep>),
    MqttSubscribe(Box<crate::protocol::mqtt::SubscribeStep>),
    MqttUnsubscribe(Box<crate::protocol::mqtt::UnsubscribeStep>),
    MqttDisconnect(Box<crate::protocol::mqtt::DisconnectStep>),
    /// A GraphQL operation (`subscribe`, `query`, `mutation`).
    Operation(Box<crate::protocol::graphql::Operation>),
    /// Ends a GraphQL subscription (`complete`).
    Complete(crate::protocol::graphql::Complete),
    /// A STOMP frame (`stomp_subscribe`, `stomp_send`, ...).
    Stomp(Box<crate::protocol::stomp::StompStep>),
}

/// Runs statements whose top-level `let`s set VU values.
#[derive(Clone, Debug)]
pub struct Script {
    pub script: crate::script::Script,
}

/// Plays `then` when the condition holds, `otherwise` when not.
#[derive(Clone, Debug)]
pub struct If {
    pub condition: crate::script::Script,
    pub then: Vec<Step>,
    pub otherwise: Vec<Step>,
}

/// Plays its steps round after round while the condition holds, at most `max_rounds` times.
#[derive(Clone, Debug)]
pub struct While {
    pub condition: crate::script::Script,
    pub max_rounds: u64,
    /// What reaching `max_rounds` with the condition still true does.
    pub on_max: OnFail,
    pub steps: Vec<Step>,
}

/// The rounds a `while` plays at most unless it says otherwise.
pub const DEFAULT_WHILE_MAX_ROUNDS: u64 = 1_000;

/// VUs wait until enough of them have arrived across the fleet, then go on together.
#[derive(Clone, Debug)]
pub struct Rendezvous {
    /// The point's number in the run (its order among the scenario's rendezvous steps).
    pub point: u32,
    /// VUs to wait for, across the fleet.
    pub count: u64,
    /// The point is released this long after the last arrival even if `count` was not reached.
    pub timeout: Duration,
}

/// The default `timeout` of a rendezvous: since the last arrival.
pub const DEFAULT_RENDEZVOUS_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct Connect {
    pub conn: ConnId,
    pub url: Template,
    /// Extra request headers (`Origin` included when `origin` is given).
    pub headers: Vec<(String, Template)>,
    pub subprotocols: Vec<Template>,
    pub timeout: Duration,
    pub tls: TlsOptions,
    pub proxy: Option<Proxy>,
    pub expect: Expect,
    pub extract: Vec<Extraction>,
    pub keep_open: bool,
    /// Whether anything reads the handshake response's headers (`expect`, `extract`, or an
    /// `extract` step from the handshake); otherwise they are not copied per connection.
    pub keep_headers: bool,
    /// permessage-deflate: what the upgrade offers and how messages are compressed.
    pub compression: crate::compression::Compression,
    /// The protocol spoken over the WebSocket (`None`: plain messages).
    pub protocol: Option<crate::protocol::Protocol>,
}

/// TLS settings of one connect step; the default trusts the public web roots.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsOptions {
    /// PEM CA certificates to trust instead of the public roots (the file's contents).
    pub ca_pem: Option<Vec<u8>>,
    pub insecure_skip_verify: bool,
    pub server_name: Option<String>,
}

impl TlsOptions {
    pub fn is_default(&self) -> bool {
        *self == TlsOptions::default()
    }
}

/// An HTTP proxy reached with CONNECT.
#[derive(Clone, Debug, PartialEq)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    /// `user:password`, sent as `Proxy-Authorization: Basic`.
    pub credentials: Option<String>,
}

/// What the handshake response must be.
#[derive(Clone, Debug)]
pub struct Expect {
    pub status: u16,
    /// `Some("")`: the server must pick none.
    pub subprotocol: Option<String>,
    pub headers: Vec<(String, Template)>,
    /// The permessage-deflate agreement the server must answer with (`Some(None)`: none).
    pub extensions: Option<Option<crate::compression::Agreed>>,
}

#[derive(Clone, Debug)]
pub struct Send {
    pub conn: ConnId,
    pub payload: Payload,
    pub frame: FrameKind,
    /// Frames the message is split into (1: unfragmented).
    pub fragments: u32,
    /// When its bytes go to the socket: with the next wait (`batch`) or at once (`each`).
    pub flush: Flush,
}

/// When a sent message's bytes are handed to the socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flush {
    /// Messages sent one after another without a wait leave together, in as few writes as the
    /// socket takes, when the VU is about to wait (receive, think, pacing, rendezvous, ping,
    /// connect, close, the end of the steps) or 64 KiB are waiting.
    #[default]
    Batch,
    /// Each message is written on its own as it is sent.
    Each,
}

#[derive(Clone, Debug)]
pub enum Payload {
    Text(Template),
    Bytes(Vec<u8>),
}

/// What a failing check or a receive timeout does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFail {
    /// The iteration fails (the default).
    Fail,
    /// The rest of the iteration is skipped; it is not counted as failed.
    Skip,
    /// The next step runs.
    Continue,
}

#[derive(Clone, Debug)]
pub struct Receive {
    pub conn: ConnId,
    pub timeout: Duration,
    /// The send whose time this receive's latency is measured from; `None`: the connection's
    /// most recent send not yet answered.
    pub latency_of: Option<StepId>,
    pub matcher: Option<Matcher>,
    /// `false`: take a message only if one is already there, and set `state`.
    pub wait: bool,
    pub state: Option<String>,
    pub on_timeout: OnFail,
    pub extract: Vec<Extraction>,
}

#[derive(Clone, Debug)]
pub struct Ping {
    pub conn: ConnId,
    /// At most 125 bytes once rendered (longer renderings are cut at a character boundary).
    pub body: Template,
    pub timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct Close {
    pub conn: ConnId,
    pub code: u16,
    /// At most 123 bytes once rendered (longer renderings are cut at a character boundary).
    pub reason: Template,
    pub timeout: Duration,
    pub expect_codes: Option<Vec<u16>>,
    pub extract: Vec<Extraction>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Think {
    Fixed(Duration),
    Uniform(Duration, Duration),
    Exponential(Duration),
}

#[derive(Clone, Debug)]
pub struct Repeat {
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    /// Round N starts at the repeat's start plus N periods (or at once when late).
    pub pacing: Option<Duration>,
    pub steps: Vec<Step>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtractFrom {
    /// The last message a receive (or handler) took on the connection.
    Message,
    Handshake,
}

#[derive(Clone, Debug)]
pub struct ExtractStep {
    pub conn: ConnId,
    pub from: ExtractFrom,
    pub values: Vec<Extraction>,
}

#[derive(Clone, Debug)]
pub struct Check {
    pub value: Template,
    pub condition: Matcher,
    pub on_fail: OnFail,
}

/// What a handler or error rule does to the iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    Fail,
    EndIteration,
    Continue,
    StopVu,
}

/// Reacts to incoming messages while the steps run.
#[derive(Clone, Debug)]
pub struct MessageRule {
    /// Metrics of the messages this rule took and the replies it sent.
    pub id: StepId,
    pub name: String,
    pub conn: Option<ConnId>,
    pub when: Option<Matcher>,
    pub reply: Option<Send>,
    pub extract: Vec<Extraction>,
    pub fail: bool,
    pub pass: bool,
    /// A script condition on the message, after `when`.
    pub condition: Option<crate::script::Script>,
    /// A script run on the message before the reply is built.
    pub script: Option<crate::script::Script>,
    /// Socket.IO: the arguments of the acknowledgement sent to an event that asks for one.
    pub ack: Option<Vec<crate::protocol::JsonTemplate>>,
}

/// Reacts to a server closing a connection the steps still use.
#[derive(Clone, Debug)]
pub struct CloseRule {
    pub id: StepId,
    pub name: String,
    pub conn: Option<ConnId>,
    pub codes: Option<Vec<u16>>,
    pub then: Then,
}

/// Decides what a failing step does.
#[derive(Clone, Debug)]
pub struct ErrorRule {
    pub kinds: Option<Vec<String>>,
    pub steps: Option<Vec<StepId>>,
    pub then: Then,
}

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The state variable a non-waiting receive sets unless it names one.
pub const DEFAULT_STATE_VARIABLE: &str = "msgstate";
/// The connection name of connect steps that give none.
pub const DEFAULT_CONNECTION: &str = "default";

/// Error kinds `on_error` rules may name, besides `http_NNN`: the catalog's error kinds
/// (`metrics/src/catalog.rs`), then `receive_timeout`.
pub const ERROR_KINDS: &[&str] = &ON_ERROR_KINDS;

const ON_ERROR_KINDS: [&str; ErrorKind::COUNT + 1] = {
    let mut kinds = [RECEIVE_TIMEOUT; ErrorKind::COUNT + 1];
    let mut index = 0;
    while index < ErrorKind::COUNT {
        kinds[index] = ErrorKind::NAMES[index];
        index += 1;
    }
    kinds
};

impl Action {
    /// The steps inside this one (`repeat`, both branches of `if`, `while`).
    pub fn inner_steps(&self) -> Vec<&[Step]> {
        match self {
            Action::Repeat(repeat) => vec![&repeat.steps],
            Action::If(branch) => vec![&branch.then, &branch.otherwise],
            Action::While(looped) => vec![&looped.steps],
            _ => Vec::new(),
        }
    }

    /// The same, to change them.
    pub fn inner_steps_mut(&mut self) -> Vec<&mut Vec<Step>> {
        match self {
            Action::Repeat(repeat) => vec![&mut repeat.steps],
            Action::If(branch) => vec![&mut branch.then, &mut branch.otherwise],
            Action::While(looped) => vec![&mut looped.steps],
            _ => Vec::new(),
        }
    }
}

/// Calls `visit` on every step in order, the steps inside repeats too.
pub fn each_step<'a>(steps: &'a [Step], visit: &mut dyn FnMut(&'a Step)) {
    for step in steps {
        visit(step);
        for inner in step.action.inner_steps() {
            each_step(inner, visit);
        }
    }
}

/// A close code a client may put in its close frame (RFC 6455 section 7.4).
pub fn valid_client_close_code(code: u16) -> bool {
    code == 1000 || (1001..=1003).contains(&code) || (1007..=1011).contains(&code) || (3000..=4999).contains(&code)
}

/// `http://[user:password@]host:port`.
pub fn parse_proxy(text: &str) -> Result<Proxy, String> {
    let rest = text
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{text}` is not an http:// proxy URL"))?;
    let rest = rest.trim_end_matches('/');
    let (credentials, address) = match rest.rsplit_once('@') {
        Some((credentials, address)) => (Some(credentials.to_owned()), address),
        None => (None, rest),
    };
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("`{text}` has no port"))?;
    let port: u16 = port.parse().map_err(|_| format!("`{port}` is not a port number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("`{text}` has no host"));
    }
    Ok(Proxy {
        host: host.to_owned(),
        port,
        credentials,
    })
}

/// Bytes written with `\xNN` escapes (other characters stand for their UTF-8 bytes, `\\` for a
/// backslash).
pub fn parse_binary(text: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::with_capacity(text.len() / 4 + 1);
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c != '\\' {
            let mut buffer = [0; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
            continue;
        }
        match chars.next() {
            Some((_, '\\')) => bytes.push(b'\\'),
            Some((_, 'x')) => {
                let high = chars.next().map(|(_, c)| c);
                let low = chars.next().map(|(_, c)| c);
                let (Some(high), Some(low)) = (high.and_then(|c| c.to_digit(16)), low.and_then(|c| c.to_digit(16)))
                else {
                    return Err(format!("`\\x` at byte {at} is not followed by two hex digits"));
                };
                bytes.push((high * 16 + low) as u8);
            }
            _ => {
                return Err(format!(
                    "unknown escape at byte {at}: only `\\xNN` and `\\\\` are allowed"
                ))
            }
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_escapes() {
        assert_eq!(parse_binary("\\x61\\x62c\\\\").unwrap(), b"abc\\".to_vec());
        assert!(parse_binary("\\x6").is_err());
        assert!(parse_binary("\\q").is_err());
    }

    #[test]
    fn proxies() {
        assert_eq!(
            parse_proxy("http://u:p@127.0.0.1:3128").unwrap(),
            Proxy {
                host: "127.0.0.1".into(),
                port: 3128,
                credentials: Some("u:p".into())
            }
        );
        assert!(parse_proxy("socks5://h:1").is_err());
        assert!(parse_proxy("http://h").is_err());
    }
}
