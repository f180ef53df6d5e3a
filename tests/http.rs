//! http steps end to end against the test server's HTTP endpoints: exact counts of requests,
//! statuses and messages equal the server's own, the login's cookie reaches the WebSocket
//! upgrade, a refused login is counted and matched by `on_error`, timeouts, and keep-alive (one
//! TCP connection per VU for all its requests, as the server counts them).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;

struct Server {
    runtime: tokio::runtime::Runtime,
    server: Option<wsfleet_testserver::TestServer>,
}

impl Server {
    fn start() -> Server {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let server = test_server(&runtime);
        Server {
            runtime,
            server: Some(server),
        }
    }

    fn stats(&self) -> wsfleet_testserver::Stats {
        self.server.as_ref().unwrap().stats()
    }

    fn address(&self) -> std::net::SocketAddr {
        self.server.as_ref().unwrap().local_addr()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.shutdown());
        }
    }
}

/// Runs a scenario with one local agent; the summary and the exit code.
fn run(dir: &Path, source: &str) -> (Value, i32) {
    let path = write(dir, "scenario.yaml", source);
    run_path(&path, dir)
}

/// Runs a scenario file, the summary written in `dir`.
fn run_path(path: &Path, dir: &Path) -> (Value, i32) {
    let (summary, code, _) = run_path_printing(path, dir);
    (summary, code)
}

/// Runs a scenario file; also what it printed.
fn run_path_printing(path: &Path, dir: &Path) -> (Value, i32, String) {
    let out = dir.join("summary.json");
    let mut command = wsfleet();
    command
        .arg("run")
        .arg(path)
        .args(["--agents", "1", "--quiet", "--out"])
        .arg(format!("json={}", out.display()));
    let output = run_bounded(command, Duration::from_secs(60));
    let code = output.status.code().unwrap_or(-1);
    assert!(
        out.exists(),
        "no summary (exit {code})\nstdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    (read_json(&out), code, text(&output.stdout))
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name)
}

/// The login flow: login over HTTP, the token in the URL and the cookie (from the jar) in the
/// upgrade of an endpoint that refuses either missing, messages, one more request over the
/// kept-alive connection that carries the cookie too. Every count equals the server's.
#[test]
fn a_login_flow_counts_what_the_server_counts() {
    let server = Server::start();
    let address = server.address();
    let dir = tempfile::tempdir().unwrap();
    let (summary, code) = run(
        dir.path(),
        &format!(
            "variables: {{ base: 'http://{address}' }}
load: {{ vus: 4, iterations: 3 }}
thresholds:
  http_requests_failed.rate: '< 1%'
  'http_duration{{step=login}}.p99': '< 2s'
  http_first_byte.max: '< 2s'
steps:
  - http:
      name: login
      method: POST
      url: '${{base}}/login'
      body: {{ json: {{ user: 'user-${{vu}}', password: secret }} }}
      expect: {{ status: 200 }}
      extract: {{ token: {{ json: /token }}, sid: {{ cookie: sid }} }}
  - connect: {{ url: 'ws://{address}/auth/echo?token=${{token}}' }}
  - repeat:
      count: 5
      steps:
        - send: {{ name: message, text: 'hi ${{iteration}}' }}
        - receive: {{ name: echo, timeout: 2s }}
  - close: {{ code: 1000 }}
  - http: {{ name: profile, url: '${{base}}/http/echo', extract: {{ cookie: {{ json: /cookie }} }} }}
  - check: {{ name: cookie-sent, value: '${{cookie}}', equals: 'sid=${{sid}}' }}
"
        ),
    );
    assert_eq!(code, 0, "{summary:#}");
    let stats = server.stats();
    assert_eq!(stats.logins, 12);
    assert_eq!(stats.logins_refused, 0);
    assert_eq!(stats.http_requests, 24);
    assert_eq!(step_counter(&summary, "login", "http_requests"), stats.logins);
    assert_eq!(step_counter(&summary, "login", "http_2xx"), 12);
    assert_eq!(step_counter(&summary, "profile", "http_2xx"), 12);
    assert_eq!(counter(&summary, "http_requests"), stats.http_requests);
    assert_eq!(counter(&summary, "http_requests_failed"), 0);
    // Every upgrade carried the cookie: the endpoint refuses one without it.
    assert_eq!(stats.total_connections, 12);
    assert_eq!(stats.refused_handshakes, 0);
    assert_eq!(counter(&summary, "connections_opened"), stats.total_connections);
    assert_eq!(counter(&summary, "messages_sent"), stats.messages_received);
    assert_eq!(counter(&summary, "messages_received"), stats.messages_sent);
    assert_eq!(stats.messages_received, 60);
    // Keep-alive: one HTTP connection per VU for its 6 requests, on both sides.
    assert_eq!(stats.http_connections, 4);
    assert_eq!(counter(&summary, "http_connections_opened"), 4);
    assert_eq!(step_latency_count(&summary, "login", "http_duration"), 12);
    assert_eq!(step_latency_count(&summary, "login", "http_first_byte"), 12);
    assert_eq!(step_latency_count(&summary, "login", "http_connect"), 4);
    assert_eq!(step_latency_count(&summary, "profile", "http_connect"), 0);
    assert_eq!(counter(&summary, "iterations"), 12);
    // HTTP bytes are wire bytes, a part of the totals.
    let http_sent = counter(&summary, "http_bytes_sent");
    let http_received = counter(&summary, "http_bytes_received");
    assert!(
        http_sent > 24 * 60 && http_received > 24 * 100,
        "{http_sent} {http_received}"
    );
    assert!(counter(&summary, "bytes_sent") > http_sent);
    assert!(counter(&summary, "bytes_received") > http_received);
}

