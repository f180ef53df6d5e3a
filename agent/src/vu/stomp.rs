//! STOMP's steps on the protocol layer: the session built from a connect step's rendered
//! options, and `stomp_subscribe`, `stomp_unsubscribe`, `stomp_send`, `stomp_ack`/`stomp_nack`,
//! `stomp_begin`/`stomp_commit`/`stomp_abort` and `stomp_disconnect`. Counted here:
//! `events_sent` and the body's `payload_bytes_sent` of a SEND in its destination's set (when
//! written, inside a transaction or not); a RECEIPT asked for is tracked by the glue
//! (`acks_received`, `ack_latency` in the destination's set, or the step's own). A destination
//! or transaction id that renders empty, or a `transaction: true` with no open transaction,
//! fails the step with `expectation` before anything is sent.

use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use wsfleet_metrics::catalog::close_code_counter;
use wsfleet_metrics::{Counter, ErrorKind, SetId};
use wsfleet_scenario::protocol::stomp::{Stomp, StompAction, StompBody, StompStep, Transaction};
use wsfleet_scenario::{Flush, Scope, Step, Template};

use super::closing::close_connection;
use super::outcome::{Failure, StepResult};
use super::protocol::due_at;
use super::state::Vu;
use crate::clock;
use crate::protocol::stomp::{ConnectOptions, Session};

/// A STOMP session for a connect step's options, rendered in `scope`.
pub(super) fn stomp_session(options: &Stomp, scope: &Scope<'_>) -> Session {
    Session::new(ConnectOptions {
        host: options.host.render(scope).into_owned(),
        login: options.login.as_ref().map(|login| login.render(scope).into_owned()),
        passcode: options
            .passcode
            .as_ref()
            .map(|passcode| passcode.render(scope).into_owned()),
        send_heartbeat: options.send_heartbeat,
        want_heartbeat: options.want_heartbeat,
        headers: render_headers(&options.headers, scope),
    })
}

fn render_headers(headers: &[(String, Template)], scope: &Scope<'_>) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| (name.clone(), value.render(scope).into_owned()))
        .collect()
}

