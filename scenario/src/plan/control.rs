//! A part's plan as the operator steers it while the run runs: set the VUs (closed model) or the
//! arrival rate (open model) from a run time on, at once or ramped; hold the plan's clock and
//! resume it; pause and resume the part's VUs; stop the part.
//!
//! Like takeovers, the changes are data: every agent of the run is told the same list, each with
//! the run time it applies from, and computes the same steered plan from it, so the agents' parts
//! still add up to the whole (their share of the steered target follows the same owner sequence
//! as the plan's). The steered plan is the plan's value over run time, piece by linear piece:
//!
//! - following the plan, its stages play on the plan's own clock;
//! - `Hold` stops the plan's clock: the value stays where it is;
//! - `Set` ramps from the value at that time to a new one over `ramp` (at once when zero), then
//!   stays there; it holds the plan's clock too (the operator has taken over);
//! - `Resume` starts the plan's clock again where it stopped: the plan goes on from that point
//!   (and so ends later by the time it was held);
//! - `Pause`/`Unpause` do not touch the value: the part's VUs wait between iterations, and
//!   open-model arrivals due meanwhile are skipped (not made up afterwards);
//! - `Stop` ends the part at that time, as the plan's end would.

use std::time::Duration;

use super::{LoadModel, LoadPlan, RateStage};

/// A change to one part of a running run.
#[derive(Clone, Debug, PartialEq)]
pub struct Control {
    /// The part it applies to, as an index into the scenario's parts.
    pub part: usize,
    /// Run time (since the common start) from which it applies.
    pub at: Duration,
    pub action: ControlAction,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ControlAction {
    /// The fleet's VUs (closed model) or arrivals per second (open model), reached after `ramp`.
    Set { value: f64, ramp: Duration },
    /// Stop the plan's clock.
    Hold,
    /// Start the plan's clock again (and drop a value that `Set` gave).
    Resume,
    /// The part's VUs wait at their next iteration; arrivals are skipped.
    Pause,
    /// The part's VUs go on.
    Unpause,
    /// The part ends, as at the plan's end (running iterations finish within its graceful stop).
    Stop,
}

/// A linear piece of the steered value: from `from` to `to` over `duration` of run time.
#[derive(Clone, Debug, PartialEq)]
struct Piece {
    start: Duration,
    duration: Duration,
    from: f64,
    to: f64,
}

/// How the value moves between changes.
#[derive(Clone, Debug)]
enum Mode {
    /// The plan's stages, on the plan's clock.
    Following,
    /// The plan's clock stopped; the value stays.
    Held,
    /// A value set by the operator: a ramp from `from` at `start` to `to` over `ramp`, then `to`.
    Set {
        from: f64,
        to: f64,
        start: Duration,
        ramp: Duration,
    },
}

/// One part's plan with every change the operator made so far.
#[derive(Clone, Debug)]
pub struct SteeredPlan {
    start_value: f64,
    pieces: Vec<Piece>,
    /// The last value stays for ever (a held or set plan, or a closed plan without stages).
    open_ended: bool,
    /// Paused from, until (`None`: still paused).
    pauses: Vec<(Duration, Option<Duration>)>,
    stopped_at: Option<Duration>,
}

/// A plan's stages as (duration, value reached), from its start value.
fn plan_stages(plan: &LoadPlan) -> (f64, Vec<(Duration, f64)>) {
    match &plan.model {
        LoadModel::Closed { start_vus, stages, .. } => (
            *start_vus as f64,
            stages
                .iter()
                .map(|stage| (stage.duration, stage.target as f64))
                .collect(),
        ),
        LoadModel::Open { start_rate, stages, .. } => (
            *start_rate,
            stages.iter().map(|stage| (stage.duration, stage.rate)).collect(),
        ),
    }
}

/// The plan's value at plan time `at`.
fn plan_value(start: f64, stages: &[(Duration, f64)], at: Duration) -> f64 {
    let mut from = start;
    let mut stage_start = Duration::ZERO;
    for (duration, to) in stages {
        let stage_end = stage_start + *duration;
        if at < stage_end {
            let progress = (at - stage_start).as_secs_f64() / duration.as_secs_f64();
            return from + (to - from) * progress;
        }
        from = *to;
        stage_start = stage_end;
    }
    from
}

impl SteeredPlan {
    /// `plan` with `controls` (every change so far, of any part, in the order made); only those
    /// for `part` count. A change dated before an earlier one applies at the earlier one's time.
    pub fn new(plan: &LoadPlan, part: usize, controls: &[Control]) -> SteeredPlan {
        let (start_value, stages) = plan_stages(plan);
        let plan_end: Duration = stages.iter().map(|(duration, _)| *duration).sum();
        let mut steered = SteeredPlan {
            start_value,
            pieces: Vec::new(),
            open_ended: stages.is_empty(),
            pauses: Vec::new(),
            stopped_at: None,
        };
        let mut mode = Mode::Following;
        // The run time up to which pieces are written, and the plan's clock there.
        let mut written = Duration::ZERO;
        let mut plan_clock = Duration::ZERO;
        let mut value = start_value;
        for control in controls.iter().filter(|control| control.part == part) {
            let at = control.at.max(written);
            steered.write(&mode, &stages, start_value, plan_end, &mut written, &mut plan_clock, at);
            value = steered.value_at_end().unwrap_or(value);
            match &control.action {
                ControlAction::Set { value: to, ramp } => {
                    mode = Mode::Set {
                        from: value,
                        to: to.max(0.0),
                        start: at,
                        ramp: *ramp,
                    }
                }
                ControlAction::Hold => {
                    if matches!(mode, Mode::Following) {
                        mode = Mode::Held;
                    }
                }
                ControlAction::Resume => mode = Mode::Following,
                ControlAction::Pause => {
                    if !steered.is_paused_at_end() {
                        steered.pauses.push((at, None));
                    }
                }
                ControlAction::Unpause => {
                    if let Some((_, until @ None)) = steered.pauses.last_mut() {
                        *until = Some(at);
                    }
                }
                ControlAction::Stop => {
                    steered.stopped_at.get_or_insert(at);
                }
            }
        }
        match mode {
            Mode::Following => {
                // The rest of the plan.
                let rest = plan_end.saturating_sub(plan_clock);
                let until = written + rest;
                steered.write(
                    &mode,
                    &stages,
                    start_value,
                    plan_end,
                    &mut written,
                    &mut plan_clock,
                    until,
                );
            }
            Mode::Set { start, ramp, to, .. } => {
                let until = (start + ramp).max(written);
                steered.write(
                    &mode,
                    &stages,
                    start_value,
                    plan_end,
                    &mut written,
                    &mut plan_clock,
                    until,
                );
                if steered.value_at_end() != Some(to) {
                    // Set at once, as the last change: a jump, no time long.
                    steered.pieces.push(Piece {
                        start: written,
                        duration: Duration::ZERO,
                        from: to,
                        to,
                    });
                }
                steered.open_ended = true;
            }
            Mode::Held => steered.open_ended = true,
        }
        steered
    }

