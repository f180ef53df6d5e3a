//! The load plan every load shortcut compiles to, and its exact split over a fleet.
//!
//! VUs are numbered across the whole fleet. The owner of each VU number is fixed by one
//! deterministic sequence computed from the agents' weights, the same on every agent: when the
//! fleet target is `n`, each agent runs exactly the VUs below `n` that it owns. So the parts add
//! up to the whole at every instant, VU numbers are unique, a ramp only ever adds or removes VUs
//! at the end of the sequence, and each agent's part stays within one VU of its weighted quota.

pub mod control;
pub mod join;

pub use join::JoinedAgentPolicy;
pub mod reshare;
pub mod seek;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// How a run's load evolves over time.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadPlan {
    pub model: LoadModel,
    /// How long running iterations may go on once the plan ends or the run is stopped.
    pub graceful_stop: Duration,
    /// A safety bound: the run stops after this long whatever the plan says.
    pub max_duration: Duration,
    /// What the run does when an agent is lost while it plays.
    pub on_agent_lost: LostAgentPolicy,
    /// What the run does when an agent attaches while it plays.
    pub on_agent_joined: JoinedAgentPolicy,
}

/// A run's answer to losing an agent (`load.on_agent_lost`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LostAgentPolicy {
    /// Go on with the others; the lost agent's share is not played.
    #[default]
    Continue,
    /// Move the lost agent's share of the rest of the plan to the others (see `reshare`).
    Redistribute,
    /// Stop the run (gracefully, on the others); it ends as aborted.
    Abort,
}

impl LostAgentPolicy {
    /// The names the scenario file uses, in the order the docs list them.
    pub const NAMES: [&'static str; 3] = ["continue", "redistribute", "abort"];

    pub fn name(self) -> &'static str {
        match self {
            LostAgentPolicy::Continue => "continue",
            LostAgentPolicy::Redistribute => "redistribute",
            LostAgentPolicy::Abort => "abort",
        }
    }

    pub fn from_name(name: &str) -> Option<LostAgentPolicy> {
        match name {
            "continue" => Some(LostAgentPolicy::Continue),
            "redistribute" => Some(LostAgentPolicy::Redistribute),
            "abort" => Some(LostAgentPolicy::Abort),
            _ => None,
        }
    }
}

/// The load models.
#[derive(Clone, Debug, PartialEq)]
pub enum LoadModel {
    /// A number of concurrent VUs that follows `stages` from `start_vus`, each VU looping over the
    /// steps (at most `iterations_per_vu` times when set).
    Closed {
        start_vus: u64,
        stages: Vec<Stage>,
        iterations_per_vu: Option<u64>,
    },
    /// New VUs arrive at a rate (per second) that follows `stages` from `start_rate`; each plays
    /// the steps once. At most `max_vus` run at once and `max_handshakes` connect at once across
    /// the fleet; an arrival beyond either cap is dropped (counted, never queued).
    Open {
        start_rate: f64,
        stages: Vec<RateStage>,
        max_vus: u64,
        max_handshakes: u64,
    },
}

/// Ramp the arrival rate linearly to `rate` per second over `duration`.
#[derive(Clone, Debug, PartialEq)]
pub struct RateStage {
    pub duration: Duration,
    pub rate: f64,
}

/// Ramp linearly to `target` over `duration`.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    pub target: u64,
}

impl LoadPlan {
    /// The fleet's target number of VUs `elapsed` after the start (closed model).
    pub fn fleet_target_at(&self, elapsed: Duration) -> u64 {
        match &self.model {
            LoadModel::Open { .. } => 0,
            LoadModel::Closed { start_vus, stages, .. } => {
                let mut from = *start_vus;
                let mut stage_start = Duration::ZERO;
                for stage in stages {
                    let stage_end = stage_start + stage.duration;
                    if elapsed < stage_end {
                        let progress = (elapsed - stage_start).as_secs_f64() / stage.duration.as_secs_f64();
                        let span = stage.target as f64 - from as f64;
                        return (from as f64 + span * progress).floor().max(0.0) as u64;
                    }
                    from = stage.target;
                    stage_start = stage_end;
                }
                from
            }
        }
    }

    /// The most VUs the fleet runs at once.
    pub fn max_vus(&self) -> u64 {
        match &self.model {
            LoadModel::Open { max_vus, .. } => *max_vus,
            LoadModel::Closed { start_vus, stages, .. } => stages
                .iter()
                .map(|stage| stage.target)
                .chain([*start_vus])
                .max()
                .unwrap_or(0),
        }
    }

