//! Protocols spoken over a WebSocket (`connect: { protocol: socketio }`): their options as
//! written and as compiled, the protocol steps (`emit`), and JSON values with templates in their
//! strings (event arguments, auth payloads). The agent's protocol layer plays them.

pub mod graphql;
pub mod mqtt;
pub mod stomp;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Deserialize;

use crate::matcher::{Extraction, Matcher};
use crate::raw::{RawExtract, RawMatch};
use crate::steps::{ConnId, Flush, StepId};
use crate::template::{Scope, Template};

/// The protocols a connection may speak, as `protocol:` names them.
pub const PROTOCOLS: &[&str] = &["socketio", "stomp", "graphql", "mqtt"];

/// The Engine.IO path when `socketio.path` is not given (socket.io-client's default).
pub const DEFAULT_SOCKETIO_PATH: &str = "/socket.io/";

/// The main namespace.
pub const MAIN_NAMESPACE: &str = "/";

/// The key of the metric set of events whose keys the scenario does not mention: `event:*`.
pub const OTHER_EVENTS: &str = "*";

/// The prefix of a Socket.IO event's metric set name: `event:chat`.
pub const EVENT_SET_PREFIX: &str = "event:";

/// The prefix of the metric set names of a protocol's events (`protocol:` as written): each
/// event counts in the set of its key, e.g. `event:chat` (Socket.IO's event name).
pub fn set_prefix(protocol: &str) -> &'static str {
    match protocol {
        "socketio" => EVENT_SET_PREFIX,
        "mqtt" => mqtt::TOPIC_SET_PREFIX,
        "graphql" => crate::protocol::graphql::OPERATION_SET_PREFIX,
        "stomp" => stomp::SET_PREFIX,
        _ => "event:",
    }
}

/// `socketio: { path, query, namespaces }`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSocketIo {
    /// The Engine.IO path (socket.io-client's `path`), `/socket.io/` by default.
    pub path: Option<String>,
    /// Extra query parameters of the upgrade request (socket.io-client's `query`).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Namespaces to connect, in order: names, or `{ name, auth }`; `["/"]` by default.
    #[serde(default)]
    pub namespaces: Vec<RawNamespace>,
}

/// `/chat` or `{ name: /chat, auth: { token: ... } }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawNamespace {
    Name(String),
    Spec(RawNamespaceSpec),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNamespaceSpec {
    pub name: String,
    /// The auth payload (socket.io-client's `auth`): a JSON object; strings may hold `${...}`.
    pub auth: Option<serde_json::Value>,
}

/// `emit: { event, args, namespace, ack }`: socket.io-client's `socket.emit(event, ...args)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmit {
    pub name: Option<String>,
    pub connection: Option<String>,
    /// The namespace the event goes to (`/` by default); the connection must have connected it.
    pub namespace: Option<String>,
    pub event: String,
    /// The event's arguments, JSON values whose strings may hold `${...}`; `{ $binary: '\x01' }`
    /// anywhere in them is a binary attachment.
    #[serde(default)]
    pub args: Vec<serde_json::Value>,
    /// Ask the server for an acknowledgement and wait for it (`emitWithAck`).
    pub ack: Option<RawAck>,
    /// `batch` or `each`, as for `send`.
    pub flush: Option<String>,
}

/// `ack: { timeout, match, extract }`; `ack: {}` waits with the default timeout.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAck {
    pub timeout: Option<String>,
    /// A condition on the acknowledgement's arguments (a JSON array).
    #[serde(rename = "match")]
    pub matcher: Option<RawMatch>,
    /// Values from the acknowledgement's arguments.
    #[serde(default)]
    pub extract: BTreeMap<String, RawExtract>,
}

/// The protocol a connection speaks over its WebSocket.
#[derive(Clone, Debug)]
pub enum Protocol {
    SocketIo(SocketIo),
    Mqtt(Box<mqtt::Mqtt>),
    GraphQl(crate::protocol::graphql::GraphQl),
    Stomp(stomp::Stomp),
}

/// Socket.IO v4 options of a connect step.
#[derive(Clone, Debug)]
pub struct SocketIo {
    /// The Engine.IO path, starting and ending with `/`.
    pub path: String,
    /// Extra query parameters, after `EIO=4&transport=websocket`.
    pub query: Vec<(String, Template)>,
    /// The namespaces connected after the open packet, in order.
    pub namespaces: Vec<Namespace>,
}

#[derive(Clone, Debug)]
pub struct Namespace {
    pub name: String,
    pub auth: Option<JsonTemplate>,
}

/// An `emit` step.
#[derive(Clone, Debug)]
pub struct Emit {
    pub conn: ConnId,
    pub namespace: String,
    pub event: String,
    pub args: Vec<JsonTemplate>,
    /// The binary attachments, by placeholder number.
    pub attachments: Vec<Vec<u8>>,
    pub ack: Option<AckWait>,
    /// The metric set of the event's name.
    pub event_set: StepId,
    pub flush: Flush,
}

/// What an emit that asks for an acknowledgement waits for.
#[derive(Clone, Debug)]
pub struct AckWait {
    pub timeout: Duration,
    pub matcher: Option<Matcher>,
    pub extract: Vec<Extraction>,
}