    /// Writes pieces from `written` to `until` as `mode` says, moving the plan's clock when the
    /// plan is followed.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        mode: &Mode,
        stages: &[(Duration, f64)],
        start_value: f64,
        plan_end: Duration,
        written: &mut Duration,
        plan_clock: &mut Duration,
        until: Duration,
    ) {
        if until <= *written {
            return;
        }
        let current = self.value_at_end().unwrap_or(start_value);
        match mode {
            Mode::Following => {
                // Cut the plan's stages at the span's ends (and past the plan's end, its last
                // value stays).
                let mut cuts = vec![*plan_clock];
                let mut stage_end = Duration::ZERO;
                for (duration, _) in stages {
                    stage_end += *duration;
                    if stage_end > *plan_clock && stage_end < *plan_clock + (until - *written) {
                        cuts.push(stage_end);
                    }
                }
                cuts.push(*plan_clock + (until - *written));
                let _ = plan_end;
                for pair in cuts.windows(2) {
                    let (from, to) = (pair[0], pair[1]);
                    self.pieces.push(Piece {
                        start: *written + (from - *plan_clock),
                        duration: to - from,
                        from: plan_value(start_value, stages, from),
                        to: if to >= plan_end && !stages.is_empty() {
                            plan_value(start_value, stages, plan_end)
                        } else {
                            plan_value(start_value, stages, to)
                        },
                    });
                }
                *plan_clock += until - *written;
            }
            Mode::Held => self.pieces.push(Piece {
                start: *written,
                duration: until - *written,
                from: current,
                to: current,
            }),
            Mode::Set { from, to, start, ramp } => {
                let value = |at: Duration| -> f64 {
                    if *ramp == Duration::ZERO || at >= *start + *ramp {
                        *to
                    } else {
                        from + (to - from) * ((at - *start).as_secs_f64() / ramp.as_secs_f64())
                    }
                };
                let ramp_end = *start + *ramp;
                let mut at = *written;
                if at < ramp_end && ramp_end < until {
                    self.pieces.push(Piece {
                        start: at,
                        duration: ramp_end - at,
                        from: value(at),
                        to: *to,
                    });
                    at = ramp_end;
                }
                self.pieces.push(Piece {
                    start: at,
                    duration: until - at,
                    from: value(at),
                    to: value(until),
                });
            }
        }
        *written = until;
    }

