//! The inbox: what arrives on a connection. Data messages go through the `on_message` handlers
//! (which may count, extract, reply to or fail on them) and otherwise wait in the connection's
//! queue for a later receive; a close goes through `on_close`. While a VU waits (think, pacing,
//! rendezvous) and the scenario has handlers, every open connection is read.

use std::time::Instant;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use wsfleet_metrics::{Counter, ErrorKind, SetId};
use wsfleet_scenario::matcher::{EventTags, Incoming, Origin};
use wsfleet_scenario::{ConnId, Flush, StepId};

use super::conn::Arrived;
use super::conn::QUEUED_MESSAGES_PER_CONNECTION;
use super::flow::extract_into;
use super::outcome::{ws_failure, Failure, StepResult, Stop};
use super::protocol::Layered;
use super::scripted::script_failure;
use super::state::{StepFuture, Vu};
use crate::clock;

/// An answer to something that arrived, sent on the same connection.
pub(super) enum Reply {
    /// An `on_message` rule's reply, counted in the rule's set.
    Rule(StepId, Message),
    /// The protocol layer's answer (a heartbeat's), counted in the connection set; a failure
    /// to send it counts in the step that was reading.
    Protocol(StepId, Message),
}

/// A protocol event's name, namespace and headers, for matchers.
fn event_tags(arrived: &Arrived) -> Option<EventTags<'_>> {
    arrived.event.as_ref().map(|event| EventTags {
        name: &event.name,
        namespace: &event.namespace,
        headers: &event.headers,
    })
}

/// What one ingested item left: a message nobody took yet, and an answer to send.
pub(super) type Ingested = (Option<Arrived>, Option<Reply>);

impl Vu {
    /// Whether `arrived` is what a step waits for; a `${...}` script in the matcher that fails
    /// fails `step` (`script`).
    pub(super) fn matches(
        &self,
        matcher: Option<&wsfleet_scenario::matcher::Matcher>,
        arrived: &Arrived,
        step: StepId,
        iteration: u64,
    ) -> Result<bool, Failure> {
        let Some(matcher) = matcher else { return Ok(true) };
        let (bytes, kind) = arrived.incoming();
        let incoming = Incoming {
            bytes: &bytes,
            kind,
            event: event_tags(arrived),
        };
        matcher
            .matches(incoming, &self.parts().scope(iteration))
            .map_err(|error| script_failure(step, None, &error))
    }

    pub(super) fn take_queued(
        &mut self,
        conn_id: ConnId,
        matcher: Option<&wsfleet_scenario::matcher::Matcher>,
        step: StepId,
        iteration: u64,
    ) -> Result<Option<Arrived>, Failure> {
        let Some(conn) = self.conns.get(conn_id).and_then(Option::as_ref) else {
            return Ok(None);
        };
        if conn.pending.is_empty() {
            return Ok(None);
        }
        let mut found = None;
        for (position, arrived) in conn.pending.iter().enumerate() {
            if self.matches(matcher, arrived, step, iteration)? {
                found = Some(position);
                break;
            }
        }
        Ok(found.and_then(|position| self.conns[conn_id].as_mut()?.pending.remove(position)))
    }

    pub(super) fn queue(&mut self, conn_id: ConnId, mut arrived: Arrived) {
        arrived.fresh = false;
        let Some(conn) = self.conns.get_mut(conn_id).and_then(Option::as_mut) else {
            return;
        };
        if conn.pending.len() >= QUEUED_MESSAGES_PER_CONNECTION {
            if let Some(oldest) = conn.pending.pop_front() {
                let now = clock::now();
                let mut recorder = conn.recorder.borrow_mut();
                oldest.count(&mut recorder, now, SetId::Connection);
                recorder.add(now, SetId::Connection, Counter::MessagesUnread, 1);
            }
        }
        conn.pending.push_back(arrived);
    }

