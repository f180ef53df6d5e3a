//! `/metrics`: the live run (or the last one) and the fleet in Prometheus text format
//! (docs/metrics.md). Series are named after the metric catalog: `wsfleet_<counter>_total`,
//! `wsfleet_<family>_total` for labeled counters, `wsfleet_<gauge>` and `wsfleet_<histogram>_seconds`.

use std::fmt::Write as _;

use wsfleet_metrics::catalog::{CLOSE_CODES, ERRORS};
use wsfleet_metrics::summary::LatencyStats;
use wsfleet_metrics::{Counter, Hist, SetData, CONNECTION_SET};

use super::state::HttpState;
use crate::live::LiveRun;

/// Help text for each counter, shown by Prometheus tooling.
fn counter_help(counter: Counter) -> &'static str {
    match counter {
        Counter::ConnectionsOpened => "WebSocket handshakes completed with 101 (New Connections).",
        Counter::ConnectionsFailed => "Connection attempts that did not reach an open WebSocket (Failed Connections).",
        Counter::BytesSent => "Bytes written to sockets, handshakes and framing included (Bytes Sent).",
        Counter::BytesReceived => "Bytes read from sockets, handshakes and framing included (Bytes Received).",
        _ => "See docs/metrics.md.",
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn labels(run: &str, step: &str) -> String {
    if step == CONNECTION_SET {
        format!("run=\"{}\"", escape(run))
    } else {
        format!("run=\"{}\",step=\"{}\"", escape(run), escape(step))
    }
}

/// The Prometheus text exposition of the live run and the fleet.
pub fn render_prometheus(state: &HttpState) -> String {
    let mut out = String::new();
    let agents = state.registry.agents();
    let _ = writeln!(
        out,
        "# HELP wsfleet_agents Agents attached to this controller.\n# TYPE wsfleet_agents gauge\nwsfleet_agents {}",
        agents.len()
    );
    let _ = writeln!(out, "# HELP wsfleet_agent_max_connections Connections each agent can hold.\n# TYPE wsfleet_agent_max_connections gauge");
    for agent in &agents {
        let _ = writeln!(
            out,
            "wsfleet_agent_max_connections{{agent=\"{}\",hostname=\"{}\",cores=\"{}\"}} {}",
            escape(&agent.id),
            escape(&agent.hostname),
            agent.capacity.cores,
            agent.capacity.max_connections
        );
    }
    let Some(run) = state.live.snapshot() else {
        let _ = writeln!(out, "# HELP wsfleet_run_active Whether a run is in progress.\n# TYPE wsfleet_run_active gauge\nwsfleet_run_active 0");
        return out;
    };
    let _ = writeln!(
        out,
        "# HELP wsfleet_run_active Whether a run is in progress.\n# TYPE wsfleet_run_active gauge\nwsfleet_run_active{{run=\"{}\",scenario=\"{}\"}} {}",
        escape(&run.run_id),
        escape(&run.scenario),
        u8::from(run.running)
    );
    let _ = writeln!(
        out,
        "# HELP wsfleet_run_seconds Seconds of run time reported so far.\n# TYPE wsfleet_run_seconds gauge\nwsfleet_run_seconds{{run=\"{}\"}} {}",
        escape(&run.run_id),
        run.last_interval.as_ref().map_or(0, |(interval, _)| interval + 1)
    );
    write_counters(&mut out, &run);
    write_gauges(&mut out, &run);
    write_latencies(&mut out, &run);
    out
}

/// Counters: one series per metric set (step), so sums over `step` give the totals; then the
/// labeled families (`errors`, `close_codes`) with their label.
fn write_counters(out: &mut String, run: &LiveRun) {
    let mut labeled: Vec<(String, String, u64)> = Vec::new();
    for counter in Counter::ALL {
        let name = counter.name();
        let _ = writeln!(
            out,
            "# HELP wsfleet_{name}_total {}\n# TYPE wsfleet_{name}_total counter",
            counter_help(counter)
        );
        let mut any = false;
        for (step, set) in &run.totals.sets {
            if let Some(value) = set.counters.get(name) {
                any = true;
                let _ = writeln!(out, "wsfleet_{name}_total{{{}}} {value}", labels(&run.run_id, step));
            }
        }
        if !any {
            let _ = writeln!(out, "wsfleet_{name}_total{{{}}} 0", labels(&run.run_id, CONNECTION_SET));
        }
    }
    for (step, set) in &run.totals.sets {
        for (name, value) in &set.counters {
            if let Some((family, label)) = name.split_once('.') {
                labeled.push((
                    family.to_owned(),
                    format!(
                        "{},{}=\"{}\"",
                        labels(&run.run_id, step),
                        family_label(family),
                        escape(label)
                    ),
                    *value,
                ));
            }
        }
    }
    labeled.sort();
    let mut last_family = String::new();
    for (family, series_labels, value) in labeled {
        if family != last_family {
            let _ = writeln!(
                out,
                "# HELP wsfleet_{family}_total See docs/metrics.md.\n# TYPE wsfleet_{family}_total counter"
            );
            last_family = family.clone();
        }
        let _ = writeln!(out, "wsfleet_{family}_total{{{series_labels}}} {value}");
    }
}

/// Gauges: the last interval's fleet value, and the peak.
fn write_gauges(out: &mut String, run: &LiveRun) {
    if let Some((_, last)) = &run.last_interval {
        for (name, value) in &last.gauges {
            let help = if wsfleet_metrics::Gauge::ALL
                .iter()
                .any(|gauge| gauge.high_water_name() == name)
            {
                "Highest value within the last interval, summed over agents."
            } else {
                "Fleet value at the end of the last interval."
            };
            let _ = writeln!(out, "# HELP wsfleet_{name} {help}\n# TYPE wsfleet_{name} gauge");
            let _ = writeln!(out, "wsfleet_{name}{{run=\"{}\"}} {value}", escape(&run.run_id));
        }
    }
    for (name, value) in &run.peak_gauges {
        let _ = writeln!(
            out,
            "# HELP wsfleet_{name}_peak Highest fleet value within an interval (agents' high-water marks summed).\n# TYPE wsfleet_{name}_peak gauge"
        );
        let _ = writeln!(out, "wsfleet_{name}_peak{{run=\"{}\"}} {value}", escape(&run.run_id));
    }
}

/// Latencies as summaries over the whole run, in seconds, per step.
fn write_latencies(out: &mut String, run: &LiveRun) {
    for hist in Hist::ALL {
        let name = hist.name();
        let series: Vec<(&String, &SetData)> = run
            .totals
            .sets
            .iter()
            .filter(|(_, set)| set.histograms.contains_key(name))
            .collect();
        if series.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP wsfleet_{name}_seconds Latency over the run (docs/metrics.md).\n# TYPE wsfleet_{name}_seconds summary");
        for (step, set) in series {
            let Some(histogram) = set.histograms.get(name) else {
                continue;
            };
            let stats = LatencyStats::of(histogram);
            let base = labels(&run.run_id, step);
            for (quantile, value) in [
                ("0.5", stats.p50_us),
                ("0.9", stats.p90_us),
                ("0.95", stats.p95_us),
                ("0.99", stats.p99_us),
                ("0.999", stats.p999_us),
                ("1", stats.max_us),
            ] {
                let _ = writeln!(
                    out,
                    "wsfleet_{name}_seconds{{{base},quantile=\"{quantile}\"}} {}",
                    value as f64 / 1e6
                );
            }
            let _ = writeln!(
                out,
                "wsfleet_{name}_seconds_sum{{{base}}} {}",
                stats.mean_us * stats.count as f64 / 1e6
            );
            let _ = writeln!(out, "wsfleet_{name}_seconds_count{{{base}}} {}", stats.count);
        }
    }
}

fn family_label(family: &str) -> &str {
    match family {
        ERRORS => "kind",
        CLOSE_CODES => "code",
        _ => "label",
    }
}
