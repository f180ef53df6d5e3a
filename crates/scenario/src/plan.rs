//! The load plan every load shortcut compiles to, and its exact split over a fleet.
//!
//! VUs are numbered across the whole fleet. The owner of each VU number is fixed by one
//! deterministic sequence computed from the agents' weights, the same on every agent: when the
//! fleet target is `n`, each agent runs exactly the VUs below `n` that it owns. So the parts add
//! up to the whole at every instant, VU numbers are unique, a ramp only ever adds or removes VUs
//! at the end of the sequence, and each agent's part stays within one VU of its weighted quota.

use std::cmp::Ordering;
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
}

/// Ramp linearly to `target` over `duration`.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    pub target: u64,
}

impl LoadPlan {
    /// The fleet's target number of VUs `elapsed` after the start.
    pub fn fleet_target_at(&self, elapsed: Duration) -> u64 {
        match &self.model {
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
            LoadModel::Closed { stages, .. } if stages.is_empty() => None,
            LoadModel::Closed { stages, .. } => Some(stages.iter().map(|stage| stage.duration).sum()),
        }
    }
}

/// Why a fleet cannot be given shares.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SplitError {
    #[error("no agent to split the load over")]
    NoAgents,
    #[error("agent weights must be finite and not negative, and at least one above zero (got {0:?})")]
    BadWeights(Vec<f64>),
}

/// Integer weights (parts per million) so every agent computes the same sequence.
fn integer_weights(weights: &[f64]) -> Result<Vec<u64>, SplitError> {
    if weights.is_empty() {
        return Err(SplitError::NoAgents);
    }
    if weights.iter().any(|weight| !weight.is_finite() || *weight < 0.0) {
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

/// An agent's next slot in the sequence: its `taken`-th VU is due at `(2 taken + 1) / weight`.
#[derive(Eq, PartialEq)]
struct Due {
    taken: u64,
    weight: u64,
    agent: usize,
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> Ordering {
        // Earlier due first (BinaryHeap is a max-heap, so reverse), then the lower agent index.
        let mine = u128::from(2 * self.taken + 1) * u128::from(other.weight);
        let theirs = u128::from(2 * other.taken + 1) * u128::from(self.weight);
        theirs.cmp(&mine).then_with(|| other.agent.cmp(&self.agent))
    }
}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The owner (agent index) of each of the fleet's first `count` VU numbers.
pub fn owners(weights: &[f64], count: u64) -> Result<Vec<u32>, SplitError> {
    let weights = integer_weights(weights)?;
    let mut heap: BinaryHeap<Due> = weights
        .iter()
        .enumerate()
        .filter(|(_, weight)| **weight > 0)
        .map(|(agent, weight)| Due {
            taken: 0,
            weight: *weight,
            agent,
        })
        .collect();
    let mut sequence = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let Some(mut next) = heap.pop() else { break };
        sequence.push(next.agent as u32);
        next.taken += 1;
        heap.push(next);
    }
    Ok(sequence)
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
        assert_eq!(share(&[1.0, 3.0], 0, 8).unwrap(), vec![1, 5]);
    }

    #[test]
    fn refuses_empty_and_bad_weights() {
        assert_eq!(split(&[], 3), Err(SplitError::NoAgents));
        assert!(split(&[0.0, 0.0], 3).is_err());
        assert!(split(&[f64::NAN], 3).is_err());
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
        };
        assert_eq!(plan.fleet_target_at(Duration::from_secs(5)), 50);
        assert_eq!(plan.fleet_target_at(Duration::from_secs(15)), 100);
        assert_eq!(plan.fleet_target_at(Duration::from_secs(25)), 50);
        assert_eq!(plan.fleet_target_at(Duration::from_secs(31)), 0);
        assert_eq!(plan.max_vus(), 100);
        assert_eq!(plan.stages_end(), Some(Duration::from_secs(30)));
    }

    proptest! {
        #[test]
        fn parts_always_sum_to_the_whole(
            weights in proptest::collection::vec(0.0f64..64.0, 1..40),
            total in 0u64..5_000,
        ) {
            prop_assume!(weights.iter().any(|w| (w * 1_000_000.0).round() > 0.0));
            let parts = split(&weights, total).unwrap();
            prop_assert_eq!(parts.iter().sum::<u64>(), total);
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