    /// Handles one item read from a connection: data messages go through the `on_message`
    /// rules and come back unless a rule took them; a close goes through `on_close`. A rule's
    /// reply comes back too, for `send_reply`: most receives never reply, and their futures
    /// stay small.
    #[allow(clippy::type_complexity)]
    pub(super) fn ingest(
        &mut self,
        conn_id: ConnId,
        next: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
        step: StepId,
        iteration: u64,
    ) -> Result<Ingested, Stop> {
        let message = match next {
            None => {
                self.conns[conn_id] = None;
                return Err(Failure::new(step, ErrorKind::Reset).into());
            }
            Some(Err(error)) => {
                self.conns[conn_id] = None;
                return Err(ws_failure(step, &error).into());
            }
            Some(Ok(message)) => message,
        };
        match &message {
            Message::Text(_) | Message::Binary(_) => {}
            Message::Close(frame) => {
                let code = frame.as_ref().map_or(1005, |frame| u16::from(frame.code));
                // Let tungstenite answer the close, then let the connection go.
                if let Some(mut conn) = self.conns[conn_id].take() {
                    let _ = conn.socket.flush().now_or_never();
                }
                return Err(self.server_closed(conn_id, code, step));
            }
            // Pings are answered by tungstenite; stray pongs and raw frames are ignored.
            _ => return Ok((None, None)),
        }
        // Arrived when the read that completed it returned (one read may bring many messages).
        let (now, compressed) = match &mut self.conns[conn_id] {
            Some(conn) => (conn.socket.last_read(), conn.socket.take_received_wire()),
            None => (clock::now(), None),
        };
        // A connection that speaks a protocol reads each message through its layer; what else
        // the message carried waits in the layer's backlog.
        if self.conns[conn_id].as_ref().is_some_and(|conn| conn.protocol.is_some()) {
            let layered = self.layered(conn_id, message, now, step, compressed)?;
            return self.handle_layered(conn_id, layered, iteration);
        }
        let arrived = Arrived {
            message: Some(message),
            at: now,
            fresh: true,
            compressed,
            event: None,
        };
        self.handle_arrived(conn_id, arrived, iteration)
    }

    /// Takes the next item of a protocol connection's backlog, as `ingest` takes a message.
    pub(super) fn ingest_backlog(&mut self, conn_id: ConnId, step: StepId, iteration: u64) -> Result<Ingested, Stop> {
        let layered = self.next_layered(conn_id, step)?;
        self.handle_layered(conn_id, layered, iteration)
    }

    fn handle_layered(&mut self, conn_id: ConnId, layered: Layered, iteration: u64) -> Result<Ingested, Stop> {
        match layered {
            Layered::Event(arrived) => self.handle_arrived(conn_id, arrived, iteration),
            Layered::Reply(reply) => Ok((None, Some(reply))),
            Layered::Nothing => Ok((None, None)),
        }
    }

