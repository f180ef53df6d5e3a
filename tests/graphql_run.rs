//! GraphQL over WebSocket through the real binary: `wsfleet run` with two agents against a real
//! strawberry-graphql server (`common/brokers.rs`, `data/graphql_server.py`) that counts what it
//! served. The run's summary, merged across the agents, must say the same, exactly: every
//! subscription's results, queries and mutations over the socket, a mutation over HTTP, the
//! results those mutations caused (timed from the mutation), resolver errors, a refused
//! `connection_init`, and both subprotocols negotiated.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::brokers::GraphQl;
use common::*;
use serde_json::Value;

/// VUs and iterations of each run: 4 VUs over 2 agents, 2 iterations each.
const VUS: u64 = 4;
const ITERATIONS: u64 = 2;
const PLAYS: u64 = VUS * ITERATIONS;

/// Runs `scenario` on two local agents; returns the summary and the exit code.
fn run(scenario: &str) -> (Value, i32) {
    run_summary("graphql.yaml", scenario, 2, Duration::from_secs(90))
}

fn stat(stats: &Value, name: &str) -> u64 {
    stats[name].as_u64().unwrap_or_else(|| panic!("no `{name}` in {stats}"))
}

/// A run-wide counter, 0 when the run never counted it.
fn total(summary: &Value, name: &str) -> u64 {
    summary["totals"]["counters"][name].as_u64().unwrap_or(0)
}

fn error_count(summary: &Value, kind: &str) -> u64 {
    summary["totals"]["errors"][kind].as_u64().unwrap_or(0)
}

#[test]
fn subscriptions_queries_and_mutations_over_graphql_transport_ws() {
    let server = GraphQl::start();
    let scenario = format!(
        r#"load: {{ vus: {VUS}, iterations: {ITERATIONS} }}
steps:
  - connect:
      url: ws://127.0.0.1:{port}/ignored
      protocol: graphql
      graphql: {{ path: /graphql, init_payload: {{ token: "vu-${{vu}}" }}, keep_alive: 10s }}
  - graphql_subscribe:
      name: ticks
      query: "subscription Count($to: Int!) {{ count(to: $to, intervalMs: 5) }}"
      variables: {{ to: 5 }}
  - repeat:
      count: 5
      steps:
        - receive: {{ name: tick, timeout: 5s, match: {{ event: Count, json: /data/count, regex: '^[1-5]$' }} }}
  - graphql_query:
      query: 'query Hello($name: String!) {{ hello(name: $name) }}'
      variables: {{ name: "vu ${{vu}}" }}
      match: {{ json: /data/hello, equals: "hello vu ${{vu}}" }}
      extract: {{ greeting: {{ json: /data/hello }} }}
  - check: {{ value: "${{greeting}}", equals: "hello vu ${{vu}}" }}
  - graphql_subscribe:
      name: inbox
      query: 'subscription Inbox($topic: String!) {{ messages(topic: $topic, greet: true) }}'
      variables: {{ topic: "t-${{vu}}" }}
  - receive: {{ name: greeted, timeout: 5s, match: {{ event: Inbox, json: /data/messages, equals: subscribed }} }}
  - graphql_mutation:
      name: publish
      query: 'mutation Publish($topic: String!, $text: String!) {{ publish(topic: $topic, text: $text) }}'
      variables: {{ topic: "t-${{vu}}", text: "m-${{vu}}-${{iteration}}" }}
      match: {{ json: /data/publish, equals: "1" }}
  - receive: {{ name: delivered, timeout: 5s, latency_of: publish, match: {{ event: Inbox, json: /data/messages, equals: "m-${{vu}}-${{iteration}}" }} }}
  - graphql_complete: {{ subscription: inbox }}
  - close: {{}}
thresholds:
  "ack_latency{{step=operation:Count}}.count": "== {PLAYS}"
  iterations_failed.count: "== 0"
"#,
        port = server.port
    );
    let (summary, code) = run(&scenario);
    assert_eq!(code, 0, "{summary:#}");
    assert_eq!(summary["totals"]["errors"], serde_json::json!({}), "{summary:#}");
    let stats = server.stats();
    // The server's own counts.
    assert_eq!(stat(&stats, "connections"), PLAYS, "{stats}");
    assert_eq!(stat(&stats, "subscriptions"), 2 * PLAYS, "{stats}");
    assert_eq!(stat(&stats, "queries"), PLAYS, "{stats}");
    assert_eq!(stat(&stats, "mutations"), PLAYS, "{stats}");
    assert_eq!(stat(&stats, "events"), 7 * PLAYS, "{stats}");
    // The same, merged from both agents.
    let received = |set: &str| step_counter(&summary, set, "events_received");
    assert_eq!(received("operation:Count"), 5 * PLAYS);
    assert_eq!(received("operation:Inbox"), 2 * PLAYS);
    assert_eq!(
        received("operation:Count") + received("operation:Inbox"),
        stat(&stats, "events")
    );
    for (set, sent) in [
        ("operation:Count", PLAYS),
        ("operation:Hello", PLAYS),
        ("operation:Inbox", PLAYS),
        ("operation:Publish", PLAYS),
    ] {
        assert_eq!(step_counter(&summary, set, "events_sent"), sent, "{set}");
        // Subscribe → first result; query or mutation → its result.
        assert_eq!(step_counter(&summary, set, "acks_received"), sent, "{set}");
        assert_eq!(step_latency_count(&summary, set, "ack_latency"), sent, "{set}");
    }
    // Mutation → the result it caused, timed by the receive that names it.
    assert_eq!(step_latency_count(&summary, "delivered", "message_latency"), PLAYS);
    assert_eq!(step_counter(&summary, "connect", "protocol_connects"), PLAYS);
}

