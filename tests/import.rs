//! `wsfleet import` on a real recording: headless Chromium loads a page (served by this test)
//! that logs in over HTTP and then talks to the test server over two WebSockets, text and
//! binary; the DevTools events become a HAR file exactly as DevTools' "Export HAR" writes it
//! (devtools-frontend `front_end/models/har/Log.ts`); the import of that file validates, and
//! running it against the same server sends and receives what the browser did, byte for byte.
//! The HAR is saved as target/test-artifacts/chromium-session.har.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The page: a login over HTTP, then a JSON conversation with a server greeting, then binary
/// and text echoes on a second socket. Each step waits for its answer, as a person would.
const PAGE: &str = r#"<!doctype html><title>wsfleet import</title><script>
const server = "ws://127.0.0.1:TESTSERVER_PORT";
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));
const next = socket => new Promise((resolve, reject) => {
  socket.addEventListener('message', event => resolve(event.data), { once: true });
  socket.addEventListener('error', reject, { once: true });
});
const opened = socket => new Promise((resolve, reject) => { socket.onopen = resolve; socket.onerror = reject; });
(async () => {
  try {
    const login = await fetch('/login', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ user: 'ann' }) });
    const { token } = await login.json();
    const chat = new WebSocket(server + '/json?user=ann&send_on_open=' + encodeURIComponent('{"type":"hello"}'), ['chat.v1']);
    const greeting = next(chat);
    await opened(chat);
    await greeting;
    await sleep(150);
    chat.send(JSON.stringify({ type: 'join', room: 'lobby', id: 1 }));
    await next(chat);
    for (let id = 2; id <= 4; id++) {
      await sleep(100);
      chat.send(JSON.stringify({ type: 'ping', id, trace: crypto.randomUUID(), sent: Date.now(), token }));
      await next(chat);
    }
    const echo = new WebSocket(server + '/echo');
    echo.binaryType = 'arraybuffer';
    await opened(echo);
    echo.send(new Uint8Array([0, 1, 2, 255, 92]));
    await next(echo);
    await sleep(50);
    echo.send('plain text');
    await next(echo);
    chat.close(1000);
    echo.close(1000);
    window.done = 'ok';
  } catch (error) {
    window.done = 'failed: ' + error;
  }
})();
</script>"#;

/// Serves the page and `POST /login` on 127.0.0.1 (one request per connection); counts logins.
fn page_server(testserver_port: u16) -> (u16, Arc<AtomicU64>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let logins = Arc::new(AtomicU64::new(0));
    let counted = logins.clone();
    let page = PAGE.replace("TESTSERVER_PORT", &testserver_port.to_string());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let page = page.clone();
            let counted = counted.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                let head_end = loop {
                    if let Some(end) = request.windows(4).position(|window| window == b"\r\n\r\n") {
                        break end + 4;
                    }
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => return,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                };
                let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .and_then(|value| value.trim().parse().ok())
                    .unwrap_or(0);
                while request.len() < head_end + length {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => return,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                let (status, kind, extra, body) = if head.starts_with("get / ") {
                    ("200 OK", "text/html", String::new(), page)
                } else if head.starts_with("post /login ") {
                    counted.fetch_add(1, Ordering::SeqCst);
                    (
                        "200 OK",
                        "application/json",
                        "Set-Cookie: sid=Q2x1c3RlcjpBQkNERUZHSElKS0xNTk9Q; Path=/; HttpOnly\r\n".to_owned(),
                        r#"{"token":"tok-4f1c2a9be77d40a1"}"#.to_owned(),
                    )
                } else {
                    ("404 Not Found", "text/plain", String::new(), "not found".to_owned())
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes());
            });
        }
    });
    (port, logins)
}

/// One request as the DevTools front end keeps it (`SDK.NetworkRequest`), from its events.
#[derive(Default)]
struct Recorded {
    url: String,
    method: String,
    resource_type: String,
    /// Monotonic seconds and wall-clock seconds of the request's issue.
    issue: f64,
    wall: f64,
    request_headers: Value,
    post_data: Option<String>,
    status: i64,
    status_text: String,
    response_headers: Value,
    mime_type: String,
    response_time: Option<f64>,
    end: Option<f64>,
    frames: Vec<Value>,
    initiator: Value,
}

