//! The standalone HTML report of a run: every per-interval series as an inline SVG chart, the
//! summary tables, thresholds, the fleet and the scenario. One file, no external assets, so it
//! opens offline and can be attached to a CI job.

pub mod charts;

use std::fmt::Write as _;

use wsfleet_metrics::Hist;

use crate::summary::{human_bytes, human_micros, IntervalSummary, Summary};
use charts::{line_chart, Series};

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn counter_series<'a>(intervals: &[IntervalSummary], label: &'a str, name: &str) -> Series<'a> {
    Series {
        label,
        points: intervals
            .iter()
            .map(|interval| {
                (
                    interval.interval as f64 + 1.0,
                    interval.counters.get(name).copied().unwrap_or(0) as f64,
                )
            })
            .collect(),
    }
}

fn gauge_series<'a>(intervals: &[IntervalSummary], label: &'a str, name: &str) -> Series<'a> {
    Series {
        label,
        points: intervals
            .iter()
            .map(|interval| {
                (
                    interval.interval as f64 + 1.0,
                    interval.gauges.get(name).copied().unwrap_or(0) as f64,
                )
            })
            .collect(),
    }
}

fn errors_series<'a>(intervals: &[IntervalSummary], label: &'a str) -> Series<'a> {
    Series {
        label,
        points: intervals
            .iter()
            .map(|interval| {
                let errors: u64 = interval
                    .counters
                    .iter()
                    .filter(|(name, _)| name.starts_with("errors."))
                    .map(|(_, value)| value)
                    .sum();
                (interval.interval as f64 + 1.0, errors as f64)
            })
            .collect(),
    }
}

fn latency_series(intervals: &[IntervalSummary], histogram: &str) -> Vec<Series<'static>> {
    type Read = fn(&wsfleet_metrics::summary::LatencyStats) -> u64;
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
                    interval
                        .latency
                        .get(histogram)
                        .map(|stats| (interval.interval as f64 + 1.0, read(stats) as f64 / 1000.0))
                })
                .collect(),
        })
        .collect()
}

/// The report as one HTML document.
pub fn render(summary: &Summary, scenario_source: &str) -> String {
    let intervals = &summary.intervals;
    let mut charts = vec![
        line_chart(
            "New and Failed Connections/s",
            "connections / s",
            &[
                counter_series(intervals, "new", "connections_opened"),
                counter_series(intervals, "failed", "connections_failed"),
            ],
        ),
        line_chart(
            "Bytes Sent/s and Bytes Received/s (wire)",
            "bytes / s",
            &[
                counter_series(intervals, "sent", "bytes_sent"),
                counter_series(intervals, "received", "bytes_received"),
            ],
        ),
        line_chart(
            "Active connections and VUs",
            "at interval end",
            &[
                gauge_series(intervals, "connections", "active_connections"),
                gauge_series(intervals, "VUs", "active_vus"),
            ],
        ),
        line_chart(
            "Messages/s",
            "messages / s",
            &[
                counter_series(intervals, "sent", "messages_sent"),
                counter_series(intervals, "received", "messages_received"),
            ],
        ),
        line_chart(
            "Errors and receive timeouts/s",
            "events / s",
            &[
                errors_series(intervals, "errors"),
                counter_series(intervals, "receive timeouts", "receive_timeouts"),
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
                &latency_series(intervals, hist.name()),
            ));
        }
    }

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

    let totals = &summary.totals;
    let _ = write!(
        html,
        "<h2>WebSocket statistics</h2><table><tr><th>statistic</th><th>total</th><th>per second</th></tr>"
    );
    for (label, name, rate, bytes) in [
        (
            "New Connections",
            "connections_opened",
            totals.new_connections_per_second,
            false,
        ),
        (
            "Failed Connections",
            "connections_failed",
            totals.failed_connections_per_second,
            false,
        ),
        ("Bytes Sent (wire)", "bytes_sent", totals.bytes_sent_per_second, true),
        (
            "Bytes Received (wire)",
            "bytes_received",
            totals.bytes_received_per_second,
            true,
        ),
    ] {
        let total = totals.counter(name);
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

    if !summary.thresholds.is_empty() {
        let _ = write!(
            html,
            "<h2>Thresholds</h2><table><tr><th>threshold</th><th>condition</th><th>measured</th><th>result</th></tr>"
        );
        for threshold in &summary.thresholds {
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

    let _ = write!(html, "<h2>Counters</h2><table><tr><th>counter</th><th>total</th></tr>");
    for (name, value) in &totals.counters {
        let _ = write!(html, "<tr><td>{}</td><td>{value}</td></tr>", escape(name));
    }
    for (kind, value) in &totals.errors {
        let _ = write!(html, "<tr><td>errors.{}</td><td>{value}</td></tr>", escape(kind));
    }
    for (code, value) in &totals.close_codes {
        let _ = write!(html, "<tr><td>close_codes.{}</td><td>{value}</td></tr>", escape(code));
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

    let _ = write!(
        html,
        "<h2>Steps</h2><table><tr><th>step</th><th>counters</th><th>latency p99</th></tr>"
    );
    for step in &summary.steps {
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
