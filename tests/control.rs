//! Steering a running run over real HTTP (the API and `wsfleet ctl`) with real agent processes
//! against the test server: the server's own counts follow every change exactly (VUs raised,
//! lowered with a ramp, a pause that stops the messages while the connections stay, a stop),
//! refusals leave the run untouched, and every change is on the run's timeline in the summary
//! the history keeps.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;

fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `POST /api/runs/current/control` with `body`: the status and the answer.
/// Stops the active run, waits until it ended and the test server saw every connection close,
/// and returns the run's summary as the history keeps it.
fn stop_and_read_summary(fleet: &Fleet, server: &wsfleet_testserver::TestServer) -> serde_json::Value {
    let (status, _) = http("POST", fleet.http_port, "/api/runs/current/stop", None, None);
    assert_eq!(status, 202);
    let status = fleet.wait_status(None, Duration::from_secs(30), "the run to end", |status| {
        status["active_run"].is_null() && status["run"]["running"] == false
    });
    let run_id = status["run"]["run_id"].as_str().unwrap().to_owned();
    wait_until(Duration::from_secs(10), "every connection closed", || {
        server.stats().open_connections == 0
    });
    let (code, body) = http(
        "GET",
        fleet.http_port,
        &format!("/api/runs/{run_id}/summary.json"),
        None,
        None,
    );
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn control(fleet: &Fleet, body: &str) -> (u16, serde_json::Value) {
    let (status, text) = http("POST", fleet.http_port, "/api/runs/current/control", None, Some(body));
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// `wsfleet ctl` against the fleet's controller.
fn ctl(fleet: &Fleet, args: &[&str]) -> std::process::Output {
    let mut command = wsfleet();
    command
        .args(["ctl", "--controller", &format!("http://127.0.0.1:{}", fleet.http_port)])
        .args(args);
    run_bounded(command, Duration::from_secs(20))
}

#[test]
fn the_operator_steers_a_run_and_the_test_server_counts_every_change_exactly() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = test_server(&runtime);
    let fleet = Fleet::start(2, &[]);
    fleet.wait_agents(None, 2);
    // Each VU keeps one connection for the whole run: the server's open connections are the
    // fleet's VUs.
    let scenario = format!(
        "name: steered
load: {{ vus: 4, duration: 120s, graceful_stop: 5s }}
steps:
  - connect: {{ url: 'ws://{}/echo', keep_open: true }}
  - repeat:
      count: 3
      steps:
        - send: {{ name: message, text: hello }}
        - receive: {{ name: echo, timeout: 5s }}
        - think: 50ms
",
        server.local_addr()
    );
    let (status, body) = http(
        "POST",
        fleet.http_port,
        "/api/runs",
        None,
        Some(&serde_json::json!({ "scenario": scenario }).to_string()),
    );
    assert_eq!(status, 202, "{body}");
    wait_until(Duration::from_secs(20), "4 VUs", || {
        server.stats().open_connections == 4
    });

    // Refused, with why, and the run goes on untouched.
    let refusals = [
        (
            r#"{"action": "set_rate", "rate": 5}"#,
            422,
            "the scenario is closed-model (a number of VUs): set its VUs with `set_vus`, not a rate",
        ),
        (
            r#"{"action": "set_vus", "vus": 100000000}"#,
            422,
            "100000000 VUs are more than the fleet holds",
        ),
        (
            r#"{"action": "pause", "part": "nope"}"#,
            422,
            "the scenario has no part `nope`",
        ),
        (r#"{"action": "unpause"}"#, 422, "the scenario is not paused"),
        (r#"{"action": "fly"}"#, 400, "unknown action `fly`"),
        (r#"{"action": "set_vus"}"#, 400, "`set_vus` needs `vus`"),
    ];
    for (body, code, message) in refusals {
        let (status, answer) = control(&fleet, body);
        assert_eq!(status, code, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(message), "{body}: {error}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.stats().open_connections, 4);

    // Raised at once: 10 VUs over the two agents.
    let (status, answer) = control(&fleet, r#"{"action": "set_vus", "vus": 10}"#);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["applied"]["detail"], "VUs of the scenario set to 10 at once");
    wait_until(Duration::from_secs(20), "10 VUs", || {
        server.stats().open_connections == 10
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.stats().open_connections, 10, "the fleet holds the target");
    let status = fleet.wait_status(None, Duration::from_secs(5), "the shares of 10 VUs", |status| {
        let shares: Vec<u64> = status["agents"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|agent| agent["vus_share"].as_u64())
            .collect();
        shares.len() == 2 && shares.iter().sum::<u64>() == 10
    });
    assert_eq!(status["run"]["changes"][0]["value"], 10.0);

    // Lowered over a ramp, with the CLI: VUs above the target finish their iteration and go.
    let output = ctl(&fleet, &["set-vus", "6", "--ramp", "1s"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("VUs of the scenario set to 6 over 1.0s"));
    wait_until(Duration::from_secs(20), "6 VUs", || {
        server.stats().open_connections == 6
    });

    // Paused: the messages stop once the iterations in flight end, the connections stay.
    let output = ctl(&fleet, &["pause"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    std::thread::sleep(Duration::from_millis(1500));
    let paused_count = server.stats().messages_received;
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        server.stats().messages_received,
        paused_count,
        "no message while paused"
    );
    assert_eq!(server.stats().open_connections, 6);
    // Pausing twice is refused by the CLI too, with exit code 4.
    let output = ctl(&fleet, &["pause"]);
    assert_eq!(output.status.code(), Some(4));
    assert!(text(&output.stderr).contains("the scenario is paused already"));
    let output = ctl(&fleet, &["unpause"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    wait_until(Duration::from_secs(10), "messages again", || {
        server.stats().messages_received > paused_count
    });

    // Stopped: the part ends, and with it the run.
    let (status, answer) = control(&fleet, r#"{"action": "stop"}"#);
    assert_eq!(status, 200, "{answer}");
    let status = fleet.wait_status(None, Duration::from_secs(30), "the run to end", |status| {
        status["active_run"].is_null() && status["run"]["running"] == false
    });
    let run_id = status["run"]["run_id"].as_str().unwrap().to_owned();
    wait_until(Duration::from_secs(10), "every connection closed", || {
        server.stats().open_connections == 0
    });
    // The changes on the live view, and after a moment in the history's summary.
    assert_eq!(status["run"]["changes"].as_array().unwrap().len(), 5);
    let (code, body) = http(
        "GET",
        fleet.http_port,
        &format!("/api/runs/{run_id}/summary.json"),
        None,
        None,
    );
    assert_eq!(code, 200, "{body}");
    let summary: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(summary["outcome"], "completed");
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
    let actions: Vec<&str> = summary["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| change["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["set_vus", "set_vus", "pause", "unpause", "stop"]);
    let paused = summary["changes"][3]["paused_seconds"].as_f64().unwrap();
    assert!((2.0..10.0).contains(&paused), "paused for {paused}s");
    let times: Vec<f64> = summary["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| change["at_seconds"].as_f64().unwrap())
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "{times:?}");

    // The report kept in the history lists them too.
    let (code, report) = http(
        "GET",
        fleet.http_port,
        &format!("/api/runs/{run_id}/report.html"),
        None,
        None,
    );
    assert_eq!(code, 200);
    assert!(report.contains("<h2>Changes during the run</h2>"), "{report}");
    assert!(report.contains("VUs of the scenario set to 10 at once"));
    assert!(report.contains("the scenario resumed after"));

    // Exact: what the agents counted is what the server counted, through every change.
    let stats = server.stats();
    assert_eq!(counter(&summary, "connections_opened"), 10);
    assert_eq!(stats.total_connections, 10);
    assert_eq!(counter(&summary, "messages_sent"), stats.messages_received);
    assert_eq!(counter(&summary, "messages_received"), stats.messages_sent);
    assert_eq!(counter(&summary, "connections_failed"), 0);

    // No run any more: the change is refused as such.
    let (status, answer) = control(&fleet, r#"{"action": "hold"}"#);
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"], "no run is active");
}

#[test]
fn an_open_parts_rate_changes_and_one_part_stops_while_the_other_goes_on() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = test_server(&runtime);
    let fleet = Fleet::start(2, &[]);
    fleet.wait_agents(None, 2);
    // `steady` holds 2 connections for the whole run; each `arrivals` VU opens one, echoes once
    // and closes.
    let address = server.local_addr();
    let scenario = format!(
        "name: mixed
scenarios:
  - name: steady
    load: {{ vus: 2, duration: 120s, graceful_stop: 2s }}
    steps:
      - connect: {{ url: 'ws://{address}/echo', keep_open: true }}
      - send: {{ text: hello }}
      - receive: {{ timeout: 5s }}
      - think: 100ms
  - name: arrivals
    load: {{ model: open, rate: 10, duration: 120s, max_vus: 50, graceful_stop: 2s }}
    steps:
      - connect: {{ url: 'ws://{address}/echo' }}
      - send: {{ text: hello }}
      - receive: {{ timeout: 5s }}
      - close: {{ code: 1000 }}
"
    );
    let (status, body) = http(
        "POST",
        fleet.http_port,
        "/api/runs",
        None,
        Some(&serde_json::json!({ "scenario": scenario }).to_string()),
    );
    assert_eq!(status, 202, "{body}");
    wait_until(Duration::from_secs(20), "the arrivals to start", || {
        server.stats().total_connections > 12
    });

    // Naming the part is required, and the model decides what can be set.
    let (status, answer) = control(&fleet, r#"{"action": "set_rate", "rate": 40}"#);
    assert_eq!(status, 422);
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("name the one to change (`steady`, `arrivals`)"));
    let (status, answer) = control(&fleet, r#"{"action": "set_vus", "vus": 5, "part": "arrivals"}"#);
    assert_eq!(status, 422);
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .starts_with("part `arrivals` is open-model"));

    // 10 a second, then 40: the server sees the new rate.
    let output = ctl(&fleet, &["--part", "arrivals", "set-rate", "40"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    std::thread::sleep(Duration::from_millis(500));
    let before = server.stats().total_connections;
    std::thread::sleep(Duration::from_secs(2));
    let arrived = server.stats().total_connections - before;
    assert!((70..=90).contains(&arrived), "{arrived} arrivals in 2 s at 40/s");

    // `arrivals` stops; `steady` goes on with its 2 connections.
    let (status, answer) = control(&fleet, r#"{"action": "stop", "part": "arrivals"}"#);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["applied"]["detail"], "part `arrivals` stopped");
    std::thread::sleep(Duration::from_millis(1000));
    let stopped = server.stats().total_connections;
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(server.stats().total_connections, stopped, "no arrival after the stop");
    assert_eq!(server.stats().open_connections, 2);
    let (status, answer) = control(&fleet, r#"{"action": "set_rate", "rate": 5, "part": "arrivals"}"#);
    assert_eq!(status, 422);
    assert_eq!(answer["error"], "part `arrivals` has ended: it cannot be changed");
    let status = fleet.wait_status(None, Duration::from_secs(5), "the run going on", |status| {
        status["run"]["running"] == true
    });
    assert!(status["active_run"].is_string());

    // Then the whole run.
    let summary = stop_and_read_summary(&fleet, &server);
    let stats = server.stats();
    assert_eq!(counter(&summary, "connections_opened"), stats.total_connections);
    assert_eq!(counter(&summary, "messages_sent"), stats.messages_received);
    assert_eq!(counter(&summary, "messages_received"), stats.messages_sent);
    let changes = summary["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["action"], "set_rate");
    assert_eq!(changes[0]["value"], 40.0);
    assert_eq!(changes[0]["part"], "arrivals");
    assert_eq!(changes[1]["action"], "stop");
}

#[test]
fn a_drained_agents_share_moves_to_the_others_exactly() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = test_server(&runtime);
    let fleet = Fleet::start(2, &[]);
    fleet.wait_agents(None, 2);
    let scenario = format!(
        "name: drained
load: {{ vus: 6, duration: 120s, graceful_stop: 5s }}
steps:
  - connect: {{ url: 'ws://{}/echo', keep_open: true }}
  - send: {{ text: hello }}
  - receive: {{ timeout: 5s }}
  - think: 100ms
",
        server.local_addr()
    );
    let (status, body) = http(
        "POST",
        fleet.http_port,
        "/api/runs",
        None,
        Some(&serde_json::json!({ "scenario": scenario }).to_string()),
    );
    assert_eq!(status, 202, "{body}");
    wait_until(Duration::from_secs(20), "6 VUs", || {
        server.stats().open_connections == 6
    });

    let (status, answer) = control(&fleet, r#"{"action": "drain", "agent": "fleet-9"}"#);
    assert_eq!(status, 422);
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .starts_with("agent `fleet-9` is not in this run"));
    let output = ctl(&fleet, &["drain", "fleet-1"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("agent `fleet-1` drained: its share moved to 1 agent(s)"));
    // fleet-1's 3 VUs end after their iteration; fleet-0 opens 3 more: 6 again, 9 in all.
    wait_until(Duration::from_secs(20), "the share to move", || {
        let stats = server.stats();
        stats.total_connections == 9 && stats.open_connections == 6
    });
    let status = fleet.wait_status(None, Duration::from_secs(10), "the shares after the drain", |status| {
        let share = |id: &str| {
            status["agents"]
                .as_array()
                .unwrap()
                .iter()
                .find(|agent| agent["id"] == id)
                .and_then(|agent| agent["vus_share"].as_u64())
        };
        share("fleet-0") == Some(6) && share("fleet-1") == Some(0)
    });
    assert_eq!(status["run"]["running"], true);
    let output = ctl(&fleet, &["drain", "fleet-1"]);
    assert_eq!(output.status.code(), Some(4));
    assert!(
        text(&output.stderr).contains("does not play its share any more"),
        "{}",
        text(&output.stderr)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.stats().open_connections, 6);
    assert_eq!(server.stats().total_connections, 9);

    let summary = stop_and_read_summary(&fleet, &server);
    let stats = server.stats();
    assert_eq!(counter(&summary, "connections_opened"), 9);
    assert_eq!(counter(&summary, "messages_sent"), stats.messages_received);
    assert_eq!(counter(&summary, "messages_received"), stats.messages_sent);
    assert_eq!(summary["changes"][0]["action"], "drain");
    assert_eq!(summary["lost_agents"]["events"], serde_json::json!([]));
}
