//! The open model on this agent: the fleet's arrivals follow one owner sequence, this agent
//! starts the ones it owns when they are due (scheduled against absolute time, so the rate never
//! drifts), within its share of the fleet's caps on VUs and handshakes in flight. An arrival
//! beyond a cap is dropped and counted. A takeover moves lost agents' arrivals here. The
//! operator's changes (`plan::control`) steer the rate (arrivals follow the steered plan from
//! the same index on), the end, and a pause, during which due arrivals are skipped.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{watch, Semaphore};
use wsfleet_metrics::Counter;
use wsfleet_scenario::plan::control::{Control, SteeredPlan};
use wsfleet_scenario::plan::reshare::{self, ArrivalOwners, ClosedLayers, Takeover};
use wsfleet_scenario::LoadPlan;

use super::context::{PartContext, ShareError};
use super::vus::PartVus;

/// What ended a wait for the next arrival.
enum Wake {
    /// The arrival is due (or, without one, the arrivals are over).
    Due,
    /// The part stops (a stop, or the session is gone).
    Stop,
    /// New takeovers: every one so far.
    Takeovers(Vec<Takeover>),
    /// The operator's changes: every one so far.
    Controls(Vec<Control>),
}

/// The executor of an open-model part.
pub struct OpenPart<'a> {
    context: &'a PartContext<'a>,
    part: usize,
    plan: &'a LoadPlan,
    /// The plan with the operator's changes, and the rate plan that plays it.
    steered: SteeredPlan,
    rated: LoadPlan,
    /// The fleet's caps, and this agent's shares of them.
    fleet_max_vus: u64,
    fleet_max_handshakes: u64,
    my_max_vus: usize,
    my_handshakes: usize,
    /// Places among the handshakes in flight; a VU holds one until it has connected.
    handshakes: Arc<Semaphore>,
    /// The plan's arrivals, and who owns each.
    total: u64,
    owners: ArrivalOwners,
    /// Every takeover applied so far, and the first arrival index of each.
    takeovers: Vec<Takeover>,
    takeover_starts: Vec<u64>,
    /// The slot of the last arrival (owned ones, started or dropped).
    slot: usize,
    /// No arrival starts from here on (`max_duration`, the safety bound).
    deadline: Instant,
    /// No arrival is due from here on (the plan's end, a stop, a drain); one due before it
    /// starts even if the agent wakes for it later.
    arrivals_end: Instant,
}

