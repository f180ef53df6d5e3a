//! Goal seeking as the run plays it (`load: { model: seek }`, see `wsfleet_scenario::plan::
//! seek`): the [`Seeker`] gathers each step's own figures from the intervals the run shows,
//! judges the step by the scenario's thresholds once its last second is shown, and says what
//! comes next: a step up while steps pass, bisection between the last load that passed and the
//! first that failed, then the end. The run (`state/steer.rs`) turns each move into a change
//! of the part, the one the operator would make, so agents need nothing of their own for it.
//!
//! Steps start on whole seconds of run time, so a step's figures are exactly the intervals
//! `[from, from + interval)`; the seconds between a step's end and the next one's start (its
//! last reports coming in, the change reaching the agents) belong to no step.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wsfleet_metrics::catalog::{raise_peaks, ACTIVE_CONNECTIONS, ERRORS};
use wsfleet_metrics::summary::LatencyStats;
use wsfleet_metrics::{Counter, Hist, MetricSets};
use wsfleet_scenario::plan::seek::{Seek, SeekMeasure};
use wsfleet_scenario::thresholds::Threshold;

use crate::thresholds::ThresholdResult;

/// What the run does next for the seek.
#[derive(Clone, Debug, PartialEq)]
pub enum SeekMove {
    /// Play `load` next.
    Step { load: f64 },
    /// The seek is over: stop the part.
    Done,
}

/// How a seek ended, in the summary: `found`, `max_reached`, `no_passing_step`, or `unfinished`
/// (the run ended before the seek did).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SeekEnd {
    /// A step failed and the bisection after it ended: `found` is the highest load that passed.
    Found,
    /// Every step up to `max` passed: the service sustains at least `max`.
    MaxReached,
    /// The first step failed already: no load tried meets the thresholds.
    NoPassingStep,
    /// The run stopped (or lost the part) before the seek ended.
    Unfinished,
}

impl SeekEnd {
    /// The word the summary uses.
    pub fn name(self) -> &'static str {
        match self {
            SeekEnd::Found => "found",
            SeekEnd::MaxReached => "max_reached",
            SeekEnd::NoPassingStep => "no_passing_step",
            SeekEnd::Unfinished => "unfinished",
        }
    }
}

/// One step of a seek, judged.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SeekStepSummary {
    /// VUs or arrivals per second.
    pub load: f64,
    /// `climb` (stepping up) or `refine` (bisection).
    pub phase: String,
    /// Run time the step's figures start at, seconds (whole; after its warm-up).
    pub from_seconds: u64,
    pub seconds: u64,
    pub passed: bool,
    /// Each threshold on the step's own figures.
    pub thresholds: Vec<ThresholdResult>,
    pub messages_sent_per_second: f64,
    pub messages_received_per_second: f64,
    pub iterations_per_second: f64,
    /// Errors of every kind in the step.
    pub errors: u64,
    pub peak_active_connections: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_latency: Option<LatencyStats>,
}

/// A seek's outcome and every step, for the summary.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SeekSummary {
    /// The part that sought (empty for a plain scenario's only part).
    pub part: String,
    /// `vus` or `rate`.
    pub measure: String,
    pub start: f64,
    pub step: f64,
    pub max: f64,
    pub interval_seconds: u64,
    /// Seconds each step played before its figures counted.
    #[serde(default)]
    pub warmup_seconds: u64,
    pub refine: u32,
    pub end: SeekEnd,
    /// The highest load that met every threshold; absent when none did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<f64>,
    /// In the order played.
    pub steps: Vec<SeekStepSummary>,
}

impl SeekSummary {
    /// The found load in words, e.g. `20 VUs` or `12.5 arrivals/s`.
    pub fn load_words(&self, load: f64) -> String {
        if self.measure == SeekMeasure::Vus.name() {
            format!("{load} VUs")
        } else {
            format!("{load} arrivals/s")
        }
    }

    /// The seek's verdict in words.
    pub fn verdict(&self) -> String {
        match (self.end, self.found) {
            (SeekEnd::NoPassingStep, _) | (_, None) => "no load tried met every threshold".to_owned(),
            (SeekEnd::MaxReached, Some(found)) => format!(
                "every step passed up to its max: the service sustains at least {}",
                self.load_words(found)
            ),
            (SeekEnd::Unfinished, Some(found)) => format!(
                "the run ended before the seek did: the highest load that passed so far is {}",
                self.load_words(found)
            ),
            (SeekEnd::Found, Some(found)) => {
                format!("the highest load within every threshold is {}", self.load_words(found))
            }
        }
    }

