//! What a run tells the rest of the controller as it goes: its events, built once by the run's
//! state and read by the live view, the history, the live feed and the terminal alike.

use std::collections::BTreeMap;
use std::sync::Arc;

use wsfleet_metrics::MetricSets;

use crate::interval_log::IntervalLog;
use crate::outcome::LostAction;
use crate::summary::IntervalSummary;

/// What the run has shown live so far: the intervals shown, and the late reports that completed
/// them, merged once by the run.
#[derive(Clone, Debug, Default)]
pub struct RunFigures {
    /// Every report of an interval shown, merged (gauges excluded: see `peak_gauges`). Shared
    /// with the events that carry it: the run copies it only when it adds to it while a reader
    /// still holds the previous figures (histograms make it hundreds of KB at scale).
    pub totals: Arc<MetricSets>,
    /// The highest fleet value each gauge reached in an interval shown.
    pub peak_gauges: BTreeMap<String, i64>,
}

/// One interval of the fleet, and the run so far.
#[derive(Debug)]
pub struct IntervalFigures {
    pub interval: u64,
    /// The interval's fleet measurements, shared by every reader of the event.
    pub sets: Arc<MetricSets>,
    /// The interval as the summary, the history and the live feed show it.
    pub figures: IntervalSummary,
    pub so_far: RunFigures,
}

/// Live events of a run, for terminals, dashboards and the history. Each is built once, by
/// the run, and read by all of them.
#[derive(Debug)]
pub enum RunEvent {
    Started {
        run_id: String,
        agents: usize,
        vus: u64,
        /// Each agent's share of the peak VUs.
        shares: Vec<(String, u64)>,
        /// The run's per-second series as it grows (shared, held in a file).
        series: IntervalLog,
    },
    /// The fleet's figures for one interval, once every agent has reported it.
    Interval(IntervalFigures),
    /// A report for an interval already emitted (a lost agent came back and resent it): the
    /// interval's figures now.
    LateReport(IntervalFigures),
    /// An agent was lost; `action` says what the run's policy did, `detail` in words.
    AgentLost {
        agent: String,
        reason: String,
        action: LostAction,
        detail: String,
    },
    /// A lost agent's share moved, or the operator raised the VUs past the peak: each agent's
    /// new share of the peak VUs.
    Reshared { shares: Vec<(String, u64)> },
    /// The operator changed the run (VUs, rate, hold, pause, stop of a part).
    Changed(crate::run::control::ChangeEvent),
}
