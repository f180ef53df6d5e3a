//! End to end: `wsfleet run` with real agent processes, the real test server and real gRPC.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

/// The exact size of the upgrade request tungstenite writes for `ws://HOST:PORT/echo` with no
/// extra headers: request line, Host, Connection, Upgrade, Sec-WebSocket-Version and a 24-byte
/// Sec-WebSocket-Key, then the blank line.
fn echo_scenario(url: &str) -> String {
    let body = "x".repeat(100);
    format!(
        "name: exact-echo
target: {url}
load: {{ vus: 50, iterations: 1 }}
steps:
  - connect: {{ url: '${{target}}' }}
  - repeat:
      count: 20
      steps:
        - send: {{ name: message, text: '{body}' }}
        - receive: {{ timeout: 5s, latency_of: message }}
  - close: {{ code: 1000 }}
"
    )
}

#[test]
fn fifty_connections_twenty_echoes_two_agents_counts_are_exact() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime
        .block_on(wsfleet_testserver::TestServer::start(
            "127.0.0.1:0".parse().unwrap(),
            wsfleet_testserver::Config::default(),
        ))
        .expect("test server");
    let address = server.local_addr();
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(dir.path(), "echo.yaml", &echo_scenario(&format!("ws://{address}/echo")));
    let out = dir.path().join("summary.json");

    let mut command = wsfleet();
    command
        .arg("run")
        .arg(&scenario)
        .args(["--agents", "2", "--quiet"])
        .arg("--out")
        .arg(format!("json={}", out.display()));
    let output = run_bounded(command, Duration::from_secs(60));
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        text(&output.stderr)
    );
    assert!(stdout.contains("New Connections"), "{stdout}");

    let summary = read_json(&out);
    assert_eq!(
        counter(&summary, "connections_opened"),
        50,
        "{summary:#}\nstderr:\n{}",
        text(&output.stderr)
    );
    assert_eq!(counter(&summary, "connections_failed"), 0);
    assert_eq!(counter(&summary, "messages_sent"), 1000);
    assert_eq!(counter(&summary, "messages_received"), 1000);
    assert_eq!(counter(&summary, "text_messages_sent"), 1000);
    assert_eq!(counter(&summary, "payload_bytes_sent"), 100_000);
    assert_eq!(counter(&summary, "payload_bytes_received"), 100_000);
    assert_eq!(counter(&summary, "iterations"), 50);
    assert_eq!(counter(&summary, "iterations_failed"), 0);
    assert_eq!(counter(&summary, "connections_closed"), 50);

    // Wire bytes: handshakes plus frames. A client text frame of 100 bytes is 2 header bytes,
    // a 4-byte mask and the payload; the server's is unmasked. Close frames carry the 2-byte code.
    let request_len = upgrade_request_len(&address.to_string(), "/echo");
    assert_eq!(counter(&summary, "handshake_bytes_sent"), 50 * request_len);
    assert_eq!(
        counter(&summary, "bytes_sent"),
        counter(&summary, "handshake_bytes_sent") + 1000 * (2 + 4 + 100) + 50 * (2 + 4 + 2)
    );
    assert_eq!(
        counter(&summary, "bytes_received"),
        counter(&summary, "handshake_bytes_received") + 1000 * (2 + 100) + 50 * (2 + 2)
    );
    assert!(
        counter(&summary, "handshake_bytes_received") >= 50 * 129,
        "a 101 response is at least 129 bytes"
    );

    // Latency histograms hold one value per event.
    assert_eq!(summary["totals"]["latency"]["message_latency"]["count"], 1000);
    assert_eq!(summary["totals"]["latency"]["handshake"]["count"], 50);
    assert_eq!(summary["totals"]["close_codes"]["1000"], 50);

    // The two agents split the 50 VUs exactly.
    let agents = summary["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 2);
    assert_eq!(
        agents.iter().map(|agent| agent["vus"].as_u64().unwrap()).sum::<u64>(),
        50
    );

    // Per-interval series add up to the totals.
    let intervals = summary["intervals"].as_array().unwrap();
    let sum = |name: &str| {
        intervals
            .iter()
            .map(|interval| interval["counters"][name].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    assert_eq!(sum("messages_sent"), 1000);
    assert_eq!(sum("bytes_sent"), counter(&summary, "bytes_sent"));

    // The server saw the same traffic.
    let stats = server.stats();
    assert_eq!(stats.total_connections, 50);
    assert_eq!(stats.messages_received, 1000);
    assert_eq!(stats.payload_bytes_received, 100_000);
    runtime.block_on(server.shutdown());
}

#[test]
fn closed_port_counts_fifty_refused_connections_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let scenario = write(
        dir.path(),
        "closed.yaml",
        &echo_scenario(&format!("ws://127.0.0.1:{port}/echo")),
    );
    let out = dir.path().join("summary.json");
    let mut command = wsfleet();
    command
        .arg("run")
        .arg(&scenario)
        .args(["--agents", "2", "--quiet"])
        .arg("--out")
        .arg(format!("json={}", out.display()));
    let output = run_bounded(command, Duration::from_secs(60));
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(6),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&output.stderr)
    );
    let summary = read_json(&out);
    assert_eq!(counter(&summary, "connections_failed"), 50);
    assert_eq!(counter(&summary, "connections_opened"), 0);
    assert_eq!(counter(&summary, "messages_sent"), 0);
    assert_eq!(summary["totals"]["errors"]["refused"], 50);
    assert!(
        stdout.contains("refused"),
        "the summary names the error kind:\n{stdout}"
    );
    assert!(text(&output.stderr).contains("every connection attempt failed"));
}