    fn value_at_end(&self) -> Option<f64> {
        self.pieces.last().map(|piece| piece.to)
    }

    fn is_paused_at_end(&self) -> bool {
        self.pauses.last().is_some_and(|(_, until)| until.is_none())
    }

    /// The steered value (VUs or arrivals per second) at run time `at`: exact, not rounded.
    pub fn value_at(&self, at: Duration) -> f64 {
        let index = self.pieces.partition_point(|piece| piece.start <= at);
        let Some(piece) = index.checked_sub(1).map(|index| &self.pieces[index]) else {
            return self.start_value;
        };
        if at >= piece.start + piece.duration || piece.duration.is_zero() {
            return piece.to;
        }
        let progress = (at - piece.start).as_secs_f64() / piece.duration.as_secs_f64();
        piece.from + (piece.to - piece.from) * progress
    }

    /// The fleet's VU target at run time `at` (closed model): the value rounded down, as the
    /// plan's own target is.
    pub fn fleet_target_at(&self, at: Duration) -> u64 {
        self.value_at(at).floor().max(0.0) as u64
    }

    /// The most VUs the steered plan asks for at any time (closed model), at least `floor`.
    pub fn peak(&self, floor: u64) -> u64 {
        self.pieces
            .iter()
            .flat_map(|piece| [piece.from, piece.to])
            .chain([self.start_value])
            .map(|value| value.floor().max(0.0) as u64)
            .fold(floor, u64::max)
    }

    /// When the part ends, in run time: the plan's end moved by the time it was held, or the
    /// stop; `None` when it has no end of its own (held, set, or a closed plan without stages).
    pub fn end(&self) -> Option<Duration> {
        let natural = (!self.open_ended).then(|| {
            self.pieces
                .last()
                .map_or(Duration::ZERO, |piece| piece.start + piece.duration)
        });
        match (natural, self.stopped_at) {
            (Some(natural), Some(stop)) => Some(natural.min(stop)),
            (natural, stop) => natural.or(stop),
        }
    }

    /// Whether the part was stopped at or before `at`.
    pub fn stopped_by(&self, at: Duration) -> bool {
        self.stopped_at.is_some_and(|stop| stop <= at)
    }

    /// Whether the part is paused at `at`.
    pub fn paused_at(&self, at: Duration) -> bool {
        self.pauses
            .iter()
            .any(|(from, until)| *from <= at && until.is_none_or(|until| at < until))
    }

    /// How long the part was paused up to `at`.
    pub fn paused_for(&self, at: Duration) -> Duration {
        self.pauses
            .iter()
            .filter(|(from, _)| *from < at)
            .map(|(from, until)| until.unwrap_or(at).min(at) - *from)
            .sum()
    }

