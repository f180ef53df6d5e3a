//! Python for the tests: one virtualenv under the target directory with the packages of
//! `tests/data/python-requirements.txt` (third-party servers and validators from PyPI), made once
//! and made again when that file changes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The virtualenv's python, ready to import every package the requirements file names. Made
/// once per test process (tests in one binary run in parallel); a stamp holding the requirements
/// it was made from tells a later process whether it is current.
pub fn python() -> PathBuf {
    static VENV: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut venv = VENV.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(python) = venv.as_ref() {
        return python.clone();
    }
    let requirements = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/python-requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).expect("read tests/data/python-requirements.txt");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-venv");
    let python = dir.join("bin").join("python");
    let stamp = dir.join("wsfleet-requirements.txt");
    let current = python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|made| made == wanted);
    if !current {
        let made = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&dir)
            .output()
            .expect("python3 is needed for the third-party servers of the tests (python3 -m venv)");
        assert!(made.status.success(), "python3 -m venv: {}", super::text(&made.stderr));
        let installed = Command::new(dir.join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements)
            .output()
            .expect("run pip");
        assert!(
            installed.status.success(),
            "pip install -r tests/data/python-requirements.txt: {}",
            super::text(&installed.stderr)
        );
        std::fs::write(&stamp, &wanted).expect("write the virtualenv's stamp");
    }
    *venv = Some(python.clone());
    python
}