/// The metric sets of a part's protocol events: one per key the scenario mentions (an event
/// name, a destination, a topic, an operation), and per protocol one for the others
/// (`event:*`). Sets are told apart by their name's prefix ([`set_prefix`]).
#[derive(Clone, Debug, Default)]
pub struct EventSets {
    /// Prefix, key, set.
    pub named: Vec<(&'static str, String, StepId)>,
    /// Prefix, the set of the keys not named; one per protocol the part speaks.
    pub other: Vec<(&'static str, StepId)>,
    /// The sets of templated keys (each `${...}` written as `*`): only their `*`s stand for any
    /// text; a literal key's `*` is itself (RabbitMQ's `/exchange/amq.topic/alerts.*`).
    pub templated: Vec<StepId>,
}

impl EventSets {
    /// The set of an event's key, among the sets of `prefix`; `fallback` when the part has none
    /// (it always has, once validated, for every protocol it speaks).
    pub fn of(&self, prefix: &str, key: &str, fallback: StepId) -> StepId {
        if let Some((_, _, id)) = self
            .named
            .iter()
            .find(|(named_prefix, name, _)| *named_prefix == prefix && name == key)
        {
            return *id;
        }
        // An MQTT topic counts in the set of the first topic filter that matches it; another
        // protocol's key in the first templated key's set whose `*`s (its variables) match it.
        let pattern = |named_prefix: &str, named: &str, id: StepId| {
            if named_prefix != prefix {
                false
            } else if prefix == mqtt::TOPIC_SET_PREFIX {
                mqtt::topic::has_wildcards(named) && mqtt::topic::matches(named, key)
            } else {
                self.templated.contains(&id) && stomp::key_matches(named, key)
            }
        };
        if let Some((_, _, id)) = self
            .named
            .iter()
            .find(|(named_prefix, named, id)| pattern(named_prefix, named, *id))
        {
            return *id;
        }
        self.other
            .iter()
            .find(|(other_prefix, _)| *other_prefix == prefix)
            .map_or(fallback, |(_, id)| *id)
    }
}

/// A JSON value whose strings may hold templates, and whose `{ $binary: ... }` objects are
/// binary attachments (rendered as Socket.IO placeholders).
#[derive(Clone, Debug, PartialEq)]
pub enum JsonTemplate {
    /// JSON text that never changes (numbers, booleans, null, strings without variables).
    Literal(String),
    /// A string with variables: rendered, then written as a JSON string.
    Text(Template),
    Array(Vec<JsonTemplate>),
    /// Keys as JSON text (quoted and escaped), values.
    Object(Vec<(String, JsonTemplate)>),
    /// The attachment with this number: `{"_placeholder":true,"num":N}`.
    Placeholder(usize),
}

impl JsonTemplate {
    /// Writes the value as JSON text.
    pub fn render_into(&self, scope: &Scope<'_>, out: &mut String) {
        match self {
            JsonTemplate::Literal(text) => out.push_str(text),
            JsonTemplate::Text(template) => {
                let rendered = template.render(scope);
                // A string always serializes.
                out.push_str(&serde_json::Value::String(rendered.into_owned()).to_string());
            }
            JsonTemplate::Array(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    item.render_into(scope, out);
                }
                out.push(']');
            }
            JsonTemplate::Object(fields) => {
                out.push('{');
                for (index, (key, value)) in fields.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    out.push_str(key);
                    out.push(':');
                    value.render_into(scope, out);
                }
                out.push('}');
            }
            JsonTemplate::Placeholder(number) => {
                let _ = write!(out, "{{\"_placeholder\":true,\"num\":{number}}}");
            }
        }
    }

    /// Whether the value holds no variable (and no attachment).
    pub fn is_literal(&self) -> bool {
        matches!(self, JsonTemplate::Literal(_))
    }
}

