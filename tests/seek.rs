//! Goal seeking end to end (`load: { model: seek }`): the real binary with two agent
//! processes steps its VUs against a test server that degrades past a set number of open
//! connections (`?capacity=N`: every reply slower by `overload_delay` for each connection past
//! N), refines between the last step that passed and the first that failed, and reports the
//! highest load within the thresholds; the test server's own counts equal the summary's. A seek
//! whose first step fails already ends with its own exit code.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

/// The test server's capacity: connections it serves at full speed.
const CAPACITY: u64 = 20;

fn seek_scenario(address: std::net::SocketAddr, start: u64, capacity: u64) -> String {
    format!(
        "name: seek
load:
  model: seek
  seek: {{ vus: {start}, step: 4, max: 40, interval: 2s, refine: 3 }}
  graceful_stop: 2s
  max_duration: 120s
steps:
  - connect: {{ url: 'ws://{address}/echo?capacity={capacity}&overload_delay=200ms', keep_open: true }}
  - send: {{ name: ask, text: hello }}
  - receive: {{ name: answer, timeout: 5s }}
  - think: 100ms
thresholds:
  message_latency.p95: '< 150ms'
"
    )
}

/// Runs `scenario` with `wsfleet run --agents 2`: its exit code, stderr and JSON summary, and
/// the test server's counts once every connection closed.
fn run_seek(
    scenario: &str,
    runtime: &tokio::runtime::Runtime,
    server: wsfleet_testserver::TestServer,
) -> (Option<i32>, String, serde_json::Value, wsfleet_testserver::Stats) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "seek.yaml", scenario);
    let out = dir.path().join("summary.json");
    let report = dir.path().join("report.html");
    let mut command = wsfleet();
    command
        .arg("run")
        .arg(&path)
        .args(["--agents", "2", "--out"])
        .arg(format!("json={}", out.display()))
        .arg("--out")
        .arg(format!("html={}", report.display()));
    let output = run_bounded(command, Duration::from_secs(90));
    let summary = read_json(&out);
    let schema: serde_json::Value = serde_json::from_str(include_str!("../docs/summary.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let problems: Vec<String> = validator
        .iter_errors(&summary)
        .map(|error| format!("{} at {}", error, error.instance_path))
        .collect();
    assert!(
        problems.is_empty(),
        "the summary does not match its schema: {problems:#?}"
    );
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("<h2>Goal seek</h2>"), "the report has no seek section");
    for step in summary["seek"]["steps"].as_array().unwrap() {
        let unit = if summary["seek"]["measure"] == "vus" {
            "VUs"
        } else {
            "arrivals/s"
        };
        let row = format!(
            "<td>{} {unit}</td><td>{}</td>",
            step["load"].as_f64().unwrap(),
            step["phase"].as_str().unwrap()
        );
        assert!(html.contains(&row), "the report's seek table has no row {row}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.stats().open_connections != 0 {
        assert!(std::time::Instant::now() < deadline, "connections left open");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = server.stats();
    runtime.block_on(server.shutdown());
    (
        output.status.code(),
        text(&output.stdout) + &text(&output.stderr),
        summary,
        stats,
    )
}

#[test]
fn a_seek_finds_the_capacity_of_a_degrading_server_within_ten_percent() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = test_server(&runtime);
    let scenario = seek_scenario(server.local_addr(), 4, CAPACITY);
    let (code, output, summary, stats) = run_seek(&scenario, &runtime, server);
    assert_eq!(code, Some(0), "{output}");
    let seek = &summary["seek"];
    let found = seek["found"].as_f64().unwrap();
    let capacity = CAPACITY as f64;
    assert!(
        (found - capacity).abs() <= capacity * 0.1,
        "found {found}, capacity {capacity}: {seek:#}"
    );
    assert_eq!(seek["end"], "found", "{seek:#}");
    assert_eq!(seek["measure"], "vus");
    let steps = seek["steps"].as_array().unwrap();
    let loads: Vec<f64> = steps.iter().map(|step| step["load"].as_f64().unwrap()).collect();
    let passed: Vec<bool> = steps.iter().map(|step| step["passed"].as_bool().unwrap()).collect();
    // Up by 4 while steps pass, then bisection between the last pass and the first failure.
    let first_failure = passed.iter().position(|passed| !passed).unwrap();
    for (index, load) in loads.iter().enumerate().take(first_failure + 1) {
        assert_eq!(*load, 4.0 * (index as f64 + 1.0), "{loads:?}");
    }
    assert!(
        steps[first_failure..]
            .iter()
            .all(|step| step["load"].as_f64().unwrap() > found),
        "{loads:?}"
    );
    assert!(
        steps[first_failure + 1..].iter().all(|step| step["phase"] == "refine"),
        "{seek:#}"
    );
    for step in steps {
        // Each step is judged on its own two seconds.
        assert_eq!(step["seconds"], 2);
        assert_eq!(step["thresholds"][0]["name"], "message_latency.p95");
        let over = step["load"].as_f64().unwrap() > capacity;
        assert_eq!(step["passed"].as_bool().unwrap(), !over, "{step:#}");
    }
    // The run's thresholds are the found step's; the seek's changes are on the timeline.
    assert_eq!(summary["thresholds"][0]["passed"], true);
    let changes = summary["changes"].as_array().unwrap();
    assert_eq!(changes.len(), steps.len(), "{changes:#?}");
    assert_eq!(changes.last().unwrap()["action"], "seek_end");
    assert!(output.contains("goal seek"), "{output}");
    assert!(
        output.contains(&format!("the highest load within every threshold is {found} VUs")),
        "{output}"
    );
    // Exact counts: what the server saw is what the summary says.
    assert_eq!(counter(&summary, "messages_sent"), stats.messages_received);
    assert_eq!(counter(&summary, "messages_received"), stats.messages_sent);
    assert_eq!(counter(&summary, "connections_opened"), stats.total_connections);
    assert!(stats.total_connections >= 24, "{stats:?}");
}

/// An open-model seek of the arrival rate against a server that degrades past 33 messages a
/// second: it finds a rate within 10% of that.
#[test]
fn a_rate_seek_finds_the_rate_a_server_sustains_within_ten_percent() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = test_server(&runtime);
    let scenario = format!(
        "name: rate-seek
load:
  model: seek
  seek: {{ rate: 10, step: 10, max: 60, interval: 2s, warmup: 1s, refine: 2 }}
  max_vus: 200
  graceful_stop: 2s
  max_duration: 120s
steps:
  - connect: {{ url: 'ws://{}/echo?capacity_rate=33&overload_delay=200ms' }}
  - send: {{ name: ask, text: hello }}
  - receive: {{ name: answer, timeout: 5s }}
  - close: {{}}
thresholds:
  message_latency.p95: '< 150ms'
",
        server.local_addr()
    );
    let (code, output, summary, stats) = run_seek(&scenario, &runtime, server);
    assert_eq!(code, Some(0), "{output}");
    let seek = &summary["seek"];
    assert_eq!(
        (seek["measure"].as_str(), seek["end"].as_str()),
        (Some("rate"), Some("found")),
        "{seek:#}"
    );
    let found = seek["found"].as_f64().unwrap();
    assert!((found - 33.0).abs() <= 3.3, "found {found}/s, capacity 33/s: {seek:#}");
    let steps = seek["steps"].as_array().unwrap();
    assert_eq!(seek["warmup_seconds"], 1);
    for step in steps {
        let load = step["load"].as_f64().unwrap();
        if load <= 30.0 || load >= 35.0 {
            assert_eq!(step["passed"].as_bool().unwrap(), load <= 30.0, "{step:#}");
        }
    }
    assert!(
        output.contains(&format!(
            "the highest load within every threshold is {found} arrivals/s"
        )),
        "{output}"
    );
    assert_eq!(counter(&summary, "messages_sent"), stats.messages_received);
    assert_eq!(counter(&summary, "messages_received"), stats.messages_sent);
    assert_eq!(counter(&summary, "connections_opened"), stats.total_connections);
}

#[test]
fn a_seek_whose_first_step_fails_ends_with_its_own_exit_code() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = test_server(&runtime);
    let scenario = seek_scenario(server.local_addr(), 4, 2);
    let (code, output, summary, stats) = run_seek(&scenario, &runtime, server);
    assert_eq!(code, Some(8), "{output}");
    assert!(
        output.contains("the seek found no load within the thresholds"),
        "{output}"
    );
    assert_eq!(summary["seek"]["end"], "no_passing_step");
    assert!(summary["seek"]["found"].is_null());
    assert_eq!(summary["seek"]["steps"].as_array().unwrap().len(), 1);
    assert_eq!(counter(&summary, "messages_sent"), stats.messages_received);
}
