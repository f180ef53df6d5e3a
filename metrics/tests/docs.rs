//! docs/metrics.md defines every entry of the catalog: a metric added to `catalog.rs` without
//! its row in the reference fails here, with the names that are missing.

use std::collections::BTreeSet;

use wsfleet_metrics::catalog::{Counter, ErrorKind, Gauge, Hist, RECEIVE_TIMEOUT};

const METRICS_MD: &str = include_str!("../../docs/metrics.md");

/// The `code` spans in the table rows of the sections titled `titles` (`## TITLE`).
fn names_in_tables(titles: &[&str]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut inside = false;
    for line in METRICS_MD.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            inside = titles.contains(&title.trim());
            continue;
        }
        if inside && line.starts_with('|') {
            names.extend(line.split('`').skip(1).step_by(2).map(str::to_owned));
        }
    }
    names
}

fn missing<'a>(section: &[&str], catalog: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let documented = names_in_tables(section);
    assert!(!documented.is_empty(), "docs/metrics.md has no table under {section:?}");
    catalog.into_iter().filter(|name| !documented.contains(*name)).collect()
}

#[test]
fn docs_list_every_catalog_entry() {
    let missing: Vec<(&str, Vec<&str>)> = [
        (
            "counters",
            missing(&["LoadRunner's WebSocket Statistics", "Counters"], Counter::NAMES),
        ),
        ("histograms", missing(&["Latency histograms"], Hist::NAMES)),
        ("gauges", missing(&["Gauges"], Gauge::NAMES)),
        (
            "error kinds",
            missing(&["Error kinds"], ErrorKind::NAMES.into_iter().chain([RECEIVE_TIMEOUT])),
        ),
    ]
    .into_iter()
    .filter(|(_, names)| !names.is_empty())
    .collect();
    assert!(
        missing.is_empty(),
        "docs/metrics.md does not define these catalog entries: {missing:?}"
    );
}

#[test]
fn the_check_finds_a_name_the_docs_lack() {
    assert_eq!(
        missing(&["Gauges"], ["active_connections", "active_sockets"]),
        ["active_sockets"]
    );
    assert_eq!(missing(&["Error kinds"], ["refused", "dns"]), Vec::<&str>::new());
}