    /// When the stages end; `None` when the plan runs until every VU finished its iterations.
    pub fn stages_end(&self) -> Option<Duration> {
        match &self.model {
            LoadModel::Open { stages, .. } => Some(stages.iter().map(|stage| stage.duration).sum()),
            LoadModel::Closed { stages, .. } if stages.is_empty() => None,
            LoadModel::Closed { stages, .. } => Some(stages.iter().map(|stage| stage.duration).sum()),
        }
    }
}

impl LoadPlan {
    /// When the fleet's arrival number `index` (from 0) is due, as time since the start; `None`
    /// past the last stage. Arrival k is due when the integral of the rate reaches k, so a
    /// constant 10/s for 10 s has exactly 100 arrivals, at 0, 0.1, ..., 9.9 s, and ramps follow
    /// the rate exactly. Every agent computes the same times.
    pub fn arrival_time(&self, index: u64) -> Option<Duration> {
        let LoadModel::Open { start_rate, stages, .. } = &self.model else {
            return None;
        };
        let wanted = index as f64;
        let mut arrived = 0.0;
        let mut from = *start_rate;
        let mut stage_start = 0.0;
        for stage in stages {
            let length = stage.duration.as_secs_f64();
            let to = stage.rate;
            let in_stage = (from + to) / 2.0 * length;
            if wanted < arrived + in_stage - 1e-9 {
                let needed = wanted - arrived;
                // rate(t) = from + slope t; arrivals(t) = from t + slope t^2 / 2.
                let slope = (to - from) / length;
                let offset = if slope.abs() < 1e-12 {
                    needed / from
                } else {
                    (-from + (from * from + 2.0 * slope * needed).max(0.0).sqrt()) / slope
                };
                return Some(Duration::from_secs_f64(stage_start + offset.clamp(0.0, length)));
            }
            arrived += in_stage;
            from = to;
            stage_start += length;
        }
        None
    }

    /// How many arrivals the fleet's open-model plan makes in all.
    pub fn total_arrivals(&self) -> u64 {
        let LoadModel::Open { start_rate, stages, .. } = &self.model else {
            return 0;
        };
        let mut from = *start_rate;
        let mut total = 0.0;
        for stage in stages {
            total += (from + stage.rate) / 2.0 * stage.duration.as_secs_f64();
            from = stage.rate;
        }
        (total - 1e-9).ceil().max(0.0) as u64
    }
}

/// The owner of each fleet-wide number (VU or arrival), one after the other, without storing
/// the sequence: the same order as [`owners`].
///
/// Agent `i` of weight `w` (out of `W`, all in parts per million) owns its `j`-th number
/// somewhere in the window of positions `⌊(j−1)W/w⌋ ≤ p < ⌈jW/w⌉`; each position goes to the
/// agent whose open window closes first (the lower index on a tie). These are the windows of a
/// proportionate-fair schedule on one processor, which exists whenever the weights share one
/// processor exactly, and earliest-deadline-first meets every window of a feasible set of unit
/// slots, so after any `n` numbers each agent holds its quota `nw/W` rounded down or up. A
/// divisor method (Sainte-Laguë, D'Hondt) does not: with one heavy agent it can fall more
/// than one number short of its quota.
#[derive(Clone)]
pub struct OwnerSequence {
    /// The next position to give out.
    position: u64,
    /// The sum of the weights.
    total: u64,
    /// Agents whose next window is open, by the position it closes at.
    open: BinaryHeap<Reverse<Slot>>,
    /// Agents whose next window opens later, by the position it opens at.
    later: BinaryHeap<Reverse<Slot>>,
}

impl OwnerSequence {
    pub fn new(weights: &[f64]) -> Result<OwnerSequence, SplitError> {
        let scaled = integer_weights(weights)?;
        // At most MAX_WEIGHT each: only a fleet of millions of agents could overflow.
        let total = scaled
            .iter()
            .try_fold(0u64, |sum, weight| sum.checked_add(*weight))
            .ok_or_else(|| SplitError::BadWeights(weights.to_vec()))?;
        let mut sequence = OwnerSequence {
            position: 0,
            total,
            open: BinaryHeap::with_capacity(scaled.len()),
            later: BinaryHeap::with_capacity(scaled.len()),
        };
        for (agent, weight) in scaled.into_iter().enumerate() {
            if weight > 0 {
                let slot = Slot {
                    key: sequence.closes(0, weight),
                    agent,
                    weight,
                    taken: 0,
                };
                sequence.open.push(Reverse(slot));
            }
        }
        Ok(sequence)
    }

