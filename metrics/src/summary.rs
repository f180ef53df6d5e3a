//! Latency statistics read from a (merged) histogram.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Percentiles of one latency histogram, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl LatencyStats {
    pub fn of(histogram: &Histogram<u64>) -> LatencyStats {
        if histogram.is_empty() {
            return LatencyStats::default();
        }
        LatencyStats {
            count: histogram.len(),
            min_us: histogram.min(),
            mean_us: histogram.mean(),
            p50_us: histogram.value_at_quantile(0.50),
            p90_us: histogram.value_at_quantile(0.90),
            p95_us: histogram.value_at_quantile(0.95),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sets::{new_histogram, MetricSets};
    use proptest::prelude::*;

    proptest! {
        /// Merging per-agent histograms gives the percentiles of one histogram of every value,
        /// and counters stay exact, however the values are split over agents.
        #[test]
        fn merged_equals_whole(
            values in proptest::collection::vec((1u64..10_000_000, 0usize..5), 1..400),
        ) {
            let mut whole = new_histogram();
            let mut agents: Vec<MetricSets> = vec![MetricSets::default(); 5];
            for (value, agent) in &values {
                whole.record(*value).unwrap();
                let set = agents[*agent].sets.entry("receive".into()).or_default();
                set.histograms.entry("message_latency".into()).or_insert_with(new_histogram).record(*value).unwrap();
                *set.counters.entry("messages_received".into()).or_insert(0) += 1;
            }
            // Through the wire format too.
            let mut merged = MetricSets::default();
            for agent in &agents {
                let report = agent.to_report("run", 0).unwrap();
                merged.merge(&MetricSets::from_report(&report).unwrap()).unwrap();
            }
            let receive = &merged.sets["receive"];
            prop_assert_eq!(receive.counter("messages_received"), values.len() as u64);
            prop_assert_eq!(LatencyStats::of(&receive.histograms["message_latency"]), LatencyStats::of(&whole));
        }
    }

    #[test]
    fn malformed_histogram_bytes_are_refused() {
        let report = wsfleet_proto::v1::MetricReport {
            run_id: "r".into(),
            interval: 0,
            sets: vec![wsfleet_proto::v1::MetricSet {
                step: "s".into(),
                counters: Default::default(),
                histograms: [("message_latency".to_owned(), vec![1, 2, 3, 4])].into_iter().collect(),
            }],
            gauges: Default::default(),
        };
        let error = MetricSets::from_report(&report).unwrap_err();
        assert!(error.to_string().contains("malformed histogram `message_latency`"));
    }
}

#[cfg(test)]
mod hostile {
    //! Hostile reports: any bytes on the wire decode to a report or an error, and any decoded
    //! report converts to metric sets or a clear error, never a panic.

    use proptest::prelude::*;
    use prost::Message;
    use wsfleet_proto::v1::{MetricReport, MetricSet};

    use crate::sets::MetricSets;

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(report) = MetricReport::decode(bytes.as_slice()) {
                let _ = MetricSets::from_report(&report);
            }
        }

        #[test]
        fn arbitrary_histogram_payloads_never_panic(
            payload in proptest::collection::vec(any::<u8>(), 0..256),
            header in prop_oneof![Just(vec![0x1c, 0x84, 0x93, 0x14]), Just(vec![0x1c, 0x84, 0x93, 0x13]), Just(vec![])],
        ) {
            let mut bytes = header;
            bytes.extend(payload);
            let report = MetricReport {
                run_id: "r".into(),
                interval: 0,
                sets: vec![MetricSet {
                    step: "s".into(),
                    counters: Default::default(),
                    histograms: [("message_latency".to_owned(), bytes)].into_iter().collect(),
                }],
                gauges: Default::default(),
            };
            let _ = MetricSets::from_report(&report);
        }
    }
}
