//! permessage-deflate (RFC 7692) end to end: the real binary against a third-party server
//! (Python's `websockets`, which negotiates deflate by default) and against the test server,
//! with exact message and uncompressed payload counts compared with each server's own, the
//! agreed parameters reported, a declined offer, and a corrupt compressed frame.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Python's `websockets` echo server (`tests/data/deflate_echo.py`), on 127.0.0.1.
struct PythonEcho {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    port: u16,
}

/// The server's own counts: messages and uncompressed payload bytes, each way.
#[derive(Debug, PartialEq)]
struct ServerCounts {
    received: u64,
    received_bytes: u64,
    sent: u64,
    sent_bytes: u64,
}

impl PythonEcho {
    fn start(args: &[&str]) -> PythonEcho {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/deflate_echo.py");
        let mut child = Command::new(common::python::python())
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the python echo server");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut server = PythonEcho {
            child,
            stdin,
            lines,
            port: 0,
        };
        let line = server.line("port");
        server.port = line.trim_start_matches("port ").parse().unwrap();
        server
    }

    fn line(&mut self, prefix: &str) -> String {
        match self.lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.starts_with(prefix) => line,
            other => {
                let _ = self.child.kill();
                panic!("the python server did not print `{prefix} ...`: {other:?}");
            }
        }
    }

    /// Stops the server (closing its stdin) and reads its counts.
    fn stop(mut self) -> ServerCounts {
        drop(self.stdin.take());
        let line = self.line("counts");
        let numbers: Vec<u64> = line.split_whitespace().skip(1).map(|n| n.parse().unwrap()).collect();
        wait_exit(&mut self.child, Duration::from_secs(10));
        ServerCounts {
            received: numbers[0],
            received_bytes: numbers[1],
            sent: numbers[2],
            sent_bytes: numbers[3],
        }
    }
}