impl Vu {
    /// Any STOMP step: its frame, then the RECEIPT it asked for, waited for or not.
    pub(super) async fn stomp_step(&mut self, step: &Step, stomp: &StompStep, iteration: u64) -> StepResult {
        let conn_id = stomp.conn;
        let rendered = {
            let parts = self.parts();
            let scope = parts.scope(iteration);
            Rendered::of(&stomp.action, &scope)
        };
        if rendered.destination().is_some_and(str::is_empty) {
            tracing::debug!(
                vu = self.number,
                step = %step.name,
                "the destination rendered empty: nothing sent"
            );
            return Err(Failure::new(step.id, ErrorKind::Expectation).into());
        }
        if rendered.transaction_is_empty() {
            tracing::debug!(
                vu = self.number,
                step = %step.name,
                "the transaction id rendered empty: nothing sent"
            );
            return Err(Failure::new(step.id, ErrorKind::Expectation).into());
        }
        // The last message a step or handler took on the connection, for an ACK without an id.
        let last_reply = self.info.get(conn_id).and_then(|info| info.last_reply.clone());
        let conn = self.conn_mut(conn_id, step.id)?;
        let Some(speaking) = conn.protocol.as_mut() else {
            return Err(Failure::new(step.id, ErrorKind::Protocol).into());
        };
        let Some(session) = speaking.layer.as_stomp() else {
            return Err(Failure::new(step.id, ErrorKind::Protocol).into());
        };
        if !session.ready() {
            return Err(Failure::new(step.id, ErrorKind::Closed).into());
        }
        let receipt = match stomp.action {
            // The DISCONNECT's receipt is the disconnect's own business.
            StompAction::Disconnect { receipt, .. } => receipt.then(|| session.next_receipt()),
            _ => stomp.receipt.map(|_| session.next_receipt()),
        };
        let receipt_header = receipt.as_ref().map(|(_, header)| header.as_str());
        let mut flush = Flush::Batch;
        let mut body_bytes = None;
        // `transaction: true`: the connection's open transaction.
        let open_transaction = session.open_transaction().map(str::to_owned);
        let transaction_of = |wanted: Option<TransactionId>| -> Result<Option<String>, ()> {
            match wanted {
                None => Ok(None),
                Some(TransactionId::Named(id)) => Ok(Some(id)),
                Some(TransactionId::Open) => open_transaction.clone().map(Some).ok_or(()),
            }
        };
        let no_transaction = |number: u64| {
            tracing::debug!(
                vu = number,
                step = %step.name,
                "`transaction: true` with no open transaction on the connection: nothing sent"
            );
            Err(Failure::new(step.id, ErrorKind::Expectation).into())
        };
        let message = match (&stomp.action, rendered) {
            (
                StompAction::Subscribe { ack, .. },
                Rendered::Subscribe {
                    destination,
                    id,
                    headers,
                },
            ) => session.subscribe(&destination, id, *ack, Some(stomp.set), &headers, receipt_header),
            (
                StompAction::Unsubscribe { .. },
                Rendered::Unsubscribe {
                    destination,
                    id,
                    headers,
                },
            ) => {
                let id = match (id, destination) {
                    (Some(id), _) => id,
                    (None, Some(destination)) => match session.subscription_to(&destination) {
                        Some(id) => id.to_owned(),
                        None => {
                            tracing::debug!(vu = self.number, destination = %destination, "no subscription to unsubscribe");
                            return Err(Failure::new(step.id, ErrorKind::Expectation).into());
                        }
                    },
                    (None, None) => return Err(Failure::new(step.id, ErrorKind::Expectation).into()),
                };
                session.unsubscribe(&id, &headers, receipt_header)
            }
            (
                StompAction::Send { flush: send_flush, .. },
                Rendered::Send {
                    destination,
                    headers,
                    body,
                    transaction,
                },
            ) => {
                let Ok(transaction) = transaction_of(transaction) else {
                    return no_transaction(self.number);
                };
                flush = *send_flush;
                body_bytes = Some(body.len() as u64);
                session.send(&destination, &headers, body, transaction.as_deref(), receipt_header)
            }
            (StompAction::Begin { .. }, Rendered::Begin { id }) => session.begin(id, receipt_header).1,
            (StompAction::End { commit, .. }, Rendered::End { id }) => {
                let Some(id) = id.or(open_transaction.clone()) else {
                    tracing::debug!(
                        vu = self.number,
                        step = %step.name,
                        "no open transaction on the connection to end: nothing sent"
                    );
                    return Err(Failure::new(step.id, ErrorKind::Expectation).into());
                };
                session.end_transaction(*commit, &id, receipt_header)
            }
            (StompAction::Ack { nack, .. }, Rendered::Ack { id, transaction }) => {
                let Ok(transaction) = transaction_of(transaction) else {
                    return no_transaction(self.number);
                };
                let (id, subscription) = match id {
                    Some(id) => (id, None),
                    None => match last_reply {
                        Some((id, subscription)) => (id, Some(subscription)),
                        None => {
                            tracing::debug!(vu = self.number, "an ACK with no message to acknowledge");
                            return Err(Failure::new(step.id, ErrorKind::Expectation).into());
                        }
                    },
                };
                session.ack(
                    *nack,
                    &id,
                    subscription.as_deref(),
                    transaction.as_deref(),
                    receipt_header,
                )
            }
            (StompAction::Disconnect { timeout, .. }, _) => {
                let timeout = *timeout;
                let message = session.disconnect_message(receipt_header);
                return Box::pin(self.stomp_disconnect(
                    step,
                    conn_id,
                    message,
                    receipt.map(|(id, _)| id),
                    timeout,
                    iteration,
                ))
                .await;
            }
            _ => return Err(Failure::new(step.id, ErrorKind::Protocol).into()),
        };
        self.send_message(conn_id, message, 1, flush, SetId::Step(step.id), step.id, iteration)
            .await?;
        if let Some(bytes) = body_bytes {
            self.env.recorder.borrow_mut().add_counts(
                clock::now(),
                SetId::Step(stomp.set),
                [(Counter::EventsSent, 1), (Counter::PayloadBytesSent, bytes)],
            );
        }
        let (Some((id, _)), Some(wanted)) = (receipt, stomp.receipt) else {
            return Ok(());
        };
        // The RECEIPT is timed from when the frame left (from when it was due, when a paced
        // iteration runs late).
        let sent = self.flush_held(step.id, iteration).await?.unwrap_or_else(clock::now);
        self.recent = None;
        let due = due_at(sent, self.lag);
        {
            let conn = self.conn_mut(conn_id, step.id)?;
            let Some(speaking) = conn.protocol.as_mut() else {
                return Err(Failure::new(step.id, ErrorKind::Closed).into());
            };
            speaking.expect_ack(id, step.id, stomp.set, due, wanted.wait);
        }
        if wanted.wait {
            self.await_ack(
                conn_id,
                id,
                sent + wanted.timeout,
                step.id,
                iteration,
                ErrorKind::AckTimeout,
            )
            .await?;
        }
        Ok(())
    }

