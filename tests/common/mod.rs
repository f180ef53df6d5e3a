//! Helpers for end-to-end tests of the real `wsfleet` binary: every process and socket is real,
//! on 127.0.0.1 with ports picked by the kernel, and every wait is bounded.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The `wsfleet` binary under test.
pub fn wsfleet() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wsfleet"));
    command.stdin(Stdio::null());
    command
}

/// Runs `command` to completion within `limit`, killing it past that.
pub fn run_bounded(mut command: Command, limit: Duration) -> Output {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn wsfleet");
    let deadline = std::time::Instant::now() + limit;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "wsfleet did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes `contents` to `name` in `dir`.
pub fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write file");
    path
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A port nothing listens on (bound then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Reads the summary JSON a run wrote.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    serde_json::from_str(&text).expect("summary is JSON")
}

pub fn counter(summary: &serde_json::Value, name: &str) -> u64 {
    summary["totals"]["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("counter {name} missing"))
}
