//! Gauges as high-water marks, end to end: a burst shorter than one interval shows its peak in
//! the summary, although every interval ends with nothing open.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

#[test]
fn a_burst_shorter_than_an_interval_shows_its_peak() {
    let dir = tempfile::tempdir().unwrap();
    // 60 VUs connect at once, hold for 200 ms, close: all within about 300 ms.
    let path = write(
        dir.path(),
        "burst.yaml",
        "name: burst
testserver: { port: 0 }
load: { vus: 60, iterations: 1 }
steps:
  - connect: { url: '${testserver.url}/echo' }
  - think: 200ms
  - close: { code: 1000 }
",
    );
    let out = dir.path().join("summary.json");
    let mut command = wsfleet();
    command
        .arg("run")
        .arg(&path)
        .args(["--agents", "2", "--quiet", "--out"])
        .arg(format!("json={}", out.display()));
    let output = run_bounded(command, Duration::from_secs(60));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let summary = read_json(&out);
    assert_eq!(counter(&summary, "connections_opened"), 60);
    assert_eq!(counter(&summary, "connections_closed"), 60);
    assert_eq!(
        summary["totals"]["peak_active_connections"].as_i64(),
        Some(60),
        "{summary:#}"
    );
    let intervals = summary["intervals"].as_array().unwrap();
    let highest = |name: &str| {
        intervals
            .iter()
            .map(|interval| interval["gauges"][name].as_i64().unwrap_or(0))
            .max()
            .unwrap()
    };
    assert_eq!(highest("active_connections_max"), 60, "{intervals:#?}");
    assert_eq!(highest("active_vus_max"), 60, "{intervals:#?}");
    // The run ends with everything closed: the last interval's end value is 0.
    let last = intervals.last().unwrap();
    assert_eq!(last["gauges"]["active_connections"].as_i64().unwrap_or(0), 0);
}
