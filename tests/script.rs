//! Scripts end to end: the script examples in `scenarios/` run as they are on two local agents
//! against the test server they start, with exact counts per step, and `wsfleet validate`
//! names the file, line and column of a script's error inside the YAML.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name)
}

/// Runs a scenario file on two local agents; the run must pass.
fn run_ok(path: &Path) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("summary.json");
    let mut command = wsfleet();
    command
        .arg("run")
        .arg(path)
        .args(["--agents", "2", "--quiet", "--out"])
        .arg(format!("json={}", out.display()));
    let output = run_bounded(command, Duration::from_secs(60));
    assert!(
        out.exists(),
        "no summary (exit {:?})\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    );
    let summary = read_json(&out);
    assert_eq!(output.status.code(), Some(0), "{summary:#}");
    summary
}

fn no_errors(summary: &Value) {
    let errors = &summary["totals"]["errors"];
    assert!(
        errors.as_object().is_none_or(|errors| errors.is_empty()),
        "errors: {errors:#}"
    );
    assert_eq!(counter(summary, "iterations_failed"), 0, "{summary:#}");
}

/// 4 VUs x 3 iterations sign 12 bodies; the server carries each signature back and every one
/// verifies against the body it came back with.
#[test]
fn example_signed_request() {
    let summary = run_ok(&example("signed-request.yaml"));
    no_errors(&summary);
    assert_eq!(counter(&summary, "iterations"), 12, "{summary:#}");
    assert_eq!(step_counter(&summary, "order", "messages_sent"), 12);
    assert_eq!(step_counter(&summary, "accepted", "messages_received"), 12);
    assert_eq!(step_counter(&summary, "connect", "connections_opened"), 12);
}

/// Even VUs (0, 2) take the `ping_ok` branch in each of their 2 iterations, odd ones (1, 3)
/// the `else` branch, whose `while` plays exactly one corrected round.
#[test]
fn example_branch_on_reply() {
    let summary = run_ok(&example("branch-on-reply.yaml"));
    no_errors(&summary);
    assert_eq!(counter(&summary, "iterations"), 8, "{summary:#}");
    assert_eq!(step_counter(&summary, "ask", "messages_sent"), 8);
    assert_eq!(step_counter(&summary, "answer", "messages_received"), 8);
    assert_eq!(step_counter(&summary, "follow_up", "messages_sent"), 4);
    assert_eq!(step_counter(&summary, "thanked", "messages_received"), 4);
    assert_eq!(step_counter(&summary, "corrected", "messages_sent"), 4);
    assert_eq!(step_counter(&summary, "corrected_answer", "messages_received"), 4);
}

/// A misspelt name inside a block script is located at its line and column in the file.
#[test]
fn validate_locates_a_scripts_error_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "bad.yaml",
        "load: { vus: 1, iterations: 1 }\nvariables: { secret: k }\nsteps:\n  - connect: { url: 'ws://127.0.0.1:1/' }\n  - script: |\n      let sig = hex(hmac_sha256(secrit, \"body\"));\n",
    );
    let mut command = wsfleet();
    command.arg("validate").arg(&path);
    let output = run_bounded(command, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("bad.yaml:6:33: field `steps[1].script`: script line 1, column 27: Undefined variable: secrit (did you mean `secret`?)"),
        "{stderr}"
    );
}

/// `target` is rendered once per run: a `${...}` script there that fails stops the run before
/// anything is played, and the outcome names `target` and the script's error.
#[test]
fn a_failing_script_in_target_fails_the_run_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("target.yaml");
    std::fs::write(
        &scenario,
        "target: 'ws://127.0.0.1:1/${hex_decode(\"zz\")}'\nload: { vus: 1, iterations: 1 }\nsteps:\n  - connect: { url: '${target}' }\n",
    )
    .unwrap();
    let out = dir.path().join("summary.json");
    let mut command = wsfleet();
    command
        .arg("run")
        .arg(&scenario)
        .args(["--agents", "1", "--quiet", "--out"])
        .arg(format!("json={}", out.display()));
    let output = run_bounded(command, Duration::from_secs(60));
    assert_ne!(output.status.code(), Some(0));
    let summary = read_json(&out);
    let outcome = summary["outcome"].to_string();
    assert!(
        outcome.contains("the scenario's `target` cannot be rendered") && outcome.contains("hex"),
        "{summary:#}\nstderr:\n{}",
        text(&output.stderr)
    );
    assert_eq!(counter(&summary, "connections_opened"), 0, "{summary:#}");
}
