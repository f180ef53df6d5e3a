//! The VU's side of the protocol layer (`crate::protocol`): the handshake after the upgrade,
//! what each decoded item does (events to the steps and handlers, heartbeats, the layer's own
//! answers, acknowledgements to the step that waits for them, refusals, server errors and
//! violations as failures), the layer's timers, and the goodbye before a client close. The
//! steps of each protocol are in its own file (`socketio.rs`: `emit`). Counted and timed here:
//! - `events_received` in the metric set of the event's key (`event:NAME`, or `event:*` for
//!   keys the scenario does not mention; other protocols, their own prefix);
//! - `delivery_latency` (an MQTT delivery with its publisher's send stamp) in that set too, or
//!   `deliveries_untimed` (one without a usable stamp);
//! - `acks_received` and `ack_latency` in the set the acknowledged send named;
//! - `heartbeats_received`, `heartbeats_sent`, `protocol_disconnects`, and the messages the
//!   layer handles itself (open, connect answers, heartbeats), in the connection set;
//! - `protocol_connects` in the connect step's set; an event's messages where it is taken.
//!
//! A message may carry several items (STOMP frames, MQTT packets): the layer decodes them all
//! into the connection's backlog at once, and the readers (`take_message`, `pump`,
//! `read_until`) take the backlog's items one by one before they read the socket again. A
//! message is counted once, with its first item (where a step takes its event, in the step that
//! waited for its acknowledgement, or in the connection set).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use wsfleet_metrics::{Counter, ErrorKind, Hist, SetId};
use wsfleet_scenario::matcher::{Extraction, Incoming, Matcher, Origin};
use wsfleet_scenario::protocol::Protocol;
use wsfleet_scenario::{ConnId, FrameKind, Scope, StepId, Then};

use super::conn::{count_message, Arrived, Conn, QUEUED_MESSAGES_PER_CONNECTION};
use super::flow::extract_into;
use super::inbox::Reply;
use super::outcome::{Failure, StepResult, Stop};
use super::state::Vu;
use crate::clock;
use crate::protocol::{socketio, Ack, Decoded, Layer, Tick};

/// Acknowledgements a connection keeps track of: those its sends wait for, and those that came.
#[derive(Default)]
pub(super) struct Acks {
    waiting: Vec<Waiting>,
    arrived: Vec<(u64, Box<Ack>, Instant)>,
}

/// An acknowledgement asked for and not yet come.
struct Waiting {
    id: u64,
    /// The step that sent (its set counts the acknowledgement's messages).
    step: StepId,
    /// The set of `acks_received` and `ack_latency` (the event's name, the destination).
    ack_set: StepId,
    sent: Instant,
    /// A step waits for it: once it came, it is kept for that step (its body is matched).
    awaited: bool,
    /// The step stopped waiting: the acknowledgement is still counted when it comes, untimed.
    timed_out: bool,
}

/// Acknowledgements still tracked that no step waits for (given up, or never awaited); past
/// this the oldest is forgotten (and a late answer to it is a violation), so a server that never
/// answers cannot grow the list without bound.
const UNAWAITED_ACKS_KEPT: usize = 1024;

/// An item the layer decoded, not yet handed on, with what it came in.
struct Pending {
    decoded: Decoded,
    /// When the message that carried it arrived.
    at: Instant,
    /// The message, on the first item decoded from it (a message counts once).
    message: Option<Message>,
    compressed: Option<u64>,
}

/// What the layer made of a message, for `ingest`.
pub(super) enum Layered {
    /// An event for the steps and handlers.
    Event(Arrived),
    /// An answer the layer sends (a heartbeat's, an MQTT PUBACK).
    Reply(Reply),
    /// Nothing for the steps.
    Nothing,
}

/// What a connection that speaks a protocol holds: the layer's session, the acknowledgements
/// its steps wait for, and the items decoded and not yet handed on.
pub(super) struct Speaking {
    pub(super) layer: Layer,
    pub(super) acks: Acks,
    backlog: VecDeque<Pending>,
    /// Reused by each decode.
    scratch: Vec<Decoded>,
}

