//! The validated, typed scenario that agents play, and the validation that builds it from the
//! raw form: every problem is collected with its location before anything runs.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::error::{closest, Problems};
use crate::feeds::{Feed, Order, Per};
use crate::plan::{LoadModel, LoadPlan, LostAgentPolicy, RateStage, Stage};
use crate::raw::*;
use crate::steps::{compile_template, duration_field, CloseRule, ErrorRule, MessageRule, Step, StepBuilder};
use crate::template::Template;

/// A scenario ready to play.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub description: Option<String>,
    /// `${target}`, rendered once per run against the run's values (e.g. `testserver.url`).
    pub target: Option<Template>,
    pub testserver: Option<TestServerSpec>,
    pub variables: BTreeMap<String, String>,
    /// Every step's and handler's metric name, indexed by `StepId`, across all parts (a part's
    /// names start with `PART.` when the file has `scenarios`).
    pub step_names: Vec<String>,
    /// Conditions that decide whether the run passed.
    pub thresholds: Vec<crate::thresholds::Threshold>,
    pub feeds: Vec<Feed>,
    /// The scenarios of the run, each with its own load: one for a plain file.
    pub parts: Vec<Part>,
}

impl Scenario {
    /// Calls `visit` on every step of every part, the steps inside repeats too.
    pub fn each_step<'a>(&'a self, visit: &mut dyn FnMut(&'a Step)) {
        for part in &self.parts {
            crate::steps::each_step(&part.steps, visit);
        }
    }

    /// Every rendezvous step of the run, by point.
    pub fn rendezvous_points(&self) -> Vec<crate::steps::Rendezvous> {
        let mut found = Vec::new();
        self.each_step(&mut |step| {
            if let crate::steps::Action::Rendezvous(rendezvous) = &step.action {
                found.push(rendezvous.clone());
            }
        });
        found.sort_by_key(|rendezvous| rendezvous.point);
        found
    }
}

/// One scenario of a run: its load, steps and handlers.
#[derive(Clone, Debug)]
pub struct Part {
    /// Empty for a plain file's single scenario.
    pub name: String,
    pub plan: LoadPlan,
    pub steps: Vec<Step>,
    /// The names of the connections a VU holds, indexed by `ConnId`.
    pub connections: Vec<String>,
    pub on_message: Vec<MessageRule>,
    pub on_close: Vec<CloseRule>,
    pub on_error: Vec<ErrorRule>,
    /// Each VU iteration starts this long after the previous one started (or at once when late).
    pub pacing: Option<Duration>,
    /// The part's VU numbers are `vu_offset..vu_offset + vu_span` (see `Scenario::vu_number`).
    pub vu_offset: u64,
    /// Peak VUs (closed model) or arrivals (open model).
    pub vu_span: u64,
    /// Whether an `extract` step reads the last message taken (so VUs keep it).
    pub reads_last_message: bool,
}

impl Scenario {
    /// The first part's plan: a plain file's only one.
    pub fn plan(&self) -> &LoadPlan {
        &self.parts[0].plan
    }

    /// VUs at the peak, all parts together (a part's peak counts whenever it comes).
    pub fn max_vus(&self) -> u64 {
        self.parts.iter().map(|part| part.plan.max_vus()).sum()
    }

    /// When the last part's stages end; `None` while any part runs by iterations.
    pub fn stages_end(&self) -> Option<Duration> {
        self.parts
            .iter()
            .map(|part| part.plan.stages_end())
            .try_fold(Duration::ZERO, |latest, end| end.map(|end| latest.max(end)))
    }

