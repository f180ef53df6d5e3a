//! Thresholds: each `METRIC[{step=NAME}].STAT: CONDITION` key and condition parsed into a
//! [`Threshold`], the metric checked against the catalog and the step against the scenario's.

use std::time::Duration;

use wsfleet_metrics::catalog::split_labeled;

use crate::duration::parse_duration;
use crate::error::{closest, Problems};
use crate::raw::RawThreshold;
use crate::thresholds::{
    Comparison, Stat, Threshold, Unit, ALIASES, COUNTERS, FAILURE_RATIOS, FAILURE_SHARES, GAUGES, HISTOGRAMS,
};

fn canonical_metric(name: &str) -> &str {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, real)| real)
}

/// Validates every threshold; problems are located at `thresholds.KEY`.
pub(super) fn validate(
    raw: &std::collections::BTreeMap<String, RawThreshold>,
    step_names: &[String],
    problems: &mut Problems<'_>,
) -> Vec<Threshold> {
    let mut thresholds = Vec::new();
    for (key, value) in raw {
        let field = format!("thresholds.{key}");
        let (condition, abort_on_fail, delay) = match value {
            RawThreshold::Condition(condition) => (condition.clone(), false, None),
            RawThreshold::Full(spec) => (spec.condition.clone(), spec.abort_on_fail, spec.delay.clone()),
        };
        let delay = match delay.as_deref().map(parse_duration) {
            None => Duration::ZERO,
            Some(Ok(delay)) => delay,
            Some(Err(message)) => {
                problems.add(&format!("{field}.delay"), message, None);
                Duration::ZERO
            }
        };
        match parse_one(key, &condition, step_names) {
            Ok(mut threshold) => {
                threshold.abort_on_fail = abort_on_fail;
                threshold.delay = delay;
                thresholds.push(threshold);
            }
            Err((message, hint)) => problems.add_at_key(&field, message, hint),
        }
    }
    thresholds
}

type ParseError = (String, Option<String>);

fn parse_one(key: &str, condition: &str, step_names: &[String]) -> Result<Threshold, ParseError> {
    // METRIC[{step=NAME}].STAT
    let Some((metric_part, stat_text)) = split_key(key) else {
        return Err((
            format!("`{key}` is not METRIC.STAT"),
            Some("write e.g. `message_latency.p99` or `connections_failed.rate`".into()),
        ));
    };
    let (metric_name, step) = match metric_part.split_once('{') {
        None => (metric_part, None),
        Some((name, scope)) => {
            let Some(step) = scope.strip_suffix('}').and_then(|scope| scope.strip_prefix("step=")) else {
                return Err((
                    format!("`{metric_part}` has a bad scope"),
                    Some("write `METRIC{step=STEP}.STAT`".into()),
                ));
            };
            let step = step.trim_matches(|c| c == '"' || c == '\'');
            if !step_names.iter().any(|name| name == step) {
                let hint = closest(step, step_names.iter().map(String::as_str))
                    .map(|close| format!("did you mean `{close}`?"));
                return Err((format!("no step is named `{step}`"), hint));
            }
            (name, Some(step.to_owned()))
        }
    };
    let metric = canonical_metric(metric_name);
    let kind = if COUNTERS.contains(&metric) || split_labeled(metric).is_some() {
        "counter"
    } else if HISTOGRAMS.contains(&metric) {
        "histogram"
    } else if GAUGES.contains(&metric) {
        "gauge"
    } else {
        let candidates = COUNTERS
            .iter()
            .chain(HISTOGRAMS)
            .chain(GAUGES)
            .copied()
            .chain(ALIASES.iter().map(|(alias, _)| *alias));
        let hint = closest(metric, candidates).map(|close| format!("did you mean `{close}`?"));
        return Err((
            format!("unknown metric `{metric_name}`"),
            hint.or_else(|| Some("see docs/metrics.md for the names".into())),
        ));
    };
    let stat = match (kind, stat_text) {
        ("counter", "count") => Stat::Count,
        ("counter", "per_second") => Stat::PerSecond,
        ("counter", "rate")
            if FAILURE_RATIOS
                .iter()
                .chain(FAILURE_SHARES)
                .any(|(failure, _)| *failure == metric) =>
        {
            Stat::Ratio
        }
        ("counter", "rate") => Stat::PerSecond,
        ("histogram", "min") => Stat::Min,
        ("histogram", "max") => Stat::Max,
        ("histogram", "mean" | "avg") => Stat::Mean,
        ("histogram", "count") => Stat::Count,
        ("histogram", percentile) if percentile.starts_with('p') => {
            let digits = &percentile[1..];
            let value = if digits == "999" {
                Some(99.9)
            } else {
                digits.parse::<f64>().ok()
            };
            match value.filter(|value| (0.0..=100.0).contains(value)) {
                Some(value) => Stat::Percentile(value),
                None => {
                    return Err((
                        format!("`{percentile}` is not a percentile"),
                        Some("write p50, p90, p95, p99, p99.9 or p999".into()),
                    ))
                }
            }
        }
        ("gauge", "max" | "peak") => Stat::Peak,
        (kind, stat) => {
            let allowed = match kind {
                "counter" => "count, rate, per_second",
                "histogram" => "p50, p90, p95, p99, p99.9, min, max, mean, count",
                _ => "max",
            };
            return Err((
                format!("`{stat}` is not a statistic of {kind} `{metric}`"),
                Some(format!("use one of: {allowed}")),
            ));
        }
    };
    let (comparison, limit_text) = parse_condition(condition)?;
    let (limit, unit) = parse_limit(limit_text, &stat)?;
    Ok(Threshold {
        name: key.to_owned(),
        condition: condition.trim().to_owned(),
        metric: metric.to_owned(),
        step,
        stat,
        comparison,
        limit,
        unit,
        abort_on_fail: false,
        delay: Duration::ZERO,
    })
}

