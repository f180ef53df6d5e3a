//! GraphQL over WebSocket's steps on the protocol layer: the endpoint's URL, the connection's
//! session (its `connection_init` payload rendered), `subscribe`, `query` and `mutation` (the
//! latter two wait for their result), and `complete`. Counted here, in the operation's set
//! (`operation:NAME`): `events_sent` per operation started; the glue (`protocol.rs`) counts
//! `acks_received` and `ack_latency` when the first result of a subscription, or the result of
//! a query or mutation, comes.

use wsfleet_metrics::{Counter, ErrorKind, SetId};
use wsfleet_scenario::protocol::graphql::{Complete, GraphQl, Operation, OperationKind};
use wsfleet_scenario::{Flush, Scope, Step};

use super::outcome::{Failure, StepResult};
use super::protocol::due_at;
use super::state::Vu;
use crate::clock;
use crate::protocol::graphql::layer::GraphQlLayer;
use crate::protocol::graphql::message::{ResultErrors, Subprotocol};
use crate::protocol::graphql::{Options, Session};

/// The endpoint's URL: the connect step's, with its path replaced by `graphql.path` when given.
pub(super) fn graphql_url(base: &str, options: &GraphQl) -> String {
    let Some(path) = &options.path else {
        return base.to_owned();
    };
    let (scheme, rest) = base.split_once("://").unwrap_or(("ws", base));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    format!("{scheme}://{authority}{path}")
}

/// A new connection's GraphQL layer, its `connection_init` payload rendered in `scope`.
pub(super) fn graphql_layer(options: &GraphQl, scope: &Scope<'_>) -> GraphQlLayer {
    let subprotocol = Subprotocol::from_name(options.subprotocol).unwrap_or(Subprotocol::TransportWs);
    let mut session = Options::new(subprotocol);
    session.init_payload = options.init_payload.as_ref().map(|payload| {
        let mut out = String::new();
        payload.render_into(scope, &mut out);
        out
    });
    session.keep_alive = options.keep_alive;
    session.ka_timeout = options.ka_timeout;
    GraphQlLayer::new(Session::new(session))
}

impl Vu {
    /// A `subscribe`, `query` or `mutation` step: the operation's message, then, for a query or
    /// mutation, the wait for its result (other messages go to the handlers and queues
    /// meanwhile).
    pub(super) async fn operation_step(&mut self, step: &Step, operation: &Operation, iteration: u64) -> StepResult {
        let payload = {
            let parts = self.parts();
            let scope = parts.scope(iteration);
            let mut out = String::new();
            operation.payload.render_into(&scope, &mut out);
            out
        };
        let awaited = operation.result.is_some();
        let conn = self.conn_mut(operation.conn, step.id)?;
        let Some(layer) = conn.protocol.as_mut().and_then(|speaking| speaking.layer.as_graphql()) else {
            return Err(Failure::new(step.id, ErrorKind::Protocol).into());
        };
        let (id, message) = match layer.start(&payload, &operation.operation, awaited, step.id) {
            Ok(started) => started,
            Err(why) => {
                tracing::debug!(vu = self.number, why = %why, "an operation the session cannot start");
                return Err(Failure::new(step.id, ErrorKind::Closed).into());
            }
        };
        self.send_message(
            operation.conn,
            message,
            1,
            Flush::Each,
            SetId::Step(step.id),
            step.id,
            iteration,
        )
        .await?;
        // Timed from when the operation left (from when it was due, when a paced iteration
        // runs late).
        let sent = self.flush_held(step.id, iteration).await?.unwrap_or_else(clock::now);
        self.recent = None;
        let due = due_at(sent, self.lag);
        self.env
            .recorder
            .borrow_mut()
            .add(sent, SetId::Step(operation.set), Counter::EventsSent, 1);
        if operation.kind == OperationKind::Mutation {
            self.note_request(step.id, due);
        }
        {
            let conn = self.conn_mut(operation.conn, step.id)?;
            let Some(speaking) = conn.protocol.as_mut() else {
                return Err(Failure::new(step.id, ErrorKind::Closed).into());
            };
            // A subscription's first result acknowledges it: timed, awaited by no step.
            speaking.expect_ack(id, step.id, operation.set, due, awaited);
        }
        let Some(wait) = &operation.result else {
            return Ok(());
        };
        let answer = self
            .await_ack(
                operation.conn,
                id,
                sent + wait.timeout,
                step.id,
                iteration,
                ErrorKind::AckTimeout,
            )
            .await?;
        if let Some(errors) = result_errors(&answer.body) {
            tracing::debug!(vu = self.number, operation = %operation.operation, errors = %errors, "a result with errors");
            return Err(Failure::new(step.id, ErrorKind::GraphqlError).into());
        }
        self.take_answer(&answer.body, wait.matcher.as_ref(), &wait.extract, step.id, iteration)
    }

    /// A `complete` step: ends the subscription its `subscribe` step started on the connection
    /// (nothing to send when the server ended it already).
    pub(super) async fn complete_step(&mut self, step: &Step, complete: &Complete, iteration: u64) -> StepResult {
        let conn = self.conn_mut(complete.conn, step.id)?;
        let Some(layer) = conn.protocol.as_mut().and_then(|speaking| speaking.layer.as_graphql()) else {
            return Err(Failure::new(step.id, ErrorKind::Protocol).into());
        };
        let Some(message) = layer.operation_of(complete.subscription).and_then(|id| layer.stop(id)) else {
            return Ok(());
        };
        self.send_message(
            complete.conn,
            message,
            1,
            Flush::Each,
            SetId::Step(step.id),
            step.id,
            iteration,
        )
        .await
    }
}

/// The `errors` of a result, when it has some.
fn result_errors(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let raw: Box<serde_json::value::RawValue> = serde_json::from_str(text).ok()?;
    ResultErrors::of(&raw)
}
