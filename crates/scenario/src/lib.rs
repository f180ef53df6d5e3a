//! The wsfleet scenario language: the file format, parsing with locations, validation into a
//! typed model, templates, and the load plan with its exact split over a fleet.
//!
//! The controller and every agent compile the same source with the same code, so a scenario means
//! the same thing everywhere; agents never read files of their own (a [`Bundle`] carries the
//! source and every file it names).

pub mod duration;
pub mod error;
pub mod model;
pub mod plan;
pub mod positions;
pub mod raw;
pub mod template;
pub mod thresholds;

use std::collections::BTreeMap;
use std::path::Path;

use sha1::{Digest, Sha1};

pub use error::{Problem, ScenarioError};
pub use model::*;
pub use plan::{LoadModel, LoadPlan, RateStage, Stage};
pub use positions::Location;
pub use template::{Scope, Template};

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
    /// Reads a scenario file (and, later, the files it names) from disk.
    pub fn read(path: &Path) -> Result<Bundle, ScenarioError> {
        let source = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Bundle {
            path: path.display().to_string(),
            source,
            files: BTreeMap::new(),
        })
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
        let scenario = model::validate(&self.path, raw, &mut problems);
        match scenario {
            Some(scenario) => problems.into_result(scenario),
            None => Err(ScenarioError::Invalid(problems.found)),
        }
    }
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
