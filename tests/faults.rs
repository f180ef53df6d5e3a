//! Faults between real processes: the controller dying mid-run, agents killed with kill -9
//! under each lost-agent policy, and the network between an agent and the controller cut by a
//! fault-injecting proxy (tests/common/proxy.rs) and healed.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::proxy::{Cut, Direction, FaultProxy};
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
    let server = test_server(&runtime);
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
    fleet.wait_agents(None, 3);
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
    // The default policy: the run goes on without the lost agent's share.
    assert_eq!(summary["lost_agents"]["policy"], "continue");
    assert_eq!(summary["lost_agents"]["events"][0]["agent"], "fleet-1");
    assert_eq!(summary["lost_agents"]["events"][0]["action"], "continued");
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

/// Heartbeats and the silence limit of the controllers below (the same on their agents): short,
/// so the tests notice silences within seconds.
const HEARTBEAT: &str = "500ms";
const SILENCE: Duration = Duration::from_secs(2);

/// `wsfleet controller --run` waiting for `agents`, with its HTTP API on a port of its own
/// choosing, its history in a temporary directory and the summary written as JSON.
struct RunController {
    child: std::process::Child,
    url: String,
    http_port: u16,
    summary: PathBuf,
}

impl RunController {
    fn start(dir: &Path, scenario: &Path, agents: usize) -> RunController {
        let summary = dir.join("summary.json");
        let mut child = wsfleet()
            .args([
                "controller",
                "--listen",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--wait",
                "20s",
            ])
            .args(["--agents", &agents.to_string()])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--run")
            .arg(scenario)
            .arg("--out")
            .arg(format!("json={}", summary.display()))
            .env("WSFLEET_CONTROLLER__HEARTBEAT_INTERVAL", HEARTBEAT)
            .env("WSFLEET_CONTROLLER__SILENCE_TIMEOUT", format!("{}s", SILENCE.as_secs()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start controller");
        let (url, http_port) = controller_addresses(&mut child);
        RunController {
            child,
            url,
            http_port,
            summary,
        }
    }

    fn status(&self) -> serde_json::Value {
        let (code, body) = http("GET", self.http_port, "/api/status", None, None);
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("status is JSON")
    }

    /// The state of agent `id` in the fleet view.
    fn agent_state(&self, id: &str) -> String {
        self.status()["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|agent| agent["id"] == id)
            .map(|agent| agent["state"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    }

    /// Waits for the run to end; returns the exit code and the summary.
    fn finish(&mut self, limit: Duration) -> (Option<i32>, serde_json::Value) {
        let status = wait_exit(&mut self.child, limit);
        (status.code(), read_json(&self.summary))
    }
}

impl Drop for RunController {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An agent process that reattaches when it loses its controller.
fn start_agent(controller: &str, id: &str) -> std::process::Child {
    wsfleet()
        .args(["agent", "--controller", controller, "--workers", "1", "--id", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start agent")
}

struct Agents(Vec<std::process::Child>);

impl Drop for Agents {
    fn drop(&mut self) {
        for agent in &mut self.0 {
            let _ = agent.kill();
            let _ = agent.wait();
        }
    }
}

fn kill_9(child: &mut std::process::Child) {
    let signalled = std::process::Command::new("kill")
        .arg("-9")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(signalled.success());
    let _ = child.wait();
}

/// A test server in this process, so the test reads its own counts.
fn test_server(runtime: &tokio::runtime::Runtime) -> wsfleet_testserver::TestServer {
    runtime
        .block_on(wsfleet_testserver::TestServer::start(
            "127.0.0.1:0".parse().unwrap(),
            wsfleet_testserver::Config::default(),
        ))
        .unwrap()
}

/// VUs that each hold one connection for the whole run, echoing every `think`.
fn holding_scenario(target: std::net::SocketAddr, load: &str, think: &str) -> String {
    format!(
        "name: faults\nload: {load}\nsteps:\n  - connect: {{ url: 'ws://{target}/echo' }}\n  - repeat:\n      duration: 120s\n      steps:\n        - send: {{ text: hi }}\n        - receive: {{ timeout: 5s }}\n        - think: {think}\n  - close: {{ code: 1000 }}\n"
    )
}

/// The controller's totals against the test server's own counts: every message and
/// connection the server saw was counted once, and nothing was counted that it did not see.
fn assert_totals_match_the_server(summary: &serde_json::Value, server: &wsfleet_testserver::Stats) {
    assert_eq!(
        counter(summary, "connections_opened"),
        server.total_connections,
        "connections"
    );
    assert_eq!(counter(summary, "messages_sent"), server.messages_received, "messages");
    assert_eq!(
        counter(summary, "payload_bytes_sent"),
        server.payload_bytes_received,
        "payload bytes"
    );
    // Each echo the server sent was received, except those in flight when a VU was stopped.
    let received = counter(summary, "messages_received");
    assert!(
        received <= server.messages_sent,
        "{received} > {}",
        server.messages_sent
    );
    assert!(
        server.messages_sent - received <= 8,
        "{received} of {}",
        server.messages_sent
    );
    // The per-second series adds up to the totals.
    for name in ["messages_sent", "messages_received", "connections_opened"] {
        let sum: u64 = summary["intervals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|interval| interval["counters"][name].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(sum, counter(summary, name), "{name} per interval");
    }
}

/// One agent straight to the controller, one through the proxy; the proxy cuts the network
/// in `direction` for longer than the silence limit, then heals it. Returns the summary and the
/// server's counts once the run is over.
fn cut_and_heal(direction: Direction) -> (serde_json::Value, wsfleet_testserver::Stats, FaultProxy) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = test_server(&runtime);
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(
        dir.path(),
        "cut.yaml",
        &holding_scenario(
            server.local_addr(),
            "{ vus: 4, duration: 16s, graceful_stop: 2s }",
            "100ms",
        ),
    );
    let mut controller = RunController::start(dir.path(), &scenario, 2);
    let grpc: std::net::SocketAddr = controller.url.trim_start_matches("http://").parse().unwrap();
    let proxy = FaultProxy::start(grpc);
    let _agents = Agents(vec![
        start_agent(&controller.url, "direct"),
        start_agent(&format!("http://{}", proxy.address()), "behind"),
    ]);
    wait_until(Duration::from_secs(30), "the load to start", || {
        server.stats().open_connections == 4
    });
    std::thread::sleep(Duration::from_secs(2));

    proxy.cut(Cut::Drop, direction);
    let cut_at = Instant::now();
    // The agent behind the proxy hears nothing for the silence limit and stops its load...
    wait_until(
        SILENCE + Duration::from_secs(8),
        "the cut-off agent to stop its load",
        || server.stats().open_connections == 2,
    );
    // ... and the controller marks it lost.
    wait_until(SILENCE + Duration::from_secs(8), "the agent to be marked lost", || {
        controller.agent_state("behind") == "lost"
    });
    let longer_than_the_silence = SILENCE + Duration::from_millis(1500);
    std::thread::sleep(longer_than_the_silence.saturating_sub(cut_at.elapsed()));
    proxy.heal();

    let (code, summary) = controller.finish(Duration::from_secs(60));
    wait_until(Duration::from_secs(10), "every connection to close", || {
        server.stats().open_connections == 0
    });
    let stats = server.stats();
    runtime.block_on(server.shutdown());
    assert_eq!(code, Some(0), "{summary}");
    (summary, stats, proxy)
}

#[test]
fn a_network_cut_longer_than_the_silence_limit_loses_and_doubles_no_interval() {
    let (summary, server, proxy) = cut_and_heal(Direction::Both);
    assert!(proxy.dropped_bytes() > 0, "the cut dropped traffic");
    assert!(proxy.connections() >= 2, "the agent reattached through the proxy");
    assert_eq!(summary["outcome"], "completed with lost agents", "{summary}");
    let agents = summary["agents"].as_array().unwrap();
    let behind = agents.iter().find(|agent| agent["id"] == "behind").unwrap();
    let state = behind["state"].as_str().unwrap();
    assert!(state.starts_with("lost: agent silent for"), "{state}");
    assert!(state.contains("came back and resent its reports"), "{state}");
    assert_eq!(summary["reports"]["dropped_by_agents"], 0);
    assert_eq!(summary["lost_agents"]["events"][0]["action"], "continued");
    // What the cut-off agent measured before, during and after the cut is all there, once.
    assert_totals_match_the_server(&summary, &server);
}

#[test]
fn reports_whose_acknowledgements_were_cut_are_resent_and_counted_once() {
    // Only what the controller sends is cut: the agent's reports arrive, their
    // acknowledgements and the heartbeats do not, so the agent stops and resends them all.
    let (summary, server, proxy) = cut_and_heal(Direction::Replies);
    assert!(proxy.dropped_bytes() > 0, "the cut dropped traffic");
    let duplicates = summary["reports"]["duplicates_ignored"].as_u64().unwrap();
    assert!(
        duplicates >= 1,
        "resent reports reached the controller: {}",
        summary["reports"]
    );
    assert_eq!(summary["reports"]["dropped_by_agents"], 0);
    assert_totals_match_the_server(&summary, &server);
}

/// Three agents hold `load`; agent `fleet-1` is killed with kill -9 once the load is steady.
/// Returns the controller (its run still going), the agents, the server and when the kill was.
fn kill_one_of_three(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    load: &str,
) -> (RunController, Agents, wsfleet_testserver::TestServer) {
    let server = test_server(runtime);
    let scenario = write(dir, "three.yaml", &holding_scenario(server.local_addr(), load, "200ms"));
    let controller = RunController::start(dir, &scenario, 3);
    let mut agents = Agents(
        (0..3)
            .map(|index| start_agent(&controller.url, &format!("fleet-{index}")))
            .collect(),
    );
    wait_until(Duration::from_secs(30), "the load to start", || {
        server.stats().open_connections == 6
    });
    std::thread::sleep(Duration::from_secs(1));
    kill_9(&mut agents.0[1]);
    // The kernel closes the killed agent's connections.
    wait_until(
        Duration::from_secs(10),
        "the killed agent's connections to close",
        || server.stats().open_connections < 6,
    );
    (controller, agents, server)
}

#[test]
fn redistribute_moves_a_killed_agents_vus_to_the_survivors() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut controller, _agents, server) = kill_one_of_three(
        &runtime,
        dir.path(),
        "{ vus: 6, duration: 14s, graceful_stop: 2s, on_agent_lost: redistribute }",
    );
    // The survivors open the lost agent's two connections: the server holds six again...
    wait_until(Duration::from_secs(10), "the survivors to hold the target", || {
        server.stats().open_connections == 6
    });
    // ... and so say the survivors' own reports and their new shares.
    wait_until(Duration::from_secs(10), "the fleet view to show it", || {
        let status = controller.status();
        let agents = status["agents"].as_array().unwrap();
        let survivors: Vec<&serde_json::Value> = agents.iter().filter(|agent| agent["id"] != "fleet-1").collect();
        let lost = agents.iter().find(|agent| agent["id"] == "fleet-1");
        survivors.len() == 2
            && survivors
                .iter()
                .all(|agent| agent["vus_share"] == 3 && agent["active_connections"] == 3)
            && lost.is_some_and(|agent| agent["state"] == "lost")
    });
    // The level holds for the rest of the run.
    for _ in 0..10 {
        assert_eq!(server.stats().open_connections, 6);
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, summary) = controller.finish(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{summary}");
    assert_eq!(summary["outcome"], "completed with lost agents");
    let lost = &summary["lost_agents"];
    assert_eq!(lost["policy"], "redistribute");
    assert_eq!(lost["events"].as_array().unwrap().len(), 1);
    assert_eq!(lost["events"][0]["agent"], "fleet-1");
    assert_eq!(lost["events"][0]["action"], "redistributed", "{lost}");
    assert_eq!(lost["events"][0]["vus"], 2);
    for agent in summary["agents"].as_array().unwrap() {
        let expected = if agent["id"] == "fleet-1" { 2 } else { 3 };
        assert_eq!(agent["vus"], expected, "{agent}");
    }
    assert_eq!(summary["totals"]["peak_active_connections"], 6);
    // Two connections more than the six at the start, none less.
    assert_eq!(server.stats().total_connections, 8);
    runtime.block_on(server.shutdown());
}

#[test]
fn abort_stops_the_run_when_an_agent_is_killed_and_says_why() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (mut controller, _agents, server) = kill_one_of_three(
        &runtime,
        dir.path(),
        "{ vus: 6, duration: 60s, graceful_stop: 1s, on_agent_lost: abort }",
    );
    // The others stop gracefully, long before the plan's minute.
    let (code, summary) = controller.finish(Duration::from_secs(30));
    assert!(started.elapsed() < Duration::from_secs(45));
    assert_eq!(
        code,
        Some(7),
        "the documented exit code of a run aborted by a lost agent"
    );
    let outcome = summary["outcome"].as_str().unwrap();
    assert!(outcome.starts_with("aborted: agent `fleet-1` was lost ("), "{outcome}");
    let lost = &summary["lost_agents"];
    assert_eq!(lost["policy"], "abort");
    assert_eq!(lost["events"][0]["agent"], "fleet-1");
    assert_eq!(lost["events"][0]["action"], "aborted");
    wait_until(
        Duration::from_secs(10),
        "the survivors to close their connections",
        || server.stats().open_connections == 0,
    );
    // The history says so too.
    let history = wsfleet_controller::history::History::open(&dir.path().join("data")).unwrap();
    assert_eq!(history.list_runs(1).unwrap()[0].status, "aborted");
    runtime.block_on(server.shutdown());
}

#[test]
fn continue_goes_on_without_a_killed_agents_share() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut controller, _agents, server) = kill_one_of_three(
        &runtime,
        dir.path(),
        "{ vus: 6, duration: 8s, graceful_stop: 1s, on_agent_lost: continue }",
    );
    wait_until(Duration::from_secs(10), "the agent to be marked lost", || {
        controller.agent_state("fleet-1") == "lost"
    });
    // Nobody takes the lost share: the level stays at four.
    for _ in 0..10 {
        assert_eq!(server.stats().open_connections, 4);
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, summary) = controller.finish(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{summary}");
    assert_eq!(summary["outcome"], "completed with lost agents");
    assert_eq!(summary["lost_agents"]["policy"], "continue");
    assert_eq!(summary["lost_agents"]["events"][0]["action"], "continued");
    assert_eq!(server.stats().total_connections, 6);
    runtime.block_on(server.shutdown());
}

#[test]
fn redistribute_keeps_an_open_model_rate_when_an_agent_is_killed() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = test_server(&runtime);
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(
        dir.path(),
        "open.yaml",
        &format!(
            "name: open-faults\nload: {{ model: open, rate: 30, duration: 12s, max_vus: 90, graceful_stop: 2s, on_agent_lost: redistribute }}\nsteps:\n  - connect: {{ url: 'ws://{}/echo' }}\n  - send: {{ text: hi }}\n  - receive: {{ timeout: 5s }}\n  - think: 300ms\n  - close: {{ code: 1000 }}\n",
            server.local_addr()
        ),
    );
    let mut controller = RunController::start(dir.path(), &scenario, 3);
    let mut agents = Agents(
        (0..3)
            .map(|index| start_agent(&controller.url, &format!("fleet-{index}")))
            .collect(),
    );
    wait_until(Duration::from_secs(30), "four seconds of arrivals", || {
        controller.status()["run"]["seconds"].as_f64().unwrap_or(0.0) >= 4.0
    });
    kill_9(&mut agents.0[1]);
    let (code, summary) = controller.finish(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{summary}");
    let event = &summary["lost_agents"]["events"][0];
    assert_eq!(event["action"], "redistributed", "{event}");
    // From the second after the takeover (noticed + 0.5 s) to the end, the survivors offer
    // every arrival of the fleet: 30 a second. An arrival is counted when the executor gets to
    // it, so one due just before a second's end may be counted in the next: every second is
    // 30 within that, and all of them together are exactly the arrivals due from the takeover's
    // second to the end, plus at most what spilled over from the second before.
    let takeover = event["at_seconds"].as_f64().unwrap() + 0.5;
    let first = takeover.ceil() as u64;
    let offered: Vec<(u64, u64)> = summary["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|interval| {
            (
                interval["interval"].as_u64().unwrap(),
                interval["counters"]["vus_offered"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let near_30 = |count: u64| count.abs_diff(30) <= 2;
    let after: Vec<u64> = offered
        .iter()
        .filter(|(interval, _)| *interval >= first)
        .map(|(_, count)| *count)
        .collect();
    assert!(first <= 8, "{takeover}");
    assert!(
        after.iter().take((12 - first) as usize).all(|count| near_30(*count)),
        "{offered:?}"
    );
    let due = 30 * (12 - first);
    let total: u64 = after.iter().sum();
    assert!(
        (due..=due + 2).contains(&total),
        "{total} offered after {first} s: {offered:?}"
    );
    // Before the kill all three did.
    assert!(offered.iter().take(3).all(|(_, count)| near_30(*count)), "{offered:?}");
    runtime.block_on(server.shutdown());
}
