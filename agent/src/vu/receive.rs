//! The receive step: takes a data message (the first queued one that matches, else the next
//! read), under a timeout whose timer a VU keeps from one receive to the next, and records its
//! latency from the send it answers.

use std::time::Instant;

use futures_util::{FutureExt, StreamExt};
use wsfleet_metrics::{Counter, ErrorKind, Hist, SetId};
use wsfleet_scenario::matcher::{Incoming, Origin};
use wsfleet_scenario::{ConnId, OnFail, Step, StepId};

use super::conn::Arrived;
use super::flow::extract_into;
use super::outcome::{Failure, StepResult, Stop};
use super::state::Vu;
use super::timer::{next_before, ReceiveTimer};
use crate::clock;

/// What a receive's read brought (see `Vu::next_item`).
enum Read {
    Item(Option<Result<tokio_tungstenite::tungstenite::Message, tokio_tungstenite::tungstenite::Error>>),
    /// Without a deadline: the socket held nothing.
    Nothing,
    /// A protocol layer's timer came first and acted.
    Ticked,
}

impl Vu {
    pub(super) async fn receive_step(
        &mut self,
        step: &Step,
        receive: &wsfleet_scenario::Receive,
        iteration: u64,
        recent: Option<Instant>,
    ) -> StepResult {
        let set = SetId::Step(step.id);
        // A receive waits: what the sends before it hold leaves now (and its start is then).
        let recent = if self.holds_sends() {
            self.flush_held(step.id, iteration).await?.or(recent)
        } else {
            recent
        };
        let deadline = receive
            .wait
            .then(|| tokio::time::Instant::from_std(recent.unwrap_or_else(clock::now)) + receive.timeout);
        let taken = self
            .take_message(receive.conn, receive.matcher.as_ref(), deadline, step.id, iteration)
            .await;
        let arrived = match taken {
            Ok(Some(arrived)) => arrived,
            Ok(None) => {
                // Only a receive that does not wait gets here: it sets its state.
                if let Some(state) = &receive.state {
                    self.vars.insert(state.clone(), "none".to_owned());
                }
                return Ok(());
            }
            Err(Stop::Fail(failure)) if failure.kind.counted_elsewhere() => {
                return match receive.on_timeout {
                    OnFail::Fail => Err(Stop::Fail(failure)),
                    OnFail::Skip => Err(Stop::EndIteration),
                    OnFail::Continue => Ok(()),
                };
            }
            Err(stop) => return Err(stop),
        };
        if let Some(state) = &receive.state {
            self.vars.insert(state.clone(), "received".to_owned());
        }
        // A message that waited in the queue is counted now; one just read, at its arrival.
        let now = if arrived.fresh { arrived.at } else { clock::now() };
        let recorder = self.env.recorder.clone();
        {
            // A mutation or http step's request, on whatever connection (or none) it went.
            let requested = receive
                .latency_of
                .and_then(|wanted| self.request_times.iter().find(|(id, _)| *id == wanted))
                .map(|(_, at)| *at);
            let conn = self.conn_mut(receive.conn, step.id)?;
            let started = match receive.latency_of {
                Some(send) => conn
                    .send_times
                    .iter()
                    .find(|(id, _)| *id == send)
                    .map(|(_, at)| *at)
                    .or(requested),
                None => conn.unanswered_send,
            };
            conn.unanswered_send = None;
            let mut recorder = recorder.borrow_mut();
            arrived.count(&mut recorder, now, set);
            if let Some(started) = started {
                recorder.record(
                    now,
                    set,
                    Hist::MessageLatency,
                    arrived.at.saturating_duration_since(started),
                );
            }
        }
        // A protocol message that wants an answer (a STOMP client ack) is the one `stomp_ack`
        // acknowledges.
        if let Some(event) = &arrived.event {
            if let Some(reply_to) = &event.reply_to {
                self.info[receive.conn].last_reply = Some((reply_to.clone(), event.namespace.clone()));
            }
        }
        // The message's bytes are looked at only when something reads them.
        let keep_last = self.spec().reads_last_message;
        if keep_last || !receive.extract.is_empty() {
            let (bytes, kind) = arrived.incoming();
            if keep_last {
                self.info[receive.conn].last = Some((bytes.clone(), kind));
            }
            let origin = Origin {
                message: Some(Incoming::message(&bytes, kind)),
                // A protocol event's headers (STOMP) for `header` extractions.
                headers: arrived.event.as_ref().map(|event| event.headers.as_slice()),
                ..Origin::default()
            };
            extract_into(&mut self.vars, &receive.extract, origin, step.id)?;
        }
        Ok(())
    }

