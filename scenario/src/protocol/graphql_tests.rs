//! GraphQL-over-WebSocket scenarios: what compiles (options, operations and their payloads,
//! operation sets, the subprotocol offered and expected) and what is refused, each problem
//! located with its field.

use super::*;
use crate::protocol::graphql::{OperationKind, DEFAULT_RESULT_TIMEOUT};
use crate::protocol::Protocol;

fn compile(source: &str) -> Result<Scenario, ScenarioError> {
    Bundle {
        path: "s.yaml".into(),
        source: source.into(),
        files: BTreeMap::from([(
            "count.graphql".to_owned(),
            b"subscription Count { count(to: 3) }".to_vec(),
        )]),
    }
    .compile()
}

fn problems(source: &str) -> Vec<Problem> {
    compile(source)
        .expect_err("scenario should be refused")
        .problems()
        .to_vec()
}

/// The one problem of `source`: its field and message.
fn only(source: &str) -> (String, String) {
    let found = problems(source);
    assert_eq!(found.len(), 1, "{found:#?}");
    (found[0].field.clone(), found[0].message.clone())
}

const FEED: &str = "\
load: { vus: 1, iterations: 1 }
steps:
  - connect:
      url: 'ws://127.0.0.1:9/x'
      protocol: graphql
      graphql: { path: /graphql, init_payload: { token: 't${vu}' }, keep_alive: 5s }
  - graphql_subscribe: { name: ticks, query_file: count.graphql }
  - receive: { match: { event: Count, json: /data/count, equals: '1' } }
  - graphql_query: { query: 'query Hello($n: String!) { hello(name: $n) }', variables: { n: 'v${vu}' }, timeout: 2s, extract: { greeting: { json: /data/hello } } }
  - graphql_mutation: { name: publish, query: 'mutation A { a } mutation B { b }', operation_name: B, match: { json: /data/b, equals: '${greeting}' } }
  - receive: { latency_of: publish, match: { event: Count } }
  - graphql_complete: { subscription: ticks }
";

#[test]
fn options_operations_and_operation_sets_compile() {
    let scenario = compile(FEED).unwrap();
    let part = &scenario.parts[0];
    let Action::Connect(connect) = &part.steps[0].action else {
        panic!("not a connect")
    };
    let Some(Protocol::GraphQl(options)) = &connect.protocol else {
        panic!("no protocol")
    };
    assert_eq!(options.subprotocol, "graphql-transport-ws");
    assert_eq!(options.path.as_deref(), Some("/graphql"));
    assert_eq!(options.keep_alive.map(|every| every.as_secs()), Some(5));
    // Offered alone, and the server must agree.
    assert_eq!(connect.subprotocols.len(), 1);
    assert_eq!(connect.subprotocols[0].as_literal(), Some("graphql-transport-ws"));
    assert_eq!(connect.expect.subprotocol.as_deref(), Some("graphql-transport-ws"));

    let operation = |index: usize| match &part.steps[index].action {
        Action::Operation(operation) => operation.as_ref().clone(),
        other => panic!("not an operation: {other:?}"),
    };
    let ticks = operation(1);
    assert_eq!(
        (ticks.kind, ticks.operation.as_str()),
        (OperationKind::Subscription, "Count")
    );
    assert!(ticks.result.is_none());
    let hello = operation(3);
    assert_eq!((hello.kind, hello.operation.as_str()), (OperationKind::Query, "Hello"));
    assert_eq!(hello.result.as_ref().map(|wait| wait.timeout.as_secs()), Some(2));
    let publish = operation(4);
    assert_eq!(
        (publish.kind, publish.operation.as_str()),
        (OperationKind::Mutation, "B")
    );
    assert_eq!(
        publish.result.as_ref().map(|wait| wait.timeout),
        Some(DEFAULT_RESULT_TIMEOUT)
    );
    let named = |id: StepId| scenario.step_names[usize::from(id)].clone();
    assert_eq!(named(ticks.set), "operation:Count");
    assert_eq!(named(hello.set), "operation:Hello");
    assert_eq!(named(publish.set), "operation:B");
    let events = part.events.as_ref().expect("operation sets");
    assert_eq!(named(events.of("operation:", "Count", 0)), "operation:Count");
    assert_eq!(named(events.of("operation:", "Other", 0)), "operation:*");
    let Action::Receive(timed) = &part.steps[5].action else {
        panic!("not a receive")
    };
    assert_eq!(
        timed.latency_of,
        Some(part.steps[4].id),
        "a mutation is what latency_of may name"
    );
    let Action::Complete(complete) = &part.steps[6].action else {
        panic!("not a complete")
    };
    assert_eq!(complete.subscription, part.steps[1].id);
}