    /// The terminal's table: one line per step.
    pub fn render_text(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "
goal seek ({} from {}, +{} up to {}, {} s steps after {} s of warm-up, {} bisection round(s)): {}",
            self.measure,
            self.start,
            self.step,
            self.max,
            self.interval_seconds,
            self.warmup_seconds,
            self.refine,
            self.verdict()
        );
        let _ = writeln!(
            out,
            "  {:>4}  {:>16}  {:<6}  {:<7}  {:>11}  {:>11}  {:>7}  thresholds",
            "step", "load", "phase", "verdict", "received/s", "latency p95", "errors"
        );
        for (index, step) in self.steps.iter().enumerate() {
            let verdict = if step.passed { "✓ pass" } else { "✗ FAIL" };
            let p95 = step
                .message_latency
                .as_ref()
                .map_or_else(|| "-".to_owned(), |latency| crate::human::human_micros(latency.p95_us));
            let measured: Vec<String> = step
                .thresholds
                .iter()
                .map(|result| format!("{} {}", result.name, result.display))
                .collect();
            let _ = writeln!(
                out,
                "  {:>4}  {:>16}  {:<6}  {:<7}  {:>11.1}  {:>11}  {:>7}  {}",
                index + 1,
                self.load_words(step.load),
                step.phase,
                verdict,
                step.messages_received_per_second,
                p95,
                step.errors,
                measured.join(", ")
            );
        }
    }

    /// The step whose thresholds the run's are: the found load's, else the first step's.
    pub fn deciding_step(&self) -> Option<&SeekStepSummary> {
        match self.found {
            Some(found) => self.steps.iter().rev().find(|step| step.passed && step.load == found),
            None => self.steps.first(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Climbing,
    Refining { passed: f64, failed: f64, rounds_left: u32 },
    Done,
}

/// The step being played: its load, its first interval, and its figures so far.
struct Current {
    load: f64,
    from: u64,
    sets: MetricSets,
    peak_gauges: BTreeMap<String, i64>,
}

/// One part's seek while the run plays it.
pub struct Seeker {
    /// The part's index in the scenario.
    pub part: usize,
    part_name: String,
    spec: Seek,
    phase: Phase,
    /// `None` between a step's end and the next one's start.
    current: Option<Current>,
    steps: Vec<SeekStepSummary>,
    end: Option<SeekEnd>,
}

impl Seeker {
    /// The seek of part `part`, whose first step (its plan's own load) starts with the run.
    pub fn new(part: usize, part_name: &str, spec: &Seek) -> Seeker {
        Seeker {
            part,
            part_name: part_name.to_owned(),
            spec: spec.clone(),
            phase: Phase::Climbing,
            current: Some(Current::new(spec.start, spec.warmup.as_secs())),
            steps: Vec::new(),
            end: None,
        }
    }

    pub fn measure(&self) -> SeekMeasure {
        self.spec.measure
    }

    /// Whether the seek has ended (its part is stopped or stopping).
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Interval `interval` of the fleet was shown: its figures count in the step they fall in.
    /// When it is the step's last second, the step is judged by `thresholds` and the next move
    /// is returned.
    pub fn observe(&mut self, interval: u64, sets: &MetricSets, thresholds: &[Threshold]) -> Option<SeekMove> {
        let length = self.spec.interval.as_secs().max(1);
        let current = self.current.as_mut()?;
        if interval < current.from || interval >= current.from + length {
            return None;
        }
        for (name, set) in &sets.sets {
            if let Err(error) = current.sets.sets.entry(name.clone()).or_default().merge(set) {
                tracing::warn!(%error, interval, "seek: cannot merge the interval's figures");
            }
        }
        raise_peaks(&sets.gauges, &mut current.peak_gauges);
        if interval + 1 < current.from + length {
            return None;
        }
        let current = self.current.take()?;
        let step = current.judge(thresholds, length, self.phase);
        let (load, passed) = (step.load, step.passed);
        tracing::info!(part = self.part, load, passed, "seek step judged");
        self.steps.push(step);
        Some(self.next_after(load, passed))
    }

    /// The move after a step at `load` that `passed` (or not).
    fn next_after(&mut self, load: f64, passed: bool) -> SeekMove {
        let spec = &self.spec;
        let (phase, next) = match self.phase {
            Phase::Done => (Phase::Done, None),
            Phase::Climbing if passed => {
                let up = load + spec.step;
                if up > spec.max + 1e-9 {
                    self.end = Some(SeekEnd::MaxReached);
                    (Phase::Done, None)
                } else {
                    (Phase::Climbing, Some(up))
                }
            }
            Phase::Climbing => match self.highest_passed() {
                None => {
                    self.end = Some(SeekEnd::NoPassingStep);
                    (Phase::Done, None)
                }
                Some(best) => self.refine(best, load, spec.refine),
            },
            Phase::Refining {
                passed: low,
                failed: high,
                rounds_left,
            } => {
                let (low, high) = if passed { (load, high) } else { (low, load) };
                self.refine(low, high, rounds_left)
            }
        };
        self.phase = phase;
        match next {
            Some(load) => SeekMove::Step { load },
            None => {
                self.end.get_or_insert(SeekEnd::Found);
                SeekMove::Done
            }
        }
    }

    /// The next bisection between `passed` and `failed`, if rounds are left and a load lies
    /// between them.
    fn refine(&self, passed: f64, failed: f64, rounds_left: u32) -> (Phase, Option<f64>) {
        match self.spec.between(passed, failed) {
            Some(middle) if rounds_left > 0 => (
                Phase::Refining {
                    passed,
                    failed,
                    rounds_left: rounds_left - 1,
                },
                Some(middle),
            ),
            _ => (Phase::Done, None),
        }
    }

    /// The next step starts at run time `from` (a whole second) with `load`; its figures
    /// count after the warm-up.
    pub fn begin(&mut self, load: f64, from: Duration) {
        self.current = Some(Current::new(load, (from + self.spec.warmup).as_secs()));
    }

    /// The seek cannot go on (its part cannot be changed any more): it ends where it is.
    pub fn abandon(&mut self) {
        self.phase = Phase::Done;
        self.current = None;
        self.end.get_or_insert(SeekEnd::Unfinished);
    }

    fn highest_passed(&self) -> Option<f64> {
        self.steps
            .iter()
            .filter(|step| step.passed)
            .map(|step| step.load)
            .fold(None, |best: Option<f64>, load| {
                Some(best.map_or(load, |best| best.max(load)))
            })
    }

    /// The seek as the summary shows it; a seek the run ended first is `unfinished`.
    pub fn summary(&self) -> SeekSummary {
        SeekSummary {
            part: self.part_name.clone(),
            measure: self.spec.measure.name().to_owned(),
            start: self.spec.start,
            step: self.spec.step,
            max: self.spec.max,
            interval_seconds: self.spec.interval.as_secs(),
            warmup_seconds: self.spec.warmup.as_secs(),
            refine: self.spec.refine,
            end: self.end.unwrap_or(SeekEnd::Unfinished),
            found: self.highest_passed(),
            steps: self.steps.clone(),
        }
    }
}

impl Current {
    fn new(load: f64, from: u64) -> Current {
        Current {
            load,
            from,
            sets: MetricSets::default(),
            peak_gauges: BTreeMap::new(),
        }
    }

    /// The step judged by `thresholds` on its own figures over `seconds`.
    fn judge(self, thresholds: &[Threshold], seconds: u64, phase: Phase) -> SeekStepSummary {
        let results: Vec<ThresholdResult> = thresholds
            .iter()
            .map(|threshold| crate::thresholds::evaluate(threshold, &self.sets, seconds as f64, &self.peak_gauges))
            .collect();
        let total = self.sets.total();
        let per_second = |counter: Counter| total.counter(counter.name()) as f64 / seconds as f64;
        SeekStepSummary {
            load: self.load,
            phase: if matches!(phase, Phase::Climbing) {
                "climb"
            } else {
                "refine"
            }
            .to_owned(),
            from_seconds: self.from,
            seconds,
            passed: results.iter().all(|result| result.passed),
            thresholds: results,
            messages_sent_per_second: per_second(Counter::MessagesSent),
            messages_received_per_second: per_second(Counter::MessagesReceived),
            iterations_per_second: per_second(Counter::Iterations),
            errors: total.labeled(ERRORS).map(|(_, count)| count).sum(),
            peak_active_connections: self.peak_gauges.get(ACTIVE_CONNECTIONS).copied().unwrap_or(0),
            message_latency: total.histograms.get(Hist::MessageLatency.name()).map(LatencyStats::of),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsfleet_metrics::{new_histogram, SetData};

    /// A seek of VUs from 4 by 4 up to 40 in 2 s steps, judged by a p95 under 50 ms.
    fn scenario() -> wsfleet_scenario::Scenario {
        wsfleet_scenario::Bundle {
            path: "s.yaml".into(),
            source: "name: s
load:
  model: seek
  seek: { vus: 4, step: 4, max: 40, interval: 2s, refine: 3 }
steps:
  - connect: { url: 'ws://127.0.0.1:9/' }
thresholds:
  message_latency.p95: '< 50ms'
"
            .into(),
            files: Default::default(),
        }
        .compile()
        .expect("compiles")
    }

    /// One second of figures: 10 messages, each answered in `millis`.
    fn second(millis: u64) -> MetricSets {
        let mut histogram = new_histogram();
        histogram.record_n(millis * 1000, 10).expect("records");
        let mut set = SetData::default();
        set.counters.insert("messages_received".into(), 10);
        set.histograms.insert("message_latency".into(), histogram);
        let mut sets = MetricSets::default();
        sets.sets.insert("receive".into(), set);
        sets
    }

    /// Plays the seek against a service that answers in 1 ms up to `capacity` VUs and in
    /// 200 ms past it; returns the loads tried, in order, and the summary.
    fn play(capacity: f64) -> (Vec<f64>, SeekSummary) {
        let scenario = scenario();
        let mut seeker = Seeker::new(0, "", scenario.parts[0].seek.as_ref().expect("seeks"));
        let mut load = 4.0;
        let mut loads = vec![load];
        // Each step starts a second after the previous one ended (the reports and the lead).
        let mut from = 0u64;
        for _ in 0..30 {
            let millis = if load > capacity { 200 } else { 1 };
            assert_eq!(seeker.observe(from, &second(millis), &scenario.thresholds), None);
            match seeker.observe(from + 1, &second(millis), &scenario.thresholds) {
                Some(SeekMove::Step { load: next }) => {
                    from += 3;
                    seeker.begin(next, Duration::from_secs(from));
                    load = next;
                    loads.push(load);
                }
                Some(SeekMove::Done) => return (loads, seeker.summary()),
                None => panic!("the step's last second gives a move"),
            }
            // A second between steps counts in none.
            assert_eq!(seeker.observe(from - 1, &second(500), &scenario.thresholds), None);
        }
        panic!("the seek did not end");
    }

    #[test]
    fn steps_up_then_bisects_to_the_highest_load_that_passes() {
        let (loads, summary) = play(20.0);
        assert_eq!(loads, [4.0, 8.0, 12.0, 16.0, 20.0, 24.0, 22.0, 21.0]);
        assert_eq!((summary.end, summary.found), (SeekEnd::Found, Some(20.0)));
        let phases: Vec<&str> = summary.steps.iter().map(|step| step.phase.as_str()).collect();
        assert_eq!(
            phases,
            ["climb", "climb", "climb", "climb", "climb", "climb", "refine", "refine"]
        );
        let step = &summary.steps[5];
        assert!(!step.passed);
        assert_eq!(step.thresholds[0].display, "200.06ms"); // hdr precision
        assert_eq!((step.from_seconds, step.seconds), (15, 2));
        assert_eq!(step.messages_received_per_second, 10.0);
        assert_eq!(summary.deciding_step().map(|step| step.load), Some(20.0));

        let (loads, summary) = play(23.0);
        assert_eq!(loads, [4.0, 8.0, 12.0, 16.0, 20.0, 24.0, 22.0, 23.0]);
        assert_eq!(summary.found, Some(23.0));
    }

    #[test]
    fn a_warm_up_keeps_a_steps_first_seconds_out_of_its_figures() {
        let scenario = scenario();
        let mut spec = scenario.parts[0].seek.clone().expect("seeks");
        spec.warmup = Duration::from_secs(1);
        let mut seeker = Seeker::new(0, "", &spec);
        // Second 0 warms up: its slow answers do not count.
        assert_eq!(seeker.observe(0, &second(900), &scenario.thresholds), None);
        assert_eq!(seeker.observe(1, &second(1), &scenario.thresholds), None);
        assert_eq!(
            seeker.observe(2, &second(1), &scenario.thresholds),
            Some(SeekMove::Step { load: 8.0 })
        );
        seeker.begin(8.0, Duration::from_secs(4));
        assert_eq!(seeker.observe(4, &second(900), &scenario.thresholds), None);
        assert_eq!(seeker.observe(5, &second(1), &scenario.thresholds), None);
        assert_eq!(
            seeker.observe(6, &second(1), &scenario.thresholds),
            Some(SeekMove::Step { load: 12.0 })
        );
        let summary = seeker.summary();
        assert_eq!(summary.warmup_seconds, 1);
        assert_eq!(summary.steps[1].from_seconds, 5);
    }

    #[test]
    fn says_when_no_step_passed_and_when_every_step_did() {
        let (loads, summary) = play(1.0);
        assert_eq!(loads, [4.0]);
        assert_eq!((summary.end, summary.found), (SeekEnd::NoPassingStep, None));
        assert_eq!(summary.deciding_step().map(|step| step.passed), Some(false));
        let (loads, summary) = play(100.0);
        assert_eq!(loads.len(), 10);
        assert_eq!((summary.end, summary.found), (SeekEnd::MaxReached, Some(40.0)));
        let mut text = String::new();
        summary.render_text(&mut text);
        assert!(text.contains("the service sustains at least 40 VUs"), "{text}");
    }
}