#[test]
fn scenario_error_names_file_line_column_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(
        dir.path(),
        "bad.yaml",
        "name: bad\nload: { vus: 1, iterations: 1 }\nsteps:\n  - connect:\n      urll: ws://127.0.0.1:1/\n",
    );
    for subcommand in ["validate", "run"] {
        let mut command = wsfleet();
        command.arg(subcommand).arg(&scenario);
        let output = run_bounded(command, Duration::from_secs(30));
        assert_eq!(output.status.code(), Some(3), "{subcommand}");
        let stderr = text(&output.stderr);
        let expected = format!(
            "{}:5:7: field `steps[0].connect.urll`: unknown field `urll`",
            scenario.display()
        );
        assert!(stderr.contains(&expected), "{subcommand}: {stderr}");
        assert!(stderr.contains("did you mean `url`?"), "{stderr}");
    }
}

#[test]
fn validate_accepts_every_example_scenario() {
    let examples = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios")).unwrap();
    let mut checked = 0;
    for entry in examples {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|extension| extension == "yaml") {
            let mut command = wsfleet();
            command.arg("validate").arg(&path);
            let output = run_bounded(command, Duration::from_secs(30));
            assert!(output.status.success(), "{}: {}", path.display(), text(&output.stderr));
            checked += 1;
        }
    }
    assert!(checked >= 1);
}

#[test]
fn ctrl_c_stops_gracefully_and_still_reports() {
    stops_gracefully_and_still_reports_on("-INT");
}

/// `docker stop`, Kubernetes and systemd ask a service to stop with SIGTERM: the same orderly
/// stop as Ctrl-C.
#[test]
fn sigterm_stops_gracefully_and_still_reports() {
    stops_gracefully_and_still_reports_on("-TERM");
}

