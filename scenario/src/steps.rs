//! The steps a VU plays and the handlers that react while it plays them, with the validation
//! that builds them from the raw form.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use regex::Regex;
use wsfleet_metrics::catalog::{ErrorKind, RECEIVE_TIMEOUT};

use crate::error::{closest, Problems};
use crate::matcher::{Extraction, Matcher, Source};
use crate::raw::*;
use crate::template::Template;

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
}

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
}

#[derive(Clone, Debug)]
pub struct Send {
    pub conn: ConnId,
    pub payload: Payload,
    pub frame: FrameKind,
    /// Frames the message is split into (1: unfragmented).
    pub fragments: u32,
}

#[derive(Clone, Debug)]
pub enum Payload {
    Text(Template),
    Bytes(Vec<u8>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    Text,
    Binary,
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

pub(crate) fn duration_field(
    text: Option<&str>,
    field: &str,
    default: Duration,
    problems: &mut Problems<'_>,
) -> Duration {
    match text.map(crate::duration::parse_duration) {
        None => default,
        Some(Ok(duration)) => duration,
        Some(Err(message)) => {
            problems.add(field, message, None);
            default
        }
    }
}

pub(crate) fn compile_template(
    text: &str,
    field: &str,
    known: &[String],
    problems: &mut Problems<'_>,
) -> Option<Template> {
    use crate::template::BUILTIN_VARIABLES;
    let is_known = |name: &str| known.iter().any(|candidate| candidate == name);
    match Template::compile(text, &is_known) {
        Ok(template) => Some(template),
        Err(error) => {
            let candidates = || {
                known
                    .iter()
                    .map(String::as_str)
                    .chain(BUILTIN_VARIABLES.iter().copied())
            };
            let hint = match &error {
                crate::template::TemplateError::Unknown(name) => {
                    closest(name, candidates()).map(|close| format!("did you mean `${{{close}}}`?"))
                }
                _ => None,
            };
            let hint = hint.or_else(|| Some(format!("known here: {}", candidates().collect::<Vec<_>>().join(", "))));
            problems.add(field, error.to_string(), hint);
            None
        }
    }
}

fn compile_regex(text: &str, field: &str, problems: &mut Problems<'_>) -> Option<Regex> {
    match Regex::new(text) {
        Ok(regex) => Some(regex),
        Err(error) => {
            problems.add(field, format!("not a valid regular expression: {error}"), None);
            None
        }
    }
}

fn json_pointer(text: &str, field: &str, problems: &mut Problems<'_>) -> String {
    if !(text.is_empty() || text.starts_with('/')) {
        problems.add(
            field,
            format!("`{text}` is not a JSON pointer"),
            Some(format!("pointers start with `/`, e.g. `/{text}`")),
        );
    }
    text.to_owned()
}

fn on_fail(text: Option<&str>, field: &str, problems: &mut Problems<'_>) -> OnFail {
    match text {
        None | Some("fail") => OnFail::Fail,
        Some("skip") => OnFail::Skip,
        Some("continue") => OnFail::Continue,
        Some(other) => {
            problems.add(
                field,
                format!("unknown choice `{other}`"),
                Some("use `fail`, `skip` (the rest of the iteration) or `continue`".into()),
            );
            OnFail::Fail
        }
    }
}

fn then(text: Option<&str>, field: &str, allow_stop: bool, problems: &mut Problems<'_>) -> Then {
    match text {
        None | Some("fail") => Then::Fail,
        Some("end_iteration") => Then::EndIteration,
        Some("continue") => Then::Continue,
        Some("stop_vu") if allow_stop => Then::StopVu,
        Some(other) => {
            let choices = if allow_stop {
                "fail, end_iteration, continue, stop_vu"
            } else {
                "fail, end_iteration, continue"
            };
            problems.add(
                field,
                format!("unknown choice `{other}`"),
                Some(format!("use one of: {choices}")),
            );
            Then::Fail
        }
    }
}

/// Calls `visit` on every step in order, the steps inside repeats too.
pub fn each_step<'a>(steps: &'a [Step], visit: &mut dyn FnMut(&'a Step)) {
    for step in steps {
        visit(step);
        if let Action::Repeat(repeat) = &step.action {
            each_step(&repeat.steps, visit);
        }
    }
}

/// Calls `visit` on every raw step in order, the steps inside repeats too.
pub(crate) fn each_raw_step<'a>(steps: &'a [RawStep], visit: &mut dyn FnMut(&'a RawStep)) {
    for step in steps {
        visit(step);
        if let RawStep::Repeat(repeat) = step {
            each_raw_step(&repeat.steps, visit);
        }
    }
}

/// Every variable the scenario's steps and handlers set, so templates anywhere may read them.
pub(crate) fn defined_variables(parts: &[PartView<'_>]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for part in parts {
        each_raw_step(part.steps, &mut |step| match step {
            RawStep::Connect(connect) => names.extend(connect.extract.keys().cloned()),
            RawStep::Receive(receive) => {
                names.extend(receive.extract.keys().cloned());
                if receive.wait == Some(false) || receive.state.is_some() {
                    names.insert(
                        receive
                            .state
                            .clone()
                            .unwrap_or_else(|| DEFAULT_STATE_VARIABLE.to_owned()),
                    );
                }
            }
            RawStep::Close(Some(close)) => names.extend(close.extract.keys().cloned()),
            RawStep::Extract(extract) => names.extend(extract.values.keys().cloned()),
            _ => {}
        });
        for rule in part.on_message {
            names.extend(rule.extract.keys().cloned());
        }
    }
    names
}

/// Connection names in order of first appearance in connect steps.
pub(crate) fn connection_names(steps: &[RawStep]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    each_raw_step(steps, &mut |step| {
        if let RawStep::Connect(connect) = step {
            let name = connect.connection.as_deref().unwrap_or(DEFAULT_CONNECTION);
            if !names.iter().any(|known| known == name) {
                names.push(name.to_owned());
            }
        }
    });
    names
}

pub(crate) fn count_kinds(steps: &[RawStep]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    each_raw_step(steps, &mut |step| *counts.entry(step.kind()).or_insert(0) += 1);
    counts
}

pub(crate) struct StepBuilder<'f> {
    pub known: Vec<String>,
    pub names: Vec<String>,
    /// Send steps seen so far (name, id), for `latency_of`.
    pub send_names: Vec<(String, StepId)>,
    pub kind_counts: BTreeMap<&'static str, usize>,
    pub kind_seen: BTreeMap<&'static str, usize>,
    pub explicit: HashSet<String>,
    pub connections: Vec<String>,
    /// Files shipped with the scenario, by the name written in it.
    pub files: &'f BTreeMap<String, Vec<u8>>,
    /// Put before every metric name of the part (`listeners.`), empty for a single scenario.
    pub name_prefix: String,
    /// Rendezvous points so far in the run (all parts).
    pub rendezvous_points: u32,
    /// The part's peak VUs, for a rendezvous `share`.
    pub peak_vus: u64,
}

impl StepBuilder<'_> {
    pub fn steps(
        &mut self,
        raw: &[RawStep],
        path: &str,
        connected: &mut Vec<bool>,
        problems: &mut Problems<'_>,
    ) -> Vec<Step> {
        raw.iter()
            .enumerate()
            .map(|(index, step)| self.step(step, &format!("{path}[{index}]"), connected, problems))
            .collect()
    }

