//! Playing one assignment: check and compile the scenario the controller shipped, wait for the
//! common start time, start the workers, run one executor per scenario part (`crate::executor`)
//! and the reporter (`crate::reporter`), and hold the run's status for the controller.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use wsfleet_scenario::plan::control::Control;
use wsfleet_scenario::plan::reshare::Takeover;
use wsfleet_scenario::{Scenario, ScenarioError};

use crate::clock::instant_of_unix;
use crate::connection::{run_tls_config, TlsConfig};
pub use crate::executor::ShareError;
use crate::executor::{drive_part, PartContext, SLOT_STRIDE};
use crate::outbox::Outbox;
use crate::rendezvous::{Arrivals, RendezvousHub};
use crate::vu::{static_messages, step_tls_configs};
use crate::wire::{Assignment, RunPhase, RunStatus};
use crate::worker::{spawn_worker, AgentThread, WorkerCommand, WorkerHandle, WorkerSetup};

/// How the session steers a run.
#[derive(Clone)]
pub struct RunControl {
    /// Let running iterations finish (within the scenario's graceful stop), start no more.
    pub graceful: CancellationToken,
    /// Stop now: close connections with a close frame.
    pub hard: CancellationToken,
    /// Set when the run has ended and its last report was handed to the session.
    pub done: CancellationToken,
    /// Every takeover of the run so far (agents lost, their share moved to this one and the
    /// other survivors), as the controller last sent them.
    pub takeovers: watch::Sender<Vec<Takeover>>,
    /// Every change the operator made to the run so far (VUs, rate, hold, pause, stop of a
    /// part), as the controller last sent them.
    pub controls: watch::Sender<Vec<Control>>,
    /// The run's rendezvous points.
    pub rendezvous: Arc<RendezvousHub>,
    /// Arrivals at rendezvous points, for the session to report (taken once).
    pub rendezvous_arrivals: Arrivals,
}

impl RunControl {
    pub fn new() -> Self {
        let (hub, arrivals) = RendezvousHub::new();
        RunControl {
            graceful: CancellationToken::new(),
            hard: CancellationToken::new(),
            done: CancellationToken::new(),
            takeovers: watch::Sender::new(Vec::new()),
            controls: watch::Sender::new(Vec::new()),
            rendezvous: Arc::new(hub),
            rendezvous_arrivals: Arc::new(std::sync::Mutex::new(Some(arrivals))),
        }
    }

    /// Graceful stop now, hard stop after `grace`.
    pub fn stop(&self, grace: Duration) {
        self.graceful.cancel();
        let hard = self.hard.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            hard.cancel();
        });
    }
}

impl Default for RunControl {
    fn default() -> Self {
        Self::new()
    }
}

/// Why an assignment could not be played; the text goes to the controller in the run's
/// `FAILED` status.
#[derive(Debug, thiserror::Error)]
pub enum PlayError {
    #[error("scenario hash mismatch (got {got}, controller says {expected}): the assignment was damaged in transit")]
    HashMismatch { got: String, expected: String },
    #[error("scenario does not compile on the agent: {0}")]
    Compile(ScenarioError),
    /// The scenario's `target` holds a `${...}` script that failed when it was rendered.
    #[error("the scenario's `target` cannot be rendered: {0} (correct the expression in `target`)")]
    Target(wsfleet_scenario::script::ScriptError),
    #[error("cannot set up TLS: {0}")]
    Tls(rustls::Error),
    /// A connect step's own TLS settings (the message names the step).
    #[error("{0}")]
    StepTls(String),
    #[error("cannot start worker: {0}")]
    Worker(std::io::Error),
    /// The assignment's weights or takeovers do not give this agent a share.
    #[error(transparent)]
    Share(#[from] ShareError),
}

/// What every run of this agent plays with; the session hands a copy to each assignment.
#[derive(Clone)]
pub struct Player {
    pub agent_id: Arc<str>,
    /// Worker threads to run VUs on.
    pub workers: usize,
    /// Set when the agent is one thread: its first worker runs there.
    pub here: Option<AgentThread>,
    pub source_addresses: Arc<Vec<std::net::IpAddr>>,
    /// Where reports and statuses wait for the controller; it outlives the session.
    pub outbox: Arc<Outbox>,
}

/// A scenario checked, compiled and given its variables, ready to play.
struct Prepared {
    scenario: Arc<Scenario>,
    /// `${...}` variables: the scenario's, the controller's, `run_id` and `target`.
    named: wsfleet_scenario::Values,
    tls: TlsConfig,
}

impl Player {
    /// Plays `assignment` to its end; the run's last status says how it went.
    pub async fn play(self, assignment: Assignment, control: RunControl) {
        let run_id = assignment.run_id.clone();
        let _done_on_exit = control.done.clone().drop_guard();
        match self.prepare_and_play(assignment, control).await {
            Ok(last_interval) => self.hold_status(&run_id, RunPhase::Finished, String::new(), last_interval),
            Err(error) => {
                tracing::error!(run = %run_id, %error, "cannot play assignment");
                self.hold_status(&run_id, RunPhase::Failed, error.to_string(), 0);
            }
        }
    }

