//! Moving a lost agent's share of a run to the agents that survive it (`load.on_agent_lost:
//! redistribute`), and giving an agent that joined the run a share of it (`load.on_agent_joined:
//! take_share`, or the operator's `add_agent`), exactly, with VU numbers that stay unique.
//!
//! A [`Takeover`] names the agents lost (or the agent that joined) and the run time from which
//! the new split holds; every agent of the run is told the same list, so each computes its own
//! part of the new split, the same way [`super`] lets each compute its part of the first one.
//! An agent that joins takes the next index after the run's agents and the agents that joined
//! before it; it weighs nothing until it joins.
//!
//! - Closed model: VUs live in layers. Layer 0 is the fleet's sequence of VU numbers. Layer `k`
//!   holds, at every fleet target `n`, as many VUs as the agents lost in takeover `k` ran in the
//!   earlier layers at `n`, split over the survivors by the same owner sequence. So the survivors
//!   run exactly `n` VUs together whatever `n` becomes, the VUs they already run stay, ramps add
//!   and remove VUs at the ends of the sequences, and each layer past the first numbers its VUs
//!   after the plan's peak: a number a lost agent used is never handed out again, even if that
//!   agent is in fact still running somewhere. A join's layer takes a weighted slice of every
//!   other agent's VUs instead (see [`super::join`]): the joiner runs them with new numbers, the
//!   others stop them from the join on, and nobody else's VUs move.
//! - Open model: arrivals due from the takeover on follow a new owner sequence over the
//!   survivors' weights. An arrival the lost agent would have owned by the rules it knew gets a
//!   number past the plan's arrivals (its index plus `k` times the arrival count, for the last
//!   takeover `k` that moved it); every other arrival keeps its index as its number. A join
//!   opens a segment like a takeover, over the weights with the joiner's: no number changes.

use std::time::Duration;

use super::{LoadPlan, OwnerSequence, SplitError};

/// A change of the run's agents: agents lost (or drained) whose share moves to the others, or
/// an agent that joined and takes a share of the others'.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Takeover {
    /// The lost agents, as indices into the run's agents (its weights, then those that joined).
    pub lost: Vec<usize>,
    /// Run time (since the common start) from which the new split holds.
    pub from: Duration,
    /// The agent that joined, with `lost` empty.
    pub joined: Option<Joined>,
}

/// An agent that joined a running run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Joined {
    /// Its index: the run's agent count before it joined.
    pub agent: usize,
    /// Its weight among the agents that play at the join.
    pub weight: f64,
}

/// How many agents the run has once every agent of `takeovers` that joined has.
pub fn agent_count(weights: &[f64], takeovers: &[Takeover]) -> usize {
    weights.len() + takeovers.iter().filter(|takeover| takeover.joined.is_some()).count()
}

/// The weights in force before the first takeover (`[0]`) and after each one, one per agent of
/// the whole run (see [`agent_count`]): lost agents weigh nothing, and so do agents that have
/// not joined yet. Refuses takeovers that name an unknown agent, one lost before, the last agent
/// with a weight, or a join out of turn or without a weight.
pub fn weights_after(weights: &[f64], takeovers: &[Takeover]) -> Result<Vec<Vec<f64>>, SplitError> {
    let agents = agent_count(weights, takeovers);
    let mut all = Vec::with_capacity(takeovers.len() + 1);
    let mut current = weights.to_vec();
    current.resize(agents, 0.0);
    let mut gone = vec![false; agents];
    let mut known = weights.len();
    all.push(current.clone());
    for takeover in takeovers {
        if let Some(joined) = takeover.joined {
            let weighs = joined.weight.is_finite() && (joined.weight * 1_000_000.0).round() > 0.0;
            if joined.agent != known || !weighs || !takeover.lost.is_empty() {
                return Err(SplitError::BadJoin {
                    agent: joined.agent,
                    expected: known,
                    weight: joined.weight,
                });
            }
            current[known] = joined.weight;
            known += 1;
        }
        for &agent in &takeover.lost {
            if agent >= known || gone[agent] {
                return Err(SplitError::BadTakeover { agent, agents: known });
            }
            gone[agent] = true;
            current[agent] = 0.0;
        }
        // The same rounding as the owner sequence: a weight that rounds to zero holds nothing.
        if current.iter().all(|weight| (weight * 1_000_000.0).round() <= 0.0) {
            return Err(SplitError::NoSurvivors);
        }
        all.push(current.clone());
    }
    Ok(all)
}