impl<'a> OpenPart<'a> {
    pub fn new(
        context: &'a PartContext<'a>,
        part: usize,
        plan: &'a LoadPlan,
        fleet_max_vus: u64,
        fleet_max_handshakes: u64,
    ) -> Result<OpenPart<'a>, ShareError> {
        let (my_max_vus, my_handshakes) = caps(context, &[], fleet_max_vus, fleet_max_handshakes)?;
        let total = plan.total_arrivals();
        let deadline = context.run_start + plan.max_duration;
        let steered = SteeredPlan::new(plan, part, &context.controls.borrow());
        let stages_end = steered.end().map(|end| context.run_start + end);
        Ok(OpenPart {
            context,
            part,
            plan,
            rated: steered.rate_plan(plan),
            steered,
            fleet_max_vus,
            fleet_max_handshakes,
            my_max_vus,
            my_handshakes,
            handshakes: Arc::new(Semaphore::new(my_handshakes.max(usize::from(my_max_vus > 0)))),
            total,
            owners: ArrivalOwners::new(context.weights, total)?,
            takeovers: Vec::new(),
            takeover_starts: Vec::new(),
            slot: 0,
            deadline,
            arrivals_end: stages_end.unwrap_or(deadline).min(deadline),
        })
    }

    /// Plays the arrivals, then waits for the VUs still playing to finish their iteration (the
    /// wind-down bounds the wait only after the plan's end or a stop).
    pub async fn play(
        mut self,
        vus: &mut PartVus<'_>,
        takeover_updates: &mut watch::Receiver<Vec<Takeover>>,
        control_updates: &mut watch::Receiver<Vec<Control>>,
    ) -> Result<(), ShareError> {
        'arrivals: loop {
            // Where this look-ahead starts: a takeover received while waiting goes back here.
            let snapshot = self.owners.clone();
            let next = self.next_owned();
            let wake = next.map_or(self.arrivals_end, |(_, due)| due);
            match self.wait(wake, vus, takeover_updates, control_updates).await {
                Wake::Due => {}
                Wake::Stop => break 'arrivals,
                Wake::Takeovers(list) => {
                    self.take_over(snapshot, list)?;
                    continue 'arrivals;
                }
                Wake::Controls(list) => {
                    self.owners = snapshot;
                    self.steer(&list);
                    continue 'arrivals;
                }
            }
            let Some((number, due)) = next else { break };
            // An arrival due before the part's end starts even if the agent woke for it after
            // the end (a busy core): the plan's count is exact. Only the safety bound cuts it.
            if Instant::now() >= self.deadline {
                break;
            }
            let paused = self
                .steered
                .paused_at(due.saturating_duration_since(self.context.run_start));
            if paused != vus.pause.is_paused() {
                vus.pause.set(paused);
            }
            if paused {
                // Due while the part is paused: skipped, not made up afterwards.
                continue;
            }
            self.arrive(number, vus);
        }
        while !vus.running.is_empty() && !vus.graceful.is_cancelled() && Instant::now() < self.deadline {
            tokio::select! {
                Some(slot) = vus.done.recv() => { vus.running.remove(&slot); }
                _ = vus.graceful.cancelled() => {}
                _ = tokio::time::sleep_until(self.deadline.into()) => {}
            }
        }
        Ok(())
    }

    /// The next arrival of the fleet's sequence that this agent owns (its number, and when it is
    /// due); `None` when it owns no more (a takeover may still give it some).
    fn next_owned(&mut self) -> Option<(u64, Instant)> {
        loop {
            let arrival = self.owners.next()?;
            let due = self.context.run_start + self.rated.arrival_time(arrival.index)?;
            if due >= self.arrivals_end {
                // Past the part's end (a stop, a drain): none is started.
                return None;
            }
            if arrival.owner == self.context.agent_index {
                return Some((arrival.number, due));
            }
        }
    }

    /// Waits until `wake`, a stop or new takeovers, noting the VUs that end meanwhile.
    async fn wait(
        &self,
        wake: Instant,
        vus: &mut PartVus<'_>,
        takeover_updates: &mut watch::Receiver<Vec<Takeover>>,
        control_updates: &mut watch::Receiver<Vec<Control>>,
    ) -> Wake {
        loop {
            tokio::select! {
                // A late agent finds its arrival due and a stop or a change ready at once: the
                // stop and the changes go first, so nothing starts after a stop or against an
                // outdated share.
                biased;
                _ = vus.graceful.cancelled() => return Wake::Stop,
                changed = takeover_updates.changed() => {
                    if changed.is_err() {
                        // The session is gone; the run is being stopped.
                        return Wake::Stop;
                    }
                    let list = takeover_updates.borrow_and_update().clone();
                    if list.len() > self.takeovers.len() {
                        return Wake::Takeovers(list);
                    }
                }
                changed = control_updates.changed() => {
                    if changed.is_err() {
                        return Wake::Stop;
                    }
                    return Wake::Controls(control_updates.borrow_and_update().clone());
                }
                Some(slot) = vus.done.recv() => { vus.running.remove(&slot); }
                _ = tokio::time::sleep_until(wake.into()) => return Wake::Due,
            }
        }
    }

    /// The operator's changes (every one so far): arrivals from the look-ahead's start on follow
    /// the steered rate, which keeps the indices and times of those before the change.
    fn steer(&mut self, list: &[Control]) {
        self.steered = SteeredPlan::new(self.plan, self.part, list);
        self.rated = self.steered.rate_plan(self.plan);
        let end = self.steered.end().map(|end| self.context.run_start + end);
        self.arrivals_end = end.unwrap_or(self.deadline).min(self.deadline);
        if let Some(drained) = self.drained_from() {
            self.arrivals_end = self.arrivals_end.min(drained);
        }
        tracing::info!(run = %self.context.run_id, part = self.part, changes = list.len(), "the operator steered the part");
    }

    /// When a takeover of this agent's own share begins (the operator drained it).
    fn drained_from(&self) -> Option<Instant> {
        self.takeovers
            .iter()
            .find(|takeover| takeover.lost.contains(&self.context.agent_index))
            .map(|takeover| self.context.run_start + takeover.from)
    }

    /// Takeovers: lost agents' arrivals are owned anew from `snapshot` on, and the caps grow.
    fn take_over(&mut self, snapshot: ArrivalOwners, list: Vec<Takeover>) -> Result<(), ShareError> {
        self.owners = take_over_arrivals(
            snapshot,
            self.context.weights,
            self.total,
            &self.rated,
            &self.takeovers,
            &mut self.takeover_starts,
            &list,
        )?;
        self.takeovers = list;
        if let Some(drained) = self.drained_from() {
            // Drained: this agent's arrivals are the others' from the takeover on; until then it
            // keeps its caps.
            self.arrivals_end = self.arrivals_end.min(drained);
            tracing::info!(run = %self.context.run_id, "drained: the other agents take this agent's arrivals");
            return Ok(());
        }
        let (my_max_vus, my_handshakes) = caps(
            self.context,
            &self.takeovers,
            self.fleet_max_vus,
            self.fleet_max_handshakes,
        )?;
        self.handshakes
            .add_permits(my_handshakes.saturating_sub(self.my_handshakes));
        (self.my_max_vus, self.my_handshakes) = (my_max_vus, my_handshakes);
        tracing::info!(
            run = %self.context.run_id,
            takeovers = self.takeovers.len(),
            my_max_vus,
            "taking over the arrivals of lost agents"
        );
        Ok(())
    }

    /// Arrival `number` is due: start its VU, or drop it past a cap.
    fn arrive(&mut self, number: u64, vus: &mut PartVus<'_>) {
        self.slot += 1;
        let slot = self.slot;
        vus.count(slot, Counter::VusOffered);
        if vus.running.len() >= self.my_max_vus {
            vus.count(slot, Counter::DroppedVus);
            return;
        }
        let Ok(handshake) = self.handshakes.clone().try_acquire_owned() else {
            vus.count(slot, Counter::DroppedVus);
            return;
        };
        let number = self.context.scenario.vu_number(self.part, number);
        if vus.spawn(slot, number, Some(handshake)) {
            vus.count(slot, Counter::VusStarted);
        }
    }
}

