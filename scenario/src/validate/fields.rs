//! Field-level validation shared by every part of a scenario: durations, templates, regular
//! expressions, JSON pointers and the policy words (`on_fail`, `then`).

use std::time::Duration;

use regex::Regex;

use crate::error::{closest, Problems};
use crate::steps::{Flush, OnFail, Then};
use crate::template::Template;

/// A duration field, or `default` when absent; a bad one is a problem and reads as `default`.
pub(super) fn duration_field(
    text: Option<&str>,
    field: &str,
    default: Duration,
    problems: &mut Problems<'_>,
) -> Duration {
    match text.map(crate::duration::parse_duration) {
        None => default,
        Some(Ok(duration)) => duration,
        Some(Err(message)) => {
            problems.add(field, message, None);
            default
        }
    }
}

/// A template that may read only the `known` variables (and the built-in ones); an unknown one
/// is a problem with the closest known name.
pub(super) fn compile_template(
    text: &str,
    field: &str,
    known: &[String],
    problems: &mut Problems<'_>,
) -> Option<Template> {
    use crate::template::BUILTIN_VARIABLES;
    match Template::compile_with_scripts(text, known) {
        Ok(template) => Some(template),
        Err(error) => {
            let candidates = || {
                known
                    .iter()
                    .map(String::as_str)
                    .chain(BUILTIN_VARIABLES.iter().copied())
            };
            let hint = match &error {
                crate::template::TemplateError::Unknown(name) => {
                    closest(name, candidates()).map(|close| format!("did you mean `${{{close}}}`?"))
                }
                _ => None,
            };
            let hint = hint.or_else(|| Some(format!("known here: {}", candidates().collect::<Vec<_>>().join(", "))));
            problems.add(field, error.to_string(), hint);
            None
        }
    }
}

/// A regular expression; a bad one is a problem.
pub(super) fn compile_regex(text: &str, field: &str, problems: &mut Problems<'_>) -> Option<Regex> {
    match Regex::new(text) {
        Ok(regex) => Some(regex),
        Err(error) => {
            problems.add(field, format!("not a valid regular expression: {error}"), None);
            None
        }
    }
}

/// A JSON pointer (`/a/0/b`, or empty for the whole value).
pub(super) fn json_pointer(text: &str, field: &str, problems: &mut Problems<'_>) -> String {
    if !(text.is_empty() || text.starts_with('/')) {
        problems.add(
            field,
            format!("`{text}` is not a JSON pointer"),
            Some(format!("pointers start with `/`, e.g. `/{text}`")),
        );
    }
    text.to_owned()
}

/// What a failed check or a receive timeout does: `fail` (the default), `skip` or `continue`.
pub(super) fn on_fail(text: Option<&str>, field: &str, problems: &mut Problems<'_>) -> OnFail {
    match text {
        None | Some("fail") => OnFail::Fail,
        Some("skip") => OnFail::Skip,
        Some("continue") => OnFail::Continue,
        Some(other) => {
            problems.add(
                field,
                format!("unknown choice `{other}`"),
                Some("use `fail`, `skip` (the rest of the iteration) or `continue`".into()),
            );
            OnFail::Fail
        }
    }
}

/// When sends go to the socket: `batch` or `each`; `default` when not given.
pub(super) fn flush(text: Option<&str>, field: &str, default: Flush, problems: &mut Problems<'_>) -> Flush {
    match text {
        None => default,
        Some("batch") => Flush::Batch,
        Some("each") => Flush::Each,
        Some(other) => {
            problems.add(
                field,
                format!("unknown choice `{other}`"),
                Some(
                    "use `batch` (sends leave together when the VU next waits) or `each` (every message \
                     written on its own)"
                        .into(),
                ),
            );
            default
        }
    }
}

/// What an `on_close` or `on_error` rule does after it matched; `stop_vu` only where allowed.
pub(super) fn then(text: Option<&str>, field: &str, allow_stop: bool, problems: &mut Problems<'_>) -> Then {
    match text {
        None | Some("fail") => Then::Fail,
        Some("end_iteration") => Then::EndIteration,
        Some("continue") => Then::Continue,
        Some("stop_vu") if allow_stop => Then::StopVu,
        Some(other) => {
            let choices = if allow_stop {
                "fail, end_iteration, continue, stop_vu"
            } else {
                "fail, end_iteration, continue"
            };
            problems.add(
                field,
                format!("unknown choice `{other}`"),
                Some(format!("use one of: {choices}")),
            );
            Then::Fail
        }
    }
}