/// The protocol state of a new connection for the protocol a connect step names; options with
/// templates are rendered in `scope`, at `now`.
pub(super) fn speaking(protocol: &Protocol, scope: &Scope<'_>, now: Instant) -> Box<Speaking> {
    let _ = now;
    let layer = match protocol {
        Protocol::SocketIo(options) => Layer::SocketIo(socketio::Session::new(
            options.namespaces.iter().map(|namespace| namespace.name.clone()),
        )),
        Protocol::Mqtt(options) => Layer::Mqtt(super::mqtt::session(options, scope)),
        Protocol::GraphQl(options) => Layer::GraphQl(super::graphql::graphql_layer(options, scope)),
        Protocol::Stomp(options) => Layer::Stomp(super::stomp::stomp_session(options, scope)),
    };
    Box::new(Speaking {
        layer,
        acks: Acks::default(),
        backlog: VecDeque::new(),
        scratch: Vec::new(),
    })
}

impl Speaking {
    /// Starts tracking the acknowledgement `id` of a send by `step`, sent (or due) at `sent`,
    /// whose `acks_received` and `ack_latency` count in `ack_set`; `awaited` when the step waits
    /// for it ([`Vu::await_ack`]).
    pub(super) fn expect_ack(&mut self, id: u64, step: StepId, ack_set: StepId, sent: Instant, awaited: bool) {
        let acks = &mut self.acks;
        acks.waiting.push(Waiting {
            id,
            step,
            ack_set,
            sent,
            awaited,
            timed_out: false,
        });
        let unawaited = acks
            .waiting
            .iter()
            .filter(|waiting| !waiting.awaited || waiting.timed_out)
            .count();
        if unawaited > UNAWAITED_ACKS_KEPT {
            if let Some(oldest) = acks
                .waiting
                .iter()
                .position(|waiting| !waiting.awaited || waiting.timed_out)
            {
                acks.waiting.remove(oldest);
            }
        }
    }
}

impl Speaking {
    /// The connection ended: acknowledgements asked for and never come count as
    /// `acks_missing` in their sets; items decoded and never handed on count their messages in
    /// the connection set (an event's as unread).
    pub(super) fn ended(&mut self, recorder: &mut wsfleet_metrics::Recorder, now: Instant) {
        for waiting in self.acks.waiting.drain(..) {
            recorder.add(now, SetId::Step(waiting.ack_set), Counter::AcksMissing, 1);
        }
        for pending in self.backlog.drain(..) {
            if let Some(message) = &pending.message {
                count_message(recorder, now, SetId::Connection, message, pending.compressed);
            }
            if matches!(pending.decoded, Decoded::Event(_)) {
                recorder.add(now, SetId::Connection, Counter::MessagesUnread, 1);
            }
        }
    }

    /// Stops tracking the acknowledgement `id` (the server answered otherwise).
    pub(super) fn forget_ack(&mut self, id: u64) {
        self.acks.waiting.retain(|waiting| waiting.id != id);
    }

    /// Whether the acknowledgement `id` came for a step that waits for it.
    pub(super) fn acks_arrived(&self, id: u64) -> bool {
        self.acks.arrived.iter().any(|(got, _, _)| *got == id)
    }
}

impl Vu {
    /// Takes the answer a step waited for (a Socket.IO acknowledgement's arguments, a GraphQL
    /// result): the step's conditions must hold on its body (else `expectation`), then its
    /// extractions set the VU's values.
    pub(super) fn take_answer(
        &mut self,
        body: &[u8],
        matcher: Option<&Matcher>,
        extract: &[Extraction],
        step: StepId,
        iteration: u64,
    ) -> StepResult {
        let incoming = Incoming::message(body, FrameKind::Text);
        if let Some(matcher) = matcher {
            let matched = matcher
                .matches(incoming, &self.parts().scope(iteration))
                .map_err(|error| super::scripted::script_failure(step, None, &error))?;
            if !matched {
                return Err(Failure::new(step, ErrorKind::Expectation).into());
            }
        }
        let origin = Origin {
            message: Some(incoming),
            ..Origin::default()
        };
        extract_into(&mut self.vars, extract, origin, step)?;
        Ok(())
    }
    /// The metric set of a protocol event's key on `conn_id`'s layer; `fallback` when the part
    /// has no event sets.
    pub(super) fn event_set_of(&self, prefix: &str, key: &str, fallback: StepId) -> StepId {
        self.spec()
            .events
            .as_ref()
            .map_or(fallback, |events| events.of(prefix, key, fallback))
    }

