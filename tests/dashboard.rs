//! The dashboard in a real browser: headless Chromium, driven over the DevTools protocol, shows
//! live non-zero figures that agree with the API, raises the VUs from its controls (with a
//! confirmation; the charts mark the change), drains an agent from its row, and stops the run
//! from its button. A
//! screenshot is saved as target/test-artifacts/dashboard.png.
//!
//! Chromium comes from Debian's `chromium` package (`.ci/run` installs it). Without it the test
//! fails under CI and is skipped, with a message, elsewhere.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::BufRead;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

fn chromium() -> Option<std::path::PathBuf> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .map(std::path::PathBuf::from)
    .find(|path| path.exists())
}

/// A page in the browser, driven by DevTools commands.
struct Page {
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    next_id: u64,
}

impl Page {
    async fn command(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = serde_json::json!({ "id": id, "method": method, "params": params });
        self.socket.send(Message::text(request.to_string())).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("DevTools answer")
                .unwrap()
                .unwrap();
            if let Message::Text(text) = message {
                let value: serde_json::Value = serde_json::from_str(&text).unwrap();
                if value["id"] == id {
                    assert!(value.get("error").is_none(), "{method}: {value}");
                    return value["result"].clone();
                }
            }
        }
    }

    async fn eval(&mut self, expression: &str) -> serde_json::Value {
        let result = self
            .command(
                "Runtime.evaluate",
                serde_json::json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        result["result"]["value"].clone()
    }
}

