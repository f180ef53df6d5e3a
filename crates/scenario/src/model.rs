//! The validated, typed scenario that agents play, and the validation that builds it from the
//! raw form: every problem is collected with its location before anything runs.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::duration::parse_duration;
use crate::error::{closest, Problems};
use crate::plan::{LoadModel, LoadPlan, LostAgentPolicy, RateStage, Stage};
use crate::raw::*;
use crate::template::{Template, BUILTIN_VARIABLES};

/// Index of a step in `Scenario::step_names`, used to key per-step metrics.
pub type StepId = u16;

/// A scenario ready to play.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub description: Option<String>,
    /// `${target}`, rendered once per run against the run's values (e.g. `testserver.url`).
    pub target: Option<Template>,
    pub testserver: Option<TestServerSpec>,
    pub variables: BTreeMap<String, String>,
    pub plan: LoadPlan,
    pub steps: Vec<Step>,
    /// Every step's metric name, indexed by `StepId`.
    pub step_names: Vec<String>,
    /// Conditions that decide whether the run passed.
    pub thresholds: Vec<crate::thresholds::Threshold>,
}

/// The built-in test server a scenario asks the run to start.
#[derive(Clone, Debug, PartialEq)]
pub struct TestServerSpec {
    pub port: u16,
    pub tls: bool,
    pub subprotocols: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Step {
    pub id: StepId,
    pub name: String,
    pub action: Action,
}

#[derive(Clone, Debug)]
pub enum Action {
    Connect(Connect),
    Send(Send),
    Receive(Receive),
    Ping(Ping),
    Close(Close),
    Think(Think),
    Repeat(Repeat),
}

#[derive(Clone, Debug)]
pub struct Connect {
    pub url: Template,
    pub headers: Vec<(String, Template)>,
    pub subprotocols: Vec<String>,
    pub timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct Send {
    pub payload: Payload,
    pub frame: FrameKind,
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

#[derive(Clone, Debug)]
pub struct Receive {
    pub timeout: Duration,
    /// The send whose time this receive's latency is measured from; `None`: the connection's
    /// most recent send not yet answered.
    pub latency_of: Option<StepId>,
}

#[derive(Clone, Debug)]
pub struct Ping {
    pub body: Vec<u8>,
    pub timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct Close {
    pub code: u16,
    pub reason: String,
    pub timeout: Duration,
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
    pub steps: Vec<Step>,
}

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_GRACEFUL_STOP: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(600);

/// Run values every scenario may read besides its own `variables`.
pub const RUN_VARIABLES: &[&str] = &["run_id"];
/// Values available when the scenario starts the test server.
pub const TESTSERVER_VARIABLES: &[&str] = &["testserver.url", "testserver.host", "testserver.port"];

pub(crate) fn validate(file: &str, raw: RawScenario, problems: &mut Problems<'_>) -> Option<Scenario> {
    let mut known: Vec<String> = raw.variables.keys().cloned().collect();
    known.extend(RUN_VARIABLES.iter().map(|name| name.to_string()));
    if raw.testserver.is_some() {
        known.extend(TESTSERVER_VARIABLES.iter().map(|name| name.to_string()));
    }
    let target = raw
        .target
        .as_deref()
        .and_then(|text| compile_template(text, "target", &known, problems));
    if raw.target.is_some() {
        known.push("target".to_owned());
    }
    for (name, value) in &raw.variables {
        if value.contains("${") {
            problems.add(
                &format!("variables.{name}"),
                "scenario variables are plain values and cannot refer to other variables",
                None,
            );
        }
    }

    let plan = validate_load(&raw.load, problems);
    let mut builder = StepBuilder {
        known,
        names: Vec::new(),
        send_names: Vec::new(),
        kind_counts: count_kinds(&raw.steps),
        kind_seen: BTreeMap::new(),
        explicit: HashSet::new(),
    };
    if raw.steps.is_empty() {
        problems.add(
            "steps",
            "a scenario needs at least one step",
            Some("start with a `connect` step".into()),
        );
    }
    let mut connected = false;
    let steps = builder.steps(&raw.steps, "steps", &mut connected, problems);

    let thresholds = crate::thresholds::validate(&raw.thresholds, &builder.names, problems);
    let name = raw.name.unwrap_or_else(|| {
        std::path::Path::new(file)
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scenario".to_owned())
    });
    Some(Scenario {
        name,
        description: raw.description,
        target,
        testserver: raw.testserver.map(|spec| TestServerSpec {
            port: spec.port,
            tls: spec.tls,
            subprotocols: spec.subprotocols,
        }),
        variables: raw.variables,
        plan: plan?,
        steps,
        step_names: builder.names,
        thresholds,
    })
}

fn compile_template(text: &str, field: &str, known: &[String], problems: &mut Problems<'_>) -> Option<Template> {
    let is_known = |name: &str| known.iter().any(|candidate| candidate == name);
    match Template::compile(text, &is_known) {
        Ok(template) => Some(template),
        Err(error) => {
            let hint = match &error {
                crate::template::TemplateError::Unknown(name) => {
                    let candidates = known
                        .iter()
                        .map(String::as_str)
                        .chain(BUILTIN_VARIABLES.iter().copied());
                    closest(name, candidates).map(|close| format!("did you mean `${{{close}}}`?"))
                }
                _ => None,
            };
            let hint = hint.or_else(|| {
                Some(format!(
                    "known here: {}",
                    known
                        .iter()
                        .map(String::as_str)
                        .chain(BUILTIN_VARIABLES.iter().copied())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            });
            problems.add(field, error.to_string(), hint);
            None
        }
    }
}

fn duration_field(text: Option<&str>, field: &str, default: Duration, problems: &mut Problems<'_>) -> Duration {
    match text.map(parse_duration) {
        None => default,
        Some(Ok(duration)) => duration,
        Some(Err(message)) => {
            problems.add(field, message, None);
            default
        }
    }
}

fn validate_open_load(
    load: &RawLoad,
    graceful_stop: Duration,
    max_duration: Duration,
    problems: &mut Problems<'_>,
) -> Option<LoadPlan> {
    for (given, field) in [
        (load.vus.is_some(), "vus"),
        (load.iterations.is_some(), "iterations"),
        (load.start_vus.is_some(), "start_vus"),
    ] {
        if given {
            problems.add(
                &format!("load.{field}"),
                format!("`{field}` is for the closed model; the open model takes `rate` or `stages` with `rate`"),
                None,
            );
        }
    }
    let rate_ok = |rate: f64, field: &str, problems: &mut Problems<'_>| {
        if !(rate.is_finite() && rate >= 0.0) {
            problems.add(field, "a rate is a number of arrivals per second, zero or more", None);
        }
    };
    let (start_rate, stages) = match (&load.stages, load.rate, &load.duration) {
        (Some(stages), None, None) => {
            let stages: Vec<RateStage> = stages
                .iter()
                .enumerate()
                .map(|(index, stage)| {
                    let field = format!("load.stages[{index}]");
                    if stage.target.is_some() {
                        problems.add(
                            &format!("{field}.target"),
                            "open-model stages take `rate` (arrivals per second), not `target`",
                            None,
                        );
                    }
                    let rate = stage.rate.unwrap_or_else(|| {
                        problems.add(
                            &field,
                            "this stage needs `rate`",
                            Some("write e.g. `- { duration: 30s, rate: 100 }`".into()),
                        );
                        0.0
                    });
                    rate_ok(rate, &format!("{field}.rate"), problems);
                    RateStage {
                        duration: duration_field(
                            Some(&stage.duration),
                            &format!("{field}.duration"),
                            Duration::from_secs(1),
                            problems,
                        ),
                        rate,
                    }
                })
                .collect();
            (load.start_rate.unwrap_or(0.0), stages)
        }
        (None, Some(rate), Some(duration)) => {
            rate_ok(rate, "load.rate", problems);
            let duration = duration_field(Some(duration), "load.duration", Duration::from_secs(1), problems);
            (rate, vec![RateStage { duration, rate }])
        }
        _ => {
            problems.add(
                "load",
                "the open model needs `rate` with `duration`, or `stages` of `{ duration, rate }`",
                None,
            );
            return None;
        }
    };
    let Some(max_vus) = load.max_vus else {
        problems.add(
            "load",
            "the open model needs `max_vus`: the most VUs that may run at once across the fleet",
            Some("without a cap an overloaded target makes VUs pile up until the generator collapses; arrivals past the cap are counted as dropped".into()),
        );
        return None;
    };
    let max_handshakes = load.max_handshakes.unwrap_or(max_vus);
    if max_vus == 0 || max_handshakes == 0 {
        problems.add(
            "load.max_vus",
            "`max_vus` and `max_handshakes` must be at least 1",
            None,
        );
    }
    Some(LoadPlan {
        model: LoadModel::Open {
            start_rate,
            stages,
            max_vus,
            max_handshakes,
        },
        graceful_stop,
        max_duration,
        on_agent_lost: lost_agent_policy(load, problems),
    })
}

/// `load.on_agent_lost`: one of the policy names, `continue` when absent.
fn lost_agent_policy(load: &RawLoad, problems: &mut Problems<'_>) -> LostAgentPolicy {
    let Some(name) = load.on_agent_lost.as_deref() else {
        return LostAgentPolicy::default();
    };
    LostAgentPolicy::from_name(name).unwrap_or_else(|| {
        let hint = match closest(name, LostAgentPolicy::NAMES) {
            Some(close) => format!("did you mean `{close}`? The policies are `continue`, `redistribute` and `abort`"),
            None => "use `continue` (go on with the others), `redistribute` (move its share to the others) or `abort` (stop the run)".to_owned(),
        };
        problems.add(
            "load.on_agent_lost",
            format!("unknown lost-agent policy `{name}`"),
            Some(hint),
        );
        LostAgentPolicy::default()
    })
}

fn validate_load(load: &RawLoad, problems: &mut Problems<'_>) -> Option<LoadPlan> {
    let graceful_stop = duration_field(
        load.graceful_stop.as_deref(),
        "load.graceful_stop",
        DEFAULT_GRACEFUL_STOP,
        problems,
    );
    let max_duration = duration_field(
        load.max_duration.as_deref(),
        "load.max_duration",
        DEFAULT_MAX_DURATION,
        problems,
    );
    match load.model.as_deref() {
        None | Some("closed") => {}
        Some("open") => return validate_open_load(load, graceful_stop, max_duration, problems),
        Some(other) => {
            problems.add(
                "load.model",
                format!("unknown load model `{other}`"),
                Some("use `closed` (concurrent VUs) or `open` (an arrival rate)".into()),
            );
            return None;
        }
    }
    for (given, field) in [
        (load.rate.is_some(), "rate"),
        (load.start_rate.is_some(), "start_rate"),
        (load.max_vus.is_some(), "max_vus"),
        (load.max_handshakes.is_some(), "max_handshakes"),
    ] {
        if given {
            problems.add(
                &format!("load.{field}"),
                format!("`{field}` is for the open model"),
                Some("add `model: open`".into()),
            );
        }
    }
    if load.iterations == Some(0) {
        problems.add("load.iterations", "iterations must be at least 1", None);
    }
    let model = match (&load.stages, load.vus) {
        (Some(_), Some(_)) => {
            problems.add(
                "load.vus",
                "give either `vus` (constant load) or `stages` (a ramp), not both",
                Some("with stages, set the starting level with `start_vus`".into()),
            );
            return None;
        }
        (Some(stages), None) => {
            if stages.is_empty() {
                problems.add(
                    "load.stages",
                    "stages is empty",
                    Some("add e.g. `- { duration: 30s, target: 100 }`".into()),
                );
            }
            if load.duration.is_some() {
                problems.add(
                    "load.duration",
                    "`duration` goes with `vus`; stages carry their own durations",
                    None,
                );
            }
            let stages = stages
                .iter()
                .enumerate()
                .map(|(index, stage)| Stage {
                    duration: duration_field(
                        Some(&stage.duration),
                        &format!("load.stages[{index}].duration"),
                        Duration::from_secs(1),
                        problems,
                    ),
                    target: stage.target.unwrap_or_else(|| {
                        problems.add(
                            &format!("load.stages[{index}]"),
                            "this stage needs `target` (VUs at its end)",
                            Some(if stage.rate.is_some() {
                                "`rate` belongs to the open model: add `model: open`".into()
                            } else {
                                "write e.g. `- { duration: 30s, target: 100 }`".into()
                            }),
                        );
                        0
                    }),
                })
                .collect();
            LoadModel::Closed {
                start_vus: load.start_vus.unwrap_or(0),
                stages,
                iterations_per_vu: load.iterations,
            }
        }
        (None, Some(vus)) => {
            if vus == 0 {
                problems.add("load.vus", "vus must be at least 1", None);
            }
            if load.start_vus.is_some() {
                problems.add("load.start_vus", "`start_vus` goes with `stages`", None);
            }
            let stages = match (&load.duration, load.iterations) {
                (None, None) => {
                    problems.add(
                        "load",
                        "say how long the load lasts",
                        Some("add `iterations: N` (each VU plays the steps N times) or `duration: 30s`".into()),
                    );
                    Vec::new()
                }
                (Some(duration), _) => vec![Stage {
                    duration: duration_field(Some(duration), "load.duration", Duration::from_secs(1), problems),
                    target: vus,
                }],
                (None, Some(_)) => Vec::new(),
            };
            LoadModel::Closed {
                start_vus: vus,
                stages,
                iterations_per_vu: load.iterations,
            }
        }
        (None, None) => {
            problems.add(
                "load",
                "no load given",
                Some("add `vus: N` with `iterations` or `duration`, or `stages`".into()),
            );
            return None;
        }
    };
    Some(LoadPlan {
        model,
        graceful_stop,
        max_duration,
        on_agent_lost: lost_agent_policy(load, problems),
    })
}

fn count_kinds(steps: &[RawStep]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    fn walk(steps: &[RawStep], counts: &mut BTreeMap<&'static str, usize>) {
        for step in steps {
            *counts.entry(step.kind()).or_insert(0) += 1;
            if let RawStep::Repeat(repeat) = step {
                walk(&repeat.steps, counts);
            }
        }
    }
    walk(steps, &mut counts);
    counts
}

struct StepBuilder {
    known: Vec<String>,
    names: Vec<String>,
    /// Send steps seen so far (name, id), for `latency_of`.
    send_names: Vec<(String, StepId)>,
    kind_counts: BTreeMap<&'static str, usize>,
    kind_seen: BTreeMap<&'static str, usize>,
    explicit: HashSet<String>,
}

impl StepBuilder {
    fn steps(&mut self, raw: &[RawStep], path: &str, connected: &mut bool, problems: &mut Problems<'_>) -> Vec<Step> {
        raw.iter()
            .enumerate()
            .map(|(index, step)| self.step(step, &format!("{path}[{index}]"), connected, problems))
            .collect()
    }

    fn name(
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
                if !self.explicit.insert(name.clone()) {
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
        self.names.push(name.clone());
        (id, name)
    }

    fn require_connection(&self, connected: bool, field: &str, kind: &str, problems: &mut Problems<'_>) {
        if !connected {
            problems.add(
                field,
                format!("`{kind}` needs an open connection, and none is open at this point"),
                Some("add a `connect` step before it".into()),
            );
        }
    }

    fn step(&mut self, raw: &RawStep, path: &str, connected: &mut bool, problems: &mut Problems<'_>) -> Step {
        let kind = raw.kind();
        let field = format!("{path}.{kind}");
        let action = match raw {
            RawStep::Connect(connect) => {
                let (id, name) = self.name(connect.name.as_ref(), kind, &field, problems);
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
                let headers = connect
                    .headers
                    .iter()
                    .filter_map(|(header, value)| {
                        compile_template(value, &format!("{field}.headers.{header}"), &self.known, problems)
                            .map(|template| (header.clone(), template))
                    })
                    .collect();
                let timeout = duration_field(
                    connect.timeout.as_deref(),
                    &format!("{field}.timeout"),
                    DEFAULT_CONNECT_TIMEOUT,
                    problems,
                );
                *connected = true;
                return Step {
                    id,
                    name,
                    action: Action::Connect(Connect {
                        url,
                        headers,
                        subprotocols: connect.subprotocols.clone(),
                        timeout,
                    }),
                };
            }
            RawStep::Send(send) => {
                let (id, name) = self.name(send.name.as_ref(), kind, &field, problems);
                self.require_connection(*connected, &field, kind, problems);
                let action = self.send(send, &field, problems);
                self.send_names.push((name.clone(), id));
                return Step { id, name, action };
            }
            RawStep::Receive(receive) => {
                let (id, name) = self.name(receive.name.as_ref(), kind, &field, problems);
                self.require_connection(*connected, &field, kind, problems);
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
                return Step {
                    id,
                    name,
                    action: Action::Receive(Receive { timeout, latency_of }),
                };
            }
            RawStep::Ping(ping) => {
                let ping = ping.as_ref().map_or_else(RawPing::default, |p| RawPing {
                    name: p.name.clone(),
                    body: p.body.clone(),
                    timeout: p.timeout.clone(),
                });
                let (id, name) = self.name(ping.name.as_ref(), kind, &field, problems);
                self.require_connection(*connected, &field, kind, problems);
                let body = ping.body.unwrap_or_default().into_bytes();
                if body.len() > 125 {
                    problems.add(
                        &format!("{field}.body"),
                        format!(
                            "a ping body is at most 125 bytes (RFC 6455), this one is {}",
                            body.len()
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
                return Step {
                    id,
                    name,
                    action: Action::Ping(Ping { body, timeout }),
                };
            }
            RawStep::Close(close) => {
                let close = close.as_ref().map_or_else(RawClose::default, |c| RawClose {
                    name: c.name.clone(),
                    code: c.code,
                    reason: c.reason.clone(),
                    timeout: c.timeout.clone(),
                });
                let (id, name) = self.name(close.name.as_ref(), kind, &field, problems);
                self.require_connection(*connected, &field, kind, problems);
                let code = close.code.unwrap_or(1000);
                if !(code == 1000
                    || (3000..=4999).contains(&code)
                    || (1001..=1003).contains(&code)
                    || (1007..=1011).contains(&code))
                {
                    problems.add(
                        &format!("{field}.code"),
                        format!("{code} is not a close code a client may send"),
                        Some("use 1000 (normal), 1001-1003, 1007-1011, or 3000-4999".into()),
                    );
                }
                let reason = close.reason.unwrap_or_default();
                if reason.len() > 123 {
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
                *connected = false;
                return Step {
                    id,
                    name,
                    action: Action::Close(Close { code, reason, timeout }),
                };
            }
            RawStep::Think(think) => {
                let explicit = match think {
                    RawThink::Spec(spec) => spec.name.clone(),
                    RawThink::Fixed(_) => None,
                };
                let (id, name) = self.name(explicit.as_ref(), kind, &field, problems);
                let think = self.think(think, &field, problems);
                return Step {
                    id,
                    name,
                    action: Action::Think(think),
                };
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
                if repeat.count.is_none() && duration.is_none() {
                    problems.add(&field, "a repeat needs `count` or `duration`", None);
                }
                if repeat.steps.is_empty() {
                    problems.add(&format!("{field}.steps"), "a repeat needs at least one step", None);
                }
                let steps = self.steps(&repeat.steps, &format!("{field}.steps"), connected, problems);
                Action::Repeat(Repeat {
                    count: repeat.count,
                    duration,
                    steps,
                })
                .into_step(id, name)
            }
        };
        action
    }

    fn send(&mut self, send: &RawSend, field: &str, problems: &mut Problems<'_>) -> Action {
        if send.as_text && send.as_binary {
            problems.add(field, "`as_text` and `as_binary` exclude each other", None);
        }
        let (payload, natural) = match (&send.text, &send.binary) {
            (Some(text), None) => {
                let template = compile_template(text, &format!("{field}.text"), &self.known, problems)
                    .unwrap_or_else(|| Template::literal(""));
                (Payload::Text(template), FrameKind::Text)
            }
            (None, Some(binary)) => match parse_binary(binary) {
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
            _ => {
                problems.add(field, "a send needs exactly one of `text` or `binary`", None);
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
                problems.add(
                    &format!("{field}.binary"),
                    "these bytes are not valid UTF-8, so they cannot go in a text frame",
                    Some("drop `as_text` to send a binary frame".into()),
                );
            }
        }
        Action::Send(Send { payload, frame })
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
}

impl Action {
    fn into_step(self, id: StepId, name: String) -> Step {
        Step { id, name, action: self }
    }
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
}
