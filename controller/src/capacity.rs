//! Whether the attached fleet can hold a run: each agent's weight, its exact share of every
//! part's peak, and the refusals (more connections than an agent holds, or than its source
//! addresses have ephemeral ports for).

use wsfleet_scenario::{plan, Scenario};

use crate::registry::AgentInfo;

/// Ephemeral ports one (source address, destination) pair offers, with a margin (Linux's
/// default range gives 28,232).
pub const EPHEMERAL_PORTS_PER_SOURCE: u64 = 28_000;

/// Why the fleet cannot take a run.
#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    #[error("the fleet cannot hold this run: {0}")]
    TooSmall(String),
    #[error("cannot split the load: {0}")]
    Split(#[from] plan::SplitError),
}

/// Each agent's weight in the split: its own, or its cores.
pub fn weights(agents: &[AgentInfo]) -> Vec<f64> {
    agents
        .iter()
        .map(|agent| {
            let capacity = &agent.capacity;
            if capacity.weight > 0.0 {
                capacity.weight
            } else {
                // A weight stands for cores up to the largest weight a split takes.
                f64::from(capacity.cores.max(1)).min(wsfleet_scenario::plan::MAX_WEIGHT)
            }
        })
        .collect()
}

/// Each agent's VUs at the peak of `scenario` (by the order of `weights`), once every agent is
/// checked to hold its share.
pub fn shares(scenario: &Scenario, agents: &[AgentInfo], weights: &[f64]) -> Result<Vec<u64>, CapacityError> {
    // Each part is split on its own; an agent's share is the sum of its parts.
    let mut shares = vec![0u64; weights.len()];
    for part in &scenario.parts {
        for (total, share) in shares.iter_mut().zip(plan::split(weights, part.peak_vus())?) {
            *total += share;
        }
    }
    let max_vus = scenario.max_vus();
    let holdable: u64 = agents.iter().map(|agent| agent.capacity.max_connections).sum();
    for (agent, share) in agents.iter().zip(&shares) {
        let sources = agent.capacity.source_addresses.len().max(1) as u64;
        if *share > EPHEMERAL_PORTS_PER_SOURCE * sources {
            return Err(CapacityError::TooSmall(format!(
                "agent `{}` would open {share} connections to one target from {sources} source address(es), past the ~{EPHEMERAL_PORTS_PER_SOURCE} ephemeral ports each gives: start it with more --source-addresses (e.g. 127.0.0.2-127.0.0.9) or add agents",
                agent.id
            )));
        }
        if *share > agent.capacity.max_connections {
            return Err(CapacityError::TooSmall(format!(
                "the scenario needs {max_vus} connections at its peak; agent `{}` would get {share} but holds at most {} (the fleet holds {holdable}): add agents, raise their open-file limit, or lower the load",
                agent.id, agent.capacity.max_connections
            )));
        }
    }
    Ok(shares)
}
