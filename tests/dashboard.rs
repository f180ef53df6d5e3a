//! The dashboard in a real browser: headless Chromium, driven over the DevTools protocol, shows
//! live non-zero figures that agree with the API, raises the VUs from its controls (with a
//! confirmation; the charts mark the change), drains an agent from its row, and stops the run
//! from its button. A
//! screenshot is saved as target/test-artifacts/dashboard.png.
//!
//! Chromium comes from Debian's `chromium` package (`.ci/run` installs it); `common::browser`
//! starts and drives it. Without it the test fails under CI and is skipped, with a message,
//! elsewhere.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn dashboard_shows_live_figures_steers_and_stops_the_run() {
    let Some(browser) = browser::chromium_or_skip() else {
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

    let chrome = browser::Browser::launch(&browser, "1400,1800");
    let page_url = chrome.new_tab(&format!("http://127.0.0.1:{port}/"));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut page = browser::Page::connect(&page_url).await;
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
    drop(chrome);
}
