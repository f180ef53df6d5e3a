//! One interval's (or a whole run's) measurements in mergeable form: counters add, gauges add
//! (each agent reports its own), histograms merge. This is what travels in a `MetricReport` and
//! what the controller aggregates; it is never used on the hot path.

use std::collections::BTreeMap;

use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use wsfleet_proto::v1::{MetricReport, MetricSet};

/// Microsecond histograms from 1 µs to one hour with 3 significant digits.
pub const HISTOGRAM_LOWEST: u64 = 1;
pub const HISTOGRAM_HIGHEST: u64 = 3_600_000_000;
pub const HISTOGRAM_SIGFIGS: u8 = 3;

/// A histogram with wsfleet's precision that grows as values arrive. A histogram allocated for
/// the whole 1 µs – 1 h range holds ~23k counters (~188 KB, zeroed); most latencies stay far
/// below an hour, so starting small and resizing keeps recorders, reports and the controller's
/// merges cheap. Values are clamped to `HISTOGRAM_HIGHEST` where they are recorded
/// ([`clamp_micros`]), so a histogram never grows past the hour.
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    #[allow(clippy::unwrap_used)]
    let mut histogram = Histogram::new_with_bounds(HISTOGRAM_LOWEST, 2048, HISTOGRAM_SIGFIGS).unwrap();
    histogram.auto(true);
    histogram
}

/// A latency in microseconds as recorded: at least 1 µs, at most an hour.
pub fn clamp_micros(micros: u64) -> u64 {
    micros.clamp(HISTOGRAM_LOWEST, HISTOGRAM_HIGHEST)
}

/// The set name of connection-level measurements that belong to no step (wire bytes).
pub const CONNECTION_SET: &str = "";

/// Counters and histograms of one metric set (one step, or the connection set).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SetData {
    pub counters: BTreeMap<String, u64>,
    pub histograms: BTreeMap<String, Histogram<u64>>,
}

impl SetData {
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    pub fn merge(&mut self, other: &SetData) -> Result<(), MetricsError> {
        for (name, value) in &other.counters {
            *self.counters.entry(name.clone()).or_insert(0) += value;
        }
        for (name, histogram) in &other.histograms {
            match self.histograms.get_mut(name) {
                Some(mine) => mine
                    .add(histogram)
                    .map_err(|error| MetricsError::Merge(name.clone(), format!("{error:?}")))?,
                None => {
                    self.histograms.insert(name.clone(), histogram.clone());
                }
            }
        }
        Ok(())
    }

    /// Counters whose name starts with `family.`, with the label.
    pub fn labeled<'a>(&'a self, family: &'a str) -> impl Iterator<Item = (&'a str, u64)> + 'a {
        self.counters.iter().filter_map(move |(name, value)| {
            name.strip_prefix(family)
                .and_then(|rest| rest.strip_prefix('.'))
                .map(|label| (label, *value))
        })
    }
}

/// Metric sets by name (step name, or `CONNECTION_SET`) plus gauges.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricSets {
    pub sets: BTreeMap<String, SetData>,
    pub gauges: BTreeMap<String, i64>,
}

impl MetricSets {
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty() && self.gauges.is_empty()
    }

    /// Adds `other` into `self`: exact for counters, gauges (summed over agents) and histograms.
    pub fn merge(&mut self, other: &MetricSets) -> Result<(), MetricsError> {
        for (name, set) in &other.sets {
            self.sets.entry(name.clone()).or_default().merge(set)?;
        }
        for (name, value) in &other.gauges {
            *self.gauges.entry(name.clone()).or_insert(0) += value;
        }
        Ok(())
    }

    /// Every set merged into one: the run's or interval's totals.
    pub fn total(&self) -> SetData {
        let mut total = SetData::default();
        for set in self.sets.values() {
            // Histograms of one catalog share bounds, so merging cannot fail here.
            let _ = total.merge(set);
        }
        total
    }

    pub fn gauge(&self, name: &str) -> i64 {
        self.gauges.get(name).copied().unwrap_or(0)
    }

    /// Encodes as a report; histograms travel as V2 + deflate.
    pub fn to_report(&self, run_id: &str, interval: u64) -> Result<MetricReport, MetricsError> {
        let mut serializer = V2DeflateSerializer::new();
        let mut sets = Vec::with_capacity(self.sets.len());
        for (step, data) in &self.sets {
            let mut histograms = std::collections::HashMap::with_capacity(data.histograms.len());
            for (name, histogram) in &data.histograms {
                let mut bytes = Vec::new();
                serializer
                    .serialize(histogram, &mut bytes)
                    .map_err(|error| MetricsError::Encode(name.clone(), format!("{error:?}")))?;
                histograms.insert(name.clone(), bytes);
            }
            sets.push(MetricSet {
                step: step.clone(),
                counters: data
                    .counters
                    .iter()
                    .map(|(name, value)| (name.clone(), *value))
                    .collect(),
                histograms,
            });
        }
        Ok(MetricReport {
            run_id: run_id.to_owned(),
            interval,
            sets,
            gauges: self.gauges.iter().map(|(name, value)| (name.clone(), *value)).collect(),
        })
    }

    /// Decodes a report, refusing malformed histograms or histograms outside wsfleet's bounds.
    pub fn from_report(report: &MetricReport) -> Result<MetricSets, MetricsError> {
        let mut deserializer = Deserializer::new();
        let mut sets: BTreeMap<String, SetData> = BTreeMap::new();
        for set in &report.sets {
            let mut data = SetData {
                counters: set
                    .counters
                    .iter()
                    .map(|(name, value)| (name.clone(), *value))
                    .collect(),
                histograms: BTreeMap::new(),
            };
            for (name, bytes) in &set.histograms {
                let decoded: Histogram<u64> = deserializer
                    .deserialize(&mut bytes.as_slice())
                    .map_err(|error| MetricsError::Decode(name.clone(), format!("{error:?}")))?;
                if decoded.high() > HISTOGRAM_HIGHEST * 2 || decoded.sigfig() > HISTOGRAM_SIGFIGS {
                    return Err(MetricsError::Decode(
                        name.clone(),
                        "histogram bounds differ from wsfleet's".into(),
                    ));
                }
                let mut histogram = new_histogram();
                histogram
                    .add(&decoded)
                    .map_err(|error| MetricsError::Decode(name.clone(), format!("{error:?}")))?;
                data.histograms.insert(name.clone(), histogram);
            }
            sets.entry(set.step.clone()).or_default().merge(&data)?;
        }
        Ok(MetricSets {
            sets,
            gauges: report
                .gauges
                .iter()
                .map(|(name, value)| (name.clone(), *value))
                .collect(),
        })
    }
}

/// Why metrics could not be encoded, decoded or merged.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot encode histogram `{0}`: {1}")]
    Encode(String, String),
    #[error("malformed histogram `{0}` in metric report: {1}")]
    Decode(String, String),
    #[error("cannot merge histogram `{0}`: {1}")]
    Merge(String, String),
}
