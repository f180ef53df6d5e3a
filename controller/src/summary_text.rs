//! The summary as the terminal shows it: the outcome, lost agents, the WebSocket statistics,
//! latencies, errors, thresholds and the per-step table.

use std::fmt::Write as _;

use wsfleet_metrics::{Counter, Hist, CONNECTION_SET};

use crate::human::{human_bytes, human_count, human_micros};
use crate::summary::Summary;

impl Summary {
    /// The terminal rendering.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        self.render_outcome(&mut out);
        self.render_statistics(&mut out);
        self.render_http(&mut out);
        self.render_latency(&mut out);
        self.render_errors(&mut out);
        self.render_thresholds(&mut out);
        if let Some(seek) = &self.seek {
            seek.render_text(&mut out);
        }
        self.render_steps(&mut out);
        out
    }

    /// How the run ended, the agents it lost, and its reports when some went astray.
    fn render_outcome(&self, out: &mut String) {
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
        if !self.changes.is_empty() {
            let _ = writeln!(out, "\nchanges during the run");
            for change in &self.changes {
                let _ = writeln!(out, "  from {:.1} s: {}", change.at_seconds, change.detail);
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
    }

    /// LoadRunner's WebSocket statistics: totals and rates.
    fn render_statistics(&self, out: &mut String) {
        let totals = &self.totals;
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
            out,
            "New Connections",
            totals.counter(Counter::ConnectionsOpened.name()),
            totals.new_connections_per_second,
            false,
        );
        row(
            out,
            "Failed Connections",
            totals.counter(Counter::ConnectionsFailed.name()),
            totals.failed_connections_per_second,
            false,
        );
        row(
            out,
            "Bytes Sent (wire)",
            totals.counter(Counter::BytesSent.name()),
            totals.bytes_sent_per_second,
            true,
        );
        row(
            out,
            "Bytes Received (wire)",
            totals.counter(Counter::BytesReceived.name()),
            totals.bytes_received_per_second,
            true,
        );
        let seconds = self.duration_seconds.max(1.0);
        for (label, counter, bytes) in [
            ("Payload Bytes Sent", Counter::PayloadBytesSent, true),
            ("Payload Bytes Received", Counter::PayloadBytesReceived, true),
            ("Messages Sent", Counter::MessagesSent, false),
            ("Messages Received", Counter::MessagesReceived, false),
            ("Receive Timeouts", Counter::ReceiveTimeouts, false),
            ("Iterations", Counter::Iterations, false),
            ("Iterations Failed", Counter::IterationsFailed, false),
            ("VUs Offered (open model)", Counter::VusOffered, false),
            ("VUs Started", Counter::VusStarted, false),
            ("VUs Dropped", Counter::DroppedVus, false),
        ] {
            // The open model's VU counts mean nothing for a closed run.
            let open_model_only = matches!(counter, Counter::VusOffered | Counter::VusStarted | Counter::DroppedVus);
            if open_model_only && totals.counter(Counter::VusOffered.name()) == 0 {
                continue;
            }
            let total = totals.counter(counter.name());
            row(out, label, total, total as f64 / seconds, bytes);
        }
        let _ = writeln!(
            out,
            "  {:<27} {:>10}",
            "Peak Active Connections", totals.peak_active_connections
        );
    }

    /// HTTP steps' requests, statuses and bytes, when the run made requests.
    fn render_http(&self, out: &mut String) {
        let totals = &self.totals;
        if totals.counter(Counter::HttpRequests.name()) == 0 {
            return;
        }
        let seconds = self.duration_seconds.max(1.0);
        let _ = writeln!(out, "\nHTTP statistics                total        per second");
        for (label, counter, bytes) in [
            ("Requests", Counter::HttpRequests, false),
            ("Requests Failed", Counter::HttpRequestsFailed, false),
            ("Responses 1xx", Counter::Http1xx, false),
            ("Responses 2xx", Counter::Http2xx, false),
            ("Responses 3xx", Counter::Http3xx, false),
            ("Responses 4xx", Counter::Http4xx, false),
            ("Responses 5xx", Counter::Http5xx, false),
            ("Connections Opened", Counter::HttpConnectionsOpened, false),
            ("Bytes Sent (wire)", Counter::HttpBytesSent, true),
            ("Bytes Received (wire)", Counter::HttpBytesReceived, true),
        ] {
            let total = totals.counter(counter.name());
            if total == 0 && matches!(counter, Counter::Http1xx | Counter::Http3xx | Counter::Http5xx) {
                continue;
            }
            let rate = total as f64 / seconds;
            let (total_text, rate_text) = if bytes {
                (human_bytes(total as f64), format!("{}/s", human_bytes(rate)))
            } else {
                (total.to_string(), format!("{}/s", human_count(rate)))
            };
            let _ = writeln!(out, "  {label:<27} {total_text:>10} {rate_text:>16}");
        }
    }

    /// Latency percentiles per histogram of the catalog.
    fn render_latency(&self, out: &mut String) {
        let totals = &self.totals;
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
    }

    /// Errors by kind and the close codes servers sent.
    fn render_errors(&self, out: &mut String) {
        let totals = &self.totals;
        self.render_compression(out);
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
    }

    /// permessage-deflate: what servers agreed to, and how much the payload shrank.
    fn render_compression(&self, out: &mut String) {
        let totals = &self.totals;
        if totals.extensions.is_empty() {
            return;
        }
        let _ = writeln!(out, "\npermessage-deflate agreed (connections)");
        for (agreed, count) in &totals.extensions {
            let _ = writeln!(out, "  {agreed:<62} {count:>10}");
        }
        for (label, ratio, uncompressed, compressed) in [
            (
                "sent",
                totals.compression_ratio_sent,
                Counter::UncompressedBytesSent,
                Counter::CompressedBytesSent,
            ),
            (
                "received",
                totals.compression_ratio_received,
                Counter::UncompressedBytesReceived,
                Counter::CompressedBytesReceived,
            ),
        ] {
            if let Some(ratio) = ratio {
                let _ = writeln!(
                    out,
                    "  compression ratio {label:<9} {ratio:>6.2}  ({} payload bytes in {} on the wire)",
                    totals.counter(uncompressed.name()),
                    totals.counter(compressed.name())
                );
            }
        }
    }

    /// Each threshold and whether it passed.
    fn render_thresholds(&self, out: &mut String) {
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
    }

    /// The per-step table, in scenario order.
    fn render_steps(&self, out: &mut String) {
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
                    .get(Hist::MessageLatency.name())
                    .or_else(|| step.latency.get(Hist::Handshake.name()))
                    .or_else(|| step.latency.get(Hist::PingLatency.name()))
                    .or_else(|| step.latency.get(Hist::CloseLatency.name()))
                    .or_else(|| step.latency.get(Hist::HttpDuration.name()))
                    .or_else(|| step.latency.get(Hist::AckLatency.name()))
                    .or_else(|| step.latency.get(Hist::DeliveryLatency.name()))
                    .map_or("-".to_owned(), |stats| human_micros(stats.p99_us));
                let _ = writeln!(
                    out,
                    "  {:<width$} {:>8} {:>8} {:>9} {:>9} {:>9} {:>8} {:>12}",
                    step.name,
                    count(Counter::ConnectionsOpened.name()),
                    count(Counter::ConnectionsFailed.name()),
                    count(Counter::MessagesSent.name()),
                    count(Counter::MessagesReceived.name()),
                    count(Counter::ReceiveTimeouts.name()),
                    errors,
                    p99
                );
            }
        }
    }
}
