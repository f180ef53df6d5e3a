//! A run as a state machine: one method per event (an agent's report, status, loss or return,
//! a rendezvous arrival, the tick, the deadline, a stop request), each updating the run and
//! queueing what must go out: messages to agents ([`Outgoing`]) and run events for the live
//! view, the history and the terminal ([`RunEvent`]). Nothing here waits or touches a socket,
//! so the run's logic is tested by calling methods (see `tests.rs`); `run::drive` only
//! receives events, calls these methods and sends what they queued.
//!
//! The operator's changes to a running run (VUs, rate, hold, pause, stop of a part) come in
//! through [`RunState::on_control`], checked in `control.rs`; adding or draining agents would
//! add methods beside it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use wsfleet_metrics::MetricSets;
use wsfleet_proto::v1::{ControllerMessage, MetricReport, RendezvousArrive, RunPhase, RunStatus};
use wsfleet_scenario::plan::control::Control;
use wsfleet_scenario::plan::reshare::Takeover;
use wsfleet_scenario::plan::LostAgentPolicy;
use wsfleet_scenario::Scenario;

use super::control::ChangeEvent;
use super::event::{IntervalFigures, RunEvent, RunFigures};
use super::rendezvous::{Point, Release};
use super::seek::Seeker;
use crate::aggregate::Aggregate;
use crate::interval_log::IntervalLog;
use crate::lost::{CannotMove, Survivor};
use crate::outcome::{Failure, LostAction, Outcome};
use crate::registry::AgentInfo;
use crate::summary::{
    AgentSummary, LostAgentEvent, LostAgents, ReportDelivery, Summary, Totals, SUMMARY_SCHEMA_VERSION,
};
use crate::wire;

mod steer;

/// How long a run that is otherwise over waits for lost agents that came back to resend
/// what they measured.
pub const RETURNED_AGENT_WAIT: Duration = Duration::from_secs(15);

/// A message for one agent's stream.
pub struct Outgoing {
    pub to: mpsc::Sender<ControllerMessage>,
    pub message: ControllerMessage,
}

/// One agent of the run.
pub struct AgentState {
    pub info: AgentInfo,
    /// Its index in the run's weights.
    pub index: usize,
    /// Its VUs at the plan's peak (raised when it takes over a lost agent's share).
    pub vus: u64,
    pub phase: RunPhase,
    pub detail: String,
    pub last_interval: Option<u64>,
    /// Why it was lost, once it was.
    pub lost: Option<String>,
    /// Lost, then back on a new stream: it resends its reports and its last status.
    pub returned: bool,
    /// Drained by the operator: its share moved to the others, its VUs finish their iteration.
    pub drained: bool,
    pub reports_dropped: u64,
}

impl AgentState {
    /// Whether it still plays its share (it has not finished or failed).
    fn playing(&self) -> bool {
        !matches!(self.phase, RunPhase::Finished | RunPhase::Failed)
    }

    fn summary(&self, aggregate: &Aggregate) -> AgentSummary {
        AgentSummary {
            id: self.info.id.clone(),
            hostname: self.info.hostname.clone(),
            vus: self.vus,
            intervals_reported: aggregate.intervals_reported(&self.info.id),
            state: match (&self.lost, self.returned) {
                (Some(reason), true) => format!("lost: {reason} (came back and resent its reports)"),
                (Some(reason), false) => format!("lost: {reason}"),
                (None, _) => format!("{:?}", self.phase).to_lowercase(),
            },
            reports_dropped: self.reports_dropped,
        }
    }
}

/// An agent as the run starts with it: its share, and why it is lost already (its assignment
/// could not be sent).
pub struct Starter {
    pub info: AgentInfo,
    pub vus: u64,
    pub lost: Option<String>,
}

