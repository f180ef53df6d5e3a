//! An agent that attaches while the run runs joins it (`load.on_agent_joined: take_share`, or
//! the operator's `add_agent`): it is assigned the run with a start in the past, and every
//! agent of the run is told the join (a takeover that names the joiner, `plan::reshare`), from
//! which the joiner takes a weighted slice of the others' VUs (closed model) or of the arrivals
//! to come (open model). A join that cannot apply is refused and the run goes on untouched.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use wsfleet_proto::v1::RunPhase;
use wsfleet_scenario::plan::reshare::{self, ClosedLayers, Joined, Takeover};
use wsfleet_scenario::plan::JoinedAgentPolicy;
use wsfleet_scenario::Bundle;

use super::super::control::{ChangeEvent, ControlError};
use super::super::event::RunEvent;
use super::{AgentState, Outgoing, RunState};
use crate::capacity::EPHEMERAL_PORTS_PER_SOURCE;
use crate::lost::TAKEOVER_LEAD;
use crate::registry::AgentInfo;
use crate::wire::{self, AgentAssignment};

/// The protocol revision an agent needs to join a running run, and the others to give it a
/// share.
pub const JOIN_REVISION: u32 = 4;

/// What an agent that joins the run is assigned: what the others were.
#[derive(Clone)]
pub struct JoinTerms {
    pub bundle: Bundle,
    pub variables: HashMap<String, String>,
    /// The common start, in this controller's wall clock (ns since the epoch).
    pub start_unix_nanos: i64,
}

impl RunState<'_> {
    /// Lets agents join the run while it runs, assigned as `terms` say.
    pub fn accept_joiners(&mut self, terms: JoinTerms) {
        self.joining = Some(terms);
    }

    /// Whether an agent that attaches while the run runs takes a share at once.
    pub fn takes_joiners(&self) -> bool {
        self.scenario.plan().on_agent_joined == JoinedAgentPolicy::TakeShare
    }

    /// Agent `agent` (`info`: as it attached; `None`: not attached) joins the run: checked, then
    /// assigned, every agent told, and put on the timeline as `action` (`add_agent` when the
    /// operator asked, `agent_joined` when the scenario said so).
    pub fn join(
        &mut self,
        agent: &str,
        info: Option<AgentInfo>,
        action: &str,
        now: Instant,
    ) -> Result<ChangeEvent, ControlError> {
        let refused = |why: String| ControlError::Refused(format!("agent `{agent}` cannot join the run: {why}"));
        if self.stop_sent {
            return Err(refused("the run is stopping".into()));
        }
        let Some(terms) = self.joining.clone() else {
            return Err(refused("this run takes no agent once it started".into()));
        };
        let Some(info) = info else {
            return Err(refused("no agent with this id is attached".into()));
        };
        if self.agents.contains_key(agent) {
            return Err(refused("it is in the run already".into()));
        }
        if info.revision < JOIN_REVISION {
            return Err(refused(format!(
                "it speaks protocol revision {}, which cannot join a running run ({JOIN_REVISION} is needed): upgrade it, or it waits for the next run",
                info.revision
            )));
        }
        let playing: Vec<&AgentState> = self
            .agents
            .values()
            .filter(|state| state.lost.is_none() && !state.drained && state.playing())
            .collect();
        if playing.is_empty() {
            return Err(refused("no agent of the run plays any more".into()));
        }
        if let Some(old) = playing.iter().find(|state| state.info.revision < JOIN_REVISION) {
            return Err(refused(format!(
                "agent `{}` speaks protocol revision {}, which cannot give a share to an agent that joins ({JOIN_REVISION} is needed)",
                old.info.id, old.info.revision
            )));
        }
        if self.seeker.as_ref().is_some_and(|seeker| !seeker.is_done()) {
            return Err(refused(
                "the run seeks its load (`model: seek`): its steps are measured on a fixed fleet".into(),
            ));
        }
        let elapsed = now.saturating_duration_since(self.start);
        let from = elapsed + TAKEOVER_LEAD;
        let steered = self.steered_plans();
        let stages_end = steered
            .iter()
            .map(|plan| plan.stages_end())
            .try_fold(Duration::ZERO, |latest, end| end.map(|end| latest.max(end)));
        if stages_end.is_some_and(|end| from >= end) {
            return Err(refused("the load plan is over".into()));
        }
        let index = reshare::agent_count(&self.weights, &self.takeovers);
        let weight = crate::capacity::weights(std::slice::from_ref(&info))[0];
        let mut takeovers = self.takeovers.clone();
        takeovers.push(Takeover {
            lost: Vec::new(),
            from,
            joined: Some(Joined { agent: index, weight }),
        });
        let mut peak_parts = vec![0u64; index + 1];
        for plan in &steered {
            let peak = plan.max_vus();
            let layers =
                ClosedLayers::new(&self.weights, &takeovers, peak).map_err(|error| refused(error.to_string()))?;
            for (total, part) in peak_parts.iter_mut().zip(layers.parts(peak)) {
                *total += part;
            }
        }
        let part = peak_parts[index];
        let sources = info.capacity.source_addresses.len().max(1) as u64;
        if part > info.capacity.max_connections {
            return Err(refused(format!(
                "it would hold {part} connections at the peak, past its {}",
                info.capacity.max_connections
            )));
        }
        if part > EPHEMERAL_PORTS_PER_SOURCE * sources {
            return Err(refused(format!(
                "it would open {part} connections from {sources} source address(es), past the ephemeral ports they give"
            )));
        }
        let givers = playing.len();
        // The joiner's assignment first, with the changes so far; then every agent (the joiner
        // too) learns the join.
        let assignment = AgentAssignment {
            run_id: self.run_id.clone(),
            bundle: terms.bundle,
            agent_index: index as u32,
            weights: self.weights.clone(),
            start_unix_nanos: terms.start_unix_nanos + info.clock_offset_nanos,
            variables: terms.variables,
        };
        self.outbox.push(Outgoing {
            to: info.sender.clone(),
            message: assignment.to_message(),
        });
        if !self.controls.is_empty() {
            self.outbox.push(Outgoing {
                to: info.sender.clone(),
                message: wire::run_control(&self.run_id, &self.controls),
            });
        }
        let first_interval = from.as_secs();
        self.agents.insert(
            agent.to_owned(),
            AgentState {
                index,
                vus: part,
                phase: RunPhase::Unspecified,
                detail: String::new(),
                last_interval: None,
                lost: None,
                returned: false,
                drained: false,
                first_interval,
                reports_dropped: 0,
                info,
            },
        );
        for state in self.agents.values_mut().filter(|state| state.lost.is_none()) {
            if let Some(part) = peak_parts.get(state.index) {
                state.vus = *part;
            }
        }
        self.takeovers = takeovers;
        let message = wire::reshare(&self.run_id, &self.takeovers);
        self.send_to_all(&message);
        self.events.push(RunEvent::Reshared { shares: self.shares() });
        let event = ChangeEvent {
            at_seconds: from.as_secs_f64(),
            part: String::new(),
            action: action.to_owned(),
            value: Some(part as f64),
            detail: format!("agent `{agent}` joined: it takes {part} VUs at the peak from {givers} agent(s)"),
            ..ChangeEvent::default()
        };
        tracing::info!(run = %self.run_id, agent, part, givers, action, "an agent joined the run");
        self.changes.push(event.clone());
        self.events.push(RunEvent::Changed(event.clone()));
        self.advance(now);
        Ok(event)
    }
}
