//! Exact aggregation of agents' reports: each (agent, interval) is accepted once; counters add,
//! gauges add across agents within an interval, histograms merge.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use wsfleet_metrics::{MetricSets, MetricsError};
use wsfleet_proto::v1::MetricReport;

#[derive(Default)]
pub struct Aggregate {
    /// The fleet's measurements per run-time interval, until every agent of the run has
    /// reported it (see [`Aggregate::settle`]).
    pub intervals: BTreeMap<u64, MetricSets>,
    /// The latest interval any agent reported.
    pub last_interval: Option<u64>,
    /// Which intervals each agent reported: a few words an agent however long the run.
    reported: HashMap<String, Intervals>,
    /// Which intervals any agent reported.
    anyone: Intervals,
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
        if self
            .reported
            .get(agent)
            .is_some_and(|reported| reported.contains(report.interval))
        {
            self.duplicates += 1;
            return Ok(None);
        }
        let mut sets = crate::wire::report_figures(report)?;
        self.reported
            .entry(agent.to_owned())
            .or_default()
            .insert(report.interval);
        self.anyone.insert(report.interval);
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
        if agents.iter().all(|agent| self.reported_by(agent, interval)) {
            self.intervals.remove(&interval);
        }
    }

    /// The last of the first intervals that every one of `agents` has reported, each from the
    /// first interval it owes on (0, or the interval an agent that joined the run joined in).
    /// Intervals no agent reported are passed over.
    pub fn complete_through(&self, agents: &BTreeMap<&str, u64>) -> Option<u64> {
        // Every agent reported every interval up to the lowest of their unbroken runs from 0:
        // only what lies above needs a look, and the look stops at the first interval owed.
        let prefix = agents
            .iter()
            .map(|(agent, first)| {
                let through = self.reported.get(*agent).and_then(|reported| reported.through);
                match first.checked_sub(1) {
                    Some(before) => Some(through.map_or(before, |through| through.max(before))),
                    None => through,
                }
            })
            .min()
            .flatten();
        let mut complete = prefix;
        let from = prefix.map_or(0, |through| through + 1);
        for interval in self.anyone.from(from) {
            if !agents
                .iter()
                .all(|(agent, first)| interval < *first || self.reported_by(agent, interval))
            {
                break;
            }
            complete = Some(interval);
        }
        complete
    }

    fn reported_by(&self, agent: &str, interval: u64) -> bool {
        self.reported
            .get(agent)
            .is_some_and(|reported| reported.contains(interval))
    }

    /// Reports counted, one per (agent, interval).
    pub fn accepted(&self) -> u64 {
        self.reported.values().map(Intervals::count).sum()
    }

    /// How many intervals `agent` reported.
    pub fn intervals_reported(&self, agent: &str) -> u64 {
        self.reported.get(agent).map_or(0, Intervals::count)
    }
}

/// A set of intervals held as the unbroken run from 0 and the few reported out of order
/// above it: agents report in order, so it stays a few words however long the run.
#[derive(Clone, Debug, Default)]
struct Intervals {
    /// Every interval from 0 through this one is in.
    through: Option<u64>,
    /// Intervals in above `through + 1`.
    above: BTreeSet<u64>,
}

impl Intervals {
    fn contains(&self, interval: u64) -> bool {
        self.through.is_some_and(|through| interval <= through) || self.above.contains(&interval)
    }

    fn insert(&mut self, interval: u64) {
        let next = self.through.map_or(0, |through| through + 1);
        if interval < next {
            return;
        }
        if interval > next {
            self.above.insert(interval);
            return;
        }
        let mut through = interval;
        while self.above.remove(&(through + 1)) {
            through += 1;
        }
        self.through = Some(through);
    }

    fn count(&self) -> u64 {
        self.through.map_or(0, |through| through + 1) + self.above.len() as u64
    }

    /// The intervals in, from `from` on, in order.
    fn from(&self, from: u64) -> impl Iterator<Item = u64> + '_ {
        let unbroken = match self.through {
            Some(through) if from <= through => from..through + 1,
            _ => 0..0,
        };
        unbroken.chain(self.above.range(from..).copied())
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
        let both = BTreeMap::from([("a", 0), ("b", 0)]);
        assert_eq!(aggregate.complete_through(&both), Some(0));
        assert_eq!(aggregate.complete_through(&BTreeMap::from([("a", 0)])), Some(1));
        // A lost agent's resent report does not complete an interval the others still owe.
        assert_eq!(accepted(aggregate.add("c", &report(2, 1))), Some(true));
        assert_eq!(aggregate.complete_through(&BTreeMap::from([("a", 0)])), Some(1));
        assert_eq!(aggregate.intervals_reported("a"), 2);
        assert_eq!(aggregate.intervals_reported("c"), 1);
    }

    #[test]
    fn reports_out_of_order_and_gaps_count_once_and_complete_in_order() {
        let mut aggregate = Aggregate::default();
        for interval in [0, 2, 3, 5] {
            aggregate.add("a", &report(interval, 1)).expect("adds");
        }
        for interval in [0, 1, 2, 3, 5] {
            aggregate.add("b", &report(interval, 1)).expect("adds");
        }
        let both = BTreeMap::from([("a", 0), ("b", 0)]);
        // "a" owes interval 1.
        assert_eq!(aggregate.complete_through(&both), Some(0));
        aggregate.add("a", &report(1, 1)).expect("adds");
        // Nobody reported interval 4: it is passed over.
        assert_eq!(aggregate.complete_through(&both), Some(5));
        assert!(aggregate.add("a", &report(3, 1)).expect("adds").is_none());
        assert!(aggregate.add("a", &report(5, 1)).expect("adds").is_none());
        assert_eq!((aggregate.accepted(), aggregate.duplicates), (10, 2));
        assert_eq!(aggregate.intervals_reported("a"), 5);
        aggregate.add("a", &report(4, 1)).expect("adds");
        assert_eq!(aggregate.intervals_reported("a"), 6);
        assert_eq!(aggregate.totals.total().counter("messages_sent"), 11);
        // Held as unbroken runs: nothing left over above them.
        assert!(aggregate.reported["a"].above.is_empty());
        assert_eq!(aggregate.reported["b"].above, BTreeSet::from([5]));
        assert_eq!(aggregate.complete_through(&BTreeMap::from([("c", 0)])), None);
    }

    #[test]
    fn an_agent_that_joined_owes_the_intervals_from_its_first_on() {
        let mut aggregate = Aggregate::default();
        for interval in 0..4 {
            aggregate.add("a", &report(interval, 1)).expect("adds");
        }
        // "j" joined in interval 2: intervals 0 and 1 are complete without it.
        let fleet = BTreeMap::from([("a", 0), ("j", 2)]);
        assert_eq!(aggregate.complete_through(&fleet), Some(1));
        aggregate.add("j", &report(2, 1)).expect("adds");
        assert_eq!(aggregate.complete_through(&fleet), Some(2));
        aggregate.add("j", &report(3, 1)).expect("adds");
        assert_eq!(aggregate.complete_through(&fleet), Some(3));
        // Its empty reports of the intervals before still count once each.
        aggregate.add("j", &report(0, 0)).expect("adds");
        assert_eq!(aggregate.intervals_reported("j"), 3);
    }
}
