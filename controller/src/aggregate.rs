//! Exact aggregation of agents' reports: each (agent, interval) is accepted once; counters add,
//! gauges add across agents within an interval, histograms merge.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use wsfleet_metrics::{MetricSets, MetricsError};
use wsfleet_proto::v1::MetricReport;

#[derive(Default)]
pub struct Aggregate {
    /// The fleet's measurements per run-time interval, until every agent of the run has
    /// reported it (see [`Aggregate::settle`]).
    pub intervals: BTreeMap<u64, MetricSets>,
    /// The latest interval any agent reported.
    pub last_interval: Option<u64>,
    /// Which agents reported which intervals.
    pub reported: BTreeMap<u64, HashSet<String>>,
    /// Everything, merged (gauges excluded: see `peak_gauges`).
    pub totals: MetricSets,
    /// The highest fleet value each gauge reached in an interval: its high-water marks within
    /// intervals, summed over agents (see `catalog::raise_peaks`).
    pub peak_gauges: BTreeMap<String, i64>,
    /// Reports refused as duplicates (agent resent an interval).
    pub duplicates: u64,
}

impl Aggregate {
    /// Adds a report, decoded once here; returns its figures, or `None` for a duplicate
    /// (agent, interval), which is not decoded.
    pub fn add(&mut self, agent: &str, report: &MetricReport) -> Result<Option<MetricSets>, MetricsError> {
        let agents = self.reported.entry(report.interval).or_default();
        if agents.contains(agent) {
            self.duplicates += 1;
            return Ok(None);
        }
        let mut sets = crate::wire::report_figures(report)?;
        agents.insert(agent.to_owned());
        self.last_interval = Some(
            self.last_interval
                .map_or(report.interval, |last| last.max(report.interval)),
        );
        let interval = self.intervals.entry(report.interval).or_default();
        interval.merge(&sets)?;
        wsfleet_metrics::catalog::raise_peaks(&interval.gauges, &mut self.peak_gauges);
        // Gauges add across agents within an interval, never across intervals.
        let gauges = std::mem::take(&mut sets.gauges);
        self.totals.merge(&sets)?;
        sets.gauges = gauges;
        Ok(Some(sets))
    }

    /// Drops interval `interval`'s measurements once every one of `agents` (all the run's, lost or
    /// not) has reported it: no report can change it any more (another is a duplicate), and a
    /// long run's controller then holds a few intervals' histograms, not every one's.
    pub fn settle(&mut self, interval: u64, agents: &BTreeSet<&str>) {
        let complete = self
            .reported
            .get(&interval)
            .is_some_and(|reporters| agents.iter().all(|agent| reporters.contains(*agent)));
        if complete {
            self.intervals.remove(&interval);
        }
    }

    /// The last of the first intervals that every one of `agents` has reported.
    pub fn complete_through(&self, agents: &BTreeSet<&str>) -> Option<u64> {
        let mut complete = None;
        for (interval, reporters) in &self.reported {
            if !agents.iter().all(|agent| reporters.contains(*agent)) {
                break;
            }
            complete = Some(*interval);
        }
        complete
    }

    /// Reports counted, one per (agent, interval).
    pub fn accepted(&self) -> u64 {
        self.reported.values().map(|agents| agents.len() as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(interval: u64, messages: u64) -> MetricReport {
        let mut sets = MetricSets::default();
        sets.sets
            .entry(String::new())
            .or_default()
            .counters
            .insert("messages_sent".into(), messages);
        sets.to_report("run", interval).expect("encodes")
    }

    #[test]
    fn an_interval_every_agent_reported_is_dropped_and_later_copies_stay_duplicates() {
        let mut aggregate = Aggregate::default();
        let everyone = BTreeSet::from(["a", "b"]);
        aggregate.add("a", &report(0, 5)).expect("adds");
        aggregate.settle(0, &everyone);
        // "b" has not reported interval 0: it may still, so it is kept.
        assert!(aggregate.intervals.contains_key(&0));
        aggregate.add("b", &report(0, 7)).expect("adds");
        aggregate.settle(0, &everyone);
        assert!(aggregate.intervals.is_empty());
        assert_eq!(aggregate.last_interval, Some(0));
        // A copy sent again changes nothing: no interval comes back, the totals stay.
        assert!(aggregate.add("a", &report(0, 5)).expect("adds").is_none());
        assert!(aggregate.intervals.is_empty());
        assert_eq!(aggregate.totals.total().counter("messages_sent"), 12);
        assert_eq!((aggregate.accepted(), aggregate.duplicates), (2, 1));
    }

    #[test]
    fn each_agent_and_interval_counts_once() {
        let mut aggregate = Aggregate::default();
        let accepted = |added: Result<Option<MetricSets>, MetricsError>| added.map(|sets| sets.is_some()).ok();
        assert_eq!(accepted(aggregate.add("a", &report(0, 5))), Some(true));
        assert_eq!(accepted(aggregate.add("b", &report(0, 7))), Some(true));
        // "a" resends interval 0 after reattaching: ignored, counted as a duplicate.
        assert_eq!(accepted(aggregate.add("a", &report(0, 5))), Some(false));
        assert_eq!(accepted(aggregate.add("a", &report(1, 1))), Some(true));
        assert_eq!(aggregate.totals.total().counter("messages_sent"), 13);
        assert_eq!(aggregate.duplicates, 1);
        assert_eq!(aggregate.accepted(), 3);
        let both = BTreeSet::from(["a", "b"]);
        assert_eq!(aggregate.complete_through(&both), Some(0));
        assert_eq!(aggregate.complete_through(&BTreeSet::from(["a"])), Some(1));
        // A lost agent's resent report does not complete an interval the others still owe.
        assert_eq!(accepted(aggregate.add("c", &report(2, 1))), Some(true));
        assert_eq!(aggregate.complete_through(&BTreeSet::from(["a"])), Some(1));
    }
}
