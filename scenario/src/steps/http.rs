//! The `http` step's model: one HTTP/1.1 request, what its response must be, and the values
//! taken from it. Agents play it over a per-VU connection kept alive between requests, with a
//! per-VU cookie jar whose cookies also go into the WebSocket upgrades of the same origin.

use std::time::Duration;

use super::{Proxy, TlsOptions};
use crate::matcher::Extraction;
use crate::script::ScriptError;
use crate::template::{Scope, Template};

/// One HTTP request.
#[derive(Clone, Debug)]
pub struct Http {
    /// The method, upper case as written (`GET`, `POST`, ...).
    pub method: String,
    /// An `http://` or `https://` URL.
    pub url: Template,
    /// Request headers as written; they replace the defaults of the same name (`Content-Type`
    /// of the body, `Cookie` from the jar is merged after a written one).
    pub headers: Vec<(String, Template)>,
    pub body: HttpBody,
    /// The whole request: connecting when needed, sending, the response and its body.
    pub timeout: Duration,
    /// DNS, TCP, proxy tunnel and TLS of a new connection.
    pub connect_timeout: Duration,
    pub tls: TlsOptions,
    pub proxy: Option<Proxy>,
    pub expect: HttpExpect,
    pub extract: Vec<Extraction>,
    /// Whether anything reads the response body (an extraction from JSON, a regex or the whole
    /// body); otherwise it is counted and dropped as it arrives.
    pub keep_body: bool,
}

/// The request body.
#[derive(Clone, Debug, PartialEq)]
pub enum HttpBody {
    Empty,
    /// Sent as `text/plain; charset=utf-8` unless a header says otherwise.
    Text(Template),
    /// Sent as `application/json`.
    Json(JsonTemplate),
    /// A file's bytes, sent as `application/octet-stream`.
    Bytes(Vec<u8>),
    /// Sent as `application/x-www-form-urlencoded`, fields in the order written.
    Form(Vec<(String, Template)>),
}

impl HttpBody {
    /// The `Content-Type` sent unless the step's headers give one.
    pub fn content_type(&self) -> Option<&'static str> {
        match self {
            HttpBody::Empty => None,
            HttpBody::Text(_) => Some("text/plain; charset=utf-8"),
            HttpBody::Json(_) => Some("application/json"),
            HttpBody::Bytes(_) => Some("application/octet-stream"),
            HttpBody::Form(_) => Some("application/x-www-form-urlencoded"),
        }
    }
}

/// A JSON value whose strings may hold templates. Rendered values are escaped as JSON strings,
/// so `${users.name}` holding a quote still makes valid JSON.
#[derive(Clone, Debug, PartialEq)]
pub enum JsonTemplate {
    /// A value without templates (numbers, booleans, null, plain strings).
    Fixed(serde_json::Value),
    /// A string with templates.
    String(Template),
    Array(Vec<JsonTemplate>),
    /// Keys in alphabetical order (as serde_json's map keeps them).
    Object(Vec<(String, JsonTemplate)>),
}

impl JsonTemplate {
    /// Builds the template of a JSON value; `compile` compiles a string (`None`: it failed and
    /// the problem is reported).
    pub fn build(value: &serde_json::Value, compile: &mut dyn FnMut(&str, &str) -> Option<Template>) -> JsonTemplate {
        fn walk(
            value: &serde_json::Value,
            path: &str,
            compile: &mut dyn FnMut(&str, &str) -> Option<Template>,
        ) -> JsonTemplate {
            match value {
                serde_json::Value::String(text) if text.contains("${") => match compile(text, path) {
                    Some(template) => JsonTemplate::String(template),
                    None => JsonTemplate::Fixed(value.clone()),
                },
                serde_json::Value::Array(items) => JsonTemplate::Array(
                    items
                        .iter()
                        .enumerate()
                        .map(|(index, item)| walk(item, &format!("{path}[{index}]"), compile))
                        .collect(),
                ),
                serde_json::Value::Object(fields) => JsonTemplate::Object(
                    fields
                        .iter()
                        .map(|(key, item)| (key.clone(), walk(item, &format!("{path}.{key}"), compile)))
                        .collect(),
                ),
                other => JsonTemplate::Fixed(other.clone()),
            }
        }
        walk(value, "", compile)
    }

