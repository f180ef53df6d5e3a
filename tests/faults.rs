//! Faults between real processes: what happens when the controller dies mid-run.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn killed_controller_stops_the_load_and_its_run_is_kept_as_interrupted() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime
        .block_on(wsfleet_testserver::TestServer::start(
            "127.0.0.1:0".parse().unwrap(),
            wsfleet_testserver::Config::default(),
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let scenario = write(
        dir.path(),
        "long.yaml",
        &format!(
            "name: long\nload: {{ vus: 10, duration: 60s }}\nsteps:\n  - connect: {{ url: 'ws://{}/echo' }}\n  - repeat:\n      duration: 30s\n      steps:\n        - send: {{ text: hi }}\n        - receive: {{ timeout: 5s }}\n        - think: 50ms\n",
            server.local_addr()
        ),
    );
    let (mut controller, url) = start_run_controller(&data, &scenario, 1, Stdio::null());
    // A long silence limit would not matter: the stream's end is enough for the agent.
    let mut agent = wsfleet()
        .args(["agent", "--controller", &url, "--workers", "1", "--id", "survivor"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    wait_until(Duration::from_secs(30), "the load to start", || {
        server.stats().open_connections == 10
    });
    // Let a few intervals reach the controller, then kill it without warning.
    std::thread::sleep(Duration::from_millis(3500));
    controller.kill().unwrap();
    controller.wait().unwrap();
    let killed_at = Instant::now();

    // The agent stops its load within the bound: the server sees every connection go.
    wait_until(Duration::from_secs(10), "the agent to stop its load", || {
        server.stats().open_connections == 0
    });
    assert!(killed_at.elapsed() < Duration::from_secs(10));
    // The agent itself keeps running, trying to reattach.
    assert!(
        agent.try_wait().unwrap().is_none(),
        "the agent must survive its controller"
    );
    let _ = agent.kill();
    let _ = agent.wait();

    // The run is in the history as interrupted, with the intervals received before the kill.
    let history = wsfleet_controller::history::History::open(&data).unwrap();
    let runs = history.list_runs(10).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, "interrupted");
    assert_eq!(runs[0].scenario, "long");
    let intervals = history.intervals(&runs[0].id).unwrap();
    assert!(intervals.len() >= 2, "{intervals:?}");
    let first: serde_json::Value = serde_json::from_str(&intervals[0].1).unwrap();
    assert_eq!(first["counters"]["connections_opened"], 10);
    runtime.block_on(server.shutdown());
}

#[test]
fn a_killed_agent_is_marked_lost_and_the_run_completes_with_what_it_reported() {
    let mut fleet = Fleet::start(3, &[]);
    fleet.wait_status(None, Duration::from_secs(20), "three agents", |status| {
        status["agents"].as_array().unwrap().len() == 3
    });
    let scenario = "name: survivors
testserver: { port: 0 }
load: { vus: 6, duration: 6s, graceful_stop: 2s }
steps:
  - connect: { url: '${testserver.url}/echo' }
  - repeat:
      count: 5
      steps:
        - send: { text: hi }
        - receive: { timeout: 5s }
        - think: 100ms
  - close: { code: 1000 }
";
    let request = serde_json::json!({ "scenario": scenario }).to_string();
    assert_eq!(http("POST", fleet.http_port, "/api/runs", None, Some(&request)).0, 202);
    fleet.wait_status(None, Duration::from_secs(30), "two seconds of load", |status| {
        status["run"]["seconds"].as_f64().unwrap_or(0.0) >= 2.0
    });
    // kill -9: no goodbye on the stream.
    let victim = &mut fleet.agents[1];
    let signalled = std::process::Command::new("kill")
        .arg("-9")
        .arg(victim.id().to_string())
        .status()
        .unwrap();
    assert!(signalled.success());
    let _ = victim.wait();
    let killed_at = Instant::now();
    let status = fleet.wait_status(None, Duration::from_secs(15), "the agent to be marked lost", |status| {
        status["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|agent| agent["state"] == "lost")
    });
    assert!(
        killed_at.elapsed() < Duration::from_secs(12),
        "marked lost within the silence limit"
    );
    let lost = status["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|agent| agent["state"] == "lost")
        .unwrap()
        .clone();
    assert_eq!(lost["id"], "fleet-1");
    assert_eq!(lost["vus_share"], 2);

    // The run goes on with the others and completes.
    fleet.wait_status(None, Duration::from_secs(30), "the run to end", |status| {
        status["run"]["running"] == false && status["active_run"].is_null()
    });
    let runs: serde_json::Value =
        serde_json::from_str(&http("GET", fleet.http_port, "/api/runs", None, None).1).unwrap();
    let id = runs["runs"][0]["id"].as_str().unwrap().to_owned();
    let run: serde_json::Value =
        serde_json::from_str(&http("GET", fleet.http_port, &format!("/api/runs/{id}"), None, None).1).unwrap();
    let summary = &run["summary"];
    assert_eq!(summary["outcome"], "completed with lost agents");
    let agents = summary["agents"].as_array().unwrap();
    let lost = agents.iter().find(|agent| agent["id"] == "fleet-1").unwrap();
    assert!(lost["state"].as_str().unwrap().starts_with("lost"), "{lost}");
    assert!(
        lost["intervals_reported"].as_u64().unwrap() >= 1,
        "the lost agent's reported intervals count"
    );
    // Totals are exactly what was reported, survivors and the lost agent's intervals alike.
    let intervals = summary["intervals"].as_array().unwrap();
    for name in ["messages_received", "connections_opened", "bytes_sent"] {
        let sum: u64 = intervals
            .iter()
            .map(|interval| interval["counters"][name].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(sum, summary["totals"]["counters"][name].as_u64().unwrap(), "{name}");
    }
    assert!(summary["totals"]["counters"]["messages_received"].as_u64().unwrap() > 0);
}
