//! Helpers for end-to-end tests of the real `wsfleet` binary: every process and socket is real,
//! on 127.0.0.1 with ports picked by the kernel, and every wait is bounded.

#![allow(dead_code)]

pub mod brokers;
pub mod browser;
pub mod connect_proxy;
pub mod junit;
pub mod proxy;
pub mod python;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The `wsfleet` binary under test.
pub fn wsfleet() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wsfleet"));
    command.stdin(Stdio::null());
    command
}

/// The length of the upgrade request the agent writes for `path` on `host_port` (its key is
/// always 24 base64 characters).
pub fn upgrade_request_len(host_port: &str, path: &str) -> u64 {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {}\r\n\r\n",
        "x".repeat(24)
    );
    request.len() as u64
}

/// Runs `command` to completion within `limit`, killing it past that.
pub fn run_bounded(mut command: Command, limit: Duration) -> Output {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn wsfleet");
    let deadline = std::time::Instant::now() + limit;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "wsfleet did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes `contents` to `name` in `dir`.
pub fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write file");
    path
}

/// Writes `scenario` as `file_name` in a temporary folder and runs it with `wsfleet run` on
/// `agents` local agents, bounded by `limit`; returns the JSON summary and the exit code, or fails
/// with the run's output when it wrote no summary.
pub fn run_summary(file_name: &str, scenario: &str, agents: u32, limit: Duration) -> (serde_json::Value, i32) {
    let dir = tempfile::tempdir().expect("a temporary folder for the run");
    let path = write(dir.path(), file_name, scenario);
    let out = dir.path().join("summary.json");
    let mut command = wsfleet();
    command
        .arg("run")
        .arg(&path)
        .args(["--agents", &agents.to_string(), "--quiet", "--out"])
        .arg(format!("json={}", out.display()));
    let output = run_bounded(command, limit);
    let code = output.status.code().unwrap_or(-1);
    assert!(
        out.exists(),
        "no summary (exit {code})\nstdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    (read_json(&out), code)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A port nothing listens on (bound then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Reads the summary JSON a run wrote.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    serde_json::from_str(&text).expect("summary is JSON")
}

/// One metric set of a summary (a step, a handler, an event's `event:NAME`), by name.
pub fn metric_set<'a>(summary: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    summary["steps"]
        .as_array()
        .expect("the summary lists its steps")
        .iter()
        .find(|set| set["name"] == name)
        .unwrap_or_else(|| panic!("no step `{name}` in {summary:#}"))
}

/// A counter of one metric set (0 when the set counted nothing of it).
pub fn step_counter(summary: &serde_json::Value, name: &str, counter: &str) -> u64 {
    metric_set(summary, name)["counters"][counter].as_u64().unwrap_or(0)
}

/// How many samples one metric set's histogram `hist` holds (0 when it has none).
pub fn step_latency_count(summary: &serde_json::Value, name: &str, hist: &str) -> u64 {
    metric_set(summary, name)["latency"][hist]["count"]
        .as_u64()
        .unwrap_or(0)
}

