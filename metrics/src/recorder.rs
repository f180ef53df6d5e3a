//! The hot-path recorder: one per worker thread, owned by that thread, no locks or atomics.
//! Events are keyed by the run-time second they happen in; at each boundary the worker takes
//! the finished intervals and converts them once to [`MetricSets`].

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::catalog::{Counter, Gauge, Hist};
use crate::sets::{new_histogram, MetricSets, SetData, CONNECTION_SET};

/// Which metric set an event belongs to: the connection set or a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SetId {
    Connection,
    Step(u16),
}

impl SetId {
    fn slot(self) -> usize {
        match self {
            SetId::Connection => 0,
            SetId::Step(step) => step as usize + 1,
        }
    }
}

/// Counts of one set during one interval.
#[derive(Clone)]
struct SlotData {
    counters: [u64; Counter::COUNT],
    histograms: [Option<Box<Histogram<u64>>>; Hist::COUNT],
}

impl Default for SlotData {
    fn default() -> Self {
        SlotData {
            counters: [0; Counter::COUNT],
            histograms: Default::default(),
        }
    }
}

struct Interval {
    index: u64,
    slots: Vec<SlotData>,
    labeled: BTreeMap<(usize, Cow<'static, str>), u64>,
    /// Gauges at the interval's end (set when it closes).
    gauges: BTreeMap<&'static str, i64>,
    /// The highest value each gauge reached within the interval, starting from where it stood
    /// when the interval began.
    high_water: BTreeMap<&'static str, i64>,
}

impl Interval {
    fn new(index: u64, slot_count: usize, live_gauges: &BTreeMap<&'static str, i64>) -> Interval {
        Interval {
            index,
            slots: vec![SlotData::default(); slot_count],
            labeled: BTreeMap::new(),
            gauges: BTreeMap::new(),
            high_water: live_gauges.clone(),
        }
    }
}

/// Records one worker's events into one-second intervals of run time.
pub struct Recorder {
    run_start: Instant,
    step_names: Vec<String>,
    current: Interval,
    /// When the current interval ends: an event before it belongs to the current interval
    /// (earlier intervals are closed), so the common case is one comparison, not a division.
    current_end: Instant,
    finished: Vec<Interval>,
    /// Gauges as they stand now; copied into each interval when it closes.
    live_gauges: BTreeMap<&'static str, i64>,
}

impl Recorder {
    pub fn new(run_start: Instant, step_names: Vec<String>) -> Recorder {
        let slot_count = step_names.len() + 1;
        Recorder {
            run_start,
            step_names,
            current: Interval::new(0, slot_count, &BTreeMap::new()),
            current_end: run_start + Duration::from_secs(1),
            finished: Vec::new(),
            live_gauges: BTreeMap::new(),
        }
    }

    /// The run-time interval an instant falls in (before the start counts as interval 0).
    pub fn interval_of(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.run_start).as_secs()
    }

    fn interval_at(&mut self, at: Instant) -> &mut Interval {
        if at < self.current_end {
            return &mut self.current;
        }
        let index = self.interval_of(at);
        if index > self.current.index {
            self.close_through(index);
        }
        &mut self.current
    }

    /// Closes every interval before `index`, sampling gauges into each.
    fn close_through(&mut self, index: u64) {
        let slot_count = self.step_names.len() + 1;
        while self.current.index < index {
            let next = Interval::new(self.current.index + 1, slot_count, &self.live_gauges);
            let mut done = std::mem::replace(&mut self.current, next);
            done.gauges = self.live_gauges.clone();
            self.finished.push(done);
        }
        self.current_end = self.end_of(self.current.index);
    }

    /// When interval `index` ends.
    fn end_of(&self, index: u64) -> Instant {
        self.run_start
            .checked_add(Duration::from_secs(index.saturating_add(1)))
            .unwrap_or(self.run_start)
    }

    pub fn add(&mut self, at: Instant, set: SetId, counter: Counter, amount: u64) {
        let interval = self.interval_at(at);
        interval.slots[set.slot()].counters[counter as usize] += amount;
    }

    /// Adds several counters of one set at one time, with one interval lookup (a message sent
    /// or received moves three counters).
    pub fn add_counts<const N: usize>(&mut self, at: Instant, set: SetId, counts: [(Counter, u64); N]) {
        let slot = &mut self.interval_at(at).slots[set.slot()];
        for (counter, amount) in counts {
            slot.counters[counter as usize] += amount;
        }
    }

    /// Adds to the interval of the latest timed event, without reading the clock: for the
    /// busiest counts (socket bytes, one per read and write), which always come right after a
    /// timed event of the same connection (a send, a received frame) or within the interval the
    /// worker is in. A count can land early by at most the time since that event.
    pub fn add_untimed(&mut self, set: SetId, counter: Counter, amount: u64) {
        self.current.slots[set.slot()].counters[counter as usize] += amount;
    }

    /// Counts a labeled event, e.g. `errors.refused` or `close_codes.1000`.
    pub fn add_labeled(&mut self, at: Instant, set: SetId, name: impl Into<Cow<'static, str>>, amount: u64) {
        let interval = self.interval_at(at);
        *interval.labeled.entry((set.slot(), name.into())).or_insert(0) += amount;
    }

