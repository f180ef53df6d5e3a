//! Exposed safely by default: a controller whose HTTP endpoints or agents' channel would listen
//! beyond this host (here `0.0.0.0`, port 0) without a token is refused before it listens, with
//! the flag that would allow it named; with tokens, or with the explicit `--insecure-no-*` flags
//! (or their settings), it serves; on loopback nothing changes.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::*;

/// Runs `wsfleet controller` with `arguments` (and `environment`) on 0.0.0.0 with port 0 for both
/// listeners, its history in `data`, expecting it to be refused at once: returns its stderr.
fn refused_controller(data: &std::path::Path, arguments: &[&str], environment: &[(&str, &str)]) -> String {
    let mut command = wsfleet();
    command
        .args(["controller", "--listen", "0.0.0.0:0", "--http", "0.0.0.0:0"])
        .arg("--data-dir")
        .arg(data)
        .args(arguments)
        .envs(environment.iter().copied());
    let output = run_bounded(command, Duration::from_secs(20));
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    // Refused before anything was opened or bound: it printed no address, made no history.
    assert_eq!(text(&output.stdout), "", "{stderr}");
    assert!(!data.exists(), "the history was created before the refusal");
    stderr
}

/// A controller that serves: the process, its gRPC port and its HTTP port, read from the two
/// lines it prints (within a bound); then its stdout is drained. Both are reached on 127.0.0.1.
struct Serving {
    controller: std::process::Child,
    grpc_port: u16,
    http_port: u16,
    _data: tempfile::TempDir,
}

impl Serving {
    /// Listening on 0.0.0.0, port 0, for both.
    fn exposed(arguments: &[&str], environment: &[(&str, &str)]) -> Serving {
        Serving::start("0.0.0.0:0", "0.0.0.0:0", arguments, environment)
    }

    fn start(listen: &str, http: &str, arguments: &[&str], environment: &[(&str, &str)]) -> Serving {
        let data = tempfile::tempdir().unwrap();
        let mut controller = wsfleet()
            .args(["controller", "--listen", listen, "--http", http])
            .arg("--data-dir")
            .arg(data.path())
            .args(arguments)
            .envs(environment.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = controller.stdout.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            for _ in 0..2 {
                let mut line = String::new();
                if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let _ = sender.send(line);
            }
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        });
        let mut lines = Vec::new();
        while lines.len() < 2 {
            match receiver.recv_timeout(Duration::from_secs(20)) {
                Ok(line) => lines.push(line),
                Err(_) => {
                    let _ = controller.kill();
                    let output = controller.wait_with_output().unwrap();
                    panic!("the controller did not serve: {lines:?}\n{}", text(&output.stderr));
                }
            }
        }
        // "... listening for agents on http://HOST:PORT", "dashboard at http://HOST:PORT/ ...".
        let port = |line: &str| -> u16 {
            let address = line
                .split("http://")
                .nth(1)
                .and_then(|rest| rest.split(['/', ' ', '\n']).next());
            let port = address
                .and_then(|address| address.rsplit_once(':'))
                .map(|(_, port)| port.parse());
            port.and_then(Result::ok)
                .unwrap_or_else(|| panic!("no port in {line:?}"))
        };
        Serving {
            grpc_port: port(&lines[0]),
            http_port: port(&lines[1]),
            controller,
            _data: data,
        }
    }

    /// An agent with `token` that exits once it is refused or its controller goes.
    fn agent(&self, token: Option<&str>) -> std::process::Command {
        let mut command = wsfleet();
        command
            .args(["agent", "--once", "--workers", "1", "--id", "probe", "--controller"])
            .arg(format!("http://127.0.0.1:{}", self.grpc_port))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(token) = token {
            command.args(["--token", token]);
        }
        command
    }

    /// The agents /api/status lists, waiting (bounded) until there are `count`.
    fn wait_agents(&self, token: Option<&str>, count: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (code, body) = http("GET", self.http_port, "/api/status", token, None);
            assert_eq!(code, 200, "{body}");
            let status: serde_json::Value = serde_json::from_str(&body).unwrap();
            if status["agents"].as_array().map(Vec::len) == Some(count) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{count} agent(s) never attached: {body}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.controller.kill();
        let _ = self.controller.wait();
    }
}

