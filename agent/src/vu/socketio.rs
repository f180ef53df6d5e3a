//! Socket.IO's steps on the protocol layer: the server's URL, the namespaces' auth payloads,
//! the `emit` step (and its wait for an acknowledgement), and a rule's acknowledgement of an
//! event (`on_message: { ack }`). Counted here: `events_sent` in the set of the event's name,
//! `acks_sent` in the set of the acknowledged event's name.

use std::time::Instant;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;
use wsfleet_metrics::{Counter, ErrorKind, SetId};
use wsfleet_scenario::protocol::{Emit, JsonTemplate, SocketIo, EVENT_SET_PREFIX};
use wsfleet_scenario::{Scope, Step, StepId};

use super::conn::Arrived;
use super::inbox::Reply;
use super::outcome::{Failure, StepResult};
use super::protocol::due_at;
use super::state::Vu;
use crate::clock;
use crate::protocol::socketio;

/// The WebSocket URL of a Socket.IO server: its origin (`http`/`https` become `ws`/`wss`), the
/// Engine.IO path, `EIO=4&transport=websocket` and the step's query.
pub(super) fn socketio_url(base: &str, options: &SocketIo, scope: &Scope<'_>) -> String {
    let base = base.trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        base.to_owned()
    };
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("EIO", "4");
    query.append_pair("transport", "websocket");
    for (name, value) in &options.query {
        query.append_pair(name, &value.render(scope));
    }
    format!("{base}{}?{}", options.path, query.finish())
}

impl Vu {
    /// Each namespace's auth payload, rendered.
    pub(super) fn socketio_auths(&self, options: &SocketIo, iteration: u64) -> Vec<Option<String>> {
        let parts = self.parts();
        let scope = parts.scope(iteration);
        options
            .namespaces
            .iter()
            .map(|namespace| {
                namespace.auth.as_ref().map(|auth| {
                    let mut out = String::new();
                    auth.render_into(&scope, &mut out);
                    out
                })
            })
            .collect()
    }

    /// A rule's acknowledgement of an event that asked for one (`on_message: { ack }`): the
    /// packet, counted in the event's `acks_sent`; `None` when the event asked for none.
    pub(super) fn ack_reply(
        &self,
        rule: StepId,
        args: &[JsonTemplate],
        arrived: &Arrived,
        iteration: u64,
        now: Instant,
    ) -> Option<Reply> {
        let event = arrived.event.as_ref()?;
        let id: u64 = event.reply_to.as_deref()?.parse().ok()?;
        let mut rendered = String::new();
        {
            let parts = self.parts();
            let scope = parts.scope(iteration);
            for arg in args {
                rendered.push(',');
                arg.render_into(&scope, &mut rendered);
            }
        }
        let set = self.event_set_of(EVENT_SET_PREFIX, &event.name, rule);
        self.env
            .recorder
            .borrow_mut()
            .add(now, SetId::Step(set), Counter::AcksSent, 1);
        Some(Reply::Rule(
            rule,
            Message::text(socketio::packet::ack(&event.namespace, id, &rendered)),
        ))
    }

    /// The `emit` step: the event's packet and attachments, then, when it asks for an
    /// acknowledgement, the wait for it (other messages go to the handlers and queues meanwhile).
    pub(super) async fn emit_step(&mut self, step: &Step, emit: &Emit, iteration: u64) -> StepResult {
        let args = {
            let parts = self.parts();
            let scope = parts.scope(iteration);
            let mut out = String::new();
            for arg in &emit.args {
                out.push(',');
                arg.render_into(&scope, &mut out);
            }
            out
        };
        let attachments: Vec<Bytes> = emit
            .attachments
            .iter()
            .map(|bytes| Bytes::from(bytes.clone()))
            .collect();
        let conn = self.conn_mut(emit.conn, step.id)?;
        let Some(session) = conn.protocol.as_mut().and_then(|speaking| speaking.layer.as_socketio()) else {
            return Err(Failure::new(step.id, ErrorKind::Protocol).into());
        };
        let (messages, id) = session
            .emit(&emit.namespace, &emit.event, &args, &attachments, emit.ack.is_some())
            .map_err(|_| Failure::new(step.id, ErrorKind::Closed))?;
        for message in messages {
            self.send_message(
                emit.conn,
                message,
                1,
                emit.flush,
                SetId::Step(step.id),
                step.id,
                iteration,
            )
            .await?;
        }
        self.env
            .recorder
            .borrow_mut()
            .add(clock::now(), SetId::Step(emit.event_set), Counter::EventsSent, 1);
        let (Some(ack), Some(id)) = (&emit.ack, id) else {
            return Ok(());
        };
        // The acknowledgement is timed from when the event left (from when it was due, when a
        // paced iteration runs late).
        let sent = self.flush_held(step.id, iteration).await?.unwrap_or_else(clock::now);
        self.recent = None;
        let due = due_at(sent, self.lag);
        {
            let conn = self.conn_mut(emit.conn, step.id)?;
            let Some(speaking) = conn.protocol.as_mut() else {
                return Err(Failure::new(step.id, ErrorKind::Closed).into());
            };
            speaking.expect_ack(id, step.id, emit.event_set, due, true);
        }
        let answer = self
            .await_ack(
                emit.conn,
                id,
                sent + ack.timeout,
                step.id,
                iteration,
                ErrorKind::AckTimeout,
            )
            .await?;
        self.take_answer(&answer.body, ack.matcher.as_ref(), &ack.extract, step.id, iteration)
    }
}