/// A closed-model fleet's VU layers after takeovers; see the module documentation.
#[derive(Clone, Debug)]
pub struct ClosedLayers {
    layers: Vec<Layer>,
    agents: usize,
}

#[derive(Clone, Debug)]
pub(super) struct Layer {
    /// Run time from which the layer plays (zero for layer 0).
    pub(super) from: Duration,
    /// The VU number of the layer's position 0.
    base: u64,
    /// Per earlier layer, the positions this layer took from it, ascending (none for layer 0).
    taken: Vec<Vec<u64>>,
    /// Per agent, the layer positions it owns, ascending, up to the layer's size.
    positions: Vec<Vec<u64>>,
    /// By position: the agent that owns it.
    pub(super) owners: Vec<u32>,
    /// By position: the later layer that took it from its owner, if one did.
    pub(super) moved_by: Vec<Option<u32>>,
}

impl Layer {
    fn new(from: Duration, base: u64, taken: Vec<Vec<u64>>, owners: Vec<u32>, agents: usize) -> Layer {
        let mut positions = vec![Vec::new(); agents];
        for (position, owner) in owners.iter().enumerate() {
            positions[*owner as usize].push(position as u64);
        }
        Layer {
            from,
            base,
            taken,
            positions,
            moved_by: vec![None; owners.len()],
            owners,
        }
    }

    fn size(&self) -> u64 {
        self.owners.len() as u64
    }
}

/// How many positions of each of `layers` are in play at fleet target `n`, `elapsed` into the
/// run: all of layer 0 up to `n`, and for each later layer (from its time on) as many as it took
/// from the earlier layers' positions in play.
pub(super) fn counts_of(layers: &[Layer], n: u64, elapsed: Duration) -> Vec<u64> {
    let mut counts: Vec<u64> = Vec::with_capacity(layers.len());
    for (index, layer) in layers.iter().enumerate() {
        let count = if index == 0 {
            n.min(layer.size())
        } else if elapsed < layer.from {
            0
        } else {
            layer
                .taken
                .iter()
                .zip(&counts)
                .map(|(taken, in_play)| taken.partition_point(|position| position < in_play) as u64)
                .sum()
        };
        counts.push(count);
    }
    counts
}

impl ClosedLayers {
    /// The layers for a fleet of `weights` after `takeovers`, for a plan whose peak is `peak`
    /// VUs.
    pub fn new(weights: &[f64], takeovers: &[Takeover], peak: u64) -> Result<ClosedLayers, SplitError> {
        let weight_sets = weights_after(weights, takeovers)?;
        let agents = agent_count(weights, takeovers);
        let first: Vec<u32> = OwnerSequence::new(&weight_sets[0])?
            .take(peak as usize)
            .map(|owner| owner as u32)
            .collect();
        let mut layers = vec![Layer::new(Duration::ZERO, 0, Vec::new(), first, agents)];
        for (taken_index, takeover) in takeovers.iter().enumerate() {
            let index = taken_index + 1;
            let taken: Vec<Vec<u64>> = match takeover.joined {
                Some(joined) => super::join::ceded(&layers, &weight_sets[taken_index], joined)?,
                None => layers
                    .iter()
                    .map(|layer| {
                        (0..layer.size())
                            .filter(|position| {
                                let position = *position as usize;
                                layer.moved_by[position].is_none()
                                    && takeover.lost.contains(&(layer.owners[position] as usize))
                            })
                            .collect()
                    })
                    .collect(),
            };
            for (layer, positions) in layers.iter_mut().zip(&taken) {
                for position in positions {
                    layer.moved_by[*position as usize] = Some(index as u32);
                }
            }
            let size: u64 = taken.iter().map(|positions| positions.len() as u64).sum();
            let owners: Vec<u32> = match takeover.joined {
                Some(joined) => vec![joined.agent as u32; size as usize],
                None => OwnerSequence::new(&weight_sets[index])?
                    .take(size as usize)
                    .map(|owner| owner as u32)
                    .collect(),
            };
            let base = layers.last().map_or(0, |last| last.base + last.size());
            layers.push(Layer::new(takeover.from, base, taken, owners, agents));
        }
        Ok(ClosedLayers { layers, agents })
    }

    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    /// How many positions of each layer are in play at fleet target `n`, `elapsed` into the
    /// run (a layer plays from its takeover's time on). A position in play may have moved to
    /// a later layer (see [`ClosedLayers::moved`]).
    pub fn counts(&self, n: u64, elapsed: Duration) -> Vec<u64> {
        counts_of(&self.layers, n, elapsed)
    }

