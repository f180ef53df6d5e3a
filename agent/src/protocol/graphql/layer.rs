//! The GraphQL session as the connection's protocol layer ([`crate::protocol::Layer`]): what
//! each operation is to the VU (its name, and whether a step waits for its result), what the
//! server's messages become ([`Decoded`] items), and the keep-alive timers.
//!
//! - A subscription's result is an event named after its operation (`match: { event }`), its
//!   payload the body; its first result is also an acknowledgement of the subscribe, so the
//!   glue times subscribe → first result as it times any acknowledgement.
//! - A query's or mutation's result is the acknowledgement the step waits for; an `error`
//!   message for it is too, as `{"errors": [...]}`, so the step sees the errors.
//! - `errors` in a subscription's result, or an `error` message ending one, is a
//!   `graphql_error`; a refused `connection_init` (graphql-ws) is a `connect_error`.
//! - The server's `ping` is answered, its `pong` and `ka` counted as heartbeats; the client's
//!   own pings go out every `keep_alive` after the last pong, and an unanswered ping or a
//!   legacy server whose `ka` stopped is a silent server.

use std::time::Instant;

use tokio_tungstenite::tungstenite::Message;
use wsfleet_metrics::ErrorKind;
use wsfleet_scenario::{FrameKind, StepId};

use super::{Received, Session, State, Subprotocol};
use crate::protocol::{Ack, Decoded, Event, Tick};

/// What the VU knows of an operation it started.
struct Started {
    id: u64,
    /// Its operation name: the event name of its results.
    name: String,
    /// A step waits for its result (a query or mutation).
    awaited: bool,
    /// The step that started it (`complete` names it).
    step: StepId,
}

/// A connection's GraphQL layer.
pub struct GraphQlLayer {
    session: Session,
    started: Vec<Started>,
    /// When the connection was acknowledged or the last pong came: the client's next ping is
    /// due `keep_alive` after it.
    quiet_since: Option<Instant>,
    /// When the server was last heard from (graphql-ws's keep-alive silence counts from it).
    heard: Option<Instant>,
    /// When the client's last ping left.
    pinged: Option<Instant>,
}