impl Recorded {
    /// DevTools' `pseudoWallTime`: a monotonic time on the wall clock of the issue.
    fn wall_time(&self, monotonic: f64) -> f64 {
        self.wall - self.issue + monotonic
    }
}

/// `NetworkManager.headersMapToHeadersArray`: a value per line.
fn headers_array(headers: &Value) -> Value {
    let mut out = Vec::new();
    for (name, value) in headers.as_object().into_iter().flatten() {
        for line in value.as_str().unwrap_or_default().split('\n') {
            out.push(json!({ "name": name, "value": line }));
        }
    }
    Value::Array(out)
}

/// `Date.prototype.toJSON`: UTC with milliseconds.
fn iso(seconds: f64) -> String {
    let time = time::OffsetDateTime::from_unix_timestamp_nanos((seconds * 1e9) as i128).unwrap();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
        time.millisecond()
    )
}

/// The HAR DevTools' "Export HAR" writes for these Network events (`HAR.Log.build`).
fn har_from_events(events: &[Value], page_url: &str) -> Value {
    let mut order: Vec<String> = Vec::new();
    let mut requests: HashMap<String, Recorded> = HashMap::new();
    for event in events {
        let params = &event["params"];
        let Some(id) = params["requestId"].as_str() else {
            continue;
        };
        if !requests.contains_key(id) {
            order.push(id.to_owned());
        }
        let recorded = requests.entry(id.to_owned()).or_default();
        let timestamp = params["timestamp"].as_f64().unwrap_or(0.0);
        match event["method"].as_str().unwrap_or_default() {
            "Network.requestWillBeSent" => {
                let request = &params["request"];
                recorded.url = request["url"].as_str().unwrap().to_owned();
                recorded.method = request["method"].as_str().unwrap().to_owned();
                recorded.resource_type = params["type"].as_str().unwrap_or("Other").to_ascii_lowercase();
                recorded.issue = timestamp;
                recorded.wall = params["wallTime"].as_f64().unwrap();
                if recorded.request_headers.is_null() {
                    recorded.request_headers = request["headers"].clone();
                }
                recorded.post_data = request["postData"].as_str().map(str::to_owned);
                recorded.initiator = params["initiator"].clone();
            }
            // The headers that really went out (cookies included) replace the page's.
            "Network.requestWillBeSentExtraInfo" => recorded.request_headers = params["headers"].clone(),
            "Network.responseReceived" => {
                let response = &params["response"];
                recorded.status = response["status"].as_i64().unwrap_or(0);
                recorded.status_text = response["statusText"].as_str().unwrap_or_default().to_owned();
                if recorded.response_headers.is_null() {
                    recorded.response_headers = response["headers"].clone();
                }
                recorded.mime_type = response["mimeType"].as_str().unwrap_or_default().to_owned();
                recorded.response_time = Some(timestamp);
            }
            "Network.responseReceivedExtraInfo" => recorded.response_headers = params["headers"].clone(),
            "Network.loadingFinished" => recorded.end = Some(timestamp),
            "Network.webSocketCreated" => {
                recorded.url = params["url"].as_str().unwrap().to_owned();
                recorded.resource_type = "websocket".to_owned();
                recorded.initiator = params["initiator"].clone();
            }
            "Network.webSocketWillSendHandshakeRequest" => {
                recorded.method = "GET".to_owned();
                recorded.issue = timestamp;
                recorded.wall = params["wallTime"].as_f64().unwrap();
                recorded.request_headers = params["request"]["headers"].clone();
            }
            "Network.webSocketHandshakeResponseReceived" => {
                let response = &params["response"];
                recorded.status = response["status"].as_i64().unwrap_or(0);
                recorded.status_text = response["statusText"].as_str().unwrap_or_default().to_owned();
                recorded.response_headers = response["headers"].clone();
                if response["requestHeaders"].is_object() {
                    recorded.request_headers = response["requestHeaders"].clone();
                }
                recorded.response_time = Some(timestamp);
            }
            method @ ("Network.webSocketFrameSent" | "Network.webSocketFrameReceived") => {
                let frame = &params["response"];
                let time = recorded.wall_time(timestamp);
                recorded.frames.push(json!({
                    "type": if method.ends_with("Sent") { "send" } else { "receive" },
                    "time": time,
                    "opcode": frame["opcode"],
                    "data": frame["payloadData"],
                }));
                recorded.response_time = Some(timestamp);
            }
            "Network.webSocketFrameError" => {
                let time = recorded.wall_time(timestamp);
                recorded
                    .frames
                    .push(json!({ "type": "error", "time": time, "opcode": -1, "data": params["errorMessage"] }));
            }
            _ => {}
        }
    }
    let mut entries = Vec::new();
    for id in &order {
        let recorded = &requests[id];
        if recorded.url.is_empty() || recorded.wall == 0.0 {
            continue;
        }
        let wait = recorded
            .response_time
            .map_or(0.0, |time| (time - recorded.issue) * 1000.0);
        let receive = match (recorded.end, recorded.response_time) {
            (Some(end), Some(response)) => ((end - response) * 1000.0).max(0.0),
            _ => 0.0,
        };
        let query: Vec<Value> = recorded
            .url
            .split_once('?')
            .map(|(_, query)| {
                query
                    .split('&')
                    .map(|pair| {
                        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                        json!({ "name": name, "value": value })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut request = json!({
            "method": recorded.method,
            "url": recorded.url.split('#').next().unwrap(),
            "httpVersion": "HTTP/1.1",
            "headers": headers_array(&recorded.request_headers),
            "queryString": query,
            "cookies": [],
            "headersSize": -1,
            "bodySize": recorded.post_data.as_ref().map_or(0, String::len),
        });
        if let Some(text) = &recorded.post_data {
            let mime = recorded.request_headers["Content-Type"].as_str().unwrap_or_default();
            request["postData"] = json!({ "mimeType": mime, "text": text });
        }
        let mut entry = json!({
            "_initiator": recorded.initiator,
            "_priority": null,
            "_resourceType": recorded.resource_type,
            "cache": {},
            "pageref": "page_1",
            "request": request,
            "response": {
                "status": recorded.status,
                "statusText": recorded.status_text,
                "httpVersion": "HTTP/1.1",
                "headers": headers_array(&recorded.response_headers),
                "cookies": [],
                "content": { "size": 0, "mimeType": if recorded.mime_type.is_empty() { "x-unknown" } else { &recorded.mime_type } },
                "redirectURL": "",
                "headersSize": -1,
                "bodySize": -1,
                "_transferSize": 0,
                "_error": null,
            },
            "serverIPAddress": "127.0.0.1",
            "startedDateTime": iso(recorded.wall),
            "time": wait.max(0.0) + receive,
            "timings": { "blocked": -1, "dns": -1, "ssl": -1, "connect": -1, "send": 0, "wait": wait.max(0.0), "receive": receive, "_blocked_queueing": -1 },
        });
        if recorded.resource_type == "websocket" {
            entry["_webSocketMessages"] = Value::Array(recorded.frames.clone());
        }
        entries.push(entry);
    }
    let first = entries
        .first()
        .and_then(|entry| entry["startedDateTime"].as_str())
        .unwrap_or_default()
        .to_owned();
    json!({ "log": {
        "version": "1.2",
        "creator": { "name": "WebInspector", "version": "537.36" },
        "pages": [{ "startedDateTime": first, "id": "page_1", "title": page_url, "pageTimings": { "onContentLoad": -1, "onLoad": -1 } }],
        "entries": entries,
    }})
}

/// Loads the page in headless Chromium and returns the HAR of what it did.
fn record(browser: &std::path::Path, page_url: &str) -> Value {
    let chrome = browser::Browser::launch(browser, "800,600");
    let tab = chrome.new_tab("about:blank");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut page = browser::Page::connect(&tab).await;
        page.command("Network.enable", json!({})).await;
        page.command("Page.navigate", json!({ "url": page_url })).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let done = page.eval("window.done || null").await;
            if done == "ok" {
                break;
            }
            assert!(done.is_null(), "the page failed: {done}");
            assert!(Instant::now() < deadline, "the page did not finish: {:#?}", page.events);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The last frame's event may trail the page's own view of it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let frames = page
                .events
                .iter()
                .filter(|event| {
                    event["method"]
                        .as_str()
                        .is_some_and(|method| method.starts_with("Network.webSocketFrame"))
                })
                .count();
            if frames == 13 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{frames} frame events, not 13: {:#?}",
                page.events
            );
            page.eval("1").await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        har_from_events(&page.events, page_url)
    })
}

fn kinds(scenario: &serde_norway::Value) -> Vec<String> {
    scenario["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|step| {
            step.as_mapping()
                .unwrap()
                .keys()
                .next()
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn a_chromium_recording_imports_and_replays_the_same_messages() {
    let Some(browser) = browser::chromium_or_skip() else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = wsfleet_testserver::Config {
        subprotocols: vec!["chat.v1".to_owned()],
        ..Default::default()
    };
    let server = runtime
        .block_on(wsfleet_testserver::TestServer::start(
            "127.0.0.1:0".parse().unwrap(),
            config,
        ))
        .unwrap();
    let testserver_port = server.local_addr().port();
    let (page_port, logins) = page_server(testserver_port);
    let page_url = format!("http://127.0.0.1:{page_port}/");

    let har = record(&browser, &page_url);
    let recorded = server.stats();
    assert_eq!(
        (
            recorded.total_connections,
            recorded.messages_received,
            recorded.messages_sent
        ),
        (2, 6, 7),
        "the browser's session as the server saw it"
    );
    assert_eq!(logins.load(Ordering::SeqCst), 1);
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let har_text = serde_json::to_string_pretty(&har).unwrap();
    std::fs::write(artifacts.join("chromium-session.har"), &har_text).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let har_path = write(dir.path(), "session.har", &har_text);
    let scenario_path = dir.path().join("session.yaml");
    let mut command = wsfleet();
    command.arg("import").arg(&har_path).arg("-o").arg(&scenario_path);
    let output = run_bounded(command, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let said = text(&output.stderr);
    assert!(
        said.contains("2 connection(s), 6 send(s), 7 receive(s), 0 http step(s)"),
        "{said}"
    );
    let yaml = std::fs::read_to_string(&scenario_path).unwrap();
    let scenario: serde_norway::Value = serde_norway::from_str(&yaml).unwrap();
    let without_thinks: Vec<String> = kinds(&scenario).into_iter().filter(|kind| kind != "think").collect();
    assert_eq!(
        without_thinks,
        [
            "connect", "receive", "send", "receive", "send", "receive", "send", "receive", "send", "receive",
            "connect", "send", "receive", "send", "receive", "close", "close"
        ],
        "{yaml}"
    );
    let steps = scenario["steps"].as_sequence().unwrap();
    let connect = &steps[0]["connect"];
    assert_eq!(connect["subprotocols"][0], "chat.v1", "{yaml}");
    assert_eq!(connect["expect"]["subprotocol"], "chat.v1", "{yaml}");
    assert_eq!(
        connect["origin"],
        format!("http://127.0.0.1:{page_port}").as_str(),
        "{yaml}"
    );
    // The page waited 150 ms after the greeting before it joined.
    let think_before_join = steps
        .iter()
        .position(|step| step["send"]["name"] == "join")
        .and_then(|join| steps[join - 1]["think"].as_str())
        .unwrap_or_else(|| panic!("a think before the join: {yaml}"));
    let millis: u64 = think_before_join.trim_end_matches("ms").parse().unwrap();
    assert!((150..1000).contains(&millis), "{think_before_join}");
    assert!(yaml.contains("looks like a UUID: `${uuid}`"), "{yaml}");
    assert!(yaml.contains("looks like a timestamp in milliseconds"), "{yaml}");
    assert!(yaml.contains("match: { json: /type, equals: ping_ok }"), "{yaml}");
    assert!(yaml.contains(r"binary: '\x00\x01\x02\xff\\'"), "{yaml}");

    // Played against the same server, it sends and receives what the browser did.
    let summary_path = dir.path().join("summary.json");
    let mut command = wsfleet();
    command
        .arg("run")
        .arg(&scenario_path)
        .args(["--quiet", "--out"])
        .arg(format!("json={}", summary_path.display()));
    let output = run_bounded(command, Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(0), "{}\n{yaml}", text(&output.stderr));
    let summary = read_json(&summary_path);
    assert_eq!(counter(&summary, "iterations"), 1, "{summary:#}");
    assert_eq!(counter(&summary, "iterations_failed"), 0, "{summary:#}");
    assert_eq!(counter(&summary, "connections_opened"), 2, "{summary:#}");
    assert_eq!(counter(&summary, "messages_sent"), 6, "{summary:#}");
    assert_eq!(counter(&summary, "messages_received"), 7, "{summary:#}");
    assert_eq!(counter(&summary, "receive_timeouts"), 0, "{summary:#}");
    let replayed = server.stats();
    assert_eq!(replayed.total_connections - recorded.total_connections, 2);
    assert_eq!(replayed.messages_received - recorded.messages_received, 6);
    assert_eq!(replayed.messages_sent - recorded.messages_sent, 7);
    // The same payloads, byte for byte, both ways.
    assert_eq!(
        replayed.payload_bytes_received - recorded.payload_bytes_received,
        recorded.payload_bytes_received
    );
    assert_eq!(
        replayed.payload_bytes_sent - recorded.payload_bytes_sent,
        recorded.payload_bytes_sent
    );

    // With the login before the upgrade as an `http` step: the page's server sees one more.
    let with_http = dir.path().join("session-http.yaml");
    let mut command = wsfleet();
    command
        .arg("import")
        .arg(&har_path)
        .arg("--http-steps")
        .arg("-o")
        .arg(&with_http);
    let output = run_bounded(command, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let said = text(&output.stderr);
    assert!(
        said.contains("2 connection(s), 6 send(s), 7 receive(s), 1 http step(s)"),
        "{said}"
    );
    let yaml = std::fs::read_to_string(&with_http).unwrap();
    let scenario: serde_norway::Value = serde_norway::from_str(&yaml).unwrap();
    let login = &scenario["steps"][0]["http"];
    assert_eq!(login["method"], "POST", "{yaml}");
    assert_eq!(
        login["url"],
        format!("http://127.0.0.1:{page_port}/login").as_str(),
        "{yaml}"
    );
    assert_eq!(login["body"]["json"]["user"], "ann", "{yaml}");
    assert_eq!(login["expect"]["status"], 200, "{yaml}");
    let mut command = wsfleet();
    command
        .arg("run")
        .arg(&with_http)
        .args(["--quiet", "--out"])
        .arg(format!("json={}", summary_path.display()));
    let output = run_bounded(command, Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(0), "{}\n{yaml}", text(&output.stderr));
    let summary = read_json(&summary_path);
    assert_eq!(logins.load(Ordering::SeqCst), 2);
    assert_eq!(counter(&summary, "http_requests"), 1, "{summary:#}");
    assert_eq!(counter(&summary, "http_2xx"), 1, "{summary:#}");
    assert_eq!(counter(&summary, "iterations_failed"), 0, "{summary:#}");
    assert_eq!(counter(&summary, "messages_sent"), 6, "{summary:#}");
    assert_eq!(counter(&summary, "messages_received"), 7, "{summary:#}");
    let again = server.stats();
    assert_eq!(again.total_connections - replayed.total_connections, 2);
    assert_eq!(
        again.payload_bytes_received - replayed.payload_bytes_received,
        recorded.payload_bytes_received
    );
    runtime.block_on(server.shutdown());
}

/// The example's two edits after the import: a test server of its own, and `target` at it.
fn point_at_testserver(imported: &str) -> String {
    imported
        .lines()
        .map(|line| {
            if line.starts_with("target: '") {
                "# Edited after the import: the recording's server was a test server on a port of its own, so\n\
                 # this example starts one and points `target` at it (tests/import.rs checks the rest is as imported).\n\
                 testserver: { port: 0, subprotocols: [chat.v1] }\n\
                 target: \"${testserver.url}\""
                    .to_owned()
            } else {
                line.to_owned()
            }
        })
        .map(|line| line + "\n")
        .collect()
}

/// scenarios/imported-session.yaml is what `wsfleet import` writes for a real Chromium session
/// against the test server (tests/data/har/chromium-testserver.har, recorded by the test above),
/// pointed at a test server of its own; it plays the session with exact counts.
#[test]
fn the_imported_example_is_its_recording_and_runs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let imported_path = dir.path().join("imported-session.yaml");
    let mut command = wsfleet();
    command
        .current_dir(root)
        .args(["import", "tests/data/har/chromium-testserver.har", "-o"])
        .arg(&imported_path);
    let output = run_bounded(command, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let imported = std::fs::read_to_string(&imported_path).unwrap();
    let example = std::fs::read_to_string(root.join("scenarios/imported-session.yaml")).unwrap();
    assert_eq!(point_at_testserver(&imported), example);

    let summary_path = dir.path().join("summary.json");
    let mut command = wsfleet();
    command
        .arg("run")
        .arg(root.join("scenarios/imported-session.yaml"))
        .args(["--quiet", "--out"])
        .arg(format!("json={}", summary_path.display()));
    let output = run_bounded(command, Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let summary = read_json(&summary_path);
    assert_eq!(counter(&summary, "iterations"), 1, "{summary:#}");
    assert_eq!(counter(&summary, "iterations_failed"), 0, "{summary:#}");
    assert_eq!(counter(&summary, "connections_opened"), 2, "{summary:#}");
    assert_eq!(counter(&summary, "messages_sent"), 6, "{summary:#}");
    assert_eq!(counter(&summary, "messages_received"), 7, "{summary:#}");
    assert_eq!(counter(&summary, "messages_unread"), 0, "{summary:#}");
    for (step, counter, count) in [
        ("connect_json", "connections_opened", 1),
        ("hello", "messages_received", 1),
        ("join", "messages_sent", 1),
        ("joined", "messages_received", 1),
        ("ping", "messages_sent", 1),
        ("ping_ok_3", "messages_received", 1),
        ("connect_echo", "connections_opened", 1),
        ("send_binary", "messages_sent", 1),
        ("receive_binary", "messages_received", 1),
        ("receive", "messages_received", 1),
    ] {
        assert_eq!(step_counter(&summary, step, counter), count, "{step} {counter}");
    }
}

#[test]
fn a_file_over_the_size_limit_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.har");
    // Sparse: no disk space is used.
    std::fs::File::create(&path).unwrap().set_len(257 << 20).unwrap();
    let mut command = wsfleet();
    command.arg("import").arg(&path);
    let output = run_bounded(command, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(3));
    let said = text(&output.stderr);
    assert!(
        said.contains("huge.har` is 257 MiB; wsfleet import reads HAR files of at most 256 MiB"),
        "{said}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn bad_flags_and_files_say_what_to_do() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/har/chrome-session.har");
    let mut command = wsfleet();
    command.arg("import").arg(&fixture).args(["--think", "scale=0"]);
    let output = run_bounded(command, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("`0` is not a factor above 0"),
        "{}",
        text(&output.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let truncated = std::fs::read(&fixture).unwrap();
    let path = dir.path().join("cut.har");
    std::fs::write(&path, &truncated[..truncated.len() / 3]).unwrap();
    let mut command = wsfleet();
    command
        .arg("import")
        .arg(&path)
        .arg("-o")
        .arg(dir.path().join("out.yaml"));
    let output = run_bounded(command, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(3));
    assert!(
        text(&output.stderr).contains("cut.har` ends early"),
        "{}",
        text(&output.stderr)
    );
    assert!(!dir.path().join("out.yaml").exists(), "nothing is written");

    // The checked-in recording imports to stdout; warnings and the summary go to stderr.
    let mut command = wsfleet();
    command
        .arg("import")
        .arg(&fixture)
        .args(["--filter", "app.test", "--think", "none"]);
    let output = run_bounded(command, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let yaml = text(&output.stdout);
    assert!(yaml.starts_with("# Imported by `wsfleet import`"), "{yaml}");
    assert!(!yaml.contains("think:"), "{yaml}");
    let said = text(&output.stderr);
    assert!(said.contains("warning: "), "{said}");
    assert!(
        said.contains("<stdout>: 1 connection(s), 3 send(s), 4 receive(s)"),
        "{said}"
    );
}
