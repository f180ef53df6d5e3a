//! Closing: the close step (with the codes it expects and what it extracts from the answer),
//! and the quiet closes between iterations and when a VU stops, each a close frame and a
//! bounded wait for the server's.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use wsfleet_metrics::catalog::close_code_counter;
use wsfleet_metrics::{Counter, ErrorKind, Hist, SetId};
use wsfleet_scenario::matcher::Origin;
use wsfleet_scenario::{ConnId, Flush, Step, StepId};

use super::conn::{count_message, Conn};
use super::flow::extract_into;
use super::outcome::{ws_failure, Failure, StepResult};
use super::state::Vu;
use crate::clock;

impl Vu {
    pub(super) async fn close_step(
        &mut self,
        step: &Step,
        close: &wsfleet_scenario::Close,
        iteration: u64,
    ) -> StepResult {
        let set = SetId::Step(step.id);
        // Closing waits for the server's answer: what every connection holds leaves first.
        if self.holds_sends() {
            self.flush_held(step.id, iteration).await?;
        }
        let reason = close
            .reason
            .try_render(&self.parts().scope(iteration))
            .map_err(|error| super::scripted::script_failure(step.id, None, &error))?;
        let reason = cut(reason.into_owned(), 123);
        // A protocol says goodbye first (Socket.IO: a disconnect per namespace).
        if self
            .conns
            .get(close.conn)
            .and_then(Option::as_ref)
            .is_some_and(|conn| conn.protocol.is_some())
        {
            self.protocol_goodbye(close.conn, step.id, iteration).await?;
            self.flush_held(step.id, iteration).await?;
        }
        let Some(mut conn) = self.conns.get_mut(close.conn).and_then(Option::take) else {
            return Err(Failure::new(step.id, ErrorKind::Closed).into());
        };
        let frame = CloseFrame {
            code: CloseCode::from(close.code),
            reason: Utf8Bytes::from(reason),
        };
        let answer = close_connection(&mut conn, frame, close.timeout, step.id, set).await?;
        drop(conn);
        let (code, reason) = answer.unwrap_or((1005, String::new()));
        if let Some(codes) = &close.expect_codes {
            if !codes.contains(&code) {
                return Err(Failure::new(step.id, ErrorKind::Expectation).into());
            }
        }
        let origin = Origin {
            close: Some((code, &reason)),
            ..Origin::default()
        };
        extract_into(&mut self.vars, &close.extract, origin, step.id)?;
        Ok(())
    }

    /// errors here are not the scenario's and are not counted as failures.
    pub(super) async fn close_conn(&mut self, conn_id: ConnId, code: CloseCode) {
        let Some(mut conn) = self.conns.get_mut(conn_id).and_then(Option::take) else {
            return;
        };
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(""),
        };
        let _ = close_connection(&mut conn, frame, Duration::from_secs(2), 0, SetId::Connection).await;
    }

    /// Closes every open connection (`keep_open` ones only when `spare_kept` is false).
    pub(super) async fn close_all(&mut self, code: CloseCode, spare_kept: bool) {
        for conn_id in 0..self.conns.len() {
            let keep = self.conns[conn_id]
                .as_ref()
                .is_some_and(|conn| spare_kept && conn.keep_open);
            if keep {
                self.abort_transactions(conn_id).await;
            } else {
                self.close_conn(conn_id, code).await;
            }
        }
    }

    /// Ends a kept STOMP connection's open transactions with an ABORT each (counted in the
    /// connection set, as the layer's own frames), so that the next iteration's
    /// `transaction: true` or `stomp_commit` cannot join one an earlier iteration left open. A
    /// connection that fails meanwhile is dropped: the next iteration reconnects.
    async fn abort_transactions(&mut self, conn_id: ConnId) {
        let aborts = self
            .conns
            .get_mut(conn_id)
            .and_then(Option::as_mut)
            .and_then(|conn| conn.protocol.as_mut())
            .and_then(|speaking| speaking.layer.as_stomp())
            .map(|session| session.abort_all())
            .unwrap_or_default();
        if aborts.is_empty() {
            return;
        }
        let iteration = self.vu_iteration;
        for message in aborts {
            let sent = self
                .send_message(conn_id, message, 1, Flush::Batch, SetId::Connection, 0, iteration)
                .await;
            if sent.is_err() {
                self.conns[conn_id] = None;
                return;
            }
        }
        if self.flush_held(0, iteration).await.is_err() {
            self.conns[conn_id] = None;
        }
    }
}

/// A text cut to at most `limit` bytes at a character boundary (control frame limits).
pub(super) fn cut(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Sends a close frame and waits (bounded) for the server's; records the server's close code
/// and the close latency in `set`, and returns the server's code and reason.
pub(super) async fn close_connection(
    conn: &mut Conn,
    frame: CloseFrame,
    timeout: Duration,
    step: StepId,
    set: SetId,
) -> Result<Option<(u16, String)>, Failure> {
    let started = clock::now();
    if let Err(error) = conn.socket.close(Some(frame)).await {
        return Err(ws_failure(step, &error));
    }
    // The close flushed what was held before its frame.
    if !conn.held.is_empty() {
        conn.settle_all(clock::now());
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut answer = None;
    loop {
        let next = match tokio::time::timeout_at(deadline, conn.socket.next()).await {
            Err(_) => return Err(Failure::new(step, ErrorKind::Timeout)),
            Ok(next) => next,
        };
        match next {
            // The close handshake is complete when the stream ends after the server's close.
            None => return Ok(answer),
            Some(Ok(Message::Close(frame))) => {
                let now = clock::now();
                let code = frame.as_ref().map_or(1005, |frame| u16::from(frame.code));
                let reason = frame.as_ref().map(|frame| frame.reason.to_string()).unwrap_or_default();
                let mut recorder = conn.recorder.borrow_mut();
                recorder.add_labeled(now, set, close_code_counter(code), 1);
                recorder.record(now, set, Hist::CloseLatency, now - started);
                answer = Some((code, reason));
            }
            Some(Ok(message)) => {
                // Data still in flight when we closed: received, but no step took it.
                let now = clock::now();
                let compressed = conn.socket.take_received_wire();
                let mut recorder = conn.recorder.borrow_mut();
                count_message(&mut recorder, now, set, &message, compressed);
                if matches!(message, Message::Text(_) | Message::Binary(_)) {
                    recorder.add(now, set, Counter::MessagesUnread, 1);
                }
            }
            Some(Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed)) => return Ok(answer),
            Some(Err(error)) => return Err(ws_failure(step, &error)),
        }
    }
}
