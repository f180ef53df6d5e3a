//! GraphQL over WebSocket: the connect step's `graphql` options, the operation steps
//! (`graphql_subscribe`, `graphql_query`, `graphql_mutation`) and `graphql_complete`. Documents are parsed here, so a query with
//! a syntax error, of the wrong kind for its step, or without the operation `operation_name`
//! names is refused with its field.

use crate::error::Problems;
use crate::protocol::graphql::{
    Complete, Document, GraphQl, Operation, OperationKind, RawComplete, RawGraphQl, RawOperation, ResultWait,
    DEFAULT_RESULT_TIMEOUT, DEFAULT_SUBPROTOCOL, OPERATION_SET_PREFIX, SUBPROTOCOLS,
};
use crate::protocol::JsonTemplate;
use crate::steps::{Action, Step};

use crate::validate::builder::{At, StepBuilder};
use crate::validate::fields::duration_field;

impl StepBuilder<'_> {
    /// The `graphql` options of a connect step with `protocol: graphql`.
    pub(in crate::validate) fn graphql_options(
        &mut self,
        raw: &RawGraphQl,
        field: &str,
        problems: &mut Problems<'_>,
    ) -> GraphQl {
        let named = raw.subprotocol.as_deref().unwrap_or(DEFAULT_SUBPROTOCOL);
        let subprotocol = match SUBPROTOCOLS.iter().find(|known| **known == named) {
            Some(known) => *known,
            None => {
                problems.add(
                    &format!("{field}.subprotocol"),
                    format!("`{named}` is not a GraphQL-over-WebSocket subprotocol"),
                    Some(format!(
                        "write `graphql-transport-ws` (graphql-ws, Apollo Client 3.5+) or `graphql-ws` (subscriptions-transport-ws); known: {}",
                        SUBPROTOCOLS.join(", ")
                    )),
                );
                DEFAULT_SUBPROTOCOL
            }
        };
        let init_payload = raw.init_payload.as_ref().map(|payload| {
            if !payload.is_object() {
                problems.add(
                    &format!("{field}.init_payload"),
                    "the connection_init payload is an object",
                    Some("write e.g. `init_payload: { token: '${token}' }`".into()),
                );
            }
            self.plain_json(payload, &format!("{field}.init_payload"), problems)
        });
        if let Some(path) = &raw.path {
            if !path.starts_with('/') || path.contains(['?', '#']) {
                problems.add(
                    &format!("{field}.path"),
                    format!("`{path}` is not a URL path"),
                    Some("write e.g. `/graphql`".into()),
                );
            }
        }
        let duration = |text: Option<&String>, name: &str, problems: &mut Problems<'_>| {
            text.map(|text| duration_field(Some(text), &format!("{field}.{name}"), Default::default(), problems))
        };
        let keep_alive = duration(raw.keep_alive.as_ref(), "keep_alive", problems);
        let ka_timeout = duration(raw.ka_timeout.as_ref(), "ka_timeout", problems);
        if keep_alive.is_some() && subprotocol != "graphql-transport-ws" {
            problems.add(
                &format!("{field}.keep_alive"),
                "client pings are graphql-transport-ws's; graphql-ws servers send `ka` instead",
                Some("use `ka_timeout` to watch the server's keep-alives".into()),
            );
        }
        if ka_timeout.is_some() && subprotocol != "graphql-ws" {
            problems.add(
                &format!("{field}.ka_timeout"),
                "`ka` keep-alives are graphql-ws's; graphql-transport-ws has pings",
                Some("use `keep_alive` to ping the server".into()),
            );
        }
        GraphQl {
            subprotocol,
            init_payload,
            path: raw.path.clone(),
            keep_alive,
            ka_timeout,
        }
    }

    /// A `graphql_subscribe`, `graphql_query` or `graphql_mutation` step.
    pub(in crate::validate) fn operation_step(
        &mut self,
        raw: &RawOperation,
        kind: OperationKind,
        at: At<'_>,
        connected: &[bool],
        problems: &mut Problems<'_>,
    ) -> Step {
        let (id, name, conn) =
            self.connection_step(at, raw.name.as_ref(), raw.connection.as_ref(), connected, problems);
        let field = at.field;
        self.require_protocol(conn, "graphql", field, at.kind, problems);
        let document = match (&raw.query, &raw.query_file) {
            (Some(query), None) => Some((query.clone(), format!("{field}.query"))),
            (None, Some(file)) => {
                let at = format!("{field}.query_file");
                let missing = !self.files.contains_key(file);
                let bytes = self.file(file, &at, problems);
                match String::from_utf8(bytes) {
                    // Told once, by `file`.
                    _ if missing => None,
                    Ok(text) => Some((text, at)),
                    Err(_) => {
                        problems.add(&at, format!("`{file}` is not UTF-8 text"), None);
                        None
                    }
                }
            }
            _ => {
                problems.add(
                    field,
                    format!("a `{}` needs exactly one of `query` or `query_file`", at.kind),
                    Some("write the GraphQL document inline in `query`, or name a file in `query_file`".into()),
                );
                None
            }
        };
        let mut operation = raw.operation_name.clone();
        if let Some((text, at)) = &document {
            match Document::parse(text).and_then(|document| {
                document
                    .select(raw.operation_name.as_deref())
                    .map(|(found, name)| (found, name.map(str::to_owned)))
            }) {
                Ok((found, found_name)) => {
                    if found != kind {
                        problems.add(
                            at,
                            format!(
                                "the operation is a {}, and this step runs {}s",
                                found.word(),
                                kind.word()
                            ),
                            Some(format!("run it with a `{}` step", found.step())),
                        );
                    }
                    operation = operation.or(found_name);
                }
                Err(message) => problems.add(at, message, None),
            }
        }
        let variables = raw.variables.as_ref().map(|variables| {
            if !variables.is_object() {
                problems.add(
                    &format!("{field}.variables"),
                    "variables are an object of names and values",
                    Some("write e.g. `variables: { n: 3, user: '${user}' }`".into()),
                );
            }
            self.plain_json(variables, &format!("{field}.variables"), problems)
        });
        let mut fields = vec![(
            "\"query\"".to_owned(),
            JsonTemplate::Literal(
                serde_json::Value::String(document.map(|(text, _)| text).unwrap_or_default()).to_string(),
            ),
        )];
        if let Some(variables) = variables {
            fields.push(("\"variables\"".to_owned(), variables));
        }
        if let Some(operation_name) = &raw.operation_name {
            fields.push((
                "\"operationName\"".to_owned(),
                JsonTemplate::Literal(serde_json::Value::String(operation_name.clone()).to_string()),
            ));
        }
        let payload = JsonTemplate::Object(fields);
        let result = if kind == OperationKind::Subscription {
            for (given, what) in [
                (raw.timeout.is_some(), "timeout"),
                (raw.matcher.is_some(), "match"),
                (!raw.extract.is_empty(), "extract"),
            ] {
                if given {
                    problems.add(
                        &format!("{field}.{what}"),
                        format!("a subscription does not wait, so it has no `{what}`"),
                        Some("read its results with `receive: { match: { event: OPERATION, ... } }` steps".into()),
                    );
                }
            }
            None
        } else {
            Some(ResultWait {
                timeout: duration_field(
                    raw.timeout.as_deref(),
                    &format!("{field}.timeout"),
                    DEFAULT_RESULT_TIMEOUT,
                    problems,
                ),
                matcher: raw
                    .matcher
                    .as_ref()
                    .map(|matcher| self.matcher(matcher, &format!("{field}.match"), problems)),
                extract: self.extractions(
                    &raw.extract,
                    &format!("{field}.extract"),
                    &["json", "regex", "body"],
                    problems,
                ),
            })
        };
        let operation = operation.unwrap_or_else(|| name.clone());
        let set = self.event_set(OPERATION_SET_PREFIX, &operation);
        match kind {
            OperationKind::Subscription => self.graphql_subscriptions.push((name.clone(), id, conn)),
            // A later receive may time the result the mutation caused (`latency_of`).
            OperationKind::Mutation => self.send_names.push((name.clone(), id)),
            OperationKind::Query => {}
        }
        Step {
            id,
            name,
            action: Action::Operation(Box::new(Operation {
                conn,
                kind,
                operation,
                payload,
                set,
                result,
            })),
        }
    }

    /// A `graphql_complete` step: ends a subscription an earlier `graphql_subscribe` step on the
    /// same connection started.
    pub(in crate::validate) fn complete_step(
        &mut self,
        raw: &RawComplete,
        at: At<'_>,
        connected: &[bool],
        problems: &mut Problems<'_>,
    ) -> Step {
        let (id, name, conn) =
            self.connection_step(at, raw.name.as_ref(), raw.connection.as_ref(), connected, problems);
        let field = at.field;
        self.require_protocol(conn, "graphql", field, at.kind, problems);
        let found = self
            .graphql_subscriptions
            .iter()
            .find(|(known, _, _)| *known == raw.subscription)
            .map(|(_, step, on)| (*step, *on));
        let subscription = match found {
            Some((step, on)) => {
                if on != conn {
                    problems.add(
                        &format!("{field}.subscription"),
                        format!("subscription `{}` runs on another connection", raw.subscription),
                        Some("name the connection it was started on with `connection:`".into()),
                    );
                }
                step
            }
            None => {
                let known: Vec<&str> = self
                    .graphql_subscriptions
                    .iter()
                    .map(|(known, _, _)| known.as_str())
                    .collect();
                let hint = crate::error::closest(&raw.subscription, known.iter().copied())
                    .map(|close| format!("did you mean `{close}`?"))
                    .unwrap_or_else(|| {
                        "name the `graphql_subscribe` step (`graphql_subscribe: { name: ticks, ... }`) and complete it by that name after it"
                            .into()
                    });
                problems.add(
                    &format!("{field}.subscription"),
                    format!(
                        "no `graphql_subscribe` step before this one is named `{}`",
                        raw.subscription
                    ),
                    Some(hint),
                );
                0
            }
        };
        Step {
            id,
            name,
            action: Action::Complete(Complete { conn, subscription }),
        }
    }

    /// A JSON value with templates in its strings and no binary attachments.
    fn plain_json(&self, value: &serde_json::Value, field: &str, problems: &mut Problems<'_>) -> JsonTemplate {
        let mut attachments = Vec::new();
        let template = self.json_template(value, field, &mut attachments, problems);
        if !attachments.is_empty() {
            problems.add(
                field,
                "GraphQL payloads are JSON text: `$binary` has no place here",
                None,
            );
        }
        template
    }
}
