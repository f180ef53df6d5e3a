//! The wsfleet scenario language: the file format, parsing with locations, validation into a
//! typed model, templates, and the load plan with its exact split over a fleet.
//!
//! The controller and every agent compile the same source with the same code, so a scenario means
//! the same thing everywhere; agents never read files of their own (a [`Bundle`] carries the
//! source and every file it names).

pub mod compression;
pub mod duration;
pub mod error;
pub mod feeds;
pub mod matcher;
pub mod model;
pub mod plan;
pub mod positions;
pub mod protocol;
pub mod raw;
pub mod script;
pub mod steps;
pub mod template;
pub mod thresholds;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;

use sha1::{Digest, Sha1};

pub use compression::{Agreed, Compression, Deflate};
pub use error::{Problem, ScenarioError};
pub use model::*;
pub use plan::{LoadModel, LoadPlan, RateStage, Stage};
pub use positions::Location;
pub use steps::*;
pub use template::{Scope, Template, Values};

/// A scenario as it travels: its source text and the files it names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bundle {
    /// The scenario file as the user named it (used in error messages).
    pub path: String,
    pub source: String,
    /// Files the scenario names, keyed by the name written in the scenario.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Bundle {
    /// Reads a scenario file and every file it names (send files, CA certificates, data
    /// feeds), relative to the scenario's folder. A file that cannot be read, or is too large,
    /// is a problem located at the field that names it.
    pub fn read(path: &Path) -> Result<Bundle, ScenarioError> {
        let source = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut bundle = Bundle {
            path: path.display().to_string(),
            source,
            files: BTreeMap::new(),
        };
        // A file that does not parse is reported by `compile`, with its location.
        let Ok(raw) = serde_norway::from_str::<raw::RawScenario>(&bundle.source) else {
            return Ok(bundle);
        };
        let folder = path.parent().unwrap_or_else(|| Path::new("."));
        let positions = positions::Positions::index(&bundle.source);
        let display_path = bundle.path.clone();
        let mut problems = error::Problems::new(&display_path, &positions);
        let mut total = 0usize;
        for (field, name) in named_files(&raw) {
            if bundle.files.contains_key(&name) {
                continue;
            }
            let full = folder.join(&name);
            match std::fs::metadata(&full) {
                Ok(metadata) if metadata.len() > model::MAX_FILE_BYTES as u64 => {
                    problems.add(
                        &field,
                        format!(
                            "`{}` is {} bytes; a file named by a scenario may hold at most {} MiB",
                            full.display(),
                            metadata.len(),
                            model::MAX_FILE_BYTES >> 20
                        ),
                        Some("files travel to every agent inside the run's assignment".into()),
                    );
                    continue;
                }
                _ => {}
            }
            match std::fs::read(&full) {
                Ok(contents) => {
                    total += contents.len();
                    bundle.files.insert(name, contents);
                }
                Err(error) => problems.add(
                    &field,
                    format!("cannot read `{}`: {error}", full.display()),
                    Some("paths are relative to the scenario file's folder".into()),
                ),
            }
        }
        if total > model::MAX_BUNDLE_BYTES {
            problems.add(
                "",
                format!(
                    "the files this scenario names hold {total} bytes together; at most {} MiB travel with a run",
                    model::MAX_BUNDLE_BYTES >> 20
                ),
                None,
            );
        }
        problems.into_result(bundle)
    }

    /// A hex SHA-1 over the source and every file, so agents can check what they received.
    pub fn hash(&self) -> String {
        let mut hasher = Sha1::new();
        hasher.update((self.source.len() as u64).to_le_bytes());
        hasher.update(self.source.as_bytes());
        for (name, contents) in &self.files {
            hasher.update((name.len() as u64).to_le_bytes());
            hasher.update(name.as_bytes());
            hasher.update((contents.len() as u64).to_le_bytes());
            hasher.update(contents);
        }
        hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// Parses and validates the scenario; every problem is reported at once.
    pub fn compile(&self) -> Result<Scenario, ScenarioError> {
        let positions = positions::Positions::index(&self.source);
        let raw: raw::RawScenario = match serde_norway::from_str(&self.source) {
            Ok(raw) => raw,
            Err(error) => {
                return Err(ScenarioError::Invalid(vec![deserialize_problem(
                    &self.path, &error, &positions,
                )]))
            }
        };
        let mut problems = error::Problems::new(&self.path, &positions);
        let scenario = validate::scenario(&self.path, raw, &self.files, &mut problems);
        match scenario {
            Some(scenario) => problems.into_result(scenario),
            None => Err(ScenarioError::Invalid(problems.found)),
        }
    }
}