/// The run in progress.
pub struct RunState<'a> {
    run_id: String,
    scenario: &'a Scenario,
    weights: Vec<f64>,
    /// The common start, in this controller's clock.
    start: Instant,
    agents: BTreeMap<String, AgentState>,
    aggregate: Aggregate,
    /// The first interval not yet shown live.
    next_live: u64,
    /// What has been shown live: the intervals shown and the late reports that completed them.
    /// Live totals add up to the series the dashboard draws; reports of intervals not yet
    /// complete count once their interval is shown (at the end, every one has been).
    shown: RunFigures,
    /// Each interval as shown (and shown again when a late report completed it), for the
    /// summary and the charts: the aggregate drops an interval's measurements once it cannot
    /// change, and the series lives in a file, not in memory.
    series: IntervalLog,
    outcome: Outcome,
    stop_sent: bool,
    /// The threshold that stopped the run.
    aborted_by: Option<String>,
    takeovers: Vec<Takeover>,
    /// The operator's changes so far (and the seek's), as the agents are told them, and as the
    /// timeline shows.
    controls: Vec<Control>,
    /// The part that seeks its load, if one does.
    seeker: Option<Seeker>,
    changes: Vec<ChangeEvent>,
    lost_events: Vec<LostAgentEvent>,
    /// When no agent in the run was playing any more, while lost agents that came back were
    /// still resending what they measured.
    others_done_at: Option<Instant>,
    rendezvous: Vec<Point>,
    outbox: Vec<Outgoing>,
    events: Vec<RunEvent>,
}

impl<'a> RunState<'a> {
    /// A run of `scenario` on `agents` (in the order of `weights`), starting at `start`.
    /// Queues the `Started` event.
    pub fn new(
        run_id: &str,
        scenario: &'a Scenario,
        agents: Vec<Starter>,
        weights: Vec<f64>,
        start: Instant,
    ) -> RunState<'a> {
        let agents: BTreeMap<String, AgentState> = agents
            .into_iter()
            .enumerate()
            .map(|(index, starter)| {
                let state = AgentState {
                    index,
                    vus: starter.vus,
                    phase: RunPhase::Unspecified,
                    detail: String::new(),
                    last_interval: None,
                    lost: starter.lost,
                    returned: false,
                    drained: false,
                    reports_dropped: 0,
                    info: starter.info,
                };
                (state.info.id.clone(), state)
            })
            .collect();
        let mut run = RunState {
            run_id: run_id.to_owned(),
            scenario,
            weights,
            start,
            aggregate: Aggregate::default(),
            next_live: 0,
            shown: RunFigures::default(),
            series: IntervalLog::new(),
            outcome: Outcome::Completed,
            stop_sent: false,
            aborted_by: None,
            takeovers: Vec::new(),
            controls: Vec::new(),
            seeker: scenario
                .parts
                .iter()
                .enumerate()
                .find_map(|(index, part)| part.seek.as_ref().map(|seek| Seeker::new(index, &part.name, seek))),
            changes: Vec::new(),
            lost_events: Vec::new(),
            others_done_at: None,
            rendezvous: scenario.rendezvous_points().into_iter().map(Point::new).collect(),
            outbox: Vec::new(),
            events: Vec::new(),
            agents,
        };
        run.events.push(RunEvent::Started {
            run_id: run_id.to_owned(),
            agents: run.agents.len(),
            vus: scenario.max_vus(),
            shares: run.agents.iter().map(|(id, state)| (id.clone(), state.vus)).collect(),
            series: run.series.clone(),
        });
        tracing::info!(
            run = run_id,
            agents = run.agents.len(),
            vus = scenario.max_vus(),
            "run started"
        );
        run
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Whether the agents were told to stop.
    pub fn stop_sent(&self) -> bool {
        self.stop_sent
    }

    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// The agent `id`, as the run knows it.
    pub fn agent(&self, id: &str) -> Option<&AgentState> {
        self.agents.get(id)
    }

    /// Past this the run is abandoned whatever the agents say.
    pub fn hard_deadline(&self) -> Instant {
        self.start + self.scenario.max_duration() + self.scenario.graceful_stop() + Duration::from_secs(30)
    }

