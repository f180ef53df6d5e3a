//! The standalone HTML report of a run: every per-interval series as an inline SVG chart, the
//! summary tables, thresholds, the fleet and the scenario. One file, no external assets, so it
//! opens offline and can be attached to a CI job.

pub mod charts;
mod seek;
pub mod series;

use std::fmt::Write as _;

use wsfleet_metrics::catalog::{Counter, Gauge, Hist, CLOSE_CODES, ERRORS};

use crate::summary::{human_bytes, human_micros, IntervalSummary, StepSummary, Summary, Totals};
use crate::thresholds::ThresholdResult;
use charts::{line_chart_with_marks, Series};

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report as one HTML document.
pub fn render(summary: &Summary, scenario_source: &str) -> String {
    // The operator's changes are marked on every chart.
    let marks: Vec<f64> = summary.changes.iter().map(|change| change.at_seconds).collect();
    let charts = charts(&summary.intervals, &marks);
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>wsfleet run {run} — {scenario}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}}table{{border-collapse:collapse;margin:.5em 0 1.5em}}
th,td{{border:1px solid #ddd;padding:4px 10px;text-align:right}}th:first-child,td:first-child{{text-align:left}}th{{background:#f4f4f4}}
.pass{{color:#007a4d}}.fail{{color:#b00020;font-weight:bold}}pre{{background:#f7f7f7;padding:1em;overflow:auto}}.charts svg{{display:block;margin:.5em 0}}</style></head><body>
<h1>wsfleet run <code>{run}</code></h1><p>Scenario <b>{scenario}</b>: {outcome} after {duration:.1} s on {agents} agent(s).</p>",
        run = escape(&summary.run_id),
        scenario = escape(&summary.scenario),
        outcome = escape(&summary.outcome.to_string()),
        duration = summary.duration_seconds,
        agents = summary.agents.len(),
    );
    write_statistics(&mut html, &summary.totals);
    write_thresholds(&mut html, &summary.thresholds);
    seek::write_seek(&mut html, summary.seek.as_ref());
    write_changes(&mut html, &summary.changes);
    write_totals(&mut html, &summary.totals);
    write_steps(&mut html, &summary.steps);
    html.push_str("<h2>Series</h2><div class=\"charts\">");
    for chart in charts {
        html.push_str(&chart);
    }
    html.push_str("</div>");

    let _ = write!(html, "<h2>Fleet</h2><table><tr><th>agent</th><th>host</th><th>VUs</th><th>intervals reported</th><th>state</th></tr>");
    for agent in &summary.agents {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&agent.id),
            escape(&agent.hostname),
            agent.vus,
            agent.intervals_reported,
            escape(&agent.state)
        );
    }
    html.push_str("</table>");
    let _ = writeln!(
        html,
        "<h2>Scenario</h2><pre>{}</pre></body></html>",
        escape(scenario_source)
    );
    html
}

/// The operator's changes while the run ran, in the order made (nothing when none).
fn write_changes(html: &mut String, changes: &[crate::run::ChangeEvent]) {
    if changes.is_empty() {
        return;
    }
    html.push_str("<h2>Changes during the run</h2><table><tr><th>from</th><th>part</th><th>change</th></tr>");
    for change in changes {
        let _ = write!(
            html,
            "<tr><td>{:.1} s</td><td>{}</td><td>{}</td></tr>",
            change.at_seconds,
            escape(&change.part),
            escape(&change.detail)
        );
    }
    html.push_str("</table>");
}

