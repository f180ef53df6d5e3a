//! The end-of-run summary: what users read in the terminal and what `--out json` writes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use wsfleet_metrics::catalog::{CLOSE_CODES, ERRORS};
use wsfleet_metrics::summary::LatencyStats;
use wsfleet_metrics::{Counter, Hist, MetricSets, SetData, CONNECTION_SET};

pub use crate::human::{human_bytes, human_count, human_micros};
use crate::outcome::{LostAction, Outcome};

/// Version of the summary's JSON shape (docs/metrics.md). 2: thresholds. Added since, without
/// a new version (fields are only added): `lost_agents`, `reports`, `agents[].reports_dropped`.
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

    /// The terminal rendering.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let totals = &self.totals;
        let _ = writeln!(
            out,
            "\nrun {} of `{}`: {} after {:.1} s on {} agent(s)",
            self.run_id,
            self.scenario,
            self.outcome,
            self.duration_seconds,
            self.agents.len()
        );
        if !self.lost_agents.events.is_empty() {
            let _ = writeln!(out, "\nlost agents (on_agent_lost: {})", self.lost_agents.policy);
            for event in &self.lost_agents.events {
                let _ = writeln!(
                    out,
                    "  {} at {:.1} s: {}; {}",
                    event.agent, event.at_seconds, event.reason, event.detail
                );
            }
        }
        let reports = &self.reports;
        if reports.duplicates_ignored > 0 || reports.dropped_by_agents > 0 {
            let _ = writeln!(
                out,
                "reports: {} counted, {} received twice and ignored, {} dropped by agents",
                reports.accepted, reports.duplicates_ignored, reports.dropped_by_agents
            );
        }
        let _ = writeln!(out, "\nWebSocket statistics           total        per second");
        let row = |out: &mut String, label: &str, total: u64, rate: f64, bytes: bool| {
            let (total_text, rate_text) = if bytes {
                (human_bytes(total as f64), format!("{}/s", human_bytes(rate)))
            } else {
                (total.to_string(), format!("{}/s", human_count(rate)))
            };
            let _ = writeln!(out, "  {label:<27} {total_text:>10} {rate_text:>16}");
        };
        row(
            &mut out,
            "New Connections",
            totals.counter("connections_opened"),
            totals.new_connections_per_second,
            false,
        );
        row(
            &mut out,
            "Failed Connections",
            totals.counter("connections_failed"),
            totals.failed_connections_per_second,
            false,
        );
        row(
            &mut out,
            "Bytes Sent (wire)",
            totals.counter("bytes_sent"),
            totals.bytes_sent_per_second,
            true,
        );
        row(
            &mut out,
            "Bytes Received (wire)",
            totals.counter("bytes_received"),
            totals.bytes_received_per_second,
            true,
        );
        let seconds = self.duration_seconds.max(1.0);
        for (label, name, bytes) in [
            ("Payload Bytes Sent", "payload_bytes_sent", true),
            ("Payload Bytes Received", "payload_bytes_received", true),
            ("Messages Sent", "messages_sent", false),
            ("Messages Received", "messages_received", false),
            ("Receive Timeouts", "receive_timeouts", false),
            ("Iterations", "iterations", false),
            ("Iterations Failed", "iterations_failed", false),
            ("VUs Offered (open model)", "vus_offered", false),
            ("VUs Started", "vus_started", false),
            ("VUs Dropped", "dropped_vus", false),
        ] {
            if name.contains("vus") && totals.counter("vus_offered") == 0 {
                continue;
            }
            let total = totals.counter(name);
            row(&mut out, label, total, total as f64 / seconds, bytes);
        }
        let _ = writeln!(
            out,
            "  {:<27} {:>10}",
            "Peak Active Connections", totals.peak_active_connections
        );
        if !totals.latency.is_empty() {
            let _ = writeln!(
                out,
                "\nlatency               count      p50      p90      p95      p99    p99.9      max"
            );
            for hist in Hist::ALL {
                if let Some(stats) = totals.latency.get(hist.name()) {
                    let _ = writeln!(
                        out,
                        "  {:<16} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
                        hist.name(),
                        stats.count,
                        human_micros(stats.p50_us),
                        human_micros(stats.p90_us),
                        human_micros(stats.p95_us),
                        human_micros(stats.p99_us),
                        human_micros(stats.p999_us),
                        human_micros(stats.max_us)
                    );
                }
            }
        }
        if !totals.errors.is_empty() {
            let _ = writeln!(out, "\nerrors");
            for (kind, count) in &totals.errors {
                let _ = writeln!(out, "  {kind:<27} {count:>10}");
            }
        }
        if !totals.close_codes.is_empty() {
            let _ = writeln!(out, "\nclose codes from the server");
            for (code, count) in &totals.close_codes {
                let _ = writeln!(out, "  {code:<27} {count:>10}");
            }
        }
        if !self.thresholds.is_empty() {
            let _ = writeln!(out, "\nthresholds");
            for threshold in &self.thresholds {
                let mark = if threshold.passed { "✓ pass" } else { "✗ FAIL" };
                let aborted = if threshold.aborted_run {
                    "  (stopped the run)"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "  {mark}  {:<40} {:<12} measured {}{aborted}",
                    threshold.name, threshold.condition, threshold.display
                );
            }
        }
        if !self.steps.is_empty() {
            let width = self
                .steps
                .iter()
                .map(|step| step.name.chars().count())
                .max()
                .unwrap_or(0)
                .max(20);
            let _ = writeln!(
                out,
                "\n{:<width$}    conns   failed  msgs out   msgs in  timeouts   errors  p99 latency",
                "steps",
                width = width + 3
            );
            for step in &self.steps {
                if step.name == CONNECTION_SET {
                    continue;
                }
                let count = |name: &str| step.counters.get(name).copied().unwrap_or(0);
                let errors: u64 = step
                    .counters
                    .iter()
                    .filter(|(name, _)| name.starts_with("errors."))
                    .map(|(_, v)| v)
                    .sum();
                let p99 = step
                    .latency
                    .get("message_latency")
                    .or_else(|| step.latency.get("handshake"))
                    .or_else(|| step.latency.get("ping_latency"))
                    .or_else(|| step.latency.get("close_latency"))
                    .map_or("-".to_owned(), |stats| human_micros(stats.p99_us));
                let _ = writeln!(
                    out,
                    "  {:<width$} {:>8} {:>8} {:>9} {:>9} {:>9} {:>8} {:>12}",
                    step.name,
                    count("connections_opened"),
                    count("connections_failed"),
                    count("messages_sent"),
                    count("messages_received"),
                    count("receive_timeouts"),
                    errors,
                    p99
                );
            }
        }
        out
    }
}