    /// Writes the value as compact JSON; a `${...}` script expression that fails is an error
    /// (agents count it as the `script` error kind).
    pub fn render_into(&self, scope: &Scope<'_>, out: &mut String) -> Result<(), ScriptError> {
        match self {
            JsonTemplate::Fixed(value) => out.push_str(&value.to_string()),
            JsonTemplate::String(template) => {
                out.push_str(&serde_json::Value::String(template.try_render(scope)?.into_owned()).to_string())
            }
            JsonTemplate::Array(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    item.render_into(scope, out)?;
                }
                out.push(']');
            }
            JsonTemplate::Object(fields) => {
                out.push('{');
                for (index, (key, item)) in fields.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(key.clone()).to_string());
                    out.push(':');
                    item.render_into(scope, out)?;
                }
                out.push('}');
            }
        }
        Ok(())
    }
}

/// What the response must be.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpExpect {
    /// Any of these statuses; `None`: 200 to 399.
    pub statuses: Option<Vec<u16>>,
    /// Response headers that must have these values (names compared without case).
    pub headers: Vec<(String, Template)>,
}

impl HttpExpect {
    /// Whether `status` is one the step expects.
    pub fn status_ok(&self, status: u16) -> bool {
        match &self.statuses {
            Some(statuses) => statuses.contains(&status),
            None => (200..400).contains(&status),
        }
    }
}

/// The `timeout` of an http step that gives none (k6's and browsers' order of magnitude).
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest response body an http step keeps for its extractions; a larger one fails the
/// step with `message_too_big`. Bodies nothing reads are counted and dropped, whatever their
/// size.
pub const MAX_HTTP_BODY_BYTES: usize = 16 * 1024 * 1024;

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn json_bodies_escape_rendered_strings() {
        let value: serde_json::Value =
            serde_json::from_str(r#"{"user":"${name}","n":[1,true,null],"plain":"x"}"#).unwrap();
        let body = JsonTemplate::build(&value, &mut |text, _| Template::compile(text, &|_| true).ok());
        let named = crate::Values::from_iter([("name".to_owned(), "a\"b\\".to_owned())]);
        let scope = Scope {
            vu: 0,
            iteration: 0,
            vu_iteration: 0,
            agent: "",
            named: &named,
            local: None,
        };
        let mut out = String::new();
        body.render_into(&scope, &mut out).unwrap();
        assert_eq!(out, r#"{"n":[1,true,null],"plain":"x","user":"a\"b\\"}"#);
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed["user"], "a\"b\\");
    }

    /// A script expression that fails anywhere in a JSON body fails the body, where it used to
    /// be written as an empty string.
    #[test]
    fn json_body_with_a_failing_script_expression_is_an_error() {
        let value: serde_json::Value =
            serde_json::from_str(r#"{"ok":"${vu + 1}","nested":[{"sig":"${hex_decode(\"zz\")}"}]}"#).unwrap();
        let body = JsonTemplate::build(&value, &mut |text, _| Template::compile_with_scripts(text, &[]).ok());
        let named = crate::Values::default();
        let scope = Scope {
            vu: 0,
            iteration: 0,
            vu_iteration: 0,
            agent: "",
            named: &named,
            local: None,
        };
        let error = body.render_into(&scope, &mut String::new()).unwrap_err();
        assert!(error.message.contains("hex"), "{error}");
        let fine = JsonTemplate::build(&serde_json::json!({ "ok": "${vu + 1}" }), &mut |text, _| {
            Template::compile_with_scripts(text, &[]).ok()
        });
        let mut out = String::new();
        fine.render_into(&scope, &mut out).unwrap();
        assert_eq!(out, r#"{"ok":"1"}"#);
    }

    #[test]
    fn default_expectation_is_success_or_redirect() {
        let expect = HttpExpect {
            statuses: None,
            headers: Vec::new(),
        };
        assert!(expect.status_ok(200) && expect.status_ok(302) && !expect.status_ok(401) && !expect.status_ok(101));
        let listed = HttpExpect {
            statuses: Some(vec![401]),
            headers: Vec::new(),
        };
        assert!(listed.status_ok(401) && !listed.status_ok(200));
    }
}
