//! Starting and stopping runs, one at a time, from the command line or the HTTP API alike: a
//! started run plays in the background while its events update the live state, the history
//! (when the controller keeps one), the live feed of dashboards, and the caller's own channel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wsfleet_scenario::Bundle;

use crate::history::{History, HistoryError};
use crate::run::{execute, RunError, RunEvent, RunRequest};
use crate::summary::{IntervalSummary, Summary};
use crate::Controller;

/// A message of the live feed (`/api/live`), as JSON.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveUpdate {
    Started {
        run_id: String,
        scenario: String,
        agents: usize,
        vus: u64,
    },
    Interval {
        run_id: String,
        figures: IntervalSummary,
    },
    AgentLost {
        run_id: String,
        agent: String,
        reason: String,
        /// What the run's policy did (`load.on_agent_lost`).
        action: String,
    },
    Finished {
        run_id: String,
        outcome: String,
    },
}

/// Why a run could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("run {0} is still active: stop it first")]
    Busy(String),
    #[error("{0}")]
    Scenario(#[from] wsfleet_scenario::ScenarioError),
    #[error("no agent is attached: start agents with `wsfleet agent --controller URL`")]
    NoAgents,
}

struct Active {
    /// Known once the run has started on the agents.
    run_id: Option<String>,
    stop: CancellationToken,
}

/// The controller's runs.
pub struct Runs {
    controller: Controller,
    history: Option<History>,
    active: Mutex<Option<Active>>,
    feed: broadcast::Sender<LiveUpdate>,
}

