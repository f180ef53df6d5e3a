//! The JSON API under `/api` (docs/api.md) and the dashboard that uses only it: the live run and
//! fleet, a live feed (Server-Sent Events), server-rendered charts, runs from the history, and
//! starting and stopping runs. Every asset is compiled into the binary, so it works offline.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;
use wsfleet_scenario::Bundle;

use wsfleet_metrics::catalog::{Counter, Gauge, Hist};

use crate::http::state::HttpState;
use crate::report::charts::{line_chart_with_marks, Series};
use crate::report::series;
use crate::run::{Change, ChangeAction, ControlError};
use crate::runs::StartError;
use crate::thresholds::evaluate;

/// An API error: a status and a message that says what to do.
pub struct ApiError {
    status: StatusCode,
    message: String,
    problems: Vec<String>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            problems: Vec::new(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({ "error": self.message, "problems": self.problems })),
        )
            .into_response()
    }
}

impl From<crate::history::HistoryError> for ApiError {
    fn from(error: crate::history::HistoryError) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
    }
}

pub fn routes(state: HttpState) -> Router<HttpState> {
    Router::new()
        .route("/", get(dashboard))
        .route(
            "/assets/app.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    include_str!("dashboard/app.js"),
                )
            }),
        )
        .route(
            "/assets/app.css",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
                    include_str!("dashboard/app.css"),
                )
            }),
        )
        .route("/api/status", get(status))
        .route("/api/live", get(live_feed))
        .route("/api/charts/{name}", get(chart))
        .route("/api/runs", get(list_runs).post(start_run))
        .route("/api/runs/current/stop", post(stop_run))
        .route("/api/runs/current/control", post(control_run))
        .route("/api/runs/{id}", get(get_run))
        .route("/api/runs/{id}/summary.json", get(run_summary))
        .route("/api/runs/{id}/report.html", get(run_report))
        .route("/api/runs/{id}/intervals", get(run_intervals))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint: see docs/api.md") })
        .route_layer(middleware::from_fn_with_state(state, require_token))
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// With a token configured, every dashboard and API request must carry it, as
/// `Authorization: Bearer TOKEN` or `?token=TOKEN` (for the page's first load and its live feed).
async fn require_token(State(state): State<HttpState>, headers: HeaderMap, request: Request, next: Next) -> Response {
    let Some(expected) = &state.token else {
        return next.run(request).await;
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let query = request
        .uri()
        .query()
        .and_then(|query| serde_urlencoded::from_str::<TokenQuery>(query).ok())
        .and_then(|query| query.token);
    if bearer == Some(expected.as_ref()) || query.as_deref() == Some(expected.as_ref()) {
        return next.run(request).await;
    }
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "this controller requires a token: send `Authorization: Bearer TOKEN` or add `?token=TOKEN`",
    )
    .into_response()
}

/// An attached agent's state in the fleet view: lost during the current (or last) run even if
/// it came back since, running while it has a share of the active run, attached otherwise.
fn agent_state(run_active: bool, has_share: bool, lost: bool) -> &'static str {
    if lost {
        "lost"
    } else if run_active && has_share {
        "running"
    } else {
        "attached"
    }
}

async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard/index.html"))
}