    /// Records a latency (microsecond resolution; an hour or more saturates at the maximum).
    pub fn record(&mut self, at: Instant, set: SetId, hist: Hist, value: Duration) {
        let interval = self.interval_at(at);
        let histogram =
            interval.slots[set.slot()].histograms[hist as usize].get_or_insert_with(|| Box::new(new_histogram()));
        let micros = crate::sets::clamp_micros(u64::try_from(value.as_micros()).unwrap_or(u64::MAX));
        // `record` grows the histogram up to the value (clamped to an hour above);
        // `saturating_record` would clamp to the histogram's current, small top instead.
        if histogram.record(micros).is_err() {
            histogram.saturating_record(micros);
        }
    }

    /// Moves a gauge (e.g. active connections) by `delta` at `at`, raising the high-water mark
    /// of `at`'s interval: a level held for less than an interval still shows.
    pub fn gauge_add(&mut self, at: Instant, name: &'static str, delta: i64) {
        // Intervals that end before `at` close first, with the level as it stood before.
        self.interval_at(at);
        let high = self.current.high_water.entry(name).or_insert(0);
        let live = self.live_gauges.entry(name).or_insert(0);
        *live += delta;
        *high = (*high).max(*live);
    }

    pub fn gauge(&self, name: &'static str) -> i64 {
        self.live_gauges.get(name).copied().unwrap_or(0)
    }

    /// Every interval that ended before `now`, converted, oldest first.
    pub fn take_finished(&mut self, now: Instant) -> Vec<(u64, MetricSets)> {
        let index = self.interval_of(now);
        if index > self.current.index {
            self.close_through(index);
        }
        let finished = std::mem::take(&mut self.finished);
        finished
            .into_iter()
            .map(|interval| (interval.index, self.convert(interval)))
            .collect()
    }

    /// Closes the current interval too (at the end of a run) and returns everything left.
    pub fn take_all(&mut self, now: Instant) -> Vec<(u64, MetricSets)> {
        let mut taken = self.take_finished(now);
        let slot_count = self.step_names.len() + 1;
        let next = Interval::new(self.current.index + 1, slot_count, &self.live_gauges);
        let mut last = std::mem::replace(&mut self.current, next);
        self.current_end = self.end_of(self.current.index);
        last.gauges = self.live_gauges.clone();
        let index = last.index;
        taken.push((index, self.convert(last)));
        taken
    }

    fn convert(&self, interval: Interval) -> MetricSets {
        let mut sets: BTreeMap<String, SetData> = BTreeMap::new();
        for (slot, data) in interval.slots.into_iter().enumerate() {
            let has_counts = data.counters.iter().any(|value| *value > 0);
            let has_histograms = data.histograms.iter().any(Option::is_some);
            if !has_counts && !has_histograms {
                continue;
            }
            let set = sets.entry(self.set_name(slot).to_owned()).or_default();
            for counter in Counter::ALL {
                let value = data.counters[counter as usize];
                if value > 0 {
                    set.counters.insert(counter.name().to_owned(), value);
                }
            }
            for (hist, histogram) in Hist::ALL.into_iter().zip(data.histograms) {
                if let Some(histogram) = histogram {
                    set.histograms.insert(hist.name().to_owned(), *histogram);
                }
            }
        }
        for ((slot, name), value) in interval.labeled {
            let set = sets.entry(self.set_name(slot).to_owned()).or_default();
            *set.counters.entry(name.into_owned()).or_insert(0) += value;
        }
        let mut gauges: BTreeMap<String, i64> = interval
            .gauges
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        for (name, high) in interval.high_water {
            let high_name = Gauge::of_name(name).map_or(name, Gauge::high_water_name);
            gauges.insert(high_name.to_owned(), high);
        }
        MetricSets { sets, gauges }
    }