    /// The messages queued for agents since the last call, in order.
    pub fn take_outgoing(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.outbox)
    }

    /// The run events queued since the last call, in order.
    pub fn take_events(&mut self) -> Vec<RunEvent> {
        std::mem::take(&mut self.events)
    }

    /// Whether the run is over at `now`: no agent plays any more, and lost agents that came
    /// back have resent what they kept (or had [`RETURNED_AGENT_WAIT`] to).
    pub fn is_over(&mut self, now: Instant) -> bool {
        let active = self
            .agents
            .values()
            .filter(|state| state.lost.is_none() && state.playing())
            .count();
        if active > 0 {
            return false;
        }
        let returning = self
            .agents
            .values()
            .filter(|state| state.lost.is_some() && state.returned && state.playing())
            .count();
        let since = *self.others_done_at.get_or_insert(now);
        returning == 0 || now.saturating_duration_since(since) >= RETURNED_AGENT_WAIT
    }

    /// An agent's metric report: counted once per (agent, interval); an interval already shown
    /// is shown again, complete.
    pub fn on_report(&mut self, agent: &str, report: &MetricReport, now: Instant) {
        let Some(state) = self.agents.get_mut(agent) else {
            return;
        };
        let interval = report.interval;
        match self.aggregate.add(agent, report) {
            Ok(Some(late)) => {
                state.last_interval = Some(state.last_interval.map_or(interval, |last| last.max(interval)));
                // An interval already shown gets this late report (a lost agent resent it).
                if interval < self.next_live {
                    add_shown(
                        &mut self.shown,
                        interval,
                        &late,
                        self.aggregate.intervals.get(&interval),
                    );
                    if let Some(figures) = self.interval_figures(interval) {
                        self.events.push(RunEvent::LateReport(figures));
                    }
                    self.settle(interval);
                }
            }
            Ok(None) => tracing::debug!(agent, interval, "duplicate report ignored"),
            Err(error) => tracing::warn!(agent, %error, "report refused"),
        }
        self.advance(now);
    }

    /// An agent's run status; a failed agent fails the run and stops the others.
    pub fn on_status(&mut self, agent: &str, status: &RunStatus, now: Instant) {
        let Some(state) = self.agents.get_mut(agent) else {
            return;
        };
        let phase = wire::phase_of(status);
        state.phase = phase;
        state.detail = status.message.clone();
        state.reports_dropped = state.reports_dropped.max(status.reports_dropped);
        if phase == RunPhase::Failed && state.lost.is_none() {
            tracing::error!(agent, message = %status.message, "agent could not play the run");
            self.outcome = Outcome::Failed(Failure::Agent {
                agent: agent.to_owned(),
                message: status.message.clone(),
            });
            if !self.stop_sent {
                self.stop_sent = true;
                self.send_stop(Duration::ZERO, "another agent failed");
            }
        }
        self.advance(now);
    }

    /// An agent attached (again) with its process's instance name. The same process, back
    /// after it was lost, stopped its load and resends the reports it kept; a new process with
    /// the id knows nothing of this run.
    pub fn on_attached(&mut self, agent: &str, instance: &str, now: Instant) {
        let Some(state) = self.agents.get_mut(agent) else {
            return;
        };
        if state.lost.is_some() && state.info.instance == instance && !instance.is_empty() {
            tracing::info!(agent, "lost agent came back; counting the reports it resends");
            state.returned = true;
        }
        self.advance(now);
    }

    /// An agent's stream ended: the run answers by its policy (`load.on_agent_lost`).
    pub fn on_lost(&mut self, agent: &str, reason: &str, now: Instant) {
        let Some(state) = self.agents.get_mut(agent) else {
            return;
        };
        if state.lost.is_some() {
            // Lost already; if it had come back, it is gone again.
            state.returned = false;
            return;
        }
        state.lost = Some(reason.to_owned());
        let elapsed = now.saturating_duration_since(self.start);
        // A drained agent's share has moved already.
        let was_playing = state.playing() && !self.stop_sent && !state.drained;
        let (vus, lost_index) = (state.vus, state.index);
        let (action, detail) = if was_playing {
            self.answer_loss(agent, reason, lost_index, elapsed)
        } else {
            (LostAction::None, "the run did not need it any more".to_owned())
        };
        tracing::warn!(agent, %reason, %action, %detail, "agent lost during the run");
        self.events.push(RunEvent::AgentLost {
            agent: agent.to_owned(),
            reason: reason.to_owned(),
            action,
            detail: detail.clone(),
        });
        self.lost_events.push(LostAgentEvent {
            agent: agent.to_owned(),
            at_seconds: elapsed.as_secs_f64(),
            reason: reason.to_owned(),
            action,
            detail,
            vus,
        });
        self.advance(now);
    }

    /// What the policy does about losing the agent at `lost_index` while it played.
    fn answer_loss(&mut self, agent: &str, reason: &str, lost_index: usize, elapsed: Duration) -> (LostAction, String) {
        match self.scenario.plan().on_agent_lost {
            LostAgentPolicy::Continue => (LostAction::Continued, "the run went on without its share".to_owned()),
            LostAgentPolicy::Abort => {
                self.outcome = Outcome::AbortedByLostAgent {
                    agent: agent.to_owned(),
                    reason: reason.to_owned(),
                };
                self.stop_sent = true;
                self.send_stop(self.scenario.graceful_stop(), &format!("agent `{agent}` was lost"));
                (
                    LostAction::Aborted,
                    "the run was stopped (on_agent_lost: abort)".to_owned(),
                )
            }
            LostAgentPolicy::Redistribute => match self.redistribute(lost_index, elapsed) {
                Ok(movers) => (
                    LostAction::Redistributed,
                    format!("its share moved to {movers} agent(s)"),
                ),
                Err(why) => (
                    LostAction::Continued,
                    format!("its share could not move ({why}); the run went on without it"),
                ),
            },
        }
    }

    /// Moves the share of the agent at `lost_index` (already marked lost) to the agents still
    /// in the run: tells each of them every takeover so far and updates their shares. Returns
    /// how many agents took the share, or why it cannot move.
    fn redistribute(&mut self, lost_index: usize, elapsed: Duration) -> Result<usize, CannotMove> {
        let movers = self.redistribute_from(lost_index, elapsed)?;
        self.events.push(RunEvent::Reshared { shares: self.shares() });
        Ok(movers)
    }

    /// Moves the share of the agent at `lost_index` to the agents still playing (not lost, not
    /// drained), and tells every agent still in the run (the one whose share moves too, when it
    /// is still there) every takeover so far. Returns how many agents took the share.
    fn redistribute_from(&mut self, lost_index: usize, elapsed: Duration) -> Result<usize, CannotMove> {
        let steered = self.steered_plans();
        let plans: Vec<&wsfleet_scenario::LoadPlan> = steered.iter().collect();
        let moved = {
            let survivors: Vec<Survivor<'_>> = self
                .agents
                .values()
                .filter(|state| state.lost.is_none() && !state.drained && state.index != lost_index)
                .map(|state| Survivor {
                    index: state.index,
                    id: &state.info.id,
                    capacity: &state.info.capacity,
                    revision: state.info.revision,
                    finished: !state.playing(),
                })
                .collect();
            crate::lost::plan_move(&plans, &self.weights, &self.takeovers, lost_index, elapsed, &survivors)?
        };
        let message = wire::reshare(&self.run_id, &moved.takeovers);
        let mut movers = 0;
        for state in self.agents.values_mut().filter(|state| state.lost.is_none()) {
            state.vus = moved.peak_parts.get(state.index).copied().unwrap_or(state.vus);
            // A stream that is gone cannot take the share (its loss is on its way).
            if state.index != lost_index && !state.drained && !state.info.sender.is_closed() {
                movers += 1;
            }
            self.outbox.push(Outgoing {
                to: state.info.sender.clone(),
                message: message.clone(),
            });
        }
        self.takeovers = moved.takeovers;
        Ok(movers)
    }

    /// VUs of an agent reached a rendezvous step.
    pub fn on_rendezvous(&mut self, agent: &str, arrive: &RendezvousArrive, now: Instant) {
        if !self.agents.contains_key(agent) {
            return;
        }
        let released = self
            .rendezvous
            .get_mut(arrive.point as usize)
            .and_then(|point| point.arrive(arrive.generation, arrive.count, now));
        if let Some(release) = released {
            self.release(arrive.point as usize, release);
        }
        self.advance(now);
    }

    /// The periodic tick: a point whose last arrival is older than its timeout goes with
    /// whoever is there.
    pub fn on_tick(&mut self, now: Instant) {
        for index in 0..self.rendezvous.len() {
            if let Some(release) = self.rendezvous[index].timed_out(now) {
                self.release(index, release);
            }
        }
        self.advance(now);
    }

    /// The hard deadline passed: the run fails and the agents stop at once.
    pub fn on_deadline(&mut self) {
        self.outcome = Outcome::Failed(Failure::Deadline);
        self.send_stop(Duration::ZERO, "run deadline passed");
    }

    /// A stop request (Ctrl-C, the API): running iterations get the graceful stop.
    pub fn on_stop_request(&mut self, now: Instant) {
        if self.stop_sent {
            return;
        }
        self.stop_sent = true;
        self.outcome = Outcome::Stopped;
        self.send_stop(self.scenario.graceful_stop(), "stopped by the user");
        self.advance(now);
    }

    /// Releases the current generation of point `index` on every agent still in the run.
    fn release(&mut self, index: usize, release: Release) {
        let Some(point) = self.rendezvous.get_mut(index) else {
            return;
        };
        tracing::info!(
            run = %self.run_id,
            point = index,
            generation = point.generation,
            arrived = point.arrived,
            wanted = point.spec.count,
            why = release.why(),
            "rendezvous released"
        );
        let generation = point.release();
        let message = wire::rendezvous_release(&self.run_id, index as u32, generation);
        self.send_to_all(&message);
    }

    fn send_stop(&mut self, graceful: Duration, reason: &str) {
        let message = wire::stop(&self.run_id, graceful, reason);
        self.send_to_all(&message);
    }

    /// Queues `message` for every agent still in the run.
    fn send_to_all(&mut self, message: &ControllerMessage) {
        for state in self.agents.values().filter(|state| state.lost.is_none()) {
            self.outbox.push(Outgoing {
                to: state.info.sender.clone(),
                message: message.clone(),
            });
        }
    }

    /// Each agent still in the run and its share of the peak VUs.
    fn shares(&self) -> Vec<(String, u64)> {
        self.agents
            .iter()
            .filter(|(_, state)| state.lost.is_none())
            .map(|(id, state)| (id.clone(), state.vus))
            .collect()
    }

    /// Shows each interval once all agents still in the run have reported it, and checks the
    /// thresholds that abort once per interval shown.
    fn advance(&mut self, now: Instant) {
        let reporting: BTreeSet<&str> = self
            .agents
            .iter()
            .filter(|(_, state)| state.lost.is_none())
            .map(|(id, _)| id.as_str())
            .collect();
        let Some(complete) = self.aggregate.complete_through(&reporting) else {
            return;
        };
        while self.next_live <= complete {
            self.show_interval(self.next_live, Some(now));
            self.next_live += 1;
            self.check_aborting_thresholds(now);
        }
    }

    /// Shows `interval`; while the run goes (`now`), a seek's step may end with it.
    fn show_interval(&mut self, interval: u64, now: Option<Instant>) {
        if let Some(sets) = self.aggregate.intervals.get(&interval) {
            add_shown(&mut self.shown, interval, sets, Some(sets));
        }
        if let Some(figures) = self.interval_figures(interval) {
            self.events.push(RunEvent::Interval(figures));
        }
        self.seek_interval(interval, now);
        self.settle(interval);
    }

    /// How many intervals' measurements the run still holds.
    #[cfg(test)]
    pub(crate) fn intervals_held(&self) -> usize {
        self.aggregate.intervals.len()
    }

    /// Lets the aggregate drop a shown interval's measurements once every agent of the run
    /// reported it.
    fn settle(&mut self, interval: u64) {
        let everyone: BTreeSet<&str> = self.agents.keys().map(String::as_str).collect();
        self.aggregate.settle(interval, &everyone);
    }

    /// Interval `interval` of the fleet as it stands, with what has been shown so far; kept
    /// for the summary.
    fn interval_figures(&mut self, interval: u64) -> Option<IntervalFigures> {
        let sets = self.aggregate.intervals.get(&interval)?;
        let figures = Summary::interval_of(interval, sets);
        self.series.record(&figures);
        Some(IntervalFigures {
            interval,
            figures,
            sets: Arc::new(sets.clone()),
            so_far: self.shown.clone(),
        })
    }

    /// Thresholds that abort: evaluated on everything so far.
    fn check_aborting_thresholds(&mut self, now: Instant) {
        if self.aborted_by.is_some() || self.stop_sent {
            return;
        }
        let elapsed = now.saturating_duration_since(self.start);
        let failed = self
            .scenario
            .thresholds
            .iter()
            .filter(|threshold| threshold.abort_on_fail && elapsed >= threshold.delay)
            .map(|threshold| {
                let result = crate::thresholds::evaluate(
                    threshold,
                    &self.aggregate.totals,
                    elapsed.as_secs_f64(),
                    &self.aggregate.peak_gauges,
                );
                (threshold, result)
            })
            .find(|(_, result)| !result.passed && result.value.is_some());
        let Some((threshold, result)) = failed else { return };
        tracing::warn!(run = %self.run_id, threshold = %threshold.name, measured = %result.display, "threshold failed: stopping the run");
        self.outcome = Outcome::AbortedByThreshold {
            threshold: threshold.name.clone(),
            condition: threshold.condition.clone(),
            measured: result.display,
        };
        self.aborted_by = Some(threshold.name.clone());
        self.stop_sent = true;
        self.send_stop(self.scenario.graceful_stop(), "a threshold failed");
    }

    /// Ends the run at `now`: shows the intervals some agent never reported (lost agents), and
    /// builds the summary.
    pub fn finish(&mut self, now: Instant) -> Summary {
        if let Some(last) = self.aggregate.last_interval {
            while self.next_live <= last {
                self.show_interval(self.next_live, None);
                self.next_live += 1;
            }
        }
        if self.outcome == Outcome::Completed && self.agents.values().any(|state| state.lost.is_some()) {
            self.outcome = Outcome::CompletedWithLostAgents;
        }
        let duration_seconds = now.saturating_duration_since(self.start).as_secs_f64();
        let aggregate = &self.aggregate;
        let peak_active = aggregate
            .peak_gauges
            .get(wsfleet_metrics::catalog::ACTIVE_CONNECTIONS)
            .copied()
            .unwrap_or(0);
        let seek = self.seeker.as_ref().map(super::seek::Seeker::summary);
        // A seek's thresholds judge its steps: the run's are those of the load it found (or of
        // its first step, when none passed); over the whole run they would mix every step.
        let seek_thresholds = seek
            .as_ref()
            .and_then(|seek| seek.deciding_step())
            .map(|step| step.thresholds.clone());
        let thresholds = seek_thresholds.unwrap_or_else(|| {
            self.scenario
                .thresholds
                .iter()
                .map(|threshold| {
                    let mut result = crate::thresholds::evaluate(
                        threshold,
                        &aggregate.totals,
                        duration_seconds,
                        &aggregate.peak_gauges,
                    );
                    if self.aborted_by.as_deref() == Some(threshold.name.as_str()) {
                        result.aborted_run = true;
                        result.passed = false;
                    }
                    result
                })
                .collect()
        });
        Summary {
            schema_version: SUMMARY_SCHEMA_VERSION,
            run_id: self.run_id.clone(),
            scenario: self.scenario.name.clone(),
            duration_seconds,
            agents: self.agents.values().map(|state| state.summary(aggregate)).collect(),
            outcome: self.outcome.clone(),
            totals: Totals::from_sets(&aggregate.totals, peak_active, duration_seconds),
            steps: Summary::steps_of(&aggregate.totals, &self.scenario.step_names),
            intervals: self.series.all(),
            thresholds,
            changes: self.changes.clone(),
            seek,
            lost_agents: LostAgents {
                policy: self.scenario.plan().on_agent_lost.name().to_owned(),
                events: self.lost_events.clone(),
            },
            reports: ReportDelivery {
                accepted: aggregate.accepted(),
                duplicates_ignored: aggregate.duplicates,
                dropped_by_agents: self.agents.values().map(|state| state.reports_dropped).sum(),
            },
        }
    }
}

/// Adds `sets` (an interval just shown, or a late report of one shown before) to what has been
/// shown; gauges peak with the interval's `fleet` value, never add across intervals. The totals
/// are copied only if a reader still holds the previous ones.
fn add_shown(shown: &mut RunFigures, interval: u64, sets: &MetricSets, fleet: Option<&MetricSets>) {
    let totals = Arc::make_mut(&mut shown.totals);
    for (name, set) in &sets.sets {
        if let Err(error) = totals.sets.entry(name.clone()).or_default().merge(set) {
            tracing::warn!(%error, interval, "live figures: cannot merge what was shown");
        }
    }
    if let Some(fleet) = fleet {
        wsfleet_metrics::catalog::raise_peaks(&fleet.gauges, &mut shown.peak_gauges);
    }
}
