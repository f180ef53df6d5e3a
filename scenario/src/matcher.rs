//! Conditions on messages and values (`match`, `when`, `check`) and the extraction of values
//! from messages, handshake responses and close frames. Compiled once at validation; evaluated
//! by agents on every message they test.

use regex::Regex;

use crate::script::ScriptError;
use crate::template::{Scope, Template};

/// The frame type of a data message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    Text,
    Binary,
}

/// A message as a matcher or an extraction sees it.
#[derive(Clone, Copy, Debug)]
pub struct Incoming<'a> {
    /// The message, or a protocol event's body (Socket.IO: its arguments, a JSON array).
    pub bytes: &'a [u8],
    pub kind: FrameKind,
    /// What a protocol event says of itself; `None` for a plain message.
    pub event: Option<EventTags<'a>>,
}

/// Whether an event's key is the one wanted: the same, or, for a wanted key with MQTT wildcards
/// (`sensors/+/temperature`, `sensors/#`), a topic the filter matches.
fn event_matches(wanted: &str, key: &str) -> bool {
    use crate::protocol::mqtt::topic;
    wanted == key || (topic::has_wildcards(wanted) && topic::matches(wanted, key))
}

/// A protocol event's name, namespace and headers, as matchers see them.
#[derive(Clone, Copy, Debug)]
pub struct EventTags<'a> {
    /// The Socket.IO event name, the STOMP destination, the MQTT topic, the GraphQL operation.
    pub name: &'a str,
    /// Socket.IO's namespace, a STOMP subscription id, a GraphQL operation id; may be empty.
    pub namespace: &'a str,
    /// STOMP headers, MQTT properties; empty for protocols without.
    pub headers: &'a [(String, String)],
}

impl<'a> Incoming<'a> {
    /// A plain WebSocket message.
    pub fn message(bytes: &'a [u8], kind: FrameKind) -> Incoming<'a> {
        Incoming {
            bytes,
            kind,
            event: None,
        }
    }

    pub fn text(&self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes).ok()
    }
}

/// Every condition given must hold.
#[derive(Clone, Debug, Default)]
pub struct Matcher {
    /// A JSON pointer: the other conditions apply to the value there, which must exist.
    pub json: Option<String>,
    pub equals: Option<Template>,
    pub contains: Option<Template>,
    pub regex: Option<Regex>,
    pub prefix: Option<Vec<u8>>,
    pub kind: Option<FrameKind>,
    /// A protocol event's name as written: only such events match (their arguments are the
    /// message).
    pub event: Option<String>,
    /// `event` when it holds variables: rendered in the VU's scope, then compared as `event` is
    /// (`destination: /topic/room.${vu % 3}` takes the VU's own room).
    pub event_template: Option<Template>,
    /// A protocol event's namespace.
    pub namespace: Option<String>,
    /// Headers a protocol event must carry, with these values (the first of a repeated name
    /// counts, as STOMP says).
    pub headers: Vec<(String, Template)>,
}

