//! Playing one assignment: compile the scenario the controller shipped, wait for the common
//! start time, grow and shrink this agent's exact share of VUs by the plan, and stream one
//! report per interval back to the controller.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wsfleet_metrics::{Counter, MetricSets};
use wsfleet_proto::v1::{agent_message, AgentMessage, Assignment, RunPhase, RunStatus};
use wsfleet_scenario::{plan, Bundle, LoadModel};

use crate::connection::run_tls_config;
use crate::vu::{static_messages, step_tls_configs, VuControl};
use crate::worker::{spawn_worker, WorkerCommand, WorkerReport, WorkerSetup};

/// How the session steers a run.
#[derive(Clone)]
pub struct RunControl {
    /// Let running iterations finish (within the scenario's graceful stop), start no more.
    pub graceful: CancellationToken,
    /// Stop now: close connections with a close frame.
    pub hard: CancellationToken,
    /// Set when the run has ended and its last report was handed to the session.
    pub done: CancellationToken,
}

impl RunControl {
    pub fn new() -> Self {
        RunControl {
            graceful: CancellationToken::new(),
            hard: CancellationToken::new(),
            done: CancellationToken::new(),
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

fn unix_nanos_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as i64)
        .unwrap_or(0)
}

/// The local instant matching a wall-clock time in Unix nanoseconds.
fn instant_of_unix(unix_nanos: i64) -> Instant {
    let delta = unix_nanos - unix_nanos_now();
    let now = Instant::now();
    if delta >= 0 {
        now + Duration::from_nanos(delta as u64)
    } else {
        now.checked_sub(Duration::from_nanos(delta.unsigned_abs()))
            .unwrap_or(now)
    }
}

async fn send_status(
    outgoing: &mpsc::Sender<AgentMessage>,
    run_id: &str,
    phase: RunPhase,
    message: String,
    last_interval: u64,
) {
    let _ = outgoing
        .send(AgentMessage {
            kind: Some(agent_message::Kind::RunStatus(RunStatus {
                run_id: run_id.to_owned(),
                phase: phase as i32,
                message,
                last_interval,
            })),
        })
        .await;
}

/// Plays `assignment` to its end, reporting through `outgoing`.
pub async fn play(
    assignment: Assignment,
    agent_id: Arc<str>,
    workers: usize,
    source_addresses: Vec<std::net::IpAddr>,
    outgoing: mpsc::Sender<AgentMessage>,
    control: RunControl,
) {
    let run_id = assignment.run_id.clone();
    let done = control.done.clone();
    let _done_on_exit = done.drop_guard();
    match prepare_and_play(assignment, agent_id, workers, source_addresses, &outgoing, control).await {
        Ok(last_interval) => send_status(&outgoing, &run_id, RunPhase::Finished, String::new(), last_interval).await,
        Err(message) => {
            tracing::error!(run = %run_id, %message, "cannot play assignment");
            send_status(&outgoing, &run_id, RunPhase::Failed, message, 0).await;
        }
    }
}

async fn prepare_and_play(
    assignment: Assignment,
    agent_id: Arc<str>,
    workers: usize,
    source_addresses: Vec<std::net::IpAddr>,
    outgoing: &mpsc::Sender<AgentMessage>,
    control: RunControl,
) -> Result<u64, String> {
    let bundle = Bundle {
        path: assignment.scenario_path.clone(),
        source: assignment.scenario_source.clone(),
        files: assignment.files.clone().into_iter().collect(),
    };
    if bundle.hash() != assignment.scenario_hash {
        return Err(format!(
            "scenario hash mismatch (got {}, controller says {}): the assignment was damaged in transit",
            bundle.hash(),
            assignment.scenario_hash
        ));
    }
    let scenario = Arc::new(
        bundle
            .compile()
            .map_err(|error| format!("scenario does not compile on the agent: {error}"))?,
    );
    let agent_index = assignment.agent_index as usize;
    let my_vus =
        plan::share(&assignment.weights, agent_index, scenario.plan.max_vus()).map_err(|error| error.to_string())?;

    let mut named: HashMap<String, String> = scenario.variables.clone().into_iter().collect();
    named.extend(assignment.variables.clone());
    named.insert("run_id".to_owned(), assignment.run_id.clone());
    if let Some(target) = &scenario.target {
        let empty = HashMap::new();
        let scope = wsfleet_scenario::Scope {
            vu: 0,
            iteration: 0,
            vu_iteration: 0,
            agent: &agent_id,
            named: if named.is_empty() { &empty } else { &named },
            local: None,
        };
        let rendered = target.render(&scope).into_owned();
        named.insert("target".to_owned(), rendered);
    }
    let tls = run_tls_config(named.get(wsfleet_scenario::TESTSERVER_CA_VARIABLE).map(String::as_str))
        .map_err(|error| format!("cannot set up TLS: {error}"))?;
    let run_start = instant_of_unix(assignment.start_unix_nanos);
    send_status(outgoing, &assignment.run_id, RunPhase::Ready, String::new(), 0).await;

    // Wait for the common start (a stop before it ends the run with nothing measured).
    tokio::select! {
        _ = tokio::time::sleep_until(run_start.into()) => {}
        _ = control.graceful.cancelled() => return Ok(0),
    }
    send_status(outgoing, &assignment.run_id, RunPhase::Running, String::new(), 0).await;

    let (vu_done, mut vu_done_receiver) = mpsc::unbounded_channel();
    let (reports, report_receiver) = mpsc::unbounded_channel();
    // Open-model VUs play the steps once.
    let iterations_per_vu = match &scenario.plan.model {
        LoadModel::Closed { iterations_per_vu, .. } => *iterations_per_vu,
        LoadModel::Open { .. } => Some(1),
    };
    let setup = WorkerSetup {
        scenario: scenario.clone(),
        static_messages: Arc::new(static_messages(&scenario)),
        step_tls: Arc::new(step_tls_configs(
            &scenario,
            named.get(wsfleet_scenario::TESTSERVER_CA_VARIABLE).map(String::as_str),
        )?),
        agent_id: agent_id.clone(),
        named: Arc::new(named),
        tls,
        iterations_per_vu,
        source_addresses: Arc::new(source_addresses),
        run_start,
        vu_done,
        reports,
    };
    let worker_count = workers.max(1);
    let mut worker_commands = Vec::with_capacity(worker_count);
    let mut worker_threads = Vec::with_capacity(worker_count);
    for index in 0..worker_count {
        let (commands, thread) =
            spawn_worker(index, setup.clone()).map_err(|error| format!("cannot start worker thread: {error}"))?;
        worker_commands.push(commands);
        worker_threads.push(thread);
    }
    drop(setup);
    let reporter = tokio::spawn(report_intervals(
        report_receiver,
        worker_count,
        assignment.run_id.clone(),
        outgoing.clone(),
    ));

    // The executor: follow the plan with this agent's share.
    let plan = &scenario.plan;
    let run_graceful = control.graceful.child_token();
    let run_hard = control.hard.child_token();
    let mut running: BTreeMap<usize, VuControl> = BTreeMap::new();
    let mut finished = vec![false; my_vus.len()];
    let mut level = 0usize;
    let deadline = run_start + plan.max_duration;
    let stages_end = plan.stages_end().map(|end| run_start + end);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if let LoadModel::Open {
        max_vus,
        max_handshakes,
        ..
    } = &plan.model
    {
        let my_max_vus =
            plan::split(&assignment.weights, *max_vus).map_err(|error| error.to_string())?[agent_index] as usize;
        let my_handshakes =
            plan::split(&assignment.weights, *max_handshakes).map_err(|error| error.to_string())?[agent_index] as usize;
        let handshakes = Arc::new(tokio::sync::Semaphore::new(
            my_handshakes.max(usize::from(my_max_vus > 0)),
        ));
        let mut owners = plan::OwnerSequence::new(&assignment.weights).map_err(|error| error.to_string())?;
        let mut index = 0u64;
        let mut slot = 0usize;
        let count = |slot: usize, counter: Counter| {
            let _ = worker_commands[slot % worker_count].send(WorkerCommand::Count { counter, amount: 1 });
        };
        'arrivals: loop {
            // The next arrival of the fleet's sequence that this agent owns, and when it is due.
            let (number, due) = loop {
                let Some(owner) = owners.next() else { break 'arrivals };
                let number = index;
                index += 1;
                let Some(due) = plan.arrival_time(number) else {
                    break 'arrivals;
                };
                if owner == agent_index {
                    break (number, run_start + due);
                }
            };
            // Scheduled against the absolute time, so the rate never drifts.
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(due.into()) => break,
                    Some(done) = vu_done_receiver.recv() => { running.remove(&done); }
                    _ = run_graceful.cancelled() => break 'arrivals,
                }
            }
            if Instant::now() >= deadline {
                break;
            }
            slot += 1;
            count(slot, Counter::VusOffered);
            if running.len() >= my_max_vus {
                count(slot, Counter::DroppedVus);
                continue;
            }
            let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
                count(slot, Counter::DroppedVus);
                continue;
            };
            let vu_control = VuControl {
                graceful: run_graceful.child_token(),
                hard: run_hard.child_token(),
            };
            let command = WorkerCommand::Spawn {
                slot,
                number,
                control: vu_control.clone(),
                handshake: Some(handshake),
            };
            if worker_commands[slot % worker_count].send(command).is_ok() {
                count(slot, Counter::VusStarted);
                running.insert(slot, vu_control);
            }
        }
        // Arrivals are over: VUs still playing finish their iteration (the graceful stop below
        // bounds the wait only after the plan's end or a stop).
        while !running.is_empty() && !run_graceful.is_cancelled() && Instant::now() < deadline {
            tokio::select! {
                Some(done) = vu_done_receiver.recv() => { running.remove(&done); }
                _ = run_graceful.cancelled() => {}
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
        }
    }
    if !matches!(plan.model, LoadModel::Open { .. }) {
        loop {
            let now = Instant::now();
            if run_graceful.is_cancelled() || now >= deadline || stages_end.is_some_and(|end| now >= end) {
                break;
            }
            let target = plan.fleet_target_at(now - run_start);
            let wanted = my_vus.partition_point(|vu| *vu < target);
            for slot in level.min(wanted)..wanted {
                if running.contains_key(&slot) || (iterations_per_vu.is_some() && finished[slot]) {
                    continue;
                }
                let vu_control = VuControl {
                    graceful: run_graceful.child_token(),
                    hard: run_hard.child_token(),
                };
                let command = WorkerCommand::Spawn {
                    slot,
                    number: my_vus[slot],
                    control: vu_control.clone(),
                    handshake: None,
                };
                if worker_commands[slot % worker_count].send(command).is_ok() {
                    running.insert(slot, vu_control);
                }
            }
            for (_, vu) in running.range(wanted..) {
                vu.graceful.cancel();
            }
            level = wanted;
            if stages_end.is_none() && running.is_empty() && finished.iter().all(|done| *done) {
                break;
            }
            tokio::select! {
                _ = tick.tick() => {}
                Some(slot) = vu_done_receiver.recv() => {
                    running.remove(&slot);
                    if slot < finished.len() { finished[slot] = true; }
                }
                _ = run_graceful.cancelled() => {}
            }
        }
    }

    // Wind down: let iterations finish within the graceful stop, then close hard.
    run_graceful.cancel();
    let graceful_until = tokio::time::Instant::now() + plan.graceful_stop;
    while !running.is_empty() {
        tokio::select! {
            Some(slot) = vu_done_receiver.recv() => { running.remove(&slot); }
            _ = tokio::time::sleep_until(graceful_until) => { run_hard.cancel(); break; }
            _ = run_hard.cancelled() => break,
        }
    }
    // After a hard stop VUs close their connections with a bounded wait.
    let hard_until = tokio::time::Instant::now() + Duration::from_secs(5);
    while !running.is_empty() {
        tokio::select! {
            Some(slot) = vu_done_receiver.recv() => { running.remove(&slot); }
            _ = tokio::time::sleep_until(hard_until) => break,
        }
    }
    for commands in &worker_commands {
        let _ = commands.send(WorkerCommand::Finish);
    }
    drop(worker_commands);
    let last_interval = reporter.await.unwrap_or(0);
    let _ = tokio::task::spawn_blocking(move || {
        for thread in worker_threads {
            let _ = thread.join();
        }
    })
    .await;
    Ok(last_interval)
}