#[test]
fn a_controller_open_to_the_network_without_tokens_is_refused_naming_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let stderr = refused_controller(&data, &[], &[]);
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    let (agents, http) = (stderr.lines().next().unwrap(), stderr.lines().nth(1).unwrap());
    assert!(
        agents.starts_with("error: refusing to accept agents on 0.0.0.0:0"),
        "{stderr}"
    );
    assert!(agents.contains("add `--insecure-no-agent-token`"), "{stderr}");
    assert!(agents.contains("`--token TOKEN` (`controller.token`"), "{stderr}");
    assert!(
        http.starts_with("error: refusing to serve the dashboard and /api on 0.0.0.0:0"),
        "{stderr}"
    );
    assert!(http.contains("add `--insecure-no-api-token`"), "{stderr}");
    assert!(http.contains("`--api-token TOKEN` (`controller.api_token`"), "{stderr}");

    // One guarded, the other still refused alone.
    let stderr = refused_controller(&data, &["--token", "agents-secret"], &[]);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--insecure-no-api-token"), "{stderr}");
    let stderr = refused_controller(&data, &[], &[("WSFLEET_CONTROLLER__API_TOKEN", "api-secret")]);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--insecure-no-agent-token"), "{stderr}");
    // An empty token is no token.
    let stderr = refused_controller(&data, &["--insecure-no-agent-token", "--api-token", ""], &[]);
    assert!(stderr.contains("--insecure-no-api-token"), "{stderr}");

    // The HTTP endpoints of `wsfleet run` too (its agents attach on loopback).
    let scenario = write(
        dir.path(),
        "none.yaml",
        "load: { vus: 1, iterations: 1 }\nsteps:\n  - think: 1ms\n",
    );
    let mut command = wsfleet();
    command
        .arg("run")
        .arg(&scenario)
        .args(["--quiet", "--http", "0.0.0.0:0"]);
    let output = run_bounded(command, Duration::from_secs(20));
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("refusing to serve the dashboard and /api on 0.0.0.0:0"),
        "{stderr}"
    );
    assert!(stderr.contains("--insecure-no-api-token"), "{stderr}");
}

#[test]
fn with_both_tokens_a_controller_serves_the_network_and_asks_for_them() {
    let exposed = Serving::exposed(&["--token", "agents-secret", "--api-token", "api-secret"], &[]);
    assert_eq!(http("GET", exposed.http_port, "/api/status", None, None).0, 401);
    assert_eq!(
        http("GET", exposed.http_port, "/api/status", Some("api-secret"), None).0,
        200
    );
    // An agent without the token is refused; with it, it attaches.
    let refused = run_bounded(exposed.agent(None), Duration::from_secs(20));
    assert_eq!(refused.status.code(), Some(4), "{}", text(&refused.stderr));
    let mut agent = exposed.agent(Some("agents-secret")).spawn().unwrap();
    exposed.wait_agents(Some("api-secret"), 1);
    let _ = agent.kill();
    let _ = agent.wait();
}

#[test]
fn the_insecure_flags_and_their_settings_open_a_controller_on_purpose() {
    // One by flag, the other by the environment: both layers are read.
    let exposed = Serving::exposed(
        &["--insecure-no-agent-token"],
        &[("WSFLEET_CONTROLLER__INSECURE_NO_API_TOKEN", "true")],
    );
    let mut agent = exposed.agent(None).spawn().unwrap();
    exposed.wait_agents(None, 1);
    let _ = agent.kill();
    let _ = agent.wait();
    drop(exposed);

    // And by the configuration file.
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "wsfleet.toml",
        "[controller]\ninsecure_no_api_token = true\ninsecure_no_agent_token = true\n",
    );
    let exposed = Serving::exposed(&["--config", config.to_str().unwrap()], &[]);
    assert_eq!(http("GET", exposed.http_port, "/api/status", None, None).0, 200);
}

#[test]
fn on_loopback_nothing_is_asked() {
    // Any address of 127.0.0.0/8; no token and no flag: agents attach, the API is open.
    let serving = Serving::start("127.0.0.1:0", "127.0.0.1:0", &[], &[]);
    let mut agent = serving.agent(None).spawn().unwrap();
    serving.wait_agents(None, 1);
    let _ = agent.kill();
    let _ = agent.wait();
    drop(serving);
    // A host name that resolves to loopback only.
    let serving = Serving::start("127.0.0.1:0", "localhost:0", &[], &[]);
    let status = serving_alive(serving);
    assert_eq!(status, None, "the controller on localhost exited");
}

/// Whether the controller is still running once it has printed both addresses.
fn serving_alive(mut serving: Serving) -> Option<std::process::ExitStatus> {
    std::thread::sleep(Duration::from_millis(200));
    serving.controller.try_wait().unwrap()
}
