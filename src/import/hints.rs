//! Values in a recording that a load test should not replay as they are: ids, tokens,
//! timestamps, UUIDs. The import writes a comment next to each, with what to use instead.

use std::sync::LazyLock;

use regex::Regex;

/// One value worth parameterizing.
#[derive(Clone, Debug, PartialEq)]
pub struct Hint {
    /// Where: a JSON pointer into the message, a query parameter or a header; empty for the
    /// whole text.
    pub at: String,
    pub value: String,
    /// What it looks like, e.g. "a UUID".
    pub what: &'static str,
    /// What to write instead.
    pub advice: &'static str,
}

static UUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b").expect("valid regex")
});
static JWT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*").expect("valid regex"));
static DATE_TIME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?").expect("valid regex")
});
static NUMBER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b\d{10}(\d{3})?\b").expect("valid regex"));
static HEX: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b[0-9a-fA-F]{16,}\b").expect("valid regex"));
static TOKEN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[A-Za-z0-9_+/=-]{20,}").expect("valid regex"));
static ID_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(id|uid|uuid|guid|seq|nonce|correlation_?id|request_?id|message_?id)$|(_id|Id|ID)$")
        .expect("valid regex")
});
static SECRET_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(token|secret|passw(or)?d|pwd|auth|session|^sid$|signature|^sig$|api_?key|cookie|credential)")
        .expect("valid regex")
});
static TIME_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(ts|t|time|timestamp|date|datetime)$|(_at|_time|_ts|Time|At|Timestamp)$").expect("valid regex")
});

const UUID_ADVICE: &str = "`${uuid}` makes a new one at each use";
const JWT_ADVICE: &str =
    "a signed token that expires: take it from a login reply (an `http` step's `extract`) or a data feed";
const TIME_ADVICE: &str = "`${timestamp_ms}` is the time of sending";
const DATE_ADVICE: &str = "the time of the recording: take it from a data feed or from a reply";
const ID_ADVICE: &str =
    "ids usually differ per message or per user: `${iteration}`, `${vu}`, `${uuid}`, a data feed, or a value extracted from a reply";
const SECRET_ADVICE: &str =
    "one browser session's credential: give each VU its own from a data feed (`data:`) or a login (`http` step with `extract`)";
const TOKEN_ADVICE: &str = "a generated value of the recorded session: take it from a reply (`extract`) or a data feed";

/// The hints for a message's text: each JSON leaf of a JSON message, or the text as a whole.
pub fn in_message(text: &str) -> Vec<Hint> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))) => {
            let mut found = Vec::new();
            walk(&value, "", None, &mut found);
            found
        }
        _ => in_text("", text),
    }
}

/// The hints for one named value (a query parameter, a header, a form field).
pub fn in_value(at: &str, key: &str, value: &str) -> Vec<Hint> {
    let found = in_text(at, value);
    // A credential's name says more than a part of its value (`tok-4f1c...` is a token, not a
    // hash), unless the whole value has a known shape (a JWT).
    let whole = found.len() == 1 && found[0].value == value;
    if (found.is_empty() || (SECRET_KEY.is_match(key) && !whole)) && !value.is_empty() {
        if let Some(hint) = by_key(at, key, value, false) {
            return vec![hint];
        }
    }
    found
}