fn stops_gracefully_and_still_reports_on(signal: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime
        .block_on(wsfleet_testserver::TestServer::start(
            "127.0.0.1:0".parse().unwrap(),
            wsfleet_testserver::Config::default(),
        ))
        .expect("test server");
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(
        dir.path(),
        "long.yaml",
        &format!(
            "name: long
load: {{ vus: 20, duration: 60s, graceful_stop: 10s }}
steps:
  - connect: {{ url: 'ws://{}/echo' }}
  - repeat:
      count: 5
      steps:
        - send: {{ text: hello }}
        - receive: {{ timeout: 5s }}
        - think: 100ms
  - close: {{ code: 1000 }}
",
            server.local_addr()
        ),
    );
    let out = dir.path().join("summary.json");
    let mut child = wsfleet()
        .arg("run")
        .arg(&scenario)
        .args(["--agents", "2", "--quiet"])
        .arg("--out")
        .arg(format!("json={}", out.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let the load run, then interrupt the way a terminal does.
    let started = std::time::Instant::now();
    while server.stats().total_connections < 40 {
        assert!(started.elapsed() < Duration::from_secs(30), "load never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let signalled = std::process::Command::new("kill")
        .arg(signal)
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(signalled.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "wsfleet did not stop after kill {signal}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(130), "stderr:\n{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("stopped after"),
        "{}",
        text(&output.stdout)
    );

    let summary = read_json(&out);
    assert_eq!(summary["outcome"], "stopped");
    // Iterations finished: every connection was closed by a close handshake with code 1000.
    let opened = counter(&summary, "connections_opened");
    assert!(opened >= 40);
    assert_eq!(counter(&summary, "connections_closed"), opened);
    assert_eq!(summary["totals"]["close_codes"]["1000"].as_u64(), Some(opened));
    assert_eq!(counter(&summary, "iterations"), opened);
    assert_eq!(counter(&summary, "iterations_failed"), 0);
    assert_eq!(counter(&summary, "messages_sent"), 5 * opened);
    assert_eq!(counter(&summary, "messages_received"), 5 * opened);
    // The server agrees: nothing is left open.
    let stats = server.stats();
    assert_eq!(stats.open_connections, 0);
    assert_eq!(stats.total_connections, opened);
    runtime.block_on(server.shutdown());
}

/// A scenario of one VU that connects once to a port nothing listens on.
fn one_refused_connection(dir: &std::path::Path) -> std::path::PathBuf {
    let url = format!("ws://127.0.0.1:{}/", closed_port());
    let source = format!("load: {{ vus: 1, iterations: 1 }}\nsteps:\n  - connect: {{ url: '{url}' }}\n");
    write(dir, "one.yaml", &source)
}

/// Starts `wsfleet run` of a one-connection scenario that lingers, its HTTP endpoints on a known
/// port, with `config` as its configuration file and `environment` added; returns the process
/// and the port once the port answers.
fn lingering_run(dir: &std::path::Path, config: &str, environment: &[(&str, &str)]) -> (std::process::Child, u16) {
    let scenario = one_refused_connection(dir);
    let config = write(dir, "wsfleet.toml", config);
    let port = closed_port();
    let mut command = wsfleet();
    command
        .arg("run")
        .arg(&scenario)
        .arg("--config")
        .arg(&config)
        .args(["--quiet", "--linger", "30s", "--http", &format!("127.0.0.1:{port}")])
        .envs(environment.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = command.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "wsfleet run exited early");
        assert!(std::time::Instant::now() < deadline, "the HTTP port never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, port)
}

#[test]
fn run_takes_its_settings_from_the_config_file_then_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[controller]\napi_token = \"from-file\"\n";

    // The file's API token guards the run's dashboard and API.
    let (mut child, port) = lingering_run(dir.path(), config, &[]);
    let without = http("GET", port, "/api/status", None, None).0;
    let with_file = http("GET", port, "/api/status", Some("from-file"), None).0;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((without, with_file), (401, 200));

    // The environment overrides the file.
    let (mut child, port) = lingering_run(dir.path(), config, &[("WSFLEET_CONTROLLER__API_TOKEN", "from-env")]);
    let with_file = http("GET", port, "/api/status", Some("from-file"), None).0;
    let with_environment = http("GET", port, "/api/status", Some("from-env"), None).0;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((with_file, with_environment), (401, 200));

    // The agents' channel settings are read, and checked, too.
    let scenario = write(
        dir.path(),
        "none.yaml",
        "load: { vus: 1, iterations: 1 }\nsteps:\n  - think: 1ms\n",
    );
    let mut command = wsfleet();
    command
        .arg("run")
        .arg(&scenario)
        .env("WSFLEET_CONTROLLER__HEARTBEAT_INTERVAL", "often");
    let output = run_bounded(command, Duration::from_secs(30));
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("configuration `controller.heartbeat_interval` = `often` is not a duration"),
        "{stderr}"
    );
}

#[test]
fn run_gives_its_local_agents_the_configured_token() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = one_refused_connection(dir.path());
    let out = dir.path().join("summary.json");
    let mut command = wsfleet();
    command
        .arg("run")
        .arg(&scenario)
        .args(["--quiet", "--agents", "2"])
        .arg("--out")
        .arg(format!("json={}", out.display()))
        .env("WSFLEET_CONTROLLER__TOKEN", "agents-secret");
    let output = run_bounded(command, Duration::from_secs(60));
    // The agents attached with the token and played: the one connection was refused.
    assert_eq!(output.status.code(), Some(6), "{}", text(&output.stderr));
    let summary = read_json(&out);
    assert_eq!(summary["agents"].as_array().map(Vec::len), Some(2));
    assert_eq!(counter(&summary, "connections_failed"), 1);
}
