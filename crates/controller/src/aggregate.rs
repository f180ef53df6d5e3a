//! Exact aggregation of agents' reports: each (agent, interval) is accepted once; counters add,
//! gauges add across agents within an interval, histograms merge.

use std::collections::{BTreeMap, HashSet};

use wsfleet_metrics::{MetricSets, MetricsError};
use wsfleet_proto::v1::MetricReport;

#[derive(Default)]
pub struct Aggregate {
    /// The fleet's measurements per run-time interval.
    pub intervals: BTreeMap<u64, MetricSets>,
    /// Which agents reported which intervals.
    pub reported: BTreeMap<u64, HashSet<String>>,
    /// Everything, merged (gauges excluded: see `peak_gauges`).
    pub totals: MetricSets,
    /// The highest fleet value each gauge reached in an interval.
    pub peak_gauges: BTreeMap<String, i64>,
    /// Reports refused as duplicates (agent resent an interval).
    pub duplicates: u64,
}

impl Aggregate {
    /// Adds a report; returns false for a duplicate (agent, interval).
    pub fn add(&mut self, agent: &str, report: &MetricReport) -> Result<bool, MetricsError> {
        let agents = self.reported.entry(report.interval).or_default();
        if agents.contains(agent) {
            self.duplicates += 1;
            return Ok(false);
        }
        let sets = MetricSets::from_report(report)?;
        agents.insert(agent.to_owned());
        let interval = self.intervals.entry(report.interval).or_default();
        interval.merge(&sets)?;
        for (name, value) in &interval.gauges {
            let peak = self.peak_gauges.entry(name.clone()).or_insert(*value);
            *peak = (*peak).max(*value);
        }
        let counted = MetricSets {
            sets: sets.sets,
            gauges: BTreeMap::new(),
        };
        self.totals.merge(&counted)?;
        Ok(true)
    }

    /// Intervals every one of `agents` has reported.
    pub fn complete_through(&self, agents: usize) -> Option<u64> {
        let mut complete = None;
        for (interval, reporters) in &self.reported {
            if reporters.len() < agents {
                break;
            }
            complete = Some(*interval);
        }
        complete
    }
}
