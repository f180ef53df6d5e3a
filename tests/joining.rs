//! An agent that attaches while a run runs takes no share of it by default: the run's split and
//! its counts stay those of the agents it started with, and the newcomer plays in the next run.
//! With `load.on_agent_joined: take_share`, or when the operator adds it (the API, `wsfleet
//! ctl add-agent`), it takes a weighted slice of the others' VUs at once: the test server's own
//! counts show the move, and the summary's counts equal the server's.
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

/// Starts `scenario` over the API and returns once the run ended: its summary.
fn run(fleet: &Fleet, scenario: &str, during: impl FnOnce()) -> serde_json::Value {
    // The run before this one, if any: its status must not be taken for this run's end.
    let (_, before) = http("GET", fleet.http_port, "/api/status", None, None);
    let before: serde_json::Value = serde_json::from_str(&before).unwrap_or_default();
    let previous = before["run"]["run_id"].as_str().map(str::to_owned);
    let (status, body) = http(
        "POST",
        fleet.http_port,
        "/api/runs",
        None,
        Some(&serde_json::json!({ "scenario": scenario }).to_string()),
    );
    assert_eq!(status, 202, "{body}");
    during();
    let status = fleet.wait_status(None, Duration::from_secs(30), "the run to end", |status| {
        status["active_run"].is_null()
            && status["run"]["running"] == false
            && status["run"]["run_id"].as_str().map(str::to_owned) != previous
    });
    let run_id = status["run"]["run_id"].as_str().unwrap().to_owned();
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

#[test]
fn an_agent_that_attaches_during_a_run_waits_for_the_next_one() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = test_server(&runtime);
    let mut fleet = Fleet::start(1, &[]);
    fleet.wait_agents(None, 1);
    // Each VU holds one connection for the whole run.
    let scenario = format!(
        "name: joining
load: {{ vus: 4, duration: 4s, graceful_stop: 2s }}
steps:
  - connect: {{ url: 'ws://{}/echo', keep_open: true }}
  - send: {{ text: hello }}
  - receive: {{ timeout: 5s }}
  - think: 100ms
",
        server.local_addr()
    );
    let mut late = None;
    let first = run(&fleet, &scenario, || {
        wait_until(Duration::from_secs(20), "4 VUs", || {
            server.stats().open_connections == 4
        });
        let agent = wsfleet()
            .args(["agent", "--controller", &fleet.url, "--workers", "1", "--id", "late"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        late = Some(agent);
        fleet.wait_agents(None, 2);
        // The newcomer is attached, and the run goes on with its 4 VUs on the first agent.
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(server.stats().open_connections, 4);
    });
    fleet.agents.extend(late);
    wait_until(Duration::from_secs(10), "every connection closed", || {
        server.stats().open_connections == 0
    });
    let agents: Vec<(&str, u64)> = first["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|agent| (agent["id"].as_str().unwrap(), agent["vus"].as_u64().unwrap()))
        .collect();
    assert_eq!(agents, [("fleet-0", 4)]);
    let stats = server.stats();
    assert_eq!(stats.total_connections, 4);
    assert_eq!(counter(&first, "messages_sent"), stats.messages_received);

    // The next run splits over both.
    let second = run(&fleet, &scenario, || {});
    let mut agents: Vec<(String, u64)> = second["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|agent| (agent["id"].as_str().unwrap().to_owned(), agent["vus"].as_u64().unwrap()))
        .collect();
    agents.sort();
    assert_eq!(agents, [("fleet-0".to_owned(), 2), ("late".to_owned(), 2)]);
    wait_until(Duration::from_secs(10), "every connection closed", || {
        server.stats().open_connections == 0
    });
    let stats = server.stats();
    assert_eq!(stats.total_connections, 8);
    assert_eq!(
        counter(&first, "messages_sent") + counter(&second, "messages_sent"),
        stats.messages_received
    );
    runtime.block_on(server.shutdown());
}

/// Starts an agent process named `id` against the fleet's controller.
fn start_agent(fleet: &mut Fleet, id: &str) {
    let agent = wsfleet()
        .args(["agent", "--controller", &fleet.url, "--workers", "1", "--id", id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    fleet.agents.push(agent);
}

/// Each agent's share of the running run's peak VUs, as the API's status shows it.
fn shares(status: &serde_json::Value) -> Vec<(String, Option<u64>)> {
    let mut shares: Vec<(String, Option<u64>)> = status["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|agent| (agent["id"].as_str().unwrap().to_owned(), agent["vus_share"].as_u64()))
        .collect();
    shares.sort();
    shares
}

/// Stops the active run, waits until it ended and the test server saw every connection close,
/// and returns the run's summary.
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

fn start_run(fleet: &Fleet, scenario: &str) {
    let (status, body) = http(
        "POST",
        fleet.http_port,
        "/api/runs",
        None,
        Some(&serde_json::json!({ "scenario": scenario }).to_string()),
    );
    assert_eq!(status, 202, "{body}");
}

/// A closed-model run whose VUs each hold one connection: the server's open connections are
/// the fleet's VUs, its total connections count every VU started.
fn holding_scenario(server: &wsfleet_testserver::TestServer, vus: u64, joined: &str) -> String {
    format!(
        "name: joined
load: {{ vus: {vus}, duration: 120s, graceful_stop: 5s, on_agent_joined: {joined} }}
steps:
  - connect: {{ url: 'ws://{}/echo', keep_open: true }}
  - send: {{ text: hello }}
  - receive: {{ timeout: 5s }}
  - think: 100ms
",
        server.local_addr()
    )
}

#[test]
fn with_take_share_agents_that_attach_take_a_slice_of_the_running_load() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = test_server(&runtime);
    let mut fleet = Fleet::start(1, &[]);
    fleet.wait_agents(None, 1);
    start_run(&fleet, &holding_scenario(&server, 8, "take_share"));
    wait_until(Duration::from_secs(20), "8 VUs", || {
        server.stats().open_connections == 8
    });
    // Half of fleet-0's VUs finish their iteration; the newcomer opens 4 under new numbers.
    start_agent(&mut fleet, "late");
    wait_until(Duration::from_secs(20), "the newcomer's share", || {
        let stats = server.stats();
        stats.total_connections == 12 && stats.open_connections == 8
    });
    let status = fleet.wait_status(None, Duration::from_secs(10), "the shares after the join", |status| {
        shares(status) == [("fleet-0".into(), Some(4)), ("late".into(), Some(4))]
    });
    assert_eq!(status["run"]["running"], true);
    // A third agent takes a third: one VU of each of the two (their 4 split 3 to 1 by the
    // owner sequence over weights 2 and 1).
    start_agent(&mut fleet, "third");
    wait_until(Duration::from_secs(20), "the third agent's share", || {
        let stats = server.stats();
        stats.total_connections == 14 && stats.open_connections == 8
    });
    fleet.wait_status(
        None,
        Duration::from_secs(10),
        "the shares after the second join",
        |status| {
            shares(status)
                == [
                    ("fleet-0".into(), Some(3)),
                    ("late".into(), Some(3)),
                    ("third".into(), Some(2)),
                ]
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.stats().open_connections, 8);
    assert_eq!(server.stats().total_connections, 14);

    let summary = stop_and_read_summary(&fleet, &server);
    let stats = server.stats();
    assert_eq!(counter(&summary, "connections_opened"), 14);
    assert_eq!(counter(&summary, "messages_sent"), stats.messages_received);
    assert_eq!(counter(&summary, "messages_received"), stats.messages_sent);
    let mut agents: Vec<(String, u64)> = summary["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|agent| (agent["id"].as_str().unwrap().to_owned(), agent["vus"].as_u64().unwrap()))
        .collect();
    agents.sort();
    assert_eq!(agents, [("fleet-0".into(), 3), ("late".into(), 3), ("third".into(), 2)]);
    let changes = summary["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(changes.iter().all(|change| change["action"] == "agent_joined"));
    assert_eq!(
        changes[0]["detail"],
        "agent `late` joined: it takes 4 VUs at the peak from 1 agent(s)"
    );
    runtime.block_on(server.shutdown());
}

#[test]
fn the_operator_adds_an_agent_that_waits_and_refusals_leave_the_run_untouched() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = test_server(&runtime);
    let mut fleet = Fleet::start(1, &[]);
    fleet.wait_agents(None, 1);
    start_run(&fleet, &holding_scenario(&server, 6, "wait"));
    wait_until(Duration::from_secs(20), "6 VUs", || {
        server.stats().open_connections == 6
    });
    start_agent(&mut fleet, "late");
    fleet.wait_agents(None, 2);
    let control = |body: &str| {
        let (status, text) = http("POST", fleet.http_port, "/api/runs/current/control", None, Some(body));
        (
            status,
            serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default(),
        )
    };
    let (status, answer) = control(r#"{"action": "add_agent", "agent": "nobody"}"#);
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        answer["error"],
        "agent `nobody` cannot join the run: no agent with this id is attached"
    );
    let (status, answer) = control(r#"{"action": "add_agent"}"#);
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("`add_agent` needs `agent`"));
    let (status, answer) = control(r#"{"action": "add_agent", "agent": "fleet-0"}"#);
    assert_eq!(status, 422, "{answer}");
    assert!(answer["error"].as_str().unwrap().ends_with("it is in the run already"));
    // Waiting: the run is untouched.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.stats().total_connections, 6);

    let mut command = wsfleet();
    command
        .args(["ctl", "--controller", &format!("http://127.0.0.1:{}", fleet.http_port)])
        .args(["add-agent", "late"]);
    let output = run_bounded(command, Duration::from_secs(20));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("agent `late` joined: it takes 3 VUs at the peak from 1 agent(s)"),
        "{}",
        text(&output.stdout)
    );
    wait_until(Duration::from_secs(20), "the added agent's share", || {
        let stats = server.stats();
        stats.total_connections == 9 && stats.open_connections == 6
    });
    fleet.wait_status(None, Duration::from_secs(10), "the shares after the add", |status| {
        shares(status) == [("fleet-0".into(), Some(3)), ("late".into(), Some(3))]
    });
    let (status, answer) = control(r#"{"action": "add_agent", "agent": "late"}"#);
    assert_eq!(status, 422, "{answer}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.stats().total_connections, 9);

    let summary = stop_and_read_summary(&fleet, &server);
    let stats = server.stats();
    assert_eq!(counter(&summary, "connections_opened"), 9);
    assert_eq!(counter(&summary, "messages_sent"), stats.messages_received);
    assert_eq!(counter(&summary, "messages_received"), stats.messages_sent);
    assert_eq!(summary["changes"][0]["action"], "add_agent");
    assert_eq!(summary["changes"].as_array().unwrap().len(), 1);
    runtime.block_on(server.shutdown());
}