/// This agent's caps on VUs and handshakes in flight: shares of the fleet's, like VUs; a
/// takeover raises the survivors' caps.
fn caps(
    context: &PartContext<'_>,
    takeovers: &[Takeover],
    fleet_max_vus: u64,
    fleet_max_handshakes: u64,
) -> Result<(usize, usize), ShareError> {
    let share = |fleet: u64| -> Result<usize, ShareError> {
        let layers = ClosedLayers::new(context.weights, takeovers, fleet)?;
        Ok(layers.parts(fleet).get(context.agent_index).copied().unwrap_or(0) as usize)
    };
    Ok((share(fleet_max_vus)?, share(fleet_max_handshakes)?))
}

/// The arrival owners once `list` (every takeover so far) is in force: back to `snapshot`, the
/// state where this agent's look-ahead started, which the takeovers' first arrivals cannot
/// precede when they arrive in time. A takeover learned late (its first arrival already passed)
/// is applied from where this agent is, consistent with the others from there on.
fn take_over_arrivals(
    snapshot: ArrivalOwners,
    weights: &[f64],
    total: u64,
    plan: &LoadPlan,
    known: &[Takeover],
    starts: &mut Vec<u64>,
    list: &[Takeover],
) -> Result<ArrivalOwners, ShareError> {
    let weight_sets = reshare::weights_after(weights, list)?;
    let resume_at = snapshot.next_index();
    let mut owners = snapshot;
    for (index, takeover) in list.iter().enumerate().skip(known.len()) {
        let start = reshare::first_arrival_from(plan, takeover.from);
        starts.push(start);
        match owners.add_takeover(start, &takeover.lost, &weight_sets[index + 1]) {
            Ok(()) => {}
            Err(reshare::TakeoverError::TooLate { .. }) => {
                tracing::warn!(
                    start,
                    resume_at,
                    "a takeover arrived late: arrivals between its start and now may be missed or doubled"
                );
                let with_starts: Vec<(u64, Takeover)> = starts.iter().copied().zip(list.iter().cloned()).collect();
                owners = ArrivalOwners::at(weights, total, &with_starts, resume_at)?;
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(owners)
}