    /// Where the window of an agent's next number opens, having `taken` already (a position
    /// past `u64` is never reached).
    fn opens(&self, taken: u64, weight: u64) -> u64 {
        u64::try_from(u128::from(taken) * u128::from(self.total) / u128::from(weight)).unwrap_or(u64::MAX)
    }

    /// Where that window closes (the first position past it).
    fn closes(&self, taken: u64, weight: u64) -> u64 {
        u64::try_from(((u128::from(taken) + 1) * u128::from(self.total)).div_ceil(u128::from(weight)))
            .unwrap_or(u64::MAX)
    }
}

impl Iterator for OwnerSequence {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while let Some(Reverse(slot)) = self.later.peek() {
            if slot.key > self.position {
                break;
            }
            let Reverse(mut slot) = self.later.pop()?;
            slot.key = self.closes(slot.taken, slot.weight);
            self.open.push(Reverse(slot));
        }
        // Some window is always open: were none at position p, every agent would hold at least
        // (p+1)w/W numbers (its next window opens past p), p+1 or more in all, where p were
        // given out. Should that ever fail, the window opening first is the nearest to its
        // quota.
        debug_assert!(!self.open.is_empty(), "no window open at position {}", self.position);
        let Reverse(mut slot) = match self.open.pop() {
            Some(slot) => slot,
            None => self.later.pop()?,
        };
        let agent = slot.agent;
        slot.taken += 1;
        self.position += 1;
        slot.key = self.opens(slot.taken, slot.weight);
        if slot.key <= self.position {
            slot.key = self.closes(slot.taken, slot.weight);
            self.open.push(Reverse(slot));
        } else {
            self.later.push(Reverse(slot));
        }
        Some(agent)
    }
}

/// Why a fleet cannot be given shares.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SplitError {
    #[error("no agent to split the load over")]
    NoAgents,
    #[error("agent weights must be numbers from 0 to 1000000, at least one above zero (got {0:?})")]
    BadWeights(Vec<f64>),
    #[error("no agent is left to take over the load")]
    NoSurvivors,
    #[error("a takeover names agent {agent}, which is not in the fleet of {agents} or was lost before")]
    BadTakeover { agent: usize, agents: usize },
    #[error("a join names agent {agent} with weight {weight}, but the next agent to join is {expected} and it must weigh more than zero")]
    BadJoin { agent: usize, expected: usize, weight: f64 },
}

/// The largest weight an agent may have (`agent --weight`).
pub const MAX_WEIGHT: f64 = 1_000_000.0;

/// The smallest weight above zero an agent may have: weights count in parts per million.
pub const MIN_WEIGHT: f64 = 0.000_001;

/// Whether an agent may announce `weight`: 0 (its cores stand in) or from [`MIN_WEIGHT`] to
/// [`MAX_WEIGHT`].
pub fn valid_weight(weight: f64) -> bool {
    weight == 0.0 || (MIN_WEIGHT..=MAX_WEIGHT).contains(&weight)
}

/// Integer weights (parts per million) so every agent computes the same sequence.
fn integer_weights(weights: &[f64]) -> Result<Vec<u64>, SplitError> {
    if weights.is_empty() {
        return Err(SplitError::NoAgents);
    }
    if weights.iter().any(|weight| !(0.0..=MAX_WEIGHT).contains(weight)) {
        return Err(SplitError::BadWeights(weights.to_vec()));
    }
    let scaled: Vec<u64> = weights
        .iter()
        .map(|weight| (weight * 1_000_000.0).round() as u64)
        .collect();
    if scaled.iter().all(|weight| *weight == 0) {
        return Err(SplitError::BadWeights(weights.to_vec()));
    }
    Ok(scaled)
}

/// An agent's next number: `key` is where its window opens (in `later`) or closes (in
/// `open`); the derived order compares the key, then the agent index.
#[derive(Clone, Eq, PartialEq, Ord, PartialOrd)]
struct Slot {
    key: u64,
    agent: usize,
    weight: u64,
    taken: u64,
}