#[test]
fn dashboard_shows_live_figures_steers_and_stops_the_run() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is required under CI: .ci/run installs Debian's chromium"
        );
        eprintln!("skipping: no chromium on this machine (apt-get install chromium)");
        return;
    };
    let fleet = Fleet::start(2, &[]);
    let port = fleet.http_port;
    fleet.wait_agents(None, 2);
    let request = serde_json::json!({ "scenario": LONG_SCENARIO }).to_string();
    assert_eq!(http("POST", port, "/api/runs", None, Some(&request)).0, 202);
    fleet.wait_status(None, Duration::from_secs(30), "live figures", |status| {
        status["run"]["last"]["gauges"]["active_connections"]
            .as_i64()
            .unwrap_or(0)
            > 0
    });

    let profile = tempfile::tempdir().unwrap();
    let mut chrome = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
        ])
        .args([
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
            "--window-size=1400,1800",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Chromium prints its DevTools address on stderr.
    let stderr = chrome.stderr.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                let _ = sender.send(url.to_owned());
            }
        }
    });
    let browser_url = receiver
        .recv_timeout(Duration::from_secs(30))
        .expect("chromium started");
    let devtools_port: u16 = browser_url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (code, target) = http(
        "PUT",
        devtools_port,
        &format!("/json/new?http://127.0.0.1:{port}/"),
        None,
        None,
    );
    assert_eq!(code, 200, "{target}");
    let target: serde_json::Value = serde_json::from_str(&target).unwrap();
    // Chromium names itself `localhost`, which may resolve to ::1 first; it listens on 127.0.0.1.
    let page_url = target["webSocketDebuggerUrl"]
        .as_str()
        .unwrap()
        .replace("ws://localhost:", "ws://127.0.0.1:");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (socket, _) = tokio_tungstenite::connect_async(page_url.as_str()).await.unwrap();
        let mut page = Page { socket, next_id: 0 };
        page.command("Runtime.enable", serde_json::json!({})).await;

        // Live, non-zero figures that agree with the API.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let shown = page
                .eval(
                    "JSON.stringify({ active: document.getElementById('tile-active').textContent, \
                       state: document.getElementById('run-state').textContent, \
                       title: document.getElementById('run-title').textContent, \
                       agents: document.querySelectorAll('#fleet tbody tr').length, \
                       charts: [...document.querySelectorAll('img[data-chart]')].filter(image => image.complete && image.naturalWidth > 0).length, \
                       steps: document.querySelectorAll('#steps tbody tr').length })",
                )
                .await;
            let shown: serde_json::Value = serde_json::from_str(shown.as_str().unwrap_or("{}")).unwrap();
            let ready = shown["state"] == "running" && shown["active"].as_str().is_some_and(|active| active.parse::<u64>().is_ok_and(|value| value > 0)) && shown["charts"] == 6 && shown["steps"].as_u64().unwrap_or(0) >= 3;
            if ready {
                let (_, status) = http("GET", port, "/api/status", None, None);
                let status: serde_json::Value = serde_json::from_str(&status).unwrap();
                assert_eq!(shown["agents"], status["agents"].as_array().unwrap().len());
                assert!(shown["title"].as_str().unwrap().contains(status["run"]["run_id"].as_str().unwrap()), "{shown}");
                // The page's active-connections tile shows a value the API also reports (the page
                // may be a second behind): at most the run's VUs.
                let active: u64 = shown["active"].as_str().unwrap().parse().unwrap();
                assert!((1..=6).contains(&active), "{shown}");
                break;
            }
            assert!(Instant::now() < deadline, "the dashboard never showed live figures: {shown}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }

        // Steer from the page: 9 VUs at once (the plan holds 6), asked, then confirmed.
        page.eval("document.getElementById('steer-value').value = '9'; document.getElementById('steer-set').click()")
            .await;
        let question = page.eval("document.getElementById('steer-question').textContent").await;
        assert_eq!(question, "Set the VUs to 9 at once?");
        let (_, status) = http("GET", port, "/api/status", None, None);
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        assert_eq!(status["run"]["changes"], serde_json::json!([]), "nothing changes before the confirmation");
        page.eval("document.getElementById('steer-yes').click()").await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, status) = http("GET", port, "/api/status", None, None);
            let status: serde_json::Value = serde_json::from_str(&status).unwrap();
            let change = &status["run"]["changes"][0];
            let active = status["run"]["last"]["gauges"]["active_connections"].as_i64().unwrap_or(0);
            let (_, chart) = http("GET", port, "/api/charts/active.svg", None, None);
            let listed = page
                .eval("[...document.querySelectorAll('#changes li')].map(item => item.textContent).join('|')")
                .await;
            // The change is on the timeline, the page lists it, the fleet holds more than the
            // plan's 6, and the active-connections chart marks it (a dashed grey line).
            if change["action"] == "set_vus"
                && change["value"] == 9.0
                && listed.as_str().is_some_and(|listed| listed.contains("VUs of the scenario set to 9 at once"))
                && active > 6
                && chart.to_ascii_lowercase().contains("#787878")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the click did not raise the VUs: change {change}, active {active}, listed {listed}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }

        // Drain fleet-1 from its row, confirmed: its share moves to fleet-0.
        page.eval("document.querySelector('button.drain[data-agent=\"fleet-1\"]').click()").await;
        let question = page.eval("document.getElementById('steer-question').textContent").await;
        assert_eq!(question, "Drain agent fleet-1?");
        page.eval("document.getElementById('steer-yes').click()").await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, status) = http("GET", port, "/api/status", None, None);
            let status: serde_json::Value = serde_json::from_str(&status).unwrap();
            let share = |id: &str| {
                status["agents"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|agent| agent["id"] == id)
                    .and_then(|agent| agent["vus_share"].as_u64())
            };
            if share("fleet-0") == Some(9) && share("fleet-1") == Some(0) && status["run"]["changes"][1]["action"] == "drain" {
                break;
            }
            assert!(Instant::now() < deadline, "the drain did not move the share: {}", status["agents"]);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }

        // A screenshot for people to look at.
        let shot = page.command("Page.captureScreenshot", serde_json::json!({ "format": "png" })).await;
        let png = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, shot["data"].as_str().unwrap()).unwrap();
        let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
        std::fs::create_dir_all(&artifacts).unwrap();
        std::fs::write(artifacts.join("dashboard.png"), &png).unwrap();
        assert!(png.starts_with(b"\x89PNG"));

        // Stop the run from the page.
        page.eval("document.getElementById('stop').click()").await;
    });
    fleet.wait_status(
        None,
        Duration::from_secs(30),
        "the run to stop after the click",
        |status| status["run"]["running"] == false && status["active_run"].is_null(),
    );
    let runs: serde_json::Value = serde_json::from_str(&http("GET", port, "/api/runs", None, None).1).unwrap();
    assert_eq!(runs["runs"][0]["status"], "stopped");
    let _ = chrome.kill();
    let _ = chrome.wait();
}