    /// The positions of `layer` that `agent` owns, ascending.
    pub fn positions(&self, layer: usize, agent: usize) -> &[u64] {
        self.layers
            .get(layer)
            .and_then(|layer| layer.positions.get(agent))
            .map_or(&[], Vec::as_slice)
    }

    /// Whether position `position` of `layer` has moved away from its owner by `elapsed`: a
    /// later layer in force then took it (an agent that joined runs it from then on).
    pub fn moved(&self, layer: usize, position: u64, elapsed: Duration) -> bool {
        self.layers
            .get(layer)
            .and_then(|layer| layer.moved_by.get(position as usize).copied().flatten())
            .and_then(|by| self.layers.get(by as usize))
            .is_some_and(|by| elapsed >= by.from)
    }

    /// The fleet-wide VU number of a layer position.
    pub fn number(&self, layer: usize, position: u64) -> u64 {
        self.layers.get(layer).map_or(0, |layer| layer.base) + position
    }

    /// Each agent's VUs at fleet target `n` once every takeover is in force (lost agents: 0;
    /// agents that joined are counted after the run's own). The parts add up to `n`.
    pub fn parts(&self, n: u64) -> Vec<u64> {
        let counts = self.counts(n, Duration::MAX);
        let mut parts = vec![0u64; self.agents];
        for (layer, in_play) in self.layers.iter().zip(counts) {
            for (owner, moved) in layer.owners.iter().zip(&layer.moved_by).take(in_play as usize) {
                if moved.is_none() {
                    parts[*owner as usize] += 1;
                }
            }
        }
        parts
    }
}

/// One open-model arrival: its index in the fleet's arrival sequence (which fixes when it is
/// due), the agent that plays it, and its VU number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub index: u64,
    pub owner: usize,
    pub number: u64,
}

/// The owners of the fleet's arrivals, one after the other, with takeovers; every agent walks
/// the same sequence. Cheap to clone (two small heaps per takeover), so an agent can keep the state at
/// the start of its look-ahead and go back to it when a takeover arrives.
#[derive(Clone)]
pub struct ArrivalOwners {
    segments: Vec<Segment>,
    next_index: u64,
    /// The plan's arrival count: the stride between the number ranges of takeovers.
    total: u64,
}

#[derive(Clone)]
struct Segment {
    /// The first arrival index this segment's sequence owns.
    start: u64,
    /// Agents lost in the takeover that opened the segment.
    lost: Vec<usize>,
    owners: OwnerSequence,
}

/// Why a takeover cannot be added to arrival owners.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum TakeoverError {
    #[error(transparent)]
    Split(#[from] SplitError),
    #[error("the takeover starts at arrival {start}, but arrival {passed} has already been assigned")]
    TooLate { start: u64, passed: u64 },
}

impl ArrivalOwners {
    /// Owners of a plan's `total` arrivals split by `weights`.
    pub fn new(weights: &[f64], total: u64) -> Result<ArrivalOwners, SplitError> {
        Ok(ArrivalOwners {
            segments: vec![Segment {
                start: 0,
                lost: Vec::new(),
                owners: OwnerSequence::new(weights)?,
            }],
            next_index: 0,
            total,
        })
    }

    /// The next arrival index to be assigned.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// From arrival `start` on, `lost` agents own nothing; `weights` are those in force after
    /// this takeover (see [`weights_after`]). Takeovers come in order, before the owners passed
    /// `start`.
    pub fn add_takeover(&mut self, start: u64, lost: &[usize], weights: &[f64]) -> Result<(), TakeoverError> {
        let last_start = self.segments.last().map_or(0, |segment| segment.start);
        if start < self.next_index || start < last_start {
            return Err(TakeoverError::TooLate {
                start,
                passed: self.next_index.max(last_start),
            });
        }
        self.segments.push(Segment {
            start,
            lost: lost.to_vec(),
            owners: OwnerSequence::new(weights)?,
        });
        Ok(())
    }

