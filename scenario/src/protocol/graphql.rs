//! GraphQL over WebSocket in scenarios: `connect: { protocol: graphql, graphql: {...} }`, the
//! operation steps (`graphql_subscribe`, `graphql_query`, `graphql_mutation`) and
//! `graphql_complete`, as written and as compiled. An operation's document is parsed when the scenario is validated, so a query that
//! does not parse, an operation of the wrong kind for its step, or an `operation_name` the
//! document does not define is an error located at its field, before any VU connects.
//! `crate::validate::graphql` builds them; the agent's GraphQL layer plays them.

use std::collections::BTreeMap;
use std::time::Duration;

use graphql_parser::query::{Definition, OperationDefinition};
use serde::Deserialize;

use crate::matcher::{Extraction, Matcher};
use crate::protocol::JsonTemplate;
use crate::raw::{RawExtract, RawMatch};
use crate::steps::{ConnId, StepId};

/// The subprotocol when `graphql.subprotocol` is not given: the one graphql-ws, Apollo Client
/// 3.5+ and most servers speak today.
pub const DEFAULT_SUBPROTOCOL: &str = "graphql-transport-ws";

/// The subprotocols a GraphQL connection may speak.
pub const SUBPROTOCOLS: &[&str] = &["graphql-transport-ws", "graphql-ws"];

/// The prefix of an operation's metric set name: `operation:OnTick`.
pub const OPERATION_SET_PREFIX: &str = "operation:";

/// How long a query or mutation waits for its result unless it says otherwise.
pub const DEFAULT_RESULT_TIMEOUT: Duration = Duration::from_secs(10);

/// `graphql: { subprotocol, init_payload, path, keep_alive, ka_timeout }`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGraphQl {
    /// `graphql-transport-ws` (the default) or `graphql-ws` (subscriptions-transport-ws).
    pub subprotocol: Option<String>,
    /// The `connection_init` payload (graphql-ws's `connectionParams`): a JSON object whose
    /// strings may hold `${...}`.
    pub init_payload: Option<serde_json::Value>,
    /// The URL path of the GraphQL endpoint, replacing the connect URL's path (e.g. `/graphql`).
    pub path: Option<String>,
    /// graphql-transport-ws: ping the server this long after its last pong (graphql-ws's
    /// `keepAlive`); a ping unanswered that long is a silent server.
    pub keep_alive: Option<String>,
    /// graphql-ws: the server's keep-alives may stop this long before it counts as silent
    /// (subscriptions-transport-ws's `timeout`).
    pub ka_timeout: Option<String>,
}

/// `graphql_subscribe:`, `graphql_query:` and `graphql_mutation:`: an operation over the
/// connection.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOperation {
    pub name: Option<String>,
    pub connection: Option<String>,
    /// The GraphQL document, inline.
    pub query: Option<String>,
    /// The GraphQL document, from a file shipped with the scenario.
    pub query_file: Option<String>,
    /// The operation's variables: a JSON object whose strings may hold `${...}`.
    pub variables: Option<serde_json::Value>,
    /// Which of the document's operations runs (`operationName`); required when it defines
    /// several.
    pub operation_name: Option<String>,
    /// Queries and mutations: how long to wait for the result (10 s by default).
    pub timeout: Option<String>,
    /// Queries and mutations: a condition on the result (`{"data": ..., "errors": ...}`).
    #[serde(rename = "match")]
    pub matcher: Option<RawMatch>,
    /// Queries and mutations: values from the result.
    #[serde(default)]
    pub extract: BTreeMap<String, RawExtract>,
}

/// `graphql_complete: { subscription: ticks }`: ends a subscription the VU started on the connection
/// (graphql-ws's `unsubscribe()`, Apollo's `subscription.unsubscribe()`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawComplete {
    pub name: Option<String>,
    pub connection: Option<String>,
    /// The name of the `graphql_subscribe` step that started it.
    pub subscription: String,
}

/// GraphQL options of a connect step.
#[derive(Clone, Debug)]
pub struct GraphQl {
    /// `graphql-transport-ws` or `graphql-ws`: offered in `Sec-WebSocket-Protocol`, and the
    /// server must agree to it.
    pub subprotocol: &'static str,
    pub init_payload: Option<JsonTemplate>,
    /// Replaces the connect URL's path when given.
    pub path: Option<String>,
    pub keep_alive: Option<Duration>,
    pub ka_timeout: Option<Duration>,
}

/// The kind of a GraphQL operation, as its document says and its step asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationKind {
    Query,
    Mutation,
    Subscription,
}