    /// The longest safety bound of the parts.
    pub fn max_duration(&self) -> Duration {
        self.parts
            .iter()
            .map(|part| part.plan.max_duration)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// The longest graceful stop of the parts.
    pub fn graceful_stop(&self) -> Duration {
        self.parts
            .iter()
            .map(|part| part.plan.graceful_stop)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// The fleet-wide VU number of a part's VU. Numbers within the part's span are dense and
    /// follow the parts in order; numbers past it (VUs taken over from lost agents) are spread
    /// above every part's span, interleaved by part, so they stay unique.
    pub fn vu_number(&self, part: usize, local: u64) -> u64 {
        let Some(this) = self.parts.get(part) else { return local };
        if local < this.vu_span {
            return this.vu_offset + local;
        }
        let spans: u64 = self.parts.iter().map(|part| part.vu_span).sum();
        spans + (local - this.vu_span) * self.parts.len() as u64 + part as u64
    }
}

/// The built-in test server a scenario asks the run to start.
#[derive(Clone, Debug, PartialEq)]
pub struct TestServerSpec {
    pub port: u16,
    pub tls: bool,
    pub subprotocols: Vec<String>,
}

pub const DEFAULT_GRACEFUL_STOP: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(600);

/// Run values every scenario may read besides its own `variables`.
pub const RUN_VARIABLES: &[&str] = &["run_id"];
/// The run value with the PEM certificate of the scenario's TLS test server; agents trust it
/// (it is not a template variable).
pub const TESTSERVER_CA_VARIABLE: &str = "testserver.ca_pem";
/// Values available when the scenario starts the test server.
pub const TESTSERVER_VARIABLES: &[&str] = &["testserver.url", "testserver.host", "testserver.port"];

/// The most bytes one file named by a scenario may hold.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;
/// The most bytes all files of a scenario may hold together (they travel in one gRPC message).
pub const MAX_BUNDLE_BYTES: usize = 48 * 1024 * 1024;

pub(crate) fn validate(
    file: &str,
    raw: RawScenario,
    files: &BTreeMap<String, Vec<u8>>,
    problems: &mut Problems<'_>,
) -> Option<Scenario> {
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
    let feeds = validate_feeds(&raw.data, files, problems);
    for feed in &feeds {
        known.extend(feed.columns.iter().map(|column| format!("{}.{column}", feed.name)));
    }
    let views = raw.part_views();
    known.extend(crate::steps::defined_variables(&views));
    if !raw.scenarios.is_empty() {
        for (given, field) in [
            (raw.load.is_some(), "load"),
            (!raw.steps.is_empty(), "steps"),
            (!raw.on_message.is_empty(), "on_message"),
            (!raw.on_close.is_empty(), "on_close"),
            (!raw.on_error.is_empty(), "on_error"),
        ] {
            if given {
                problems.add(
                    field,
                    format!("with `scenarios`, each scenario has its own `{field}`"),
                    Some(format!("move `{field}` into the scenarios it belongs to")),
                );
            }
        }
    }
    let mut names: Vec<String> = Vec::new();
    let mut part_names: Vec<String> = Vec::new();
    let mut explicit: HashSet<String> = HashSet::new();
    let mut rendezvous_points = 0u32;
    let mut parts = Vec::new();
    let mut vu_offset = 0u64;
    for view in &views {
        problems.prefix = view.path.clone();
        let name_prefix = match view.name {
            Some(name) => {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                    problems.add(
                        "name",
                        format!("`{name}` cannot name a scenario"),
                        Some("use letters, digits, `_` and `-`".into()),
                    );
                }
                if part_names.iter().any(|known| known == name) {
                    problems.add("name", format!("two scenarios are named `{name}`"), None);
                }
                part_names.push(name.to_owned());
                format!("{name}.")
            }
            None => String::new(),
        };
        let Some(load) = view.load else {
            problems.add(
                "load",
                "no load given",
                Some("add `load:` (e.g. `{ vus: 10, duration: 30s }`), or `scenarios:` each with its own".into()),
            );
            continue;
        };
        let plan = validate_load(load, problems);
        let pacing = load.pacing.as_deref().map(|text| {
            if matches!(load.model.as_deref(), Some("open")) {
                problems.add(
                    "load.pacing",
                    "open-model VUs play the steps once, so there is no iteration to pace",
                    Some("pace rounds inside the steps with `repeat: { pacing: ... }`".into()),
                );
            }
            duration_field(Some(text), "load.pacing", Duration::ZERO, problems)
        });
        let connections = crate::steps::connection_names(view.steps);
        let mut builder = StepBuilder {
            known: known.clone(),
            names: std::mem::take(&mut names),
            send_names: Vec::new(),
            kind_counts: crate::steps::count_kinds(view.steps),
            kind_seen: BTreeMap::new(),
            explicit: std::mem::take(&mut explicit),
            connections: connections.clone(),
            files,
            name_prefix,
            rendezvous_points,
            peak_vus: plan.as_ref().map_or(0, LoadPlan::max_vus),
        };
        if view.steps.is_empty() {
            problems.add(
                "steps",
                "a scenario needs at least one step",
                Some("start with a `connect` step".into()),
            );
        }
        let mut connected = vec![false; connections.len().max(1)];
        let mut steps = builder.steps(view.steps, "steps", &mut connected, problems);
        mark_handshake_readers(&mut steps);
        let reads_last_message = reads_last_message(&steps);
        let (on_message, on_close, on_error) = builder.rules(view, problems);
        names = builder.names;
        explicit = builder.explicit;
        rendezvous_points = builder.rendezvous_points;
        let Some(plan) = plan else { continue };
        let vu_span = match &plan.model {
            LoadModel::Closed { .. } => plan.max_vus(),
            LoadModel::Open { .. } => plan.total_arrivals(),
        };
        parts.push(Part {
            name: view.name.unwrap_or_default().to_owned(),
            plan,
            steps,
            connections,
            on_message,
            on_close,
            on_error,
            pacing,
            vu_offset,
            vu_span,
            reads_last_message,
        });
        vu_offset += vu_span;
    }
    problems.prefix.clear();
    if let Some(first) = parts.first() {
        let policy = first.plan.on_agent_lost;
        for (index, part) in parts.iter().enumerate().skip(1) {
            if part.plan.on_agent_lost != policy {
                problems.add(
                    &format!("scenarios[{index}].load.on_agent_lost"),
                    "every scenario of a run follows one lost-agent policy",
                    Some("give all of them the same `on_agent_lost`".into()),
                );
            }
        }
    }
    check_unique_feeds(&feeds, &raw.data, vu_offset, problems);

    let thresholds = crate::thresholds::validate(&raw.thresholds, &names, problems);
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
        step_names: names,
        thresholds,
        feeds,
        parts,
    })
}

