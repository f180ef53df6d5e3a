//! What the controller knows about the run in progress (or the last one), for its HTTP
//! endpoints: cumulative figures, the last interval, peaks. Copied from the run's events (the
//! run merges the figures once); read by handlers. The mutex is held only to copy or update, never across an `.await`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use wsfleet_metrics::MetricSets;

use crate::interval_log::IntervalLog;
use crate::run::RunEvent;

/// A run as seen live.
#[derive(Clone, Debug, Default)]
pub struct LiveRun {
    pub run_id: String,
    pub scenario: String,
    pub running: bool,
    /// Every report of an interval shown so far, merged (gauges excluded: see `peak_gauges`).
    pub totals: Arc<MetricSets>,
    /// The last interval emitted, with its index.
    pub last_interval: Option<(u64, Arc<MetricSets>)>,
    pub peak_gauges: BTreeMap<String, i64>,
    pub agents_lost: u64,
    /// Every interval's fleet figures, for charts: shared with the run, held in a file.
    pub series: IntervalLog,
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
    /// The operator's changes so far, for the timeline.
    pub changes: Vec<crate::run::ChangeEvent>,
    /// The scenario's parts and their models (`closed` or `open`), for the dashboard's controls.
    pub parts: Vec<(String, &'static str)>,
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
            parts: scenario
                .parts
                .iter()
                .map(|part| {
                    let model = match part.plan.model {
                        wsfleet_scenario::LoadModel::Closed { .. } => "closed",
                        wsfleet_scenario::LoadModel::Open { .. } => "open",
                    };
                    (part.name.clone(), model)
                })
                .collect(),
            ..LiveRun::default()
        });
    }

    /// Takes one run event: the figures come merged by the run, so this only copies them.
    pub fn apply(&self, event: &RunEvent) {
        let mut guard = self.lock();
        let Some(run) = guard.as_mut() else { return };
        match event {
            RunEvent::Started {
                run_id, shares, series, ..
            } => {
                run.run_id = run_id.clone();
                run.series = series.clone();
                run.shares = shares.iter().cloned().collect();
            }
            RunEvent::Interval(interval) | RunEvent::LateReport(interval) => {
                run.totals = interval.so_far.totals.clone();
                run.peak_gauges = interval.so_far.peak_gauges.clone();
                // The series itself is the run's (`series`): a late report already replaced its
                // interval there.
                if matches!(event, RunEvent::Interval(_)) {
                    run.last_interval = Some((interval.interval, interval.sets.clone()));
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
            RunEvent::Changed(change) => run.changes.push(change.clone()),
        }
    }

    /// Marks the run over.
    pub fn finish(&self) {
        if let Some(run) = self.lock().as_mut() {
            run.running = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::LostAction;
    use crate::run::{IntervalFigures, RunFigures};
    use crate::summary::Summary;

    fn interval(interval: u64, received: u64, so_far: u64) -> IntervalFigures {
        let mut sets = MetricSets::default();
        sets.sets
            .entry("echo".into())
            .or_default()
            .counters
            .insert("messages_received".into(), received);
        sets.gauges.insert("active_connections".into(), 3);
        let mut totals = MetricSets::default();
        totals
            .sets
            .entry("echo".into())
            .or_default()
            .counters
            .insert("messages_received".into(), so_far);
        IntervalFigures {
            interval,
            figures: Summary::interval_of(interval, &sets),
            sets: Arc::new(sets),
            so_far: RunFigures {
                totals: Arc::new(totals),
                peak_gauges: BTreeMap::from([("active_connections".to_owned(), 3)]),
            },
        }
    }

    #[test]
    fn the_live_view_copies_the_run_figures_it_is_given() {
        let live = Live::new();
        let scenario = wsfleet_scenario::Bundle {
            path: "live.yaml".into(),
            source: "load: { vus: 2, duration: 5s }\nsteps:\n  - connect: { url: 'ws://127.0.0.1:9/' }\n".into(),
            files: Default::default(),
        }
        .compile()
        .expect("compiles");
        // Events before a run begins have nowhere to go.
        live.apply(&RunEvent::Interval(interval(0, 1, 1)));
        assert!(live.snapshot().is_none());
        live.begin("run1", &scenario);
        // The run logs each interval's figures in its series before it sends the event.
        let series = IntervalLog::new();
        live.apply(&RunEvent::Started {
            run_id: "run1".into(),
            agents: 2,
            vus: 2,
            shares: vec![("a".into(), 1), ("b".into(), 1)],
            series: series.clone(),
        });
        let logged = |figures: IntervalFigures| {
            series.record(&figures.figures);
            figures
        };
        live.apply(&RunEvent::Interval(logged(interval(0, 4, 4))));
        live.apply(&RunEvent::Interval(logged(interval(1, 6, 10))));
        // A lost agent's resent report completes interval 0: its row changes, the totals are
        // the run's own (not merged again here).
        live.apply(&RunEvent::LateReport(logged(interval(0, 9, 15))));
        live.apply(&RunEvent::AgentLost {
            agent: "b".into(),
            reason: "gone".into(),
            action: LostAction::Continued,
            detail: "the run went on without its share".into(),
        });
        live.finish();
        let run = live.snapshot().expect("a run");
        assert!(!run.running);
        assert_eq!(run.stage_ends, vec![5.0]);
        assert_eq!(run.totals.total().counter("messages_received"), 15);
        assert_eq!(run.peak_gauges["active_connections"], 3);
        let rows: Vec<(u64, u64)> = run
            .series
            .all()
            .iter()
            .map(|row| (row.interval, row.counters["messages_received"]))
            .collect();
        assert_eq!(rows, vec![(0, 9), (1, 6)]);
        assert_eq!(run.last_interval.map(|(index, _)| index), Some(1));
        assert_eq!(run.agents_lost, 1);
        assert_eq!(run.lost["b"].action, "the run went on without its share");
        assert_eq!(run.shares.len(), 2);
    }
}
