//! STOMP's connect options and steps: `connect: { protocol: stomp, stomp: {...} }`,
//! `stomp_subscribe`, `stomp_unsubscribe`, `stomp_send`, `stomp_ack`, `stomp_nack`,
//! `stomp_begin`, `stomp_commit`, `stomp_abort` and `stomp_disconnect`. Destinations, headers,
//! bodies, ids, transactions and credentials are templates; a destination names a metric set
//! (`destination:/queue/a`, each `${...}` written as `*`: `destination:/topic/room.*`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::Problems;
use crate::protocol::stomp::{
    set_key, AckMode, RawHeartbeat, RawReceipt, RawStomp, RawStompTransaction, RawTransaction, Receipt, Stomp,
    StompAction, StompBody, StompStep, Transaction, DEFAULT_HEARTBEAT, DEFAULT_HOST, DEFAULT_RECEIPT_TIMEOUT,
    SET_PREFIX,
};
use crate::raw::RawStep;
use crate::steps::{Action, Step};
use crate::template::Template;

use super::super::builder::{At, StepBuilder};
use super::super::fields::{compile_template, duration_field, flush};

/// How long `stomp_disconnect` waits for its RECEIPT (or the server's close) by default.
const DEFAULT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl StepBuilder<'_> {
    /// `stomp: { host, login, passcode, heartbeat, headers }`.
    pub(in crate::validate) fn stomp_options(
        &mut self,
        raw: &RawStomp,
        field: &str,
        problems: &mut Problems<'_>,
    ) -> Stomp {
        let host = match &raw.host {
            Some(host) => compile_template(host, &format!("{field}.host"), &self.known, problems)
                .unwrap_or_else(|| Template::literal(DEFAULT_HOST)),
            None => Template::literal(DEFAULT_HOST),
        };
        let login = raw
            .login
            .as_ref()
            .and_then(|login| compile_template(login, &format!("{field}.login"), &self.known, problems));
        let passcode = raw
            .passcode
            .as_ref()
            .and_then(|passcode| compile_template(passcode, &format!("{field}.passcode"), &self.known, problems));
        let (send_heartbeat, want_heartbeat) = match &raw.heartbeat {
            None => (Some(DEFAULT_HEARTBEAT), Some(DEFAULT_HEARTBEAT)),
            Some(RawHeartbeat::Off(word)) => {
                if word != "off" {
                    problems.add(
                        &format!("{field}.heartbeat"),
                        format!("`{word}` is not a heart-beat setting"),
                        Some("write `heartbeat: off` or `heartbeat: { send: 10s, receive: 10s }`".into()),
                    );
                }
                (None, None)
            }
            Some(RawHeartbeat::Intervals(intervals)) => {
                let interval = |text: &Option<String>, name: &str, problems: &mut Problems<'_>| match text.as_deref() {
                    None => Some(DEFAULT_HEARTBEAT),
                    Some("off") => None,
                    Some(text) => {
                        let at = format!("{field}.heartbeat.{name}");
                        let duration = duration_field(Some(text), &at, DEFAULT_HEARTBEAT, problems);
                        if !duration.is_zero() && duration < Duration::from_millis(100) {
                            problems.add(
                                &at,
                                format!("{} ms is shorter than 100 ms", duration.as_millis()),
                                Some("heart-beats are for idle connections; use seconds, or `off`".into()),
                            );
                        }
                        (!duration.is_zero()).then_some(duration)
                    }
                };
                (
                    interval(&intervals.send, "send", problems),
                    interval(&intervals.receive, "receive", problems),
                )
            }
        };
        let headers = self.stomp_headers(&raw.headers, &format!("{field}.headers"), problems);
        for (name, _) in &headers {
            if ["accept-version", "host", "login", "passcode", "heart-beat"].contains(&name.as_str()) {
                problems.add(
                    &format!("{field}.headers.{name}"),
                    format!("`{name}` is set by the STOMP options"),
                    Some("use `host`, `login`, `passcode` or `heartbeat`".into()),
                );
            }
        }
        Stomp {
            host,
            login,
            passcode,
            send_heartbeat,
            want_heartbeat,
            headers,
        }
    }

    fn stomp_headers(
        &self,
        raw: &BTreeMap<String, String>,
        field: &str,
        problems: &mut Problems<'_>,
    ) -> Vec<(String, Template)> {
        raw.iter()
            .filter_map(|(name, value)| {
                if name.is_empty() {
                    problems.add(field, "a header needs a name", None);
                    return None;
                }
                compile_template(value, &format!("{field}.{name}"), &self.known, problems)
                    .map(|template| (name.clone(), template))
            })
            .collect()
    }

    fn optional_template(&self, text: Option<&String>, field: &str, problems: &mut Problems<'_>) -> Option<Template> {
        text.and_then(|text| compile_template(text, field, &self.known, problems))
    }

    fn receipt(&self, raw: Option<&RawReceipt>, field: &str, problems: &mut Problems<'_>) -> Option<Receipt> {
        match raw? {
            RawReceipt::Flag(false) => None,
            RawReceipt::Flag(true) => Some(Receipt {
                timeout: DEFAULT_RECEIPT_TIMEOUT,
                wait: true,
            }),
            RawReceipt::Options(options) => Some(Receipt {
                timeout: duration_field(
                    options.timeout.as_deref(),
                    &format!("{field}.timeout"),
                    DEFAULT_RECEIPT_TIMEOUT,
                    problems,
                ),
                wait: options.wait.unwrap_or(true),
            }),
        }
    }

    /// A destination: a template, and its metric set (`destination:` and the destination as
    /// written, each `${...}` as `*`). A destination that renders empty fails its step when it
    /// runs.
    fn destination(
        &mut self,
        destination: &str,
        field: &str,
        problems: &mut Problems<'_>,
    ) -> (Template, crate::steps::StepId) {
        if destination.is_empty() {
            problems.add(
                field,
                "a destination cannot be empty",
                Some("name one, e.g. `/queue/orders` or `/topic/room.${vu % 3}`".into()),
            );
        } else if destination.chars().any(char::is_control) {
            problems.add(
                field,
                format!("`{}` holds a control character", destination.escape_debug()),
                Some("write the destination on one line, without tabs or line breaks".into()),
            );
        }
        let template = compile_template(destination, field, &self.known, problems)
            .unwrap_or_else(|| Template::literal(destination));
        let key = set_key(&template);
        let set = self.event_set(SET_PREFIX, &key);
        self.mark_set(set, &key, template.as_literal().is_none(), field, problems);
        (template, set)
    }

    /// `transaction: ID` (a template) or `transaction: true` (the connection's open one).
    fn transaction(
        &self,
        raw: Option<&RawTransaction>,
        field: &str,
        problems: &mut Problems<'_>,
    ) -> Option<Transaction> {
        match raw? {
            RawTransaction::Open(false) => None,
            RawTransaction::Open(true) => Some(Transaction::Open),
            RawTransaction::Id(id) => {
                if id.is_empty() {
                    problems.add(
                        field,
                        "a transaction id cannot be empty",
                        Some("write `transaction: true` for the connection's open transaction, or its id".into()),
                    );
                    return None;
                }
                compile_template(id, field, &self.known, problems).map(Transaction::Id)
            }
        }
    }

    /// Any STOMP step.
    pub(in crate::validate) fn stomp_step(
        &mut self,
        raw: &RawStep,
        at: At<'_>,
        connected: &mut [bool],
        problems: &mut Problems<'_>,
    ) -> Step {
        let field = at.field;
        let default_ack = Default::default();
        let default_disconnect = Default::default();
        let default_transaction = RawStompTransaction::default();
        let (name, connection) = match raw {
            RawStep::StompSubscribe(step) => (step.name.as_ref(), step.connection.as_ref()),
            RawStep::StompUnsubscribe(step) => (step.name.as_ref(), step.connection.as_ref()),
            RawStep::StompSend(step) => (step.name.as_ref(), step.connection.as_ref()),
            RawStep::StompAck(step) | RawStep::StompNack(step) => {
                let step: &crate::protocol::stomp::RawStompAck = step.as_ref().unwrap_or(&default_ack);
                (step.name.as_ref(), step.connection.as_ref())
            }
            RawStep::StompDisconnect(step) => {
                let step: &crate::protocol::stomp::RawStompDisconnect = step.as_ref().unwrap_or(&default_disconnect);
                (step.name.as_ref(), step.connection.as_ref())
            }
            RawStep::StompBegin(step) | RawStep::StompCommit(step) | RawStep::StompAbort(step) => {
                let step = step.as_ref().unwrap_or(&default_transaction);
                (step.name.as_ref(), step.connection.as_ref())
            }
            _ => (None, None),
        };
        let (id, name, conn) = self.connection_step(at, name, connection, connected, problems);
        self.require_protocol(conn, "stomp", field, at.kind, problems);
        let (set, receipt, action) = match raw {
            RawStep::StompSubscribe(subscribe) => {
                let (destination, set) =
                    self.destination(&subscribe.destination, &format!("{field}.destination"), problems);
                let ack = match subscribe.ack.as_deref() {
                    None | Some("auto") => AckMode::Auto,
                    Some("client") => AckMode::Client,
                    Some("client-individual") => AckMode::ClientIndividual,
                    Some(other) => {
                        problems.add(
                            &format!("{field}.ack"),
                            format!("unknown ack mode `{other}`"),
                            Some("use `auto`, `client` or `client-individual`".into()),
                        );
                        AckMode::Auto
                    }
                };
                let headers = self.stomp_headers(&subscribe.headers, &format!("{field}.headers"), problems);
                reserved(&headers, &["destination", "id", "ack", "receipt"], field, problems);
                (
                    set,
                    self.receipt(subscribe.receipt.as_ref(), &format!("{field}.receipt"), problems),
                    StompAction::Subscribe {
                        destination,
                        id: self.optional_template(subscribe.id.as_ref(), &format!("{field}.id"), problems),
                        ack,
                        headers,
                    },
                )
            }
            RawStep::StompUnsubscribe(unsubscribe) => {
                let (destination, set) = match &unsubscribe.destination {
                    Some(destination) => {
                        let (destination, set) =
                            self.destination(destination, &format!("{field}.destination"), problems);
                        (Some(destination), set)
                    }
                    None => (None, id),
                };
                if unsubscribe.id.is_some() == unsubscribe.destination.is_some() {
                    problems.add(
                        field,
                        "`stomp_unsubscribe` names the subscription by `id` or by `destination`, one of them",
                        Some("write `stomp_unsubscribe: { destination: /queue/a }`".into()),
                    );
                }
                let headers = self.stomp_headers(&unsubscribe.headers, &format!("{field}.headers"), problems);
                reserved(&headers, &["id", "receipt"], field, problems);
                (
                    set,
                    self.receipt(unsubscribe.receipt.as_ref(), &format!("{field}.receipt"), problems),
                    StompAction::Unsubscribe {
                        id: self.optional_template(unsubscribe.id.as_ref(), &format!("{field}.id"), problems),
                        destination,
                        headers,
                    },
                )
            }
            RawStep::StompSend(send) => {
                let (destination, set) = self.destination(&send.destination, &format!("{field}.destination"), problems);
                let mut headers = self.stomp_headers(&send.headers, &format!("{field}.headers"), problems);
                reserved(
                    &headers,
                    &["destination", "receipt", "content-length", "transaction"],
                    field,
                    problems,
                );
                let transaction =
                    self.transaction(send.transaction.as_ref(), &format!("{field}.transaction"), problems);
                if let Some(content_type) = &send.content_type {
                    if let Some(template) =
                        compile_template(content_type, &format!("{field}.content_type"), &self.known, problems)
                    {
                        headers.push(("content-type".to_owned(), template));
                    }
                }
                let body = match (&send.text, &send.file) {
                    (Some(text), None) => StompBody::Text(
                        compile_template(text, &format!("{field}.text"), &self.known, problems)
                            .unwrap_or_else(|| Template::literal("")),
                    ),
                    (None, Some(file)) => StompBody::Bytes(self.file(file, &format!("{field}.file"), problems)),
                    (None, None) => StompBody::Bytes(Vec::new()),
                    (Some(_), Some(_)) => {
                        problems.add(
                            field,
                            "a STOMP send takes its body from `text` or `file`, not both",
                            None,
                        );
                        StompBody::Bytes(Vec::new())
                    }
                };
                let flush = flush(
                    send.flush.as_deref(),
                    &format!("{field}.flush"),
                    self.default_flush,
                    problems,
                );
                (
                    set,
                    self.receipt(send.receipt.as_ref(), &format!("{field}.receipt"), problems),
                    StompAction::Send {
                        destination,
                        headers,
                        body,
                        transaction,
                        flush,
                    },
                )
            }
            RawStep::StompAck(ack) | RawStep::StompNack(ack) => {
                let ack = ack.as_ref().unwrap_or(&default_ack);
                (
                    id,
                    self.receipt(ack.receipt.as_ref(), &format!("{field}.receipt"), problems),
                    StompAction::Ack {
                        nack: matches!(raw, RawStep::StompNack(_)),
                        id: self.optional_template(ack.id.as_ref(), &format!("{field}.id"), problems),
                        transaction: self.transaction(
                            ack.transaction.as_ref(),
                            &format!("{field}.transaction"),
                            problems,
                        ),
                    },
                )
            }
            RawStep::StompBegin(step) | RawStep::StompCommit(step) | RawStep::StompAbort(step) => {
                let step = step.as_ref().unwrap_or(&default_transaction);
                let transaction_field = format!("{field}.transaction");
                if step.transaction.as_ref().is_some_and(String::is_empty) {
                    problems.add(
                        &transaction_field,
                        "a transaction id cannot be empty",
                        Some("leave `transaction` out for the default (`tx-N` to begin, the open one to end)".into()),
                    );
                }
                let transaction = step
                    .transaction
                    .as_ref()
                    .filter(|transaction| !transaction.is_empty())
                    .and_then(|transaction| compile_template(transaction, &transaction_field, &self.known, problems));
                let action = match raw {
                    RawStep::StompBegin(_) => StompAction::Begin { id: transaction },
                    _ => StompAction::End {
                        commit: matches!(raw, RawStep::StompCommit(_)),
                        id: transaction,
                    },
                };
                (
                    id,
                    self.receipt(step.receipt.as_ref(), &format!("{field}.receipt"), problems),
                    action,
                )
            }
            RawStep::StompDisconnect(disconnect) => {
                let disconnect = disconnect.as_ref().unwrap_or(&default_disconnect);
                let timeout = duration_field(
                    disconnect.timeout.as_deref(),
                    &format!("{field}.timeout"),
                    DEFAULT_DISCONNECT_TIMEOUT,
                    problems,
                );
                (
                    id,
                    None,
                    StompAction::Disconnect {
                        receipt: disconnect.receipt.unwrap_or(true),
                        timeout,
                    },
                )
            }
            _ => (
                id,
                None,
                StompAction::Disconnect {
                    receipt: false,
                    timeout: DEFAULT_DISCONNECT_TIMEOUT,
                },
            ),
        };
        // A step that disconnects ends the connection for the steps after it.
        if matches!(raw, RawStep::StompDisconnect(_)) {
            if let Some(slot) = connected.get_mut(conn) {
                *slot = false;
            }
        }
        Step {
            id,
            name,
            action: Action::Stomp(Box::new(StompStep {
                conn,
                set,
                receipt,
                action,
            })),
        }
    }
}

/// Headers the step sets itself may not be given.
fn reserved(headers: &[(String, Template)], names: &[&str], field: &str, problems: &mut Problems<'_>) {
    for (name, _) in headers {
        if names.contains(&name.as_str()) {
            problems.add(
                &format!("{field}.headers.{name}"),
                format!("`{name}` is set by the step"),
                Some(format!("the step sets {}", names.join(", "))),
            );
        }
    }
}
