//! Starting and stopping runs, one at a time, from the command line or the HTTP API alike: a
//! started run plays in the background, and each of its events, built once by the run, goes
//! to the live state, the history (when the controller keeps one), the live feed of
//! dashboards, and the caller's own channel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wsfleet_scenario::{Bundle, Scenario, TestServerSpec};

use crate::controller::Controller;
use crate::history::{History, HistoryError};
use crate::outcome::Outcome;
use crate::run::{execute, Change, ChangeEvent, ChangeRequest, ControlError, RunError, RunEvent, RunRequest};
use crate::summary::{IntervalSummary, Summary};

/// How long before the start the assignments go out: agents compile the scenario and connect
/// their feeds meanwhile.
const LEAD_TIME: Duration = Duration::from_millis(1000);

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
        /// What the run's policy did (`load.on_agent_lost`), in words.
        action: String,
    },
    Finished {
        run_id: String,
        outcome: Outcome,
    },
    /// The operator changed the run.
    Changed {
        run_id: String,
        change: ChangeEvent,
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
    #[error("the controller is shutting down: it takes no new run")]
    ShuttingDown,
}

/// A test server started for a run (the scenario's `testserver:`), stopped after the run.
pub struct RunTestServer {
    /// The values it publishes to the run: `testserver.url`, `.host`, `.port`, and its CA
    /// certificate under TLS.
    pub values: HashMap<String, String>,
    /// Stops it.
    pub stop: BoxFuture<'static, ()>,
}

/// Why a scenario's test server could not start, in words that say where and what to do.
pub type TestServerError = Box<dyn std::error::Error + Send + Sync>;

/// Starts the test server a scenario asks for, or says why it cannot. The binary provides it,
/// so the controller does not depend on the test server.
pub type TestServerStarter =
    Arc<dyn Fn(TestServerSpec) -> BoxFuture<'static, Result<RunTestServer, TestServerError>> + Send + Sync>;

struct Active {
    /// Known once the run has started on the agents.
    run_id: Option<String>,
    stop: CancellationToken,
    /// Where the operator's changes go to the run.
    changes: mpsc::UnboundedSender<ChangeRequest>,
}

/// The controller's runs.
pub struct Runs {
    controller: Controller,
    history: Option<History>,
    testserver: Option<TestServerStarter>,
    active: Mutex<Option<Active>>,
    /// No new run starts once the controller shuts down.
    closed: CancellationToken,
    /// Whether a run is active, for waiting until none is.
    busy: watch::Sender<bool>,
    feed: broadcast::Sender<LiveUpdate>,
}

impl Runs {
    pub fn new(controller: Controller, history: Option<History>, testserver: Option<TestServerStarter>) -> Arc<Runs> {
        let (feed, _) = broadcast::channel(256);
        Arc::new(Runs {
            controller,
            history,
            testserver,
            active: Mutex::new(None),
            closed: CancellationToken::new(),
            busy: watch::Sender::new(false),
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

    /// Changes the active run (VUs, rate, hold, pause, stop of a part); says what changed, or
    /// why nothing did.
    pub async fn change(&self, change: Change) -> Result<ChangeEvent, ControlError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let sent = match self.lock().as_ref() {
            Some(active) => active.changes.send((change, answer)).is_ok(),
            None => false,
        };
        if !sent {
            return Err(ControlError::NoRun);
        }
        // A run that ends before it reads the change drops the answer: no run to change.
        answered.await.unwrap_or(Err(ControlError::NoRun))
    }

    /// Refuses new runs from now on (the controller is shutting down).
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// Waits until no run is active.
    pub async fn idle(&self) {
        let mut busy = self.busy.subscribe();
        let _ = busy.wait_for(|busy| !busy).await;
    }

    /// Compiles `bundle` and starts it (see [`Runs::start_compiled`]).
    pub fn start(
        self: &Arc<Self>,
        bundle: Bundle,
        variables: HashMap<String, String>,
        events: Option<mpsc::UnboundedSender<RunEvent>>,
    ) -> Result<(CancellationToken, JoinHandle<Result<Summary, RunError>>), StartError> {
        let scenario = bundle.compile()?;
        self.start_compiled(bundle, scenario, variables, events)
    }

    /// Starts `scenario`, compiled from `bundle`, on the attached agents in the background.
    /// `events`, when given, receives every run event too. The handle yields the summary.
    pub fn start_compiled(
        self: &Arc<Self>,
        bundle: Bundle,
        scenario: Scenario,
        variables: HashMap<String, String>,
        events: Option<mpsc::UnboundedSender<RunEvent>>,
    ) -> Result<(CancellationToken, JoinHandle<Result<Summary, RunError>>), StartError> {
        if self.closed.is_cancelled() {
            return Err(StartError::ShuttingDown);
        }
        if self.controller.registry.agent_count() == 0 {
            return Err(StartError::NoAgents);
        }
        let stop = CancellationToken::new();
        let (changes, change_receiver) = mpsc::unbounded_channel();
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
                changes,
            });
            self.busy.send_replace(true);
        }
        let runs = self.clone();
        let run_stop = stop.clone();
        let handle = tokio::spawn(async move {
            let result = runs
                .play(bundle, Arc::new(scenario), variables, events, run_stop, change_receiver)
                .await;
            *runs.lock() = None;
            runs.busy.send_replace(false);
            result
        });
        Ok((stop, handle))
    }

    /// Starts the scenario's test server, when it asks for one.
    async fn start_testserver(&self, scenario: &Scenario) -> Result<Option<RunTestServer>, RunError> {
        let Some(spec) = &scenario.testserver else {
            return Ok(None);
        };
        let Some(start) = &self.testserver else {
            return Err(RunError::TestServer(
                "this controller cannot start the scenario's test server: start one with `wsfleet testserver` and name its URL in the scenario".into(),
            ));
        };
        start(spec.clone())
            .await
            .map(Some)
            .map_err(|error| RunError::TestServer(error.to_string()))
    }

    async fn play(
        &self,
        bundle: Bundle,
        scenario: Arc<Scenario>,
        mut variables: HashMap<String, String>,
        forward: Option<mpsc::UnboundedSender<RunEvent>>,
        stop: CancellationToken,
        changes: mpsc::UnboundedReceiver<ChangeRequest>,
    ) -> Result<Summary, RunError> {
        // The scenario's own test server lives as long as the run.
        let testserver = self.start_testserver(&scenario).await?;
        if let Some(testserver) = &testserver {
            variables.extend(testserver.values.clone());
        }
        let mut publisher = Publisher {
            runs: self,
            scenario: scenario.clone(),
            source: bundle.source.clone(),
            run_id: String::new(),
            forward,
        };
        let (events, mut receiver) = mpsc::unbounded_channel();
        let request = RunRequest {
            bundle,
            variables,
            lead_time: LEAD_TIME,
            changes: Some(changes),
        };
        let registry = self.controller.registry.clone();
        let run = tokio::spawn(async move { execute(&registry, &scenario, request, Some(events), stop).await });
        while let Some(event) = receiver.recv().await {
            publisher.publish(event).await;
        }
        self.controller.live.finish();
        if let Some(testserver) = testserver {
            testserver.stop.await;
        }
        let summary = match run.await {
            Ok(result) => result?,
            Err(error) => return Err(RunError::Task(error.to_string())),
        };
        publisher.finish(&summary).await;
        Ok(summary)
    }
}