    /// The open-model plan that plays the steered rate: its stages are the pieces (a jump is a
    /// stage of one microsecond), and an open end lasts to the plan's `max_duration`. Arrivals
    /// before the first change keep their indices and times, so an agent that switches to this
    /// plan goes on from where it is.
    pub fn rate_plan(&self, plan: &LoadPlan) -> LoadPlan {
        let LoadModel::Open {
            max_vus,
            max_handshakes,
            ..
        } = &plan.model
        else {
            return plan.clone();
        };
        const JUMP: Duration = Duration::from_micros(1);
        let mut stages = Vec::with_capacity(self.pieces.len() + 1);
        let mut rate = self.start_value;
        let mut elapsed = Duration::ZERO;
        for piece in &self.pieces {
            if (piece.from - rate).abs() > 1e-12 {
                stages.push(RateStage {
                    duration: JUMP,
                    rate: piece.from,
                });
                elapsed += JUMP;
            }
            if !piece.duration.is_zero() {
                // A jump's microsecond is taken from the piece that follows, so times stay.
                let duration = piece.duration.saturating_sub(elapsed.saturating_sub(piece.start));
                if !duration.is_zero() {
                    stages.push(RateStage {
                        duration,
                        rate: piece.to,
                    });
                    elapsed += duration;
                }
            }
            rate = piece.to;
        }
        if self.open_ended && elapsed < plan.max_duration {
            stages.push(RateStage {
                duration: plan.max_duration - elapsed,
                rate,
            });
        }
        LoadPlan {
            model: LoadModel::Open {
                start_rate: self.start_value,
                stages,
                max_vus: *max_vus,
                max_handshakes: *max_handshakes,
            },
            ..plan.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{LostAgentPolicy, Stage};

    fn closed(start_vus: u64, stages: &[(u64, u64)]) -> LoadPlan {
        LoadPlan {
            model: LoadModel::Closed {
                start_vus,
                stages: stages
                    .iter()
                    .map(|(seconds, target)| Stage {
                        duration: Duration::from_secs(*seconds),
                        target: *target,
                    })
                    .collect(),
                iterations_per_vu: None,
            },
            graceful_stop: Duration::from_secs(1),
            max_duration: Duration::from_secs(600),
            on_agent_lost: LostAgentPolicy::Continue,
            on_agent_joined: Default::default(),
        }
    }

    fn at(part: usize, seconds: f64, action: ControlAction) -> Control {
        Control {
            part,
            at: Duration::from_secs_f64(seconds),
            action,
        }
    }

    fn secs(seconds: f64) -> Duration {
        Duration::from_secs_f64(seconds)
    }

    #[test]
    fn without_changes_it_is_the_plan() {
        let plan = closed(0, &[(10, 100), (20, 100), (10, 0)]);
        let steered = SteeredPlan::new(&plan, 0, &[]);
        for tenths in 0..450 {
            let time = secs(f64::from(tenths) / 10.0);
            assert_eq!(steered.fleet_target_at(time), plan.fleet_target_at(time), "at {time:?}");
        }
        assert_eq!(steered.end(), Some(secs(40.0)));
        assert_eq!(steered.peak(0), 100);
        // Changes of another part do not count.
        let other = SteeredPlan::new(&plan, 0, &[at(1, 5.0, ControlAction::Stop)]);
        assert_eq!(other.end(), Some(secs(40.0)));
    }

    #[test]
    fn set_ramps_from_where_the_plan_is_then_holds() {
        let plan = closed(0, &[(10, 100), (20, 100)]);
        let steered = SteeredPlan::new(
            &plan,
            0,
            &[at(
                0,
                5.0,
                ControlAction::Set {
                    value: 150.0,
                    ramp: secs(10.0),
                },
            )],
        );
        assert_eq!(steered.fleet_target_at(secs(4.0)), 40);
        assert_eq!(steered.fleet_target_at(secs(5.0)), 50);
        assert_eq!(steered.fleet_target_at(secs(10.0)), 100);
        assert_eq!(steered.fleet_target_at(secs(15.0)), 150);
        assert_eq!(steered.fleet_target_at(secs(500.0)), 150);
        assert_eq!(steered.end(), None);
        assert_eq!(steered.peak(100), 150);
    }

    #[test]
    fn set_at_once_then_resume_goes_back_to_the_plan_where_it_stopped() {
        let plan = closed(10, &[(10, 10), (10, 30)]);
        let controls = [
            at(
                0,
                5.0,
                ControlAction::Set {
                    value: 4.0,
                    ramp: Duration::ZERO,
                },
            ),
            at(0, 8.0, ControlAction::Resume),
        ];
        let steered = SteeredPlan::new(&plan, 0, &controls);
        assert_eq!(steered.fleet_target_at(secs(4.9)), 10);
        assert_eq!(steered.fleet_target_at(secs(5.0)), 4);
        assert_eq!(steered.fleet_target_at(secs(7.9)), 4);
        // Back to the plan at its time 5 s: 10 VUs; its ramp starts at run time 13 s.
        assert_eq!(steered.fleet_target_at(secs(8.0)), 10);
        assert_eq!(steered.fleet_target_at(secs(13.0)), 10);
        assert_eq!(steered.fleet_target_at(secs(18.0)), 20);
        assert_eq!(steered.end(), Some(secs(23.0)));
    }

    #[test]
    fn hold_stops_the_plan_clock_and_resume_moves_the_end() {
        let plan = closed(0, &[(10, 100)]);
        let steered = SteeredPlan::new(
            &plan,
            0,
            &[at(0, 4.0, ControlAction::Hold), at(0, 10.0, ControlAction::Resume)],
        );
        assert_eq!(steered.fleet_target_at(secs(4.0)), 40);
        assert_eq!(steered.fleet_target_at(secs(9.9)), 40);
        assert_eq!(steered.fleet_target_at(secs(11.0)), 50);
        assert_eq!(steered.end(), Some(secs(16.0)));
        let held = SteeredPlan::new(&plan, 0, &[at(0, 4.0, ControlAction::Hold)]);
        assert_eq!(held.fleet_target_at(secs(300.0)), 40);
        assert_eq!(held.end(), None);
    }

    #[test]
    fn pause_stop_and_late_changes() {
        let plan = closed(5, &[(60, 5)]);
        let controls = [
            at(0, 2.0, ControlAction::Pause),
            at(0, 5.0, ControlAction::Unpause),
            at(0, 7.0, ControlAction::Pause),
            at(0, 9.0, ControlAction::Stop),
            // Dated before the stop: applies at the stop's time.
            at(0, 3.0, ControlAction::Hold),
        ];
        let steered = SteeredPlan::new(&plan, 0, &controls);
        assert!(!steered.paused_at(secs(1.9)));
        assert!(steered.paused_at(secs(2.0)));
        assert!(!steered.paused_at(secs(5.0)));
        assert!(steered.paused_at(secs(8.0)));
        assert_eq!(steered.paused_for(secs(8.0)), secs(4.0));
        assert!(steered.stopped_by(secs(9.0)));
        assert!(!steered.stopped_by(secs(8.9)));
        assert_eq!(steered.end(), Some(secs(9.0)));
    }

    #[test]
    fn a_steered_rate_keeps_the_arrivals_before_the_change() {
        let plan = LoadPlan {
            model: LoadModel::Open {
                start_rate: 10.0,
                stages: vec![RateStage {
                    duration: secs(10.0),
                    rate: 10.0,
                }],
                max_vus: 100,
                max_handshakes: 100,
            },
            graceful_stop: secs(1.0),
            max_duration: secs(60.0),
            on_agent_lost: LostAgentPolicy::Continue,
            on_agent_joined: Default::default(),
        };
        let steered = SteeredPlan::new(
            &plan,
            0,
            &[at(
                0,
                4.0,
                ControlAction::Set {
                    value: 20.0,
                    ramp: Duration::ZERO,
                },
            )],
        );
        let rated = steered.rate_plan(&plan);
        for index in 0..40 {
            assert_eq!(rated.arrival_time(index), plan.arrival_time(index), "arrival {index}");
        }
        // From 4 s on, 20 a second until the run's bound (60 s).
        let due = rated.arrival_time(40 + 20 * 10).unwrap();
        assert!((due.as_secs_f64() - 14.0).abs() < 1e-3, "{due:?}");
        assert_eq!(rated.total_arrivals(), 40 + 20 * 56);
        // Resumed at 6 s: the plan's remaining 6 s at 10 a second.
        let resumed = SteeredPlan::new(
            &plan,
            0,
            &[
                at(
                    0,
                    4.0,
                    ControlAction::Set {
                        value: 20.0,
                        ramp: Duration::ZERO,
                    },
                ),
                at(0, 6.0, ControlAction::Resume),
            ],
        )
        .rate_plan(&plan);
        assert_eq!(resumed.total_arrivals(), 40 + 40 + 60);
    }
}
