//! The HTTP API over real HTTP: every endpoint, good and bad requests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

const TOKEN: &str = "api-secret";

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|error| panic!("not JSON ({error}): {body}"))
}

#[test]
fn every_endpoint_answers_as_documented() {
    let fleet = Fleet::start(2, &["--api-token", TOKEN]);
    let port = fleet.http_port;
    let token = Some(TOKEN);
    fleet.wait_agents(token, 2);

    // The token is required, by header or query.
    let (code, body) = http("GET", port, "/api/status", None, None);
    assert_eq!(code, 401);
    assert!(json(&body)["error"].as_str().unwrap().contains("requires a token"));
    assert_eq!(
        http("GET", port, &format!("/api/status?token={TOKEN}"), None, None).0,
        200
    );
    assert_eq!(http("GET", port, "/", Some("wrong"), None).0, 401);
    let (code, page) = http("GET", port, "/", token, None);
    assert_eq!(code, 200);
    assert!(page.contains("<title>wsfleet</title>"));
    assert_eq!(http("GET", port, "/assets/app.js", token, None).0, 200);
    // Prometheus scrapes stay open.
    assert_eq!(http("GET", port, "/metrics", None, None).0, 200);

    // Bad requests say what is wrong.
    let (code, body) = http("POST", port, "/api/runs", token, Some("not json"));
    assert_eq!(code, 400, "{body}");
    assert!(json(&body)["error"].as_str().unwrap().contains("the body must be JSON"));
    let (code, body) = http(
        "POST",
        port,
        "/api/runs",
        token,
        Some(r#"{"scenario": "x", "path": "y"}"#),
    );
    assert_eq!(code, 400);
    assert!(json(&body)["error"].as_str().unwrap().contains("exactly one of"));
    let (code, body) = http(
        "POST",
        port,
        "/api/runs",
        token,
        Some(r#"{"scenario": "load: { vus: 1 }\nsteps: []\n"}"#),
    );
    assert_eq!(code, 400);
    let problems = json(&body)["problems"].as_array().unwrap().clone();
    assert!(
        problems
            .iter()
            .any(|problem| problem.as_str().unwrap().starts_with("uploaded.yaml:")),
        "{problems:?}"
    );
    let (code, body) = http(
        "POST",
        port,
        "/api/runs",
        token,
        Some(r#"{"path": "/nonexistent/scenario.yaml"}"#),
    );
    assert_eq!(code, 400);
    assert!(json(&body)["error"]
        .as_str()
        .unwrap()
        .contains("cannot read scenario file"));
    let (code, _) = http("POST", port, "/api/runs/current/stop", token, None);
    assert_eq!(code, 409, "nothing to stop yet");
    assert_eq!(http("GET", port, "/api/nope", token, None).0, 404);
    assert_eq!(http("GET", port, "/api/runs/unknown", token, None).0, 404);
    assert_eq!(http("GET", port, "/api/charts/nope.svg", token, None).0, 404);

    // Start a run; a second one is refused while it goes.
    let request = serde_json::json!({ "scenario": LONG_SCENARIO }).to_string();
    let (code, body) = http("POST", port, "/api/runs", token, Some(&request));
    assert_eq!(code, 202, "{body}");
    let (code, body) = http("POST", port, "/api/runs", token, Some(&request));
    assert_eq!(code, 409, "{body}");
    let status = fleet.wait_status(token, Duration::from_secs(30), "live figures", |status| {
        status["run"]["running"] == true
            && status["run"]["last"]["gauges"]["active_connections"]
                .as_i64()
                .unwrap_or(0)
                > 0
    });
    let run_id = status["run"]["run_id"].as_str().unwrap().to_owned();
    assert_eq!(status["active_run"], run_id.as_str());
    assert!(status["agents"]
        .as_array()
        .unwrap()
        .iter()
        .all(|agent| agent["state"] == "running"));

    // Charts and the live feed.
    let (code, svg) = http("GET", port, "/api/charts/connections.svg", token, None);
    assert_eq!(code, 200);
    assert!(svg.starts_with("<svg"));
    let mut feed = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    feed.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::io::Write::write_all(
        &mut feed,
        format!("GET /api/live?token={TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("\"type\":\"interval\"") {
        let read = std::io::Read::read(&mut feed, &mut buffer).unwrap();
        assert!(read > 0, "the live feed closed");
        received.extend_from_slice(&buffer[..read]);
    }
    assert!(String::from_utf8_lossy(&received).contains("text/event-stream"));

    // Stop it through the API.
    let (code, body) = http("POST", port, "/api/runs/current/stop", token, None);
    assert_eq!(code, 202, "{body}");
    fleet.wait_status(token, Duration::from_secs(30), "the run to stop", |status| {
        status["run"]["running"] == false && status["active_run"].is_null()
    });

    // The history has it, with its summary, intervals and report.
    let runs = json(&http("GET", port, "/api/runs", token, None).1);
    let listed = runs["runs"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], run_id.as_str());
    assert_eq!(listed[0]["status"], "stopped");
    let run = json(&http("GET", port, &format!("/api/runs/{run_id}"), token, None).1);
    assert_eq!(run["summary"]["outcome"], "stopped");
    let opened = run["summary"]["totals"]["counters"]["connections_opened"]
        .as_u64()
        .unwrap();
    assert!(opened >= 6);
    let (code, summary) = http("GET", port, &format!("/api/runs/{run_id}/summary.json"), token, None);
    assert_eq!(code, 200);
    assert_eq!(json(&summary)["run_id"], run_id.as_str());
    let (code, report) = http("GET", port, &format!("/api/runs/{run_id}/report.html"), token, None);
    assert_eq!(code, 200);
    assert!(report.contains("<svg"));
    let intervals = json(&http("GET", port, &format!("/api/runs/{run_id}/intervals"), token, None).1);
    let sum: u64 = intervals["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|interval| interval["counters"]["connections_opened"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(sum, opened, "the stored series adds up to the summary");
}