/// Where a JSON template's string could not compile, and why (the caller locates it).
pub struct JsonTemplateProblem {
    /// The path below the field, e.g. `[0].user`.
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

/// Compiles a JSON value: strings through `compile` (a template or a problem), `$binary`
/// objects into attachments.
pub fn compile_json(
    value: &serde_json::Value,
    path: &str,
    compile: &mut dyn FnMut(&str, &str) -> Option<Template>,
    attachments: &mut Vec<Vec<u8>>,
    problems: &mut Vec<JsonTemplateProblem>,
) -> JsonTemplate {
    use serde_json::Value;
    let compiled = match value {
        Value::String(text) => match compile(text, path) {
            Some(template) => match template.as_literal() {
                Some(_) => JsonTemplate::Literal(value.to_string()),
                None => JsonTemplate::Text(template),
            },
            None => JsonTemplate::Literal(value.to_string()),
        },
        Value::Array(items) => JsonTemplate::Array(
            items
                .iter()
                .enumerate()
                .map(|(index, item)| compile_json(item, &format!("{path}[{index}]"), compile, attachments, problems))
                .collect(),
        ),
        Value::Object(fields) => {
            if let Some(binary) = fields.get("$binary") {
                if fields.len() != 1 {
                    problems.push(JsonTemplateProblem {
                        path: path.to_owned(),
                        message: "a `$binary` attachment is an object with that one key".into(),
                        hint: Some("write `{ $binary: '\\x01\\x02' }`".into()),
                    });
                }
                let bytes = match binary.as_str().map(crate::steps::parse_binary) {
                    Some(Ok(bytes)) => bytes,
                    Some(Err(message)) => {
                        problems.push(JsonTemplateProblem {
                            path: format!("{path}.$binary"),
                            message,
                            hint: Some("write bytes as \\xNN, e.g. '\\x61\\x62'".into()),
                        });
                        Vec::new()
                    }
                    None => {
                        problems.push(JsonTemplateProblem {
                            path: format!("{path}.$binary"),
                            message: "`$binary` takes a string of bytes".into(),
                            hint: Some("write bytes as \\xNN, e.g. '\\x61\\x62'".into()),
                        });
                        Vec::new()
                    }
                };
                attachments.push(bytes);
                return JsonTemplate::Placeholder(attachments.len() - 1);
            }
            JsonTemplate::Object(
                fields
                    .iter()
                    .map(|(key, item)| {
                        let key_json = Value::String(key.clone()).to_string();
                        let item = compile_json(item, &format!("{path}.{key}"), compile, attachments, problems);
                        (key_json, item)
                    })
                    .collect(),
            )
        }
        other => JsonTemplate::Literal(other.to_string()),
    };
    // Containers of literals are one literal: rendered without walking them.
    match &compiled {
        JsonTemplate::Array(items) if items.iter().all(JsonTemplate::is_literal) => {
            JsonTemplate::Literal(render_static(&compiled))
        }
        JsonTemplate::Object(fields) if fields.iter().all(|(_, item)| item.is_literal()) => {
            JsonTemplate::Literal(render_static(&compiled))
        }
        _ => compiled,
    }
}

/// Renders a template without variables.
fn render_static(template: &JsonTemplate) -> String {
    let named = crate::Values::default();
    let scope = Scope {
        vu: 0,
        iteration: 0,
        vu_iteration: 0,
        agent: "",
        named: &named,
        local: None,
    };
    let mut out = String::new();
    template.render_into(&scope, &mut out);
    out
}

/// Whether `name` is a Socket.IO namespace name: `/`, or `/` and more without a comma (the
/// packet format ends a namespace at the first comma).
pub fn valid_namespace(name: &str) -> bool {
    name.starts_with('/') && !name.contains(',') && !name.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {

    use super::*;

    fn compile(value: &str) -> (JsonTemplate, Vec<Vec<u8>>, usize) {
        let value: serde_json::Value = serde_json::from_str(value).unwrap();
        let mut attachments = Vec::new();
        let mut problems = Vec::new();
        let template = compile_json(
            &value,
            "args",
            &mut |text, _| Template::compile(text, &|name| name == "user").ok(),
            &mut attachments,
            &mut problems,
        );
        (template, attachments, problems.len())
    }

    fn render(template: &JsonTemplate, user: &str) -> String {
        let named = crate::Values::default();
        let local = crate::Values::from_iter([("user".to_owned(), user.to_owned())]);
        let scope = Scope {
            vu: 3,
            iteration: 0,
            vu_iteration: 0,
            agent: "",
            named: &named,
            local: Some(&local),
        };
        let mut out = String::new();
        template.render_into(&scope, &mut out);
        out
    }

    #[test]
    fn literals_stay_literal_and_variables_are_escaped_as_json_strings() {
        let (template, _, problems) = compile(r#"{"a":[1,true,null,"x"],"b":{"c":"d"}}"#);
        assert_eq!(problems, 0);
        assert!(template.is_literal());
        assert_eq!(render(&template, ""), r#"{"a":[1,true,null,"x"],"b":{"c":"d"}}"#);
        let (template, _, _) = compile(r#"{"from":"${user}","vu":"${vu}"}"#);
        assert!(!template.is_literal());
        let rendered = render(&template, "a\"b");
        assert_eq!(rendered, r#"{"from":"a\"b","vu":"3"}"#);
        assert!(serde_json::from_str::<serde_json::Value>(&rendered).is_ok());
    }

    #[test]
    fn binary_objects_become_numbered_placeholders() {
        let (template, attachments, problems) = compile(r#"[{"$binary":"\\x01\\x02"},{"n":{"$binary":"ab"}}]"#);
        assert_eq!(problems, 0);
        assert_eq!(attachments, vec![vec![1, 2], b"ab".to_vec()]);
        assert_eq!(
            render(&template, ""),
            r#"[{"_placeholder":true,"num":0},{"n":{"_placeholder":true,"num":1}}]"#
        );
        let (_, _, problems) = compile(r#"[{"$binary":"\\x0g"}, {"$binary": 1}, {"$binary":"a","x":1}]"#);
        assert_eq!(problems, 3);
    }

    #[test]
    fn namespaces() {
        assert!(valid_namespace("/"));
        assert!(valid_namespace("/chat"));
        assert!(!valid_namespace("chat"));
        assert!(!valid_namespace("/a,b"));
    }
}