/// Merges the workers' intervals and sends each interval once every worker has passed it.
/// Returns the last interval sent.
async fn report_intervals(
    mut reports: mpsc::UnboundedReceiver<WorkerReport>,
    workers: usize,
    run_id: String,
    outgoing: mpsc::Sender<AgentMessage>,
) -> u64 {
    let mut watermarks = vec![0u64; workers];
    let mut pending: BTreeMap<u64, MetricSets> = BTreeMap::new();
    let mut next_to_send = 0u64;
    let mut last_sent = 0u64;
    while let Some(report) = reports.recv().await {
        for (interval, sets) in report.intervals {
            if let Err(error) = pending.entry(interval).or_default().merge(&sets) {
                tracing::error!(%error, interval, "cannot merge worker interval");
            }
        }
        watermarks[report.worker] = report.watermark;
        let complete = watermarks.iter().copied().min().unwrap_or(0);
        let all_final = complete == u64::MAX;
        let ready_until = if all_final {
            pending.keys().next_back().map_or(next_to_send, |last| last + 1)
        } else {
            complete
        };
        while next_to_send < ready_until {
            let sets = pending.remove(&next_to_send).unwrap_or_default();
            match sets.to_report(&run_id, next_to_send) {
                Ok(report) => {
                    let message = AgentMessage {
                        kind: Some(agent_message::Kind::Report(report)),
                    };
                    if outgoing.send(message).await.is_err() {
                        tracing::warn!(run = %run_id, "controller stream closed; report not sent");
                    }
                }
                Err(error) => tracing::error!(%error, "cannot encode report"),
            }
            last_sent = next_to_send;
            next_to_send += 1;
        }
        if all_final {
            break;
        }
    }
    last_sent
}