impl Matcher {
    /// Whether a message is like this. A `${...}` script expression in `equals`, `contains` or
    /// a header's value that fails is an error (agents count it as the `script` error kind),
    /// not a mismatch.
    pub fn matches(&self, message: Incoming<'_>, scope: &Scope<'_>) -> Result<bool, ScriptError> {
        if self.event.is_some() || self.namespace.is_some() || !self.headers.is_empty() {
            let Some(tags) = message.event else {
                return Ok(false);
            };
            let event_differs = match (&self.event_template, &self.event) {
                (Some(template), _) => !event_matches(&template.try_render(scope)?, tags.name),
                (None, Some(wanted)) => !event_matches(wanted, tags.name),
                (None, None) => false,
            };
            if event_differs || self.namespace.as_deref().is_some_and(|wanted| wanted != tags.namespace) {
                return Ok(false);
            }
            for (name, wanted) in &self.headers {
                let found = tags.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value);
                let Some(found) = found else {
                    return Ok(false);
                };
                if *found != wanted.try_render(scope)? {
                    return Ok(false);
                }
            }
        }
        if self.kind.is_some_and(|kind| kind != message.kind) {
            return Ok(false);
        }
        if let Some(prefix) = &self.prefix {
            if !message.bytes.starts_with(prefix) {
                return Ok(false);
            }
        }
        if self.json.is_none() && self.equals.is_none() && self.contains.is_none() && self.regex.is_none() {
            return Ok(true);
        }
        match &self.json {
            Some(pointer) => match json_value(message.bytes, pointer) {
                Some(value) => self.value_matches(&value, scope),
                None => Ok(false),
            },
            None => match message.text() {
                Some(text) => self.value_matches(text, scope),
                None => self.bytes_match(message.bytes, scope),
            },
        }
    }

    /// Whether a value (e.g. a rendered `check` value) meets the conditions; a failing script
    /// expression in `equals` or `contains` is an error.
    pub fn value_matches(&self, value: &str, scope: &Scope<'_>) -> Result<bool, ScriptError> {
        if let Some(equals) = &self.equals {
            if value != equals.try_render(scope)? {
                return Ok(false);
            }
        }
        if let Some(contains) = &self.contains {
            if !value.contains(contains.try_render(scope)?.as_ref()) {
                return Ok(false);
            }
        }
        if let Some(regex) = &self.regex {
            if !regex.is_match(value) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Checks `value` as JSON when a pointer is given, as text otherwise.
    pub fn check(&self, value: &str, scope: &Scope<'_>) -> Result<bool, ScriptError> {
        match &self.json {
            Some(pointer) => match json_value(value.as_bytes(), pointer) {
                Some(found) => self.value_matches(&found, scope),
                None => Ok(false),
            },
            None => self.value_matches(value, scope),
        }
    }

    /// Text conditions on a message that is not UTF-8: `equals`/`contains` compare bytes, a
    /// regex cannot match.
    fn bytes_match(&self, bytes: &[u8], scope: &Scope<'_>) -> Result<bool, ScriptError> {
        if self.regex.is_some() {
            return Ok(false);
        }
        if let Some(equals) = &self.equals {
            if bytes != equals.try_render(scope)?.as_bytes() {
                return Ok(false);
            }
        }
        if let Some(contains) = &self.contains {
            let needle = contains.try_render(scope)?;
            let needle = needle.as_bytes();
            if !needle.is_empty() && !bytes.windows(needle.len()).any(|window| window == needle) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The value at a JSON pointer, as text: strings without quotes, anything else as JSON.
pub fn json_value(document: &[u8], pointer: &str) -> Option<String> {
    let document: serde_json::Value = serde_json::from_slice(document).ok()?;
    match document.pointer(pointer)? {
        serde_json::Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

/// Where an extracted value comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A JSON pointer into the message.
    Json(String),
    /// A regex over the message text.
    Regex,
    /// The whole message text.
    Body,
    /// A handshake (or HTTP) response header.
    Header(String),
    /// A cookie of the VU's jar that applies to an http step's URL.
    Cookie(String),
    /// The server's close code.
    CloseCode,
    /// The server's close reason.
    CloseReason,
}

/// `var: { json: /token }`: one value into one variable.
#[derive(Clone, Debug)]
pub struct Extraction {
    pub var: String,
    pub source: Source,
    /// The first capture group (or the whole match) of this regex over the source's value.
    pub regex: Option<Regex>,
    pub default: Option<String>,
}

/// What extraction can read from.
#[derive(Clone, Copy, Debug, Default)]
pub struct Origin<'a> {
    pub message: Option<Incoming<'a>>,
    /// The handshake response's headers (name, value), names lower case.
    pub headers: Option<&'a [(String, String)]>,
    /// The server's close code and reason.
    pub close: Option<(u16, &'a str)>,
    /// The cookies (name, value) of the VU's jar that apply to an http step's URL, once its
    /// response's `Set-Cookie` headers are stored.
    pub cookies: Option<&'a [(String, String)]>,
}

impl Extraction {
    /// The value, or the default, or `None` when neither is there.
    pub fn extract(&self, origin: Origin<'_>) -> Option<String> {
        let raw: Option<String> = match &self.source {
            Source::Json(pointer) => origin.message.and_then(|message| json_value(message.bytes, pointer)),
            Source::Regex | Source::Body => origin.message.and_then(|message| message.text()).map(str::to_owned),
            Source::Header(name) => origin.headers.and_then(|headers| {
                headers
                    .iter()
                    .find(|(header, _)| header.eq_ignore_ascii_case(name))
                    .map(|(_, value)| value.clone())
            }),
            Source::Cookie(name) => origin.cookies.and_then(|cookies| {
                cookies
                    .iter()
                    .find(|(cookie, _)| cookie == name)
                    .map(|(_, value)| value.clone())
            }),
            Source::CloseCode => origin.close.map(|(code, _)| code.to_string()),
            Source::CloseReason => origin.close.map(|(_, reason)| reason.to_owned()),
        };
        let value = match (&self.regex, raw) {
            (Some(regex), Some(text)) => regex.captures(&text).map(|captures| {
                captures
                    .get(1)
                    .or_else(|| captures.get(0))
                    .map_or_else(String::new, |found| found.as_str().to_owned())
            }),
            (None, raw) => raw,
            (Some(_), None) => None,
        };
        value.or_else(|| self.default.clone())
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn scope(named: &crate::Values) -> Scope<'_> {
        Scope {
            vu: 0,
            iteration: 5,
            vu_iteration: 0,
            agent: "",
            named,
            local: None,
        }
    }

    fn text(text: &str) -> Incoming<'_> {
        Incoming::message(text.as_bytes(), FrameKind::Text)
    }

    #[test]
    fn json_pointer_with_templated_value() {
        let named = crate::Values::default();
        let matcher = Matcher {
            json: Some("/id".into()),
            equals: Some(Template::compile("${iteration}", &|_| false).unwrap()),
            ..Matcher::default()
        };
        assert_eq!(matcher.matches(text(r#"{"id":5}"#), &scope(&named)), Ok(true));
        assert_eq!(matcher.matches(text(r#"{"id":"5"}"#), &scope(&named)), Ok(true));
        assert_eq!(matcher.matches(text(r#"{"id":6}"#), &scope(&named)), Ok(false));
        assert_eq!(matcher.matches(text(r#"{"other":5}"#), &scope(&named)), Ok(false));
        assert_eq!(matcher.matches(text("not json"), &scope(&named)), Ok(false));
    }

    #[test]
    fn text_binary_prefix_and_regex() {
        let named = crate::Values::default();
        let contains = Matcher {
            contains: Some(Template::literal("ping")),
            ..Matcher::default()
        };
        assert_eq!(contains.matches(text(r#"{"type":"ping"}"#), &scope(&named)), Ok(true));
        assert_eq!(contains.matches(text("pong"), &scope(&named)), Ok(false));
        let prefix = Matcher {
            prefix: Some(vec![0x01, 0xff]),
            kind: Some(FrameKind::Binary),
            ..Matcher::default()
        };
        let binary = Incoming::message(&[0x01, 0xff, 0x00], FrameKind::Binary);
        assert_eq!(prefix.matches(binary, &scope(&named)), Ok(true));
        assert_eq!(prefix.matches(text("\u{1}x"), &scope(&named)), Ok(false));
        let regex = Matcher {
            regex: Some(Regex::new(r"^seq=\d+$").unwrap()),
            ..Matcher::default()
        };
        assert_eq!(regex.matches(text("seq=42"), &scope(&named)), Ok(true));
        assert_eq!(regex.matches(text("seq=x"), &scope(&named)), Ok(false));
    }

    #[test]
    fn extraction_sources_groups_and_defaults() {
        let message = text(r#"{"token":"abc","n":3,"note":"id=77;"}"#);
        let origin = Origin {
            message: Some(message),
            ..Origin::default()
        };
        let json = |pointer: &str| Extraction {
            var: "v".into(),
            source: Source::Json(pointer.into()),
            regex: None,
            default: None,
        };
        assert_eq!(json("/token").extract(origin).as_deref(), Some("abc"));
        assert_eq!(json("/n").extract(origin).as_deref(), Some("3"));
        assert_eq!(json("/missing").extract(origin), None);
        let regex = Extraction {
            var: "v".into(),
            source: Source::Regex,
            regex: Some(Regex::new(r"id=(\d+)").unwrap()),
            default: None,
        };
        assert_eq!(regex.extract(origin).as_deref(), Some("77"));
        let headers = vec![("x-session-id".to_owned(), "s-1".to_owned())];
        let header = Extraction {
            var: "v".into(),
            source: Source::Header("X-Session-Id".into()),
            regex: None,
            default: Some("none".into()),
        };
        let with_headers = Origin {
            headers: Some(&headers),
            ..Origin::default()
        };
        assert_eq!(header.extract(with_headers).as_deref(), Some("s-1"));
        assert_eq!(header.extract(Origin::default()).as_deref(), Some("none"));
    }

    /// A script expression in `equals` or `contains` that fails is an error, not an empty
    /// value the message is compared with.
    #[test]
    fn failing_script_expression_is_an_error_not_a_mismatch() {
        let named = crate::Values::default();
        let failing = || Template::compile_with_scripts(r#"${hex_decode("zz")}"#, &[]).unwrap();
        let equals = Matcher {
            equals: Some(failing()),
            ..Matcher::default()
        };
        let error = equals.matches(text(""), &scope(&named)).unwrap_err();
        assert!(error.message.contains("hex"), "{error}");
        assert!(equals.check("", &scope(&named)).is_err());
        let contains = Matcher {
            contains: Some(failing()),
            ..Matcher::default()
        };
        assert!(contains.matches(text("anything"), &scope(&named)).is_err());
        let binary = Incoming::message(&[0xff, 0x00], FrameKind::Binary);
        assert!(contains.matches(binary, &scope(&named)).is_err());
        // A condition that already failed is not evaluated further.
        let kind_first = Matcher {
            kind: Some(FrameKind::Binary),
            equals: Some(failing()),
            ..Matcher::default()
        };
        assert_eq!(kind_first.matches(text("x"), &scope(&named)), Ok(false));
    }
}