fn validate_feeds(
    raw: &BTreeMap<String, RawFeed>,
    files: &BTreeMap<String, Vec<u8>>,
    problems: &mut Problems<'_>,
) -> Vec<Feed> {
    raw.iter()
        .filter_map(|(name, spec)| {
            let field = format!("data.{name}");
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                problems.add(
                    &field,
                    format!("`{name}` cannot name a data feed"),
                    Some("use letters, digits, `_` and `-`".into()),
                );
            }
            let order = match spec.order.as_deref() {
                None | Some("sequential") => Order::Sequential,
                Some("random") => Order::Random,
                Some("unique") => Order::Unique,
                Some(other) => {
                    problems.add(
                        &format!("{field}.order"),
                        format!("unknown order `{other}`"),
                        Some("use `sequential`, `random` or `unique`".into()),
                    );
                    Order::Sequential
                }
            };
            let per = match (spec.per.as_deref(), order) {
                (None, Order::Unique) | (Some("vu"), _) => Per::Vu,
                (None, _) | (Some("iteration"), _) => Per::Iteration,
                (Some(other), _) => {
                    problems.add(
                        &format!("{field}.per"),
                        format!("unknown choice `{other}`"),
                        Some("use `iteration` (a new row each iteration) or `vu` (one row per VU)".into()),
                    );
                    Per::Iteration
                }
            };
            if order == Order::Unique && per == Per::Iteration {
                problems.add(
                    &format!("{field}.per"),
                    "`unique` gives each VU its own row for all its iterations",
                    Some("drop `per`, or use `order: sequential` for a new row each iteration".into()),
                );
            }
            let wrap = match spec.on_exhausted.as_deref() {
                None | Some("fail") => false,
                Some("wrap") => true,
                Some(other) => {
                    problems.add(
                        &format!("{field}.on_exhausted"),
                        format!("unknown choice `{other}`"),
                        Some("use `fail` or `wrap`".into()),
                    );
                    false
                }
            };
            if spec.on_exhausted.is_some() && order != Order::Unique {
                problems.add(
                    &format!("{field}.on_exhausted"),
                    "only `unique` rows can run out",
                    None,
                );
            }
            let delimiter = match spec.delimiter.as_deref() {
                None => b',',
                Some(text) if text.len() == 1 => text.as_bytes()[0],
                Some("\\t") | Some("\t") => b'\t',
                Some(other) => {
                    problems.add(
                        &format!("{field}.delimiter"),
                        format!("`{other}` is not one character"),
                        None,
                    );
                    b','
                }
            };
            let Some(bytes) = files.get(&spec.csv) else {
                problems.add(
                    &format!("{field}.csv"),
                    format!("file `{}` did not come with the scenario", spec.csv),
                    Some("files are read next to the scenario file when it is loaded from a path; a scenario sent as text cannot name files".into()),
                );
                return None;
            };
            match Feed::parse(bytes, delimiter) {
                Ok((columns, rows)) => Some(Feed {
                    name: name.clone(),
                    columns,
                    rows,
                    order,
                    per,
                    wrap,
                }),
                Err(message) => {
                    problems.add(&format!("{field}.csv"), format!("`{}`: {message}", spec.csv), None);
                    None
                }
            }
        })
        .collect()
}

