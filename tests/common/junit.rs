//! Validates a JUnit XML file against `tests/data/junit.xsd` with Python's `xmlschema` (from
//! PyPI, installed once into a virtualenv under the target directory).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The virtualenv's python, made once per test process (tests in one binary run in parallel).
fn python() -> PathBuf {
    static VENV: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut venv = VENV.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(python) = venv.as_ref() {
        return python.clone();
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("junit-venv");
    let python = dir.join("bin").join("python");
    let ready = Command::new(&python)
        .args(["-c", "import xmlschema"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !ready {
        let made = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&dir)
            .output()
            .expect("python3 is needed to validate JUnit XML (python3 -m venv)");
        assert!(made.status.success(), "python3 -m venv: {}", super::text(&made.stderr));
        let installed = Command::new(dir.join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "xmlschema>=3,<5"])
            .output()
            .expect("run pip");
        assert!(
            installed.status.success(),
            "pip install xmlschema: {}",
            super::text(&installed.stderr)
        );
    }
    *venv = Some(python.clone());
    python
}

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