    fn set_name(&self, slot: usize) -> &str {
        if slot == 0 {
            CONNECTION_SET
        } else {
            self.step_names.get(slot - 1).map(String::as_str).unwrap_or("unknown")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ACTIVE_CONNECTIONS;

    #[test]
    fn long_latencies_are_recorded_as_they_are() {
        let start = Instant::now();
        let mut recorder = Recorder::new(start, vec!["wait".into()]);
        for millis in [1u64, 250, 4_000, 90_000] {
            recorder.record(
                start,
                SetId::Step(0),
                Hist::MessageLatency,
                Duration::from_millis(millis),
            );
        }
        let sets = recorder.take_all(start).remove(0).1;
        let histogram = &sets.sets["wait"].histograms["message_latency"];
        assert_eq!(histogram.len(), 4);
        let near = |value: u64, wanted: u64| value.abs_diff(wanted) * 1000 <= wanted;
        assert!(
            near(histogram.value_at_quantile(0.5), 250_000),
            "{}",
            histogram.value_at_quantile(0.5)
        );
        assert!(near(histogram.max(), 90_000_000), "{}", histogram.max());
    }

    #[test]
    fn interval_edges_and_late_events() {
        let start = Instant::now();
        let mut recorder = Recorder::new(start, vec!["send".into()]);
        let ms = |millis: u64| start + Duration::from_millis(millis);
        recorder.add(ms(999), SetId::Step(0), Counter::MessagesSent, 1);
        // Exactly on the edge: the next second.
        recorder.add(ms(1000), SetId::Step(0), Counter::MessagesSent, 10);
        // An event timed before the current interval (taken late) counts in the current one.
        recorder.add(ms(500), SetId::Step(0), Counter::MessagesSent, 100);
        recorder.add_counts(
            ms(2999),
            SetId::Step(0),
            [(Counter::MessagesSent, 1000), (Counter::PayloadBytesSent, 64)],
        );
        let all = recorder.take_all(ms(3000));
        let sent: Vec<(u64, u64)> = all
            .iter()
            .map(|(index, sets)| {
                (
                    *index,
                    sets.sets.get("send").map_or(0, |set| set.counter("messages_sent")),
                )
            })
            .collect();
        assert_eq!(sent, vec![(0, 1), (1, 110), (2, 1000), (3, 0)]);
        assert_eq!(all[2].1.sets["send"].counter("payload_bytes_sent"), 64);
        // After take_all the next interval starts where the taken ones ended.
        recorder.add(ms(3500), SetId::Step(0), Counter::MessagesSent, 7);
        recorder.add(ms(4100), SetId::Step(0), Counter::MessagesSent, 8);
        let next: Vec<(u64, u64)> = recorder
            .take_all(ms(4200))
            .iter()
            .map(|(index, sets)| {
                (
                    *index,
                    sets.sets.get("send").map_or(0, |set| set.counter("messages_sent")),
                )
            })
            .collect();
        assert_eq!(next, vec![(4, 15)]);
    }

    #[test]
    fn events_land_in_the_second_they_happen() {
        let start = Instant::now();
        let mut recorder = Recorder::new(start, vec!["send".into()]);
        recorder.add(start, SetId::Step(0), Counter::MessagesSent, 2);
        recorder.gauge_add(start, ACTIVE_CONNECTIONS, 3);
        recorder.add(
            start + Duration::from_millis(1500),
            SetId::Step(0),
            Counter::MessagesSent,
            5,
        );
        recorder.record(
            start + Duration::from_millis(1600),
            SetId::Step(0),
            Hist::MessageLatency,
            Duration::from_millis(7),
        );
        recorder.add(
            start + Duration::from_millis(3100),
            SetId::Connection,
            Counter::BytesSent,
            10,
        );

        let finished = recorder.take_finished(start + Duration::from_millis(3200));
        let indexes: Vec<u64> = finished.iter().map(|(index, _)| *index).collect();
        assert_eq!(indexes, vec![0, 1, 2]);
        assert_eq!(finished[0].1.sets["send"].counter("messages_sent"), 2);
        assert_eq!(finished[1].1.sets["send"].counter("messages_sent"), 5);
        assert_eq!(finished[1].1.sets["send"].histograms["message_latency"].len(), 1);
        assert!(finished[2].1.sets.is_empty());
        assert_eq!(finished[2].1.gauge(ACTIVE_CONNECTIONS), 3);

        let rest = recorder.take_all(start + Duration::from_millis(3300));
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].0, 3);
        assert_eq!(rest[0].1.sets[""].counter("bytes_sent"), 10);
    }

    /// A level held for less than an interval shows as the interval's high-water mark, while
    /// the end-of-interval value shows where it ended; a level carried into an interval is
    /// that interval's mark until it moves.
    #[test]
    fn gauges_carry_the_high_water_mark_of_each_interval() {
        let start = Instant::now();
        let at = |millis| start + Duration::from_millis(millis);
        let mut recorder = Recorder::new(start, Vec::new());
        // Interval 0: 60 open within 300 ms, all closed again.
        for millis in 0..60 {
            recorder.gauge_add(at(100 + millis), ACTIVE_CONNECTIONS, 1);
        }
        for millis in 0..60 {
            recorder.gauge_add(at(300 + millis), ACTIVE_CONNECTIONS, -1);
        }
        // Interval 1: 5 open, 2 of them close; interval 2: nothing moves; interval 3: one more.
        for millis in 0..5 {
            recorder.gauge_add(at(1_100 + millis), ACTIVE_CONNECTIONS, 1);
        }
        recorder.gauge_add(at(1_500), ACTIVE_CONNECTIONS, -2);
        recorder.gauge_add(at(3_100), ACTIVE_CONNECTIONS, 1);
        let taken = recorder.take_all(at(3_500));
        let figures: Vec<(u64, i64, i64)> = taken
            .iter()
            .map(|(index, sets)| {
                (
                    *index,
                    sets.gauge(ACTIVE_CONNECTIONS),
                    sets.gauge(Gauge::ActiveConnections.high_water_name()),
                )
            })
            .collect();
        assert_eq!(figures, vec![(0, 0, 60), (1, 3, 5), (2, 3, 3), (3, 4, 4)]);
    }
}
