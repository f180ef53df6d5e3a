//! `wsfleet import`: a browser's HAR recording becomes a scenario that validates and runs.
//!
//! `har` reads the file leniently (Chrome's, Edge's and Playwright's `_webSocketMessages`),
//! `convert` picks the entries and orders what happened, `write` writes the YAML with think
//! times, proposed matchers and comments on values to parameterize (found by `hints`), and the
//! result goes through the scenario crate's validation before it is written.

mod convert;
mod correlate;
mod emit;
mod har;
mod hints;
mod write;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use convert::Think;

use crate::exit::{self, Failure, OrExit as _};

/// What `wsfleet import` was asked.
pub struct Request<'a> {
    pub har: &'a Path,
    pub filter: Option<String>,
    pub think: Think,
    pub http_steps: bool,
    pub output: Option<&'a Path>,
}

/// An imported scenario: its text, what to tell the user, and what it holds.
pub struct Imported {
    pub yaml: String,
    pub warnings: Vec<String>,
    pub counts: write::Counts,
}

/// Imports the HAR file at `path` (named `shown` in messages) into a scenario named `name`.
pub fn import(bytes: &[u8], shown: &str, name: &str, options: &convert::Options) -> Result<Imported, String> {
    let har = har::parse(bytes, shown)?;
    let creator = har
        .log
        .creator
        .as_ref()
        .map(|creator| {
            format!(
                "{} {}",
                creator.name.as_deref().unwrap_or("an unnamed tool"),
                creator.version.as_deref().unwrap_or("")
            )
            .trim()
            .to_owned()
        })
        .unwrap_or_else(|| "an unnamed tool".to_owned());
    let timeline = convert::timeline(&har, shown, options)?;
    let (yaml, counts) = write::scenario(&timeline, options, name, shown, &creator);
    Ok(Imported {
        yaml,
        warnings: timeline.warnings,
        counts,
    })
}

/// The scenario's problems when it does not validate (none when it does).
pub fn problems(yaml: &str, shown: &str) -> Vec<String> {
    let bundle = wsfleet_scenario::Bundle {
        path: shown.to_owned(),
        source: yaml.to_owned(),
        files: Default::default(),
    };
    match bundle.compile() {
        Ok(_) => Vec::new(),
        Err(error) if error.problems().is_empty() => vec![error.to_string()],
        Err(error) => error.problems().iter().map(ToString::to_string).collect(),
    }
}

/// `wsfleet import`: reads, converts, validates, writes; says what it wrote on stderr.
pub fn run(request: Request<'_>) -> Result<u8, Failure> {
    let shown = request.har.display().to_string();
    let metadata = std::fs::metadata(request.har)
        .map_err(|error| format!("cannot read `{shown}`: {error}"))
        .or_exit(exit::INVALID_INPUT)?;
    if metadata.len() > har::MAX_HAR_BYTES {
        return Err(Failure::new(
            exit::INVALID_INPUT,
            har::too_large(&shown, metadata.len()),
        ));
    }
    let bytes = std::fs::read(request.har)
        .map_err(|error| format!("cannot read `{shown}`: {error}"))
        .or_exit(exit::INVALID_INPUT)?;
    let name = scenario_name(request.output.unwrap_or(request.har));
    let options = convert::Options {
        filter: request.filter,
        think: request.think,
        http_steps: request.http_steps,
    };
    let imported = import(&bytes, &shown, &name, &options).or_exit(exit::INVALID_INPUT)?;
    for warning in &imported.warnings {
        tell!("warning: {warning}");
    }
    let written_as = request
        .output
        .map_or_else(|| "<stdout>".to_owned(), |path| path.display().to_string());
    let problems = problems(&imported.yaml, &written_as);
    if !problems.is_empty() {
        for problem in &problems {
            tell!("error: {problem}");
        }
        return Err(Failure::new(
            exit::INTERNAL,
            "the imported scenario does not validate, so it was not written; this is a defect of `wsfleet import`: \
             please report it with the HAR file (its cookies and tokens removed)",
        ));
    }
    match request.output {
        Some(path) => std::fs::write(path, &imported.yaml)
            .map_err(|error| format!("cannot write `{}`: {error}", path.display()))
            .or_exit(exit::INVALID_INPUT)?,
        None => say!("{}", imported.yaml.trim_end()),
    }
    let counts = &imported.counts;
    tell!(
        "{written_as}: {} connection(s), {} send(s), {} receive(s), {} http step(s), {} think step(s), {} value(s) to parameterize; validated",
        counts.connections,
        counts.sends,
        counts.receives,
        counts.http,
        counts.thinks,
        counts.hints
    );
    Ok(exit::OK)
}

/// The scenario's name: the output's (or the HAR file's) name without extension.
fn scenario_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() {
        "imported".to_owned()
    } else {
        name
    }
}