#[test]
fn payloads_carry_query_variables_and_operation_name() {
    let scenario = compile(FEED).unwrap();
    let Action::Operation(publish) = &scenario.parts[0].steps[4].action else {
        panic!("not an operation")
    };
    let named = crate::Values::default();
    let scope = Scope {
        vu: 1,
        iteration: 0,
        vu_iteration: 0,
        agent: "",
        named: &named,
        local: None,
    };
    let mut out = String::new();
    publish.payload.render_into(&scope, &mut out);
    let payload: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        payload,
        serde_json::json!({ "query": "mutation A { a } mutation B { b }", "operationName": "B" })
    );
}

#[test]
fn documents_are_checked_and_problems_located() {
    let (field, message) = only(&FEED.replace("hello(name: $n) }'", "hello(name: ) }'"));
    assert_eq!(field, "steps[3].graphql_query.query");
    assert!(message.contains("1:"), "{message}");
    let (field, message) = only(&FEED.replace("query: 'query Hello", "query: 'subscription Hello"));
    assert_eq!(field, "steps[3].graphql_query.query");
    assert!(message.contains("is a subscription"), "{message}");
    let (field, message) = only(&FEED.replace("operation_name: B,", ""));
    assert_eq!(field, "steps[4].graphql_mutation.query");
    assert!(message.contains("several operations (A, B)"), "{message}");
    let (field, _) = only(&FEED.replace("operation_name: B", "operation_name: C"));
    assert_eq!(field, "steps[4].graphql_mutation.query");
    let (field, message) = only(&FEED.replace("query_file: count.graphql", "query_file: nope.graphql"));
    assert_eq!(field, "steps[1].graphql_subscribe.query_file");
    assert!(message.contains("did not come"), "{message}");
    let (field, _) = only(&FEED.replace("{ name: ticks, query_file: count.graphql }", "{ name: ticks }"));
    assert_eq!(field, "steps[1].graphql_subscribe");
    let (field, _) = only(&FEED.replace("variables: { n: 'v${vu}' }", "variables: [1]"));
    assert_eq!(field, "steps[3].graphql_query.variables");
    let (field, _) = only(&FEED.replace("'v${vu}'", "'v${vuu}'"));
    assert_eq!(field, "steps[3].graphql_query.variables.n");
}

#[test]
fn options_and_steps_out_of_place_are_refused() {
    let (field, message) = only(&FEED.replace("keep_alive: 5s", "keep_alive: 5s, subprotocol: graphql-sw"));
    assert_eq!(field, "steps[0].connect.graphql.subprotocol");
    assert!(message.contains("graphql-sw"), "{message}");
    let (field, _) = only(&FEED.replace("keep_alive: 5s", "keep_alive: 5s, subprotocol: graphql-ws"));
    assert_eq!(field, "steps[0].connect.graphql.keep_alive");
    let (field, _) = only(&FEED.replace("keep_alive: 5s", "ka_timeout: 5s"));
    assert_eq!(field, "steps[0].connect.graphql.ka_timeout");
    let (field, _) = only(&FEED.replace("path: /graphql", "path: graphql"));
    assert_eq!(field, "steps[0].connect.graphql.path");
    let (field, _) = only(&FEED.replace("init_payload: { token: 't${vu}' }", "init_payload: [1]"));
    assert_eq!(field, "steps[0].connect.graphql.init_payload");
    let (field, _) = only(&FEED.replace("protocol: graphql\n", "protocol: graphql\n      subprotocols: [x]\n"));
    assert_eq!(field, "steps[0].connect.subprotocols");
    let (field, message) = only(&FEED.replace(
        "{ name: ticks, query_file: count.graphql }",
        "{ name: ticks, query_file: count.graphql, timeout: 1s }",
    ));
    assert_eq!(field, "steps[1].graphql_subscribe.timeout");
    assert!(message.contains("does not wait"), "{message}");
    let (field, message) = only(&FEED.replace("subscription: ticks", "subscription: tick"));
    assert_eq!(field, "steps[6].graphql_complete.subscription");
    assert!(message.contains("`tick`"), "{message}");
    let found = problems(&FEED.replace("      protocol: graphql\n", ""));
    assert!(
        found.iter().any(|problem| problem.field == "steps[0].connect.graphql"),
        "{found:#?}"
    );
    assert!(
        found.iter().any(
            |problem| problem.field == "steps[1].graphql_subscribe" && problem.message.contains("speaks `graphql`")
        ),
        "{found:#?}"
    );
}

#[test]
fn graphql_error_is_an_error_kind_rules_name() {
    let scenario = compile(&format!(
        "{FEED}on_error:\n  - {{ kinds: [graphql_error], then: continue }}\n"
    ));
    assert!(scenario.is_ok(), "{:?}", scenario.err());
}
