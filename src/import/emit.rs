//! Writing YAML by hand: the imported scenario carries comments, which a serializer cannot
//! write. Every value goes through one of these functions, so any recorded text (quotes,
//! control characters, `${`, bytes that are not UTF-8) comes back exactly when the scenario is
//! read.

use std::fmt::Write as _;

/// Words a YAML 1.1 reader takes for something other than a string when unquoted.
const RESERVED: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"];

/// `text` as a YAML scalar: plain when that reads back as the same string, single-quoted when
/// every character is printable, double-quoted with escapes otherwise.
pub fn scalar(text: &str) -> String {
    let plain = text.chars().next().is_some_and(|first| first.is_ascii_alphabetic())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
        && !RESERVED.iter().any(|word| word.eq_ignore_ascii_case(text));
    if plain {
        return text.to_owned();
    }
    if text.chars().all(printable) {
        return format!("'{}'", text.replace('\'', "''"));
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if printable(c) => out.push(c),
            c if (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// Characters YAML lets stand in a quoted scalar on one line (YAML 1.1, section 5.1, without
/// the line breaks and tab).
fn printable(c: char) -> bool {
    matches!(c as u32, 0x20..=0x7e | 0xa0..=0xd7ff | 0x10000..=0x10ffff)
        || (matches!(c as u32, 0xe000..=0xfffd) && c != '\u{feff}')
}

/// A template field's value (`text`, `url`, headers, `equals`): a recorded `${` is written
/// `$${` so it is sent as it was, not read as a variable.
pub fn template(text: &str) -> String {
    scalar(&text.replace("${", "$${"))
}

/// Bytes as the scenario's `binary` and `prefix` fields write them, as a YAML scalar.
pub fn binary(bytes: &[u8]) -> String {
    scalar(&escapes(bytes))
}

/// Bytes in the scenario's escapes: printable ASCII as it is, `\\` for a backslash, `\xNN` for
/// any other byte.
pub fn escapes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        match byte {
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(byte as char),
            _ => {
                let _ = write!(out, "\\x{byte:02x}");
            }
        }
    }
    out
}

/// A JSON value as a YAML flow node; strings are templates when `templates` is set.
pub fn json_flow(value: &serde_json::Value, templates: bool) -> String {
    use serde_json::Value;
    let string = |text: &str| if templates { template(text) } else { scalar(text) };
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => string(text),
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(|item| json_flow(item, templates))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Object(fields) if fields.is_empty() => "{}".to_owned(),
        Value::Object(fields) => format!(
            "{{ {} }}",
            fields
                .iter()
                .map(|(key, item)| format!("{}: {}", scalar(key), json_flow(item, templates)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A comment's text on one line.
pub fn comment_text(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// At most `limit` characters of `text`, with `...` when cut.
pub fn shorten(text: &str, limit: usize) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(limit).collect();
    if chars.next().is_some() {
        format!("{head}...")
    } else {
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde_norway (the scenario crate's reader) makes of a written scalar.
    fn read_back(yaml: &str) -> String {
        serde_norway::from_str::<String>(yaml).unwrap_or_else(|error| panic!("{yaml}: {error}"))
    }

    #[test]
    fn every_string_reads_back_as_written() {
        for text in [
            "plain",
            "two words",
            "it's",
            "{\"type\":\"join\",\"id\":7}",
            "yes",
            "No",
            "null",
            "~",
            "123",
            "1.5",
            "-dash",
            "# not a comment",
            "a: b",
            "line\nbreak",
            "tab\there",
            "\u{0}\u{1}\u{7f}\u{85}\u{feff}",
            " leading and trailing ",
            "emoji 🎉 and ü",
            "",
            "back\\slash \"quoted\"",
        ] {
            assert_eq!(read_back(&scalar(text)), text, "{text:?} written as {}", scalar(text));
        }
    }

    #[test]
    fn templates_keep_a_recorded_dollar_brace() {
        assert_eq!(read_back(&template("cost ${price}")), "cost $${price}");
        let compiled = wsfleet_scenario::Template::compile(&read_back(&template("cost ${price} $5")), &|_| false)
            .expect("a literal");
        assert_eq!(compiled.as_literal(), Some("cost ${price} $5"));
    }

    #[test]
    fn bytes_come_back_through_the_scenario_parser() {
        let bytes: Vec<u8> = (0..=255).collect();
        let written = read_back(&binary(&bytes));
        assert_eq!(wsfleet_scenario::parse_binary(&written).expect("valid escapes"), bytes);
    }

    #[test]
    fn json_flow_is_yaml_for_the_same_value() {
        let value = serde_json::json!({"user": "ann", "n": 3, "ok": true, "none": null, "s": "true", "list": [1, "two", {"a": "b: c"}]});
        let back: serde_json::Value = serde_norway::from_str(&json_flow(&value, false)).expect("yaml");
        assert_eq!(back, value);
    }
}
