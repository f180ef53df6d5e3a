//! Every output agrees with the exact counts a scenario implies: JSON totals, per-interval
//! series, CSV, and Prometheus /metrics (parsed with a real parser), with 3 agent processes.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

const SCENARIO: &str = "name: outputs
testserver: { port: 0 }
load: { vus: 30, iterations: 2 }
steps:
  - connect: { url: '${testserver.url}/echo' }
  - repeat:
      count: 10
      steps:
        - send: { name: message, text: 'twenty bytes payload' }
        - receive: { name: echo, timeout: 5s, latency_of: message }
  - close: { code: 1000 }
";

fn http_get(port: u16, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// The sum over every series of a metric (all steps).
fn prometheus_sum(scrape: &prometheus_parse::Scrape, metric: &str) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == metric)
        .map(|sample| match sample.value {
            prometheus_parse::Value::Counter(value)
            | prometheus_parse::Value::Gauge(value)
            | prometheus_parse::Value::Untyped(value) => value,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn json_csv_and_prometheus_agree_with_the_exact_counts() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(dir.path(), "outputs.yaml", SCENARIO);
    let json = dir.path().join("summary.json");
    let csv = dir.path().join("series.csv");
    let html = dir.path().join("report.html");
    let port = closed_port();
    let mut child = wsfleet()
        .arg("run")
        .arg(&scenario)
        .args([
            "--agents",
            "3",
            "--quiet",
            "--linger",
            "20s",
            "--http",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--out")
        .arg(format!("json={}", json.display()))
        .arg("--out")
        .arg(format!("csv={}", csv.display()))
        .arg("--out")
        .arg(format!("html={}", html.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Outputs are written when the run ends; the process then lingers for a last scrape.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(json.exists() && csv.exists() && html.exists()) {
        assert!(Instant::now() < deadline, "the run did not finish");
        assert!(child.try_wait().unwrap().is_none(), "wsfleet exited before lingering");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let body = http_get(port, "/metrics");
    let _ = child.kill();
    let _ = child.wait();

    // JSON totals: 30 VUs x 2 iterations; 10 echoes of 20 bytes each.
    let summary = read_json(&json);
    let schema: serde_json::Value = serde_json::from_str(include_str!("../docs/summary.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let problems: Vec<String> = validator
        .iter_errors(&summary)
        .map(|error| format!("{} at {}", error, error.instance_path))
        .collect();
    assert!(
        problems.is_empty(),
        "the summary does not match docs/summary.schema.json: {problems:#?}"
    );
    // The schema is strict: a renamed field fails it.
    let mut renamed = summary.clone();
    let outcome = renamed.as_object_mut().unwrap().remove("outcome").unwrap();
    renamed.as_object_mut().unwrap().insert("result".into(), outcome);
    assert!(!validator.is_valid(&renamed));
    let expected = [
        ("connections_opened", 60),
        ("connections_failed", 0),
        ("connections_closed", 60),
        ("messages_sent", 600),
        ("messages_received", 600),
        ("payload_bytes_sent", 12_000),
        ("payload_bytes_received", 12_000),
        ("iterations", 60),
    ];
    for (name, value) in expected {
        assert_eq!(counter(&summary, name), value, "{name}");
    }
    assert_eq!(summary["agents"].as_array().unwrap().len(), 3);
    assert_eq!(
        summary["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|agent| agent["vus"].as_u64().unwrap())
            .sum::<u64>(),
        30
    );
    let steps = summary["steps"].as_array().unwrap();
    let step = |name: &str| steps.iter().find(|step| step["name"] == name).unwrap().clone();
    assert_eq!(step("message")["counters"]["messages_sent"], 600);
    assert_eq!(step("echo")["counters"]["messages_received"], 600);
    assert_eq!(step("echo")["latency"]["message_latency"]["count"], 600);
    assert_eq!(step("connect")["counters"]["connections_opened"], 60);

    // Per-interval sums equal the totals, for every counter.
    let intervals = summary["intervals"].as_array().unwrap();
    for (name, total) in summary["totals"]["counters"].as_object().unwrap() {
        let sum: u64 = intervals
            .iter()
            .map(|interval| interval["counters"][name].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(sum, total.as_u64().unwrap(), "per-interval sum of {name}");
    }

    // CSV: a header and one row per interval, columns that add up to the totals.
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|line| line.split(',').collect()).collect();
    assert_eq!(rows.len(), intervals.len());
    assert!(rows.iter().all(|row| row.len() == header.len()));
    for name in ["messages_sent", "bytes_sent", "connections_opened"] {
        let column = header.iter().position(|column| *column == name).unwrap();
        let sum: u64 = rows.iter().map(|row| row[column].parse::<u64>().unwrap()).sum();
        assert_eq!(sum, counter(&summary, name), "csv column {name}");
    }

    // Prometheus: parses, and matches the JSON.
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|line| Ok(line.to_owned()))).unwrap();
    for name in [
        "connections_opened",
        "messages_sent",
        "messages_received",
        "bytes_sent",
        "bytes_received",
        "payload_bytes_sent",
    ] {
        assert_eq!(
            prometheus_sum(&scrape, &format!("wsfleet_{name}_total")) as u64,
            counter(&summary, name),
            "prometheus {name}"
        );
    }
    assert_eq!(prometheus_sum(&scrape, "wsfleet_agents") as u64, 3);
    let latency_count = scrape
        .samples
        .iter()
        .find(|sample| sample.metric == "wsfleet_message_latency_seconds" && sample.labels.get("step") == Some("echo"))
        .map(|sample| match &sample.value {
            prometheus_parse::Value::Summary(summary) => summary.len(),
            _ => 0,
        });
    assert!(latency_count.is_some(), "message latency summary present");

    // The HTML report: one self-contained file with a chart per series and the tables.
    let report = std::fs::read_to_string(&html).unwrap();
    assert!(report.starts_with("<!doctype html>"));
    assert!(report.matches("<svg").count() >= 6, "charts of every series");
    for title in [
        "New and Failed Connections/s",
        "Bytes Sent/s and Bytes Received/s",
        "Active connections",
        "Messages/s",
        "message_latency latency",
        "handshake latency",
    ] {
        assert!(report.contains(title), "chart {title}");
    }
    assert!(report.contains("<td>messages_sent</td><td>600</td>"));
    assert!(report.contains("name: outputs"), "the scenario is in the report");
    assert!(
        !report.contains("src=") && !report.contains("<link"),
        "no external assets: it opens offline"
    );
}
