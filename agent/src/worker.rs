//! Worker threads: each runs a single-threaded tokio runtime with its own recorder, so VUs
//! record without locks or atomics. At every interval boundary a worker hands its finished
//! intervals to the run's reporter; that is the only cross-thread traffic besides VU starts.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use wsfleet_metrics::catalog::ACTIVE_VUS;
use wsfleet_metrics::{MetricSets, Recorder};
use wsfleet_scenario::{Scenario, StepId};

use crate::clock;
use crate::connection::TlsConfig;
use crate::vu::{run_vu, RunEnv, VuControl};

/// What the executor tells a worker.
pub enum WorkerCommand {
    /// Start a VU; `slot` is its index in this agent's share, echoed back when it ends. An
    /// open-model VU carries its place among the handshakes in flight until it has connected.
    Spawn {
        /// The scenario part the VU plays.
        part: usize,
        slot: usize,
        number: u64,
        control: VuControl,
        handshake: Option<tokio::sync::OwnedSemaphorePermit>,
    },
    /// Count events the executor decided (open-model arrivals) in this worker's recorder.
    Count {
        counter: wsfleet_metrics::Counter,
        amount: u64,
    },
    /// No more VUs will come: report everything once the running ones have ended.
    Finish,
}

/// Finished intervals from one worker. Every interval below `watermark` has been reported.
pub struct WorkerReport {
    pub worker: usize,
    pub intervals: Vec<(u64, MetricSets)>,
    pub watermark: u64,
}

/// What every worker of a run needs (all `Send`, shared by reference count).
#[derive(Clone)]
pub struct WorkerSetup {
    pub scenario: Arc<Scenario>,
    pub static_messages: Arc<crate::vu::StaticMessages>,
    pub agent_id: Arc<str>,
    pub named: Arc<wsfleet_scenario::Values>,
    pub tls: TlsConfig,
    pub step_tls: Arc<HashMap<StepId, TlsConfig>>,
    pub rendezvous: Arc<crate::rendezvous::RendezvousHub>,
    pub source_addresses: Arc<Vec<std::net::IpAddr>>,
    pub run_start: Instant,
    pub vu_done: mpsc::UnboundedSender<usize>,
    pub reports: mpsc::UnboundedSender<WorkerReport>,
}

/// The thread of an agent that is one thread (`crate::run_on_this_thread`): worker 0 runs there,
/// beside the session, as tasks of the thread's `LocalSet`. A process of one thread spares every
/// socket call the bookkeeping the kernel and libc do for threads (a file reference taken and
/// dropped, cancellation state switched on and off).
#[derive(Clone)]
pub struct AgentThread {
    starts: mpsc::UnboundedSender<Box<dyn FnOnce() + Send>>,
}

impl AgentThread {
    /// The handle, and the task that starts workers: the caller spawns it on its `LocalSet`.
    pub fn new() -> (AgentThread, impl std::future::Future<Output = ()>) {
        let (starts, mut requests) = mpsc::unbounded_channel::<Box<dyn FnOnce() + Send>>();
        let serve = async move {
            while let Some(start) = requests.recv().await {
                start();
            }
        };
        (AgentThread { starts }, serve)
    }
}

/// A running worker, to wait for at the end of a run.
pub enum WorkerHandle {
    Thread(std::thread::JoinHandle<()>),
    /// A worker on the agent's own thread: the sender is dropped when it ends.
    AgentThread(tokio::sync::oneshot::Receiver<()>),
}