/// Whether an `extract` step reads the last message taken.
fn reads_last_message(steps: &[Step]) -> bool {
    use crate::steps::{Action, ExtractFrom};
    let mut reads = false;
    crate::steps::each_step(steps, &mut |step| {
        reads |= matches!(&step.action, Action::Extract(extract) if extract.from == ExtractFrom::Message);
    });
    reads
}

/// Connect steps keep their handshake headers when an `extract` step of the same connection
/// reads them.
fn mark_handshake_readers(steps: &mut [Step]) {
    use crate::steps::{Action, ExtractFrom};
    fn mark(steps: &mut [Step], found: &HashSet<usize>) {
        for step in steps {
            match &mut step.action {
                Action::Connect(connect) if found.contains(&connect.conn) => connect.keep_headers = true,
                Action::Repeat(repeat) => mark(&mut repeat.steps, found),
                _ => {}
            }
        }
    }
    let mut found = HashSet::new();
    crate::steps::each_step(steps, &mut |step| {
        if let Action::Extract(extract) = &step.action {
            if extract.from == ExtractFrom::Handshake {
                found.insert(extract.conn);
            }
        }
    });
    if !found.is_empty() {
        mark(steps, &found);
    }
}

/// `unique` rows must cover every VU the load can start, unless they wrap.
fn check_unique_feeds(feeds: &[Feed], raw: &BTreeMap<String, RawFeed>, needed: u64, problems: &mut Problems<'_>) {
    for feed in feeds {
        if feed.order == Order::Unique && !feed.wrap && (feed.rows.len() as u64) < needed {
            let csv = raw.get(&feed.name).map_or("", |spec| spec.csv.as_str());
            problems.add(
                &format!("data.{}.order", feed.name),
                format!(
                    "`{csv}` has {} rows but the load starts up to {needed} VUs, and `unique` gives each its own row",
                    feed.rows.len()
                ),
                Some("add rows, lower the load, or add `on_exhausted: wrap`".into()),
            );
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
