//! The end-of-run summary: what `--out json` writes and the history keeps (its terminal
//! rendering is `summary_text`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wsfleet_metrics::catalog::{CLOSE_CODES, ERRORS, EXTENSIONS};
use wsfleet_metrics::summary::LatencyStats;
use wsfleet_metrics::{Counter, MetricSets, SetData};

pub use crate::human::{human_bytes, human_count, human_micros};
use crate::outcome::{LostAction, Outcome};

/// Version of the summary's JSON shape (docs/metrics.md). 2: thresholds. Added since, without
/// a new version (fields are only added): `lost_agents`, `reports`, `agents[].reports_dropped`,
/// `changes`, `seek`.
pub const SUMMARY_SCHEMA_VERSION: u32 = 2;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub schema_version: u32,
    pub run_id: String,
    pub scenario: String,
    /// Wall time from the common start to the last report, seconds.
    pub duration_seconds: f64,
    pub agents: Vec<AgentSummary>,
    /// How the run ended: `completed`, `stopped`, `aborted: ...`, `failed: ...`.
    pub outcome: Outcome,
    pub totals: Totals,
    /// Per step, in scenario order.
    pub steps: Vec<StepSummary>,
    /// Per interval, the fleet's figures.
    pub intervals: Vec<IntervalSummary>,
    /// The scenario's thresholds, in the order written, with their outcome.
    pub thresholds: Vec<crate::thresholds::ThresholdResult>,
    /// The operator's changes while the run ran (VUs, rate, hold, pause, stop of a part), in
    /// the order made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<crate::run::control::ChangeEvent>,
    /// A goal seek (`load: { model: seek }`): the load found and every step, judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seek: Option<crate::run::seek::SeekSummary>,
    /// Agents lost during the run and what the run's policy did about each.
    #[serde(default)]
    pub lost_agents: LostAgents,
    /// How the agents' metric reports reached the controller.
    #[serde(default)]
    pub reports: ReportDelivery,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AgentSummary {
    pub id: String,
    pub hostname: String,
    /// Its VUs at the plan's peak: its share, raised when it took over a lost agent's.
    pub vus: u64,
    pub intervals_reported: u64,
    pub state: String,
    /// Reports it could not keep while it could not reach the controller (missing).
    #[serde(default)]
    pub reports_dropped: u64,
}

/// Agents lost during a run, and the run's policy (`load.on_agent_lost`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LostAgents {
    /// `continue`, `redistribute` or `abort`.
    pub policy: String,
    pub events: Vec<LostAgentEvent>,
}

impl LostAgents {
    /// Whether losing an agent stopped the run (`abort`).
    pub fn aborted(&self) -> bool {
        self.events.iter().any(|event| event.action == LostAction::Aborted)
    }
}

/// One agent lost, and what the run did.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LostAgentEvent {
    pub agent: String,
    /// When the controller noticed, seconds after the common start (0 before it).
    pub at_seconds: f64,
    pub reason: String,
    /// `continued` (without its share), `redistributed` (its share moved to the others),
    /// `aborted` (the run was stopped), or `none` (it had finished, or the run was ending).
    pub action: LostAction,
    /// The action in words, e.g. why a share could not move.
    pub detail: String,
    /// Its VUs at the plan's peak when it was lost.
    pub vus: u64,
}

