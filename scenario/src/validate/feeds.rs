//! Data feeds (`data:`): each CSV file read and checked, its order and sharing, and whether
//! `unique` rows can cover the load.

use std::collections::BTreeMap;

use crate::error::Problems;
use crate::feeds::{Feed, Order, Per};
use crate::raw::RawFeed;

/// Every `data` feed, read from the files that came with the scenario.
pub(super) fn validate(
    raw: &BTreeMap<String, RawFeed>,
    files: &BTreeMap<String, Vec<u8>>,
    problems: &mut Problems<'_>,
) -> Vec<Feed> {
    raw.iter()
        .filter_map(|(name, spec)| {
            let field = format!("data.{name}");
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                problems.add(
                    &field,
                    format!("`{name}` cannot name a data feed"),
                    Some("use letters, digits, `_` and `-`".into()),
                );
            }
            let order = match spec.order.as_deref() {
                None | Some("sequential") => Order::Sequential,
                Some("random") => Order::Random,
                Some("unique") => Order::Unique,
                Some(other) => {
                    problems.add(
                        &format!("{field}.order"),
                        format!("unknown order `{other}`"),
                        Some("use `sequential`, `random` or `unique`".into()),
                    );
                    Order::Sequential
                }
            };
            let per = match (spec.per.as_deref(), order) {
                (None, Order::Unique) | (Some("vu"), _) => Per::Vu,
                (None, _) | (Some("iteration"), _) => Per::Iteration,
                (Some(other), _) => {
                    problems.add(
                        &format!("{field}.per"),
                        format!("unknown choice `{other}`"),
                        Some("use `iteration` (a new row each iteration) or `vu` (one row per VU)".into()),
                    );
                    Per::Iteration
                }
            };
            if order == Order::Unique && per == Per::Iteration {
                problems.add(
                    &format!("{field}.per"),
                    "`unique` gives each VU its own row for all its iterations",
                    Some("drop `per`, or use `order: sequential` for a new row each iteration".into()),
                );
            }
            let wrap = match spec.on_exhausted.as_deref() {
                None | Some("fail") => false,
                Some("wrap") => true,
                Some(other) => {
                    problems.add(
                        &format!("{field}.on_exhausted"),
                        format!("unknown choice `{other}`"),
                        Some("use `fail` or `wrap`".into()),
                    );
                    false
                }
            };
            if spec.on_exhausted.is_some() && order != Order::Unique {
                problems.add(
                    &format!("{field}.on_exhausted"),
                    "only `unique` rows can run out",
                    None,
                );
            }
            let delimiter = match spec.delimiter.as_deref() {
                None => b',',
                Some(text) if text.len() == 1 => text.as_bytes()[0],
                Some("\\t") | Some("\t") => b'\t',
                Some(other) => {
                    problems.add(
                        &format!("{field}.delimiter"),
                        format!("`{other}` is not one character"),
                        None,
                    );
                    b','
                }
            };
            let Some(bytes) = files.get(&spec.csv) else {
                problems.add(
                    &format!("{field}.csv"),
                    format!("file `{}` did not come with the scenario", spec.csv),
                    Some("files are read next to the scenario file when it is loaded from a path; a scenario sent as text cannot name files".into()),
                );
                return None;
            };
            match Feed::parse(bytes, delimiter) {
                Ok((columns, rows)) => Some(Feed {
                    name: name.clone(),
                    columns,
                    rows,
                    order,
                    per,
                    wrap,
                }),
                Err(message) => {
                    problems.add(&format!("{field}.csv"), format!("`{}`: {message}", spec.csv), None);
                    None
                }
            }
        })
        .collect()
}

/// `unique` rows must cover every VU the load can start, unless they wrap.
pub(super) fn check_unique(feeds: &[Feed], raw: &BTreeMap<String, RawFeed>, needed: u64, problems: &mut Problems<'_>) {
    for feed in feeds {
        if feed.order == Order::Unique && !feed.wrap && (feed.rows.len() as u64) < needed {
            let csv = raw.get(&feed.name).map_or("", |spec| spec.csv.as_str());
            problems.add(
                &format!("data.{}.order", feed.name),
                format!(
                    "`{csv}` has {} rows but the load starts up to {needed} VUs, and `unique` gives each its own row",
                    feed.rows.len()
                ),
                Some("add rows, lower the load, or add `on_exhausted: wrap`".into()),
            );
        }
    }
}
