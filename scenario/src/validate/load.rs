//! A part's `load`: the closed model (VUs, stages, iterations) or the open model (arrival
//! rates), the stop bounds, and the lost-agent policy.

use std::time::Duration;

use crate::error::{closest, Problems};
use crate::model::{DEFAULT_GRACEFUL_STOP, DEFAULT_MAX_DURATION};
use crate::plan::seek::Seek;
use crate::plan::{LoadModel, LoadPlan, LostAgentPolicy, RateStage, Stage};
use crate::raw::RawLoad;

use super::fields::duration_field;

/// The load of a part, closed (concurrent VUs), open (an arrival rate) or a goal seek (with
/// its [`Seek`]).
pub(super) fn validate(load: &RawLoad, problems: &mut Problems<'_>) -> Option<(LoadPlan, Option<Seek>)> {
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
    if load.seek.is_some() && load.model.as_deref() != Some("seek") {
        problems.add(
            "load.seek",
            "`seek` goes with `model: seek`",
            Some("add `model: seek`, or drop `seek`".into()),
        );
    }
    match load.model.as_deref() {
        None | Some("closed") => {}
        Some("open") => return open_model(load, graceful_stop, max_duration, problems).map(|plan| (plan, None)),
        Some("seek") => {
            let given = load.max_duration.is_some();
            return super::seek::seek_model(load, graceful_stop, max_duration, given, problems)
                .map(|(plan, seek)| (plan, Some(seek)));
        }
        Some(other) => {
            problems.add(
                "load.model",
                format!("unknown load model `{other}`"),
                Some("use `closed` (concurrent VUs), `open` (an arrival rate) or `seek` (find the highest load within the thresholds)".into()),
            );
            return None;
        }
    }
    let model = closed_model(load, problems)?;
    let plan = LoadPlan {
        model,
        graceful_stop,
        max_duration,
        on_agent_lost: lost_agent_policy(load, problems),
    };
    Some((plan, None))
}

/// The closed model: `vus` for a constant load, or `stages` for a ramp; with `iterations`,
/// `duration`, or both.
fn closed_model(load: &RawLoad, problems: &mut Problems<'_>) -> Option<LoadModel> {
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
    Some(model)
}

/// `model: open`: arrivals per second, capped by `max_vus` and `max_handshakes`.
fn open_model(
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
pub(super) fn lost_agent_policy(load: &RawLoad, problems: &mut Problems<'_>) -> LostAgentPolicy {
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