/// How the agents' metric reports reached the controller. Each (agent, interval) counts once:
/// an agent that cannot tell whether a report arrived (its stream broke) sends it again.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ReportDelivery {
    /// Reports counted, one per agent and interval.
    pub accepted: u64,
    /// Reports received again and ignored.
    pub duplicates_ignored: u64,
    /// Reports agents had to drop (their buffer for an unreachable controller was full).
    pub dropped_by_agents: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Totals {
    /// Every counter of the catalog (zeros included), plus labeled ones.
    pub counters: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub close_codes: BTreeMap<String, u64>,
    pub latency: BTreeMap<String, LatencyStats>,
    pub peak_active_connections: i64,
    /// LoadRunner's WebSocket Statistics as averages over the run.
    pub new_connections_per_second: f64,
    pub failed_connections_per_second: f64,
    pub bytes_sent_per_second: f64,
    pub bytes_received_per_second: f64,
    /// Connections opened with a compression offer, by the server's answer (`none`: declined).
    #[serde(default)]
    pub extensions: BTreeMap<String, u64>,
    /// permessage-deflate: payload bytes before compression over bytes after, sent and
    /// received (`None`: no data message on a connection that agreed to it).
    #[serde(default)]
    pub compression_ratio_sent: Option<f64>,
    #[serde(default)]
    pub compression_ratio_received: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StepSummary {
    pub name: String,
    pub counters: BTreeMap<String, u64>,
    pub latency: BTreeMap<String, LatencyStats>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IntervalSummary {
    /// Seconds since the start.
    pub interval: u64,
    pub counters: BTreeMap<String, u64>,
    pub gauges: BTreeMap<String, i64>,
    pub latency: BTreeMap<String, LatencyStats>,
}

fn latency_of(set: &SetData) -> BTreeMap<String, LatencyStats> {
    set.histograms
        .iter()
        .map(|(name, histogram)| (name.clone(), LatencyStats::of(histogram)))
        .collect()
}

fn plain_counters(set: &SetData) -> BTreeMap<String, u64> {
    set.counters
        .iter()
        .filter(|(name, _)| !name.contains('.'))
        .map(|(name, value)| (name.clone(), *value))
        .collect()
}

/// Bytes before compression over bytes after; `None` when nothing was compressed.
fn compression_ratio(uncompressed: u64, compressed: u64) -> Option<f64> {
    (compressed > 0).then(|| uncompressed as f64 / compressed as f64)
}

impl Totals {
    pub fn from_sets(totals: &MetricSets, peak_active_connections: i64, duration_seconds: f64) -> Totals {
        let total = totals.total();
        let mut counters: BTreeMap<String, u64> = Counter::ALL
            .iter()
            .map(|counter| (counter.name().to_owned(), 0))
            .collect();
        counters.extend(plain_counters(&total));
        // Rates are per second of run; a run shorter than a second counts as one second, the
        // resolution of the per-interval series.
        let seconds = duration_seconds.max(1.0);
        let per_second = |name: &str| total.counter(name) as f64 / seconds;
        Totals {
            errors: total
                .labeled(ERRORS)
                .map(|(label, value)| (label.to_owned(), value))
                .collect(),
            close_codes: total
                .labeled(CLOSE_CODES)
                .map(|(label, value)| (label.to_owned(), value))
                .collect(),
            latency: latency_of(&total),
            peak_active_connections,
            new_connections_per_second: per_second(Counter::ConnectionsOpened.name()),
            failed_connections_per_second: per_second(Counter::ConnectionsFailed.name()),
            bytes_sent_per_second: per_second(Counter::BytesSent.name()),
            bytes_received_per_second: per_second(Counter::BytesReceived.name()),
            extensions: total
                .labeled(EXTENSIONS)
                .map(|(label, value)| (label.to_owned(), value))
                .collect(),
            compression_ratio_sent: compression_ratio(
                total.counter(Counter::UncompressedBytesSent.name()),
                total.counter(Counter::CompressedBytesSent.name()),
            ),
            compression_ratio_received: compression_ratio(
                total.counter(Counter::UncompressedBytesReceived.name()),
                total.counter(Counter::CompressedBytesReceived.name()),
            ),
            counters,
        }
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }
}

impl Summary {
    /// The per-step table, in scenario order; a step that counted nothing is listed empty.
    pub fn steps_of(totals: &MetricSets, step_names: &[String]) -> Vec<StepSummary> {
        step_names
            .iter()
            .map(|name| match totals.sets.get(name) {
                Some(set) => StepSummary {
                    name: name.clone(),
                    counters: set.counters.clone(),
                    latency: latency_of(set),
                },
                None => StepSummary {
                    name: name.clone(),
                    counters: BTreeMap::new(),
                    latency: BTreeMap::new(),
                },
            })
            .collect()
    }

    pub fn interval_of(interval: u64, sets: &MetricSets) -> IntervalSummary {
        let total = sets.total();
        IntervalSummary {
            interval,
            counters: total.counters.clone(),
            gauges: sets.gauges.clone(),
            latency: latency_of(&total),
        }
    }
}