#[test]
fn legacy_graphql_ws_with_a_mutation_over_http() {
    let server = GraphQl::start();
    let scenario = format!(
        r#"load: {{ vus: {VUS}, iterations: {ITERATIONS} }}
steps:
  - connect:
      url: ws://127.0.0.1:{port}/graphql
      protocol: graphql
      graphql: {{ subprotocol: graphql-ws, ka_timeout: 5s }}
  - graphql_subscribe:
      name: ticks
      query: "subscription Count {{ count(to: 10, intervalMs: 100) }}"
  - repeat:
      count: 10
      steps:
        - receive: {{ name: tick, timeout: 5s, match: {{ event: Count }} }}
  - graphql_subscribe:
      name: inbox
      query: 'subscription Inbox($topic: String!) {{ messages(topic: $topic, greet: true) }}'
      variables: {{ topic: "legacy-${{vu}}" }}
  - receive: {{ name: greeted, timeout: 5s, match: {{ event: Inbox, json: /data/messages, equals: subscribed }} }}
  - http:
      name: publish_http
      method: POST
      url: http://127.0.0.1:{port}/graphql
      body: {{ json: {{ query: 'mutation Publish($topic: String!, $text: String!) {{ publish(topic: $topic, text: $text) }}', variables: {{ topic: "legacy-${{vu}}", text: "h-${{vu}}-${{iteration}}" }} }} }}
      expect: {{ status: 200 }}
  - receive: {{ name: delivered, timeout: 5s, latency_of: publish_http, match: {{ event: Inbox, json: /data/messages, equals: "h-${{vu}}-${{iteration}}" }} }}
  - graphql_complete: {{ subscription: inbox }}
  - close: {{}}
"#,
        port = server.port
    );
    let (summary, code) = run(&scenario);
    assert_eq!(code, 0, "{summary:#}");
    let stats = server.stats();
    assert_eq!(stat(&stats, "connections"), PLAYS, "{stats}");
    assert_eq!(stat(&stats, "subscriptions"), 2 * PLAYS, "{stats}");
    assert_eq!(stat(&stats, "mutations"), PLAYS, "{stats}");
    assert_eq!(stat(&stats, "events"), 12 * PLAYS, "{stats}");
    let received = |set: &str| step_counter(&summary, set, "events_received");
    assert_eq!(
        received("operation:Count") + received("operation:Inbox"),
        stat(&stats, "events")
    );
    assert_eq!(step_latency_count(&summary, "delivered", "message_latency"), PLAYS);
    // The server's `ka` (every 0.5 s here) over a run of at least a second per iteration.
    let keep_alives = counter(&summary, "heartbeats_received");
    assert!(keep_alives >= 2 * PLAYS, "{keep_alives} keep-alives");
    assert_eq!(
        total(&summary, "heartbeats_sent"),
        0,
        "graphql-ws has no client keep-alive"
    );
}

