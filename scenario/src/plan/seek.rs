//! Goal seeking (`load: { model: seek, ... }`): the load a part plays is not planned ahead but
//! found during the run. The part starts at `start` and steps up by `step` every `interval`;
//! the controller evaluates the scenario's thresholds (the SLO) on each step's own figures, and
//! after the first step that fails, refines between the last load that passed and the first
//! that failed by bisection, `refine` times at most, then stops the part. The highest load that
//! met every threshold is the answer.
//!
//! Agents play a seek part as a constant load at `start` with no end of its own (the scenario
//! crate compiles it so); the controller moves it from step to step with the changes the
//! operator would make (`plan::control`), so every agent computes its exact share as usual.

use std::time::Duration;

/// What a seek steps: the VUs of a closed-model part, or the arrival rate of an open one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeekMeasure {
    /// Concurrent VUs (`seek: { vus: START, ... }`).
    Vus,
    /// Arrivals per second (`seek: { rate: START, ... }`, with `load.max_vus`).
    Rate,
}

impl SeekMeasure {
    /// The word the summary uses: `vus` or `rate`.
    pub fn name(self) -> &'static str {
        match self {
            SeekMeasure::Vus => "vus",
            SeekMeasure::Rate => "rate",
        }
    }
}

/// A part's goal seek, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Seek {
    pub measure: SeekMeasure,
    /// The first step's load.
    pub start: f64,
    /// How much each step adds while every step passes.
    pub step: f64,
    /// The highest load tried: the seek ends there if every step passed.
    pub max: f64,
    /// How long each step is judged; a whole number of seconds (figures come by the second).
    pub interval: Duration,
    /// How long each step plays before its figures count (connections opening, a backlog of
    /// the step before draining); whole seconds.
    pub warmup: Duration,
    /// Bisection rounds between the last load that passed and the first that failed.
    pub refine: u32,
}

/// How many bisection rounds a seek makes when the scenario does not say.
pub const DEFAULT_REFINE: u32 = 3;

impl Seek {
    /// The load halfway between `passed` and `failed`, or `None` when nothing lies between
    /// (VUs are whole; rates are refined to a hundredth of an arrival per second).
    pub fn between(&self, passed: f64, failed: f64) -> Option<f64> {
        let middle = match self.measure {
            SeekMeasure::Vus => ((passed + failed) / 2.0).floor(),
            SeekMeasure::Rate => ((passed + failed) / 2.0 * 100.0).round() / 100.0,
        };
        (middle > passed && middle < failed).then_some(middle)
    }

    /// The most steps a seek can take: every step up to `max`, then every refinement. With the
    /// interval and the time between steps, it bounds the part's length.
    pub fn most_steps(&self) -> u64 {
        let climbs = if self.step > 0.0 {
            ((self.max - self.start) / self.step).floor().max(0.0) as u64 + 1
        } else {
            1
        };
        climbs + u64::from(self.refine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seek(measure: SeekMeasure) -> Seek {
        Seek {
            measure,
            start: 5.0,
            step: 5.0,
            max: 50.0,
            interval: Duration::from_secs(2),
            warmup: Duration::ZERO,
            refine: 3,
        }
    }

    #[test]
    fn bisection_stops_when_nothing_lies_between() {
        let vus = seek(SeekMeasure::Vus);
        assert_eq!(vus.between(20.0, 25.0), Some(22.0));
        assert_eq!(vus.between(20.0, 22.0), Some(21.0));
        assert_eq!(vus.between(20.0, 21.0), None);
        let rate = seek(SeekMeasure::Rate);
        assert_eq!(rate.between(20.0, 25.0), Some(22.5));
        assert_eq!(rate.between(20.0, 20.01), None);
        assert_eq!(vus.most_steps(), 13);
    }
}