    /// Reads a message through the connection's layer: its items go to the backlog (the message
    /// with the first), and the first item that is for the steps comes back.
    pub(super) fn layered(
        &mut self,
        conn_id: ConnId,
        message: Message,
        now: Instant,
        step: StepId,
        compressed: Option<u64>,
    ) -> Result<Layered, Stop> {
        let Some(conn) = self.conns.get_mut(conn_id).and_then(Option::as_mut) else {
            return Ok(Layered::Nothing);
        };
        let Some(speaking) = conn.protocol.as_mut() else {
            return Ok(Layered::Nothing);
        };
        speaking.layer.decode(&message, now, &mut speaking.scratch);
        if speaking.scratch.is_empty() {
            // A message that only continues an item (a STOMP frame across messages).
            count_message(
                &mut conn.recorder.borrow_mut(),
                now,
                SetId::Connection,
                &message,
                compressed,
            );
            return Ok(Layered::Nothing);
        }
        let mut message = Some(message);
        let mut compressed = compressed;
        for decoded in speaking.scratch.drain(..) {
            speaking.backlog.push_back(Pending {
                decoded,
                at: now,
                message: message.take(),
                compressed: compressed.take(),
            });
        }
        self.next_layered(conn_id, step)
    }

    /// Whether the connection holds decoded items not yet handed on.
    pub(super) fn has_backlog(&self, conn_id: ConnId) -> bool {
        self.conns
            .get(conn_id)
            .and_then(Option::as_ref)
            .and_then(|conn| conn.protocol.as_ref())
            .is_some_and(|speaking| !speaking.backlog.is_empty())
    }

    /// A connection with a backlog, if any (only parts that speak a protocol have one).
    pub(super) fn any_backlog(&self) -> Option<ConnId> {
        self.spec().events.as_ref()?;
        (0..self.conns.len()).find(|conn_id| self.has_backlog(*conn_id))
    }

