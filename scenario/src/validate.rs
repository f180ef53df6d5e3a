//! Raw → validated: builds the typed [`Scenario`] from the raw form, collecting every problem
//! with its location before anything runs. The scenario level is here; each part of the file
//! has a module: the load, the data feeds, the steps by family (connection, message, matching,
//! flow) through one builder, and the handlers.

mod builder;
mod compression;
mod connection;
mod feeds;
mod fields;
mod flow;
mod http;
mod load;
mod matching;
mod message;
mod protocol;
mod rules;
mod script;
mod seek;
mod thresholds;
mod walk;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::error::Problems;
use crate::model::{Part, Scenario, TestServerSpec, RUN_VARIABLES, TESTSERVER_VARIABLES};
use crate::plan::LoadModel;
use crate::raw::{PartView, RawScenario};
use crate::steps::{each_step, Action, ExtractFrom, Flush, Step};
use builder::StepBuilder;
use fields::{compile_template, duration_field, flush};

/// Validates a parsed scenario file; problems go to `problems`, each with its field.
pub(crate) fn scenario(
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
    let feeds = feeds::validate(&raw.data, files, problems);
    for feed in &feeds {
        known.extend(feed.columns.iter().map(|column| format!("{}.{column}", feed.name)));
    }
    let views = raw.part_views();
    known.extend(walk::defined_variables(&views));
    if !raw.scenarios.is_empty() {
        refuse_top_level_part_fields(&raw, problems);
    }
    let default_flush = flush(raw.flush.as_deref(), "flush", Flush::Batch, problems);
    let mut run = AcrossParts::default();
    let mut parts = Vec::new();
    let mut part_paths = Vec::new();
    for view in &views {
        problems.prefix = view.path.clone();
        if let Some(part) = part(view, &known, files, default_flush, &mut run, problems) {
            run.vu_offset += part.vu_span;
            parts.push(part);
            part_paths.push(view.path.clone());
        }
    }
    problems.prefix.clear();
    check_one_lost_agent_policy(&parts, problems);
    feeds::check_unique(&feeds, &raw.data, run.vu_offset, problems);

    let thresholds = thresholds::validate(&raw.thresholds, &run.names, problems);
    seek::check_run(&parts, &part_paths, &thresholds, problems);
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
        step_names: run.names,
        thresholds,
        feeds,
        parts,
    })
}

/// What carries from one part to the next: metric names and part names are unique across the
/// run, rendezvous points and VU numbers continue.
#[derive(Default)]
struct AcrossParts {
    /// Every step's and handler's metric name so far, indexed by `StepId`.
    names: Vec<String>,
    part_names: Vec<String>,
    /// Explicit step names so far, with their part's prefix.
    explicit: HashSet<String>,
    rendezvous_points: u32,
    /// The first VU number of the next part.
    vu_offset: u64,
}

/// With `scenarios`, each part has its own load, steps and handlers: none at the top level.
fn refuse_top_level_part_fields(raw: &RawScenario, problems: &mut Problems<'_>) {
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

/// One part: its load, steps and handlers. `None` when it has no load to play.
fn part(
    view: &PartView<'_>,
    known: &[String],
    files: &BTreeMap<String, Vec<u8>>,
    default_flush: Flush,
    run: &mut AcrossParts,
    problems: &mut Problems<'_>,
) -> Option<Part> {
    let name_prefix = part_name_prefix(view.name, &mut run.part_names, problems);
    let Some(load) = view.load else {
        problems.add(
            "load",
            "no load given",
            Some("add `load:` (e.g. `{ vus: 10, duration: 30s }`), or `scenarios:` each with its own".into()),
        );
        return None;
    };
    let (plan, seek) = match load::validate(load, problems) {
        Some((plan, seek)) => (Some(plan), seek),
        None => (None, None),
    };
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
    let connections = walk::connection_names(view.steps);
    let mut builder = StepBuilder {
        known: known.to_vec(),
        names: std::mem::take(&mut run.names),
        send_names: Vec::new(),
        kind_counts: walk::count_kinds(view.steps),
        kind_seen: BTreeMap::new(),
        explicit: std::mem::take(&mut run.explicit),
        connections: connections.clone(),
        files,
        name_prefix,
        rendezvous_points: run.rendezvous_points,
        peak_vus: plan
            .as_ref()
            .map_or(0, |plan| crate::model::peak_vus(plan, seek.as_ref())),
        default_flush,
        socketio_namespaces: protocol::socketio_namespaces(view.steps, &connections),
        connection_protocols: protocol::connection_protocols(view.steps, &connections),
        event_sets: Vec::new(),
        set_origins: Vec::new(),
        mqtt_versions: BTreeMap::new(),
        graphql_subscriptions: Vec::new(),
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
    let events = builder.finish_events();
    run.names = builder.names;
    run.explicit = builder.explicit;
    run.rendezvous_points = builder.rendezvous_points;
    let plan = plan?;
    let vu_span = match &plan.model {
        LoadModel::Closed { .. } => crate::model::peak_vus(&plan, seek.as_ref()),
        LoadModel::Open { .. } => plan.total_arrivals(),
    };
    Some(Part {
        name: view.name.unwrap_or_default().to_owned(),
        plan,
        steps,
        connections,
        on_message,
        on_close,
        on_error,
        pacing,
        vu_offset: run.vu_offset,
        vu_span,
        reads_last_message,
        events,
        seek,
    })
}

/// A named part's metric names start with `NAME.`; names are checked and unique.
fn part_name_prefix(name: Option<&str>, part_names: &mut Vec<String>, problems: &mut Problems<'_>) -> String {
    let Some(name) = name else {
        return String::new();
    };
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

/// Every part of a run follows the first part's lost-agent and joined-agent policies.
fn check_one_lost_agent_policy(parts: &[Part], problems: &mut Problems<'_>) {
    let Some(first) = parts.first() else { return };
    let policy = first.plan.on_agent_lost;
    for (index, part) in parts.iter().enumerate().skip(1) {
        if part.plan.on_agent_lost != policy {
            problems.add(
                &format!("scenarios[{index}].load.on_agent_lost"),
                "every scenario of a run follows one lost-agent policy",
                Some("give all of them the same `on_agent_lost`".into()),
            );
        }
        if part.plan.on_agent_joined != first.plan.on_agent_joined {
            problems.add(
                &format!("scenarios[{index}].load.on_agent_joined"),
                "every scenario of a run follows one joined-agent policy",
                Some("give all of them the same `on_agent_joined`".into()),
            );
        }
    }
}

/// Whether an `extract` step reads the last message taken.
fn reads_last_message(steps: &[Step]) -> bool {
    let mut reads = false;
    each_step(steps, &mut |step| {
        reads |= matches!(&step.action, Action::Extract(extract) if extract.from == ExtractFrom::Message);
    });
    reads
}

/// Connect steps keep their handshake headers when an `extract` step of the same connection
/// reads them.
fn mark_handshake_readers(steps: &mut [Step]) {
    fn mark(steps: &mut [Step], found: &HashSet<usize>) {
        for step in steps {
            match &mut step.action {
                Action::Connect(connect) if found.contains(&connect.conn) => connect.keep_headers = true,
                action => {
                    for inner in action.inner_steps_mut() {
                        mark(inner, found);
                    }
                }
            }
        }
    }
    let mut found = HashSet::new();
    each_step(steps, &mut |step| {
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
