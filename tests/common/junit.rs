//! Validates a JUnit XML file against `tests/data/junit.xsd` with Python's `xmlschema` (from
//! PyPI, in the tests' virtualenv: `python.rs`).

use std::path::Path;
use std::process::Command;

use super::python::python;

/// Whether `xml` is valid JUnit XML: `Err` with the validator's words when it is not.
pub fn validate(xml: &Path) -> Result<(), String> {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/junit.xsd");
    let output = Command::new(python())
        .args([
            "-c",
            "import sys, xmlschema; xmlschema.XMLSchema(sys.argv[1]).validate(sys.argv[2])",
        ])
        .arg(&schema)
        .arg(xml)
        .output()
        .expect("run the venv's python");
    if output.status.success() {
        Ok(())
    } else {
        Err(super::text(&output.stderr))
    }
}