impl Drop for PythonEcho {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs an inline scenario on one agent: the summary and the exit code.
fn run(dir: &Path, scenario: &str) -> (Value, i32) {
    let path = write(dir, "scenario.yaml", scenario);
    let out = dir.join("summary.json");
    let _ = std::fs::remove_file(&out);
    let mut command = wsfleet();
    command
        .arg("run")
        .arg(&path)
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
    (read_json(&out), code)
}

/// Compressible text: a JSON-like record repeated.
fn compressible(repeats: usize) -> String {
    r#"{"symbol":"WSF","bid":101.25,"ask":101.27,"venue":"XNAS"},"#.repeat(repeats)
}

const BROWSER_ANSWER: &str = "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12";
const STRICT_ANSWER: &str = "permessage-deflate; client_no_context_takeover; server_no_context_takeover; \
                             server_max_window_bits=10; client_max_window_bits=10";

/// The browser preset and a strict offer against `websockets`: the agreed parameters are what
/// the server answers, and the messages and uncompressed payload bytes each way are exactly the
/// server's own counts, while the wire carries fewer bytes than the payload.
#[test]
fn python_websockets_agrees_and_every_message_and_byte_is_counted() {
    let server = PythonEcho::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("ws://127.0.0.1:{}/", server.port);
    let scenario = format!(
        r#"load: {{ vus: 4, iterations: 3 }}
steps:
  - connect: {{ name: browser, connection: b, url: "{url}", compression: browser, expect: {{ extensions: "{BROWSER_ANSWER}" }} }}
  - connect:
      name: strict
      connection: s
      url: "{url}"
      compression:
        offers:
          - {{ client_no_context_takeover: true, server_no_context_takeover: true, client_max_window_bits: 10, server_max_window_bits: 10 }}
          - {{ client_max_window_bits: true }}
      expect: {{ extensions: "{STRICT_ANSWER}" }}
  - send: {{ name: text, connection: b, text: '{text}' }}
  - receive: {{ name: text_echo, connection: b, timeout: 5s, match: {{ contains: XNAS }} }}
  - send: {{ name: fragmented, connection: b, text: '{text}', fragments: 3 }}
  - receive: {{ name: fragmented_echo, connection: b, timeout: 5s }}
  - send: {{ name: binary, connection: s, binary: '{binary}' }}
  - receive: {{ name: binary_echo, connection: s, timeout: 5s, match: {{ type: binary }} }}
  - send: {{ name: tiny, connection: s, text: 'v${{vu}}' }}
  - receive: {{ name: tiny_echo, connection: s, timeout: 5s, match: {{ equals: 'v${{vu}}' }} }}
  - ping: {{ connection: s, timeout: 5s }}
  - close: {{ name: close_b, connection: b, code: 1000 }}
  - close: {{ name: close_s, connection: s, code: 1000 }}
"#,
        text = compressible(40),
        binary = r"\x00\x01\x02\x03".repeat(200),
    );
    let (summary, code) = run(dir.path(), &scenario);
    let counts = server.stop();
    assert_eq!(code, 0, "{summary:#}");
    let total = |name: &str| counter(&summary, name);
    // 12 iterations, 4 messages each way per iteration.
    assert_eq!(total("messages_sent"), 48);
    assert_eq!(
        counts,
        ServerCounts {
            received: total("messages_sent"),
            received_bytes: total("payload_bytes_sent"),
            sent: total("messages_received"),
            sent_bytes: total("payload_bytes_received"),
        }
    );
    // Every message went over a deflate connection: its payload is counted before and after.
    assert_eq!(total("uncompressed_bytes_sent"), total("payload_bytes_sent"));
    assert_eq!(total("uncompressed_bytes_received"), total("payload_bytes_received"));
    assert!(
        total("compressed_bytes_sent") * 3 < total("uncompressed_bytes_sent"),
        "{summary:#}"
    );
    assert!(
        total("compressed_bytes_received") * 3 < total("uncompressed_bytes_received"),
        "{summary:#}"
    );
    // Wire bytes are what crossed the socket: handshakes and frame headers included, yet fewer
    // than the payload.
    assert!(total("bytes_sent") < total("payload_bytes_sent"), "{summary:#}");
    assert!(total("bytes_received") < total("payload_bytes_received"), "{summary:#}");
    // Per step, before and after.
    assert_eq!(
        step_counter(&summary, "text", "uncompressed_bytes_sent"),
        12 * compressible(40).len() as u64
    );
    assert!(
        step_counter(&summary, "text", "compressed_bytes_sent")
            < step_counter(&summary, "text", "uncompressed_bytes_sent") / 5
    );
    assert!(step_counter(&summary, "fragmented_echo", "compressed_bytes_received") > 0);
    // A 2-3 byte message still goes compressed (the threshold is 0): deflate makes it larger.
    assert!(
        step_counter(&summary, "tiny", "compressed_bytes_sent")
            > step_counter(&summary, "tiny", "uncompressed_bytes_sent")
    );
    // The agreements, per step and in the totals, with the ratio.
    let extensions = &summary["totals"]["extensions"];
    assert_eq!(extensions[BROWSER_ANSWER.replace(' ', "")], 12, "{summary:#}");
    assert_eq!(extensions[STRICT_ANSWER.replace(' ', "")], 12, "{summary:#}");
    assert_eq!(
        step_counter(
            &summary,
            "browser",
            &format!("extensions.{}", BROWSER_ANSWER.replace(' ', ""))
        ),
        12
    );
    let ratio = summary["totals"]["compression_ratio_sent"].as_f64().unwrap();
    let expected = total("uncompressed_bytes_sent") as f64 / total("compressed_bytes_sent") as f64;
    assert!((ratio - expected).abs() < 1e-9 && ratio > 3.0, "{ratio}");
    assert_eq!(summary["totals"]["errors"], serde_json::json!({}));
}

/// A server that answers no extension: the connection runs as plain WebSocket (counted under
/// `extensions.none`, no compressed bytes), and a step that expects an agreement fails with
/// `expectation`.
#[test]
fn a_declined_offer_runs_plain_and_an_expected_agreement_fails() {
    let server = PythonEcho::start(&["--decline"]);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("ws://127.0.0.1:{}/", server.port);
    let scenario = format!(
        r#"load: {{ vus: 2, iterations: 2 }}
steps:
  - connect: {{ url: "{url}", compression: browser }}
  - send: {{ name: text, text: '{text}' }}
  - receive: {{ name: echo, timeout: 5s }}
  - close: {{ code: 1000 }}
"#,
        text = compressible(10),
    );
    let (summary, code) = run(dir.path(), &scenario);
    assert_eq!(code, 0, "{summary:#}");
    assert_eq!(summary["totals"]["extensions"]["none"], 4, "{summary:#}");
    assert_eq!(counter(&summary, "messages_received"), 4);
    assert_eq!(counter(&summary, "compressed_bytes_sent"), 0);
    assert_eq!(counter(&summary, "uncompressed_bytes_received"), 0);
    assert!(counter(&summary, "bytes_sent") > counter(&summary, "payload_bytes_sent"));
    assert_eq!(summary["totals"]["compression_ratio_sent"], Value::Null);

    let expecting = format!(
        r#"load: {{ vus: 2, iterations: 1 }}
steps:
  - connect: {{ name: open, url: "{url}", compression: deflate, expect: {{ extensions: permessage-deflate }} }}
  - send: {{ name: never, text: hello }}
"#
    );
    // Errors alone do not fail a run (thresholds do): the counts tell.
    let (summary, _) = run(dir.path(), &expecting);
    assert_eq!(step_counter(&summary, "open", "errors.expectation"), 2, "{summary:#}");
    assert_eq!(step_counter(&summary, "never", "messages_sent"), 0);
    let counts = server.stop();
    assert_eq!(counts.received, 4);
    assert_eq!(counts.sent_bytes, 4 * compressible(10).len() as u64);
}

/// The example runs against the test server it starts: every step's count is exact and the
/// agreements are the ones it expects.
#[test]
fn the_deflate_example_runs_against_the_test_server() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/deflate.yaml");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("summary.json");
    let mut command = wsfleet();
    command
        .arg("run")
        .arg(&path)
        .args(["--agents", "2", "--quiet", "--out"])
        .arg(format!("json={}", out.display()));
    let output = run_bounded(command, Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let summary = read_json(&out);
    for (name, counter) in [
        ("browser", "connections_opened"),
        ("lean", "connections_opened"),
        ("quote", "messages_sent"),
        ("quote_echo", "messages_received"),
        ("short", "messages_sent"),
        ("short_echo", "messages_received"),
        ("long", "messages_sent"),
        ("long_echo", "messages_received"),
    ] {
        assert_eq!(step_counter(&summary, name, counter), 50, "{name}: {summary:#}");
    }
    // `short` is under the lean connection's 64-byte threshold: sent uncompressed, so its wire
    // payload equals its payload; `long` shrinks.
    assert_eq!(
        step_counter(&summary, "short", "compressed_bytes_sent"),
        step_counter(&summary, "short", "uncompressed_bytes_sent")
    );
    assert!(
        step_counter(&summary, "long", "compressed_bytes_sent")
            < step_counter(&summary, "long", "uncompressed_bytes_sent")
    );
    assert_eq!(summary["totals"]["extensions"]["permessage-deflate"], 50);
    assert_eq!(summary["totals"]["errors"], serde_json::json!({}));
}

/// `corrupt_deflate=1`: after echoing the first message the test server sends a compressed
/// frame that does not inflate. The agent counts a `protocol` error in the step that read it,
/// and the echo before it stays counted, as the server counted it.
#[test]
fn a_corrupt_compressed_frame_is_a_protocol_error_and_loses_nothing() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = test_server(&runtime);
    let dir = tempfile::tempdir().unwrap();
    let scenario = format!(
        r#"load: {{ vus: 3, iterations: 2 }}
steps:
  - connect: {{ url: "{}/echo?corrupt_deflate=1", compression: deflate, expect: {{ extensions: permessage-deflate }} }}
  - send: {{ name: first, text: '{text}' }}
  - receive: {{ name: first_echo, timeout: 5s }}
  - receive: {{ name: corrupt, timeout: 5s }}
"#,
        server.url(),
        text = compressible(5),
    );
    let (summary, _) = run(dir.path(), &scenario);
    assert_eq!(
        step_counter(&summary, "first_echo", "messages_received"),
        6,
        "{summary:#}"
    );
    assert_eq!(step_counter(&summary, "corrupt", "errors.protocol"), 6, "{summary:#}");
    assert_eq!(summary["totals"]["errors"], serde_json::json!({ "protocol": 6 }));
    let stats = server.stats();
    assert_eq!(stats.messages_received, counter(&summary, "messages_sent"));
    assert_eq!(stats.messages_sent, counter(&summary, "messages_received"));
    assert_eq!(stats.payload_bytes_sent, counter(&summary, "payload_bytes_received"));
    assert!(counter(&summary, "compressed_bytes_received") < counter(&summary, "uncompressed_bytes_received"));
    // Without deflate agreed there is nothing to corrupt: the server refuses the upgrade.
    let plain = format!(
        "load: {{ vus: 1, iterations: 1 }}\nsteps:\n  - connect: {{ name: plain, url: \"{}/echo?corrupt_deflate=1\" }}\n",
        server.url()
    );
    let (summary, _) = run(dir.path(), &plain);
    assert_eq!(step_counter(&summary, "plain", "errors.http_400"), 1, "{summary:#}");
    runtime.block_on(server.shutdown());
}

/// A bad compression setting is a located validation error, before anything runs.
#[test]
fn bad_compression_settings_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "bad.yaml",
        r#"load: { vus: 1, iterations: 1 }
steps:
  - connect:
      url: ws://127.0.0.1:1/
      compression: { client_max_window_bits: 8, server_max_window_bits: 16 }
  - connect:
      connection: second
      url: ws://127.0.0.1:1/
      compression: off
      expect: { extensions: "permessage-deflate; server_max_window_bits=12" }
"#,
    );
    let mut command = wsfleet();
    command.arg("validate").arg(&path);
    let output = run_bounded(command, Duration::from_secs(30));
    assert_ne!(output.status.code(), Some(0));
    let errors = text(&output.stderr) + &text(&output.stdout);
    for wanted in [
        "steps[0].connect.compression.client_max_window_bits",
        "zlib cannot compress with an 8-bit window",
        "steps[0].connect.compression.server_max_window_bits",
        "16 is not a window size from 8 to 15",
        "steps[1].connect.expect.extensions",
        "this step offers no compression",
    ] {
        assert!(errors.contains(wanted), "`{wanted}` missing from:\n{errors}");
    }
}