/// Hands each event of one run to everything that shows or keeps it.
struct Publisher<'a> {
    runs: &'a Runs,
    scenario: Arc<Scenario>,
    source: String,
    run_id: String,
    forward: Option<mpsc::UnboundedSender<RunEvent>>,
}

impl Publisher<'_> {
    async fn publish(&mut self, event: RunEvent) {
        let history = self.runs.history.clone();
        match &event {
            RunEvent::Started {
                run_id, agents, vus, ..
            } => {
                self.run_id = run_id.clone();
                if let Some(active) = self.runs.lock().as_mut() {
                    active.run_id = Some(run_id.clone());
                }
                self.runs.controller.live.begin(run_id, &self.scenario);
                if let Some(history) = history {
                    let (id, name, source) = (run_id.clone(), self.scenario.name.clone(), self.source.clone());
                    record(move || history.begin_run(&id, &name, &source)).await;
                }
                let _ = self.runs.feed.send(LiveUpdate::Started {
                    run_id: run_id.clone(),
                    scenario: self.scenario.name.clone(),
                    agents: *agents,
                    vus: *vus,
                });
            }
            RunEvent::Interval(interval) | RunEvent::LateReport(interval) => {
                let figures = &interval.figures;
                // The stored series gets each interval's complete figures, a late report's too.
                if let Some(history) = history {
                    let json = serde_json::to_string(figures).unwrap_or_default();
                    let (id, interval) = (self.run_id.clone(), figures.interval);
                    record(move || history.record_interval(&id, interval, &json)).await;
                }
                if matches!(event, RunEvent::Interval { .. }) {
                    let _ = self.runs.feed.send(LiveUpdate::Interval {
                        run_id: self.run_id.clone(),
                        figures: figures.clone(),
                    });
                }
            }
            RunEvent::AgentLost {
                agent, reason, detail, ..
            } => {
                let _ = self.runs.feed.send(LiveUpdate::AgentLost {
                    run_id: self.run_id.clone(),
                    agent: agent.clone(),
                    reason: reason.clone(),
                    action: detail.clone(),
                });
            }
            RunEvent::Reshared { .. } => {}
            RunEvent::Changed(change) => {
                let _ = self.runs.feed.send(LiveUpdate::Changed {
                    run_id: self.run_id.clone(),
                    change: change.clone(),
                });
            }
        }
        self.runs.controller.live.apply(&event);
        if let Some(forward) = &self.forward {
            let _ = forward.send(event);
        }
    }

    /// Keeps the summary and the report, and tells the feed.
    async fn finish(&self, summary: &Summary) {
        if let Some(history) = self.runs.history.clone() {
            let status = summary.outcome.status_word();
            let summary_json = serde_json::to_string(summary).unwrap_or_default();
            let report = crate::report::render(summary, &self.source);
            let id = summary.run_id.clone();
            record(move || history.finish_run(&id, status, &summary_json, Some(&report))).await;
        }
        let _ = self.runs.feed.send(LiveUpdate::Finished {
            run_id: summary.run_id.clone(),
            outcome: summary.outcome.clone(),
        });
    }
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
