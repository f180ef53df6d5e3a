//! A goal seek in the HTML report: the verdict, a chart of each step's load and of its message
//! latency, and the table of every step with its figures and thresholds.

use std::fmt::Write as _;

use super::charts::{line_chart_with_marks, Series};
use super::escape;
use crate::run::seek::SeekSummary;
use crate::summary::human_micros;

/// The seek's section (nothing when the run did not seek).
pub fn write_seek(html: &mut String, seek: Option<&SeekSummary>) {
    let Some(seek) = seek else { return };
    let _ = write!(
        html,
        "<h2>Goal seek</h2><p>{} from {}, +{} a step up to {}, {} s steps after {} s of warm-up, {} bisection round(s): <b>{}</b>.</p>",
        escape(&seek.measure),
        seek.start,
        seek.step,
        seek.max,
        seek.interval_seconds,
        seek.warmup_seconds,
        seek.refine,
        escape(&seek.verdict())
    );
    // Each step as a level over its own seconds; the step starts are marked.
    let mut load = Vec::new();
    let mut latency = Vec::new();
    for step in &seek.steps {
        let (from, to) = (step.from_seconds as f64, (step.from_seconds + step.seconds) as f64);
        load.extend([(from, step.load), (to, step.load)]);
        if let Some(stats) = &step.message_latency {
            let p95 = stats.p95_us as f64 / 1000.0;
            latency.extend([(from, p95), (to, p95)]);
        }
    }
    let marks: Vec<f64> = seek.steps.iter().map(|step| step.from_seconds as f64).collect();
    let unit = if seek.measure == "vus" { "VUs" } else { "arrivals / s" };
    html.push_str("<div class=\"charts\">");
    html.push_str(&line_chart_with_marks(
        "Goal seek: load of each step",
        unit,
        &[Series {
            label: "load",
            points: load,
        }],
        &marks,
    ));
    if !latency.is_empty() {
        html.push_str(&line_chart_with_marks(
            "Goal seek: message latency p95 of each step",
            "milliseconds",
            &[Series {
                label: "p95",
                points: latency,
            }],
            &marks,
        ));
    }
    html.push_str("</div><table><tr><th>step</th><th>load</th><th>phase</th><th>from</th><th>received/s</th><th>iterations/s</th><th>errors</th><th>latency p95</th><th>thresholds</th><th>verdict</th></tr>");
    for (index, step) in seek.steps.iter().enumerate() {
        let (class, verdict) = if step.passed {
            ("pass", "pass")
        } else {
            ("fail", "FAIL")
        };
        let thresholds: Vec<String> = step
            .thresholds
            .iter()
            .map(|result| {
                format!(
                    "{} {} ({})",
                    escape(&result.name),
                    escape(&result.display),
                    if result.passed { "pass" } else { "fail" }
                )
            })
            .collect();
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} s</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{verdict}</td></tr>",
            index + 1,
            escape(&seek.load_words(step.load)),
            escape(&step.phase),
            step.from_seconds,
            step.messages_received_per_second,
            step.iterations_per_second,
            step.errors,
            step.message_latency.as_ref().map_or_else(|| "-".to_owned(), |stats| human_micros(stats.p95_us)),
            thresholds.join(", ")
        );
    }
    html.push_str("</table>");
}