    /// Registers a metric name: the explicit one, or the kind (numbered when it repeats).
    pub fn name(
        &mut self,
        explicit: Option<&String>,
        kind: &'static str,
        field: &str,
        problems: &mut Problems<'_>,
    ) -> (StepId, String) {
        let seen = self.kind_seen.entry(kind).or_insert(0);
        *seen += 1;
        let name = match explicit {
            Some(name) => {
                if !self.explicit.insert(format!("{}{name}", self.name_prefix)) {
                    problems.add(
                        &format!("{field}.name"),
                        format!("step name `{name}` is used twice"),
                        Some("give each step its own name".into()),
                    );
                }
                name.clone()
            }
            None if self.kind_counts.get(kind).copied().unwrap_or(0) <= 1 => kind.to_owned(),
            None => format!("{kind}#{seen}"),
        };
        let id = self.names.len() as StepId;
        self.names.push(format!("{}{name}", self.name_prefix));
        (id, name)
    }

    /// The connection a step acts on: the one it names, or the only one there is.
    pub fn connection(&self, named: Option<&String>, field: &str, problems: &mut Problems<'_>) -> ConnId {
        match named {
            Some(name) => match self.connections.iter().position(|known| known == name) {
                Some(index) => index,
                None => {
                    let hint = closest(name, self.connections.iter().map(String::as_str))
                        .map(|close| format!("did you mean `{close}`?"))
                        .or_else(|| {
                            Some(format!(
                                "connect steps open: {}",
                                if self.connections.is_empty() {
                                    "none".to_owned()
                                } else {
                                    self.connections.join(", ")
                                }
                            ))
                        });
                    problems.add(
                        &format!("{field}.connection"),
                        format!("no connect step opens a connection named `{name}`"),
                        hint,
                    );
                    0
                }
            },
            None => {
                if self.connections.len() > 1 {
                    problems.add(
                        field,
                        format!(
                            "this VU holds several connections ({}); say which one with `connection:`",
                            self.connections.join(", ")
                        ),
                        None,
                    );
                }
                0
            }
        }
    }

    fn require_connection(
        &self,
        connected: &[bool],
        conn: ConnId,
        field: &str,
        kind: &str,
        problems: &mut Problems<'_>,
    ) {
        if !connected.get(conn).copied().unwrap_or(false) {
            let which = match self.connections.get(conn) {
                Some(name) if self.connections.len() > 1 => format!(" `{name}`"),
                _ => String::new(),
            };
            problems.add(
                field,
                format!("`{kind}` needs an open connection{which}, and none is open at this point"),
                Some("add a `connect` step before it".into()),
            );
        }
    }

