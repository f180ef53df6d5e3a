//! Evaluating thresholds on merged figures: at the end of a run, and every second for those
//! that abort the run when they fail.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wsfleet_metrics::summary::LatencyStats;
use wsfleet_metrics::{MetricSets, SetData};
use wsfleet_scenario::thresholds::{Stat, Threshold, Unit, FAILURE_RATIOS, FAILURE_SHARES};

use crate::human::{human_count, human_micros};

/// A threshold's outcome, as the summary shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ThresholdResult {
    /// The key as written, e.g. `message_latency.p99`.
    pub name: String,
    /// The condition as written, e.g. `< 50ms`.
    pub condition: String,
    /// The measured value in the statistic's unit (microseconds for latencies, 0..1 for
    /// ratios); absent when there was nothing to measure.
    pub value: Option<f64>,
    /// The value for people, e.g. `12.3ms` or `0.40%`.
    pub display: String,
    pub passed: bool,
    /// Whether this threshold stopped the run.
    pub aborted_run: bool,
}

fn set_of(totals: &MetricSets, step: Option<&str>) -> SetData {
    match step {
        Some(step) => totals.sets.get(step).cloned().unwrap_or_default(),
        None => totals.total(),
    }
}

/// The value a threshold reads, or `None` when there is no data for it (an empty histogram).
pub fn measure(
    threshold: &Threshold,
    totals: &MetricSets,
    duration_seconds: f64,
    peak_gauges: &BTreeMap<String, i64>,
) -> Option<f64> {
    if threshold.stat == Stat::Peak {
        return peak_gauges
            .get(&threshold.metric)
            .map(|peak| *peak as f64)
            .or(Some(0.0));
    }
    let set = set_of(totals, threshold.step.as_deref());
    match &threshold.stat {
        Stat::Count
            if set.histograms.contains_key(&threshold.metric)
                || wsfleet_scenario::thresholds::HISTOGRAMS.contains(&threshold.metric.as_str()) =>
        {
            Some(
                set.histograms
                    .get(&threshold.metric)
                    .map_or(0, |histogram| histogram.len()) as f64,
            )
        }
        Stat::Count => Some(set.counter(&threshold.metric) as f64),
        Stat::PerSecond => Some(set.counter(&threshold.metric) as f64 / duration_seconds.max(1.0)),
        Stat::Ratio => {
            let failures = set.counter(&threshold.metric) as f64;
            // A share's other counter counts every attempt; a ratio's counts the successes.
            let attempts = match FAILURE_SHARES.iter().find(|(failure, _)| *failure == threshold.metric) {
                Some((_, total)) => set.counter(total) as f64,
                None => {
                    failures
                        + FAILURE_RATIOS
                            .iter()
                            .find(|(failure, _)| *failure == threshold.metric)
                            .map_or(0.0, |(_, success)| set.counter(success) as f64)
                }
            };
            Some(if attempts > 0.0 { failures / attempts } else { 0.0 })
        }
        latency => {
            let histogram = set
                .histograms
                .get(&threshold.metric)
                .filter(|histogram| !histogram.is_empty())?;
            let stats = LatencyStats::of(histogram);
            Some(match latency {
                Stat::Min => stats.min_us as f64,
                Stat::Max => stats.max_us as f64,
                Stat::Mean => stats.mean_us,
                Stat::Percentile(percentile) => histogram.value_at_quantile(percentile / 100.0) as f64,
                _ => return None,
            })
        }
    }
}

fn display(threshold: &Threshold, value: Option<f64>) -> String {
    match (value, threshold.unit) {
        (None, _) => "no data".to_owned(),
        (Some(value), Unit::Micros) => human_micros(value.round() as u64),
        (Some(value), Unit::Ratio) => format!("{:.2}%", value * 100.0),
        (Some(value), Unit::Plain) if value.fract() == 0.0 => format!("{value}"),
        (Some(value), Unit::Plain) => human_count(value),
    }
}

/// Evaluates one threshold. A threshold with no data fails: it could not be verified.
pub fn evaluate(
    threshold: &Threshold,
    totals: &MetricSets,
    duration_seconds: f64,
    peak_gauges: &BTreeMap<String, i64>,
) -> ThresholdResult {
    let value = measure(threshold, totals, duration_seconds, peak_gauges);
    ThresholdResult {
        name: threshold.name.clone(),
        condition: threshold.condition.clone(),
        value,
        display: display(threshold, value),
        passed: value.is_some_and(|value| threshold.comparison.holds(value, threshold.limit)),
        aborted_run: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsfleet_metrics::new_histogram;

    #[test]
    fn thresholds_know_every_counter_and_histogram_of_the_catalog() {
        for counter in wsfleet_metrics::Counter::ALL {
            assert!(
                wsfleet_scenario::thresholds::COUNTERS.contains(&counter.name()),
                "thresholds cannot name `{}`",
                counter.name()
            );
        }
        for hist in wsfleet_metrics::Hist::ALL {
            assert!(
                wsfleet_scenario::thresholds::HISTOGRAMS.contains(&hist.name()),
                "thresholds cannot name `{}`",
                hist.name()
            );
        }
    }

    fn threshold(key: &str, condition: &str) -> Threshold {
        let source = format!("load: {{ vus: 1, iterations: 1 }}\nthresholds:\n  \"{key}\": \"{condition}\"\nsteps:\n  - connect: {{ url: 'ws://h/' }}\n  - receive: {{ name: echo }}\n");
        let scenario = wsfleet_scenario::Bundle {
            path: "t.yaml".into(),
            source,
            files: Default::default(),
        }
        .compile()
        .unwrap();
        scenario.thresholds[0].clone()
    }

    fn figures() -> MetricSets {
        let mut sets = MetricSets::default();
        let connect = sets.sets.entry("connect".into()).or_default();
        connect.counters.insert("connections_opened".into(), 99);
        connect.counters.insert("connections_failed".into(), 1);
        let echo = sets.sets.entry("echo".into()).or_default();
        echo.counters.insert("messages_received".into(), 1000);
        let mut latency = new_histogram();
        for micros in 1..=1000u64 {
            latency.record(micros * 100).unwrap();
        }
        echo.histograms.insert("message_latency".into(), latency);
        sets
    }

    #[test]
    fn evaluates_ratios_percentiles_counts_and_peaks() {
        let totals = figures();
        let peaks = BTreeMap::from([("active_connections".to_owned(), 120)]);
        let check = |key: &str, condition: &str| evaluate(&threshold(key, condition), &totals, 10.0, &peaks);
        let failed = check("connections_failed.rate", "< 1%");
        assert_eq!(
            (failed.value, failed.passed, failed.display.as_str()),
            (Some(0.01), false, "1.00%")
        );
        assert!(check("connections_failed.rate", "<= 1%").passed);
        let p99 = check("message_latency.p99", "< 100ms");
        assert!(p99.passed, "{p99:?}");
        assert!((p99.value.unwrap() - 99_000.0).abs() < 100.0);
        assert!(!check("message_latency{step=echo}.p50", "< 40ms").passed);
        assert!(check("messages_received.count", "== 1000").passed);
        assert!(check("messages_received.rate", "== 100").passed);
        assert!(check("active_connections.max", ">= 120").passed);
        let empty = check("ping_latency.p99", "< 1s");
        assert_eq!(
            (empty.value, empty.passed, empty.display.as_str()),
            (None, false, "no data")
        );
    }
}