/// The owner (agent index) of each of the fleet's first `count` VU numbers.
pub fn owners(weights: &[f64], count: u64) -> Result<Vec<u32>, SplitError> {
    Ok(OwnerSequence::new(weights)?
        .take(count as usize)
        .map(|agent| agent as u32)
        .collect())
}

/// The fleet VU numbers below `count` that agent `index` runs, ascending.
pub fn share(weights: &[f64], index: usize, count: u64) -> Result<Vec<u64>, SplitError> {
    Ok(owners(weights, count)?
        .into_iter()
        .enumerate()
        .filter(|(_, owner)| *owner as usize == index)
        .map(|(vu, _)| vu as u64)
        .collect())
}

/// How many of `total` each agent gets; the parts add up to `total`.
pub fn split(weights: &[f64], total: u64) -> Result<Vec<u64>, SplitError> {
    let mut parts = vec![0; weights.len()];
    for owner in owners(weights, total)? {
        parts[owner as usize] += 1;
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn equal_weights_interleave() {
        assert_eq!(owners(&[1.0, 1.0], 5).unwrap(), vec![0, 1, 0, 1, 0]);
        assert_eq!(split(&[1.0, 1.0, 1.0], 50).unwrap(), vec![17, 17, 16]);
        assert_eq!(share(&[1.0, 3.0], 0, 8).unwrap(), vec![2, 6]);
    }

    #[test]
    fn a_heavy_agent_gets_its_quota_in_every_prefix() {
        // Sainte-Laguë gave the second agent 2,812 of 2,932, its quota being 2,813.29.
        let weights = [
            1.3195749554859897,
            54.16162958276771,
            0.12768477231289838,
            0.8381252728200618,
        ];
        assert_within_quota_at_every_prefix(&weights, 2932);
        assert_eq!(split(&weights, 2932).unwrap(), vec![69, 2814, 6, 43]);
    }

    /// After every prefix of the sequence each agent holds its quota rounded down or up.
    fn assert_within_quota_at_every_prefix(weights: &[f64], count: u64) {
        let scaled: Vec<f64> = weights.iter().map(|w| (w * 1_000_000.0).round()).collect();
        let sum: f64 = scaled.iter().sum();
        let mut held = vec![0u64; weights.len()];
        for (position, owner) in owners(weights, count).unwrap().into_iter().enumerate() {
            held[owner as usize] += 1;
            let n = (position + 1) as f64;
            for (agent, (held, weight)) in held.iter().zip(&scaled).enumerate() {
                let quota = n * weight / sum;
                assert!(
                    (*held as f64 - quota).abs() < 1.0 + 1e-9,
                    "agent {agent} holds {held} of the first {n}, quota {quota}"
                );
            }
        }
    }

    #[test]
    fn refuses_empty_and_bad_weights() {
        assert_eq!(split(&[], 3), Err(SplitError::NoAgents));
        assert!(split(&[0.0, 0.0], 3).is_err());
        assert!(split(&[f64::NAN], 3).is_err());
        assert!(split(&[f64::INFINITY], 3).is_err());
        assert!(split(&[1.0, MAX_WEIGHT * 2.0], 3).is_err());
        // The widest ratio there can be: the light agent's first window is far past any count.
        assert_eq!(split(&[MAX_WEIGHT, 0.000_001], 5).unwrap(), vec![5, 0]);
    }

    #[test]
    fn closed_ramp_is_linear_and_holds() {
        let plan = LoadPlan {
            model: LoadModel::Closed {
                start_vus: 0,
                stages: vec![
                    Stage {
                        duration: Duration::from_secs(10),
                        target: 100,
                    },
                    Stage {
                        duration: Duration::from_secs(10),
                        target: 100,
                    },
                    Stage {
                        duration: Duration::from_secs(10),
                        target: 0,
                    },
                ],
                iterations_per_vu: None,
            },
            graceful_stop: Duration::from_secs(1),
            max_duration: Duration::from_secs(60),
            on_agent_lost: LostAgentPolicy::Continue,
            on_agent_joined: Default::default(),
        };
        assert_eq!(plan.fleet_target_at(Duration::from_secs(5)), 50);
        assert_eq!(plan.fleet_target_at(Duration::from_secs(15)), 100);
        assert_eq!(plan.fleet_target_at(Duration::from_secs(25)), 50);
        assert_eq!(plan.fleet_target_at(Duration::from_secs(31)), 0);
        assert_eq!(plan.max_vus(), 100);
        assert_eq!(plan.stages_end(), Some(Duration::from_secs(30)));
    }

    fn open(start_rate: f64, stages: &[(u64, f64)]) -> LoadPlan {
        LoadPlan {
            model: LoadModel::Open {
                start_rate,
                stages: stages
                    .iter()
                    .map(|(seconds, rate)| RateStage {
                        duration: Duration::from_secs(*seconds),
                        rate: *rate,
                    })
                    .collect(),
                max_vus: 100,
                max_handshakes: 10,
            },
            graceful_stop: Duration::from_secs(1),
            max_duration: Duration::from_secs(60),
            on_agent_lost: LostAgentPolicy::Continue,
            on_agent_joined: Default::default(),
        }
    }

    #[test]
    fn constant_rate_arrivals_are_evenly_spaced_and_exact() {
        let plan = open(10.0, &[(10, 10.0)]);
        assert_eq!(plan.total_arrivals(), 100);
        assert_eq!(plan.arrival_time(0), Some(Duration::ZERO));
        assert_eq!(
            plan.arrival_time(15).map(|t| (t.as_secs_f64() * 1000.0).round()),
            Some(1500.0)
        );
        assert!(plan.arrival_time(99).is_some());
        assert_eq!(plan.arrival_time(100), None);
        // Fractional rates: 2.5/s for 4 s is 10 arrivals.
        assert_eq!(open(2.5, &[(4, 2.5)]).total_arrivals(), 10);
    }

    #[test]
    fn ramps_follow_the_rate() {
        // 0 -> 20/s over 10 s: 100 arrivals, denser at the end; half of them after 7.07 s.
        let plan = open(0.0, &[(10, 20.0)]);
        assert_eq!(plan.total_arrivals(), 100);
        let middle = plan.arrival_time(50).unwrap().as_secs_f64();
        assert!((middle - 50f64.sqrt()).abs() < 1e-6, "{middle}");
        let times: Vec<f64> = (0..100).map(|k| plan.arrival_time(k).unwrap().as_secs_f64()).collect();
        assert!(times.windows(2).all(|pair| pair[0] <= pair[1]));
    }

    #[test]
    fn owner_sequence_matches_owners() {
        let weights = [1.0, 2.5, 0.5];
        let streamed: Vec<u32> = OwnerSequence::new(&weights)
            .unwrap()
            .take(500)
            .map(|agent| agent as u32)
            .collect();
        assert_eq!(streamed, owners(&weights, 500).unwrap());
    }

    proptest! {
        #[test]
        fn open_model_arrivals_split_exactly(
            weights in proptest::collection::vec(0.1f64..8.0, 1..10),
            rate in 0.5f64..200.0,
            seconds in 1u64..20,
        ) {
            let plan = open(rate, &[(seconds, rate)]);
            let total = plan.total_arrivals();
            let parts = split(&weights, total).unwrap();
            prop_assert_eq!(parts.iter().sum::<u64>(), total);
            prop_assert!(plan.arrival_time(total.saturating_sub(1)).is_some() || total == 0);
            prop_assert!(plan.arrival_time(total).is_none());
        }

        #[test]
        fn parts_always_sum_to_the_whole(
            weights in proptest::collection::vec(0.0f64..64.0, 1..40),
            total in 0u64..5_000,
        ) {
            prop_assume!(weights.iter().any(|w| (w * 1_000_000.0).round() > 0.0));
            let parts = split(&weights, total).unwrap();
            prop_assert_eq!(parts.iter().sum::<u64>(), total);
            assert_within_quota_at_every_prefix(&weights, total.min(600));
            // Every agent stays within one VU of its weighted quota.
            let weight_sum: f64 = weights.iter().map(|w| (w * 1_000_000.0).round()).sum();
            for (part, weight) in parts.iter().zip(&weights) {
                let quota = total as f64 * (weight * 1_000_000.0).round() / weight_sum;
                prop_assert!((*part as f64 - quota).abs() < 1.0 + 1e-9, "part {} quota {}", part, quota);
            }
        }

        #[test]
        fn shares_are_disjoint_and_cover_every_vu(
            weights in proptest::collection::vec(0.1f64..8.0, 1..12),
            total in 0u64..2_000,
        ) {
            let mut all: Vec<u64> = (0..weights.len())
                .flat_map(|index| share(&weights, index, total).unwrap())
                .collect();
            all.sort_unstable();
            prop_assert_eq!(all, (0..total).collect::<Vec<_>>());
        }
    }
}
