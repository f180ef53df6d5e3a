//! The VU's side of the protocol layer (`crate::protocol`): the handshake after the upgrade,
//! what each decoded message does (events to the steps and handlers, heartbeats answered,
//! acknowledgements to the emit that waits for them, refusals and violations as failures),
//! the `emit` step, and the goodbye before a client close. Counted and timed here:
//! - `events_sent`, `events_received`, `acks_received` and `ack_latency` in the metric set of
//!   the event's name (`event:NAME`, or `event:*` for names the scenario does not mention);
//! - `heartbeats_received`, `heartbeats_sent`, `protocol_disconnects`, and the messages the
//!   layer handles itself (open, connect answers, heartbeats), in the connection set;
//! - `protocol_connects` in the connect step's set; an event's messages where it is taken.

use std::time::Instant;

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use wsfleet_metrics::{Counter, ErrorKind, Hist, SetId};
use wsfleet_scenario::matcher::{Incoming, Origin};
use wsfleet_scenario::protocol::{Emit, Protocol, SocketIo};
use wsfleet_scenario::{ConnId, FrameKind, Scope, Step, StepId, Then};

use super::conn::{count_message, Conn};
use super::flow::extract_into;
use super::inbox::Reply;
use super::outcome::{Failure, StepResult, Stop};
use super::state::Vu;
use crate::clock;
use crate::protocol::{socketio, Ack, Decoded, Event, Layer};

/// Acknowledgements a connection keeps track of: those emits wait for, and those that came.
#[derive(Default)]
pub(super) struct Acks {
    waiting: Vec<Waiting>,
    arrived: Vec<(u64, Box<Ack>, Instant)>,
}

/// An emit's acknowledgement, asked for and not yet come.
struct Waiting {
    id: u64,
    /// The emit step (its set counts the acknowledgement's messages).
    step: StepId,
    event_set: StepId,
    sent: Instant,
    /// The emit stopped waiting: the acknowledgement is still counted when it comes, untimed.
    timed_out: bool,
}

/// Acknowledgements still tracked after their emit gave up; past this the oldest is forgotten
/// (and a late answer to it is a violation), so a server that never answers cannot grow the
/// list without bound.
const TIMED_OUT_ACKS_KEPT: usize = 1024;

/// What the layer made of a message, for `ingest`.
pub(super) enum Layered {
    /// An event for the steps and handlers, with the message that carried it.
    Event(Message, Box<Event>),
    /// An answer the layer sends (a heartbeat's).
    Reply(Reply),
    /// Nothing for the steps.
    Nothing,
}

/// What a connection that speaks a protocol holds: the layer's session and the
/// acknowledgements its emits wait for.
pub(super) struct Speaking {
    pub(super) layer: Layer,
    acks: Acks,
}

