//! A run's answer to losing an agent (`load.on_agent_lost`): go on without its share, move
//! the share to the survivors, or stop the run. This module decides whether and how a share
//! can move; the run's state (`run::state`) acts on it.

use std::time::Duration;

use wsfleet_proto::v1::Capacity;
use wsfleet_scenario::plan::reshare::{ClosedLayers, Takeover};
use wsfleet_scenario::LoadPlan;

use crate::capacity::EPHEMERAL_PORTS_PER_SOURCE;

/// How far ahead of now a takeover starts, so every survivor has it before it applies (an
/// open-model agent then never has to take back an arrival it already started).
pub const TAKEOVER_LEAD: Duration = Duration::from_millis(500);

/// A survivor of a loss, as far as taking over load goes.
pub struct Survivor<'a> {
    /// Its index in the run's weights.
    pub index: usize,
    pub id: &'a str,
    pub capacity: &'a Capacity,
    /// The protocol revision of its stream: reshares need 1.
    pub revision: u32,
    /// It has played its whole share already (a run of `iterations`).
    pub finished: bool,
}

/// Why a lost agent's share cannot move; the run then goes on without it.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum CannotMove {
    #[error("no agent is left to take it")]
    NoSurvivor,
    #[error("agent `{0}` runs an older wsfleet that cannot take over load")]
    OldAgent(String),
    #[error("agent `{0}` has already played its whole share")]
    Finished(String),
    #[error("the load plan is over")]
    PlanOver,
    #[error("{0}")]
    Split(#[from] wsfleet_scenario::plan::SplitError),
    #[error("agent `{agent}` would hold {part} connections at the peak, past its {max}")]
    OverCapacity { agent: String, part: u64, max: u64 },
    #[error("agent `{agent}` would open {part} connections from {sources} source address(es), past the ephemeral ports they give")]
    OverPorts { agent: String, part: u64, sources: u64 },
}

/// A share that moves: every takeover of the run with the new one last, and each agent's new
/// peak VUs (by index; 0 for lost agents).
pub struct Move {
    pub takeovers: Vec<Takeover>,
    pub peak_parts: Vec<u64>,
}

/// Plans moving agent `lost`'s share of every part's plan (`plans`) to `survivors`, `elapsed`
/// into the run; says why it cannot.
pub fn plan_move(
    plans: &[&LoadPlan],
    weights: &[f64],
    takeovers: &[Takeover],
    lost: usize,
    elapsed: Duration,
    survivors: &[Survivor<'_>],
) -> Result<Move, CannotMove> {
    if survivors.is_empty() {
        return Err(CannotMove::NoSurvivor);
    }
    if let Some(old) = survivors.iter().find(|survivor| survivor.revision < 1) {
        return Err(CannotMove::OldAgent(old.id.to_owned()));
    }
    if let Some(done) = survivors.iter().find(|survivor| survivor.finished) {
        return Err(CannotMove::Finished(done.id.to_owned()));
    }
    let from = elapsed + TAKEOVER_LEAD;
    let stages_end = plans
        .iter()
        .map(|plan| plan.stages_end())
        .try_fold(Duration::ZERO, |latest, end| end.map(|end| latest.max(end)));
    if stages_end.is_some_and(|end| from >= end) {
        return Err(CannotMove::PlanOver);
    }
    let mut all = takeovers.to_vec();
    all.push(Takeover {
        lost: vec![lost],
        from,
        joined: None,
    });
    // Each part is split on its own; an agent's peak is the sum of its parts.
    let mut peak_parts = vec![0u64; weights.len()];
    for plan in plans {
        let peak = plan.max_vus();
        let parts = ClosedLayers::new(weights, &all, peak)?.parts(peak);
        for (total, part) in peak_parts.iter_mut().zip(parts) {
            *total += part;
        }
    }
    for survivor in survivors {
        let part = peak_parts.get(survivor.index).copied().unwrap_or(0);
        let sources = survivor.capacity.source_addresses.len().max(1) as u64;
        if part > survivor.capacity.max_connections {
            return Err(CannotMove::OverCapacity {
                agent: survivor.id.to_owned(),
                part,
                max: survivor.capacity.max_connections,
            });
        }
        if part > EPHEMERAL_PORTS_PER_SOURCE * sources {
            return Err(CannotMove::OverPorts {
                agent: survivor.id.to_owned(),
                part,
                sources,
            });
        }
    }
    Ok(Move {
        takeovers: all,
        peak_parts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsfleet_scenario::plan::{LoadModel, LostAgentPolicy, Stage};

    fn plan(vus: u64, seconds: u64) -> LoadPlan {
        LoadPlan {
            model: LoadModel::Closed {
                start_vus: vus,
                stages: vec![Stage {
                    duration: Duration::from_secs(seconds),
                    target: vus,
                }],
                iterations_per_vu: None,
            },
            graceful_stop: Duration::from_secs(1),
            max_duration: Duration::from_secs(60),
            on_agent_lost: LostAgentPolicy::Redistribute,
            on_agent_joined: Default::default(),
        }
    }

    fn capacity(max_connections: u64) -> Capacity {
        Capacity {
            cores: 1,
            open_file_limit: max_connections,
            max_connections,
            weight: 1.0,
            source_addresses: Vec::new(),
        }
    }

    fn survivor<'a>(index: usize, id: &'a str, capacity: &'a Capacity) -> Survivor<'a> {
        Survivor {
            index,
            id,
            capacity,
            revision: 1,
            finished: false,
        }
    }

    #[test]
    fn moves_the_share_to_the_survivors_within_their_capacity() {
        let roomy = capacity(100);
        let moved = plan_move(
            &[&plan(9, 30)],
            &[1.0, 1.0, 1.0],
            &[],
            1,
            Duration::from_secs(3),
            &[survivor(0, "a", &roomy), survivor(2, "c", &roomy)],
        )
        .unwrap();
        assert_eq!(moved.peak_parts, vec![5, 0, 4]);
        assert_eq!(moved.takeovers[0].from, Duration::from_millis(3500));

        let tight = capacity(4);
        let refused = plan_move(
            &[&plan(9, 30)],
            &[1.0, 1.0, 1.0],
            &[],
            1,
            Duration::from_secs(3),
            &[survivor(0, "a", &tight), survivor(2, "c", &roomy)],
        );
        assert_eq!(
            refused.err().map(|why| why.to_string()).as_deref(),
            Some("agent `a` would hold 5 connections at the peak, past its 4")
        );
    }

    #[test]
    fn says_why_a_share_cannot_move() {
        let roomy = capacity(100);
        let why = |elapsed: u64, survivors: &[Survivor<'_>]| {
            plan_move(
                &[&plan(9, 30)],
                &[1.0, 1.0, 1.0],
                &[],
                1,
                Duration::from_secs(elapsed),
                survivors,
            )
            .err()
            .map(|why| why.to_string())
            .unwrap_or_default()
        };
        assert_eq!(why(3, &[]), "no agent is left to take it");
        assert_eq!(why(30, &[survivor(0, "a", &roomy)]), "the load plan is over");
        let mut old = survivor(0, "a", &roomy);
        old.revision = 0;
        assert!(why(3, &[old]).contains("older wsfleet"));
    }
}