fn walk(value: &serde_json::Value, pointer: &str, key: Option<&str>, found: &mut Vec<Hint>) {
    use serde_json::Value;
    match value {
        Value::Object(fields) => {
            for (name, item) in fields {
                let escaped = name.replace('~', "~0").replace('/', "~1");
                walk(item, &format!("{pointer}/{escaped}"), Some(name), found);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                walk(item, &format!("{pointer}/{index}"), key, found);
            }
        }
        Value::String(text) => found.extend(in_value(pointer, key.unwrap_or(""), text)),
        Value::Number(number) => {
            let text = number.to_string();
            let before = found.len();
            found.extend(timestamp(pointer, &text));
            if found.len() == before {
                if let Some(key) = key {
                    found.extend(by_key(pointer, key, &text, true));
                }
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// A hint from a field's name when its value alone says nothing.
fn by_key(at: &str, key: &str, value: &str, numeric: bool) -> Option<Hint> {
    if value.is_empty() {
        return None;
    }
    let hint = |what, advice| Hint {
        at: at.to_owned(),
        value: value.to_owned(),
        what,
        advice,
    };
    if SECRET_KEY.is_match(key) {
        return Some(hint("a credential or session value", SECRET_ADVICE));
    }
    if ID_KEY.is_match(key) {
        return Some(hint("an id", ID_ADVICE));
    }
    if numeric && TIME_KEY.is_match(key) {
        return Some(hint("a time", TIME_ADVICE));
    }
    None
}

/// Epoch seconds or milliseconds between 2001 and 2100.
fn timestamp(at: &str, text: &str) -> Option<Hint> {
    let number: u64 = text.parse().ok()?;
    let (what, plausible) = match text.len() {
        10 => (
            "a timestamp in seconds",
            (1_000_000_000..4_102_444_800).contains(&number),
        ),
        13 => (
            "a timestamp in milliseconds",
            (1_000_000_000_000..4_102_444_800_000).contains(&number),
        ),
        _ => return None,
    };
    plausible.then(|| Hint {
        at: at.to_owned(),
        value: text.to_owned(),
        what,
        advice: TIME_ADVICE,
    })
}

/// Hints from the shape of a text alone; one per kind, the most specific first.
fn in_text(at: &str, text: &str) -> Vec<Hint> {
    let hint = |value: &str, what, advice| Hint {
        at: at.to_owned(),
        value: value.to_owned(),
        what,
        advice,
    };
    let mut found = Vec::new();
    let mut covered: Vec<std::ops::Range<usize>> = Vec::new();
    let mut take = |found: &mut Vec<Hint>, range: std::ops::Range<usize>, what, advice| {
        if covered
            .iter()
            .any(|seen| seen.start < range.end && range.start < seen.end)
        {
            return;
        }
        found.push(hint(&text[range.clone()], what, advice));
        covered.push(range);
    };
    for found_jwt in JWT.find_iter(text) {
        take(&mut found, found_jwt.range(), "a JWT", JWT_ADVICE);
    }
    for uuid in UUID.find_iter(text) {
        take(&mut found, uuid.range(), "a UUID", UUID_ADVICE);
    }
    for date in DATE_TIME.find_iter(text) {
        take(&mut found, date.range(), "a date and time", DATE_ADVICE);
    }
    for number in NUMBER.find_iter(text) {
        if let Some(stamp) = timestamp(at, number.as_str()) {
            take(&mut found, number.range(), stamp.what, stamp.advice);
        }
    }
    for hex in HEX.find_iter(text) {
        // Plain numbers are timestamps or counts, not hashes.
        if hex.as_str().chars().any(|c| c.is_ascii_alphabetic()) {
            take(&mut found, hex.range(), "an id or a hash", TOKEN_ADVICE);
        }
    }
    for token in TOKEN.find_iter(text) {
        let value = token.as_str();
        let mixed = value.chars().any(|c| c.is_ascii_digit())
            && value.chars().any(|c| c.is_ascii_lowercase())
            && value.chars().any(|c| c.is_ascii_uppercase());
        if mixed {
            take(&mut found, token.range(), "a token", TOKEN_ADVICE);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(hints: &[Hint]) -> Vec<(String, &'static str)> {
        hints.iter().map(|hint| (hint.at.clone(), hint.what)).collect()
    }

    #[test]
    fn json_leaves_by_value_and_by_key() {
        let hints = in_message(
            r#"{"type":"ping","id":7,"session":"abc","trace":"0f8fad5b-d9cb-469f-a165-70867728950e","sent":1764489600123,"at":"2026-11-30T07:00:00Z","room":"lobby","auth":{"jwt":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig"}}"#,
        );
        assert_eq!(
            kinds(&hints),
            vec![
                ("/at".to_owned(), "a date and time"),
                ("/auth/jwt".to_owned(), "a JWT"),
                ("/id".to_owned(), "an id"),
                ("/sent".to_owned(), "a timestamp in milliseconds"),
                ("/session".to_owned(), "a credential or session value"),
                ("/trace".to_owned(), "a UUID"),
            ]
        );
    }

    #[test]
    fn plain_text_and_values() {
        assert_eq!(kinds(&in_message("hello world")), vec![]);
        assert_eq!(
            kinds(&in_message("order 4f1c2a9be77d40a1 at 1764489600")),
            vec![
                (String::new(), "a timestamp in seconds"),
                (String::new(), "an id or a hash")
            ]
        );
        assert_eq!(kinds(&in_value("?user", "user", "ann")), vec![]);
        assert_eq!(
            kinds(&in_value("/token", "token", "tok-4f1c2a9be77d40a1")),
            vec![("/token".to_owned(), "a credential or session value")]
        );
        assert_eq!(
            kinds(&in_value("?token", "token", "s3cr3t")),
            vec![("?token".to_owned(), "a credential or session value")]
        );
        assert_eq!(
            kinds(&in_value("X-Trace", "x-trace", "sid=Q2x1c3RlcjpBQkNERUZHSElKS0xNTk9Q")),
            vec![("X-Trace".to_owned(), "a token")]
        );
    }
}