    /// Holds the run's new status for the controller (the session sends it, again after a
    /// reattachment).
    fn hold_status(&self, run_id: &str, phase: RunPhase, message: String, last_interval: u64) {
        self.outbox.push_status(RunStatus {
            run_id: run_id.to_owned(),
            phase,
            message,
            last_interval,
            reports_dropped: 0,
        });
    }

    /// Returns the last interval reported.
    async fn prepare_and_play(&self, assignment: Assignment, control: RunControl) -> Result<u64, PlayError> {
        let prepared = prepare(&assignment, &self.agent_id)?;
        let run_start = instant_of_unix(assignment.start_unix_nanos);
        self.hold_status(&assignment.run_id, RunPhase::Ready, String::new(), 0);
        // Wait for the common start (a stop before it ends the run with nothing measured).
        tokio::select! {
            _ = tokio::time::sleep_until(run_start.into()) => {}
            _ = control.graceful.cancelled() => return Ok(0),
        }
        self.hold_status(&assignment.run_id, RunPhase::Running, String::new(), 0);
        self.play_parts(&assignment, prepared, run_start, &control).await
    }

    /// Starts the workers and the reporter, plays every part at once, then lets the workers
    /// report their last intervals. Returns the last interval reported.
    async fn play_parts(
        &self,
        assignment: &Assignment,
        prepared: Prepared,
        run_start: Instant,
        control: &RunControl,
    ) -> Result<u64, PlayError> {
        let Prepared { scenario, named, tls } = prepared;
        let (vu_done, vu_done_receiver) = mpsc::unbounded_channel();
        let (reports, report_receiver) = mpsc::unbounded_channel();
        let step_tls = step_tls_configs(
            &scenario,
            named.get(wsfleet_scenario::TESTSERVER_CA_VARIABLE).map(String::as_str),
        )
        .map_err(|error| PlayError::StepTls(error.to_string()))?;
        let setup = WorkerSetup {
            scenario: scenario.clone(),
            static_messages: Arc::new(static_messages(&scenario)),
            step_tls: Arc::new(step_tls),
            agent_id: self.agent_id.clone(),
            named: Arc::new(named),
            tls,
            source_addresses: self.source_addresses.clone(),
            rendezvous: control.rendezvous.clone(),
            run_start,
            vu_done,
            reports,
        };
        let (worker_commands, worker_handles) = self.start_workers(setup)?;
        let reporter = tokio::spawn(crate::reporter::report_intervals(
            report_receiver,
            worker_commands.len(),
            assignment.run_id.clone(),
            self.outbox.clone(),
        ));

        // One executor per scenario part, all at once; each follows its plan with this agent's
        // share, and the share of lost agents the controller moves here (takeovers).
        let (router, part_done) = route_vu_ends(vu_done_receiver, scenario.parts.len());
        let run_graceful = control.graceful.child_token();
        let run_hard = control.hard.child_token();
        let context = PartContext {
            scenario: &scenario,
            run_id: &assignment.run_id,
            weights: &assignment.weights,
            agent_index: assignment.agent_index,
            run_start,
            worker_commands: &worker_commands,
            takeovers: &control.takeovers,
            controls: &control.controls,
            run_graceful: &run_graceful,
            run_hard: &run_hard,
        };
        let outcomes = futures_util::future::join_all(
            part_done
                .into_iter()
                .enumerate()
                .map(|(part, done)| drive_part(&context, part, done)),
        )
        .await;
        router.abort();
        if let Some(Err(error)) = outcomes.into_iter().find(Result::is_err) {
            return Err(error.into());
        }
        for commands in &worker_commands {
            let _ = commands.send(WorkerCommand::Finish);
        }
        drop(worker_commands);
        let last_interval = reporter.await.unwrap_or(0);
        for worker in worker_handles {
            worker.join().await;
        }
        Ok(last_interval)
    }