async fn status(State(state): State<HttpState>) -> Json<serde_json::Value> {
    let now = std::time::Instant::now();
    let active = state.runs.active_run();
    let live = state.live.snapshot();
    let share = |id: &str| live.as_ref().and_then(|run| run.shares.get(id).copied());
    let lost = |id: &str| live.as_ref().and_then(|run| run.lost.get(id));
    let mut agents: Vec<serde_json::Value> = state
        .registry
        .agents()
        .iter()
        .map(|agent| {
            json!({
                "id": agent.id,
                "hostname": agent.hostname,
                "address": agent.address,
                "version": agent.version,
                "state": agent_state(active.is_some(), share(&agent.id).is_some(), lost(&agent.id).is_some()),
                "reason": lost(&agent.id).map(|lost| lost.reason.clone()),
                "action": lost(&agent.id).map(|lost| lost.action.clone()),
                "reports_unacknowledged": agent.usage.reports_unacknowledged,
                "vus_share": share(&agent.id),
                "cores": agent.capacity.cores,
                "max_connections": agent.capacity.max_connections,
                "weight": agent.capacity.weight,
                "clock_offset_us": agent.clock_offset_nanos / 1000,
                "attached_seconds": now.duration_since(agent.attached_at).as_secs(),
                "last_heartbeat_ms": now.duration_since(agent.last_seen).as_millis() as u64,
                "cpu_percent": agent.usage.cpu_percent,
                "rss_bytes": agent.usage.rss_bytes,
                "active_connections": agent.usage.active_connections,
            })
        })
        .collect();
    // Agents lost during the current (or last) run stay listed, with why.
    if let Some(run) = &live {
        for (id, lost) in &run.lost {
            if !agents.iter().any(|agent| agent["id"] == id.as_str()) {
                agents.push(json!({
                    "id": id,
                    "state": "lost",
                    "reason": lost.reason,
                    "action": lost.action,
                    "vus_share": run.shares.get(id),
                }));
            }
        }
    }
    let run = live.map(|run| {
        let duration = run
            .last_interval
            .as_ref()
            .map_or(0.0, |(interval, _)| *interval as f64 + 1.0);
        let thresholds: Vec<_> = run
            .thresholds
            .iter()
            .map(|threshold| evaluate(threshold, &run.totals, duration, &run.peak_gauges))
            .collect();
        let total = run.totals.total();
        let steps: Vec<serde_json::Value> = run
            .totals
            .sets
            .iter()
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, set)| json!({ "name": name, "counters": set.counters }))
            .collect();
        json!({
            "run_id": run.run_id,
            "scenario": run.scenario,
            "running": run.running,
            "started_unix_ms": run.started_unix_ms,
            "seconds": duration,
            "last": run.series.last(),
            "totals": total.counters,
            "peak_gauges": run.peak_gauges,
            "thresholds": thresholds,
            "steps": steps,
            "agents_lost": run.agents_lost,
            "changes": run.changes,
            "parts": run.parts.iter().map(|(name, model)| json!({ "name": name, "model": model })).collect::<Vec<_>>(),
        })
    });
    Json(
        json!({ "agents": agents, "run": run, "active_run": active, "starting": state.runs.is_active() && active.is_none() }),
    )
}

async fn live_feed(State(state): State<HttpState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut updates = state.runs.subscribe();
    let stream = async_stream(move |sender| async move {
        loop {
            match updates.recv().await {
                Ok(update) => {
                    let data = serde_json::to_string(&update).unwrap_or_default();
                    if sender.send(Ok(Event::default().data(data))).await.is_err() {
                        break;
                    }
                }
                // A slow page skipped updates: it refreshes from /api/status anyway.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
}

/// A stream fed by a task through a channel (the task ends when the client goes away).
fn async_stream<F, Fut>(produce: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Event, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    tokio::spawn(produce(sender));
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}

/// The live run's charts as SVG: `connections.svg`, `bytes.svg`, `active.svg`, `messages.svg`,
/// `errors.svg`, `latency.svg`.
async fn chart(State(state): State<HttpState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let (intervals, marks) = state
        .live
        .snapshot()
        .map(|run| {
            // Stage ends, and the operator's changes.
            let mut marks = run.stage_ends;
            marks.extend(run.changes.iter().map(|change| change.at_seconds));
            (run.series.all(), marks)
        })
        .unwrap_or_default();
    let line_chart =
        |title: &str, unit: &str, series: &[Series<'_>]| line_chart_with_marks(title, unit, series, &marks);
    let svg = match name.as_str() {
        "connections.svg" => line_chart(
            "New and Failed Connections/s",
            "connections / s",
            &[
                series::counter(&intervals, "new", Counter::ConnectionsOpened),
                series::counter(&intervals, "failed", Counter::ConnectionsFailed),
            ],
        ),
        "bytes.svg" => line_chart(
            "Bytes Sent/s and Received/s (wire)",
            "bytes / s",
            &[
                series::counter(&intervals, "sent", Counter::BytesSent),
                series::counter(&intervals, "received", Counter::BytesReceived),
            ],
        ),
        "active.svg" => line_chart(
            "Active connections",
            "connections",
            &[series::gauge(&intervals, "active", Gauge::ActiveConnections)],
        ),
        "messages.svg" => line_chart(
            "Messages/s",
            "messages / s",
            &[
                series::counter(&intervals, "sent", Counter::MessagesSent),
                series::counter(&intervals, "received", Counter::MessagesReceived),
            ],
        ),
        "errors.svg" => line_chart("Errors/s", "errors / s", &[series::errors(&intervals, "errors")]),
        "latency.svg" => line_chart(
            "Message latency",
            "milliseconds",
            &series::latency(&intervals, Hist::MessageLatency),
        ),
        other => return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no chart named `{other}`: use connections.svg, bytes.svg, active.svg, messages.svg, errors.svg or latency.svg"))),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        svg,
    )
        .into_response())
}

fn history(state: &HttpState) -> Result<&crate::history::History, ApiError> {
    state
        .runs
        .history()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "this controller keeps no run history"))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?
}

async fn list_runs(State(state): State<HttpState>) -> Result<Json<serde_json::Value>, ApiError> {
    let history = history(&state)?.clone();
    let runs = blocking(move || Ok(history.list_runs(100)?)).await?;
    Ok(Json(json!({ "runs": runs })))
}

async fn get_run(State(state): State<HttpState>, Path(id): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let history = history(&state)?.clone();
    let (record, summary) = blocking(move || Ok((history.run(&id)?, history.summary_json(&id)?))).await?;
    let record =
        record.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no run with that id: list them at /api/runs"))?;
    let summary: Option<serde_json::Value> = summary.and_then(|text| serde_json::from_str(&text).ok());
    Ok(Json(json!({ "run": record, "summary": summary })))
}

async fn run_summary(State(state): State<HttpState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let history = history(&state)?.clone();
    let summary = blocking(move || Ok(history.summary_json(&id)?)).await?;
    let summary = summary.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no summary for that run (unknown, still running, or interrupted)",
        )
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"summary.json\""),
        ],
        summary,
    )
        .into_response())
}