/// The protocol state of a new connection for the protocol a connect step names.
pub(super) fn speaking(protocol: &Protocol) -> Box<Speaking> {
    let layer = match protocol {
        Protocol::SocketIo(options) => Layer::SocketIo(socketio::Session::new(
            options.namespaces.iter().map(|namespace| namespace.name.clone()),
        )),
    };
    Box::new(Speaking {
        layer,
        acks: Acks::default(),
    })
}

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
    /// Reads a message through the connection's layer, counting what the layer keeps.
    pub(super) fn layered(
        &mut self,
        conn_id: ConnId,
        message: Message,
        now: Instant,
        step: StepId,
        compressed: Option<u64>,
    ) -> Result<Layered, Stop> {
        let env = self.env.clone();
        let events = env.scenario.parts[self.part].events.as_ref();
        let event_set = |name: &str| events.map_or(step, |events| events.of(name));
        let Some(conn) = self.conns.get_mut(conn_id).and_then(Option::as_mut) else {
            return Ok(Layered::Nothing);
        };
        let Some(speaking) = conn.protocol.as_mut() else {
            return Ok(Layered::Nothing);
        };
        let decoded = speaking.layer.decode(&message);
        let recorder = conn.recorder.clone();
        let mut recorder = recorder.borrow_mut();
        let connection = SetId::Connection;
        match decoded {
            Decoded::Partial => Ok(Layered::Nothing),
            Decoded::Handled => {
                count_message(&mut recorder, now, connection, &message, compressed);
                Ok(Layered::Nothing)
            }
            Decoded::Heartbeat(answer) => {
                count_message(&mut recorder, now, connection, &message, compressed);
                recorder.add_counts(
                    now,
                    connection,
                    [(Counter::HeartbeatsReceived, 1), (Counter::HeartbeatsSent, 1)],
                );
                Ok(Layered::Reply(Reply::Protocol(step, answer)))
            }
            Decoded::Connected(_) => {
                count_message(&mut recorder, now, connection, &message, compressed);
                recorder.add(now, SetId::Step(step), Counter::ProtocolConnects, 1);
                Ok(Layered::Nothing)
            }
            Decoded::Event(mut event) => {
                recorder.add(now, SetId::Step(event_set(&event.name)), Counter::EventsReceived, 1);
                let message = event.packet.take().unwrap_or(message);
                Ok(Layered::Event(message, event))
            }
            Decoded::Ack(mut ack) => {
                // A packet with attachments was read before this message: its wire size is not
                // this message's.
                let compressed = compressed.filter(|_| ack.attachments.is_empty());
                let packet = ack.packet.take().unwrap_or(message);
                let acks = &mut speaking.acks;
                let Some(position) = acks.waiting.iter().position(|waiting| waiting.id == ack.id) else {
                    count_message(&mut recorder, now, connection, &packet, compressed);
                    tracing::debug!(vu = self.number, id = ack.id, "an acknowledgement nothing asked for");
                    return Err(Failure::new(step, ErrorKind::Protocol).into());
                };
                let waiting = acks.waiting.remove(position);
                let set = SetId::Step(waiting.step);
                count_message(&mut recorder, now, set, &packet, compressed);
                for attachment in &ack.attachments {
                    count_message(&mut recorder, now, set, &Message::Binary(attachment.clone()), None);
                }
                let event_set = SetId::Step(waiting.event_set);
                recorder.add(now, event_set, Counter::AcksReceived, 1);
                if !waiting.timed_out {
                    recorder.record(
                        now,
                        event_set,
                        Hist::AckLatency,
                        now.saturating_duration_since(waiting.sent),
                    );
                    acks.arrived.push((ack.id, ack, now));
                }
                Ok(Layered::Nothing)
            }
            Decoded::Refused {
                namespace,
                message: why,
            } => {
                count_message(&mut recorder, now, connection, &message, compressed);
                tracing::debug!(vu = self.number, namespace = %namespace, why = %why, "the server refused a namespace");
                Err(Failure::new(step, ErrorKind::ConnectError).into())
            }
            Decoded::Disconnected(_) => {
                count_message(&mut recorder, now, connection, &message, compressed);
                recorder.add(now, connection, Counter::ProtocolDisconnects, 1);
                let ended = speaking.layer.ended();
                drop(recorder);
                if ended {
                    return Err(self.protocol_ended(conn_id, step));
                }
                Ok(Layered::Nothing)
            }
            Decoded::Violation(why) => {
                count_message(&mut recorder, now, connection, &message, compressed);
                tracing::debug!(vu = self.number, why = %why, "a protocol violation");
                Err(Failure::new(step, ErrorKind::Protocol).into())
            }
        }
    }

    /// The server ended the protocol's last session (Socket.IO: it disconnected every
    /// namespace, or closed the Engine.IO session): the client closes the connection, as
    /// socket.io-client does, and the step that was using it goes through the `on_close` rules
    /// that name no codes (there is no close code to match); without one it fails as `closed`.
    fn protocol_ended(&mut self, conn_id: ConnId, step: StepId) -> Stop {
        if let Some(mut conn) = self.conns.get_mut(conn_id).and_then(Option::take) {
            // A close frame if the socket takes it now; the connection ends either way.
            let _ = conn.socket.send(Message::Close(None)).now_or_never();
        }
        let rule = self
            .spec()
            .on_close
            .iter()
            .find(|rule| rule.conn.is_none_or(|wanted| wanted == conn_id) && rule.codes.is_none());
        match rule.map(|rule| rule.then) {
            None | Some(Then::Fail) => Failure::new(step, ErrorKind::Closed).into(),
            Some(Then::EndIteration | Then::StopVu) => Stop::EndIteration,
            Some(Then::Continue) => Stop::StepEnded,
        }
    }

    /// A rule's acknowledgement of an event that asked for one (`on_message: { ack }`): the
    /// packet, counted in the event's `acks_sent`; `None` when the event asked for none.
    pub(super) fn ack_reply(
        &self,
        rule: StepId,
        args: &[wsfleet_scenario::protocol::JsonTemplate],
        arrived: &super::conn::Arrived,
        iteration: u64,
        now: Instant,
    ) -> Option<Reply> {
        let event = arrived.event.as_ref()?;
        let id = event.ack_id?;
        let mut rendered = String::new();
        {
            let parts = self.parts();
            let scope = parts.scope(iteration);
            for arg in args {
                rendered.push(',');
                arg.render_into(&scope, &mut rendered);
            }
        }
        let set = self
            .spec()
            .events
            .as_ref()
            .map_or(rule, |events| events.of(&event.name));
        self.env
            .recorder
            .borrow_mut()
            .add(now, SetId::Step(set), Counter::AcksSent, 1);
        Some(Reply::Rule(
            rule,
            Message::text(socketio::packet::ack(&event.namespace, id, &rendered)),
        ))
    }

    /// Reads the connection (through the handlers and queues) until `done` holds for it, or
    /// fails with `timeout` at `deadline`.
    async fn read_until(
        &mut self,
        conn_id: ConnId,
        deadline: Instant,
        step: StepId,
        iteration: u64,
        timeout: ErrorKind,
        done: impl Fn(&Conn) -> bool,
    ) -> StepResult {
        loop {
            match self.conns.get(conn_id).and_then(Option::as_ref) {
                Some(conn) if done(conn) => return Ok(()),
                Some(_) => {}
                None => return Err(Failure::new(step, ErrorKind::Closed).into()),
            }
            if self.holds_sends() {
                self.flush_held(step, iteration).await?;
            }
            let conn = self.conn_mut(conn_id, step)?;
            let next = match tokio::time::timeout_at(deadline.into(), conn.socket.next()).await {
                Ok(next) => next,
                Err(_) => return Err(Failure::new(step, timeout).into()),
            };
            self.ingest_into_queue(conn_id, next, step, iteration).await?;
        }
    }

    /// The protocol's handshake on a connection just opened: the server's open packet, then
    /// each namespace's connect and its answer, by `deadline`.
    pub(super) async fn protocol_handshake(
        &mut self,
        conn_id: ConnId,
        protocol: &Protocol,
        deadline: Instant,
        step: StepId,
        iteration: u64,
    ) -> StepResult {
        let opened = |conn: &Conn| conn.protocol.as_ref().is_some_and(|speaking| speaking.layer.opened());
        self.read_until(conn_id, deadline, step, iteration, ErrorKind::Timeout, opened)
            .await?;
        let auths: Vec<Option<String>> = {
            let parts = self.parts();
            let scope = parts.scope(iteration);
            let Protocol::SocketIo(options) = protocol;
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
        };
        let auth = |index: usize| auths.get(index).cloned().flatten();
        let messages = match self
            .conns
            .get_mut(conn_id)
            .and_then(Option::as_mut)
            .and_then(|conn| conn.protocol.as_mut())
            .map(|speaking| &mut speaking.layer)
        {
            Some(layer) => layer.handshake_messages(&auth),
            None => Vec::new(),
        };
        for message in messages {
            self.send_message(
                conn_id,
                message,
                1,
                wsfleet_scenario::Flush::Batch,
                SetId::Step(step),
                step,
                iteration,
            )
            .await?;
        }
        let ready = |conn: &Conn| conn.protocol.as_ref().is_some_and(|speaking| speaking.layer.ready());
        self.read_until(conn_id, deadline, step, iteration, ErrorKind::Timeout, ready)
            .await
    }

    /// The layer's goodbye before a client close (Socket.IO: a disconnect per namespace).
    pub(super) async fn protocol_goodbye(&mut self, conn_id: ConnId, step: StepId, iteration: u64) -> StepResult {
        let messages = match self
            .conns
            .get_mut(conn_id)
            .and_then(Option::as_mut)
            .and_then(|conn| conn.protocol.as_mut())
            .map(|speaking| &mut speaking.layer)
        {
            Some(layer) => layer.goodbye_messages(),
            None => return Ok(()),
        };
        for message in messages {
            self.send_message(
                conn_id,
                message,
                1,
                wsfleet_scenario::Flush::Batch,
                SetId::Step(step),
                step,
                iteration,
            )
            .await?;
        }
        Ok(())
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
        let due = sent.checked_sub(self.lag).unwrap_or(sent);
        {
            let conn = self.conn_mut(emit.conn, step.id)?;
            let Some(speaking) = conn.protocol.as_mut() else {
                return Err(Failure::new(step.id, ErrorKind::Closed).into());
            };
            speaking.acks.waiting.push(Waiting {
                id,
                step: step.id,
                event_set: emit.event_set,
                sent: due,
                timed_out: false,
            });
        }
        let came = move |conn: &Conn| {
            conn.protocol
                .as_ref()
                .is_some_and(|speaking| speaking.acks.arrived.iter().any(|(got, _, _)| *got == id))
        };
        let waited = self
            .read_until(
                emit.conn,
                sent + ack.timeout,
                step.id,
                iteration,
                ErrorKind::AckTimeout,
                came,
            )
            .await;
        if let Err(stop) = waited {
            if let Some(acks) = self
                .conns
                .get_mut(emit.conn)
                .and_then(Option::as_mut)
                .and_then(|conn| conn.protocol.as_mut())
                .map(|speaking| &mut speaking.acks)
            {
                if let Some(waiting) = acks.waiting.iter_mut().find(|waiting| waiting.id == id) {
                    waiting.timed_out = true;
                }
                let timed_out = acks.waiting.iter().filter(|waiting| waiting.timed_out).count();
                if timed_out > TIMED_OUT_ACKS_KEPT {
                    if let Some(oldest) = acks.waiting.iter().position(|waiting| waiting.timed_out) {
                        acks.waiting.remove(oldest);
                    }
                }
            }
            return Err(stop);
        }
        let arrived = {
            let conn = self.conn_mut(emit.conn, step.id)?;
            let Some(speaking) = conn.protocol.as_mut() else {
                return Err(Failure::new(step.id, ErrorKind::Closed).into());
            };
            let acks = &mut speaking.acks;
            let position = acks.arrived.iter().position(|(got, _, _)| *got == id);
            position.map(|position| acks.arrived.remove(position))
        };
        let Some((_, ack_args, _)) = arrived else {
            return Err(Failure::new(step.id, ErrorKind::Protocol).into());
        };
        let incoming = Incoming::message(ack_args.args.as_bytes(), FrameKind::Text);
        if let Some(matcher) = &ack.matcher {
            let matched = matcher
                .matches(incoming, &self.parts().scope(iteration))
                .map_err(|error| super::scripted::script_failure(step.id, None, &error))?;
            if !matched {
                return Err(Failure::new(step.id, ErrorKind::Expectation).into());
            }
        }
        let origin = Origin {
            message: Some(incoming),
            ..Origin::default()
        };
        extract_into(&mut self.vars, &ack.extract, origin, step.id)?;
        Ok(())
    }
}
