//! Orchestrating one run: check the fleet can hold it, hand every agent its assignment with a
//! common start time in its own clock, aggregate reports exactly, answer the loss of an agent
//! by the scenario's policy, stop on request, and build the summary.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wsfleet_metrics::MetricSets;
use wsfleet_proto::v1::{controller_message, Assignment, ControllerMessage, RunPhase, Stop};
use wsfleet_scenario::plan::reshare::Takeover;
use wsfleet_scenario::plan::LostAgentPolicy;
use wsfleet_scenario::{plan, Bundle, Scenario};

use crate::aggregate::Aggregate;
use crate::lost::Survivor;
use crate::registry::{AgentEvent, AgentInfo, Registry};
use crate::service::unix_nanos_now;
use crate::summary::{
    AgentSummary, LostAgentEvent, LostAgents, ReportDelivery, Summary, Totals, SUMMARY_SCHEMA_VERSION,
};

/// Ephemeral ports one (source address, destination) pair offers, with a margin (Linux's
/// default range gives 28,232).
pub const EPHEMERAL_PORTS_PER_SOURCE: u64 = 28_000;

/// What to run.
pub struct RunRequest {
    pub bundle: Bundle,
    /// Values for `${...}` the controller resolved (e.g. `testserver.url`).
    pub variables: HashMap<String, String>,
    /// How long before the start the assignments go out (agents compile and get ready).
    pub lead_time: Duration,
}

/// Live events of a run, for terminals and dashboards.
#[derive(Debug)]
pub enum RunEvent {
    Started {
        run_id: String,
        agents: usize,
        vus: u64,
        /// Each agent's share of the peak VUs.
        shares: Vec<(String, u64)>,
    },
    /// The fleet's figures for one interval, once every agent has reported it.
    Interval { interval: u64, sets: MetricSets },
    /// A report for an interval already emitted (a lost agent came back and resent it): the
    /// interval's figures now, and the late report's own.
    LateReport {
        interval: u64,
        sets: MetricSets,
        late: MetricSets,
    },
    /// An agent was lost; `action` says what the run's policy did.
    AgentLost {
        agent: String,
        reason: String,
        action: String,
    },
    /// A lost agent's share moved: each agent's new share of the peak VUs.
    Reshared { shares: Vec<(String, u64)> },
}

/// Why a run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Scenario(#[from] wsfleet_scenario::ScenarioError),
    #[error("no agent is attached: start agents with `wsfleet agent --controller URL`")]
    NoAgents,
    #[error("the fleet cannot hold this run: {0}")]
    Capacity(String),
    #[error("{0}")]
    Busy(String),
    #[error("cannot split the load: {0}")]
    Split(#[from] plan::SplitError),
}

/// How long a run that is otherwise over waits for lost agents that came back to resend
/// what they measured.
const RETURNED_AGENT_WAIT: Duration = Duration::from_secs(15);

struct AgentState {
    info: AgentInfo,
    /// Its index in the run's weights.
    index: usize,
    /// Its VUs at the plan's peak (raised when it takes over a lost agent's share).
    vus: u64,
    phase: RunPhase,
    detail: String,
    last_interval: Option<u64>,
    lost: Option<String>,
    /// Lost, then back on a new stream: it resends its reports and its last status.
    returned: bool,
    reports_dropped: u64,
}

