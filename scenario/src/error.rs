//! Scenario errors that name the file, line, column and field, and say what to do.

use std::fmt;

use crate::positions::Location;

/// One problem found in a scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The scenario file (as given by the user).
    pub file: String,
    pub location: Option<Location>,
    /// Dotted path of the field, e.g. `steps[2].receive.timeout`; empty for the whole file.
    pub field: String,
    pub message: String,
    /// A suggestion, e.g. the close spelling of an unknown name.
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(location) = self.location {
            write!(f, ":{}:{}", location.line, location.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": field `{}`", self.field)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// Why a scenario cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_problems(.0))]
    Invalid(Vec<Problem>),
}

impl ScenarioError {
    /// The problems found, empty for a read error.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ScenarioError::Invalid(problems) => problems,
            ScenarioError::Read { .. } => &[],
        }
    }
}

fn render_problems(problems: &[Problem]) -> String {
    let mut text = String::new();
    for (index, problem) in problems.iter().enumerate() {
        if index > 0 {
            text.push('\n');
        }
        text.push_str(&problem.to_string());
    }
    text
}

/// The candidate closest to `word`, when it is close enough to be a likely misspelling.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // Edit distance (with transpositions) catches typos in short names, Jaro-Winkler catches
    // longer names that share a prefix.
    let allowed_edits = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter_map(|candidate| {
            let edits = strsim::osa_distance(word, candidate);
            let similarity = strsim::jaro_winkler(word, candidate);
            (edits <= allowed_edits || similarity >= 0.85).then_some((edits, candidate))
        })
        .min_by_key(|(edits, _)| *edits)
        .map(|(_, candidate)| candidate)
}

/// Collects problems while a scenario is validated, locating each by its path.
pub(crate) struct Problems<'a> {
    pub file: &'a str,
    pub positions: &'a crate::positions::Positions,
    pub found: Vec<Problem>,
    /// Put before every field added (e.g. `scenarios[1].` while one part is validated).
    pub prefix: String,
}

impl<'a> Problems<'a> {
    pub fn new(file: &'a str, positions: &'a crate::positions::Positions) -> Self {
        Problems {
            file,
            positions,
            found: Vec::new(),
            prefix: String::new(),
        }
    }

    pub fn add(&mut self, field: &str, message: impl Into<String>, hint: Option<String>) {
        let prefixed;
        let field = if self.prefix.is_empty() {
            field
        } else {
            prefixed = format!("{}{field}", self.prefix);
            prefixed.trim_end_matches('.')
        };
        self.found.push(Problem {
            file: self.file.to_owned(),
            location: self.positions.locate(field),
            field: field.to_owned(),
            message: message.into(),
            hint,
        });
    }

    /// Like `add`, located at line `line`, column `column` (1-based) inside the field's string
    /// value when that can be placed in the source (a script's error), else at the field.
    pub fn add_inside(
        &mut self,
        field: &str,
        inside: Option<(usize, usize)>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.add(field, message, hint);
        let Some(added) = self.found.last_mut() else { return };
        if let Some(location) =
            inside.and_then(|(line, column)| self.positions.locate_inside(&added.field, line, column))
        {
            added.location = Some(location);
        }
    }

    /// Like `add`, located at the key that names the field (for mistakes in the key itself).
    pub fn add_at_key(&mut self, field: &str, message: impl Into<String>, hint: Option<String>) {
        let prefixed = format!("{}{field}", self.prefix);
        let field = prefixed.as_str();
        self.found.push(Problem {
            file: self.file.to_owned(),
            location: self.positions.locate_key(field),
            field: field.to_owned(),
            message: message.into(),
            hint,
        });
    }

    pub fn into_result<T>(self, value: T) -> Result<T, ScenarioError> {
        if self.found.is_empty() {
            Ok(value)
        } else {
            Err(ScenarioError::Invalid(self.found))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_spellings_only() {
        assert_eq!(closest("urll", ["url", "headers", "timeout"]), Some("url"));
        assert_eq!(closest("recieve", ["receive", "send"]), Some("receive"));
        assert_eq!(closest("zzz", ["url", "headers"]), None);
    }
}