    /// among those already queued, then from the socket, until `deadline`; without a deadline,
    /// only what the socket already holds (`Ok(None)` when nothing is there).
    pub(super) async fn take_message(
        &mut self,
        conn_id: ConnId,
        matcher: Option<&wsfleet_scenario::matcher::Matcher>,
        deadline: Option<tokio::time::Instant>,
        step: StepId,
        iteration: u64,
    ) -> Result<Option<Arrived>, Stop> {
        if let Some(arrived) = self.take_queued(conn_id, matcher, step, iteration)? {
            return Ok(Some(arrived));
        }
        loop {
            // What a protocol message carried beyond its first item comes before the socket.
            if self.has_backlog(conn_id) {
                let ingested = self.ingest_backlog(conn_id, step, iteration)?;
                if let Some(arrived) = self.take_ingested(conn_id, ingested, matcher, step, iteration).await? {
                    return Ok(Some(arrived));
                }
                continue;
            }
            let next = match self.next_item(conn_id, deadline, step, iteration).await? {
                Read::Item(next) => next,
                Read::Nothing => return Ok(None),
                Read::Ticked => continue,
            };
            let (arrived, reply) = self.ingest(conn_id, next, step, iteration)?;
            if reply.is_some() {
                if let Some(arrived) = self
                    .take_ingested(conn_id, (arrived, reply), matcher, step, iteration)
                    .await?
                {
                    return Ok(Some(arrived));
                }
                continue;
            }
            if let Some(arrived) = arrived {
                let matched = self.matches(matcher, &arrived, step, iteration);
                if matches!(matched, Ok(true)) {
                    // Its arrival is the step's last clock reading.
                    self.recent = Some(arrived.at);
                    return Ok(Some(arrived));
                }
                // Kept for a later receive, also when the matcher's script failed the step.
                self.queue(conn_id, arrived);
                matched?;
            }
        }
    }

    /// The next item a receive reads from `conn_id`: what the socket already brought, else,
    /// once the held sends have left, a read until `deadline`, or `Ticked` when a protocol
    /// layer's timer came first and acted. Without a deadline, only what the socket already
    /// holds. Apart from the item it returns, nothing read is kept across its waits: the
    /// receive's future is this one's size plus a few words.
    async fn next_item(
        &mut self,
        conn_id: ConnId,
        deadline: Option<tokio::time::Instant>,
        step: StepId,
        iteration: u64,
    ) -> Result<Read, Stop> {
        // Handler replies wait while what the socket already brought is read (replies to
        // messages read together leave together), and leave before the receive waits.
        if self.holds_sends() {
            if let Some(next) = self
                .conns
                .get_mut(conn_id)
                .and_then(Option::as_mut)
                .and_then(|conn| conn.socket.next().now_or_never())
            {
                return Ok(Read::Item(next));
            }
            self.flush_held(step, iteration).await?;
        }
        // A protocol layer's timer may come first (none without a protocol).
        let due = match deadline {
            Some(deadline) => self
                .protocol_due()
                .map(tokio::time::Instant::from_std)
                .filter(|due| *due < deadline),
            None => None,
        };
        // Borrowed apart from the timer.
        let conn = self
            .conns
            .get_mut(conn_id)
            .and_then(Option::as_mut)
            .ok_or_else(|| Failure::new(step, ErrorKind::Closed))?;
        let Some(deadline) = deadline else {
            return Ok(match conn.socket.next().now_or_never() {
                None => Read::Nothing,
                Some(next) => Read::Item(next),
            });
        };
        let wake = due.unwrap_or(deadline);
        let timer = self.receive_timer.get_or_insert_with(|| ReceiveTimer {
            sleep: Box::pin(tokio::time::sleep_until(wake)),
            holds_waker: false,
        });
        match next_before(&mut conn.socket, timer, wake).await {
            Some(next) => Ok(Read::Item(next)),
            None if due.is_some() => {
                // Boxed: only protocol layers have timers, and inline the tick would size
                // every receive's future (which an idle VU holds).
                Box::pin(self.protocol_tick(step, iteration)).await?;
                Ok(Read::Ticked)
            }
            None => {
                conn.recorder
                    .borrow_mut()
                    .add(clock::now(), SetId::Step(step), Counter::ReceiveTimeouts, 1);
                Err(Stop::Fail(Failure::receive_timeout(step)))
            }
        }
    }

    /// What an item of a protocol connection's backlog, or an item read that a handler answers,
    /// gives a receive: its reply goes out, and its message is taken when it matches, queued
    /// otherwise. Boxed: only protocol connections and handlers reply, and inline it would
    /// size every receive's future.
    fn take_ingested<'a>(
        &'a mut self,
        conn_id: ConnId,
        ingested: super::inbox::Ingested,
        matcher: Option<&'a wsfleet_scenario::matcher::Matcher>,
        step: StepId,
        iteration: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<Arrived>, Stop>> + 'a>> {
        Box::pin(async move {
            let (arrived, reply) = ingested;
            let replied = reply.is_some();
            if let Some(reply) = reply {
                self.send_reply_inline(conn_id, reply, iteration).await?;
            }
            if let Some(arrived) = arrived {
                let matched = self.matches(matcher, &arrived, step, iteration);
                if matches!(matched, Ok(true)) {
                    // Its arrival is the step's last clock reading (unless a reply went out since).
                    if !replied {
                        self.recent = Some(arrived.at);
                    }
                    return Ok(Some(arrived));
                }
                // Kept for a later receive, also when the matcher's script failed the step.
                self.queue(conn_id, arrived);
                matched?;
            }
            Ok(None)
        })
    }
}