/// Every per-interval chart: the WebSocket statistics, then each latency measured, with the
/// operator's changes as dashed marks.
fn charts(intervals: &[IntervalSummary], marks: &[f64]) -> Vec<String> {
    let line_chart = |title: &str, unit: &str, series: &[Series<'_>]| line_chart_with_marks(title, unit, series, marks);
    let mut charts = vec![
        line_chart(
            "New and Failed Connections/s",
            "connections / s",
            &[
                series::counter(intervals, "new", Counter::ConnectionsOpened),
                series::counter(intervals, "failed", Counter::ConnectionsFailed),
            ],
        ),
        line_chart(
            "Bytes Sent/s and Bytes Received/s (wire)",
            "bytes / s",
            &[
                series::counter(intervals, "sent", Counter::BytesSent),
                series::counter(intervals, "received", Counter::BytesReceived),
            ],
        ),
        line_chart(
            "Active connections and VUs",
            "at interval end",
            &[
                series::gauge(intervals, "connections", Gauge::ActiveConnections),
                series::gauge(intervals, "VUs", Gauge::ActiveVus),
            ],
        ),
        line_chart(
            "Messages/s",
            "messages / s",
            &[
                series::counter(intervals, "sent", Counter::MessagesSent),
                series::counter(intervals, "received", Counter::MessagesReceived),
            ],
        ),
        line_chart(
            "Errors and receive timeouts/s",
            "events / s",
            &[
                series::errors(intervals, "errors"),
                series::counter(intervals, "receive timeouts", Counter::ReceiveTimeouts),
            ],
        ),
    ];
    for hist in Hist::ALL {
        if intervals
            .iter()
            .any(|interval| interval.latency.contains_key(hist.name()))
        {
            charts.push(line_chart(
                &format!("{} latency", hist.name()),
                "milliseconds",
                &series::latency(intervals, hist),
            ));
        }
    }
    charts
}

/// LoadRunner's WebSocket statistics: totals and rates.
fn write_statistics(html: &mut String, totals: &Totals) {
    let _ = write!(
        html,
        "<h2>WebSocket statistics</h2><table><tr><th>statistic</th><th>total</th><th>per second</th></tr>"
    );
    for (label, counter, rate, bytes) in [
        (
            "New Connections",
            Counter::ConnectionsOpened,
            totals.new_connections_per_second,
            false,
        ),
        (
            "Failed Connections",
            Counter::ConnectionsFailed,
            totals.failed_connections_per_second,
            false,
        ),
        (
            "Bytes Sent (wire)",
            Counter::BytesSent,
            totals.bytes_sent_per_second,
            true,
        ),
        (
            "Bytes Received (wire)",
            Counter::BytesReceived,
            totals.bytes_received_per_second,
            true,
        ),
    ] {
        let total = totals.counter(counter.name());
        let (total, rate) = if bytes {
            (human_bytes(total as f64), format!("{}/s", human_bytes(rate)))
        } else {
            (total.to_string(), format!("{rate:.1}/s"))
        };
        let _ = write!(html, "<tr><td>{label}</td><td>{total}</td><td>{rate}</td></tr>");
    }
    let _ = write!(
        html,
        "<tr><td>Peak active connections</td><td>{}</td><td></td></tr></table>",
        totals.peak_active_connections
    );
}

fn write_thresholds(html: &mut String, thresholds: &[ThresholdResult]) {
    if !thresholds.is_empty() {
        let _ = write!(
            html,
            "<h2>Thresholds</h2><table><tr><th>threshold</th><th>condition</th><th>measured</th><th>result</th></tr>"
        );
        for threshold in thresholds {
            let (class, result) = if threshold.passed {
                ("pass", "pass")
            } else {
                ("fail", "FAIL")
            };
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{result}{}</td></tr>",
                escape(&threshold.name),
                escape(&threshold.condition),
                escape(&threshold.display),
                if threshold.aborted_run {
                    " (stopped the run)"
                } else {
                    ""
                }
            );
        }
        html.push_str("</table>");
    }
}

/// Every counter's total, then the latency statistics of the run.
fn write_totals(html: &mut String, totals: &Totals) {
    let _ = write!(html, "<h2>Counters</h2><table><tr><th>counter</th><th>total</th></tr>");
    for (name, value) in &totals.counters {
        let _ = write!(html, "<tr><td>{}</td><td>{value}</td></tr>", escape(name));
    }
    for (kind, value) in &totals.errors {
        let _ = write!(html, "<tr><td>{ERRORS}.{}</td><td>{value}</td></tr>", escape(kind));
    }
    for (code, value) in &totals.close_codes {
        let _ = write!(html, "<tr><td>{CLOSE_CODES}.{}</td><td>{value}</td></tr>", escape(code));
    }
    html.push_str("</table>");

    if !totals.latency.is_empty() {
        let _ = write!(html, "<h2>Latency</h2><table><tr><th>histogram</th><th>count</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th></tr>");
        for (name, stats) in &totals.latency {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(name),
                stats.count,
                human_micros(stats.p50_us),
                human_micros(stats.p90_us),
                human_micros(stats.p95_us),
                human_micros(stats.p99_us),
                human_micros(stats.p999_us),
                human_micros(stats.max_us)
            );
        }
        html.push_str("</table>");
    }
}

fn write_steps(html: &mut String, steps: &[StepSummary]) {
    let _ = write!(
        html,
        "<h2>Steps</h2><table><tr><th>step</th><th>counters</th><th>latency p99</th></tr>"
    );
    for step in steps {
        let counters: Vec<String> = step
            .counters
            .iter()
            .map(|(name, value)| format!("{}={value}", escape(name)))
            .collect();
        let latency: Vec<String> = step
            .latency
            .iter()
            .map(|(name, stats)| format!("{} {}", escape(name), human_micros(stats.p99_us)))
            .collect();
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&step.name),
            counters.join(" "),
            latency.join(", ")
        );
    }
    html.push_str("</table>");
}