/// The example runs as it is, with its own test server.
#[test]
fn the_login_flow_example_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (summary, code, printed) = run_path_printing(&example("login-flow.yaml"), dir.path());
    assert_eq!(code, 0, "{summary:#}");
    // The terminal summary has the HTTP figures.
    let line = |label: &str| {
        printed
            .lines()
            .find(|line| line.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` in\n{printed}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert!(printed.contains("HTTP statistics"), "{printed}");
    assert_eq!(line("Requests ")[1], "60");
    assert_eq!(line("Responses 2xx")[2], "60");
    assert_eq!(line("Connections Opened")[2], "10");
    assert_eq!(step_counter(&summary, "login", "http_2xx"), 30);
    assert_eq!(step_counter(&summary, "profile", "http_2xx"), 30);
    assert_eq!(counter(&summary, "connections_opened"), 30);
    assert_eq!(step_counter(&summary, "message", "messages_sent"), 150);
    assert_eq!(step_counter(&summary, "echo", "messages_received"), 150);
    assert_eq!(counter(&summary, "http_connections_opened"), 10);
    assert_eq!(counter(&summary, "iterations"), 30);
}

/// A login refused with 401 is a counted failure (`errors.http_401`, `http_requests_failed`,
/// `http_4xx`) that an `on_error` rule matches; without the login the upgrade is refused too.
#[test]
fn a_refused_login_is_counted_and_matched_by_on_error() {
    let server = Server::start();
    let address = server.address();
    let dir = tempfile::tempdir().unwrap();
    let (summary, code) = run(
        dir.path(),
        &format!(
            "load: {{ vus: 3, iterations: 2 }}
on_error:
  - {{ kinds: [http_401], steps: [login], then: end_iteration }}
steps:
  - http:
      name: login
      method: POST
      url: 'http://{address}/login'
      body: {{ json: {{ user: 'u${{vu}}', password: wrong }} }}
      expect: {{ status: 200 }}
  - connect: {{ url: 'ws://{address}/auth/echo' }}
"
        ),
    );
    assert_eq!(code, 0, "{summary:#}");
    let stats = server.stats();
    assert_eq!(stats.logins_refused, 6);
    assert_eq!(stats.logins, 0);
    assert_eq!(step_counter(&summary, "login", "errors.http_401"), 6);
    assert_eq!(step_counter(&summary, "login", "http_4xx"), 6);
    assert_eq!(step_counter(&summary, "login", "http_requests"), 6);
    assert_eq!(step_counter(&summary, "login", "http_requests_failed"), 6);
    assert_eq!(counter(&summary, "iterations_skipped"), 6);
    assert_eq!(counter(&summary, "iterations_failed"), 0);
    assert_eq!(stats.total_connections, 0);

    // Expected on purpose, the refusal is a success; the upgrade without a login is refused.
    let (summary, code) = run(
        dir.path(),
        &format!(
            "load: {{ vus: 2, iterations: 1 }}
steps:
  - http:
      name: login
      method: POST
      url: 'http://{address}/login'
      body: {{ json: {{ user: u, password: wrong }} }}
      expect: {{ status: 401 }}
  - connect: {{ url: 'ws://{address}/auth/echo?token=none', expect: {{ status: 401 }} }}
"
        ),
    );
    assert_eq!(code, 0, "{summary:#}");
    assert_eq!(step_counter(&summary, "login", "http_4xx"), 2);
    assert_eq!(counter(&summary, "http_requests_failed"), 0);
    assert_eq!(server.stats().refused_handshakes, 2);
}

/// A response slower than the step's timeout fails with `timeout` in about the timeout; the
/// connection it used is not reused (its state is unknown), the next request opens another.
#[test]
fn a_request_past_its_timeout_fails_with_kind_timeout() {
    let server = Server::start();
    let address = server.address();
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let (summary, code) = run(
        dir.path(),
        &format!(
            "load: {{ vus: 2, iterations: 1 }}
on_error:
  - {{ kinds: [timeout], then: continue }}
steps:
  - http: {{ name: slow, url: 'http://{address}/http/echo?delay_ms=3000', timeout: 300ms }}
  - http: {{ name: quick, url: 'http://{address}/http/echo', timeout: 2s }}
"
        ),
    );
    assert_eq!(code, 0, "{summary:#}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(step_counter(&summary, "slow", "errors.timeout"), 2);
    assert_eq!(step_counter(&summary, "slow", "http_requests_failed"), 2);
    assert_eq!(step_counter(&summary, "slow", "http_requests"), 2);
    assert_eq!(step_counter(&summary, "quick", "http_2xx"), 2);
    assert_eq!(step_counter(&summary, "quick", "http_connections_opened"), 2);
    assert_eq!(counter(&summary, "iterations"), 2);
    let stats = server.stats();
    assert_eq!(stats.http_requests, 4);
    assert_eq!(stats.http_connections, 4);
}

/// Keep-alive: N requests of one VU to one origin go over one TCP connection, as the server
/// counts connections; a server that answers `Connection: close` costs one per request.
#[test]
fn keep_alive_serves_a_vus_requests_over_one_connection() {
    let server = Server::start();
    let address = server.address();
    let dir = tempfile::tempdir().unwrap();
    let scenario = |query: &str| {
        format!(
            "load: {{ vus: 3, iterations: 2 }}
steps:
  - repeat:
      count: 10
      steps:
        - http: {{ name: get, url: 'http://{address}/http/echo{query}' }}
        - http: {{ name: post, method: POST, url: 'http://{address}/http/echo?status=201', body: {{ form: {{ a: '1 2', b: '${{vu}}' }} }}, expect: {{ status: [201] }}, extract: {{ sent: {{ json: /body }} }} }}
  - check: {{ name: form-sent, value: '${{sent}}', regex: '^a=1\\+2&b=\\d+$' }}
"
        )
    };
    let (summary, code) = run(dir.path(), &scenario(""));
    assert_eq!(code, 0, "{summary:#}");
    let stats = server.stats();
    assert_eq!(stats.http_requests, 120);
    assert_eq!(stats.http_connections, 3);
    assert_eq!(counter(&summary, "http_connections_opened"), 3);
    assert_eq!(step_counter(&summary, "get", "http_2xx"), 60);
    assert_eq!(step_counter(&summary, "post", "http_2xx"), 60);
    assert_eq!(counter(&summary, "http_requests"), 120);

    let (summary, code) = run(dir.path(), &scenario("?close=1"));
    assert_eq!(code, 0, "{summary:#}");
    let stats = server.stats();
    assert_eq!(stats.http_requests, 240);
    // A closing answer ends its connection: per VU and iteration the first get opens one, and
    // each post opens the one the next get closes (1 + 10), twice, for 3 VUs.
    assert_eq!(counter(&summary, "http_connections_opened"), 63);
    assert_eq!(stats.http_connections, 3 + 63);
}

/// Status classes are counted by class, and a status the step does not expect fails it with
/// `http_<status>`.
#[test]
fn statuses_are_counted_by_class() {
    let server = Server::start();
    let address = server.address();
    let dir = tempfile::tempdir().unwrap();
    let (summary, code) = run(
        dir.path(),
        &format!(
            "load: {{ vus: 1, iterations: 1 }}
on_error:
  - {{ then: continue }}
steps:
  - http: {{ name: ok, url: 'http://{address}/http/echo?status=204' }}
  - http: {{ name: moved, url: 'http://{address}/http/echo?status=302' }}
  - http: {{ name: missing, url: 'http://{address}/http/echo?status=404' }}
  - http: {{ name: broken, url: 'http://{address}/http/echo?status=503' }}
  - http: {{ name: wanted, url: 'http://{address}/http/echo?status=503', expect: {{ status: [500, 503] }} }}
"
        ),
    );
    assert_eq!(code, 0, "{summary:#}");
    assert_eq!(step_counter(&summary, "ok", "http_2xx"), 1);
    assert_eq!(step_counter(&summary, "moved", "http_3xx"), 1);
    assert_eq!(step_counter(&summary, "missing", "http_4xx"), 1);
    assert_eq!(step_counter(&summary, "missing", "errors.http_404"), 1);
    assert_eq!(step_counter(&summary, "broken", "errors.http_503"), 1);
    assert_eq!(step_counter(&summary, "wanted", "http_5xx"), 1);
    assert_eq!(step_counter(&summary, "wanted", "http_requests_failed"), 0);
    assert_eq!(counter(&summary, "http_requests_failed"), 2);
    assert_eq!(counter(&summary, "http_requests"), 5);
    assert_eq!(server.stats().http_requests, 5);
}

/// `https://` against the run's own TLS test server (its certificate trusted for the run), the
/// TLS phase timed once per kept connection; through a CONNECT proxy with credentials, one
/// tunnel per connection, and a refused tunnel is kind `proxy`.
#[test]
fn https_and_a_connect_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let (summary, code) = run(
        dir.path(),
        "testserver: { port: 0, tls: true }
load: { vus: 2, iterations: 2 }
steps:
  - http:
      name: login
      method: POST
      url: '${testserver.http_url}/login'
      body: { json: { user: u, password: secret } }
      expect: { status: 200 }
      extract: { token: { json: /token } }
  - connect: { url: '${testserver.url}/auth/echo?token=${token}' }
  - close: {}
",
    );
    assert_eq!(code, 0, "{summary:#}");
    assert_eq!(step_counter(&summary, "login", "http_2xx"), 4);
    assert_eq!(step_counter(&summary, "login", "http_connections_opened"), 2);
    assert_eq!(step_latency_count(&summary, "login", "http_tls"), 2);
    assert_eq!(counter(&summary, "connections_opened"), 4);

    let server = Server::start();
    let address = server.address();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    let tunnels = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    runtime.spawn(common::connect_proxy::connect_proxy(
        listener,
        "dGVzdGVyOnMzY3JldA==".into(),
        tunnels.clone(),
    ));
    let scenario = |credentials: &str| {
        format!(
            "load: {{ vus: 3, iterations: 1 }}
on_error:
  - {{ kinds: [proxy], then: end_iteration }}
steps:
  - repeat:
      count: 4
      steps:
        - http: {{ name: through, url: 'http://{address}/http/echo', proxy: 'http://{credentials}@127.0.0.1:{proxy_port}' }}
"
        )
    };
    let (summary, code) = run(dir.path(), &scenario("tester:s3cret"));
    assert_eq!(code, 0, "{summary:#}");
    assert_eq!(step_counter(&summary, "through", "http_2xx"), 12);
    assert_eq!(tunnels.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(server.stats().http_connections, 3);
    assert_eq!(server.stats().http_requests, 12);
    let (summary, code) = run(dir.path(), &scenario("tester:wrong"));
    assert_eq!(code, 0, "{summary:#}");
    assert_eq!(step_counter(&summary, "through", "errors.proxy"), 3);
    assert_eq!(step_counter(&summary, "through", "http_requests_failed"), 3);
    assert_eq!(counter(&summary, "iterations_skipped"), 3);
    assert_eq!(server.stats().http_requests, 12);
}

/// HTTP metrics in thresholds: a failure rate over its limit fails the run (exit code 5).
#[test]
fn thresholds_read_the_http_metrics() {
    let server = Server::start();
    let address = server.address();
    let dir = tempfile::tempdir().unwrap();
    let (summary, code) = run(
        dir.path(),
        &format!(
            "load: {{ vus: 2, iterations: 2 }}
thresholds:
  http_requests_failed.rate: '< 10%'
  'http_requests{{step=missing}}.count': '== 4'
  http_4xx.count: '== 4'
on_error:
  - {{ kinds: [http_404], then: continue }}
steps:
  - http: {{ name: found, url: 'http://{address}/http/echo' }}
  - http: {{ name: missing, url: 'http://{address}/http/echo?status=404' }}
"
        ),
    );
    assert_eq!(code, 5, "{summary:#}");
    let results = summary["thresholds"].as_array().unwrap();
    let passed = |metric: &str| {
        results
            .iter()
            .find(|result| result["name"] == metric)
            .unwrap_or_else(|| panic!("no threshold {metric}: {results:#?}"))["passed"]
            .as_bool()
            .unwrap()
    };
    assert!(!passed("http_requests_failed.rate"));
    assert!(passed("http_requests{step=missing}.count"));
    assert!(passed("http_4xx.count"));
}