#[test]
fn resolver_errors_are_counted_as_graphql_errors() {
    let server = GraphQl::start();
    let scenario = format!(
        r#"load: {{ vus: {VUS}, iterations: {ITERATIONS} }}
steps:
  - connect:
      url: ws://127.0.0.1:{port}/graphql
      protocol: graphql
  - graphql_query: {{ name: boom, query: "query Boom {{ boom }}" }}
  - graphql_subscribe: {{ name: failing, query: "subscription Fail {{ fail(after: 2) }}" }}
  - repeat:
      count: 2
      steps:
        - receive: {{ name: before_failure, timeout: 5s, match: {{ event: Fail }} }}
  - receive: {{ name: failure, timeout: 5s, on_timeout: continue }}
on_error:
  - {{ kinds: [graphql_error], then: continue }}
"#,
        port = server.port
    );
    let (summary, code) = run(&scenario);
    assert_eq!(code, 0, "{summary:#}");
    let stats = server.stats();
    // Each play: the query's resolver raised, the subscription's generator raised after 2.
    assert_eq!(stat(&stats, "errors"), 2 * PLAYS, "{stats}");
    assert_eq!(
        error_count(&summary, "graphql_error"),
        stat(&stats, "errors"),
        "{summary:#}"
    );
    assert_eq!(step_counter(&summary, "boom", "errors.graphql_error"), PLAYS);
    assert_eq!(step_counter(&summary, "failure", "errors.graphql_error"), PLAYS);
    assert_eq!(step_counter(&summary, "operation:Fail", "events_received"), 2 * PLAYS);
}

#[test]
fn a_refused_init_is_told_in_each_subprotocols_way() {
    let server = GraphQl::start();
    let scenario = format!(
        r#"load: {{ vus: {VUS}, iterations: {ITERATIONS} }}
steps:
  - connect:
      name: legacy
      connection: legacy
      url: ws://127.0.0.1:{port}/graphql
      protocol: graphql
      graphql: {{ subprotocol: graphql-ws, init_payload: {{ token: refuse }} }}
  - connect:
      name: modern
      connection: modern
      url: ws://127.0.0.1:{port}/graphql
      protocol: graphql
      graphql: {{ subprotocol: graphql-transport-ws, init_payload: {{ token: refuse }} }}
on_error:
  - {{ kinds: [connect_error], then: continue }}
on_close:
  - {{ codes: [4403], then: continue }}
"#,
        port = server.port
    );
    let (summary, code) = run(&scenario);
    assert_eq!(code, 0, "{summary:#}");
    assert_eq!(stat(&server.stats(), "refused"), 2 * PLAYS);
    // graphql-ws answers `connection_error`; graphql-transport-ws closes 4403 (Forbidden).
    assert_eq!(
        step_counter(&summary, "legacy", "errors.connect_error"),
        PLAYS,
        "{summary:#}"
    );
    assert_eq!(
        summary["totals"]["close_codes"]["4403"].as_u64(),
        Some(PLAYS),
        "{summary:#}"
    );
    // The close is counted where the rule that took it is.
    assert_eq!(
        step_counter(&summary, "on_close", "close_codes.4403"),
        PLAYS,
        "{summary:#}"
    );
    assert_eq!(total(&summary, "protocol_connects"), 0);
}
