//! `load: { model: seek, seek: { ... } }`: the goal seek's fields, checked with their
//! locations, and the plan agents play for it (a constant load at the start, moved by the
//! controller from step to step); see `plan::seek`.

use std::time::Duration;

use crate::error::Problems;
use crate::model::Part;
use crate::plan::seek::{Seek, SeekMeasure, DEFAULT_REFINE};
use crate::plan::{LoadModel, LoadPlan, RateStage};
use crate::raw::RawLoad;
use crate::thresholds::Threshold;

use super::fields::duration_field;

/// The most bisection rounds a seek may ask for.
const MOST_REFINE: u32 = 20;

/// Time a step may take beyond its interval: its last second's reports reach the controller
/// and the next step is dated ahead (see the controller's `run::seek`).
const STEP_OVERHEAD: Duration = Duration::from_secs(2);

/// A part's `model: seek`: its plan and its seek, or `None` with the problems said.
pub(super) fn seek_model(
    load: &RawLoad,
    graceful_stop: Duration,
    max_duration: Duration,
    max_duration_given: bool,
    problems: &mut Problems<'_>,
) -> Option<(LoadPlan, Seek)> {
    for (given, field) in [
        (load.vus.is_some(), "vus"),
        (load.iterations.is_some(), "iterations"),
        (load.duration.is_some(), "duration"),
        (load.stages.is_some(), "stages"),
        (load.start_vus.is_some(), "start_vus"),
        (load.rate.is_some(), "rate"),
        (load.start_rate.is_some(), "start_rate"),
    ] {
        if given {
            problems.add(
                &format!("load.{field}"),
                format!("`{field}` does not go with `model: seek`: the seek sets the load step by step"),
                Some("say where the seek starts with `seek: { vus: N }` or `seek: { rate: N }`".into()),
            );
        }
    }
    let Some(raw) = &load.seek else {
        problems.add(
            "load",
            "`model: seek` needs `seek:`",
            Some("e.g. `seek: { vus: 10, step: 10, max: 200, interval: 10s }`".into()),
        );
        return None;
    };
    let (measure, start) = match (raw.vus, raw.rate) {
        (Some(vus), None) => (SeekMeasure::Vus, vus as f64),
        (None, Some(rate)) => (SeekMeasure::Rate, rate),
        (Some(_), Some(_)) => {
            problems.add(
                "load.seek.rate",
                "give either `vus` (step the VUs) or `rate` (step the arrival rate), not both",
                None,
            );
            return None;
        }
        (None, None) => {
            problems.add(
                "load.seek",
                "say what the seek steps and where it starts",
                Some("add `vus: N` (concurrent VUs) or `rate: N` (arrivals per second, with `load.max_vus`)".into()),
            );
            return None;
        }
    };
    let start_field = format!("load.seek.{}", measure.name());
    if !(start.is_finite() && start > 0.0) {
        problems.add(&start_field, "the seek starts above 0", None);
    }
    let step = required_number(
        raw.step,
        "load.seek.step",
        "how much each step adds, e.g. `step: 10`",
        problems,
    );
    let max = required_number(
        raw.max,
        "load.seek.max",
        "the highest load to try, e.g. `max: 500`",
        problems,
    );
    if step.is_some_and(|step| !(step.is_finite() && step > 0.0)) {
        problems.add("load.seek.step", "a step adds more than 0", None);
    }
    if let Some(max) = max {
        if !(max.is_finite() && max >= start) {
            problems.add(
                "load.seek.max",
                format!("`max` ({max}) is below where the seek starts ({start})"),
                None,
            );
        }
    }
    if measure == SeekMeasure::Vus {
        for (value, field) in [(step, "load.seek.step"), (max, "load.seek.max")] {
            if value.is_some_and(|value| value.fract() != 0.0) {
                problems.add(field, "VUs are whole: give a whole number", None);
            }
        }
    }
    let interval = match raw.interval.as_deref() {
        None => {
            problems.add(
                "load.seek",
                "the seek needs `interval`: how long each step lasts",
                Some("e.g. `interval: 10s`".into()),
            );
            Duration::from_secs(1)
        }
        Some(text) => {
            let interval = duration_field(Some(text), "load.seek.interval", Duration::from_secs(1), problems);
            if interval < Duration::from_secs(1) || interval.subsec_nanos() != 0 {
                problems.add(
                    "load.seek.interval",
                    format!("`{text}` is not a whole number of seconds: figures are judged by the second"),
                    Some("use e.g. `5s` or `1m`".into()),
                );
            }
            interval
        }
    };
    let warmup = match raw.warmup.as_deref() {
        None => Duration::ZERO,
        Some(text) => {
            let warmup = duration_field(Some(text), "load.seek.warmup", Duration::ZERO, problems);
            if warmup.subsec_nanos() != 0 {
                problems.add(
                    "load.seek.warmup",
                    format!("`{text}` is not a whole number of seconds: figures are judged by the second"),
                    Some("use e.g. `0s`, `3s` or `1m`".into()),
                );
            }
            warmup
        }
    };
    let refine = raw.refine.unwrap_or(DEFAULT_REFINE);
    if refine > MOST_REFINE {
        problems.add(
            "load.seek.refine",
            format!("{refine} bisection rounds are more than {MOST_REFINE}"),
            Some("each round halves the gap: 10 already divide it by 1,024".into()),
        );
    }
    let seek = Seek {
        measure,
        start,
        step: step?,
        max: max?,
        interval,
        warmup,
        refine,
    };
    let longest = (warmup + interval + STEP_OVERHEAD) * u32::try_from(seek.most_steps()).unwrap_or(u32::MAX);
    if longest > max_duration {
        problems.add(
            if max_duration_given {
                "load.max_duration"
            } else {
                "load.seek"
            },
            format!(
                "the seek may take {} steps of {}s, up to {}s, past the run's bound of {}s (`load.max_duration`)",
                seek.most_steps(),
                (warmup + interval).as_secs(),
                longest.as_secs(),
                max_duration.as_secs()
            ),
            Some(
                "raise `load.max_duration`, or take fewer steps (a larger `step`, a lower `max`, fewer `refine`)"
                    .into(),
            ),
        );
    }
    let model = match measure {
        SeekMeasure::Vus => {
            for field in ["max_vus", "max_handshakes"] {
                let given = if field == "max_vus" {
                    load.max_vus
                } else {
                    load.max_handshakes
                };
                if given.is_some() {
                    problems.add(
                        &format!("load.{field}"),
                        format!("`{field}` goes with a seek of the arrival rate (`seek: {{ rate: N }}`)"),
                        None,
                    );
                }
            }
            LoadModel::Closed {
                start_vus: start as u64,
                stages: Vec::new(),
                iterations_per_vu: None,
            }
        }
        SeekMeasure::Rate => {
            if load.pacing.is_some() {
                problems.add(
                    "load.pacing",
                    "open-model VUs play the steps once, so there is no iteration to pace",
                    Some("pace rounds inside the steps with `repeat: { pacing: ... }`".into()),
                );
            }
            let Some(max_vus) = load.max_vus else {
                problems.add(
                    "load",
                    "a seek of the arrival rate needs `max_vus`: the most VUs that may run at once across the fleet",
                    Some("arrivals past the cap are counted as dropped".into()),
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
            LoadModel::Open {
                start_rate: start,
                stages: vec![RateStage {
                    duration: max_duration,
                    rate: start,
                }],
                max_vus,
                max_handshakes,
            }
        }
    };
    let plan = LoadPlan {
        model,
        graceful_stop,
        max_duration,
        on_agent_lost: super::load::lost_agent_policy(load, problems),
    };
    Some((plan, seek))
}

fn required_number(value: Option<f64>, field: &str, hint: &str, problems: &mut Problems<'_>) -> Option<f64> {
    if value.is_none() {
        let (parent, name) = field.rsplit_once('.').unwrap_or(("load", field));
        problems.add(parent, format!("the seek needs `{name}`"), Some(hint.to_owned()));
    }
    value
}

/// Across the run: at most one part seeks, and the scenario has the thresholds it seeks by,
/// none of them stopping the run.
/// `paths` are the parts' paths in the file (`""` or `scenarios[N].`).
pub(super) fn check_run(parts: &[Part], paths: &[String], thresholds: &[Threshold], problems: &mut Problems<'_>) {
    let seeking: Vec<usize> = parts
        .iter()
        .enumerate()
        .filter(|(_, part)| part.seek.is_some())
        .map(|(index, _)| index)
        .collect();
    let Some(first) = seeking.first() else { return };
    let field = |index: usize| format!("{}load.model", paths.get(index).map_or("", String::as_str));
    for index in seeking.iter().skip(1) {
        problems.add(
            &field(*index),
            "only one scenario of a run can seek: the thresholds judge the whole fleet's figures",
            Some("seek in one scenario; give the others a planned load".into()),
        );
    }
    if thresholds.is_empty() {
        problems.add(
            &field(*first),
            "a seek needs `thresholds`: they are the goal each step is judged by",
            Some("e.g. `thresholds: { message_latency.p95: '< 50ms', errors.rate: '< 0.01' }`".into()),
        );
    }
    for threshold in thresholds.iter().filter(|threshold| threshold.abort_on_fail) {
        problems.add(
            &format!("thresholds.{}.abort_on_fail", threshold.name),
            "a seek judges each step by the thresholds: a threshold cannot stop its run",
            Some("drop `abort_on_fail`; the seek stops once it found the highest load that passes".into()),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::seek::SeekMeasure;
    use crate::plan::LoadModel;
    use crate::positions::Location;
    use crate::{Bundle, Scenario, ScenarioError};

    fn compile(load: &str, thresholds: &str) -> Result<Scenario, ScenarioError> {
        Bundle {
            path: "s.yaml".into(),
            source: format!(
                "name: seek\nload:\n{load}\nsteps:\n  - connect: {{ url: 'ws://127.0.0.1:9/' }}\n{thresholds}"
            ),
            files: Default::default(),
        }
        .compile()
    }

    const SLO: &str = "thresholds:\n  message_latency.p95: '< 50ms'\n";

    #[test]
    fn a_vu_seek_compiles_to_a_constant_start_with_its_max_as_the_peak() {
        let scenario = compile("  model: seek\n  seek: { vus: 5, step: 5, max: 50, interval: 3s }", SLO).unwrap();
        let part = &scenario.parts[0];
        let seek = part.seek.as_ref().unwrap();
        assert_eq!(
            (seek.measure, seek.start, seek.step, seek.max, seek.refine),
            (SeekMeasure::Vus, 5.0, 5.0, 50.0, 3)
        );
        assert_eq!((seek.interval.as_secs(), seek.warmup.as_secs()), (3, 0));
        assert!(matches!(
            &part.plan.model,
            LoadModel::Closed { start_vus: 5, stages, iterations_per_vu: None } if stages.is_empty()
        ));
        // Capacity and VU numbers are sized for the highest load the seek may try.
        assert_eq!(scenario.max_vus(), 50);
        assert_eq!(part.vu_span, 50);

        let rate = compile(
            "  model: seek\n  seek: { rate: 10, step: 2.5, max: 40, interval: 2s, warmup: 2s, refine: 5 }\n  max_vus: 100",
            SLO,
        )
        .unwrap();
        let seek = rate.parts[0].seek.as_ref().unwrap();
        assert_eq!(
            (seek.measure, seek.refine, seek.warmup.as_secs()),
            (SeekMeasure::Rate, 5, 2)
        );
        assert!(
            matches!(&rate.parts[0].plan.model, LoadModel::Open { start_rate, max_vus: 100, .. } if *start_rate == 10.0)
        );
    }

    #[test]
    fn seek_problems_are_located_and_say_what_to_do() {
        let problems = |load: &str, thresholds: &str| -> Vec<(String, String, Option<Location>)> {
            compile(load, thresholds)
                .expect_err("refused")
                .problems()
                .iter()
                .map(|problem| (problem.field.clone(), problem.message.clone(), problem.location))
                .collect()
        };
        let found = problems("  model: seek\n  seek: { vus: 5, step: 5, max: 50, interval: 3s }", "");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].0, "load.model");
        assert!(found[0].1.contains("a seek needs `thresholds`"), "{found:#?}");

        let found = problems(
            "  model: seek\n  seek: { vus: 5, step: 0.5, max: 50, interval: 1500ms }",
            SLO,
        );
        let fields: Vec<&str> = found.iter().map(|(field, _, _)| field.as_str()).collect();
        assert_eq!(fields, ["load.seek.step", "load.seek.interval"], "{found:#?}");
        assert_eq!(found[1].2, Some(Location { line: 4, column: 49 }));

        let found = problems(
            "  model: seek\n  vus: 3\n  seek: { vus: 5, step: 5, interval: 2s }",
            SLO,
        );
        let fields: Vec<&str> = found.iter().map(|(field, _, _)| field.as_str()).collect();
        assert_eq!(fields, ["load.vus", "load.seek"], "{found:#?}");
        assert!(found[1].1.contains("the seek needs `max`"), "{found:#?}");

        let found = problems(
            "  model: seek\n  seek: { rate: 5, step: 5, max: 50, interval: 2s }",
            SLO,
        );
        assert!(found[0].1.contains("needs `max_vus`"), "{found:#?}");

        // 1 + 1000 steps of 12 s do not fit in the default 10 minutes.
        let found = problems(
            "  model: seek\n  seek: { vus: 1, step: 1, max: 1000, interval: 10s }",
            SLO,
        );
        assert_eq!(found[0].0, "load.seek");
        assert!(found[0].1.contains("past the run's bound of 600s"), "{found:#?}");

        let found = problems(
            "  model: seek\n  seek: { vus: 5, step: 5, max: 50, interval: 2s }",
            "thresholds:\n  message_latency.p95: { condition: '< 50ms', abort_on_fail: true }\n",
        );
        assert_eq!(found[0].0, "thresholds.message_latency.p95.abort_on_fail");

        let found = problems("  vus: 5\n  duration: 10s\n  seek: { vus: 5 }", SLO);
        assert_eq!(found[0].0, "load.seek");
        assert!(found[0].1.contains("goes with `model: seek`"), "{found:#?}");
    }
}