    /// The owners after `takeovers` (each with its first arrival index), advanced to arrival
    /// `index`: what every agent that learned of the takeovers in time has. For an agent that
    /// learned of one late.
    pub fn at(
        weights: &[f64],
        total: u64,
        takeovers: &[(u64, Takeover)],
        index: u64,
    ) -> Result<ArrivalOwners, TakeoverError> {
        let plain: Vec<Takeover> = takeovers.iter().map(|(_, takeover)| takeover.clone()).collect();
        let weight_sets = weights_after(weights, &plain)?;
        let mut owners = ArrivalOwners::new(weights, total)?;
        for ((start, takeover), weights) in takeovers.iter().zip(&weight_sets[1..]) {
            owners.add_takeover(*start, &takeover.lost, weights)?;
        }
        while owners.next_index < index {
            if owners.next().is_none() {
                break;
            }
        }
        Ok(owners)
    }
}

impl Iterator for ArrivalOwners {
    type Item = Arrival;

    fn next(&mut self) -> Option<Arrival> {
        let index = self.next_index;
        // Every segment that has started advances in step, so each knows who it would give
        // this arrival to. If an agent lost in takeover k would have owned it by the rules it
        // knew (segment k - 1), the arrival moves to the number range of the last such k: that
        // agent, perhaps still playing somewhere, only ever uses ranges below k.
        let mut owner: Option<usize> = None;
        let mut range = 0u64;
        for (segment_index, segment) in self
            .segments
            .iter_mut()
            .enumerate()
            .take_while(|(_, segment)| segment.start <= index)
        {
            let this = segment.owners.next()?;
            if owner.is_some_and(|previous| segment.lost.contains(&previous)) {
                range = segment_index as u64;
            }
            owner = Some(this);
        }
        let owner = owner?;
        self.next_index += 1;
        Some(Arrival {
            index,
            owner,
            number: index + range * self.total,
        })
    }
}

