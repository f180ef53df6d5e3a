//! Thresholds (SLAs): conditions on a metric's statistic that decide whether a run passed.
//! The metric names are the catalog's (`metrics/src/catalog.rs`); `crate::validate` parses
//! the conditions.
//!
//! ```yaml
//! thresholds:
//!   connections_failed.rate: "< 1%"              # failed / attempted connections
//!   message_latency.p99: "< 50ms"
//!   messages_received.count: "> 10000"
//!   "message_latency{step=echo}.p95": "< 20ms"   # one step only
//!   handshake.p99: { condition: "< 200ms", abort_on_fail: true, delay: 10s }
//! ```

use std::time::Duration;

use wsfleet_metrics::catalog::{Counter, Gauge, Hist};

pub use crate::raw::{RawThreshold, RawThresholdSpec};

/// Counters, by catalog name (`metrics/src/catalog.rs`).
pub const COUNTERS: &[&str] = &Counter::NAMES;
/// Aliases: the names of LoadRunner's WebSocket Statistics.
pub const ALIASES: &[(&str, &str)] = &[
    ("new_connections", Counter::ConnectionsOpened.name()),
    ("failed_connections", Counter::ConnectionsFailed.name()),
];
/// Latency histograms, by catalog name.
pub const HISTOGRAMS: &[&str] = &Hist::NAMES;
/// Gauges, by catalog name.
pub const GAUGES: &[&str] = &Gauge::NAMES;
/// Counters whose `rate` is a failure ratio, each with the counter of its successes.
pub const FAILURE_RATIOS: &[(&str, &str)] = &[
    (Counter::ConnectionsFailed.name(), Counter::ConnectionsOpened.name()),
    (Counter::IterationsFailed.name(), Counter::Iterations.name()),
    (Counter::ReceiveTimeouts.name(), Counter::MessagesReceived.name()),
    (Counter::DroppedVus.name(), Counter::VusStarted.name()),
];
/// Counters whose `rate` is their share of another counter that counts every attempt, each with
/// that counter: `http_requests_failed.rate` is failed / requests.
pub const FAILURE_SHARES: &[(&str, &str)] = &[(Counter::HttpRequestsFailed.name(), Counter::HttpRequests.name())];

/// The statistic a threshold reads.
#[derive(Clone, Debug, PartialEq)]
pub enum Stat {
    /// A counter's total.
    Count,
    /// A counter per second over the run.
    PerSecond,
    /// A failure counter over its attempts (0..1), e.g. failed / (opened + failed).
    Ratio,
    /// A histogram percentile (0..100), in microseconds.
    Percentile(f64),
    Min,
    Max,
    Mean,
    /// A gauge's highest interval value.
    Peak,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Comparison {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Equal,
    NotEqual,
}

impl Comparison {
    pub fn holds(self, value: f64, limit: f64) -> bool {
        match self {
            Comparison::Less => value < limit,
            Comparison::LessOrEqual => value <= limit,
            Comparison::Greater => value > limit,
            Comparison::GreaterOrEqual => value >= limit,
            Comparison::Equal => (value - limit).abs() < 1e-9,
            Comparison::NotEqual => (value - limit).abs() >= 1e-9,
        }
    }
}

/// What kind of value a threshold compares, for formatting.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unit {
    Micros,
    Ratio,
    Plain,
}

/// A validated threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    /// The key as written, e.g. `message_latency.p99`.
    pub name: String,
    /// The condition as written, e.g. `< 50ms`.
    pub condition: String,
    /// The catalog name of the metric.
    pub metric: String,
    pub step: Option<String>,
    pub stat: Stat,
    pub comparison: Comparison,
    /// The limit in the statistic's unit: microseconds for latencies, 0..1 for ratios.
    pub limit: f64,
    pub unit: Unit,
    /// Evaluate every second while the run goes, and stop the run when it fails.
    pub abort_on_fail: bool,
    /// Do not abort during this first part of the run.
    pub delay: Duration,
}
