//! Thresholds decide the exit code, so CI pipelines can use `wsfleet run`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;

fn scenario(load: &str, thresholds: &str) -> String {
    format!(
        "name: gated
testserver: {{ port: 0 }}
load: {load}
thresholds:
{thresholds}
steps:
  - connect: {{ url: '${{testserver.url}}/echo' }}
  - repeat:
      count: 5
      steps:
        - send: {{ name: message, text: hello }}
        - receive: {{ name: echo, timeout: 5s }}
        - think: 20ms
  - close: {{ code: 1000 }}
"
    )
}

fn run(source: &str) -> (std::process::Output, serde_json::Value, Duration) {
    let (output, summary, _, elapsed) = run_with_junit(source);
    (output, summary, elapsed)
}

/// Runs with `--out json=...` and `--out junit=...`; the JUnit file is checked against the
/// schema before its text is returned.
fn run_with_junit(source: &str) -> (std::process::Output, serde_json::Value, String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "gated.yaml", source);
    let out = dir.path().join("summary.json");
    let junit = dir.path().join("junit.xml");
    let mut command = wsfleet();
    command
        .arg("run")
        .arg(&path)
        .args(["--agents", "2", "--quiet", "--out"])
        .arg(format!("json={}", out.display()))
        .arg("--out")
        .arg(format!("junit={}", junit.display()));
    let started = Instant::now();
    let output = run_bounded(command, Duration::from_secs(90));
    let elapsed = started.elapsed();
    let junit_text = std::fs::read_to_string(&junit).unwrap();
    if let Err(problem) = common::junit::validate(&junit) {
        panic!("the JUnit file is not valid: {problem}\n{junit_text}");
    }
    (output, read_json(&out), junit_text, elapsed)
}

#[test]
fn passing_thresholds_exit_zero() {
    let (output, summary, _) = run(&scenario(
        "{ vus: 4, iterations: 2 }",
        "  connections_failed.rate: '< 1%'\n  message_latency.p99: '< 5s'\n  messages_received.count: '== 40'\n  \"message_latency{step=echo}.p50\": '< 5s'\n  active_connections.max: '<= 4'",
    ));
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let thresholds = summary["thresholds"].as_array().unwrap();
    assert_eq!(thresholds.len(), 5);
    assert!(
        thresholds.iter().all(|threshold| threshold["passed"] == true),
        "{thresholds:#?}"
    );
    let received = thresholds
        .iter()
        .find(|threshold| threshold["name"] == "messages_received.count")
        .unwrap();
    assert_eq!(received["value"], 40.0);
    assert!(text(&output.stdout).contains("✓ pass"));
}

#[test]
fn a_failing_threshold_exits_five_and_is_a_failed_junit_test_case() {
    let (output, summary, junit, _) = run_with_junit(&scenario(
        "{ vus: 2, iterations: 1 }",
        "  message_latency.p99: '< 1us'\n  messages_sent.count: '== 10'",
    ));
    assert_eq!(output.status.code(), Some(5), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("1 threshold(s) failed: message_latency.p99"),
        "{}",
        text(&output.stderr)
    );
    assert!(text(&output.stdout).contains("✗ FAIL"));
    let thresholds = summary["thresholds"].as_array().unwrap();
    assert_eq!(thresholds[0]["passed"], false);
    assert_eq!(thresholds[1]["passed"], true);
    assert_eq!(summary["outcome"], "completed");

    // JUnit: two test cases, the failed one with what was measured against what was asked.
    assert_eq!(junit.matches("<testcase ").count(), 2, "{junit}");
    assert!(junit.contains("tests=\"2\" failures=\"1\" errors=\"0\""), "{junit}");
    let measured = thresholds[0]["display"].as_str().unwrap();
    assert!(
        junit.contains(&format!(
            "<failure message=\"message_latency.p99 &lt; 1us failed: measured {measured}\" type=\"threshold\">"
        )),
        "{junit}"
    );
    assert!(junit.contains("<testcase name=\"messages_sent.count == 10\" classname=\"wsfleet.gated\" time=\"0\"/>"));
    assert!(junit.contains("<property name=\"outcome\" value=\"completed\"/>"));
    assert!(junit.contains("<property name=\"lost_agents\" value=\"0\"/>"));
}

/// The validator is live: what the schema forbids is refused.
#[test]
fn the_junit_schema_refuses_what_ci_systems_would_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let valid = "<testsuites><testsuite name=\"s\" package=\"p\" id=\"0\" timestamp=\"2026-01-01T00:00:00\" hostname=\"h\" tests=\"1\" failures=\"0\" errors=\"0\" time=\"1\"><properties/><testcase name=\"t\" classname=\"c\" time=\"0\"/><system-out/><system-err/></testsuite></testsuites>";
    common::junit::validate(&write(dir.path(), "valid.xml", valid)).unwrap();
    let no_hostname = valid.replace(" hostname=\"h\"", "");
    let problem = common::junit::validate(&write(dir.path(), "bad.xml", &no_hostname)).unwrap_err();
    assert!(problem.contains("hostname"), "{problem}");
    let zoned = valid.replace("00:00:00\"", "00:00:00Z\"");
    assert!(common::junit::validate(&write(dir.path(), "zoned.xml", &zoned)).is_err());
}

#[test]
fn an_abort_threshold_stops_a_long_run_early() {
    let (output, summary, elapsed) = run(&scenario(
        "{ vus: 4, duration: 60s, graceful_stop: 2s }",
        "  messages_received.count: { condition: '< 20', abort_on_fail: true }",
    ));
    assert_eq!(output.status.code(), Some(5), "{}", text(&output.stderr));
    assert!(elapsed < Duration::from_secs(30), "the run went on for {elapsed:?}");
    let outcome = summary["outcome"].as_str().unwrap();
    assert!(
        outcome.starts_with("aborted: threshold `messages_received.count` < 20 failed"),
        "{outcome}"
    );
    assert_eq!(summary["thresholds"][0]["aborted_run"], true);
    assert!(text(&output.stdout).contains("(stopped the run)"));
}

#[test]
fn a_bad_threshold_is_refused_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "bad.yaml",
        &scenario("{ vus: 1, iterations: 1 }", "  mesage_latency.p99: '< 5s'"),
    );
    let mut command = wsfleet();
    command.arg("validate").arg(&path);
    let output = run_bounded(command, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(3));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(":5:3: field `thresholds.mesage_latency.p99`: unknown metric"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `message_latency`?"), "{stderr}");
}