    /// Starts the run's workers; `setup` is dropped once they have their copies, so the VU-end
    /// channel closes with the last worker.
    fn start_workers(
        &self,
        setup: WorkerSetup,
    ) -> Result<(Vec<mpsc::UnboundedSender<WorkerCommand>>, Vec<WorkerHandle>), PlayError> {
        let worker_count = self.workers.max(1);
        let mut worker_commands = Vec::with_capacity(worker_count);
        let mut worker_handles = Vec::with_capacity(worker_count);
        for index in 0..worker_count {
            let (commands, handle) =
                spawn_worker(index, setup.clone(), self.here.as_ref()).map_err(PlayError::Worker)?;
            worker_commands.push(commands);
            worker_handles.push(handle);
        }
        Ok((worker_commands, worker_handles))
    }
}

/// Checks the bundle against its hash, compiles it and resolves its variables and TLS roots.
fn prepare(assignment: &Assignment, agent_id: &str) -> Result<Prepared, PlayError> {
    let got = assignment.bundle.hash();
    if got != assignment.scenario_hash {
        return Err(PlayError::HashMismatch {
            got,
            expected: assignment.scenario_hash.clone(),
        });
    }
    let scenario = Arc::new(assignment.bundle.compile().map_err(PlayError::Compile)?);
    let mut named: wsfleet_scenario::Values = scenario.variables.clone().into_iter().collect();
    named.extend(assignment.variables.clone());
    named.insert("run_id".to_owned(), assignment.run_id.clone());
    if let Some(target) = &scenario.target {
        let empty = wsfleet_scenario::Values::default();
        let scope = wsfleet_scenario::Scope {
            vu: 0,
            iteration: 0,
            vu_iteration: 0,
            agent: agent_id,
            named: if named.is_empty() { &empty } else { &named },
            local: None,
        };
        // Rendered once per run: a `${...}` script here that fails leaves no URL to play.
        let rendered = target.try_render(&scope).map_err(PlayError::Target)?.into_owned();
        named.insert("target".to_owned(), rendered);
    }
    let tls = run_tls_config(named.get(wsfleet_scenario::TESTSERVER_CA_VARIABLE).map(String::as_str))
        .map_err(PlayError::Tls)?;
    Ok(Prepared { scenario, named, tls })
}

/// Workers report ended VUs by global slot; each part gets its own slots on a channel of its
/// own. Returns the router task (to abort once the parts are done) and the parts' receivers.
fn route_vu_ends(
    mut vu_done: mpsc::UnboundedReceiver<usize>,
    part_count: usize,
) -> (tokio::task::JoinHandle<()>, Vec<mpsc::UnboundedReceiver<usize>>) {
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..part_count).map(|_| mpsc::unbounded_channel()).unzip();
    let router = tokio::spawn(async move {
        while let Some(slot) = vu_done.recv().await {
            if let Some(sender) = senders.get(slot / SLOT_STRIDE) {
                let _ = sender.send(slot % SLOT_STRIDE);
            }
        }
    });
    (router, receivers)
}
