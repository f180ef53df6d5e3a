//! Orchestrating one run: check the fleet can hold it, hand every agent its assignment with a
//! common start time in its own clock, then feed the run's state machine ([`state::RunState`])
//! with the agents' events, the tick, the deadline and stop requests, sending what it queues,
//! until the run is over and its summary is built.

pub mod control;
mod event;
mod rendezvous;
pub mod seek;
pub mod state;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use wsfleet_scenario::{Bundle, Scenario};

use crate::capacity::CapacityError;
use crate::registry::{AgentEvent, Registry, RegistryError};
use crate::service::unix_nanos_now;
use crate::summary::Summary;
use crate::wire::AgentAssignment;
pub use control::{Change, ChangeAction, ChangeEvent, ControlError};
pub use event::{IntervalFigures, RunEvent, RunFigures};
use state::{RunState, Starter};

/// What to run.
pub struct RunRequest {
    pub bundle: Bundle,
    /// Values for `${...}` the controller resolved (e.g. `testserver.url`).
    pub variables: HashMap<String, String>,
    /// How long before the start the assignments go out (agents compile and get ready).
    pub lead_time: Duration,
    /// The operator's changes to the run while it runs, each with where its answer goes.
    pub changes: Option<mpsc::UnboundedReceiver<ChangeRequest>>,
}

/// A change to the running run, and where to say whether it was made.
pub type ChangeRequest = (Change, oneshot::Sender<Result<ChangeEvent, ControlError>>);

/// Why a run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Scenario(#[from] wsfleet_scenario::ScenarioError),
    #[error("no agent is attached: start agents with `wsfleet agent --controller URL`")]
    NoAgents,
    #[error(transparent)]
    Capacity(#[from] CapacityError),
    #[error(transparent)]
    Busy(#[from] RegistryError),
    /// The scenario's test server could not start.
    #[error("{0}")]
    TestServer(String),
    /// The task playing the run ended without a summary.
    #[error("the run task failed: {0}")]
    Task(String),
}

/// How often the run looks at its rendezvous timeouts.
const TICK: Duration = Duration::from_millis(250);

/// Runs `scenario` (compiled from `request.bundle`) on every attached agent and returns its
/// summary.
pub async fn execute(
    registry: &Arc<Registry>,
    scenario: &Scenario,
    mut request: RunRequest,
    events: Option<mpsc::UnboundedSender<RunEvent>>,
    stop: CancellationToken,
) -> Result<Summary, RunError> {
    let agents = registry.agents();
    if agents.is_empty() {
        return Err(RunError::NoAgents);
    }
    let weights = crate::capacity::weights(&agents);
    let shares = crate::capacity::shares(scenario, &agents, &weights)?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let (agent_events, mut agent_event_receiver) = mpsc::unbounded_channel();
    registry.begin_run(&run_id, agent_events)?;
    let mut changes = request.changes.take();
    let start_unix = unix_nanos_now() + request.lead_time.as_nanos() as i64;
    let start = Instant::now() + request.lead_time;
    let mut starters = Vec::with_capacity(agents.len());
    for (index, (agent, vus)) in agents.into_iter().zip(shares).enumerate() {
        let assignment = AgentAssignment {
            run_id: run_id.clone(),
            bundle: request.bundle.clone(),
            agent_index: index as u32,
            weights: weights.clone(),
            start_unix_nanos: start_unix + agent.clock_offset_nanos,
            variables: request.variables.clone(),
        };
        let sent = agent.sender.send(assignment.to_message()).await;
        starters.push(Starter {
            info: agent,
            vus,
            lost: sent.is_err().then(|| "stream closed before the assignment".to_owned()),
        });
    }
    let mut run = RunState::new(&run_id, scenario, starters, weights, start);
    let summary = drive(
        registry,
        &mut run,
        &events,
        stop,
        &mut agent_event_receiver,
        &mut changes,
    )
    .await;
    registry.end_run(&run_id);
    Ok(summary)
}

/// Feeds the run its events until it is over; sends what it queues after each.
async fn drive(
    registry: &Registry,
    run: &mut RunState<'_>,
    events: &Option<mpsc::UnboundedSender<RunEvent>>,
    stop: CancellationToken,
    agent_events: &mut mpsc::UnboundedReceiver<(String, AgentEvent)>,
    changes: &mut Option<mpsc::UnboundedReceiver<ChangeRequest>>,
) -> Summary {
    let hard_deadline = run.hard_deadline();
    let mut tick = tokio::time::interval(TICK);
    flush(run, events).await;
    while !run.is_over(Instant::now()) {
        tokio::select! {
            _ = stop.cancelled(), if !run.stop_sent() => run.on_stop_request(Instant::now()),
            _ = tokio::time::sleep_until(hard_deadline.into()) => {
                run.on_deadline();
                flush(run, events).await;
                break;
            }
            _ = tick.tick() => run.on_tick(Instant::now()),
            Some((change, answer)) = next_change(changes) => {
                // The asker may have gone: the change stands anyway.
                let _ = answer.send(run.on_control(change, Instant::now()));
            }
            Some((agent, event)) = agent_events.recv() => {
                let now = Instant::now();
                match event {
                    AgentEvent::Report(report) => {
                        if let Some(active) = report.gauges.get(wsfleet_metrics::catalog::ACTIVE_CONNECTIONS) {
                            registry.update(&agent, |info| info.usage.active_connections = *active);
                        }
                        run.on_report(&agent, &report, now);
                    }
                    AgentEvent::Status(status) => run.on_status(&agent, &status, now),
                    AgentEvent::Rendezvous(arrive) => run.on_rendezvous(&agent, &arrive, now),
                    AgentEvent::Attached(instance) => run.on_attached(&agent, &instance, now),
                    AgentEvent::Detached(reason) => run.on_lost(&agent, &reason, now),
                }
            }
        }
        flush(run, events).await;
    }
    let summary = run.finish(Instant::now());
    flush(run, events).await;
    summary
}

/// The next change asked, or never when the run takes none.
async fn next_change(changes: &mut Option<mpsc::UnboundedReceiver<ChangeRequest>>) -> Option<ChangeRequest> {
    match changes {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// Sends the messages the run queued for agents, then hands on its events.
async fn flush(run: &mut RunState<'_>, events: &Option<mpsc::UnboundedSender<RunEvent>>) {
    for outgoing in run.take_outgoing() {
        // A stream that is gone: the agent's loss reaches the run through the registry.
        let _ = outgoing.to.send(outgoing.message).await;
    }
    for event in run.take_events() {
        if let Some(events) = events {
            let _ = events.send(event);
        }
    }
}