/// Runs `request` on every attached agent and returns its summary.
pub async fn execute(
    registry: &Arc<Registry>,
    request: RunRequest,
    events: Option<mpsc::UnboundedSender<RunEvent>>,
    stop: CancellationToken,
) -> Result<Summary, RunError> {
    let scenario: Scenario = request.bundle.compile()?;
    let agents = registry.agents();
    if agents.is_empty() {
        return Err(RunError::NoAgents);
    }
    let weights: Vec<f64> = agents
        .iter()
        .map(|agent| {
            let capacity = &agent.capacity;
            if capacity.weight > 0.0 {
                capacity.weight
            } else {
                f64::from(capacity.cores.max(1))
            }
        })
        .collect();
    // Each part is split on its own; an agent's share is the sum of its parts.
    let mut shares = vec![0u64; weights.len()];
    for part in &scenario.parts {
        for (total, share) in shares.iter_mut().zip(plan::split(&weights, part.plan.max_vus())?) {
            *total += share;
        }
    }
    let max_vus = scenario.max_vus();
    let holdable: u64 = agents.iter().map(|agent| agent.capacity.max_connections).sum();
    for (agent, share) in agents.iter().zip(&shares) {
        let sources = agent.capacity.source_addresses.len().max(1) as u64;
        if *share > EPHEMERAL_PORTS_PER_SOURCE * sources {
            return Err(RunError::Capacity(format!(
                "agent `{}` would open {share} connections to one target from {sources} source address(es), past the ~{EPHEMERAL_PORTS_PER_SOURCE} ephemeral ports each gives: start it with more --source-addresses (e.g. 127.0.0.2-127.0.0.9) or add agents",
                agent.id
            )));
        }
        if *share > agent.capacity.max_connections {
            return Err(RunError::Capacity(format!(
                "the scenario needs {max_vus} connections at its peak; agent `{}` would get {share} but holds at most {} (the fleet holds {holdable}): add agents, raise their open-file limit, or lower the load",
                agent.id, agent.capacity.max_connections
            )));
        }
    }

    let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let (agent_events, mut agent_event_receiver) = mpsc::unbounded_channel();
    registry.begin_run(&run_id, agent_events).map_err(RunError::Busy)?;
    let result = drive(
        registry,
        &request,
        &scenario,
        &run_id,
        agents,
        &weights,
        &shares,
        events,
        stop,
        &mut agent_event_receiver,
    )
    .await;
    registry.end_run(&run_id);
    Ok(result)
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    registry: &Arc<Registry>,
    request: &RunRequest,
    scenario: &Scenario,
    run_id: &str,
    agents: Vec<AgentInfo>,
    weights: &[f64],
    shares: &[u64],
    events: Option<mpsc::UnboundedSender<RunEvent>>,
    stop: CancellationToken,
    agent_events: &mut mpsc::UnboundedReceiver<(String, AgentEvent)>,
) -> Summary {
    let emit = |event: RunEvent| {
        if let Some(events) = &events {
            let _ = events.send(event);
        }
    };
    let start_unix = unix_nanos_now() + request.lead_time.as_nanos() as i64;
    let start_instant = Instant::now() + request.lead_time;
    let mut states: BTreeMap<String, AgentState> = BTreeMap::new();
    for (index, (agent, share)) in agents.into_iter().zip(shares).enumerate() {
        let assignment = Assignment {
            run_id: run_id.to_owned(),
            scenario_source: request.bundle.source.clone(),
            scenario_path: request.bundle.path.clone(),
            files: request.bundle.files.clone().into_iter().collect(),
            scenario_hash: request.bundle.hash(),
            agent_index: index as u32,
            weights: weights.to_vec(),
            start_unix_nanos: start_unix + agent.clock_offset_nanos,
            variables: request.variables.clone(),
        };
        let message = ControllerMessage {
            kind: Some(controller_message::Kind::Assignment(assignment)),
        };
        let sent = agent.sender.send(message).await;
        states.insert(
            agent.id.clone(),
            AgentState {
                index,
                vus: *share,
                phase: RunPhase::Unspecified,
                detail: String::new(),
                last_interval: None,
                lost: sent.is_err().then(|| "stream closed before the assignment".to_owned()),
                returned: false,
                reports_dropped: 0,
                info: agent,
            },
        );
    }
    emit(RunEvent::Started {
        run_id: run_id.to_owned(),
        agents: states.len(),
        vus: scenario.max_vus(),
        shares: states.iter().map(|(id, state)| (id.clone(), state.vus)).collect(),
    });
    tracing::info!(
        run = run_id,
        agents = states.len(),
        vus = scenario.max_vus(),
        "run started"
    );

    let mut aggregate = Aggregate::default();
    let mut next_live = 0u64;
    let mut outcome = "completed".to_owned();
    let graceful_stop = scenario.graceful_stop();
    let on_agent_lost = scenario.plan().on_agent_lost;
    let part_plans: Vec<&wsfleet_scenario::LoadPlan> = scenario.parts.iter().map(|part| &part.plan).collect();
    // Past this the run is abandoned whatever the agents say.
    let hard_deadline = start_instant + scenario.max_duration() + graceful_stop + Duration::from_secs(30);
    let mut stop_sent = false;
    let mut aborted_by: Option<String> = None;
    let mut takeovers: Vec<Takeover> = Vec::new();
    let mut lost_events: Vec<LostAgentEvent> = Vec::new();
    // When no agent in the run was playing any more, while lost agents that came back were
    // still resending what they measured.
    let mut others_done_at: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut rendezvous: Vec<RendezvousState> = scenario
        .rendezvous_points()
        .into_iter()
        .map(|spec| RendezvousState {
            spec,
            generation: 0,
            arrived: 0,
            last_arrival: None,
        })
        .collect();
    loop {
        let playing = |state: &AgentState| !matches!(state.phase, RunPhase::Finished | RunPhase::Failed);
        let active = states
            .values()
            .filter(|state| state.lost.is_none() && playing(state))
            .count();
        let returning = states
            .values()
            .filter(|state| state.lost.is_some() && state.returned && playing(state))
            .count();
        if active == 0 {
            // A lost agent that came back sends what it kept, then its last status; wait for
            // that, within a bound.
            let since = *others_done_at.get_or_insert_with(Instant::now);
            if returning == 0 || since.elapsed() >= RETURNED_AGENT_WAIT {
                break;
            }
        }
        tokio::select! {
            _ = stop.cancelled(), if !stop_sent => {
                stop_sent = true;
                outcome = "stopped".to_owned();
                send_stop(&states, run_id, graceful_stop, "stopped by the user").await;
            }
            _ = tokio::time::sleep_until(hard_deadline.into()) => {
                outcome = "failed: agents did not finish in time".to_owned();
                send_stop(&states, run_id, Duration::ZERO, "run deadline passed").await;
                break;
            }
            _ = tick.tick() => {
                // A point whose last arrival is older than its timeout goes with whoever is there.
                for (index, point) in rendezvous.iter_mut().enumerate() {
                    if point.last_arrival.is_some_and(|last| last.elapsed() >= point.spec.timeout) {
                        release_rendezvous(&states, run_id, index as u32, point, "timeout since the last arrival").await;
                    }
                }
            }
            Some((agent, event)) = agent_events.recv() => {
                let Some(state) = states.get_mut(&agent) else { continue };
                match event {
                    AgentEvent::Rendezvous(arrive) => {
                        let Some(point) = rendezvous.get_mut(arrive.point as usize) else { continue };
                        if arrive.generation != point.generation {
                            // Sent before the agent saw the release of that generation: those
                            // VUs are released by it.
                            continue;
                        }
                        point.arrived += arrive.count;
                        point.last_arrival = Some(Instant::now());
                        if point.arrived >= point.spec.count {
                            release_rendezvous(&states, run_id, arrive.point, point, "count reached").await;
                        }
                    }
                    AgentEvent::Report(report) => {
                        if let Some(active) = report.gauges.get(wsfleet_metrics::catalog::ACTIVE_CONNECTIONS) {
                            registry.update(&agent, |info| info.usage.active_connections = *active);
                        }
                        let interval = report.interval;
                        match aggregate.add(&agent, &report) {
                            Ok(true) => {
                                state.last_interval = Some(state.last_interval.map_or(interval, |last| last.max(interval)));
                                // An interval already shown gets this late report (a lost agent
                                // resent it): show it again, complete.
                                if interval < next_live {
                                    if let (Some(sets), Ok(late)) = (aggregate.intervals.get(&interval), MetricSets::from_report(&report)) {
                                        emit(RunEvent::LateReport { interval, sets: sets.clone(), late });
                                    }
                                }
                            }
                            Ok(false) => tracing::debug!(agent, interval, "duplicate report ignored"),
                            Err(error) => tracing::warn!(agent, %error, "report refused"),
                        }
                    }
                    AgentEvent::Status(status) => {
                        let phase = RunPhase::try_from(status.phase).unwrap_or(RunPhase::Unspecified);
                        state.phase = phase;
                        state.detail = status.message.clone();
                        state.reports_dropped = state.reports_dropped.max(status.reports_dropped);
                        if phase == RunPhase::Failed && state.lost.is_none() {
                            tracing::error!(agent, message = %status.message, "agent could not play the run");
                            outcome = format!("failed: agent `{agent}`: {}", status.message);
                            if !stop_sent {
                                stop_sent = true;
                                send_stop(&states, run_id, Duration::ZERO, "another agent failed").await;
                            }
                        }
                    }
                    AgentEvent::Attached(instance) => {
                        // The same process, back after it was lost: it stopped its load, and
                        // resends the reports it kept. (A new process with the id knows nothing
                        // of this run.)
                        if state.lost.is_some() && state.info.instance == instance && !instance.is_empty() {
                            tracing::info!(agent, "lost agent came back; counting the reports it resends");
                            state.returned = true;
                        }
                    }
                    AgentEvent::Detached(reason) => {
                        if state.lost.is_some() {
                            // Lost already; if it had come back, it is gone again.
                            state.returned = false;
                            continue;
                        }
                        state.lost = Some(reason.clone());
                        let elapsed = start_instant.elapsed();
                        let was_playing = playing(state) && !stop_sent;
                        let lost = LostAgentEvent {
                            agent: agent.clone(),
                            at_seconds: elapsed.as_secs_f64(),
                            reason: reason.clone(),
                            vus: state.vus,
                            ..LostAgentEvent::default()
                        };
                        let lost_index = state.index;
                        let (action, detail) = if !was_playing {
                            ("none", "the run did not need it any more".to_owned())
                        } else {
                            match on_agent_lost {
                                LostAgentPolicy::Continue => ("continued", "the run went on without its share".to_owned()),
                                LostAgentPolicy::Abort => {
                                    outcome = format!("aborted: agent `{agent}` was lost ({reason})");
                                    stop_sent = true;
                                    send_stop(&states, run_id, graceful_stop, &format!("agent `{agent}` was lost")).await;
                                    ("aborted", "the run was stopped (on_agent_lost: abort)".to_owned())
                                }
                                LostAgentPolicy::Redistribute => {
                                    match redistribute(&mut states, &part_plans, weights, &takeovers, lost_index, elapsed, run_id).await {
                                        Ok((all, movers)) => {
                                            takeovers = all;
                                            emit(RunEvent::Reshared {
                                                shares: states.iter().filter(|(_, state)| state.lost.is_none()).map(|(id, state)| (id.clone(), state.vus)).collect(),
                                            });
                                            ("redistributed", format!("its share moved to {movers} agent(s)"))
                                        }
                                        Err(why) => ("continued", format!("its share could not move ({why}); the run went on without it")),
                                    }
                                }
                            }
                        };
                        tracing::warn!(agent, %reason, action, %detail, "agent lost during the run");
                        emit(RunEvent::AgentLost { agent: agent.clone(), reason: reason.clone(), action: detail.clone() });
                        lost_events.push(LostAgentEvent { action: action.to_owned(), detail, ..lost });
                    }
                }
            }
        }
        // Live figures: each interval once all agents still in the run have reported it.
        let reporting: BTreeSet<&str> = states
            .iter()
            .filter(|(_, state)| state.lost.is_none())
            .map(|(id, _)| id.as_str())
            .collect();
        while let Some(complete) = aggregate.complete_through(&reporting) {
            if next_live > complete {
                break;
            }
            if let Some(sets) = aggregate.intervals.get(&next_live) {
                emit(RunEvent::Interval {
                    interval: next_live,
                    sets: sets.clone(),
                });
            }
            next_live += 1;
            // Thresholds that abort: evaluated on everything so far, once per second of run.
            if aborted_by.is_none() && !stop_sent {
                let elapsed = start_instant.elapsed();
                let failed = scenario
                    .thresholds
                    .iter()
                    .filter(|threshold| threshold.abort_on_fail && elapsed >= threshold.delay)
                    .map(|threshold| {
                        let result = crate::thresholds::evaluate(
                            threshold,
                            &aggregate.totals,
                            elapsed.as_secs_f64(),
                            &aggregate.peak_gauges,
                        );
                        (threshold, result)
                    })
                    .find(|(_, result)| !result.passed && result.value.is_some());
                if let Some((threshold, result)) = failed {
                    tracing::warn!(run = run_id, threshold = %threshold.name, measured = %result.display, "threshold failed: stopping the run");
                    outcome = format!(
                        "aborted: threshold `{}` {} failed (measured {})",
                        threshold.name, threshold.condition, result.display
                    );
                    aborted_by = Some(threshold.name.clone());
                    stop_sent = true;
                    send_stop(&states, run_id, graceful_stop, "a threshold failed").await;
                }
            }
        }
    }
    // Intervals that some agent never reported (lost agents) are still shown.
    let last = aggregate.intervals.keys().next_back().copied();
    if let Some(last) = last {
        while next_live <= last {
            if let Some(sets) = aggregate.intervals.get(&next_live) {
                emit(RunEvent::Interval {
                    interval: next_live,
                    sets: sets.clone(),
                });
            }
            next_live += 1;
        }
    }
    if states.values().any(|state| state.lost.is_some()) && outcome == "completed" {
        outcome = "completed with lost agents".to_owned();
    }
    let duration_seconds = start_instant.elapsed().as_secs_f64().max(0.0);
    let peak_active = aggregate
        .peak_gauges
        .get(wsfleet_metrics::catalog::ACTIVE_CONNECTIONS)
        .copied()
        .unwrap_or(0);
    let thresholds = scenario
        .thresholds
        .iter()
        .map(|threshold| {
            let mut result =
                crate::thresholds::evaluate(threshold, &aggregate.totals, duration_seconds, &aggregate.peak_gauges);
            if aborted_by.as_deref() == Some(threshold.name.as_str()) {
                result.aborted_run = true;
                result.passed = false;
            }
            result
        })
        .collect();
    Summary {
        schema_version: SUMMARY_SCHEMA_VERSION,
        run_id: run_id.to_owned(),
        scenario: scenario.name.clone(),
        duration_seconds,
        agents: states
            .values()
            .map(|state| AgentSummary {
                id: state.info.id.clone(),
                hostname: state.info.hostname.clone(),
                vus: state.vus,
                intervals_reported: aggregate
                    .reported
                    .values()
                    .filter(|agents| agents.contains(&state.info.id))
                    .count() as u64,
                state: match (&state.lost, state.returned) {
                    (Some(reason), true) => format!("lost: {reason} (came back and resent its reports)"),
                    (Some(reason), false) => format!("lost: {reason}"),
                    (None, _) => format!("{:?}", state.phase).to_lowercase(),
                },
                reports_dropped: state.reports_dropped,
            })
            .collect(),
        outcome,
        totals: Totals::from_sets(&aggregate.totals, peak_active, duration_seconds),
        steps: Summary::steps_of(&aggregate.totals, &scenario.step_names),
        intervals: aggregate
            .intervals
            .iter()
            .map(|(interval, sets)| Summary::interval_of(*interval, sets))
            .collect(),
        thresholds,
        lost_agents: LostAgents {
            policy: on_agent_lost.name().to_owned(),
            events: lost_events,
        },
        reports: ReportDelivery {
            accepted: aggregate.accepted(),
            duplicates_ignored: aggregate.duplicates,
            dropped_by_agents: states.values().map(|state| state.reports_dropped).sum(),
        },
    }
}

