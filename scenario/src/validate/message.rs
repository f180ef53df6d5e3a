//! Message steps: `send` (text, bytes or a file; fragments) and `receive` (wait or not, match,
//! timeout, the send it times).

use crate::error::{closest, Problems};
use crate::raw::{RawReceive, RawSend};
use crate::steps::{
    parse_binary, Action, ConnId, FrameKind, Payload, Receive, Send, Step, DEFAULT_RECEIVE_TIMEOUT,
    DEFAULT_STATE_VARIABLE,
};
use crate::template::Template;

use super::builder::{At, StepBuilder};
use super::fields::{compile_template, duration_field, flush, on_fail};

impl StepBuilder<'_> {
    /// A `send` step; a later receive may time its answer (`latency_of`).
    pub(super) fn send_step(
        &mut self,
        send: &RawSend,
        at: At<'_>,
        connected: &[bool],
        problems: &mut Problems<'_>,
    ) -> Step {
        let (id, name, conn) =
            self.connection_step(at, send.name.as_ref(), send.connection.as_ref(), connected, problems);
        let action = self.send(send, conn, at.field, problems);
        self.send_names.push((name.clone(), id));
        Step {
            id,
            name,
            action: Action::Send(action),
        }
    }

    /// A `receive` step.
    pub(super) fn receive_step(
        &mut self,
        receive: &RawReceive,
        at: At<'_>,
        connected: &[bool],
        problems: &mut Problems<'_>,
    ) -> Step {
        let (id, name, conn) = self.connection_step(
            at,
            receive.name.as_ref(),
            receive.connection.as_ref(),
            connected,
            problems,
        );
        let action = self.receive(receive, conn, at.field, problems);
        Step {
            id,
            name,
            action: Action::Receive(Box::new(action)),
        }
    }

    /// A message to send, for a `send` step or a handler's reply.
    pub(super) fn send(&mut self, send: &RawSend, conn: ConnId, field: &str, problems: &mut Problems<'_>) -> Send {
        if send.as_text && send.as_binary {
            problems.add(field, "`as_text` and `as_binary` exclude each other", None);
        }
        let (payload, natural) = match (&send.text, &send.binary, &send.file) {
            (Some(text), None, None) => {
                let template = compile_template(text, &format!("{field}.text"), &self.known, problems)
                    .unwrap_or_else(|| Template::literal(""));
                (Payload::Text(template), FrameKind::Text)
            }
            (None, Some(binary), None) => match parse_binary(binary) {
                Ok(bytes) => (Payload::Bytes(bytes), FrameKind::Binary),
                Err(message) => {
                    problems.add(
                        &format!("{field}.binary"),
                        message,
                        Some("write bytes as \\xNN, e.g. '\\x61\\x62'".into()),
                    );
                    (Payload::Bytes(Vec::new()), FrameKind::Binary)
                }
            },
            (None, None, Some(file)) => (
                Payload::Bytes(self.file(file, &format!("{field}.file"), problems)),
                FrameKind::Binary,
            ),
            _ => {
                problems.add(field, "a send needs exactly one of `text`, `binary` or `file`", None);
                (Payload::Bytes(Vec::new()), FrameKind::Binary)
            }
        };
        let frame = if send.as_text {
            FrameKind::Text
        } else if send.as_binary {
            FrameKind::Binary
        } else {
            natural
        };
        if let (Payload::Bytes(bytes), FrameKind::Text) = (&payload, frame) {
            if std::str::from_utf8(bytes).is_err() {
                let source = if send.file.is_some() { "file" } else { "binary" };
                problems.add(
                    &format!("{field}.{source}"),
                    "these bytes are not valid UTF-8, so they cannot go in a text frame",
                    Some("drop `as_text` to send a binary frame".into()),
                );
            }
        }
        let fragments = send.fragments.unwrap_or(1);
        if fragments == 0 {
            problems.add(&format!("{field}.fragments"), "a message has at least 1 fragment", None);
        }
        if let (Payload::Bytes(bytes), true) = (&payload, fragments > 1) {
            if (bytes.len() as u64) < u64::from(fragments) {
                problems.add(
                    &format!("{field}.fragments"),
                    format!(
                        "{} bytes cannot be split into {fragments} fragments of at least one byte",
                        bytes.len()
                    ),
                    None,
                );
            }
        }
        let flush = flush(
            send.flush.as_deref(),
            &format!("{field}.flush"),
            self.default_flush,
            problems,
        );
        Send {
            conn,
            payload,
            frame,
            fragments: fragments.max(1),
            flush,
        }
    }

    fn receive(&mut self, receive: &RawReceive, conn: ConnId, field: &str, problems: &mut Problems<'_>) -> Receive {
        let wait = receive.wait.unwrap_or(true);
        if !wait && receive.timeout.is_some() {
            problems.add(
                &format!("{field}.timeout"),
                "a receive with `wait: false` does not wait, so it takes no timeout",
                None,
            );
        }
        if wait && receive.state.is_some() {
            problems.add(
                &format!("{field}.state"),
                "`state` is set by a receive that does not wait",
                Some("add `wait: false`".into()),
            );
        }
        let timeout = duration_field(
            receive.timeout.as_deref(),
            &format!("{field}.timeout"),
            DEFAULT_RECEIVE_TIMEOUT,
            problems,
        );
        let latency_of = receive.latency_of.as_ref().and_then(|wanted| {
            let found = self
                .send_names
                .iter()
                .find(|(name, _)| name == wanted)
                .map(|(_, id)| *id);
            if found.is_none() {
                let hint = closest(wanted, self.send_names.iter().map(|(name, _)| name.as_str()))
                    .map(|close| format!("did you mean `{close}`?"))
                    .or_else(|| Some("name a `send`, `mutation` or `http` step that comes before this receive".into()));
                problems.add(
                    &format!("{field}.latency_of"),
                    format!("no send, mutation or http step named `{wanted}` comes before this receive"),
                    hint,
                );
            }
            found
        });
        let matcher = receive
            .matcher
            .as_ref()
            .map(|raw| self.matcher(raw, &format!("{field}.match"), problems));
        if let Some(matcher) = &matcher {
            self.event_conditions(matcher, Some(conn), &format!("{field}.match"), problems);
        }
        let on_timeout = on_fail(receive.on_timeout.as_deref(), &format!("{field}.on_timeout"), problems);
        // A STOMP message's headers may be extracted too.
        let stomp = self.connection_protocols.get(conn).cloned().flatten().as_deref() == Some("stomp");
        let sources: &[&str] = if stomp {
            &["json", "regex", "body", "header"]
        } else {
            &["json", "regex", "body"]
        };
        let extract = self.extractions(&receive.extract, &format!("{field}.extract"), sources, problems);
        Receive {
            conn,
            timeout,
            latency_of,
            matcher,
            wait,
            state: (!wait).then(|| {
                receive
                    .state
                    .clone()
                    .unwrap_or_else(|| DEFAULT_STATE_VARIABLE.to_owned())
            }),
            on_timeout,
            extract,
        }
    }
}
