//! The closed model on this agent: the fleet's VU target follows the plan, and this agent runs
//! exactly its positions of it, layer after layer (layer 0 is its share of the fleet's VUs; each
//! takeover adds a layer of lost agents' VUs). The plan is followed every 20 ms tick and whenever
//! a VU ends; a VU above the target finishes its iteration and is not replaced. The operator's
//! changes (`plan::control`) steer the target, the part's end and its pause.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use wsfleet_scenario::plan::control::{Control, SteeredPlan};
use wsfleet_scenario::plan::reshare::{ClosedLayers, Takeover};
use wsfleet_scenario::LoadPlan;

use super::context::{PartContext, ShareError};
use super::vus::PartVus;

/// How often the plan's target is followed between VU ends.
const TICK: Duration = Duration::from_millis(20);

/// The executor of a closed-model part.
pub struct ClosedPart<'a> {
    context: &'a PartContext<'a>,
    part: usize,
    plan: &'a LoadPlan,
    /// Each VU plays at most this many iterations, when set.
    iterations_per_vu: Option<u64>,
    layers: ClosedLayers,
    /// The VUs the layers were made for: the plan's peak, or more when the operator asked.
    peak: u64,
    /// The plan with the operator's changes so far.
    steered: SteeredPlan,
    /// Without stages, the part ends when its VUs have played their iterations.
    ends_with_iterations: bool,
    /// Every takeover applied so far.
    takeovers: Vec<Takeover>,
    /// Slots number this agent's VUs layer after layer: `offsets[layer]` is the layer's first.
    offsets: Vec<usize>,
    /// How many of each layer's positions were in play at the last step.
    levels: Vec<usize>,
    /// By slot: the VU has ended (played all its iterations, or was stopped).
    finished: Vec<bool>,
    deadline: Instant,
    stages_end: Option<Instant>,
}