/// Moves the share of the agent at `lost_index` (already marked lost) to the agents still in
/// the run: tells each of them every takeover so far and updates their shares. Returns the
/// takeovers and how many agents took the share, or why it cannot move.
async fn redistribute(
    states: &mut BTreeMap<String, AgentState>,
    plans: &[&wsfleet_scenario::LoadPlan],
    weights: &[f64],
    takeovers: &[Takeover],
    lost_index: usize,
    elapsed: Duration,
    run_id: &str,
) -> Result<(Vec<Takeover>, usize), String> {
    let moved = {
        let survivors: Vec<Survivor<'_>> = states
            .values()
            .filter(|state| state.lost.is_none())
            .map(|state| Survivor {
                index: state.index,
                id: &state.info.id,
                capacity: &state.info.capacity,
                revision: state.info.revision,
                finished: matches!(state.phase, RunPhase::Finished | RunPhase::Failed),
            })
            .collect();
        crate::lost::plan_move(plans, weights, takeovers, lost_index, elapsed, &survivors)?
    };
    let message = crate::lost::reshare_message(run_id, &moved.takeovers);
    let mut movers = 0;
    for state in states.values_mut().filter(|state| state.lost.is_none()) {
        state.vus = moved.peak_parts.get(state.index).copied().unwrap_or(state.vus);
        if state.info.sender.send(message.clone()).await.is_ok() {
            movers += 1;
        }
    }
    Ok((moved.takeovers, movers))
}

