//! The agent-controller contract over real gRPC between real processes.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::*;

/// Starts `wsfleet controller` on a free port; returns the child and its gRPC URL.
fn start_controller(extra: &[&str]) -> (std::process::Child, String) {
    let data = std::env::temp_dir().join(format!("wsfleet-test-{}-{}", std::process::id(), extra.len()));
    let mut child = wsfleet()
        .args(["controller", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start controller");
    let stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver
        .recv_timeout(Duration::from_secs(20))
        .expect("controller printed its address");
    let url = line.trim().rsplit(' ').next().expect("url").to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    (child, url)
}

#[test]
fn agent_of_another_protocol_version_is_refused_clearly() {
    let (mut controller, url) = start_controller(&[]);
    let mut agent = wsfleet();
    agent.args(["agent", "--controller", &url, "--once", "--protocol-version", "99"]);
    let output = run_bounded(agent, Duration::from_secs(30));
    let _ = controller.kill();
    let _ = controller.wait();
    assert_eq!(output.status.code(), Some(4));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("the controller refused this agent"), "{stderr}");
    assert!(stderr.contains("protocol version 99"), "{stderr}");
    assert!(stderr.contains("this controller speaks version 1"), "{stderr}");
}

#[test]
fn an_agent_weight_out_of_range_is_refused_before_it_dials() {
    for weight in ["-1", "1e7", "NaN", "1e-9"] {
        let mut agent = wsfleet();
        agent.args([
            "agent",
            "--controller",
            "http://127.0.0.1:9",
            "--once",
            &format!("--weight={weight}"),
        ]);
        let output = run_bounded(agent, Duration::from_secs(30));
        assert_eq!(output.status.code(), Some(3), "--weight {weight}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("configuration `agent.weight`") && stderr.contains("from 0.000001 to 1000000"),
            "--weight {weight}: {stderr}"
        );
    }
}

#[test]
fn agent_with_a_wrong_token_is_refused() {
    let (mut controller, url) = start_controller(&["--token", "s3cret"]);
    let mut agent = wsfleet();
    agent.args(["agent", "--controller", &url, "--once", "--token", "guess"]);
    let output = run_bounded(agent, Duration::from_secs(30));
    let _ = controller.kill();
    let _ = controller.wait();
    assert_eq!(output.status.code(), Some(4));
    assert!(
        text(&output.stderr).contains("wrong or missing token"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn controller_runs_a_scenario_once_agents_dial_in() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(
        dir.path(),
        "echo.yaml",
        "name: dial-in
testserver: { port: 0 }
load: { vus: 6, iterations: 2 }
steps:
  - connect: { url: '${testserver.url}/echo' }
  - send: { text: ping }
  - receive: { timeout: 5s }
  - close: {}
",
    );
    let out = dir.path().join("summary.json");
    let (mut controller, url) = start_controller(&[
        "--run",
        scenario.to_str().unwrap(),
        "--agents",
        "2",
        "--wait",
        "30s",
        "--out",
        &format!("json={}", out.display()),
    ]);
    let agents: Vec<_> = (0..2)
        .map(|index| {
            wsfleet()
                .args([
                    "agent",
                    "--controller",
                    &url,
                    "--once",
                    "--workers",
                    "1",
                    "--id",
                    &format!("dialer-{index}"),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("agent")
        })
        .collect();
    let status = wait_exit(&mut controller, Duration::from_secs(60));
    for mut agent in agents {
        let _ = agent.kill();
        let _ = agent.wait();
    }
    assert!(status.success(), "{status:?}");
    let summary = read_json(&out);
    assert_eq!(counter(&summary, "connections_opened"), 12);
    assert_eq!(counter(&summary, "messages_received"), 12);
    assert_eq!(summary["agents"].as_array().unwrap().len(), 2);
}