/// The first arrival of `plan` due at or after `from` (the plan's arrival count when none is).
pub fn first_arrival_from(plan: &LoadPlan, from: Duration) -> u64 {
    let (mut low, mut high) = (0u64, plan.total_arrivals());
    // Arrival times never decrease with the index.
    while low < high {
        let middle = low + (high - low) / 2;
        match plan.arrival_time(middle) {
            Some(due) if due < from => low = middle + 1,
            _ => high = middle,
        }
    }
    low
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;
    use crate::plan::{self, LoadModel, LostAgentPolicy, RateStage};

    fn takeover(lost: &[usize], seconds: u64) -> Takeover {
        Takeover {
            lost: lost.to_vec(),
            from: Duration::from_secs(seconds),
            joined: None,
        }
    }

    /// The VU numbers `agent` runs at fleet target `n`, all layers in force.
    fn numbers(layers: &ClosedLayers, agent: usize, n: u64) -> Vec<u64> {
        let counts = layers.counts(n, Duration::MAX);
        let mut numbers = Vec::new();
        for (layer, in_play) in counts.iter().enumerate() {
            for position in layers.positions(layer, agent) {
                if position < in_play {
                    numbers.push(layers.number(layer, *position));
                }
            }
        }
        numbers
    }

    #[test]
    fn a_lost_third_moves_to_the_other_two() {
        let weights = [1.0, 1.0, 1.0];
        let before = ClosedLayers::new(&weights, &[], 6).unwrap();
        assert_eq!(before.parts(6), vec![2, 2, 2]);
        assert_eq!(numbers(&before, 1, 6), vec![1, 4]);
        let after = ClosedLayers::new(&weights, &[takeover(&[1], 3)], 6).unwrap();
        assert_eq!(after.parts(6), vec![3, 0, 3]);
        // The survivors keep their VUs and take new numbers past the peak.
        assert_eq!(numbers(&after, 0, 6), vec![0, 3, 6]);
        assert_eq!(numbers(&after, 2, 6), vec![2, 5, 7]);
        // Before the takeover's time its layer plays nothing.
        assert_eq!(after.counts(6, Duration::from_secs(2)), vec![6, 0]);
        assert_eq!(after.counts(6, Duration::from_secs(3)), vec![6, 2]);
        // Ramping down removes the newest first.
        assert_eq!(after.counts(4, Duration::from_secs(9)), vec![4, 1]);
    }

    #[test]
    fn refuses_bad_takeovers() {
        assert_eq!(
            weights_after(&[1.0, 1.0], &[takeover(&[2], 1)]),
            Err(SplitError::BadTakeover { agent: 2, agents: 2 })
        );
        assert_eq!(
            weights_after(&[1.0, 1.0], &[takeover(&[0], 1), takeover(&[0], 2)]),
            Err(SplitError::BadTakeover { agent: 0, agents: 2 })
        );
        assert_eq!(
            weights_after(&[1.0, 1.0], &[takeover(&[0, 1], 1)]),
            Err(SplitError::NoSurvivors)
        );
        assert!(ClosedLayers::new(&[1.0], &[takeover(&[0], 1)], 10).is_err());
    }

    fn open_plan(rate: f64, seconds: u64) -> LoadPlan {
        LoadPlan {
            model: LoadModel::Open {
                start_rate: rate,
                stages: vec![RateStage {
                    duration: Duration::from_secs(seconds),
                    rate,
                }],
                max_vus: 100,
                max_handshakes: 100,
            },
            graceful_stop: Duration::from_secs(1),
            max_duration: Duration::from_secs(60),
            on_agent_lost: LostAgentPolicy::Redistribute,
            on_agent_joined: Default::default(),
        }
    }

    #[test]
    fn arrivals_from_a_time() {
        let plan = open_plan(10.0, 10);
        assert_eq!(first_arrival_from(&plan, Duration::ZERO), 0);
        assert_eq!(first_arrival_from(&plan, Duration::from_millis(2050)), 21);
        assert_eq!(first_arrival_from(&plan, Duration::from_secs(2)), 20);
        assert_eq!(first_arrival_from(&plan, Duration::from_secs(60)), 100);
    }

    #[test]
    fn arrivals_after_a_takeover_skip_the_lost_agent() {
        let weights = [1.0, 1.0, 1.0];
        let mut owners = ArrivalOwners::new(&weights, 30).unwrap();
        let first: Vec<Arrival> = owners.by_ref().take(10).collect();
        assert_eq!(
            first.iter().map(|arrival| arrival.owner).collect::<Vec<_>>(),
            vec![0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
        );
        let after = &weights_after(&weights, &[takeover(&[1], 1)]).unwrap()[1];
        owners.add_takeover(12, &[1], after).unwrap();
        let rest: Vec<Arrival> = owners.take(20).collect();
        assert!(rest[2..].iter().all(|arrival| arrival.owner != 1), "{rest:?}");
        // 10 and 11 still follow the first sequence; from 12 on, an arrival the lost agent would
        // have owned (13, 16, ...) is numbered past the plan's 30.
        assert_eq!(rest[0].owner, 1);
        assert_eq!(rest[0].number, 10);
        assert_eq!(rest[2].number, 12);
        assert_eq!(rest[3].number, 43);
        assert_eq!(
            rest.iter().filter(|arrival| arrival.number >= 30).count(),
            6,
            "13, 16, ..., 28"
        );
        let mut late = ArrivalOwners::new(&weights, 30).unwrap();
        late.next();
        late.next();
        assert!(matches!(
            late.add_takeover(1, &[1], after),
            Err(TakeoverError::TooLate { start: 1, passed: 2 })
        ));
    }

    /// Distinct lost agents (by index into `weights`), leaving at least one survivor.
    fn losses(agents: usize, picks: &[usize], count: usize) -> Vec<usize> {
        let mut alive: Vec<usize> = (0..agents).collect();
        let mut lost = Vec::new();
        for pick in picks.iter().take(count.min(agents - 1)) {
            lost.push(alive.remove(pick % alive.len()));
        }
        lost
    }

    proptest! {
        #[test]
        fn survivors_hold_the_whole_target_with_unique_fresh_numbers(
            weights in proptest::collection::vec(0.2f64..6.0, 2..7),
            picks in proptest::collection::vec(0usize..100, 3),
            count in 1usize..4,
            peak in 1u64..300,
            fraction in 0.0f64..=1.0,
        ) {
            let lost = losses(weights.len(), &picks, count);
            let takeovers: Vec<Takeover> = lost.iter().enumerate().map(|(k, agent)| takeover(&[*agent], k as u64)).collect();
            let layers = ClosedLayers::new(&weights, &takeovers, peak).unwrap();
            let n = ((peak as f64) * fraction).floor() as u64;
            // Every VU number any agent ever ran before it was lost, at any target.
            let mut used_by_lost = HashSet::new();
            for (k, agent) in lost.iter().enumerate() {
                let earlier = ClosedLayers::new(&weights, &takeovers[..k], peak).unwrap();
                used_by_lost.extend(numbers(&earlier, *agent, peak));
            }
            let mut seen = HashSet::new();
            let mut total = 0;
            for agent in (0..weights.len()).filter(|agent| !lost.contains(agent)) {
                let mine = numbers(&layers, agent, n);
                total += mine.len() as u64;
                // A survivor keeps every VU it ran before the takeovers.
                let before = ClosedLayers::new(&weights, &[], peak).unwrap();
                let kept = numbers(&before, agent, n);
                prop_assert!(kept.iter().all(|number| mine.contains(number)));
                for number in mine {
                    prop_assert!(seen.insert(number), "number {} twice", number);
                    prop_assert!(!used_by_lost.contains(&number), "number {} of a lost agent reused", number);
                }
            }
            prop_assert_eq!(total, n);
            let parts = layers.parts(n);
            prop_assert_eq!(parts.iter().sum::<u64>(), n);
            for agent in &lost {
                prop_assert_eq!(parts[*agent], 0);
            }
            // Counts never shrink as the target grows, so ramps only add at the ends.
            let lower = layers.counts(n.saturating_sub(1), Duration::MAX);
            let upper = layers.counts(n, Duration::MAX);
            prop_assert!(lower.iter().zip(&upper).all(|(low, high)| low <= high));
        }

        #[test]
        fn arrivals_stay_exact_and_never_reuse_a_lost_agents_number(
            weights in proptest::collection::vec(0.2f64..6.0, 2..6),
            picks in proptest::collection::vec(0usize..100, 3),
            count in 1usize..4,
            starts in proptest::collection::vec(0u64..400, 3),
        ) {
            let total = 400u64;
            let lost = losses(weights.len(), &picks, count);
            let mut starts: Vec<u64> = starts.into_iter().take(lost.len()).collect();
            starts.sort_unstable();
            let takeovers: Vec<(u64, Takeover)> = lost
                .iter()
                .zip(&starts)
                .map(|(agent, start)| (*start, takeover(&[*agent], 0)))
                .collect();
            let owners = ArrivalOwners::at(&weights, total, &takeovers, 0).unwrap();
            let arrivals: Vec<Arrival> = owners.take(total as usize).collect();
            prop_assert_eq!(arrivals.len() as u64, total);
            // What each lost agent plays by the rules it knew, before and after its loss.
            for (k, (start, takeover)) in takeovers.iter().enumerate() {
                let knew = ArrivalOwners::at(&weights, total, &takeovers[..k], 0).unwrap();
                let agent = takeover.lost[0];
                let theirs: HashSet<u64> = knew
                    .take(total as usize)
                    .filter(|arrival| arrival.owner == agent)
                    .map(|arrival| arrival.number)
                    .collect();
                for arrival in &arrivals[*start as usize..] {
                    prop_assert!(arrival.owner != agent);
                    prop_assert!(!theirs.contains(&arrival.number), "arrival {:?} reuses a lost number", arrival);
                }
            }
            let numbers: HashSet<u64> = arrivals.iter().map(|arrival| arrival.number).collect();
            prop_assert_eq!(numbers.len() as u64, total);
            // After the last takeover the survivors split the arrivals exactly by weight.
            if let Some(last) = starts.last() {
                let tail = total - last;
                let after = weights_after(&weights, &takeovers.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>()).unwrap();
                let expected = plan::split(after.last().unwrap(), tail).unwrap();
                let mut got = vec![0u64; weights.len()];
                for arrival in &arrivals[*last as usize..] {
                    got[arrival.owner] += 1;
                }
                prop_assert_eq!(got, expected);
            }
            // Going back to a snapshot and adding the takeover there gives the same sequence.
            if let Some((start, first)) = takeovers.first() {
                let mut walked = ArrivalOwners::new(&weights, total).unwrap();
                for _ in 0..*start {
                    walked.next();
                }
                let after = &weights_after(&weights, std::slice::from_ref(first)).unwrap()[1];
                walked.add_takeover(*start, &first.lost, after).unwrap();
                let direct = ArrivalOwners::at(&weights, total, &takeovers[..1], *start).unwrap();
                prop_assert_eq!(walked.take(50).collect::<Vec<_>>(), direct.take(50).collect::<Vec<_>>());
            }
        }
    }
}
