//! Load models across a fleet of real agent processes: the open model's exact arrivals and
//! dropped VUs, a closed ramp whose connections the test server counts too, and a run the fleet
//! cannot hold.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

fn run_summary(source: &str, agents: &str) -> (std::process::Output, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "load.yaml", source);
    let out = dir.path().join("summary.json");
    let mut command = wsfleet();
    command
        .arg("run")
        .arg(&path)
        .args(["--agents", agents, "--quiet", "--out"])
        .arg(format!("json={}", out.display()));
    let output = run_bounded(command, Duration::from_secs(90));
    let summary = read_json(&out);
    (output, summary)
}

#[test]
fn open_model_starts_exactly_the_arrivals_of_its_rate() {
    // 20 arrivals per second for 3 s: arrival k is due at k / 20 s, so exactly 60, split over
    // 3 agents by the fleet's sequence.
    let (output, summary) = run_summary(
        "name: open
testserver: { port: 0 }
load: { model: open, rate: 20, duration: 3s, max_vus: 100 }
steps:
  - connect: { url: '${testserver.url}/echo' }
  - close: { code: 1000 }
",
        "3",
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(counter(&summary, "vus_offered"), 60);
    assert_eq!(counter(&summary, "vus_started"), 60);
    assert_eq!(counter(&summary, "dropped_vus"), 0);
    assert_eq!(counter(&summary, "connections_opened"), 60);
    assert_eq!(counter(&summary, "iterations"), 60);
    assert!(text(&output.stdout).contains("VUs Offered (open model)"));
    // Arrivals follow the clock: about 20 per second, never bunched into one second.
    let intervals = summary["intervals"].as_array().unwrap();
    let busiest = intervals
        .iter()
        .map(|interval| interval["counters"]["vus_offered"].as_u64().unwrap_or(0))
        .max()
        .unwrap();
    assert!(busiest <= 25, "arrivals bunched: {busiest} in one second");
}

#[test]
fn open_model_drops_arrivals_past_its_cap_and_counts_them() {
    // Each VU holds its connection for 1 s; at most 2 may run: most of the 40 arrivals drop.
    let (output, summary) = run_summary(
        "name: capped
testserver: { port: 0 }
load: { model: open, rate: 20, duration: 2s, max_vus: 2, graceful_stop: 3s }
steps:
  - connect: { url: '${testserver.url}/echo' }
  - think: 1s
  - close: { code: 1000 }
",
        "2",
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let offered = counter(&summary, "vus_offered");
    let started = counter(&summary, "vus_started");
    let dropped = counter(&summary, "dropped_vus");
    assert_eq!(offered, 40);
    assert_eq!(started + dropped, offered);
    assert!(dropped >= 30, "started {started}, dropped {dropped}");
    assert!(started >= 2);
    assert_eq!(counter(&summary, "connections_opened"), started);
    assert!(summary["totals"]["peak_active_connections"].as_i64().unwrap() <= 2);
}

#[test]
fn closed_ramp_holds_its_target_as_the_test_server_counts() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = test_server(&runtime);
    let fleet = Fleet::start(3, &[]);
    fleet.wait_agents(None, 3);
    let scenario = format!(
        "name: ramp
load:
  stages:
    - {{ duration: 2s, target: 30 }}
    - {{ duration: 4s, target: 30 }}
    - {{ duration: 1s, target: 0 }}
steps:
  - connect: {{ url: 'ws://{}/echo' }}
  - think: 500ms
  - close: {{ code: 1000 }}
",
        server.local_addr()
    );
    // Each VU reconnects every ~0.5 s, so compare the figures where no one is between
    // connections: a hold with a long think.
    let scenario = scenario.replace("think: 500ms", "think: 30s");
    let request = serde_json::json!({ "scenario": scenario }).to_string();
    assert_eq!(http("POST", fleet.http_port, "/api/runs", None, Some(&request)).0, 202);
    // While holding: the controller's fleet gauge and the server's own count agree on 30.
    let status = fleet.wait_status(None, Duration::from_secs(30), "the hold at 30", |status| {
        status["run"]["last"]["gauges"]["active_connections"].as_i64() == Some(30)
    });
    assert_eq!(server.stats().open_connections, 30);
    let agents = status["agents"].as_array().unwrap();
    assert_eq!(
        agents
            .iter()
            .map(|agent| agent["active_connections"].as_i64().unwrap())
            .sum::<i64>(),
        30
    );
    // Every agent holds its exact share: 10 each.
    assert!(
        agents.iter().all(|agent| agent["active_connections"] == 10),
        "{agents:?}"
    );
    // An agent with one worker is one thread: session, executor and VUs share it.
    for agent in &fleet.agents {
        let status = std::fs::read_to_string(format!("/proc/{}/status", agent.id())).unwrap();
        let threads = status
            .lines()
            .find_map(|line| line.strip_prefix("Threads:"))
            .unwrap()
            .trim();
        assert_eq!(threads, "1", "agent {} runs {threads} threads", agent.id());
    }
    // The ramp down closes them (the hard stop at the end of the stages closes with 1001).
    fleet.wait_status(None, Duration::from_secs(40), "the run to end", |status| {
        status["run"]["running"] == false
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.stats().open_connections != 0 {
        assert!(std::time::Instant::now() < deadline, "connections left open");
        std::thread::sleep(Duration::from_millis(50));
    }
    runtime.block_on(server.shutdown());
}

#[test]
fn a_run_the_fleet_cannot_hold_is_refused_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(
        dir.path(),
        "big.yaml",
        "name: big\nload: { vus: 50, iterations: 1 }\nsteps:\n  - connect: { url: 'ws://127.0.0.1:9/' }\n",
    );
    // Two agents that hold 10 connections each, attached to a controller that runs the scenario.
    let data = tempfile::tempdir().unwrap();
    let (mut controller, url) = start_run_controller(data.path(), &scenario, 2, std::process::Stdio::piped());
    let mut agents: Vec<_> = (0..2)
        .map(|index| {
            wsfleet()
                .args([
                    "agent",
                    "--controller",
                    &url,
                    "--once",
                    "--workers",
                    "1",
                    "--max-connections",
                    "10",
                    "--id",
                    &format!("small-{index}"),
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    wait_exit(&mut controller, Duration::from_secs(60));
    let output = controller.wait_with_output().unwrap();
    for agent in &mut agents {
        let _ = agent.kill();
        let _ = agent.wait();
    }
    assert_eq!(output.status.code(), Some(4));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("the fleet cannot hold this run"), "{stderr}");
    assert!(stderr.contains("needs 50 connections"), "{stderr}");
    assert!(stderr.contains("the fleet holds 20"), "{stderr}");
}

/// Established TCP connections to `port`, counted by local IPv4 address, from /proc/net/tcp.
fn connections_by_source(port: u16) -> std::collections::BTreeMap<String, usize> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let mut counts = std::collections::BTreeMap::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, remote, state) = (fields[1], fields[2], fields[3]);
        let remote_port = u16::from_str_radix(remote.split(':').nth(1).unwrap(), 16).unwrap();
        if state != "01" || remote_port != port {
            continue;
        }
        let ip = u32::from_str_radix(local.split(':').next().unwrap(), 16).unwrap();
        let ip = std::net::Ipv4Addr::from(ip.swap_bytes());
        *counts.entry(ip.to_string()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn an_agent_spreads_its_connections_over_its_source_addresses() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = test_server(&runtime);
    let port = server.local_addr().port();
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let scenario = write(
        dir.path(),
        "spread.yaml",
        &format!("name: spread\nload: {{ vus: 12, iterations: 1 }}\nsteps:\n  - connect: {{ url: 'ws://127.0.0.1:{port}/echo' }}\n  - think: 3s\n  - close: {{ code: 1000 }}\n"),
    );
    let (mut controller, url) = start_run_controller(data.path(), &scenario, 1, std::process::Stdio::null());
    let mut agent = wsfleet()
        .args([
            "agent",
            "--controller",
            &url,
            "--once",
            "--workers",
            "2",
            "--source-addresses",
            "127.0.0.2-127.0.0.4",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server.stats().open_connections < 12 {
        assert!(std::time::Instant::now() < deadline, "the connections never opened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let counts = connections_by_source(port);
    let _ = agent.kill();
    let _ = agent.wait();
    let _ = controller.kill();
    let _ = controller.wait();
    // 12 connections over 3 addresses, round robin on each of 2 workers: 4 from each.
    assert_eq!(counts.get("127.0.0.2"), Some(&4), "{counts:?}");
    assert_eq!(counts.get("127.0.0.3"), Some(&4), "{counts:?}");
    assert_eq!(counts.get("127.0.0.4"), Some(&4), "{counts:?}");
    runtime.block_on(server.shutdown());
}