impl<'a> ClosedPart<'a> {
    pub fn new(
        context: &'a PartContext<'a>,
        part: usize,
        plan: &'a LoadPlan,
        iterations_per_vu: Option<u64>,
    ) -> Result<ClosedPart<'a>, ShareError> {
        let steered = SteeredPlan::new(plan, part, &context.controls.borrow());
        let peak = steered.peak(context.scenario.parts[part].peak_vus());
        let layers = ClosedLayers::new(context.weights, &[], peak)?;
        let finished = vec![false; layers.positions(0, context.agent_index).len()];
        Ok(ClosedPart {
            context,
            part,
            plan,
            iterations_per_vu,
            layers,
            peak,
            stages_end: steered.end().map(|end| context.run_start + end),
            steered,
            ends_with_iterations: plan.stages_end().is_none(),
            takeovers: Vec::new(),
            offsets: vec![0],
            levels: vec![0],
            finished,
            deadline: context.run_start + plan.max_duration,
        })
    }

    /// Follows the plan until its end, a stop, or (without stages, or with each VU's iterations
    /// capped) until every VU it could start has played all of them.
    pub async fn play(
        mut self,
        vus: &mut PartVus<'_>,
        takeover_updates: &mut watch::Receiver<Vec<Takeover>>,
        control_updates: &mut watch::Receiver<Vec<Control>>,
    ) -> Result<(), ShareError> {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut updates_open = true;
        let mut controls_open = true;
        loop {
            let now = Instant::now();
            if vus.graceful.is_cancelled() || now >= self.deadline || self.stages_end.is_some_and(|end| now >= end) {
                break;
            }
            self.follow_plan(now, vus);
            if self.is_over(vus) || (self.drained_by(now) && vus.running.is_empty()) {
                break;
            }
            tokio::select! {
                _ = tick.tick() => {}
                Some(slot) = vus.done.recv() => self.vu_ended(slot, vus),
                _ = vus.graceful.cancelled() => {}
                changed = takeover_updates.changed(), if updates_open => {
                    if changed.is_err() {
                        updates_open = false;
                        continue;
                    }
                    let list = takeover_updates.borrow_and_update().clone();
                    if list.len() > self.takeovers.len() {
                        self.take_over(list)?;
                    }
                }
                changed = control_updates.changed(), if controls_open => {
                    if changed.is_err() {
                        controls_open = false;
                        continue;
                    }
                    let list = control_updates.borrow_and_update().clone();
                    self.steer(&list)?;
                }
            }
        }
        Ok(())
    }

    /// The plan's step at `now`: VUs start up to each layer's target and those above it are
    /// asked to finish their iteration.
    fn follow_plan(&mut self, now: Instant, vus: &mut PartVus<'_>) {
        let agent_index = self.context.agent_index;
        let elapsed = now.saturating_duration_since(self.context.run_start);
        let paused = self.steered.paused_at(elapsed);
        if paused != vus.pause.is_paused() {
            vus.pause.set(paused);
        }
        let mut counts = self.layers.counts(self.steered.fleet_target_at(elapsed), elapsed);
        if self.drained_by(now) {
            // Drained (or known lost): the others hold this agent's share from the takeover on.
            counts.iter_mut().for_each(|count| *count = 0);
        }
        for (layer, in_play) in counts.iter().enumerate() {
            let mine = self.layers.positions(layer, agent_index);
            let offset = self.offsets[layer];
            let wanted = mine.partition_point(|position| position < in_play);
            let first_new = self.levels[layer].min(wanted);
            for (index, position) in mine.iter().enumerate().take(wanted).skip(first_new) {
                let slot = offset + index;
                if vus.running.contains_key(&slot) || (self.iterations_per_vu.is_some() && self.finished[slot]) {
                    continue;
                }
                let number = self
                    .context
                    .scenario
                    .vu_number(self.part, self.layers.number(layer, *position));
                vus.spawn(slot, number, None);
            }
            for (_, vu) in vus.running.range(offset + wanted..offset + mine.len()) {
                vu.graceful.cancel();
            }
            self.levels[layer] = wanted;
        }
    }

    /// Whether a takeover names this agent and has begun: the operator drained it, and its
    /// share is the others' from then on.
    fn drained_by(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.context.run_start);
        self.takeovers
            .iter()
            .any(|takeover| takeover.lost.contains(&self.context.agent_index) && elapsed >= takeover.from)
    }

    /// Without stages, or with each VU's iterations capped, the part is over once every VU it
    /// could start has played all of them.
    fn is_over(&self, vus: &PartVus<'_>) -> bool {
        (self.ends_with_iterations || self.iterations_per_vu.is_some())
            && vus.running.is_empty()
            && self.finished.iter().all(|done| *done)
    }

    fn vu_ended(&mut self, slot: usize, vus: &mut PartVus<'_>) {
        vus.running.remove(&slot);
        if let Some(finished) = self.finished.get_mut(slot) {
            *finished = true;
        }
    }

    /// The operator's changes (every one so far): the target, the end and the pause follow the
    /// steered plan; a target past the peak grows the layers (the controller refuses that once
    /// agents were taken over, whose layers number their VUs from the peak on).
    fn steer(&mut self, list: &[Control]) -> Result<(), ShareError> {
        self.steered = SteeredPlan::new(self.plan, self.part, list);
        self.stages_end = self.steered.end().map(|end| self.context.run_start + end);
        let peak = self.steered.peak(self.context.scenario.parts[self.part].peak_vus());
        if peak > self.peak && self.takeovers.is_empty() {
            self.layers = ClosedLayers::new(self.context.weights, &[], peak)?;
            self.finished
                .resize(self.layers.positions(0, self.context.agent_index).len(), false);
            self.peak = peak;
        }
        tracing::info!(
            run = %self.context.run_id,
            part = self.part,
            changes = list.len(),
            peak,
            "the operator steered the part"
        );
        Ok(())
    }

    /// Takeovers: new layers follow the earlier ones, which do not change.
    fn take_over(&mut self, list: Vec<Takeover>) -> Result<(), ShareError> {
        let agent_index = self.context.agent_index;
        let grown = ClosedLayers::new(self.context.weights, &list, self.peak)?;
        for layer in self.layers.layer_count()..grown.layer_count() {
            let previous = self.offsets[layer - 1] + grown.positions(layer - 1, agent_index).len();
            self.offsets.push(previous);
            self.levels.push(0);
            self.finished
                .resize(previous + grown.positions(layer, agent_index).len(), false);
        }
        tracing::info!(
            run = %self.context.run_id,
            takeovers = list.len(),
            peak_vus = grown.parts(self.peak)[agent_index],
            "taking over the VUs of lost agents"
        );
        self.layers = grown;
        self.takeovers = list;
        Ok(())
    }
}