/// A rendezvous point as the controller counts it.
struct RendezvousState {
    spec: wsfleet_scenario::Rendezvous,
    /// Releases so far; arrivals of this generation count.
    generation: u64,
    arrived: u64,
    last_arrival: Option<Instant>,
}

/// Releases a point's current generation on every agent still in the run.
async fn release_rendezvous(
    states: &BTreeMap<String, AgentState>,
    run_id: &str,
    index: u32,
    point: &mut RendezvousState,
    why: &str,
) {
    tracing::info!(
        run = run_id,
        point = index,
        generation = point.generation,
        arrived = point.arrived,
        wanted = point.spec.count,
        why,
        "rendezvous released"
    );
    for state in states.values().filter(|state| state.lost.is_none()) {
        let release = wsfleet_proto::v1::RendezvousRelease {
            run_id: run_id.to_owned(),
            point: index,
            generation: point.generation,
        };
        let _ = state
            .info
            .sender
            .send(ControllerMessage {
                kind: Some(controller_message::Kind::RendezvousRelease(release)),
            })
            .await;
    }
    point.generation += 1;
    point.arrived = 0;
    point.last_arrival = None;
}

async fn send_stop(states: &BTreeMap<String, AgentState>, run_id: &str, graceful: Duration, reason: &str) {
    for state in states.values().filter(|state| state.lost.is_none()) {
        let stop = Stop {
            run_id: run_id.to_owned(),
            graceful_ms: graceful.as_millis() as u32,
            reason: reason.to_owned(),
        };
        let _ = state
            .info
            .sender
            .send(ControllerMessage {
                kind: Some(controller_message::Kind::Stop(stop)),
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{AgentInfo, Registry};

    fn agent(id: &str, max_connections: u64, sources: usize) -> AgentInfo {
        let now = Instant::now();
        AgentInfo {
            id: id.into(),
            version: String::new(),
            hostname: String::new(),
            address: String::new(),
            capacity: wsfleet_proto::v1::Capacity {
                cores: 1,
                open_file_limit: max_connections,
                max_connections,
                weight: 1.0,
                source_addresses: (0..sources).map(|index| format!("127.0.0.{}", index + 2)).collect(),
            },
            clock_offset_nanos: 0,
            clock_rtt_nanos: 0,
            attached_at: now,
            last_seen: now,
            sender: mpsc::channel(1).0,
            usage: Default::default(),
            instance: String::new(),
            revision: 1,
            connection: 0,
            closed: CancellationToken::new(),
        }
    }

    fn request(vus: u64) -> RunRequest {
        RunRequest {
            bundle: Bundle {
                path: "big.yaml".into(),
                source: format!(
                    "load: {{ vus: {vus}, iterations: 1 }}\nsteps:\n  - connect: {{ url: 'ws://127.0.0.1:9/' }}\n"
                ),
                files: Default::default(),
            },
            variables: HashMap::new(),
            lead_time: Duration::from_millis(10),
        }
    }

    #[tokio::test]
    async fn refuses_runs_that_would_exhaust_source_ports() {
        let registry = Registry::new();
        registry.attach(agent("a", 1_000_000, 0)).unwrap();
        let error = execute(&registry, request(30_000), None, CancellationToken::new())
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("30000 connections to one target from 1 source address"),
            "{message}"
        );
        assert!(message.contains("--source-addresses"), "{message}");

        // Two source addresses give room for it (the run then fails to connect, which is fine:
        // it was allowed to start). Only the refusal is under test, so stop at once.
        let registry = Registry::new();
        registry.attach(agent("b", 1_000_000, 2)).unwrap();
        let stop = CancellationToken::new();
        stop.cancel();
        let outcome =
            tokio::time::timeout(Duration::from_secs(5), execute(&registry, request(30_000), None, stop)).await;
        assert!(!matches!(outcome, Ok(Err(RunError::Capacity(_)))), "{outcome:?}");
    }
}
