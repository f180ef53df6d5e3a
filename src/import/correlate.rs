//! Values a scenario should not replay as recorded: the comments that say so, and the
//! correlation of a value sent with the reply or response it first came in.

use std::collections::{HashMap, HashSet};

use super::emit::shorten;
use super::har;
use super::hints::Hint;
use super::write::sanitize;

/// Where a value was first seen in a reply or a response: (step name, JSON pointer).
pub type Seen = HashMap<String, (String, String)>;

/// The comment for a value at `at` that first came in an earlier reply or response: extract
/// it there and write the variable here (correlation, the classic load-test mistake).
pub fn correlation(at: &str, value: &str, seen: &Seen, sent_values: &HashSet<String>) -> Option<String> {
    if sent_values.contains(value) {
        return None;
    }
    let (step, pointer) = seen.get(value)?;
    let variable = sanitize(pointer.rsplit('/').next().unwrap_or("value"));
    Some(format!(
        "parameterize? {at} `{}` came in `{step}` at {pointer}: add `extract: {{ {variable}: {{ json: {pointer} }} }}` to that step and write `${{{variable}}}` here",
        shorten(value, 40)
    ))
}

/// Hints for the query parameters and headers of a request whose values came in an earlier
/// reply or response: each replaces the other hints at its place.
pub fn correlate_request(
    url: &str,
    headers: &[har::Header],
    seen: &Seen,
    sent_values: &HashSet<String>,
    hints: &mut Vec<Hint>,
    comments: &mut Vec<String>,
) {
    let query = url.split_once('?').map_or("", |(_, query)| query);
    let pairs = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (format!("?{key}"), value.to_owned()));
    let header_pairs = headers.iter().map(|header| {
        let value = header.value.as_deref().unwrap_or("");
        let value = value.strip_prefix("Bearer ").unwrap_or(value);
        (header.name.clone(), value.to_owned())
    });
    for (at, value) in pairs.chain(header_pairs) {
        if let Some(comment) = correlation(&at, &value, seen, sent_values) {
            hints.retain(|hint| hint.at != at);
            comments.push(comment);
        }
    }
}

/// Comments for the hints of a step.
pub fn hint_comments(hints: &[Hint], comments: &mut Vec<String>) {
    const SHOWN: usize = 6;
    for hint in hints.iter().take(SHOWN) {
        let at = if hint.at.is_empty() {
            String::new()
        } else {
            format!("{} ", hint.at)
        };
        comments.push(format!(
            "parameterize? {at}`{}` looks like {}: {}",
            shorten(&hint.value, 60),
            hint.what,
            hint.advice
        ));
    }
    if hints.len() > SHOWN {
        comments.push(format!("(and {} more value(s) like these)", hints.len() - SHOWN));
    }
}

/// String and number leaves of at least 4 characters: values worth following from a reply to
/// a later send.
pub fn leaves(value: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(value: &serde_json::Value, pointer: String, out: &mut Vec<(String, String)>) {
        use serde_json::Value;
        match value {
            Value::Object(fields) => {
                for (key, item) in fields {
                    walk(
                        item,
                        format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1")),
                        out,
                    );
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    walk(item, format!("{pointer}/{index}"), out);
                }
            }
            Value::String(text) if text.len() >= 4 => out.push((pointer, text.clone())),
            Value::Number(number) if number.to_string().len() >= 4 => out.push((pointer, number.to_string())),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, String::new(), &mut out);
    out
}
