//! An agent that joins a running closed-model run (`load.on_agent_joined: take_share`, or the
//! operator's `add_agent`) takes a weighted slice of every other agent's VUs.
//!
//! A full re-split over the new weights would move most VUs from one agent to another. Instead
//! each agent that plays at the join gives up a slice of its own VUs, in the order they come into
//! play as the fleet's target grows: agent `a` gives the joiner the positions its own owner
//! sequence over `[W, w]` (`W` the weights of the agents playing, `w` the joiner's) hands to the
//! joiner. So at every target each agent keeps about `W / (W + w)` of what it held, the joiner
//! runs the rest under new numbers past every earlier layer's, and the parts still add up to the
//! target: a position the joiner takes is one its giver stops from the join on.

use std::time::Duration;

use super::reshare::{counts_of, Joined, Layer};
use super::{OwnerSequence, SplitError};

/// A run's answer to an agent that attaches while it plays (`load.on_agent_joined`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JoinedAgentPolicy {
    /// The agent waits for the next run (the operator may still give it a share).
    #[default]
    Wait,
    /// The agent takes its share of the running load at once.
    TakeShare,
}

impl JoinedAgentPolicy {
    /// The names the scenario file uses, in the order the docs list them.
    pub const NAMES: [&'static str; 2] = ["wait", "take_share"];

    pub fn name(self) -> &'static str {
        match self {
            JoinedAgentPolicy::Wait => "wait",
            JoinedAgentPolicy::TakeShare => "take_share",
        }
    }

    pub fn from_name(name: &str) -> Option<JoinedAgentPolicy> {
        match name {
            "wait" => Some(JoinedAgentPolicy::Wait),
            "take_share" => Some(JoinedAgentPolicy::TakeShare),
            _ => None,
        }
    }
}