impl Runs {
    pub fn new(controller: Controller, history: Option<History>) -> Arc<Runs> {
        let (feed, _) = broadcast::channel(256);
        Arc::new(Runs {
            controller,
            history,
            active: Mutex::new(None),
            feed,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Active>> {
        self.active.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn history(&self) -> Option<&History> {
        self.history.as_ref()
    }

    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// The live feed, for dashboards.
    pub fn subscribe(&self) -> broadcast::Receiver<LiveUpdate> {
        self.feed.subscribe()
    }

    /// The active run's id, once it has started.
    pub fn active_run(&self) -> Option<String> {
        self.lock().as_ref().and_then(|active| active.run_id.clone())
    }

    pub fn is_active(&self) -> bool {
        self.lock().is_some()
    }

    /// Stops the active run gracefully; false when none is active.
    pub fn stop(&self) -> bool {
        match self.lock().as_ref() {
            Some(active) => {
                active.stop.cancel();
                true
            }
            None => false,
        }
    }

    /// Starts `bundle` on the attached agents in the background. `events`, when given, receives
    /// every run event too. The handle yields the summary.
    pub fn start(
        self: &Arc<Self>,
        bundle: Bundle,
        variables: HashMap<String, String>,
        events: Option<mpsc::UnboundedSender<RunEvent>>,
    ) -> Result<(CancellationToken, JoinHandle<Result<Summary, RunError>>), StartError> {
        let scenario = bundle.compile()?;
        if self.controller.registry.agent_count() == 0 {
            return Err(StartError::NoAgents);
        }
        let stop = CancellationToken::new();
        {
            let mut active = self.lock();
            if let Some(active) = active.as_ref() {
                return Err(StartError::Busy(
                    active.run_id.clone().unwrap_or_else(|| "starting".into()),
                ));
            }
            *active = Some(Active {
                run_id: None,
                stop: stop.clone(),
            });
        }
        let runs = self.clone();
        let run_stop = stop.clone();
        let handle = tokio::spawn(async move {
            let result = runs.play(bundle, scenario, variables, events, run_stop).await;
            *runs.lock() = None;
            result
        });
        Ok((stop, handle))
    }

    async fn play(
        &self,
        bundle: Bundle,
        scenario: wsfleet_scenario::Scenario,
        mut variables: HashMap<String, String>,
        forward: Option<mpsc::UnboundedSender<RunEvent>>,
        stop: CancellationToken,
    ) -> Result<Summary, RunError> {
        let source = bundle.source.clone();
        let scenario_name = scenario.name.clone();
        // The scenario's own test server lives as long as the run.
        let testserver = match start_testserver(&scenario).await {
            Ok(testserver) => testserver,
            Err(error) => return Err(RunError::Busy(error)),
        };
        if let Some((_, values)) = &testserver {
            variables.extend(values.clone());
        }
        let (events, mut receiver) = mpsc::unbounded_channel();
        let request = RunRequest {
            bundle,
            variables,
            lead_time: Duration::from_millis(1000),
        };
        let registry = self.controller.registry.clone();
        let run = tokio::spawn(async move { execute(&registry, request, Some(events), stop).await });
        let live = &self.controller.live;
        let mut run_id = String::new();
        while let Some(event) = receiver.recv().await {
            match &event {
                RunEvent::Started {
                    run_id: id,
                    agents,
                    vus,
                    ..
                } => {
                    run_id = id.clone();
                    if let Some(active) = self.lock().as_mut() {
                        active.run_id = Some(id.clone());
                    }
                    live.begin(id, &scenario);
                    if let Some(history) = &self.history {
                        let (history, id, name, source) =
                            (history.clone(), id.clone(), scenario_name.clone(), source.clone());
                        record(move || history.begin_run(&id, &name, &source)).await;
                    }
                    let _ = self.feed.send(LiveUpdate::Started {
                        run_id: id.clone(),
                        scenario: scenario_name.clone(),
                        agents: *agents,
                        vus: *vus,
                    });
                }
                RunEvent::Interval { interval, sets } => {
                    let figures = Summary::interval_of(*interval, sets);
                    if let Some(history) = &self.history {
                        let json = serde_json::to_string(&figures).unwrap_or_default();
                        let (history, id, interval) = (history.clone(), run_id.clone(), *interval);
                        record(move || history.record_interval(&id, interval, &json)).await;
                    }
                    let _ = self.feed.send(LiveUpdate::Interval {
                        run_id: run_id.clone(),
                        figures,
                    });
                }
                RunEvent::LateReport { interval, sets, .. } => {
                    // The stored series gets the interval's complete figures.
                    if let Some(history) = &self.history {
                        let json = serde_json::to_string(&Summary::interval_of(*interval, sets)).unwrap_or_default();
                        let (history, id, interval) = (history.clone(), run_id.clone(), *interval);
                        record(move || history.record_interval(&id, interval, &json)).await;
                    }
                }
                RunEvent::AgentLost { agent, reason, action } => {
                    let _ = self.feed.send(LiveUpdate::AgentLost {
                        run_id: run_id.clone(),
                        agent: agent.clone(),
                        reason: reason.clone(),
                        action: action.clone(),
                    });
                }
                RunEvent::Reshared { .. } => {}
            }
            live.apply(&event);
            if let Some(forward) = &forward {
                let _ = forward.send(event);
            }
        }
        live.finish();
        if let Some((server, _)) = testserver {
            server.shutdown().await;
        }
        let summary = match run.await {
            Ok(result) => result?,
            Err(error) => return Err(RunError::Busy(format!("the run task failed: {error}"))),
        };
        if let Some(history) = &self.history {
            let status = history_status(&summary.outcome);
            let summary_json = serde_json::to_string(&summary).unwrap_or_default();
            let report = crate::report::render(&summary, &source);
            let (history, id) = (history.clone(), summary.run_id.clone());
            record(move || history.finish_run(&id, &status, &summary_json, Some(&report))).await;
        }
        let _ = self.feed.send(LiveUpdate::Finished {
            run_id: summary.run_id.clone(),
            outcome: summary.outcome.clone(),
        });
        Ok(summary)
    }
}

/// The run value carrying the PEM certificate of the scenario's TLS test server, which agents
/// add to the roots they trust.
pub const TESTSERVER_CA_VARIABLE: &str = wsfleet_scenario::TESTSERVER_CA_VARIABLE;

/// Starts the test server a scenario asks for; returns it with the values it publishes
/// (`testserver.url`, `.host`, `.port`).
pub async fn start_testserver(
    scenario: &wsfleet_scenario::Scenario,
) -> Result<Option<(wsfleet_testserver::TestServer, HashMap<String, String>)>, String> {
    let Some(spec) = &scenario.testserver else {
        return Ok(None);
    };
    let config = wsfleet_testserver::Config {
        subprotocols: spec.subprotocols.clone(),
        tls: spec.tls,
        ..wsfleet_testserver::Config::default()
    };
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], spec.port));
    let server = wsfleet_testserver::TestServer::start(address, config)
        .await
        .map_err(|error| format!("cannot start the scenario's test server on {address}: {error}"))?;
    let bound = server.local_addr();
    tracing::info!(url = %server.url(), "test server started for the run");
    let mut values = HashMap::from([
        ("testserver.url".to_owned(), server.url()),
        ("testserver.host".to_owned(), bound.ip().to_string()),
        ("testserver.port".to_owned(), bound.port().to_string()),
    ]);
    // Agents trust the run's own test server: its certificate is made for this run.
    if let Some(pem) = server.ca_certificate_pem() {
        values.insert(TESTSERVER_CA_VARIABLE.to_owned(), pem.to_string());
    }
    Ok(Some((server, values)))
}

/// The history's status word for an outcome: completed, stopped, aborted, failed.
fn history_status(outcome: &str) -> String {
    outcome
        .split([':', ' '])
        .next()
        .filter(|word| !word.is_empty())
        .unwrap_or("completed")
        .to_owned()
}

/// Writes to the run history off the async threads; a failure is logged, never fatal: the run
/// and its outputs matter more than its history.
async fn record(write: impl FnOnce() -> Result<(), HistoryError> + Send + 'static) {
    match tokio::task::spawn_blocking(write).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "cannot record run history"),
        Err(error) => tracing::warn!(%error, "run history task failed"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn history_status_words() {
        assert_eq!(super::history_status("completed with lost agents"), "completed");
        assert_eq!(super::history_status("aborted: threshold `x` failed"), "aborted");
        assert_eq!(super::history_status("stopped"), "stopped");
        assert_eq!(super::history_status("failed: agent `a`: boom"), "failed");
    }
}