/// Splits `METRIC[{scope}].STAT` at the dot that ends the metric: metric names have no dots
/// except the labeled families (`errors.refused`), and stats may (`p99.9`).
fn split_key(key: &str) -> Option<(&str, &str)> {
    let mut start = key.rfind('}').map_or(0, |close| close + 1);
    if start == 0 {
        if let Some((family, _)) = split_labeled(key) {
            start = family.len() + 1;
        }
    }
    let dot = start + key[start..].find('.')?;
    Some((&key[..dot], &key[dot + 1..]))
}

fn parse_condition(condition: &str) -> Result<(Comparison, &str), ParseError> {
    let text = condition.trim();
    for (symbol, comparison) in [
        ("<=", Comparison::LessOrEqual),
        (">=", Comparison::GreaterOrEqual),
        ("==", Comparison::Equal),
        ("!=", Comparison::NotEqual),
        ("<", Comparison::Less),
        (">", Comparison::Greater),
    ] {
        if let Some(rest) = text.strip_prefix(symbol) {
            return Ok((comparison, rest.trim()));
        }
    }
    Err((
        format!("`{condition}` is not a condition"),
        Some("write e.g. `< 50ms`, `<= 1%` or `> 10000`".into()),
    ))
}

fn parse_limit(text: &str, stat: &Stat) -> Result<(f64, Unit), ParseError> {
    let latency = matches!(stat, Stat::Percentile(_) | Stat::Min | Stat::Max | Stat::Mean);
    if latency {
        if let Ok(duration) = parse_duration(&text.replace('µ', "u")) {
            return Ok((duration.as_secs_f64() * 1e6, Unit::Micros));
        }
        return Err((
            format!("`{text}` is not a duration"),
            Some("latency limits take a unit: `50ms`, `1.5s`, `800us`".into()),
        ));
    }
    if let Some(percent) = text.strip_suffix('%') {
        if *stat != Stat::Ratio {
            return Err(("a percentage only fits a failure ratio (`rate` of connections_failed, iterations_failed, receive_timeouts)".into(), None));
        }
        return match percent.trim().parse::<f64>() {
            Ok(value) => Ok((value / 100.0, Unit::Ratio)),
            Err(_) => Err((format!("`{text}` is not a percentage"), None)),
        };
    }
    match text.parse::<f64>() {
        Ok(value) if *stat == Stat::Ratio => Ok((value, Unit::Ratio)),
        Ok(value) => Ok((value, Unit::Plain)),
        Err(_) => Err((format!("`{text}` is not a number"), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::positions::Positions;

    fn parse(key: &str, condition: &str) -> Result<Threshold, ParseError> {
        parse_one(key, condition, &["echo".to_owned(), "connect".to_owned()])
    }

    #[test]
    fn parses_the_documented_forms() {
        let failed = parse("failed_connections.rate", "< 1%").unwrap();
        assert_eq!(
            (failed.metric.as_str(), &failed.stat, failed.comparison, failed.limit),
            ("connections_failed", &Stat::Ratio, Comparison::Less, 0.01)
        );
        let latency = parse("message_latency.p99", "< 50ms").unwrap();
        assert_eq!(
            (latency.stat.clone(), latency.limit, latency.unit),
            (Stat::Percentile(99.0), 50_000.0, Unit::Micros)
        );
        let count = parse("messages_received.count", "> 10000").unwrap();
        assert_eq!(
            (count.stat.clone(), count.comparison, count.limit),
            (Stat::Count, Comparison::Greater, 10_000.0)
        );
        assert_eq!(
            parse("message_latency.p99.9", "< 1s").unwrap().stat,
            Stat::Percentile(99.9)
        );
        let scoped = parse("message_latency{step=echo}.p99.9", "<= 2s").unwrap();
        assert_eq!(
            (scoped.step.as_deref(), scoped.stat.clone(), scoped.limit),
            (Some("echo"), Stat::Percentile(99.9), 2e6)
        );
        let peak = parse("active_connections.max", ">= 100").unwrap();
        assert_eq!(peak.stat, Stat::Peak);
        let errors = parse("errors.refused.count", "== 0");
        assert!(errors.is_ok(), "{errors:?}");
    }

    #[test]
    fn explains_mistakes() {
        let (message, hint) = parse("mesage_latency.p99", "< 1s").unwrap_err();
        assert!(message.contains("unknown metric"));
        assert_eq!(hint.as_deref(), Some("did you mean `message_latency`?"));
        let (message, _) = parse("message_latency.p99", "< 50").unwrap_err();
        assert!(message.contains("not a duration"));
        let (message, _) = parse("message_latency.rate", "< 5").unwrap_err();
        assert!(message.contains("not a statistic"));
        let (message, _) = parse("messages_sent.count", "about 5").unwrap_err();
        assert!(message.contains("not a condition"));
        let (message, hint) = parse("message_latency{step=ecko}.p99", "< 1s").unwrap_err();
        assert!(message.contains("no step"));
        assert_eq!(hint.as_deref(), Some("did you mean `echo`?"));
    }

    #[test]
    fn problems_are_located_at_the_key() {
        let source = "thresholds:\n  message_latency.p99: '< 50'\n";
        let positions = Positions::index(source);
        let mut problems = Problems::new("s.yaml", &positions);
        let raw = std::collections::BTreeMap::from([(
            "message_latency.p99".to_owned(),
            RawThreshold::Condition("< 50".into()),
        )]);
        validate(&raw, &[], &mut problems);
        assert_eq!(problems.found.len(), 1);
        assert_eq!(problems.found[0].location.map(|l| l.line), Some(2));
    }
}