    /// A data message (or protocol event) just arrived: through the `on_message` rules.
    fn handle_arrived(&mut self, conn_id: ConnId, arrived: Arrived, iteration: u64) -> Result<Ingested, Stop> {
        let now = arrived.at;
        if self.spec().on_message.is_empty() {
            return Ok((Some(arrived), None));
        }
        if let Some(taken) = self.count_only(conn_id, &arrived, now) {
            return Ok((if taken? { None } else { Some(arrived) }, None));
        }
        let (bytes, kind) = arrived.incoming();
        let incoming = Incoming {
            bytes: &bytes,
            kind,
            event: event_tags(&arrived),
        };
        let env = self.env.clone();
        let mut chosen = None;
        for rule in &env.scenario.parts[self.part].on_message {
            let parts = self.parts();
            let scope = parts.scope(iteration);
            if rule.conn.is_some_and(|wanted| wanted != conn_id) {
                continue;
            }
            // A `${...}` script in `when` that fails fails the rule (`script`), as its `if` does.
            if let Some(when) = &rule.when {
                if !when
                    .matches(incoming, &scope)
                    .map_err(|error| script_failure(rule.id, None, &error))?
                {
                    continue;
                }
            }
            // A script condition runs only on messages `when` let through.
            if let Some(condition) = &rule.condition {
                if !self.holds(condition, rule.id, iteration, Some(incoming))? {
                    continue;
                }
            }
            chosen = Some(rule);
            break;
        }
        let Some(rule) = chosen else {
            return Ok((Some(arrived), None));
        };
        // The rule's script runs before its reply is built, so the reply may carry what it set.
        if let Some(script) = &rule.script {
            self.run_script(script, rule.id, iteration, Some(incoming))?;
        }
        let rule_set = SetId::Step(rule.id);
        let reply = match &rule.reply {
            Some(reply) => Some(Reply::Rule(
                rule.id,
                self.message_for(rule.id, reply, iteration).map_err(Stop::Fail)?,
            )),
            // A Socket.IO rule may acknowledge the event instead (validation allows one or the other).
            None => rule
                .ack
                .as_ref()
                .and_then(|args| self.ack_reply(rule.id, args, &arrived, iteration, now)),
        };
        if !rule.pass {
            let mut recorder = self.env.recorder.borrow_mut();
            arrived.count(&mut recorder, now, rule_set);
            drop(recorder);
            if let Some(event) = &arrived.event {
                if let Some(reply_to) = &event.reply_to {
                    self.info[conn_id].last_reply = Some((reply_to.clone(), event.namespace.clone()));
                }
            }
            if self.spec().reads_last_message {
                self.info[conn_id].last = Some((bytes.clone(), kind));
            }
        }
        extract_into(
            &mut self.vars,
            &rule.extract,
            Origin {
                message: Some(incoming),
                headers: arrived.event.as_ref().map(|event| event.headers.as_slice()),
                ..Origin::default()
            },
            rule.id,
        )?;
        if rule.fail {
            return Err(Failure::new(rule.id, ErrorKind::Handler).into());
        }
        Ok((rule.pass.then_some(arrived), reply))
    }

    /// The rule that takes `arrived` when it is one that only counts what it takes (no
    /// condition, script, reply, acknowledgement or extraction, and nothing keeps the last
    /// message): the message's bytes are not looked at. `Some(Ok(true))`: taken and counted;
    /// `Some(Ok(false))`: passed on; `None`: the general path decides.
    fn count_only(&self, conn_id: ConnId, arrived: &Arrived, now: Instant) -> Option<Result<bool, Stop>> {
        if self.spec().reads_last_message {
            return None;
        }
        let rule = self
            .spec()
            .on_message
            .iter()
            .find(|rule| rule.conn.is_none_or(|wanted| wanted == conn_id))?;
        let counts_only = rule.when.is_none()
            && rule.condition.is_none()
            && rule.script.is_none()
            && rule.reply.is_none()
            && rule.ack.is_none()
            && rule.extract.is_empty();
        if !counts_only {
            return None;
        }
        // As the general path: a rule that takes the message counts it, then may fail.
        if !rule.pass {
            arrived.count(&mut self.env.recorder.borrow_mut(), now, SetId::Step(rule.id));
        }
        if rule.fail {
            return Some(Err(Failure::new(rule.id, ErrorKind::Handler).into()));
        }
        Some(Ok(!rule.pass))
    }

    /// Ingests what a read returned while nothing waited for data: a handler's reply goes out,
    /// a message nobody took waits in the queue.
    pub(super) async fn ingest_into_queue(
        &mut self,
        conn_id: ConnId,
        next: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
        step: StepId,
        iteration: u64,
    ) -> StepResult {
        let ingested = self.ingest(conn_id, next, step, iteration)?;
        self.settle_ingested(conn_id, ingested, iteration).await
    }

    /// Sends what an ingested item answers, and queues what nobody took.
    pub(super) async fn settle_ingested(&mut self, conn_id: ConnId, ingested: Ingested, iteration: u64) -> StepResult {
        let (arrived, reply) = ingested;
        if let Some(reply) = reply {
            self.send_reply(conn_id, reply, iteration).await?;
        }
        if let Some(arrived) = arrived {
            self.queue(conn_id, arrived);
        }
        Ok(())
    }