    /// Processes the backlog's items in order until one is for the steps (an event, an answer
    /// to send), counting what the layer keeps; `Nothing` when the backlog is empty.
    pub(super) fn next_layered(&mut self, conn_id: ConnId, step: StepId) -> Result<Layered, Stop> {
        loop {
            let Some(conn) = self.conns.get_mut(conn_id).and_then(Option::as_mut) else {
                return Ok(Layered::Nothing);
            };
            let Some(speaking) = conn.protocol.as_mut() else {
                return Ok(Layered::Nothing);
            };
            let Some(pending) = speaking.backlog.pop_front() else {
                return Ok(Layered::Nothing);
            };
            let Pending {
                decoded,
                at: now,
                message,
                compressed,
            } = pending;
            let recorder = conn.recorder.clone();
            let mut recorder = recorder.borrow_mut();
            let connection = SetId::Connection;
            let count_here = |recorder: &mut wsfleet_metrics::Recorder, set: SetId| {
                if let Some(message) = &message {
                    count_message(recorder, now, set, message, compressed);
                }
            };
            match decoded {
                Decoded::Partial => {}
                Decoded::Handled => count_here(&mut recorder, connection),
                Decoded::Heartbeat(answer) => {
                    count_here(&mut recorder, connection);
                    recorder.add(now, connection, Counter::HeartbeatsReceived, 1);
                    if let Some(answer) = answer {
                        recorder.add(now, connection, Counter::HeartbeatsSent, 1);
                        return Ok(Layered::Reply(Reply::Protocol(step, answer)));
                    }
                }
                Decoded::Reply(answer) => {
                    count_here(&mut recorder, connection);
                    return Ok(Layered::Reply(Reply::Protocol(step, answer)));
                }
                Decoded::Connected(_) => {
                    count_here(&mut recorder, connection);
                    recorder.add(now, SetId::Step(step), Counter::ProtocolConnects, 1);
                }
                Decoded::Event(mut event) => {
                    let prefix = speaking.layer.set_prefix();
                    // An MQTT delivery is timed, or counted untimed.
                    let delivery = match speaking.layer {
                        Layer::Mqtt(_) => Some(super::mqtt::delivery_latency(&event, now)),
                        _ => None,
                    };
                    drop(recorder);
                    // The layer's own attribution first (a STOMP subscription's set).
                    let set = match event.set {
                        Some(set) => set,
                        None => self.event_set_of(prefix, &event.name, step),
                    };
                    match delivery {
                        Some(Some(latency)) => {
                            self.env
                                .recorder
                                .borrow_mut()
                                .record(now, SetId::Step(set), Hist::DeliveryLatency, latency)
                        }
                        Some(None) => {
                            self.env
                                .recorder
                                .borrow_mut()
                                .add(now, SetId::Step(set), Counter::DeliveriesUntimed, 1)
                        }
                        None => {}
                    }
                    // The event's key set counts events and their bodies' bytes (a STOMP body,
                    // Socket.IO's arguments).
                    self.env.recorder.borrow_mut().add_counts(
                        now,
                        SetId::Step(set),
                        [
                            (Counter::EventsReceived, 1),
                            (Counter::PayloadBytesReceived, event.body.len() as u64),
                        ],
                    );
                    // A packet with attachments was read before this message: its wire size is
                    // not this message's.
                    let compressed = compressed.filter(|_| event.attachments.is_empty());
                    let message = event.packet.take().or(message);
                    return Ok(Layered::Event(Arrived {
                        message,
                        at: now,
                        fresh: true,
                        compressed,
                        event: Some(event),
                    }));
                }
                Decoded::Ack(mut ack) => {
                    let compressed = compressed.filter(|_| ack.attachments.is_empty());
                    let packet = ack.packet.take().or(message);
                    let acks = &mut speaking.acks;
                    let Some(position) = acks.waiting.iter().position(|waiting| waiting.id == ack.id) else {
                        if let Some(packet) = &packet {
                            count_message(&mut recorder, now, connection, packet, compressed);
                        }
                        tracing::debug!(vu = self.number, id = ack.id, "an acknowledgement nothing asked for");
                        return Err(Failure::new(step, ErrorKind::Protocol).into());
                    };
                    let waiting = acks.waiting.remove(position);
                    let set = SetId::Step(waiting.step);
                    if let Some(packet) = &packet {
                        count_message(&mut recorder, now, set, packet, compressed);
                    }
                    for attachment in &ack.attachments {
                        count_message(&mut recorder, now, set, &Message::Binary(attachment.clone()), None);
                    }
                    let ack_set = SetId::Step(waiting.ack_set);
                    recorder.add(now, ack_set, Counter::AcksReceived, 1);
                    if !waiting.timed_out {
                        recorder.record(
                            now,
                            ack_set,
                            Hist::AckLatency,
                            now.saturating_duration_since(waiting.sent),
                        );
                        if waiting.awaited {
                            acks.arrived.push((ack.id, ack, now));
                        }
                    }
                }
                Decoded::Refused {
                    kind,
                    namespace,
                    message: why,
                } => {
                    count_here(&mut recorder, connection);
                    tracing::debug!(vu = self.number, namespace = %namespace, why = %why, "the server refused a session");
                    return Err(Failure::new(step, kind).into());
                }
                Decoded::Failed { kind, message: why } => {
                    count_here(&mut recorder, connection);
                    tracing::debug!(vu = self.number, kind = kind.name(), why = %why, "the server reported an error");
                    let ended = speaking.layer.ended();
                    drop(recorder);
                    if ended {
                        self.close_now(conn_id);
                    }
                    return Err(Failure::new(step, kind).into());
                }
                Decoded::Disconnected(_) => {
                    count_here(&mut recorder, connection);
                    recorder.add(now, connection, Counter::ProtocolDisconnects, 1);
                    let ended = speaking.layer.ended();
                    drop(recorder);
                    if ended {
                        return Err(self.protocol_ended(conn_id, step));
                    }
                }
                Decoded::Violation(why) => {
                    count_here(&mut recorder, connection);
                    tracing::debug!(vu = self.number, why = %why, "a protocol violation");
                    return Err(Failure::new(step, ErrorKind::Protocol).into());
                }
            }
        }
    }