async fn run_report(State(state): State<HttpState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let history = history(&state)?.clone();
    let report = blocking(move || Ok(history.report_html(&id)?)).await?;
    let report = report.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no report for that run (unknown, still running, or interrupted)",
        )
    })?;
    Ok(Html(report).into_response())
}

async fn run_intervals(
    State(state): State<HttpState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let history = history(&state)?.clone();
    let intervals = blocking(move || Ok(history.intervals(&id)?)).await?;
    let intervals: Vec<serde_json::Value> = intervals
        .into_iter()
        .filter_map(|(_, text)| serde_json::from_str(&text).ok())
        .collect();
    Ok(Json(json!({ "intervals": intervals })))
}

/// `POST /api/runs`: `{"scenario": "YAML"}` or `{"path": "FILE on the controller"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRequest {
    scenario: Option<String>,
    path: Option<String>,
}

async fn start_run(
    State(state): State<HttpState>,
    body: Result<Json<StartRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(request) = body.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body must be JSON like {{\"scenario\": \"YAML\"}} or {{\"path\": \"FILE\"}}: {rejection}"),
        )
    })?;
    let bundle = match (request.scenario, request.path) {
        (Some(source), None) => Bundle {
            path: "uploaded.yaml".into(),
            source,
            files: Default::default(),
        },
        (None, Some(path)) => Bundle::read(std::path::Path::new(&path))
            .map_err(|error| ApiError::new(StatusCode::BAD_REQUEST, error.to_string()))?,
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "give exactly one of `scenario` (the YAML) or `path` (a file on the controller)",
            ))
        }
    };
    match state.runs.start(bundle, HashMap::new(), None) {
        Ok(_) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "status": "starting", "watch": "/api/status" })),
        )),
        Err(StartError::Scenario(error)) => Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            message: "the scenario is invalid".into(),
            problems: error.problems().iter().map(ToString::to_string).collect(),
        }),
        Err(error @ StartError::Busy(_)) => Err(ApiError::new(StatusCode::CONFLICT, error.to_string())),
        Err(error @ (StartError::NoAgents | StartError::ShuttingDown)) => {
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string()))
        }
    }
}

async fn stop_run(
    State(state): State<HttpState>,
    _query: Query<HashMap<String, String>>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let run = state.runs.active_run();
    if state.runs.stop() {
        Ok((StatusCode::ACCEPTED, Json(json!({ "stopping": run }))))
    } else {
        Err(ApiError::new(StatusCode::CONFLICT, "no run is active"))
    }
}