    fn file(&self, name: &str, field: &str, problems: &mut Problems<'_>) -> Vec<u8> {
        match self.files.get(name) {
            Some(bytes) => bytes.clone(),
            None => {
                problems.add(
                    field,
                    format!("file `{name}` did not come with the scenario"),
                    Some("files are read next to the scenario file when it is loaded from a path; a scenario sent as text cannot name files".into()),
                );
                Vec::new()
            }
        }
    }

    fn matcher(&self, raw: &RawMatch, field: &str, problems: &mut Problems<'_>) -> Matcher {
        let template = |text: &Option<String>, sub: &str, problems: &mut Problems<'_>| {
            text.as_deref()
                .and_then(|text| compile_template(text, &format!("{field}.{sub}"), &self.known, problems))
        };
        let kind = match raw.kind.as_deref() {
            None => None,
            Some("text") => Some(FrameKind::Text),
            Some("binary") => Some(FrameKind::Binary),
            Some(other) => {
                problems.add(
                    &format!("{field}.type"),
                    format!("unknown frame type `{other}`"),
                    Some("use `text` or `binary`".into()),
                );
                None
            }
        };
        let prefix = raw.prefix.as_deref().and_then(|text| match parse_binary(text) {
            Ok(bytes) => Some(bytes),
            Err(message) => {
                problems.add(&format!("{field}.prefix"), message, None);
                None
            }
        });
        if raw.json.is_none()
            && raw.equals.is_none()
            && raw.contains.is_none()
            && raw.regex.is_none()
            && raw.prefix.is_none()
            && raw.kind.is_none()
        {
            problems.add(
                field,
                "a match needs at least one of `equals`, `contains`, `regex`, `json`, `prefix` or `type`",
                None,
            );
        }
        Matcher {
            json: raw
                .json
                .as_deref()
                .map(|pointer| json_pointer(pointer, &format!("{field}.json"), problems)),
            equals: template(&raw.equals, "equals", problems),
            contains: template(&raw.contains, "contains", problems),
            regex: raw
                .regex
                .as_deref()
                .and_then(|text| compile_regex(text, &format!("{field}.regex"), problems)),
            prefix,
            kind,
        }
    }

    /// Extractions of a step; `allowed` lists the sources this place offers.
    fn extractions(
        &self,
        raw: &BTreeMap<String, RawExtract>,
        field: &str,
        allowed: &[&str],
        problems: &mut Problems<'_>,
    ) -> Vec<Extraction> {
        raw.iter()
            .filter_map(|(var, spec)| {
                let field = format!("{field}.{var}");
                if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
                    problems.add(
                        &field,
                        format!("`{var}` cannot be a variable name"),
                        Some("use letters, digits, `_`, `-` and `.`".into()),
                    );
                }
                let mut sources: Vec<(&str, Source)> = Vec::new();
                if let Some(pointer) = &spec.json {
                    sources.push((
                        "json",
                        Source::Json(json_pointer(pointer, &format!("{field}.json"), problems)),
                    ));
                }
                if let Some(header) = &spec.header {
                    sources.push(("header", Source::Header(header.clone())));
                }
                if spec.body {
                    sources.push(("body", Source::Body));
                }
                match spec.close.as_deref() {
                    None => {}
                    Some("code") => sources.push(("close", Source::CloseCode)),
                    Some("reason") => sources.push(("close", Source::CloseReason)),
                    Some(other) => problems.add(
                        &format!("{field}.close"),
                        format!("unknown close field `{other}`"),
                        Some("use `code` or `reason`".into()),
                    ),
                }
                if sources.is_empty() && spec.regex.is_some() {
                    sources.push(("regex", Source::Regex));
                }
                let source = match sources.len() {
                    1 => sources.pop()?,
                    0 => {
                        problems.add(
                            &field,
                            "say where the value comes from",
                            Some(format!("give one of: {}", allowed.join(", "))),
                        );
                        return None;
                    }
                    _ => {
                        problems.add(&field, "give only one source for a value", None);
                        return None;
                    }
                };
                if !allowed.contains(&source.0) {
                    problems.add(
                        &format!("{field}.{}", source.0),
                        format!("`{}` cannot be extracted here", source.0),
                        Some(format!("here: {}", allowed.join(", "))),
                    );
                    return None;
                }
                let regex = spec
                    .regex
                    .as_deref()
                    .and_then(|text| compile_regex(text, &format!("{field}.regex"), problems));
                Some(Extraction {
                    var: var.clone(),
                    source: source.1,
                    regex,
                    default: spec.default.clone(),
                })
            })
            .collect()
    }

    fn step(&mut self, raw: &RawStep, path: &str, connected: &mut Vec<bool>, problems: &mut Problems<'_>) -> Step {
        let kind = raw.kind();
        let field = format!("{path}.{kind}");
        match raw {
            RawStep::Connect(connect) => {
                let (id, name) = self.name(connect.name.as_ref(), kind, &field, problems);
                let conn = self
                    .connections
                    .iter()
                    .position(|known| known == connect.connection.as_deref().unwrap_or(DEFAULT_CONNECTION))
                    .unwrap_or(0);
                let action = self.connect(connect, conn, &field, problems);
                if let Some(slot) = connected.get_mut(conn) {
                    *slot = true;
                }
                Step {
                    id,
                    name,
                    action: Action::Connect(Box::new(action)),
                }
            }
            RawStep::Send(send) => {
                let (id, name) = self.name(send.name.as_ref(), kind, &field, problems);
                let conn = self.connection(send.connection.as_ref(), &field, problems);
                self.require_connection(connected, conn, &field, kind, problems);
                let action = self.send(send, conn, &field, problems);
                self.send_names.push((name.clone(), id));
                Step {
                    id,
                    name,
                    action: Action::Send(action),
                }
            }
            RawStep::Receive(receive) => {
                let (id, name) = self.name(receive.name.as_ref(), kind, &field, problems);
                let conn = self.connection(receive.connection.as_ref(), &field, problems);
                self.require_connection(connected, conn, &field, kind, problems);
                let action = self.receive(receive, conn, &field, problems);
                Step {
                    id,
                    name,
                    action: Action::Receive(Box::new(action)),
                }
            }
            RawStep::Ping(ping) => {
                let empty = RawPing::default();
                let ping = ping.as_ref().unwrap_or(&empty);
                let (id, name) = self.name(ping.name.as_ref(), kind, &field, problems);
                let conn = self.connection(ping.connection.as_ref(), &field, problems);
                self.require_connection(connected, conn, &field, kind, problems);
                let text = ping.body.clone().unwrap_or_default();
                let body = compile_template(&text, &format!("{field}.body"), &self.known, problems)
                    .unwrap_or_else(|| Template::literal(""));
                if body.as_literal().is_some_and(|literal| literal.len() > 125) {
                    problems.add(
                        &format!("{field}.body"),
                        format!(
                            "a ping body is at most 125 bytes (RFC 6455), this one is {}",
                            text.len()
                        ),
                        None,
                    );
                }
                let timeout = duration_field(
                    ping.timeout.as_deref(),
                    &format!("{field}.timeout"),
                    DEFAULT_RECEIVE_TIMEOUT,
                    problems,
                );
                Step {
                    id,
                    name,
                    action: Action::Ping(Ping { conn, body, timeout }),
                }
            }
            RawStep::Close(close) => {
                let empty = RawClose::default();
                let close = close.as_ref().unwrap_or(&empty);
                let (id, name) = self.name(close.name.as_ref(), kind, &field, problems);
                let conn = self.connection(close.connection.as_ref(), &field, problems);
                self.require_connection(connected, conn, &field, kind, problems);
                let action = self.close(close, conn, &field, problems);
                if let Some(slot) = connected.get_mut(conn) {
                    *slot = false;
                }
                Step {
                    id,
                    name,
                    action: Action::Close(action),
                }
            }
            RawStep::Think(think) => {
                let explicit = match think {
                    RawThink::Spec(spec) => spec.name.clone(),
                    RawThink::Fixed(_) => None,
                };
                let (id, name) = self.name(explicit.as_ref(), kind, &field, problems);
                let think = self.think(think, &field, problems);
                Step {
                    id,
                    name,
                    action: Action::Think(think),
                }
            }
            RawStep::Repeat(repeat) => {
                let (id, name) = self.name(repeat.name.as_ref(), kind, &field, problems);
                let duration = repeat.duration.as_deref().map(|text| {
                    duration_field(
                        Some(text),
                        &format!("{field}.duration"),
                        Duration::from_secs(1),
                        problems,
                    )
                });
                let pacing = repeat
                    .pacing
                    .as_deref()
                    .map(|text| duration_field(Some(text), &format!("{field}.pacing"), Duration::ZERO, problems));
                if repeat.count.is_none() && duration.is_none() {
                    problems.add(&field, "a repeat needs `count` or `duration`", None);
                }
                if repeat.steps.is_empty() {
                    problems.add(&format!("{field}.steps"), "a repeat needs at least one step", None);
                }
                let steps = self.steps(&repeat.steps, &format!("{field}.steps"), connected, problems);
                Step {
                    id,
                    name,
                    action: Action::Repeat(Repeat {
                        count: repeat.count,
                        duration,
                        pacing,
                        steps,
                    }),
                }
            }
            RawStep::Extract(extract) => {
                let (id, name) = self.name(extract.name.as_ref(), kind, &field, problems);
                let conn = self.connection(extract.connection.as_ref(), &field, problems);
                let (from, allowed): (ExtractFrom, &[&str]) = match extract.from.as_deref() {
                    None | Some("message") => (ExtractFrom::Message, &["json", "regex", "body"]),
                    Some("handshake") => (ExtractFrom::Handshake, &["header"]),
                    Some(other) => {
                        problems.add(
                            &format!("{field}.from"),
                            format!("unknown source `{other}`"),
                            Some("use `message` (the last one received) or `handshake`".into()),
                        );
                        (ExtractFrom::Message, &["json", "regex", "body"])
                    }
                };
                let values = self.extractions(&extract.values, &format!("{field}.values"), allowed, problems);
                if extract.values.is_empty() {
                    problems.add(&format!("{field}.values"), "name at least one value to extract", None);
                }
                Step {
                    id,
                    name,
                    action: Action::Extract(ExtractStep { conn, from, values }),
                }
            }
            RawStep::Rendezvous(rendezvous) => {
                let (id, name) = self.name(rendezvous.name.as_ref(), kind, &field, problems);
                let count = match (rendezvous.count, rendezvous.share.as_deref()) {
                    (Some(count), None) => {
                        if count == 0 {
                            problems.add(&format!("{field}.count"), "a rendezvous waits for at least 1 VU", None);
                        }
                        count.max(1)
                    }
                    (None, Some(share)) => match share
                        .trim()
                        .strip_suffix('%')
                        .and_then(|number| number.trim().parse::<f64>().ok())
                    {
                        Some(percent) if percent > 0.0 && percent <= 100.0 => {
                            ((self.peak_vus as f64 * percent / 100.0).ceil() as u64).max(1)
                        }
                        _ => {
                            problems.add(
                                &format!("{field}.share"),
                                format!("`{share}` is not a share"),
                                Some("write a percentage above 0 and at most 100, e.g. `50%`".into()),
                            );
                            1
                        }
                    },
                    _ => {
                        problems.add(
                            &field,
                            "a rendezvous needs exactly one of `count` or `share`",
                            Some("e.g. `{ count: 100 }` or `{ share: 50% }` of the scenario's peak VUs".into()),
                        );
                        1
                    }
                };
                let timeout = duration_field(
                    rendezvous.timeout.as_deref(),
                    &format!("{field}.timeout"),
                    DEFAULT_RENDEZVOUS_TIMEOUT,
                    problems,
                );
                let point = self.rendezvous_points;
                self.rendezvous_points += 1;
                Step {
                    id,
                    name,
                    action: Action::Rendezvous(Rendezvous { point, count, timeout }),
                }
            }
            RawStep::Check(check) => {
                let (id, name) = self.name(check.name.as_ref(), kind, &field, problems);
                let value = compile_template(&check.value, &format!("{field}.value"), &self.known, problems)
                    .unwrap_or_else(|| Template::literal(""));
                let condition = self.matcher(
                    &RawMatch {
                        json: check.json.clone(),
                        equals: check.equals.clone(),
                        contains: check.contains.clone(),
                        regex: check.regex.clone(),
                        prefix: None,
                        kind: None,
                    },
                    &field,
                    problems,
                );
                let on_fail = on_fail(check.on_fail.as_deref(), &format!("{field}.on_fail"), problems);
                Step {
                    id,
                    name,
                    action: Action::Check(Check {
                        value,
                        condition,
                        on_fail,
                    }),
                }
            }
        }
    }

    fn connect(&mut self, connect: &RawConnect, conn: ConnId, field: &str, problems: &mut Problems<'_>) -> Connect {
        let url = compile_template(&connect.url, &format!("{field}.url"), &self.known, problems)
            .unwrap_or_else(|| Template::literal(""));
        if let Some(literal) = url.as_literal() {
            if !(literal.starts_with("ws://") || literal.starts_with("wss://")) {
                problems.add(
                    &format!("{field}.url"),
                    format!("`{literal}` is not a WebSocket URL"),
                    Some("URLs start with ws:// or wss://".into()),
                );
            }
        }
        let mut headers: Vec<(String, Template)> = connect
            .headers
            .iter()
            .filter_map(|(header, value)| {
                if tokio_tungstenite_header_ok(header) {
                    compile_template(value, &format!("{field}.headers.{header}"), &self.known, problems)
                        .map(|template| (header.clone(), template))
                } else {
                    problems.add(
                        &format!("{field}.headers.{header}"),
                        format!("`{header}` is not a valid header name"),
                        None,
                    );
                    None
                }
            })
            .collect();
        if let Some(origin) = &connect.origin {
            if let Some(template) = compile_template(origin, &format!("{field}.origin"), &self.known, problems) {
                headers.push(("Origin".to_owned(), template));
            }
        }
        let timeout = duration_field(
            connect.timeout.as_deref(),
            &format!("{field}.timeout"),
            DEFAULT_CONNECT_TIMEOUT,
            problems,
        );
        let tls = match &connect.tls {
            None => TlsOptions::default(),
            Some(tls) => {
                if tls.ca.is_some() && tls.insecure_skip_verify {
                    problems.add(
                        &format!("{field}.tls"),
                        "`ca` and `insecure_skip_verify` exclude each other",
                        Some("trust the CA, or skip verification, not both".into()),
                    );
                }
                let ca_pem = tls.ca.as_deref().map(|name| {
                    let bytes = self.file(name, &format!("{field}.tls.ca"), problems);
                    if !bytes.is_empty() && !String::from_utf8_lossy(&bytes).contains("-----BEGIN CERTIFICATE-----") {
                        problems.add(
                            &format!("{field}.tls.ca"),
                            format!("`{name}` holds no PEM certificate"),
                            Some("give a file with `-----BEGIN CERTIFICATE-----` blocks".into()),
                        );
                    }
                    bytes
                });
                TlsOptions {
                    ca_pem,
                    insecure_skip_verify: tls.insecure_skip_verify,
                    server_name: tls.server_name.clone(),
                }
            }
        };
        let proxy = connect.proxy.as_deref().and_then(|text| match parse_proxy(text) {
            Ok(proxy) => Some(proxy),
            Err(message) => {
                problems.add(
                    &format!("{field}.proxy"),
                    message,
                    Some("write `http://host:port` or `http://user:password@host:port`".into()),
                );
                None
            }
        });
        let expect = match &connect.expect {
            None => Expect {
                status: 101,
                subprotocol: None,
                headers: Vec::new(),
            },
            Some(expect) => {
                let status = expect.status.unwrap_or(101);
                if !(100..=599).contains(&status) {
                    problems.add(
                        &format!("{field}.expect.status"),
                        format!("{status} is not an HTTP status"),
                        None,
                    );
                }
                if let Some(wanted) = &expect.subprotocol {
                    if !wanted.is_empty() && !connect.subprotocols.contains(wanted) {
                        problems.add(
                            &format!("{field}.expect.subprotocol"),
                            format!("`{wanted}` is not among the subprotocols this step offers"),
                            Some(format!("add it to `subprotocols` (now: {:?})", connect.subprotocols)),
                        );
                    }
                }
                Expect {
                    status,
                    subprotocol: expect.subprotocol.clone(),
                    headers: expect
                        .headers
                        .iter()
                        .filter_map(|(header, value)| {
                            compile_template(
                                value,
                                &format!("{field}.expect.headers.{header}"),
                                &self.known,
                                problems,
                            )
                            .map(|template| (header.clone(), template))
                        })
                        .collect(),
                }
            }
        };
        let extract = self.extractions(&connect.extract, &format!("{field}.extract"), &["header"], problems);
        let subprotocols = connect
            .subprotocols
            .iter()
            .enumerate()
            .filter_map(|(index, name)| {
                compile_template(name, &format!("{field}.subprotocols[{index}]"), &self.known, problems)
            })
            .collect();
        Connect {
            conn,
            url,
            headers,
            subprotocols,
            timeout,
            tls,
            proxy,
            expect,
            keep_headers: connect
                .expect
                .as_ref()
                .is_some_and(|expect| expect.subprotocol.is_some() || !expect.headers.is_empty())
                || !extract.is_empty(),
            extract,
            keep_open: connect.keep_open,
        }
    }

    pub fn send(&mut self, send: &RawSend, conn: ConnId, field: &str, problems: &mut Problems<'_>) -> Send {
        if send.as_text && send.as_binary {
            problems.add(field, "`as_text` and `as_binary` exclude each other", None);
        }
        let (payload, natural) = match (&send.text, &send.binary, &send.file) {
            (Some(text), None, None) => {
                let template = compile_template(text, &format!("{field}.text"), &self.known, problems)
                    .unwrap_or_else(|| Template::literal(""));
                (Payload::Text(template), FrameKind::Text)
            }
            (None, Some(binary), None) => match parse_binary(binary) {
                Ok(bytes) => (Payload::Bytes(bytes), FrameKind::Binary),
                Err(message) => {
                    problems.add(
                        &format!("{field}.binary"),
                        message,
                        Some("write bytes as \\xNN, e.g. '\\x61\\x62'".into()),
                    );
                    (Payload::Bytes(Vec::new()), FrameKind::Binary)
                }
            },
            (None, None, Some(file)) => (
                Payload::Bytes(self.file(file, &format!("{field}.file"), problems)),
                FrameKind::Binary,
            ),
            _ => {
                problems.add(field, "a send needs exactly one of `text`, `binary` or `file`", None);
                (Payload::Bytes(Vec::new()), FrameKind::Binary)
            }
        };
        let frame = if send.as_text {
            FrameKind::Text
        } else if send.as_binary {
            FrameKind::Binary
        } else {
            natural
        };
        if let (Payload::Bytes(bytes), FrameKind::Text) = (&payload, frame) {
            if std::str::from_utf8(bytes).is_err() {
                let source = if send.file.is_some() { "file" } else { "binary" };
                problems.add(
                    &format!("{field}.{source}"),
                    "these bytes are not valid UTF-8, so they cannot go in a text frame",
                    Some("drop `as_text` to send a binary frame".into()),
                );
            }
        }
        let fragments = send.fragments.unwrap_or(1);
        if fragments == 0 {
            problems.add(&format!("{field}.fragments"), "a message has at least 1 fragment", None);
        }
        if let (Payload::Bytes(bytes), true) = (&payload, fragments > 1) {
            if (bytes.len() as u64) < u64::from(fragments) {
                problems.add(
                    &format!("{field}.fragments"),
                    format!(
                        "{} bytes cannot be split into {fragments} fragments of at least one byte",
                        bytes.len()
                    ),
                    None,
                );
            }
        }
        Send {
            conn,
            payload,
            frame,
            fragments: fragments.max(1),
        }
    }

    fn receive(&mut self, receive: &RawReceive, conn: ConnId, field: &str, problems: &mut Problems<'_>) -> Receive {
        let wait = receive.wait.unwrap_or(true);
        if !wait && receive.timeout.is_some() {
            problems.add(
                &format!("{field}.timeout"),
                "a receive with `wait: false` does not wait, so it takes no timeout",
                None,
            );
        }
        if wait && receive.state.is_some() {
            problems.add(
                &format!("{field}.state"),
                "`state` is set by a receive that does not wait",
                Some("add `wait: false`".into()),
            );
        }
        let timeout = duration_field(
            receive.timeout.as_deref(),
            &format!("{field}.timeout"),
            DEFAULT_RECEIVE_TIMEOUT,
            problems,
        );
        let latency_of = receive.latency_of.as_ref().and_then(|wanted| {
            let found = self
                .send_names
                .iter()
                .find(|(name, _)| name == wanted)
                .map(|(_, id)| *id);
            if found.is_none() {
                let hint = closest(wanted, self.send_names.iter().map(|(name, _)| name.as_str()))
                    .map(|close| format!("did you mean `{close}`?"))
                    .or_else(|| Some("name a `send` step that comes before this receive".into()));
                problems.add(
                    &format!("{field}.latency_of"),
                    format!("no send step named `{wanted}` comes before this receive"),
                    hint,
                );
            }
            found
        });
        let matcher = receive
            .matcher
            .as_ref()
            .map(|raw| self.matcher(raw, &format!("{field}.match"), problems));
        let on_timeout = on_fail(receive.on_timeout.as_deref(), &format!("{field}.on_timeout"), problems);
        let extract = self.extractions(
            &receive.extract,
            &format!("{field}.extract"),
            &["json", "regex", "body"],
            problems,
        );
        Receive {
            conn,
            timeout,
            latency_of,
            matcher,
            wait,
            state: (!wait).then(|| {
                receive
                    .state
                    .clone()
                    .unwrap_or_else(|| DEFAULT_STATE_VARIABLE.to_owned())
            }),
            on_timeout,
            extract,
        }
    }

    fn close(&mut self, close: &RawClose, conn: ConnId, field: &str, problems: &mut Problems<'_>) -> Close {
        let code = close.code.unwrap_or(1000);
        if !valid_client_close_code(code) {
            problems.add(
                &format!("{field}.code"),
                format!("{code} is not a close code a client may send"),
                Some("use 1000 (normal), 1001-1003, 1007-1011, or 3000-4999".into()),
            );
        }
        let text = close.reason.clone().unwrap_or_default();
        let reason = compile_template(&text, &format!("{field}.reason"), &self.known, problems)
            .unwrap_or_else(|| Template::literal(""));
        if reason.as_literal().is_some_and(|literal| literal.len() > 123) {
            problems.add(
                &format!("{field}.reason"),
                "a close reason is at most 123 bytes (RFC 6455)",
                None,
            );
        }
        let timeout = duration_field(
            close.timeout.as_deref(),
            &format!("{field}.timeout"),
            DEFAULT_CLOSE_TIMEOUT,
            problems,
        );
        Close {
            conn,
            code,
            reason,
            timeout,
            expect_codes: close.expect_codes.clone(),
            extract: self.extractions(&close.extract, &format!("{field}.extract"), &["close"], problems),
        }
    }

    fn think(&mut self, think: &RawThink, field: &str, problems: &mut Problems<'_>) -> Think {
        let parse = |text: &str, sub: &str, problems: &mut Problems<'_>| {
            duration_field(Some(text), &format!("{field}{sub}"), Duration::ZERO, problems)
        };
        match think {
            RawThink::Fixed(text) => Think::Fixed(parse(text, "", problems)),
            RawThink::Spec(spec) => match (&spec.fixed, &spec.uniform, &spec.exponential) {
                (Some(fixed), None, None) => Think::Fixed(parse(fixed, ".fixed", problems)),
                (None, Some([low, high]), None) => {
                    let (low, high) = (
                        parse(low, ".uniform[0]", problems),
                        parse(high, ".uniform[1]", problems),
                    );
                    if low > high {
                        problems.add(&format!("{field}.uniform"), "the first bound is above the second", None);
                    }
                    Think::Uniform(low, high)
                }
                (None, None, Some(mean)) => Think::Exponential(parse(mean, ".exponential", problems)),
                _ => {
                    problems.add(field, "give exactly one of `fixed`, `uniform` or `exponential`", None);
                    Think::Fixed(Duration::ZERO)
                }
            },
        }
    }

    /// Builds the `on_message`, `on_close` and `on_error` rules (after the steps, whose names
    /// error rules may refer to).
    pub fn rules(
        &mut self,
        raw: &PartView<'_>,
        problems: &mut Problems<'_>,
    ) -> (Vec<MessageRule>, Vec<CloseRule>, Vec<ErrorRule>) {
        let step_names = self.names.clone();
        let rule_connection = |builder: &Self, named: Option<&String>, field: &str, problems: &mut Problems<'_>| {
            named.map(|name| builder.connection(Some(name), field, problems))
        };
        let mut message_rules = Vec::new();
        self.kind_counts.insert("on_message", raw.on_message.len());
        for (index, rule) in raw.on_message.iter().enumerate() {
            let field = format!("on_message[{index}]");
            let (id, name) = self.name(rule.name.as_ref(), "on_message", &field, problems);
            let conn = rule_connection(self, rule.connection.as_ref(), &field, problems);
            let when = rule
                .when
                .as_ref()
                .map(|raw| self.matcher(raw, &format!("{field}.when"), problems));
            let reply = rule.send.as_ref().map(|send| {
                if send.connection.is_some() {
                    problems.add(
                        &format!("{field}.send.connection"),
                        "a handler's reply goes back on the connection the message came from",
                        Some("remove `connection` here; put it on the rule to pick the connection".into()),
                    );
                }
                self.send(send, conn.unwrap_or(0), &format!("{field}.send"), problems)
            });
            let extract = self.extractions(
                &rule.extract,
                &format!("{field}.extract"),
                &["json", "regex", "body"],
                problems,
            );
            message_rules.push(MessageRule {
                id,
                name,
                conn,
                when,
                reply,
                extract,
                fail: rule.fail,
                pass: rule.pass,
            });
        }
        let mut close_rules = Vec::new();
        self.kind_counts.insert("on_close", raw.on_close.len());
        for (index, rule) in raw.on_close.iter().enumerate() {
            let field = format!("on_close[{index}]");
            let (id, name) = self.name(rule.name.as_ref(), "on_close", &field, problems);
            let conn = rule_connection(self, rule.connection.as_ref(), &field, problems);
            close_rules.push(CloseRule {
                id,
                name,
                conn,
                codes: rule.codes.clone(),
                then: then(rule.then.as_deref(), &format!("{field}.then"), false, problems),
            });
        }
        let mut error_rules = Vec::new();
        for (index, rule) in raw.on_error.iter().enumerate() {
            let field = format!("on_error[{index}]");
            if let Some(kinds) = &rule.kinds {
                for (at, kind) in kinds.iter().enumerate() {
                    let is_http = kind
                        .strip_prefix("http_")
                        .is_some_and(|status| status.parse::<u16>().is_ok());
                    if !is_http && !ERROR_KINDS.contains(&kind.as_str()) {
                        problems.add(
                            &format!("{field}.kinds[{at}]"),
                            format!("unknown error kind `{kind}`"),
                            closest(kind, ERROR_KINDS.iter().copied())
                                .map(|close| format!("did you mean `{close}`?"))
                                .or_else(|| Some(format!("kinds: {}, http_NNN", ERROR_KINDS.join(", ")))),
                        );
                    }
                }
            }
            let steps = rule.steps.as_ref().map(|names| {
                names
                    .iter()
                    .enumerate()
                    .filter_map(|(at, wanted)| {
                        let full = format!("{}{wanted}", self.name_prefix);
                        let found = step_names.iter().position(|name| *name == full);
                        if found.is_none() {
                            problems.add(
                                &format!("{field}.steps[{at}]"),
                                format!("no step is named `{wanted}`"),
                                closest(
                                    wanted,
                                    step_names
                                        .iter()
                                        .filter_map(|name| name.strip_prefix(self.name_prefix.as_str())),
                                )
                                .map(|close| format!("did you mean `{close}`?")),
                            );
                        }
                        found.map(|index| index as StepId)
                    })
                    .collect()
            });
            error_rules.push(ErrorRule {
                kinds: rule.kinds.clone(),
                steps,
                then: then(Some(&rule.then), &format!("{field}.then"), true, problems),
            });
        }
        (message_rules, close_rules, error_rules)
    }
}

fn tokio_tungstenite_header_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte))
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
