//! Conditions and extractions: the `match`, `when` and `check` conditions, the values steps
//! and handlers extract, and the `extract` and `check` steps.

use std::collections::BTreeMap;

use crate::error::Problems;
use crate::matcher::{Extraction, Matcher, Source};
use crate::raw::{RawCheck, RawExtract, RawExtractStep, RawMatch};
use crate::steps::{parse_binary, Action, Check, ExtractFrom, ExtractStep, FrameKind, Step};
use crate::template::Template;

use super::builder::{At, StepBuilder};
use super::fields::{compile_regex, compile_template, json_pointer, on_fail};

impl StepBuilder<'_> {
    /// A `match`/`when`/`check` condition.
    pub(super) fn matcher(&self, raw: &RawMatch, field: &str, problems: &mut Problems<'_>) -> Matcher {
        let template = |text: &Option<String>, sub: &str, problems: &mut Problems<'_>| {
            text.as_deref()
                .and_then(|text| compile_template(text, &format!("{field}.{sub}"), &self.known, problems))
        };
        let kind = match raw.kind.as_deref() {
            None => None,
            Some("text") => Some(FrameKind::Text),
            Some("binary") => Some(FrameKind::Binary),
            Some(other) => {
                problems.add(
                    &format!("{field}.type"),
                    format!("unknown frame type `{other}`"),
                    Some("use `text` or `binary`".into()),
                );
                None
            }
        };
        let prefix = raw.prefix.as_deref().and_then(|text| match parse_binary(text) {
            Ok(bytes) => Some(bytes),
            Err(message) => {
                problems.add(&format!("{field}.prefix"), message, None);
                None
            }
        });
        if raw.json.is_none()
            && raw.equals.is_none()
            && raw.contains.is_none()
            && raw.regex.is_none()
            && raw.prefix.is_none()
            && raw.kind.is_none()
            && raw.event.is_none()
            && raw.namespace.is_none()
            && raw.headers.is_empty()
        {
            problems.add(
                field,
                "a match needs at least one of `equals`, `contains`, `regex`, `json`, `prefix`, `type`, `event` (`destination`), `namespace` or `headers`",
                None,
            );
        }
        Matcher {
            json: raw
                .json
                .as_deref()
                .map(|pointer| json_pointer(pointer, &format!("{field}.json"), problems)),
            equals: template(&raw.equals, "equals", problems),
            contains: template(&raw.contains, "contains", problems),
            regex: raw
                .regex
                .as_deref()
                .and_then(|text| compile_regex(text, &format!("{field}.regex"), problems)),
            prefix,
            kind,
            event: raw.event.clone(),
            event_template: raw
                .event
                .as_deref()
                .filter(|event| event.contains("${"))
                .and_then(|event| compile_template(event, &format!("{field}.event"), &self.known, problems)),
            namespace: raw.namespace.clone(),
            headers: raw
                .headers
                .iter()
                .filter_map(|(name, value)| {
                    compile_template(value, &format!("{field}.headers.{name}"), &self.known, problems)
                        .map(|template| (name.clone(), template))
                })
                .collect(),
        }
    }

    /// Extractions of a step; `allowed` lists the sources this place offers.
    pub(super) fn extractions(
        &self,
        raw: &BTreeMap<String, RawExtract>,
        field: &str,
        allowed: &[&str],
        problems: &mut Problems<'_>,
    ) -> Vec<Extraction> {
        raw.iter()
            .filter_map(|(var, spec)| {
                let field = format!("{field}.{var}");
                if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
                    problems.add(
                        &field,
                        format!("`{var}` cannot be a variable name"),
                        Some("use letters, digits, `_`, `-` and `.`".into()),
                    );
                }
                let mut sources: Vec<(&str, Source)> = Vec::new();
                if let Some(pointer) = &spec.json {
                    sources.push((
                        "json",
                        Source::Json(json_pointer(pointer, &format!("{field}.json"), problems)),
                    ));
                }
                if let Some(header) = &spec.header {
                    sources.push(("header", Source::Header(header.clone())));
                }
                if let Some(cookie) = &spec.cookie {
                    sources.push(("cookie", Source::Cookie(cookie.clone())));
                }
                if spec.body {
                    sources.push(("body", Source::Body));
                }
                match spec.close.as_deref() {
                    None => {}
                    Some("code") => sources.push(("close", Source::CloseCode)),
                    Some("reason") => sources.push(("close", Source::CloseReason)),
                    Some(other) => problems.add(
                        &format!("{field}.close"),
                        format!("unknown close field `{other}`"),
                        Some("use `code` or `reason`".into()),
                    ),
                }
                if sources.is_empty() && spec.regex.is_some() {
                    sources.push(("regex", Source::Regex));
                }
                let source = match sources.len() {
                    1 => sources.pop()?,
                    0 => {
                        problems.add(
                            &field,
                            "say where the value comes from",
                            Some(format!("give one of: {}", allowed.join(", "))),
                        );
                        return None;
                    }
                    _ => {
                        problems.add(&field, "give only one source for a value", None);
                        return None;
                    }
                };
                if !allowed.contains(&source.0) {
                    problems.add(
                        &format!("{field}.{}", source.0),
                        format!("`{}` cannot be extracted here", source.0),
                        Some(format!("here: {}", allowed.join(", "))),
                    );
                    return None;
                }
                let regex = spec
                    .regex
                    .as_deref()
                    .and_then(|text| compile_regex(text, &format!("{field}.regex"), problems));
                Some(Extraction {
                    var: var.clone(),
                    source: source.1,
                    regex,
                    default: spec.default.clone(),
                })
            })
            .collect()
    }

    /// An `extract` step: values from the last message taken, or the handshake response.
    pub(super) fn extract_step(&mut self, extract: &RawExtractStep, at: At<'_>, problems: &mut Problems<'_>) -> Step {
        let field = at.field;
        let (id, name) = self.name(extract.name.as_ref(), at.kind, field, problems);
        let conn = self.connection(extract.connection.as_ref(), field, problems);
        let (from, allowed): (ExtractFrom, &[&str]) = match extract.from.as_deref() {
            None | Some("message") => (ExtractFrom::Message, &["json", "regex", "body"]),
            Some("handshake") => (ExtractFrom::Handshake, &["header"]),
            Some(other) => {
                problems.add(
                    &format!("{field}.from"),
                    format!("unknown source `{other}`"),
                    Some("use `message` (the last one received) or `handshake`".into()),
                );
                (ExtractFrom::Message, &["json", "regex", "body"])
            }
        };
        let values = self.extractions(&extract.values, &format!("{field}.values"), allowed, problems);
        if extract.values.is_empty() {
            problems.add(&format!("{field}.values"), "name at least one value to extract", None);
        }
        Step {
            id,
            name,
            action: Action::Extract(ExtractStep { conn, from, values }),
        }
    }

    /// A `check` step: a condition on a value.
    pub(super) fn check_step(&mut self, check: &RawCheck, at: At<'_>, problems: &mut Problems<'_>) -> Step {
        let field = at.field;
        let (id, name) = self.name(check.name.as_ref(), at.kind, field, problems);
        let value = compile_template(&check.value, &format!("{field}.value"), &self.known, problems)
            .unwrap_or_else(|| Template::literal(""));
        let condition = self.matcher(
            &RawMatch {
                json: check.json.clone(),
                equals: check.equals.clone(),
                contains: check.contains.clone(),
                regex: check.regex.clone(),
                prefix: None,
                kind: None,
                event: None,
                namespace: None,
                headers: Default::default(),
            },
            field,
            problems,
        );
        let on_fail = on_fail(check.on_fail.as_deref(), &format!("{field}.on_fail"), problems);
        Step {
            id,
            name,
            action: Action::Check(Check {
                value,
                condition,
                on_fail,
            }),
        }
    }
}