    /// Drops a connection the protocol is done with, with a close frame if the socket takes it
    /// now.
    fn close_now(&mut self, conn_id: ConnId) {
        if let Some(mut conn) = self.conns.get_mut(conn_id).and_then(Option::take) {
            let _ = conn.socket.send(Message::Close(None)).now_or_never();
        }
    }

    /// The server ended the protocol's last session (Socket.IO: it disconnected every
    /// namespace, or closed the Engine.IO session): the client closes the connection, as
    /// socket.io-client does, and the step that was using it goes through the `on_close` rules
    /// that name no codes (there is no close code to match); without one it fails as `closed`.
    fn protocol_ended(&mut self, conn_id: ConnId, step: StepId) -> Stop {
        self.close_now(conn_id);
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

    /// When a protocol layer of this VU next needs to act (a heartbeat to send, a server's
    /// silence to check); `None` at once for parts whose connections speak no protocol.
    pub(super) fn protocol_due(&self) -> Option<Instant> {
        self.spec().events.as_ref()?;
        self.conns
            .iter()
            .flatten()
            .filter_map(|conn| conn.protocol.as_ref()?.layer.next_due())
            .min()
    }

    /// Lets every layer whose timer is due act: heartbeats are sent (counted in the connection
    /// set), a server silent too long fails `step` with `heartbeat_timeout` and its connection
    /// is dropped.
    pub(super) async fn protocol_tick(&mut self, step: StepId, iteration: u64) -> StepResult {
        let now = clock::now();
        let mut ticks = Vec::new();
        for conn_id in 0..self.conns.len() {
            let due = |vu: &Vu| {
                vu.conns
                    .get(conn_id)
                    .and_then(Option::as_ref)
                    .and_then(|conn| conn.protocol.as_ref()?.layer.next_due())
                    .is_some_and(|due| due <= now)
            };
            if !due(self) {
                continue;
            }
            // What the socket already holds was heard before now: read first (a VU busy
            // elsewhere, e.g. in an http step, has not read this connection for a while).
            for _ in 0..QUEUED_MESSAGES_PER_CONNECTION {
                let ready = self
                    .conns
                    .get_mut(conn_id)
                    .and_then(Option::as_mut)
                    .and_then(|conn| conn.socket.next().now_or_never());
                match ready {
                    Some(next) => self.ingest_into_queue(conn_id, next, step, iteration).await?,
                    None => break,
                }
            }
            if let Some(speaking) = self
                .conns
                .get_mut(conn_id)
                .and_then(Option::as_mut)
                .and_then(|conn| conn.protocol.as_mut())
            {
                if speaking.layer.next_due().is_some_and(|due| due <= now) {
                    speaking.layer.tick(now, &mut ticks);
                }
            }
            for tick in ticks.drain(..) {
                match tick {
                    Tick::Heartbeat(message) => {
                        self.env
                            .recorder
                            .borrow_mut()
                            .add(now, SetId::Connection, Counter::HeartbeatsSent, 1);
                        self.send_message(
                            conn_id,
                            message,
                            1,
                            wsfleet_scenario::Flush::Batch,
                            SetId::Connection,
                            step,
                            iteration,
                        )
                        .await?;
                    }
                    Tick::Silent(why) => {
                        tracing::debug!(vu = self.number, why = %why, "the server went silent");
                        self.close_now(conn_id);
                        return Err(Failure::new(step, ErrorKind::HeartbeatTimeout).into());
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads the connection (through the handlers and queues) until `done` holds for it, or
    /// fails with `timeout` at `deadline`; the layers' timers act meanwhile.
    pub(super) async fn read_until(
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
            if self.has_backlog(conn_id) {
                let ingested = self.ingest_backlog(conn_id, step, iteration)?;
                self.settle_ingested(conn_id, ingested, iteration).await?;
                continue;
            }
            if self.holds_sends() {
                self.flush_held(step, iteration).await?;
            }
            let due = self.protocol_due().filter(|due| *due < deadline);
            let conn = self.conn_mut(conn_id, step)?;
            let wake = due.unwrap_or(deadline);
            let next = match tokio::time::timeout_at(wake.into(), conn.socket.next()).await {
                Ok(next) => next,
                Err(_) if due.is_some() => {
                    self.protocol_tick(step, iteration).await?;
                    continue;
                }
                Err(_) => return Err(Failure::new(step, timeout).into()),
            };
            self.ingest_into_queue(conn_id, next, step, iteration).await?;
        }
    }

    /// Waits for the acknowledgement `id` on `conn_id` (tracked with [`Speaking::expect_ack`]
    /// and `awaited`) until `deadline`; `timeout` fails the step when it does not come (and the
    /// acknowledgement, when it comes later, is counted untimed).
    pub(super) async fn await_ack(
        &mut self,
        conn_id: ConnId,
        id: u64,
        deadline: Instant,
        step: StepId,
        iteration: u64,
        timeout: ErrorKind,
    ) -> Result<Box<Ack>, Stop> {
        let came = move |conn: &Conn| {
            conn.protocol
                .as_ref()
                .is_some_and(|speaking| speaking.acks.arrived.iter().any(|(got, _, _)| *got == id))
        };
        let waited = self.read_until(conn_id, deadline, step, iteration, timeout, came).await;
        let speaking = self
            .conns
            .get_mut(conn_id)
            .and_then(Option::as_mut)
            .and_then(|conn| conn.protocol.as_mut());
        if let Err(stop) = waited {
            if let Some(waiting) =
                speaking.and_then(|speaking| speaking.acks.waiting.iter_mut().find(|waiting| waiting.id == id))
            {
                waiting.timed_out = true;
            }
            return Err(stop);
        }
        let Some(speaking) = speaking else {
            return Err(Failure::new(step, ErrorKind::Closed).into());
        };
        let acks = &mut speaking.acks;
        match acks.arrived.iter().position(|(got, _, _)| *got == id) {
            Some(position) => Ok(acks.arrived.remove(position).1),
            None => Err(Failure::new(step, ErrorKind::Protocol).into()),
        }
    }

    /// The protocol's handshake on a connection just opened: the server's side begins (Socket.IO:
    /// its open packet), the client's messages go out, and the server accepts, by `deadline`.
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
        let auths = match protocol {
            Protocol::SocketIo(options) => self.socketio_auths(options, iteration),
            Protocol::Mqtt(_) => Vec::new(),
            // The connection_init payload was rendered with the layer.
            Protocol::GraphQl(_) => Vec::new(),
            Protocol::Stomp(_) => Vec::new(),
        };
        let auth = |index: usize| auths.get(index).cloned().flatten();
        let now = clock::now();
        let messages = match self
            .conns
            .get_mut(conn_id)
            .and_then(Option::as_mut)
            .and_then(|conn| conn.protocol.as_mut())
            .map(|speaking| &mut speaking.layer)
        {
            Some(layer) => layer.handshake_messages(now, &auth),
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
}

/// A send's acknowledgement is timed from when it left, less the pacing lag (from when it was
/// due, when a paced iteration runs late).
pub(super) fn due_at(sent: Instant, lag: Duration) -> Instant {
    sent.checked_sub(lag).unwrap_or(sent)
}
