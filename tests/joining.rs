//! An agent that attaches while a run runs takes no share of it: the run's split and its
//! counts stay those of the agents it started with, and the newcomer plays in the next run.
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
        status["active_run"].is_null() && status["run"]["running"] == false
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