/// The body of `POST /api/runs/current/control`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlRequest {
    /// `set_vus`, `set_rate`, `hold`, `resume`, `pause`, `unpause` or `stop`.
    action: String,
    /// The scenario's part (omitted for a plain scenario's only part).
    #[serde(default)]
    part: Option<String>,
    /// `set_vus`: the fleet's VUs.
    #[serde(default)]
    vus: Option<u64>,
    /// `set_rate`: arrivals per second.
    #[serde(default)]
    rate: Option<f64>,
    /// `set_vus`, `set_rate`: how long the ramp to the new value takes, e.g. `30s` (default:
    /// at once).
    #[serde(default)]
    ramp: Option<String>,
    /// `drain`, `add_agent`: the agent's id.
    #[serde(default)]
    agent: Option<String>,
}

/// Turns the request into a change, or says what is wrong with it.
fn change_of(request: ControlRequest) -> Result<Change, String> {
    let ramp = match &request.ramp {
        None => Duration::ZERO,
        Some(text) => humantime::parse_duration(text)
            .map_err(|error| format!("`ramp` must be a duration like `30s` or `2m` (got `{text}`: {error})"))?,
    };
    let needs_no_value = |action: &str| -> Result<(), String> {
        if request.vus.is_some() || request.rate.is_some() || request.ramp.is_some() {
            return Err(format!("`{action}` takes no `vus`, `rate` or `ramp`"));
        }
        Ok(())
    };
    if request.agent.is_some() && request.action != "drain" && request.action != "add_agent" {
        return Err(format!(
            "`{}` takes no `agent`: only `drain` and `add_agent` name one",
            request.action
        ));
    }
    let action = match request.action.as_str() {
        "set_vus" => {
            if request.rate.is_some() {
                return Err("`set_vus` takes `vus`, not `rate`: set a rate with `set_rate`".into());
            }
            let vus = request.vus.ok_or(
                "`set_vus` needs `vus`, the fleet's VUs for the part, e.g. {\"action\": \"set_vus\", \"vus\": 50}",
            )?;
            ChangeAction::SetVus { vus, ramp }
        }
        "set_rate" => {
            if request.vus.is_some() {
                return Err("`set_rate` takes `rate`, not `vus`: set VUs with `set_vus`".into());
            }
            let rate = request.rate.ok_or(
                "`set_rate` needs `rate`, arrivals per second for the part, e.g. {\"action\": \"set_rate\", \"rate\": 20}",
            )?;
            ChangeAction::SetRate { rate, ramp }
        }
        "hold" => {
            needs_no_value("hold")?;
            ChangeAction::Hold
        }
        "resume" => {
            needs_no_value("resume")?;
            ChangeAction::Resume
        }
        "pause" => {
            needs_no_value("pause")?;
            ChangeAction::Pause
        }
        "unpause" => {
            needs_no_value("unpause")?;
            ChangeAction::Unpause
        }
        "stop" => {
            needs_no_value("stop")?;
            ChangeAction::Stop
        }
        "drain" => {
            needs_no_value("drain")?;
            let agent = request
                .agent
                .clone()
                .ok_or("`drain` needs `agent`, the id of the agent to drain, e.g. {\"action\": \"drain\", \"agent\": \"fleet-1\"}")?;
            ChangeAction::Drain { agent }
        }
        "add_agent" => {
            needs_no_value("add_agent")?;
            if request.part.is_some() {
                return Err("`add_agent` takes no `part`: the agent joins every part of the run".into());
            }
            let agent = request.agent.clone().ok_or(
                "`add_agent` needs `agent`, the id of an agent attached during the run, e.g. {\"action\": \"add_agent\", \"agent\": \"fleet-2\"}",
            )?;
            ChangeAction::AddAgent { agent }
        }
        other => {
            return Err(format!(
            "unknown action `{other}`: use set_vus, set_rate, hold, resume, pause, unpause, stop, drain or add_agent"
        ))
        }
    };
    Ok(Change {
        part: request.part,
        action,
    })
}

async fn control_run(
    State(state): State<HttpState>,
    body: Result<Json<ControlRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(request) = body.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the body must be JSON like {{\"action\": \"set_vus\", \"vus\": 50, \"ramp\": \"10s\"}}: {rejection}"
            ),
        )
    })?;
    let change = change_of(request).map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, message))?;
    match state.runs.change(change).await {
        Ok(change) => Ok(Json(json!({ "applied": change }))),
        Err(error @ ControlError::NoRun) => Err(ApiError::new(StatusCode::CONFLICT, error.to_string())),
        Err(error @ ControlError::Refused(_)) => {
            Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error.to_string()))
        }
    }
}