    /// DISCONNECT, then its RECEIPT or the server's close (RabbitMQ closes without a RECEIPT),
    /// within `timeout`; then the client closes the WebSocket if the server has not.
    async fn stomp_disconnect(
        &mut self,
        step: &Step,
        conn_id: usize,
        message: Message,
        receipt: Option<u64>,
        timeout: std::time::Duration,
        iteration: u64,
    ) -> StepResult {
        let set = SetId::Step(step.id);
        self.send_message(conn_id, message, 1, Flush::Batch, set, step.id, iteration)
            .await?;
        let sent = self.flush_held(step.id, iteration).await?.unwrap_or_else(clock::now);
        let deadline: Instant = sent + timeout;
        if let Some(id) = receipt {
            let due = due_at(sent, self.lag);
            let conn = self.conn_mut(conn_id, step.id)?;
            if let Some(speaking) = conn.protocol.as_mut() {
                speaking.expect_ack(id, step.id, step.id, due, true);
            }
        }
        loop {
            let came = receipt.is_some_and(|id| {
                self.conns
                    .get(conn_id)
                    .and_then(Option::as_ref)
                    .and_then(|conn| conn.protocol.as_ref())
                    .is_some_and(|speaking| speaking.acks_arrived(id))
            });
            if came {
                break;
            }
            let conn = self.conn_mut(conn_id, step.id)?;
            let next = match tokio::time::timeout_at(deadline.into(), conn.socket.next()).await {
                // Neither a RECEIPT nor a close: the client closes.
                Err(_) => break,
                Ok(next) => next,
            };
            match next {
                Some(Ok(Message::Close(frame))) => {
                    // The server closed first (RabbitMQ answers DISCONNECT so, without a
                    // RECEIPT): the close answers the DISCONNECT. Answer it and let it go.
                    let code = frame.as_ref().map_or(1005, |frame| u16::from(frame.code));
                    if let Some(mut conn) = self.conns.get_mut(conn_id).and_then(Option::take) {
                        if let (Some(id), Some(speaking)) = (receipt, conn.protocol.as_mut()) {
                            speaking.forget_ack(id);
                        }
                        conn.recorder
                            .borrow_mut()
                            .add_labeled(clock::now(), set, close_code_counter(code), 1);
                        let _ = futures_util::SinkExt::flush(&mut conn.socket).await;
                    }
                    return Ok(());
                }
                None | Some(Err(_)) => {
                    if let Some(mut conn) = self.conns.get_mut(conn_id).and_then(Option::take) {
                        if let (Some(id), Some(speaking)) = (receipt, conn.protocol.as_mut()) {
                            speaking.forget_ack(id);
                        }
                    }
                    return Ok(());
                }
                Some(Ok(message)) => {
                    let ingested = self.ingest(conn_id, Some(Ok(message)), step.id, iteration)?;
                    self.settle_ingested(conn_id, ingested, iteration).await?;
                }
            }
        }
        let Some(mut conn) = self.conns.get_mut(conn_id).and_then(Option::take) else {
            return Ok(());
        };
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: Utf8Bytes::from_static(""),
        };
        let left = deadline
            .saturating_duration_since(clock::now())
            .max(std::time::Duration::from_secs(1));
        close_connection(&mut conn, frame, left, step.id, set).await?;
        Ok(())
    }
}