/// Every file a scenario names, with the field that names it.
fn named_files(raw: &raw::RawScenario) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (name, feed) in &raw.data {
        found.push((format!("data.{name}.csv"), feed.csv.clone()));
    }
    fn walk(steps: &[raw::RawStep], path: &str, found: &mut Vec<(String, String)>) {
        for (index, step) in steps.iter().enumerate() {
            let field = format!("{path}[{index}].{}", step.kind());
            match step {
                raw::RawStep::Send(send) => {
                    if let Some(file) = &send.file {
                        found.push((format!("{field}.file"), file.clone()));
                    }
                }
                raw::RawStep::StompSend(send) => {
                    if let Some(file) = &send.file {
                        found.push((format!("{field}.file"), file.clone()));
                    }
                }
                raw::RawStep::Connect(connect) => {
                    if let Some(ca) = connect.tls.as_ref().and_then(|tls| tls.ca.as_ref()) {
                        found.push((format!("{field}.tls.ca"), ca.clone()));
                    }
                    let will = connect.mqtt.as_ref().and_then(|mqtt| mqtt.will.as_ref());
                    if let Some(file) = will.and_then(|will| protocol::mqtt::payload_file(will.payload.as_ref())) {
                        found.push((format!("{field}.mqtt.will.payload.file"), file.to_owned()));
                    }
                }
                raw::RawStep::MqttPublish(publish) => {
                    if let Some(file) = protocol::mqtt::payload_file(publish.payload.as_ref()) {
                        found.push((format!("{field}.payload.file"), file.to_owned()));
                    }
                }
                raw::RawStep::GraphqlSubscribe(operation)
                | raw::RawStep::GraphqlQuery(operation)
                | raw::RawStep::GraphqlMutation(operation) => {
                    if let Some(file) = &operation.query_file {
                        found.push((format!("{field}.query_file"), file.clone()));
                    }
                }
                raw::RawStep::Http(http) => {
                    if let Some(file) = http.body.as_ref().and_then(|body| body.file.as_ref()) {
                        found.push((format!("{field}.body.file"), file.clone()));
                    }
                    if let Some(ca) = http.tls.as_ref().and_then(|tls| tls.ca.as_ref()) {
                        found.push((format!("{field}.tls.ca"), ca.clone()));
                    }
                }
                _ => {}
            }
            for (key, inner) in step.inner_steps() {
                walk(inner, &format!("{field}.{key}"), found);
            }
        }
    }
    for part in raw.part_views() {
        walk(part.steps, &format!("{}steps", part.path), &mut found);
        for (index, rule) in part.on_message.iter().enumerate() {
            if let Some(file) = rule.send.as_ref().and_then(|send| send.file.as_ref()) {
                found.push((format!("{}on_message[{index}].send.file", part.path), file.clone()));
            }
        }
    }
    found
}

/// Turns a deserializer error into a located problem with the field's path and a suggestion.
fn deserialize_problem(file: &str, error: &serde_norway::Error, positions: &positions::Positions) -> Problem {
    let text = error.to_string();
    // The message reads "path: message at line L column C"; keep the parts apart.
    let without_mark = match text.rfind(" at line ") {
        Some(cut) => &text[..cut],
        None => text.as_str(),
    };
    let (field, message) = match without_mark.split_once(": ") {
        Some((path, message)) if !path.contains(' ') => (path.to_owned(), message.to_owned()),
        _ => (String::new(), without_mark.to_owned()),
    };
    let location = error
        .location()
        .map(|mark| Location {
            line: mark.line(),
            column: mark.column(),
        })
        .or_else(|| positions.locate(&field));
    let hint = suggestion(&message);
    let field = match unknown_name(&message, "unknown field `") {
        Some(unknown) if field.is_empty() => unknown.to_owned(),
        Some(unknown) => format!("{field}.{unknown}"),
        None => field,
    };
    Problem {
        file: file.to_owned(),
        location,
        field,
        message,
        hint,
    }
}

fn unknown_name<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next()
}

/// "did you mean" for serde's unknown field / unknown variant messages, which list the
/// expected names.
fn suggestion(message: &str) -> Option<String> {
    let unknown = unknown_name(message, "unknown field `").or_else(|| unknown_name(message, "unknown variant `"))?;
    let expected_part = message.split_once("expected ")?.1;
    let expected: Vec<&str> = expected_part.split('`').skip(1).step_by(2).collect();
    error::closest(unknown, expected.iter().copied())
        .map(|close| format!("did you mean `{close}`?"))
        .or_else(|| (!expected.is_empty()).then(|| format!("expected one of: {}", expected.join(", "))))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod hostile;

#[cfg(test)]
mod protocol_tests;

#[cfg(test)]
#[path = "protocol/graphql_tests.rs"]
mod graphql_tests;

#[cfg(test)]
mod stomp_tests;