impl GraphQlLayer {
    pub fn new(session: Session) -> GraphQlLayer {
        GraphQlLayer {
            session,
            started: Vec::new(),
            quiet_since: None,
            heard: None,
            pinged: None,
        }
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The subprotocol the connection offers (and the server must agree to).
    pub fn subprotocol(&self) -> Subprotocol {
        self.session.subprotocol()
    }

    pub fn ready(&self) -> bool {
        self.session.ready()
    }

    /// Whether the session is over: refused, or terminated by the client.
    pub fn ended(&self) -> bool {
        matches!(self.session.state(), State::Refused | State::Terminated)
    }

    /// `connection_init`, at `now`. Its payload was rendered from the scenario's JSON template,
    /// so it parses; were it not to, no `connection_init` would leave and the connect step
    /// would time out waiting for the acknowledgement.
    pub fn handshake_messages(&mut self, now: Instant) -> Vec<Message> {
        self.heard = Some(now);
        self.session.init_message().ok().into_iter().collect()
    }

    /// Starts an operation named `name` for the step `step`: its id and message. `awaited`: a
    /// step waits for its result (queries and mutations).
    pub fn start(&mut self, payload: &str, name: &str, awaited: bool, step: StepId) -> Result<(u64, Message), String> {
        let (id, message) = self.session.start(payload).map_err(|error| error.to_string())?;
        self.started.push(Started {
            id,
            name: name.to_owned(),
            awaited,
            step,
        });
        Ok((id, message))
    }

    /// The operation the step `step` started last and that has not ended.
    pub fn operation_of(&self, step: StepId) -> Option<u64> {
        self.started
            .iter()
            .rev()
            .find(|started| started.step == step)
            .map(|started| started.id)
    }

    /// Ends a subscription from the client's side; `None` when it ended already.
    pub fn stop(&mut self, id: u64) -> Option<Message> {
        self.forget(id);
        self.session.stop(id)
    }

    pub fn goodbye_messages(&mut self) -> Vec<Message> {
        self.started.clear();
        self.session.goodbye_messages()
    }

    fn forget(&mut self, id: u64) {
        self.started.retain(|started| started.id != id);
    }

    fn started(&self, id: u64) -> Option<&Started> {
        self.started.iter().find(|started| started.id == id)
    }

    /// Reads one incoming message at `now`: its items onto `out`.
    pub fn decode(&mut self, message: &Message, now: Instant, out: &mut Vec<Decoded>) {
        self.heard = Some(now);
        let received = match self.session.decode(message) {
            Ok(received) => received,
            Err(why) => {
                out.push(Decoded::Violation(why));
                return;
            }
        };
        match received {
            Received::Acknowledged(_) => {
                self.quiet_since = Some(now);
                out.push(Decoded::Connected(String::new()));
            }
            Received::Refused(message) => out.push(Decoded::Refused {
                kind: ErrorKind::ConnectError,
                namespace: String::new(),
                message,
            }),
            Received::Ping(answer) => out.push(Decoded::Heartbeat(Some(answer))),
            Received::Pong => {
                self.pinged = None;
                self.quiet_since = Some(now);
                out.push(Decoded::Heartbeat(None));
            }
            Received::KeepAlive => out.push(Decoded::Heartbeat(None)),
            Received::Next {
                id,
                payload,
                first,
                errors,
            } => {
                let Some(started) = self.started(id) else {
                    out.push(Decoded::Handled);
                    return;
                };
                if started.awaited {
                    out.push(Decoded::Ack(Box::new(Ack {
                        id,
                        body: payload.into(),
                        attachments: Vec::new(),
                        packet: None,
                    })));
                    return;
                }
                let name = started.name.clone();
                if first {
                    out.push(Decoded::Ack(Box::new(Ack {
                        id,
                        body: Default::default(),
                        attachments: Vec::new(),
                        packet: None,
                    })));
                }
                if let Some(errors) = errors {
                    out.push(Decoded::Failed {
                        kind: ErrorKind::GraphqlError,
                        message: format!("a result of `{name}` has errors: {errors}"),
                    });
                }
                let mut event = Event::new(name, id.to_string(), payload);
                event.kind = FrameKind::Text;
                out.push(Decoded::Event(Box::new(event)));
            }
            Received::Error { id, message, payload } => {
                let awaited = self.started(id).is_some_and(|started| started.awaited);
                let name = self.started(id).map(|started| started.name.clone()).unwrap_or_default();
                self.forget(id);
                if awaited {
                    // The step waiting for the result reads the errors from it.
                    let errors = if payload.trim_start().starts_with('[') {
                        payload
                    } else {
                        format!("[{payload}]")
                    };
                    out.push(Decoded::Ack(Box::new(Ack {
                        id,
                        body: format!("{{\"errors\":{errors}}}").into(),
                        attachments: Vec::new(),
                        packet: None,
                    })));
                } else {
                    out.push(Decoded::Failed {
                        kind: ErrorKind::GraphqlError,
                        message: format!("`{name}` ended with an error: {message}"),
                    });
                }
            }
            Received::Complete { id } => {
                self.forget(id);
                out.push(Decoded::Handled);
            }
            Received::Stale { .. } => out.push(Decoded::Handled),
        }
    }

    /// When the layer next acts: the client's next ping, a ping's pong overdue, or a legacy
    /// server's keep-alives overdue.
    pub fn next_due(&self) -> Option<Instant> {
        let options = self.session.options();
        let ping = match (self.pinged, self.quiet_since) {
            (Some(sent), _) => options.keep_alive.map(|every| sent + every),
            (None, Some(since)) => self.session.ping_due(since),
            (None, None) => None,
        };
        let silent = match (options.ka_timeout, self.heard) {
            (Some(limit), Some(heard)) if self.session.ka_seen() => Some(heard + limit),
            _ => None,
        };
        match (ping, silent) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// What the layer does at `now`.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Tick>) {
        if let Some(heard) = self.heard {
            if self.session.server_silent(heard, now) {
                out.push(Tick::Silent(
                    "no graphql-ws keep-alive (`ka`) within `ka_timeout`".into(),
                ));
                return;
            }
        }
        if self.session.pong_overdue(now) {
            out.push(Tick::Silent("no pong within `keep_alive` of the client's ping".into()));
            return;
        }
        let due = self.quiet_since.and_then(|since| self.session.ping_due(since));
        if due.is_some_and(|due| now >= due) {
            if let Some(ping) = self.session.ping_message(now) {
                self.pinged = Some(now);
                out.push(Tick::Heartbeat(ping));
            }
        }
    }
}

#[cfg(test)]
#[path = "layer_tests.rs"]
mod tests;
