//! `--out csv=FILE`: the per-interval series, one row per second of run time, fleet totals.
//! Columns (docs/metrics.md): `interval`, every counter of the catalog, `errors.<kind>` for every
//! kind seen in the run, the gauges, then per latency histogram its count and percentiles in
//! microseconds.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use wsfleet_controller::Summary;
use wsfleet_metrics::catalog::is_error_counter;
use wsfleet_metrics::{Counter, Gauge, Hist};

const LATENCY_COLUMNS: [&str; 7] = ["count", "p50_us", "p90_us", "p95_us", "p99_us", "p999_us", "max_us"];

pub fn intervals_csv(summary: &Summary) -> String {
    let error_kinds: BTreeSet<&str> = summary
        .intervals
        .iter()
        .flat_map(|interval| interval.counters.keys())
        .filter(|name| is_error_counter(name))
        .map(String::as_str)
        .collect();
    let mut out = String::from("interval");
    for counter in Counter::ALL {
        let _ = write!(out, ",{}", counter.name());
    }
    for kind in &error_kinds {
        let _ = write!(out, ",{kind}");
    }
    for gauge in Gauge::ALL {
        let _ = write!(out, ",{}", gauge.name());
    }
    for hist in Hist::ALL {
        for column in LATENCY_COLUMNS {
            let _ = write!(out, ",{}_{column}", hist.name());
        }
    }
    out.push('\n');
    for interval in &summary.intervals {
        let _ = write!(out, "{}", interval.interval);
        for counter in Counter::ALL {
            let _ = write!(out, ",{}", interval.counters.get(counter.name()).copied().unwrap_or(0));
        }
        for kind in &error_kinds {
            let _ = write!(out, ",{}", interval.counters.get(*kind).copied().unwrap_or(0));
        }
        for gauge in Gauge::ALL {
            let _ = write!(out, ",{}", interval.gauges.get(gauge.name()).copied().unwrap_or(0));
        }
        for hist in Hist::ALL {
            match interval.latency.get(hist.name()) {
                Some(stats) => {
                    let _ = write!(
                        out,
                        ",{},{},{},{},{},{},{}",
                        stats.count,
                        stats.p50_us,
                        stats.p90_us,
                        stats.p95_us,
                        stats.p99_us,
                        stats.p999_us,
                        stats.max_us
                    );
                }
                None => out.push_str(",0,,,,,,"),
            }
        }
        out.push('\n');
    }
    out
}