pub fn counter(summary: &serde_json::Value, name: &str) -> u64 {
    summary["totals"]["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("counter {name} missing"))
}

/// A minimal HTTP/1.1 client for tests: returns (status, body).
pub fn http(method: &str, port: u16, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the controller's HTTP port");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("write request");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, rest) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    (status, if chunked { dechunk(rest) } else { rest.to_owned() })
}

pub fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// A test server with its default settings on 127.0.0.1, at a port the kernel picks, served by
/// `runtime`.
pub fn test_server(runtime: &tokio::runtime::Runtime) -> wsfleet_testserver::TestServer {
    runtime
        .block_on(wsfleet_testserver::TestServer::start(
            "127.0.0.1:0".parse().expect("an address"),
            wsfleet_testserver::Config::default(),
        ))
        .expect("the test server starts")
}

/// A controller with `agents` local agent processes attached, its HTTP API on a known port.
pub struct Fleet {
    pub controller: std::process::Child,
    pub agents: Vec<std::process::Child>,
    pub http_port: u16,
    /// The controller's gRPC address, for agents started later.
    pub url: String,
    pub data: tempfile::TempDir,
}

impl Fleet {
    pub fn start(agents: usize, extra: &[&str]) -> Fleet {
        let data = tempfile::tempdir().expect("tempdir");
        let mut controller = wsfleet()
            .args(["controller", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data.path())
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start controller");
        let (url, http_port) = controller_addresses(&mut controller);
        let agents = (0..agents)
            .map(|index| {
                wsfleet()
                    .args([
                        "agent",
                        "--controller",
                        &url,
                        "--workers",
                        "1",
                        "--id",
                        &format!("fleet-{index}"),
                    ])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("start agent")
            })
            .collect();
        Fleet {
            controller,
            agents,
            http_port,
            url,
            data,
        }
    }

    /// Waits until `count` agents are attached.
    pub fn wait_agents(&self, token: Option<&str>, count: usize) {
        self.wait_status(token, Duration::from_secs(20), &format!("{count} agents"), |status| {
            status["agents"].as_array().is_some_and(|agents| agents.len() == count)
        });
    }

    /// Waits until `condition` holds for /api/status.
    pub fn wait_status(
        &self,
        token: Option<&str>,
        limit: Duration,
        what: &str,
        condition: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let (code, body) = http("GET", self.http_port, "/api/status", token, None);
            if code == 200 {
                let status: serde_json::Value = serde_json::from_str(&body).expect("status is JSON");
                if condition(&status) {
                    return status;
                }
            }
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for agent in &mut self.agents {
            let _ = agent.kill();
            let _ = agent.wait();
        }
        let _ = self.controller.kill();
        let _ = self.controller.wait();
    }
}

/// A scenario that runs until stopped, against its own test server.
pub const LONG_SCENARIO: &str = "name: long
testserver: { port: 0 }
load: { vus: 6, duration: 60s, graceful_stop: 2s }
steps:
  - connect: { url: '${testserver.url}/echo' }
  - repeat:
      count: 20
      steps:
        - send: { name: message, text: hello }
        - receive: { name: echo, timeout: 5s }
        - think: 50ms
  - close: { code: 1000 }
";

/// Reads a controller's gRPC URL from the first line it prints, and keeps reading what follows
/// (as a terminal would) so the controller never writes to a closed pipe.
pub fn controller_url(controller: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let mut stdout = std::io::BufReader::new(controller.stdout.take().expect("controller stdout is piped"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("controller address");
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    line.trim().rsplit(' ').next().expect("url").to_owned()
}

/// Reads a controller's gRPC URL and, once it serves HTTP, its dashboard port from what it
/// prints; then keeps reading (as a terminal would) so it never writes to a closed pipe.
pub fn controller_addresses(controller: &mut std::process::Child) -> (String, u16) {
    use std::io::BufRead;
    let mut stdout = std::io::BufReader::new(controller.stdout.take().expect("controller stdout is piped"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("controller address");
    let url = line.trim().rsplit(' ').next().expect("url").to_owned();
    // "dashboard at http://127.0.0.1:PORT/ (metrics at /metrics)", once the HTTP port is bound.
    let mut dashboard = String::new();
    while !dashboard.contains("dashboard at") {
        dashboard.clear();
        assert!(
            stdout.read_line(&mut dashboard).expect("controller output") > 0,
            "the controller exited before serving HTTP"
        );
    }
    let http_port = dashboard
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|port| port.parse().ok())
        .expect("dashboard port");
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    (url, http_port)
}

/// Starts `wsfleet controller --run SCENARIO`, waiting for `agents` agents, its history in
/// `data`; returns it with its gRPC URL.
pub fn start_run_controller(
    data: &Path,
    scenario: &Path,
    agents: usize,
    stderr: std::process::Stdio,
) -> (std::process::Child, String) {
    let mut controller = wsfleet()
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
        .arg(data)
        .arg("--run")
        .arg(scenario)
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start controller");
    let url = controller_url(&mut controller);
    (controller, url)
}

/// Waits for `child` to exit within `limit`.
pub fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "process did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
