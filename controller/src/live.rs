//! What the controller knows about the run in progress (or the last one), for its HTTP
//! endpoints: cumulative figures, the last interval, peaks. Updated from the run's events; read
//! by handlers. The mutex is held only to copy or update, never across an `.await`.

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
    /// Every interval emitted so far, merged.
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
    /// What the run's policy did (`load.on_agent_lost`).
    pub action: String,
}

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

    pub fn apply(&self, event: &RunEvent) {
        let mut guard = self.lock();
        let Some(run) = guard.as_mut() else { return };
        match event {
            RunEvent::Started { run_id, shares, .. } => {
                run.run_id = run_id.clone();
                run.shares = shares.iter().cloned().collect();
            }
            RunEvent::Interval { interval, sets } => {
                let counted = MetricSets {
                    sets: sets.sets.clone(),
                    gauges: BTreeMap::new(),
                };
                if let Err(error) = run.totals.merge(&counted) {
                    tracing::warn!(%error, "live figures: cannot merge an interval");
                }
                for (name, value) in &sets.gauges {
                    let peak = run.peak_gauges.entry(name.clone()).or_insert(*value);
                    *peak = (*peak).max(*value);
                }
                run.intervals
                    .push(crate::summary::Summary::interval_of(*interval, sets));
                run.last_interval = Some((*interval, sets.clone()));
            }
            RunEvent::LateReport { interval, sets, late } => {
                // A lost agent's report completes an interval already shown: the totals take
                // the report, the series the interval's new figures.
                let counted = MetricSets {
                    sets: late.sets.clone(),
                    gauges: BTreeMap::new(),
                };
                if let Err(error) = run.totals.merge(&counted) {
                    tracing::warn!(%error, "live figures: cannot merge a late report");
                }
                for (name, value) in &sets.gauges {
                    let peak = run.peak_gauges.entry(name.clone()).or_insert(*value);
                    *peak = (*peak).max(*value);
                }
                let figures = crate::summary::Summary::interval_of(*interval, sets);
                if let Some(shown) = run.intervals.iter_mut().find(|shown| shown.interval == *interval) {
                    *shown = figures;
                }
            }
            RunEvent::AgentLost { agent, reason, action } => {
                run.agents_lost += 1;
                run.lost.insert(
                    agent.clone(),
                    LostAgent {
                        reason: reason.clone(),
                        action: action.clone(),
                    },
                );
            }
            RunEvent::Reshared { shares } => {
                run.shares.extend(shares.iter().cloned());
            }
        }
    }

    pub fn finish(&self) {
        if let Some(run) = self.lock().as_mut() {
            run.running = false;
        }
    }
}
