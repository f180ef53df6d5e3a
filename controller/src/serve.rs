//! A whole controller on two bound listeners: the agents' gRPC service, the HTTP endpoints
//! (dashboard, API, metrics), the runs, and the shutdown in order when `cancel` fires: refuse
//! new runs, stop the active run, give its agents time to send their final reports (the run
//! then writes its summary and report), and only then close the servers, which ends the
//! agents' streams. `wsfleet run` and `wsfleet controller` both start it this way; tests too.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::controller::Controller;
use crate::history::History;
use crate::runs::{Runs, TestServerStarter};
use crate::settings::ControllerSettings;

/// How long the shutdown waits for the active run to stop and collect its agents' final
/// reports before it closes the servers anyway.
pub const RUN_STOP_DEADLINE: Duration = Duration::from_secs(30);

/// How long each server has to close once told to.
const SERVER_CLOSE_DEADLINE: Duration = Duration::from_secs(3);

/// Where the controller listens, bound by the caller (port 0 in tests).
pub struct Listeners {
    /// Agents attach here (gRPC).
    pub grpc: TcpListener,
    /// The dashboard, `/api` and `/metrics`.
    pub http: TcpListener,
}

/// How the controller behaves.
pub struct ServeConfig {
    pub settings: ControllerSettings,
    /// The token `/api` and the dashboard require, when set.
    pub api_token: Option<String>,
    /// Starts a scenario's own test server; without it such a scenario is refused.
    pub testserver: Option<TestServerStarter>,
}

/// Why a server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the agents' gRPC service failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("the HTTP endpoints failed: {0}")]
    Http(#[from] std::io::Error),
    #[error("a server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A controller being served.
pub struct Serving {
    pub controller: Controller,
    pub runs: Arc<Runs>,
    done: JoinHandle<Result<(), ServeError>>,
}

impl Serving {
    /// Waits until the controller has shut down (after `cancel` fired).
    pub async fn closed(self) -> Result<(), ServeError> {
        self.done.await?
    }
}

/// Serves a controller on `listeners` until `cancel` fires, then shuts it down in order.
pub fn serve(
    listeners: Listeners,
    config: ServeConfig,
    history: Option<History>,
    cancel: CancellationToken,
) -> Serving {
    let controller = Controller::new(config.settings);
    let runs = Runs::new(controller.clone(), history, config.testserver);
    // The servers close after the runs, on a token of their own.
    let servers = CancellationToken::new();
    let grpc = {
        let (controller, servers) = (controller.clone(), servers.clone());
        let listener = listeners.grpc;
        tokio::spawn(async move { controller.serve_grpc(listener, servers).await })
    };
    let http = {
        let router = crate::http::router(crate::http::HttpState::new(runs.clone(), config.api_token));
        let (servers, listener) = (servers.clone(), listeners.http);
        tokio::spawn(async move { crate::http::serve(listener, router, servers).await })
    };
    let done = {
        let runs = runs.clone();
        tokio::spawn(async move {
            cancel.cancelled().await;
            shut_down(&runs).await;
            servers.cancel();
            let grpc = close(grpc).await.unwrap_or(Ok(()));
            let http = close(http).await.unwrap_or(Ok(()));
            grpc.and(http)
        })
    };
    Serving { controller, runs, done }
}

/// Refuses new runs and stops the active one, waiting (within a bound) until it has written
/// its summary.
async fn shut_down(runs: &Runs) {
    runs.close();
    if runs.stop() {
        tracing::info!("shutting down: stopping the active run");
    }
    if tokio::time::timeout(RUN_STOP_DEADLINE, runs.idle()).await.is_err() {
        tracing::warn!(
            deadline = ?RUN_STOP_DEADLINE,
            "shutting down: the active run did not end in time; closing the agents' streams"
        );
    }
}

/// Waits for a server task within [`SERVER_CLOSE_DEADLINE`]; `None` when it did not close in
/// time (it is left to the runtime's shutdown).
async fn close<E>(server: JoinHandle<Result<(), E>>) -> Option<Result<(), ServeError>>
where
    ServeError: From<E>,
{
    match tokio::time::timeout(SERVER_CLOSE_DEADLINE, server).await {
        Ok(Ok(result)) => Some(result.map_err(ServeError::from)),
        Ok(Err(error)) => Some(Err(ServeError::Task(error))),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Outcome;
    use crate::registry::{AgentEvent, AgentInfo};
    use crate::runs::StartError;
    use wsfleet_proto::v1::{controller_message, RunPhase, RunStatus};

    async fn listeners() -> Listeners {
        Listeners {
            grpc: TcpListener::bind("127.0.0.1:0").await.expect("binds"),
            http: TcpListener::bind("127.0.0.1:0").await.expect("binds"),
        }
    }

    /// An agent that plays nothing: it reports `finished` as soon as it is told to stop.
    fn obedient_agent(serving: &Serving) {
        let (sender, mut inbox) = tokio::sync::mpsc::channel(16);
        let info = AgentInfo::for_test("a", sender);
        let registry = serving.controller.registry.clone();
        registry.attach(info).expect("attaches");
        tokio::spawn(async move {
            while let Some(message) = inbox.recv().await {
                if let Some(controller_message::Kind::Stop(stop)) = message.kind {
                    let status = RunStatus {
                        run_id: stop.run_id.clone(),
                        phase: RunPhase::Finished as i32,
                        ..RunStatus::default()
                    };
                    registry.deliver("a", &stop.run_id, AgentEvent::Status(status));
                }
            }
        });
    }

    #[tokio::test]
    async fn shutting_down_stops_the_active_run_before_the_servers_close() {
        let cancel = CancellationToken::new();
        let config = ServeConfig {
            settings: ControllerSettings::default(),
            api_token: None,
            testserver: None,
        };
        let serving = serve(listeners().await, config, None, cancel.clone());
        obedient_agent(&serving);
        let bundle = wsfleet_scenario::Bundle {
            path: "long.yaml".into(),
            source: "load: { vus: 1, duration: 1h }\nsteps:\n  - connect: { url: 'ws://127.0.0.1:9/' }\n".into(),
            files: Default::default(),
        };
        let (_, run) = serving
            .runs
            .start(bundle.clone(), Default::default(), None)
            .expect("starts");
        // Once the run has begun on the agent, the controller is told to stop.
        tokio::time::timeout(Duration::from_secs(5), async {
            while serving.runs.active_run().is_none() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the run starts");
        cancel.cancel();
        let summary = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("the run ends in time")
            .expect("the run task ends")
            .expect("the run has a summary");
        assert_eq!(summary.outcome, Outcome::Stopped);
        assert_eq!(summary.agents[0].state, "finished");
        let refused = serving.runs.start(bundle, Default::default(), None);
        assert!(matches!(refused, Err(StartError::ShuttingDown)), "{:?}", refused.err());
        tokio::time::timeout(Duration::from_secs(10), serving.closed())
            .await
            .expect("the servers close in time")
            .expect("the servers close cleanly");
    }
}