/// The positions of each of `layers` that `joined` takes, ascending per layer; `weights` are
/// those in force just before the join (one per agent of the whole run).
pub(super) fn ceded(layers: &[Layer], weights: &[f64], joined: Joined) -> Result<Vec<Vec<u64>>, SplitError> {
    let playing: f64 = weights
        .iter()
        .enumerate()
        .filter(|(agent, _)| *agent != joined.agent)
        .map(|(_, weight)| weight)
        .sum();
    let slice = [playing, joined.weight];
    let mut sequences: Vec<Option<OwnerSequence>> = vec![None; weights.len()];
    let mut taken = vec![Vec::new(); layers.len()];
    let peak = layers.first().map_or(0, |layer| layer.owners.len() as u64);
    let mut previous = vec![0u64; layers.len()];
    // Each step of the target brings exactly one position into play that some agent plays
    // (a lost agent's position brings its takeover's in turn): walk them in that order.
    for n in 1..=peak {
        let counts = counts_of(layers, n, Duration::MAX);
        for (index, (layer, (from, to))) in layers.iter().zip(previous.iter().zip(&counts)).enumerate() {
            for position in *from..*to {
                if layer.moved_by[position as usize].is_some() {
                    continue;
                }
                let owner = layer.owners[position as usize] as usize;
                let Some(slot) = sequences.get_mut(owner) else { continue };
                let sequence = match slot {
                    Some(sequence) => sequence,
                    None => slot.insert(OwnerSequence::new(&slice)?),
                };
                if sequence.next() == Some(1) {
                    taken[index].push(position);
                }
            }
        }
        previous = counts;
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::super::reshare::{agent_count, ArrivalOwners, ClosedLayers, Takeover};
    use super::super::split;
    use super::*;

    fn join(agent: usize, weight: f64, seconds: u64) -> Takeover {
        Takeover {
            lost: Vec::new(),
            from: Duration::from_secs(seconds),
            joined: Some(Joined { agent, weight }),
        }
    }

    fn lose(agent: usize, seconds: u64) -> Takeover {
        Takeover {
            lost: vec![agent],
            from: Duration::from_secs(seconds),
            joined: None,
        }
    }

    /// The VU numbers `agent` runs at fleet target `n`, `elapsed` into the run.
    fn numbers(layers: &ClosedLayers, agent: usize, n: u64, elapsed: Duration) -> Vec<u64> {
        let counts = layers.counts(n, elapsed);
        let mut numbers = Vec::new();
        for (layer, in_play) in counts.iter().enumerate() {
            for position in layers.positions(layer, agent) {
                if position < in_play && !layers.moved(layer, *position, elapsed) {
                    numbers.push(layers.number(layer, *position));
                }
            }
        }
        numbers
    }

    #[test]
    fn a_joiner_takes_half_of_one_agent_then_a_third_of_two() {
        let one = [1.0];
        let joined = ClosedLayers::new(&one, &[join(1, 1.0, 5)], 8).unwrap();
        assert_eq!(joined.parts(8), vec![4, 4]);
        // Before the join the first agent plays all 8; from it on, half of them moved.
        assert_eq!(
            numbers(&joined, 0, 8, Duration::from_secs(4)),
            (0..8).collect::<Vec<_>>()
        );
        assert_eq!(numbers(&joined, 0, 8, Duration::from_secs(5)), vec![0, 2, 4, 6]);
        assert_eq!(numbers(&joined, 1, 8, Duration::from_secs(5)), vec![8, 9, 10, 11]);
        assert!(numbers(&joined, 1, 8, Duration::from_secs(4)).is_empty());
        // At a lower target the joiner's slice is of what plays there.
        assert_eq!(joined.parts(5), vec![3, 2]);
        let twice = ClosedLayers::new(&one, &[join(1, 1.0, 5), join(2, 1.0, 9)], 12).unwrap();
        assert_eq!(twice.parts(12), vec![4, 4, 4]);
        let mut seen = HashSet::new();
        for agent in 0..3 {
            for number in numbers(&twice, agent, 12, Duration::MAX) {
                assert!(seen.insert(number), "{number} twice");
            }
        }
    }

    #[test]
    fn refuses_a_join_out_of_turn_or_without_weight() {
        let two = [1.0, 1.0];
        assert_eq!(
            ClosedLayers::new(&two, &[join(3, 1.0, 1)], 4).unwrap_err(),
            SplitError::BadJoin {
                agent: 3,
                expected: 2,
                weight: 1.0
            }
        );
        assert!(ClosedLayers::new(&two, &[join(2, 0.0, 1)], 4).is_err());
        assert!(ClosedLayers::new(&two, &[join(2, f64::NAN, 1)], 4).is_err());
        // A joiner can be lost later, like any agent; one that never joined cannot.
        assert!(ClosedLayers::new(&two, &[join(2, 1.0, 1), lose(2, 2)], 4).is_ok());
        assert!(ClosedLayers::new(&two, &[lose(2, 2)], 4).is_err());
    }

    #[test]
    fn open_arrivals_after_a_join_follow_the_new_weights() {
        let weights = [1.0];
        let takeovers = vec![(10, join(1, 1.0, 0))];
        let arrivals: Vec<_> = ArrivalOwners::at(&weights, 30, &takeovers, 0)
            .unwrap()
            .take(30)
            .collect();
        assert!(arrivals[..10].iter().all(|arrival| arrival.owner == 0));
        assert_eq!(arrivals[10..].iter().filter(|arrival| arrival.owner == 1).count(), 10);
        // Arrival numbers stay their indices.
        assert!(arrivals.iter().all(|arrival| arrival.number == arrival.index));
    }

    /// A run's changes of agents: each pick either loses a playing agent or adds one.
    fn changes(agents: usize, picks: &[(bool, usize, f64)]) -> Vec<Takeover> {
        let mut alive: Vec<usize> = (0..agents).collect();
        let mut next = agents;
        let mut list = Vec::new();
        for (second, (lose_one, pick, weight)) in picks.iter().enumerate() {
            let at = second as u64 + 1;
            if *lose_one && alive.len() > 1 {
                list.push(lose(alive.remove(pick % alive.len()), at));
            } else {
                list.push(join(next, *weight, at));
                alive.push(next);
                next += 1;
            }
        }
        list
    }

    proptest! {
        #[test]
        fn joins_and_losses_keep_the_whole_target_with_unique_numbers(
            weights in proptest::collection::vec(0.2f64..6.0, 1..5),
            picks in proptest::collection::vec((proptest::bool::ANY, 0usize..100, 0.2f64..6.0), 1..5),
            peak in 1u64..200,
            fraction in 0.0f64..=1.0,
        ) {
            let list = changes(weights.len(), &picks);
            let layers = ClosedLayers::new(&weights, &list, peak).unwrap();
            let agents = agent_count(&weights, &list);
            let n = ((peak as f64) * fraction).floor() as u64;
            // At every instant (before, between and after the changes) the agents that play
            // run exactly the target, each VU number once.
            for second in 0..=list.len() as u64 + 1 {
                let elapsed = Duration::from_secs(second);
                let gone: HashSet<usize> = list
                    .iter()
                    .filter(|change| change.from <= elapsed)
                    .flat_map(|change| change.lost.clone())
                    .collect();
                let mut seen = HashSet::new();
                for agent in (0..agents).filter(|agent| !gone.contains(agent)) {
                    for number in numbers(&layers, agent, n, elapsed) {
                        prop_assert!(seen.insert(number), "number {} twice at {}s", number, second);
                    }
                }
                prop_assert_eq!(seen.len() as u64, n, "at {}s", second);
            }
            let parts = layers.parts(n);
            prop_assert_eq!(parts.iter().sum::<u64>(), n);
            // A joiner's slice is exact by each giver: ramps only add at the ends.
            let lower = layers.counts(n.saturating_sub(1), Duration::MAX);
            let upper = layers.counts(n, Duration::MAX);
            prop_assert!(lower.iter().zip(&upper).all(|(low, high)| low <= high));
        }

        #[test]
        fn a_joiner_takes_its_weights_slice_of_each_agent(
            weights in proptest::collection::vec(0.2f64..6.0, 1..5),
            weight in 0.2f64..6.0,
            peak in 1u64..300,
        ) {
            let joined = ClosedLayers::new(&weights, &[join(weights.len(), weight, 1)], peak).unwrap();
            let before = split(&weights, peak).unwrap();
            let after = joined.parts(peak);
            let playing: f64 = weights.iter().sum();
            let mut joiner = 0;
            for (agent, held) in before.iter().enumerate() {
                // Each agent gives up exactly its owner sequence's slice of what it held.
                let given = split(&[playing, weight], *held).unwrap()[1];
                prop_assert_eq!(after[agent], held - given);
                joiner += given;
            }
            prop_assert_eq!(after[weights.len()], joiner);
        }
    }
}