    /// Sends a handler's reply. Boxed: only handlers reply, and the send would size every
    /// receive's future.
    pub(super) fn send_reply(&mut self, conn_id: ConnId, reply: Reply, iteration: u64) -> StepFuture<'_> {
        Box::pin(self.send_reply_inline(conn_id, reply, iteration))
    }

    /// [`Vu::send_reply`] unboxed, for futures that are boxed already (one allocation a reply,
    /// not two).
    pub(super) async fn send_reply_inline(&mut self, conn_id: ConnId, reply: Reply, iteration: u64) -> StepResult {
        let (rule_id, message) = match reply {
            Reply::Rule(rule_id, message) => (rule_id, message),
            // The layer's answers count in the connection set; failures in the step reading.
            Reply::Protocol(step, message) => {
                return self
                    .send_message(conn_id, message, 1, Flush::Batch, SetId::Connection, step, iteration)
                    .await
            }
        };
        let (fragments, flush) = self
            .spec()
            .on_message
            .iter()
            .find(|rule| rule.id == rule_id)
            .and_then(|rule| rule.reply.as_ref())
            .map_or((1, Flush::Batch), |reply| (reply.fragments, reply.flush));
        self.send_message(
            conn_id,
            message,
            fragments,
            flush,
            SetId::Step(rule_id),
            rule_id,
            iteration,
        )
        .await
    }

    /// Waits until `until`: asleep, or, when the scenario has handlers, reading the open
    /// connections so the handlers react meanwhile (errors count in `step`).
    pub(super) async fn wait_until(&mut self, until: Instant, step: StepId, iteration: u64) -> StepResult {
        if self.holds_sends() {
            self.flush_held(step, iteration).await?;
        }
        // Connections that speak a protocol are read too: their heartbeats need answers.
        if self.spec().on_message.is_empty() && self.spec().on_close.is_empty() && self.spec().events.is_none() {
            tokio::time::sleep_until(until.into()).await;
            Ok(())
        } else {
            // Boxed: only scenarios with handlers need it, and it would size every VU's future.
            Box::pin(self.pump(until.into(), step, iteration)).await
        }
    }

    /// Reads every open connection until the deadline, feeding handlers and queues; the
    /// protocol layers' timers act meanwhile.
    pub(super) async fn pump(&mut self, deadline: tokio::time::Instant, step: StepId, iteration: u64) -> StepResult {
        loop {
            // What a protocol message carried beyond its first item goes first.
            if let Some(conn_id) = self.any_backlog() {
                let handled = match self.ingest_backlog(conn_id, step, iteration) {
                    Ok(ingested) => self.settle_ingested(conn_id, ingested, iteration).await,
                    Err(stop) => Err(stop),
                };
                match handled {
                    Ok(()) | Err(Stop::StepEnded) => continue,
                    Err(stop) => return Err(stop),
                }
            }
            // Handler replies leave before the VU waits again.
            if self.holds_sends() {
                self.flush_held(step, iteration).await?;
            }
            let due = self
                .protocol_due()
                .map(tokio::time::Instant::from_std)
                .filter(|due| *due < deadline);
            let wake = due.unwrap_or(deadline);
            let next = {
                let mut reads: Vec<_> = self
                    .conns
                    .iter_mut()
                    .enumerate()
                    .filter_map(|(index, conn)| conn.as_mut().map(|conn| (index, conn)))
                    .map(|(index, conn)| Box::pin(async move { (index, conn.socket.next().await) }))
                    .collect();
                if reads.is_empty() {
                    tokio::time::sleep_until(deadline).await;
                    return Ok(());
                }
                match tokio::time::timeout_at(wake, futures_util::future::select_all(reads.iter_mut())).await {
                    Err(_) => None,
                    Ok(((index, next), _, _)) => Some((index, next)),
                }
            };
            let Some((conn_id, next)) = next else {
                if due.is_none() {
                    return Ok(());
                }
                self.protocol_tick(step, iteration).await?;
                continue;
            };
            match self.ingest_into_queue(conn_id, next, step, iteration).await {
                Ok(()) => {}
                Err(Stop::StepEnded) => {}
                Err(stop) => return Err(stop),
            }
        }
    }
}
