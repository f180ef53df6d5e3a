//! Chart lines read from per-interval summaries, by catalog metric: the HTML report and the
//! dashboard's server-rendered charts draw the same series from the same code. A point is
//! (the interval's end in seconds since the start, the value over that interval).

use wsfleet_metrics::catalog::{is_error_counter, Counter, Gauge, Hist};
use wsfleet_metrics::summary::LatencyStats;

use super::charts::Series;
use crate::summary::IntervalSummary;

/// The x of an interval's point: its end.
fn end_of(interval: &IntervalSummary) -> f64 {
    interval.interval as f64 + 1.0
}

/// One point per interval, the value `value_of` reads from it.
fn per_interval<'a>(
    intervals: &[IntervalSummary],
    label: &'a str,
    value_of: impl Fn(&IntervalSummary) -> f64,
) -> Series<'a> {
    Series {
        label,
        points: intervals
            .iter()
            .map(|interval| (end_of(interval), value_of(interval)))
            .collect(),
    }
}

/// A counter per second (0 where an interval did not count it).
pub fn counter<'a>(intervals: &[IntervalSummary], label: &'a str, counter: Counter) -> Series<'a> {
    per_interval(intervals, label, |interval| {
        interval.counters.get(counter.name()).copied().unwrap_or(0) as f64
    })
}

/// A gauge's fleet value at each interval's end.
pub fn gauge<'a>(intervals: &[IntervalSummary], label: &'a str, gauge: Gauge) -> Series<'a> {
    per_interval(intervals, label, |interval| {
        interval.gauges.get(gauge.name()).copied().unwrap_or(0) as f64
    })
}

/// Every `errors.<kind>` counter together, per second.
pub fn errors<'a>(intervals: &[IntervalSummary], label: &'a str) -> Series<'a> {
    per_interval(intervals, label, |interval| {
        let errors: u64 = interval
            .counters
            .iter()
            .filter(|(name, _)| is_error_counter(name))
            .map(|(_, value)| value)
            .sum();
        errors as f64
    })
}

/// A histogram's p50, p95, p99 and max per interval, in milliseconds; intervals without a value
/// have no point.
pub fn latency(intervals: &[IntervalSummary], histogram: Hist) -> Vec<Series<'static>> {
    type Read = fn(&LatencyStats) -> u64;
    let pick: [(&'static str, Read); 4] = [
        ("p50", |stats| stats.p50_us),
        ("p95", |stats| stats.p95_us),
        ("p99", |stats| stats.p99_us),
        ("max", |stats| stats.max_us),
    ];
    pick.iter()
        .map(|(label, read)| Series {
            label,
            points: intervals
                .iter()
                .filter_map(|interval| {
                    let stats = interval.latency.get(histogram.name())?;
                    Some((end_of(interval), read(stats) as f64 / 1000.0))
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(index: u64, counters: &[(&str, u64)], active: i64) -> IntervalSummary {
        IntervalSummary {
            interval: index,
            counters: counters
                .iter()
                .map(|(name, value)| ((*name).to_owned(), *value))
                .collect(),
            gauges: [(Gauge::ActiveConnections.name().to_owned(), active)]
                .into_iter()
                .collect(),
            latency: Default::default(),
        }
    }

    #[test]
    fn series_read_the_catalog_names_per_interval() {
        let intervals = [
            interval(
                0,
                &[("connections_opened", 5), ("errors.refused", 2), ("errors.timeout", 1)],
                5,
            ),
            interval(1, &[("close_codes.1000", 4)], 1),
        ];
        assert_eq!(
            counter(&intervals, "new", Counter::ConnectionsOpened).points,
            [(1.0, 5.0), (2.0, 0.0)]
        );
        assert_eq!(errors(&intervals, "errors").points, [(1.0, 3.0), (2.0, 0.0)]);
        assert_eq!(
            gauge(&intervals, "active", Gauge::ActiveConnections).points,
            [(1.0, 5.0), (2.0, 1.0)]
        );
        assert_eq!(
            gauge(&intervals, "VUs", Gauge::ActiveVus).points,
            [(1.0, 0.0), (2.0, 0.0)]
        );
        let latency = latency(&intervals, Hist::MessageLatency);
        assert_eq!(latency.len(), 4);
        assert!(latency.iter().all(|series| series.points.is_empty()));
    }
}
