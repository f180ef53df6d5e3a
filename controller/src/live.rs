//! What the controller knows about the run in progress (or the last one), for its HTTP
//! endpoints: cumulative figures, the last interval, peaks. Copied from the run's events (the
//! run merges the figures once); read by handlers. The mutex is held only to copy or update, never across an `.await`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use wsfleet_metrics::MetricSets;

use crate::run::RunEvent;

/// A run as seen live.
#[derive(Clone, Debug, Default)]
pub struct LiveRun {
    pub run_id: String,
    pub scenario: String,
    pub running: bool,
    /// Every report accepted so far, merged (gauges excluded: see `peak_gauges`).
    pub totals: MetricSets,
    /// The last interval emitted, with its index.
    pub last_interval: Option<(u64, MetricSets)>,
    pub peak_gauges: BTreeMap<String, i64>,
    pub agents_lost: u64,
    /// Every interval's fleet figures, for charts.
    pub intervals: Vec<crate::summary::IntervalSummary>,
    /// The scenario's thresholds, evaluated live by the dashboard.
    pub thresholds: Vec<wsfleet_scenario::thresholds::Threshold>,
    /// Wall time of the run's start, Unix milliseconds.
    pub started_unix_ms: i64,
    /// Seconds after the start at which load stages end, for chart marks.
    pub stage_ends: Vec<f64>,
    /// Each agent's share of the peak VUs.
    pub shares: BTreeMap<String, u64>,
    /// Agents lost during the run, with why and what the run did.
    pub lost: BTreeMap<String, LostAgent>,
}

/// An agent lost during the run, as the fleet view shows it.
#[derive(Clone, Debug, Default)]
pub struct LostAgent {
    pub reason: String,
    /// What the run's policy did (`load.on_agent_lost`), in words.
    pub action: String,
}

/// The live state, shared by the run's publisher and the HTTP handlers.
#[derive(Default)]
pub struct Live {
    run: Mutex<Option<LiveRun>>,
}

impl Live {
    pub fn new() -> Arc<Live> {
        Arc::new(Live::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<LiveRun>> {
        self.run.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A copy of the current (or last) run.
    pub fn snapshot(&self) -> Option<LiveRun> {
        self.lock().clone()
    }

    /// Starts tracking a run of `scenario`.
    pub fn begin(&self, run_id: &str, scenario: &wsfleet_scenario::Scenario) {
        let thresholds = scenario.thresholds.clone();
        // Stage marks follow the first part (a plain file's only one).
        let durations: Vec<f64> = match &scenario.plan().model {
            wsfleet_scenario::LoadModel::Closed { stages, .. } => {
                stages.iter().map(|stage| stage.duration.as_secs_f64()).collect()
            }
            wsfleet_scenario::LoadModel::Open { stages, .. } => {
                stages.iter().map(|stage| stage.duration.as_secs_f64()).collect()
            }
        };
        let mut end = 0.0;
        let stage_ends = durations
            .iter()
            .map(|duration| {
                end += duration;
                end
            })
            .collect();
        let started_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as i64)
            .unwrap_or(0);
        *self.lock() = Some(LiveRun {
            run_id: run_id.to_owned(),
            running: true,
            scenario: scenario.name.clone(),
            thresholds,
            stage_ends,
            started_unix_ms,
            ..LiveRun::default()
        });
    }

    /// Takes one run event: the figures come merged by the run, so this only copies them.
    pub fn apply(&self, event: &RunEvent) {
        let mut guard = self.lock();
        let Some(run) = guard.as_mut() else { return };
        match event {
            RunEvent::Started { run_id, shares, .. } => {
                run.run_id = run_id.clone();
                run.shares = shares.iter().cloned().collect();
            }
            RunEvent::Interval(interval) | RunEvent::LateReport(interval) => {
                run.totals = interval.so_far.totals.clone();
                run.peak_gauges = interval.so_far.peak_gauges.clone();
                if matches!(event, RunEvent::Interval(_)) {
                    run.intervals.push(interval.figures.clone());
                    run.last_interval = Some((interval.interval, interval.sets.clone()));
                } else if let Some(shown) = run
                    .intervals
                    .iter_mut()
                    .find(|shown| shown.interval == interval.interval)
                {
                    // A lost agent's report completes an interval already shown.
                    *shown = interval.figures.clone();
                }
            }
            RunEvent::AgentLost {
                agent, reason, detail, ..
            } => {
                run.agents_lost += 1;
                run.lost.insert(
                    agent.clone(),
                    LostAgent {
                        reason: reason.clone(),
                        action: detail.clone(),
                    },
                );
            }
            RunEvent::Reshared { shares } => {
                run.shares.extend(shares.iter().cloned());
            }
        }
    }

    /// Marks the run over.
    pub fn finish(&self) {
        if let Some(run) = self.lock().as_mut() {
            run.running = false;
        }
    }
}