impl OperationKind {
    pub fn word(self) -> &'static str {
        match self {
            OperationKind::Query => "query",
            OperationKind::Mutation => "mutation",
            OperationKind::Subscription => "subscription",
        }
    }

    /// The step that runs operations of this kind.
    pub fn step(self) -> &'static str {
        match self {
            OperationKind::Query => "graphql_query",
            OperationKind::Mutation => "graphql_mutation",
            OperationKind::Subscription => "graphql_subscribe",
        }
    }
}

/// A `graphql_subscribe`, `graphql_query` or `graphql_mutation` step.
#[derive(Clone, Debug)]
pub struct Operation {
    pub conn: ConnId,
    pub kind: OperationKind,
    /// The operation's name: its metric set (`operation:NAME`), and what `match: { event }`
    /// compares for its results. `operation_name`, else the name in the document, else the
    /// step's name.
    pub operation: String,
    /// The `subscribe`/`start` payload: `{"query": ..., "variables": ..., "operationName": ...}`.
    pub payload: JsonTemplate,
    /// The metric set of the operation's name.
    pub set: StepId,
    /// Queries and mutations: what the step waits for.
    pub result: Option<ResultWait>,
}

/// What a query or mutation waits for: its result, within `timeout`.
#[derive(Clone, Debug)]
pub struct ResultWait {
    pub timeout: Duration,
    pub matcher: Option<Matcher>,
    pub extract: Vec<Extraction>,
}

/// A `graphql_complete` step.
#[derive(Clone, Debug)]
pub struct Complete {
    pub conn: ConnId,
    /// The `graphql_subscribe` step whose subscription ends.
    pub subscription: StepId,
}

/// What a GraphQL document says, once parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct Document {
    /// Its operations: kind and name (`None` for an anonymous one).
    pub operations: Vec<(OperationKind, Option<String>)>,
}

impl Document {
    /// Parses a document; the error is the parser's, with the line and column.
    pub fn parse(text: &str) -> Result<Document, String> {
        let document = graphql_parser::parse_query::<&str>(text).map_err(|error| {
            let text = error.to_string();
            text.strip_prefix("query parse error: ")
                .unwrap_or(&text)
                .trim()
                .replace('\n', "; ")
        })?;
        let operations = document
            .definitions
            .iter()
            .filter_map(|definition| match definition {
                Definition::Operation(OperationDefinition::SelectionSet(_)) => Some((OperationKind::Query, None)),
                Definition::Operation(OperationDefinition::Query(query)) => {
                    Some((OperationKind::Query, query.name.map(str::to_owned)))
                }
                Definition::Operation(OperationDefinition::Mutation(mutation)) => {
                    Some((OperationKind::Mutation, mutation.name.map(str::to_owned)))
                }
                Definition::Operation(OperationDefinition::Subscription(subscription)) => {
                    Some((OperationKind::Subscription, subscription.name.map(str::to_owned)))
                }
                Definition::Fragment(_) => None,
            })
            .collect();
        Ok(Document { operations })
    }

    /// The operation that runs given `operation_name`: by that name, or the only one.
    pub fn select(&self, operation_name: Option<&str>) -> Result<(OperationKind, Option<&str>), String> {
        let names = || {
            self.operations
                .iter()
                .map(|(_, name)| name.as_deref().unwrap_or("(anonymous)"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match operation_name {
            Some(wanted) => self
                .operations
                .iter()
                .find(|(_, name)| name.as_deref() == Some(wanted))
                .map(|(kind, name)| (*kind, name.as_deref()))
                .ok_or_else(|| format!("the document defines no operation `{wanted}` (it defines: {})", names())),
            None => match self.operations.as_slice() {
                [(kind, name)] => Ok((*kind, name.as_deref())),
                [] => Err("the document defines no operation, only fragments".into()),
                _ => Err(format!(
                    "the document defines several operations ({}): say which with `operation_name`",
                    names()
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_tell_their_operations() {
        let document = Document::parse("subscription OnTick($n: Int!) { count(to: $n) }").unwrap();
        assert_eq!(document.select(None), Ok((OperationKind::Subscription, Some("OnTick"))));
        let document = Document::parse("{ hello }").unwrap();
        assert_eq!(document.select(None), Ok((OperationKind::Query, None)));
        let document =
            Document::parse("query A { a } mutation B($t: String!) { publish(text: $t) } fragment F on Q { x }")
                .unwrap();
        assert_eq!(document.select(Some("B")), Ok((OperationKind::Mutation, Some("B"))));
        assert!(document.select(None).unwrap_err().contains("several operations (A, B)"));
        assert!(document.select(Some("C")).unwrap_err().contains("no operation `C`"));
        assert!(Document::parse("fragment F on Q { x }").unwrap().select(None).is_err());
    }

    #[test]
    fn a_document_that_does_not_parse_says_where() {
        let error = Document::parse("subscription {\n  count(to: ) }").unwrap_err();
        assert!(error.contains("2:"), "{error}");
        assert!(!error.contains('\n'));
    }
}
