//! Where each value of a YAML document stands, by path (`steps[2].receive.timeout`), so that
//! errors found after deserialization (unknown variables, bad durations, unreachable names) can
//! name the line and column like the parser's own errors do.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column in the scenario source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Path to location of every value (and of every mapping key, under `path#key`).
#[derive(Debug, Default)]
pub struct Positions {
    values: HashMap<String, Location>,
    /// The source's lines, to place a position inside a scalar (a script's error).
    lines: Vec<String>,
}

impl Positions {
    /// Indexes `source`; a document the YAML scanner rejects yields an empty index (the
    /// deserializer reports that error with its own location).
    pub fn index(source: &str) -> Positions {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(source);
        if parser.load(&mut builder, false).is_err() {
            return Positions::default();
        }
        Positions {
            values: builder.values,
            lines: source.lines().map(str::to_owned).collect(),
        }
    }

    /// Where line `line`, column `column` (1-based) of the string value at `path` stands in
    /// the source: exact in a block scalar (`|`), and on the first line of a plain or quoted
    /// scalar without escapes before it; otherwise the value's start.
    pub fn locate_inside(&self, path: &str, line: usize, column: usize) -> Option<Location> {
        let start = self.locate(path)?;
        let text = self.lines.get(start.line.checked_sub(1)?)?;
        let before: String = text.chars().take(start.column.checked_sub(1)?).collect();
        let first = text.chars().nth(start.column - 1);
        let shifted = |line_offset: usize, column_offset: usize| Location {
            line: start.line + line_offset,
            column: start.column + column_offset,
        };
        match first {
            Some('"') | Some('\'') if line == 1 => Some(shifted(0, column)),
            // A block scalar (`|`, `>`) is marked where its text starts, on a line of its own:
            // its lines are the script's, indented by the marker's column.
            Some(_) if before.trim().is_empty() => Some(shifted(line.saturating_sub(1), column.saturating_sub(1))),
            Some(_) if line == 1 => Some(shifted(0, column.saturating_sub(1))),
            _ => Some(start),
        }
    }

    /// The location of the value at `path`, or of its closest ancestor that has one.
    pub fn locate(&self, path: &str) -> Option<Location> {
        let mut candidate = path;
        loop {
            if let Some(location) = self.values.get(candidate) {
                return Some(*location);
            }
            let cut = candidate.rfind(['.', '['])?;
            candidate = &candidate[..cut];
        }
    }

    /// The location of the key that names the value at `path` (better for "unknown field").
    pub fn locate_key(&self, path: &str) -> Option<Location> {
        self.values
            .get(&format!("{path}#key"))
            .copied()
            .or_else(|| self.locate(path))
    }
}

enum Frame {
    Mapping { path: String, pending_key: Option<String> },
    Sequence { path: String, next_index: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    values: HashMap<String, Location>,
}

impl Builder {
    /// The path of the value that starts now, advancing the parent's position.
    fn next_value_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Mapping { path, pending_key }) => pending_key.take().map(|key| join(path, &key)),
            Some(Frame::Sequence { path, next_index }) => {
                let child = format!("{path}[{next_index}]");
                *next_index += 1;
                Some(child)
            }
        }
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn location(mark: Marker) -> Location {
    Location {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(value, ..) => {
                // A scalar inside a mapping with no pending key is a key.
                if let Some(Frame::Mapping { path, pending_key }) = self.stack.last_mut() {
                    if pending_key.is_none() {
                        let key_path = join(path, &value);
                        self.values.insert(format!("{key_path}#key"), location(mark));
                        *pending_key = Some(value);
                        return;
                    }
                }
                if let Some(path) = self.next_value_path() {
                    self.values.insert(path, location(mark));
                }
            }
            Event::Alias(_) => {
                if let Some(path) = self.next_value_path() {
                    self.values.insert(path, location(mark));
                }
            }
            Event::MappingStart(..) => {
                let path = self.next_value_path().unwrap_or_default();
                self.values.insert(path.clone(), location(mark));
                self.stack.push(Frame::Mapping {
                    path,
                    pending_key: None,
                });
            }
            Event::SequenceStart(..) => {
                let path = self.next_value_path().unwrap_or_default();
                self.values.insert(path.clone(), location(mark));
                self.stack.push(Frame::Sequence { path, next_index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_nested_values_and_keys() {
        let source = "name: x\nsteps:\n  - connect:\n      url: ws://a\n  - send: { text: hi }\n";
        let positions = Positions::index(source);
        assert_eq!(positions.locate("name"), Some(Location { line: 1, column: 7 }));
        assert_eq!(
            positions.locate("steps[0].connect.url"),
            Some(Location { line: 4, column: 12 })
        );
        assert_eq!(
            positions.locate_key("steps[0].connect.url"),
            Some(Location { line: 4, column: 7 })
        );
        assert_eq!(
            positions.locate("steps[1].send.text"),
            Some(Location { line: 5, column: 19 })
        );
        // Positions inside scalars: plain, quoted, block.
        let source = "a: x + y\nb: 'x + y'\nc: |\n    let a = 1;\n    let b = c;\n";
        let positions = Positions::index(source);
        assert_eq!(
            positions.locate_inside("a", 1, 5),
            Some(Location { line: 1, column: 8 })
        );
        assert_eq!(
            positions.locate_inside("b", 1, 5),
            Some(Location { line: 2, column: 9 })
        );
        assert_eq!(
            positions.locate_inside("c", 2, 9),
            Some(Location { line: 5, column: 13 })
        );
        let positions = Positions::index("name: x\nsteps:\n  - connect:\n      url: ws://a\n  - send: { text: hi }\n");
        // Unknown paths fall back to the closest ancestor.
        assert_eq!(
            positions.locate("steps[1].send.missing"),
            positions.locate("steps[1].send")
        );
    }
}