impl WorkerHandle {
    pub async fn join(self) {
        match self {
            WorkerHandle::Thread(thread) => {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
            WorkerHandle::AgentThread(ended) => {
                let _ = ended.await;
            }
        }
    }
}

/// Starts worker `index`: on the agent's own thread when `here` is given and it is the first
/// worker, otherwise on a thread of its own.
pub fn spawn_worker(
    index: usize,
    setup: WorkerSetup,
    here: Option<&AgentThread>,
) -> std::io::Result<(mpsc::UnboundedSender<WorkerCommand>, WorkerHandle)> {
    let (commands, receiver) = mpsc::unbounded_channel();
    if let Some(here) = here.filter(|_| index == 0) {
        let (ended, handle) = tokio::sync::oneshot::channel::<()>();
        let start = Box::new(move || {
            tokio::task::spawn_local(async move {
                worker_main(index, setup, receiver).await;
                drop(ended);
            });
        });
        here.starts
            .send(start)
            .map_err(|_| std::io::Error::other("the agent's thread takes no more workers"))?;
        return Ok((commands, WorkerHandle::AgentThread(handle)));
    }
    let handle = std::thread::Builder::new()
        .name(format!("wsfleet-worker-{index}"))
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!(worker = index, %error, "cannot start worker runtime");
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, worker_main(index, setup, receiver));
        })?;
    Ok((commands, WorkerHandle::Thread(handle)))
}

async fn worker_main(index: usize, setup: WorkerSetup, mut commands: mpsc::UnboundedReceiver<WorkerCommand>) {
    let recorder = Rc::new(RefCell::new(Recorder::new(
        setup.run_start,
        setup.scenario.step_names.clone(),
    )));
    let env = Rc::new(RunEnv {
        scenario: setup.scenario.clone(),
        static_messages: setup.static_messages.clone(),
        agent_id: setup.agent_id.clone(),
        named: setup.named.clone(),
        tls: setup.tls.clone(),
        step_tls: setup.step_tls.clone(),
        rendezvous: setup.rendezvous.clone(),
        recorder: recorder.clone(),
        handshake_slots: Rc::new(tokio::sync::Semaphore::new(crate::vu::HANDSHAKES_IN_FLIGHT_PER_WORKER)),
        // Workers start at different addresses so the spread is even across the agent.
        source_addresses: crate::connection::SourceAddresses::new(setup.source_addresses.clone(), index),
        upgrades: crate::vu::UpgradeRequests::default(),
        connector: Rc::new(crate::connection::Network),
    });
    let tasks = tokio_util::task::TaskTracker::new();
    let mut next_boundary = 1u64;
    let mut finishing = false;
    loop {
        // Hand over intervals shortly after each boundary, in run time.
        let boundary = setup.run_start + Duration::from_secs(next_boundary) + Duration::from_millis(5);
        tokio::select! {
            command = commands.recv(), if !finishing => match command {
                Some(WorkerCommand::Count { counter, amount }) => {
                    recorder.borrow_mut().add(std::time::Instant::now(), wsfleet_metrics::SetId::Connection, counter, amount);
                }
                Some(WorkerCommand::Spawn { part, slot, number, control, handshake }) => {
                    let env = env.clone();
                    let done = setup.vu_done.clone();
                    let recorder = recorder.clone();
                    tasks.spawn_local(async move {
                        recorder.borrow_mut().gauge_add(clock::now(), ACTIVE_VUS, 1);
                        run_vu(env, part, number, control, handshake).await;
                        recorder.borrow_mut().gauge_add(clock::now(), ACTIVE_VUS, -1);
                        let _ = done.send(slot);
                    });
                }
                Some(WorkerCommand::Finish) | None => {
                    finishing = true;
                    tasks.close();
                }
            },
            _ = tasks.wait(), if finishing => break,
            _ = tokio::time::sleep_until(boundary.into()) => {
                let now = Instant::now();
                let intervals = recorder.borrow_mut().take_finished(now);
                let watermark = recorder.borrow().interval_of(now);
                next_boundary = watermark + 1;
                let _ = setup.reports.send(WorkerReport { worker: index, intervals, watermark });
            }
        }
    }
    let intervals = recorder.borrow_mut().take_all(Instant::now());
    let _ = setup.reports.send(WorkerReport {
        worker: index,
        intervals,
        watermark: u64::MAX,
    });
}
