//! The handlers of a part: `on_message` rules (react to a message: reply, extract, fail),
//! `on_close` rules (a close the server sent) and `on_error` rules (what an error does to the
//! iteration). Built after the steps, whose names `on_error` rules may refer to.

use crate::error::{closest, Problems};
use crate::raw::PartView;
use crate::script::Form;
use crate::steps::{CloseRule, ConnId, ErrorRule, MessageRule, StepId, ERROR_KINDS};

use super::builder::StepBuilder;
use super::fields::then;

impl StepBuilder<'_> {
    /// Builds the `on_message`, `on_close` and `on_error` rules (after the steps, whose names
    /// error rules may refer to).
    pub(super) fn rules(
        &mut self,
        raw: &PartView<'_>,
        problems: &mut Problems<'_>,
    ) -> (Vec<MessageRule>, Vec<CloseRule>, Vec<ErrorRule>) {
        // `on_error` rules name steps, not handlers: the names before the handlers'.
        let step_names = self.names.clone();
        let message_rules = self.message_rules(raw, problems);
        let close_rules = self.close_rules(raw, problems);
        let error_rules = self.error_rules(raw, &step_names, problems);
        (message_rules, close_rules, error_rules)
    }

    /// The connection a rule names; `None` (any connection) when it names none.
    fn rule_connection(&self, named: Option<&String>, field: &str, problems: &mut Problems<'_>) -> Option<ConnId> {
        named.map(|name| self.connection(Some(name), field, problems))
    }

    /// `on_message`: each rule's condition, reply and extractions.
    fn message_rules(&mut self, raw: &PartView<'_>, problems: &mut Problems<'_>) -> Vec<MessageRule> {
        let mut message_rules = Vec::new();
        self.kind_counts.insert("on_message", raw.on_message.len());
        for (index, rule) in raw.on_message.iter().enumerate() {
            let field = format!("on_message[{index}]");
            let (id, name) = self.name(rule.name.as_ref(), "on_message", &field, problems);
            let conn = self.rule_connection(rule.connection.as_ref(), &field, problems);
            let when = rule
                .when
                .as_ref()
                .map(|raw| self.matcher(raw, &format!("{field}.when"), problems));
            if let Some(when) = &when {
                self.event_conditions(when, conn, &format!("{field}.when"), problems);
            }
            let reply = rule.send.as_ref().map(|send| {
                if send.connection.is_some() {
                    problems.add(
                        &format!("{field}.send.connection"),
                        "a handler's reply goes back on the connection the message came from",
                        Some("remove `connection` here; put it on the rule to pick the connection".into()),
                    );
                }
                self.send(send, conn.unwrap_or(0), &format!("{field}.send"), problems)
            });
            // A STOMP message's headers may be extracted too.
            let sources: &[&str] = if self.protocols_of(conn).iter().any(|protocol| protocol == "stomp") {
                &["json", "regex", "body", "header"]
            } else {
                &["json", "regex", "body"]
            };
            let extract = self.extractions(&rule.extract, &format!("{field}.extract"), sources, problems);
            let condition = rule
                .condition
                .as_ref()
                .and_then(|source| self.script(source, Form::Expression, &format!("{field}.if"), true, problems));
            let script = rule
                .script
                .as_ref()
                .and_then(|source| self.script(source, Form::Statements, &format!("{field}.script"), true, problems));
            let ack = rule
                .ack
                .as_ref()
                .map(|args| self.ack_args(args, conn, &format!("{field}.ack"), problems));
            if rule.ack.is_some() && rule.send.is_some() {
                problems.add(
                    &field,
                    "a rule answers with `send` or with `ack`, not both",
                    Some("split it into two rules, the first with `pass: true`".into()),
                );
            }
            message_rules.push(MessageRule {
                id,
                name,
                conn,
                when,
                reply,
                extract,
                fail: rule.fail,
                pass: rule.pass,
                condition,
                script,
                ack,
            });
        }
        message_rules
    }

    /// `on_close`: the close codes each rule takes and what it does then.
    fn close_rules(&mut self, raw: &PartView<'_>, problems: &mut Problems<'_>) -> Vec<CloseRule> {
        let mut close_rules = Vec::new();
        self.kind_counts.insert("on_close", raw.on_close.len());
        for (index, rule) in raw.on_close.iter().enumerate() {
            let field = format!("on_close[{index}]");
            let (id, name) = self.name(rule.name.as_ref(), "on_close", &field, problems);
            let conn = self.rule_connection(rule.connection.as_ref(), &field, problems);
            close_rules.push(CloseRule {
                id,
                name,
                conn,
                codes: rule.codes.clone(),
                then: then(rule.then.as_deref(), &format!("{field}.then"), false, problems),
            });
        }
        close_rules
    }

    /// `on_error`: the kinds and steps each rule covers and what it does then.
    fn error_rules(&self, raw: &PartView<'_>, step_names: &[String], problems: &mut Problems<'_>) -> Vec<ErrorRule> {
        let mut error_rules = Vec::new();
        for (index, rule) in raw.on_error.iter().enumerate() {
            let field = format!("on_error[{index}]");
            check_error_kinds(rule.kinds.as_deref(), &field, problems);
            let steps = rule.steps.as_ref().map(|names| {
                names
                    .iter()
                    .enumerate()
                    .filter_map(|(at, wanted)| {
                        let full = format!("{}{wanted}", self.name_prefix);
                        let found = step_names.iter().position(|name| *name == full);
                        if found.is_none() {
                            problems.add(
                                &format!("{field}.steps[{at}]"),
                                format!("no step is named `{wanted}`"),
                                closest(
                                    wanted,
                                    step_names
                                        .iter()
                                        .filter_map(|name| name.strip_prefix(self.name_prefix.as_str())),
                                )
                                .map(|close| format!("did you mean `{close}`?")),
                            );
                        }
                        found.map(|index| index as StepId)
                    })
                    .collect()
            });
            error_rules.push(ErrorRule {
                kinds: rule.kinds.clone(),
                steps,
                then: then(Some(&rule.then), &format!("{field}.then"), true, problems),
            });
        }
        error_rules
    }
}

/// An `on_error` rule names catalog error kinds, `receive_timeout` or `http_NNN`.
fn check_error_kinds(kinds: Option<&[String]>, field: &str, problems: &mut Problems<'_>) {
    if let Some(kinds) = kinds {
        for (at, kind) in kinds.iter().enumerate() {
            let is_http = kind
                .strip_prefix("http_")
                .is_some_and(|status| status.parse::<u16>().is_ok());
            if !is_http && !ERROR_KINDS.contains(&kind.as_str()) {
                problems.add(
                    &format!("{field}.kinds[{at}]"),
                    format!("unknown error kind `{kind}`"),
                    closest(kind, ERROR_KINDS.iter().copied())
                        .map(|close| format!("did you mean `{close}`?"))
                        .or_else(|| Some(format!("kinds: {}, http_NNN", ERROR_KINDS.join(", ")))),
                );
            }
        }
    }
}
