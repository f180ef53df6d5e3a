//! The run's steering: the operator's changes to a part (`on_control`), draining an agent, the
//! fleet's capacity for a new peak, and the goal seek's moves (`run::seek`), which are changes
//! of a part the run makes itself.

use std::time::{Duration, Instant};

use wsfleet_scenario::plan::control::{Control, SteeredPlan};
use wsfleet_scenario::plan::seek::SeekMeasure;

use super::super::control::{self, Change, ChangeAction, ChangeEvent, ControlError, CONTROL_LEAD};
use super::super::event::RunEvent;
use super::super::seek::SeekMove;
use super::RunState;
use crate::wire;

impl RunState<'_> {
    /// The operator changes a part (the API, the CLI): checked against the scenario, the
    /// changes so far and the fleet's capacity, then sent to every agent still in the run with
    /// every change before it, and put on the run's timeline. A refusal leaves the run as it was.
    pub fn on_control(&mut self, change: Change, now: Instant) -> Result<ChangeEvent, ControlError> {
        if self.stop_sent {
            return Err(ControlError::Refused(
                "the run is stopping: it cannot be changed".into(),
            ));
        }
        if let Some(old) = self
            .agents
            .values()
            .find(|state| state.lost.is_none() && state.playing() && state.info.revision < 3)
        {
            return Err(ControlError::Refused(format!(
                "agent `{}` speaks protocol revision {}, which cannot be steered (3 is needed): upgrade it",
                old.info.id, old.info.revision
            )));
        }
        if let ChangeAction::Drain { agent } = &change.action {
            return self.drain(agent, now);
        }
        let part = control::part_index(self.scenario, change.part.as_deref())?;
        self.refuse_on_seek(part, &change.action)?;
        let at = now.saturating_duration_since(self.start) + CONTROL_LEAD;
        let control = control::to_control(self.scenario, part, &change.action, &self.controls, at)?;
        let mut controls = self.controls.clone();
        controls.push(control.clone());
        if let ChangeAction::SetVus { vus, .. } = &change.action {
            self.check_vus(part, *vus, &controls)?;
        }
        let event = control::event_of(self.scenario, &control, &change.action, &self.controls);
        tracing::info!(run = %self.run_id, part, change = %event.detail, at_seconds = event.at_seconds, "the operator changed the run");
        self.controls = controls;
        self.changes.push(event.clone());
        let message = wire::run_control(&self.run_id, &self.controls);
        self.send_to_all(&message);
        self.events.push(RunEvent::Changed(event.clone()));
        Ok(event)
    }

    /// Each part's plan as far as moving a share goes (its peak and its end), with the
    /// operator's changes: a closed part's VUs past the plan's peak count (the agents size the
    /// takeover's layers by them), a held or set plan has no end of its own.
    pub(super) fn steered_plans(&self) -> Vec<wsfleet_scenario::LoadPlan> {
        self.scenario
            .parts
            .iter()
            .enumerate()
            .map(|(index, part)| {
                if self.controls.iter().all(|control| control.part != index) {
                    return part.plan.clone();
                }
                let steered = SteeredPlan::new(&part.plan, index, &self.controls);
                let mut plan = part.plan.clone();
                match &mut plan.model {
                    wsfleet_scenario::LoadModel::Closed { start_vus, stages, .. } => {
                        let peak = steered.peak(part.peak_vus());
                        *start_vus = peak;
                        *stages = steered
                            .end()
                            .map(|end| {
                                vec![wsfleet_scenario::Stage {
                                    duration: end,
                                    target: peak,
                                }]
                            })
                            .unwrap_or_default();
                    }
                    wsfleet_scenario::LoadModel::Open { stages, start_rate, .. } => {
                        // Only the end counts here; without one of its own, the run's bound.
                        *stages = vec![wsfleet_scenario::RateStage {
                            duration: steered.end().unwrap_or(part.plan.max_duration),
                            rate: *start_rate,
                        }];
                    }
                }
                plan
            })
            .collect()
    }

    /// Drains `agent`: its share of the rest of the run moves to the other agents exactly (the
    /// takeover that a lost agent's share takes, sent to it too), and its VUs finish their
    /// iteration and end.
    fn drain(&mut self, agent: &str, now: Instant) -> Result<ChangeEvent, ControlError> {
        let Some(state) = self.agents.get(agent) else {
            let ids: Vec<String> = self.agents.keys().map(|id| format!("`{id}`")).collect();
            return Err(ControlError::Refused(format!(
                "agent `{agent}` is not in this run: its agents are {}",
                ids.join(", ")
            )));
        };
        if state.lost.is_some() || state.drained || !state.playing() {
            return Err(ControlError::Refused(format!(
                "agent `{agent}` does not play its share any more: nothing to drain"
            )));
        }
        let index = state.index;
        let elapsed = now.saturating_duration_since(self.start);
        let moved = self.redistribute_from(index, elapsed);
        let movers = moved.map_err(|why| ControlError::Refused(format!("agent `{agent}` cannot be drained: {why}")))?;
        if let Some(state) = self.agents.get_mut(agent) {
            state.drained = true;
            state.vus = 0;
        }
        self.events.push(RunEvent::Reshared { shares: self.shares() });
        let from = self.takeovers.last().map_or(elapsed, |takeover| takeover.from);
        let event = ChangeEvent {
            at_seconds: from.as_secs_f64(),
            part: String::new(),
            action: "drain".into(),
            detail: format!("agent `{agent}` drained: its share moved to {movers} agent(s)"),
            ..ChangeEvent::default()
        };
        tracing::info!(run = %self.run_id, agent, movers, "the operator drained an agent");
        self.changes.push(event.clone());
        self.events.push(RunEvent::Changed(event.clone()));
        Ok(event)
    }

    /// Whether the fleet holds `vus` VUs of `part` with `controls` in force; if so, each
    /// agent's share of the peak becomes what they give.
    fn check_vus(&mut self, part: usize, vus: u64, controls: &[Control]) -> Result<(), ControlError> {
        let peaks: Vec<u64> = self
            .scenario
            .parts
            .iter()
            .enumerate()
            .map(|(index, spec)| SteeredPlan::new(&spec.plan, index, controls).peak(spec.peak_vus()))
            .collect();
        if !self.takeovers.is_empty() {
            let before = SteeredPlan::new(&self.scenario.parts[part].plan, part, &self.controls)
                .peak(self.scenario.parts[part].peak_vus());
            if peaks[part] > before {
                return Err(ControlError::Refused(format!(
                    "agents were lost and their share moved to the others: the VUs cannot go past {before} in this run (asked {vus})"
                )));
            }
            return Ok(());
        }
        let holdable: u64 = self
            .agents
            .values()
            .filter(|state| state.lost.is_none())
            .map(|state| state.info.capacity.max_connections)
            .sum();
        // The whole first: the exact split below walks every VU.
        if peaks.iter().sum::<u64>() > holdable {
            return Err(ControlError::Refused(format!(
                "{vus} VUs are more than the fleet holds: its agents hold {holdable} connections in all; add agents or ask for fewer"
            )));
        }
        let mut shares = vec![0u64; self.weights.len()];
        for peak in &peaks {
            let split = wsfleet_scenario::plan::split(&self.weights, *peak)
                .map_err(|error| ControlError::Refused(format!("cannot split {vus} VUs over the fleet: {error}")))?;
            for (share, part_share) in shares.iter_mut().zip(split) {
                *share += part_share;
            }
        }
        for state in self.agents.values() {
            let share = shares.get(state.index).copied().unwrap_or(0);
            if state.lost.is_some() && share > 0 {
                return Err(ControlError::Refused(format!(
                    "{vus} VUs would give lost agent `{}` a share: with `load.on_agent_lost: continue`, the VUs cannot go past the plan's peak in this run",
                    state.info.id
                )));
            }
            if share > state.info.capacity.max_connections {
                return Err(ControlError::Refused(format!(
                    "{vus} VUs are more than the fleet holds: agent `{}` would hold {share} connections, past its {} (the fleet holds {holdable}); add agents or ask for fewer",
                    state.info.id, state.info.capacity.max_connections
                )));
            }
        }
        let mut raised = false;
        for state in self.agents.values_mut() {
            let share = shares.get(state.index).copied().unwrap_or(0);
            raised |= share > state.vus;
            state.vus = state.vus.max(share);
        }
        if raised {
            // The fleet view and the terminal show each agent's share of the new peak.
            self.events.push(RunEvent::Reshared { shares: self.shares() });
        }
        Ok(())
    }

    /// A seeking part takes only a stop from the operator: its load is the seek's.
    fn refuse_on_seek(&self, part: usize, action: &ChangeAction) -> Result<(), ControlError> {
        let seeking = self
            .seeker
            .as_ref()
            .is_some_and(|seeker| seeker.part == part && !seeker.is_done());
        if seeking && *action != ChangeAction::Stop {
            return Err(ControlError::Refused(format!(
                "{} seeks its load (`model: seek`): only `stop` applies to it while it seeks",
                control::label(self.scenario, part)
            )));
        }
        Ok(())
    }

    /// Interval `interval` was shown: it counts in the seek's step; at the step's last second
    /// the seek's move becomes a change of its part, dated on the next whole second at least
    /// [`CONTROL_LEAD`] ahead, sent to every agent and put on the timeline.
    /// Without `now` (the run is over) the step is judged and the seek ends there.
    pub(super) fn seek_interval(&mut self, interval: u64, now: Option<Instant>) {
        let Some(seeker) = self.seeker.as_mut() else { return };
        let Some(sets) = self.aggregate.intervals.get(&interval) else {
            return;
        };
        let Some(next) = seeker.observe(interval, sets, &self.scenario.thresholds) else {
            return;
        };
        let (part, measure) = (seeker.part, seeker.measure());
        let Some(now) = now.filter(|_| !self.stop_sent) else {
            if let Some(seeker) = self.seeker.as_mut() {
                seeker.abandon();
            }
            return;
        };
        let elapsed = now.saturating_duration_since(self.start) + CONTROL_LEAD;
        let at = Duration::from_secs(elapsed.as_secs() + u64::from(elapsed.subsec_nanos() > 0));
        let action = match (&next, measure) {
            (SeekMove::Done, _) => ChangeAction::Stop,
            (SeekMove::Step { load }, SeekMeasure::Vus) => ChangeAction::SetVus {
                vus: *load as u64,
                ramp: Duration::ZERO,
            },
            (SeekMove::Step { load }, SeekMeasure::Rate) => ChangeAction::SetRate {
                rate: *load,
                ramp: Duration::ZERO,
            },
        };
        let made = control::to_control(self.scenario, part, &action, &self.controls, at).and_then(|control| {
            let mut controls = self.controls.clone();
            controls.push(control.clone());
            if let ChangeAction::SetVus { vus, .. } = &action {
                self.check_vus(part, *vus, &controls)?;
            }
            Ok(control)
        });
        let control = match made {
            Ok(control) => control,
            Err(why) => {
                tracing::warn!(run = %self.run_id, %why, "the seek cannot go on");
                if let Some(seeker) = self.seeker.as_mut() {
                    seeker.abandon();
                }
                return;
            }
        };
        let mut event = control::event_of(self.scenario, &control, &action, &self.controls);
        let Some(seeker) = self.seeker.as_mut() else { return };
        let summary = seeker.summary();
        match next {
            SeekMove::Step { load } => {
                seeker.begin(load, at);
                event.action = "seek_step".into();
                event.detail = format!(
                    "seek step {}: {} ({})",
                    summary.steps.len() + 1,
                    summary.load_words(load),
                    summary.steps.last().map_or("", |step| if step.passed {
                        "the last step passed"
                    } else {
                        "the last step failed"
                    }),
                );
            }
            SeekMove::Done => {
                event.action = "seek_end".into();
                event.detail = match summary.found {
                    Some(found) => format!(
                        "seek ended: the highest load within the thresholds is {}",
                        summary.load_words(found)
                    ),
                    None => "seek ended: no load tried met the thresholds".to_owned(),
                };
            }
        }
        tracing::info!(run = %self.run_id, part, change = %event.detail, at_seconds = event.at_seconds, "seek");
        self.controls.push(control);
        self.changes.push(event.clone());
        let message = wire::run_control(&self.run_id, &self.controls);
        self.send_to_all(&message);
        self.events.push(RunEvent::Changed(event));
    }
}