/// A step's templates, rendered before the session is borrowed.
enum Rendered {
    Subscribe {
        destination: String,
        id: Option<String>,
        headers: Vec<(String, String)>,
    },
    Unsubscribe {
        destination: Option<String>,
        id: Option<String>,
        headers: Vec<(String, String)>,
    },
    Send {
        destination: String,
        headers: Vec<(String, String)>,
        body: Bytes,
        transaction: Option<TransactionId>,
    },
    Ack {
        id: Option<String>,
        transaction: Option<TransactionId>,
    },
    Begin {
        id: Option<String>,
    },
    End {
        id: Option<String>,
    },
    Nothing,
}

/// A frame's transaction, rendered: named, or the connection's open one.
enum TransactionId {
    Named(String),
    Open,
}

impl Rendered {
    /// The destination the frame names, if any.
    fn destination(&self) -> Option<&str> {
        match self {
            Rendered::Subscribe { destination, .. } | Rendered::Send { destination, .. } => Some(destination),
            Rendered::Unsubscribe { destination, .. } => destination.as_deref(),
            _ => None,
        }
    }

    /// Whether the transaction the frame names rendered empty.
    fn transaction_is_empty(&self) -> bool {
        match self {
            Rendered::Send { transaction, .. } | Rendered::Ack { transaction, .. } => {
                matches!(transaction, Some(TransactionId::Named(id)) if id.is_empty())
            }
            Rendered::Begin { id } | Rendered::End { id } => id.as_deref().is_some_and(str::is_empty),
            _ => false,
        }
    }
}

impl Rendered {
    fn of(action: &StompAction, scope: &Scope<'_>) -> Rendered {
        let render =
            |template: &Option<Template>| template.as_ref().map(|template| template.render(scope).into_owned());
        let transaction = |transaction: &Option<Transaction>| {
            transaction.as_ref().map(|transaction| match transaction {
                Transaction::Open => TransactionId::Open,
                Transaction::Id(template) => TransactionId::Named(template.render(scope).into_owned()),
            })
        };
        match action {
            StompAction::Subscribe {
                destination,
                id,
                headers,
                ..
            } => Rendered::Subscribe {
                destination: destination.render(scope).into_owned(),
                id: render(id),
                headers: render_headers(headers, scope),
            },
            StompAction::Unsubscribe {
                destination,
                id,
                headers,
            } => Rendered::Unsubscribe {
                destination: render(destination),
                id: render(id),
                headers: render_headers(headers, scope),
            },
            StompAction::Send {
                destination,
                headers,
                body,
                transaction: within,
                ..
            } => Rendered::Send {
                destination: destination.render(scope).into_owned(),
                headers: render_headers(headers, scope),
                body: match body {
                    StompBody::Text(template) => Bytes::from(template.render(scope).into_owned()),
                    StompBody::Bytes(bytes) => Bytes::from(bytes.clone()),
                },
                transaction: transaction(within),
            },
            StompAction::Ack {
                id,
                transaction: within,
                ..
            } => Rendered::Ack {
                id: render(id),
                transaction: transaction(within),
            },
            StompAction::Begin { id } => Rendered::Begin { id: render(id) },
            StompAction::End { id, .. } => Rendered::End { id: render(id) },
            StompAction::Disconnect { .. } => Rendered::Nothing,
        }
    }
}
