//! Playing one assignment: compile the scenario the controller shipped, wait for the common
//! start time, grow and shrink this agent's exact share of VUs by the plan, and stream one
//! report per interval back to the controller.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use wsfleet_metrics::{Counter, MetricSets};
use wsfleet_proto::v1::{Assignment, RunPhase, RunStatus};
use wsfleet_scenario::plan::reshare::{self, ArrivalOwners, ClosedLayers, Takeover};
use wsfleet_scenario::{Bundle, LoadModel, Scenario};

use crate::connection::run_tls_config;
use crate::vu::{static_messages, step_tls_configs, VuControl};
use crate::worker::{spawn_worker, AgentThread, WorkerCommand, WorkerReport, WorkerSetup};

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
    /// The run's rendezvous points.
    pub rendezvous: Arc<crate::rendezvous::RendezvousHub>,
    /// Arrivals at rendezvous points, for the session to report (taken once).
    pub rendezvous_arrivals: crate::rendezvous::Arrivals,
}

impl RunControl {
    pub fn new() -> Self {
        let (hub, arrivals) = crate::rendezvous::RendezvousHub::new();
        RunControl {
            graceful: CancellationToken::new(),
            hard: CancellationToken::new(),
            done: CancellationToken::new(),
            takeovers: watch::Sender::new(Vec::new()),
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

/// Holds the run's new status for the controller (the session sends it, again after a
/// reattachment).
async fn send_status(
    outgoing: &crate::outbox::Outbox,
    run_id: &str,
    phase: RunPhase,
    message: String,
    last_interval: u64,
) {
    outgoing.push_status(RunStatus {
        run_id: run_id.to_owned(),
        phase: phase as i32,
        message,
        last_interval,
        reports_dropped: 0,
    });
}

/// Plays `assignment` to its end, reporting through `outgoing`, which outlives the session.
pub async fn play(
    assignment: Assignment,
    agent_id: Arc<str>,
    workers: usize,
    here: Option<AgentThread>,
    source_addresses: Vec<std::net::IpAddr>,
    outgoing: Arc<crate::outbox::Outbox>,
    control: RunControl,
) {
    let run_id = assignment.run_id.clone();
    let done = control.done.clone();
    let _done_on_exit = done.drop_guard();
    match prepare_and_play(
        assignment,
        agent_id,
        workers,
        here,
        source_addresses,
        &outgoing,
        control,
    )
    .await
    {
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
    here: Option<AgentThread>,
    source_addresses: Vec<std::net::IpAddr>,
    outgoing: &Arc<crate::outbox::Outbox>,
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
    let weights = assignment.weights.clone();

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
        source_addresses: Arc::new(source_addresses),
        rendezvous: control.rendezvous.clone(),
        run_start,
        vu_done,
        reports,
    };
    let worker_count = workers.max(1);
    let mut worker_commands = Vec::with_capacity(worker_count);
    let mut worker_handles = Vec::with_capacity(worker_count);
    for index in 0..worker_count {
        let (commands, handle) = spawn_worker(index, setup.clone(), here.as_ref())
            .map_err(|error| format!("cannot start worker: {error}"))?;
        worker_commands.push(commands);
        worker_handles.push(handle);
    }
    drop(setup);
    let reporter = tokio::spawn(report_intervals(
        report_receiver,
        worker_count,
        assignment.run_id.clone(),
        outgoing.clone(),
    ));

    // One executor per scenario part, all at once; each follows its plan with this agent's share,
    // and the share of lost agents the controller moves here (takeovers).
    let part_count = scenario.parts.len();
    let mut part_done: Vec<mpsc::UnboundedSender<usize>> = Vec::with_capacity(part_count);
    let mut part_done_receivers = Vec::with_capacity(part_count);
    for _ in 0..part_count {
        let (sender, receiver) = mpsc::unbounded_channel();
        part_done.push(sender);
        part_done_receivers.push(receiver);
    }
    // Workers report ended VUs by global slot; each part gets its own.
    let router = tokio::spawn(async move {
        while let Some(slot) = vu_done_receiver.recv().await {
            if let Some(sender) = part_done.get(slot / SLOT_STRIDE) {
                let _ = sender.send(slot % SLOT_STRIDE);
            }
        }
    });
    let run_graceful = control.graceful.child_token();
    let run_hard = control.hard.child_token();
    let context = PartContext {
        scenario: &scenario,
        run_id: &assignment.run_id,
        weights: &weights,
        agent_index,
        run_start,
        worker_commands: &worker_commands,
        takeovers: &control.takeovers,
        run_graceful: &run_graceful,
        run_hard: &run_hard,
    };
    let outcomes = futures_util::future::join_all(
        part_done_receivers
            .into_iter()
            .enumerate()
            .map(|(part, done)| drive_part(&context, part, done)),
    )
    .await;
    router.abort();
    if let Some(Err(message)) = outcomes.into_iter().find(Result::is_err) {
        return Err(message);
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

/// Global slots carry their part: slot = part * SLOT_STRIDE + the part's own slot.
const SLOT_STRIDE: usize = 1 << 40;

/// What every part's executor of one assignment shares.
struct PartContext<'a> {
    scenario: &'a Scenario,
    run_id: &'a str,
    weights: &'a [f64],
    agent_index: usize,
    run_start: Instant,
    worker_commands: &'a [mpsc::UnboundedSender<WorkerCommand>],
    takeovers: &'a tokio::sync::watch::Sender<Vec<Takeover>>,
    run_graceful: &'a CancellationToken,
    run_hard: &'a CancellationToken,
}

/// A part's hard stop, fired when its run's hard token is cancelled and, whatever way the
/// part's driver ends, when it ends: VUs never outlive the driver that would stop them (at a
/// normal end none are left, and firing changes nothing).
struct PartStop {
    stop: Arc<crate::stop::HardStop>,
    _relay: tokio_util::task::AbortOnDropHandle<()>,
}

impl Drop for PartStop {
    fn drop(&mut self) {
        self.stop.fire();
    }
}

/// Plays one part of the scenario with this agent's share, then winds its VUs down: running
/// iterations finish within the part's graceful stop, then its connections are closed.
async fn drive_part(
    context: &PartContext<'_>,
    part: usize,
    mut done: mpsc::UnboundedReceiver<usize>,
) -> Result<(), String> {
    let PartContext {
        scenario,
        run_id,
        weights,
        agent_index,
        run_start,
        worker_commands,
        ..
    } = *context;
    let plan = &scenario.parts[part].plan;
    let worker_count = worker_commands.len().max(1);
    // A part's VUs stop together: one part's wind-down does not touch another's.
    let run_graceful = context.run_graceful.child_token();
    let run_hard = context.run_hard.child_token();
    // The VUs wait on a hard stop that is cheap to poll; the token (cancelled here or by the
    // whole run's stop) fires it.
    let hard_stop = crate::stop::HardStop::new();
    let _part_stop = PartStop {
        stop: hard_stop.clone(),
        _relay: {
            let (token, stop) = (run_hard.clone(), hard_stop.clone());
            tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
                token.cancelled().await;
                stop.fire();
            }))
        },
    };
    let global = |slot: usize| part * SLOT_STRIDE + slot;
    let iterations_per_vu = match &plan.model {
        LoadModel::Closed { iterations_per_vu, .. } => *iterations_per_vu,
        LoadModel::Open { .. } => Some(1),
    };
    // This agent's VUs: layer 0 is its share of the fleet's; takeovers add layers.
    let mut layers = ClosedLayers::new(weights, &[], plan.max_vus()).map_err(|error| error.to_string())?;
    let mut running: BTreeMap<usize, VuControl> = BTreeMap::new();
    let deadline = run_start + plan.max_duration;
    let stages_end = plan.stages_end().map(|end| run_start + end);
    let mut takeover_updates = context.takeovers.subscribe();
    // Takeovers that came before the start count too.
    takeover_updates.mark_changed();
    let mut takeovers: Vec<Takeover> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if let LoadModel::Open {
        max_vus,
        max_handshakes,
        ..
    } = &plan.model
    {
        // Caps are shares of the fleet's, like VUs; a takeover raises the survivors' caps.
        let caps = |takeovers: &[Takeover]| -> Result<(usize, usize), String> {
            let part = |fleet: u64| {
                ClosedLayers::new(weights, takeovers, fleet)
                    .map(|layers| layers.parts(fleet)[agent_index] as usize)
                    .map_err(|error| error.to_string())
            };
            Ok((part(*max_vus)?, part(*max_handshakes)?))
        };
        let (mut my_max_vus, mut my_handshakes) = caps(&takeovers)?;
        let handshakes = Arc::new(tokio::sync::Semaphore::new(
            my_handshakes.max(usize::from(my_max_vus > 0)),
        ));
        let total = plan.total_arrivals();
        let mut owners = ArrivalOwners::new(weights, total).map_err(|error| error.to_string())?;
        // The first arrival index of each takeover.
        let mut takeover_starts: Vec<u64> = Vec::new();
        let mut slot = 0usize;
        let count = |slot: usize, counter: Counter| {
            let _ = worker_commands[global(slot) % worker_count].send(WorkerCommand::Count { counter, amount: 1 });
        };
        let arrivals_end = stages_end.unwrap_or(deadline).min(deadline);
        'arrivals: loop {
            // Where this look-ahead starts: a takeover received while waiting goes back here.
            let snapshot = owners.clone();
            // The next arrival of the fleet's sequence that this agent owns, and when it is due;
            // `None` when it owns no more (a takeover may still give it some).
            let next = loop {
                let Some(arrival) = owners.next() else { break None };
                let Some(due) = plan.arrival_time(arrival.index) else {
                    break None;
                };
                if arrival.owner == agent_index {
                    break Some((arrival.number, run_start + due));
                }
            };
            let wake = next.map_or(arrivals_end, |(_, due)| due);
            // Scheduled against the absolute time, so the rate never drifts.
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(wake.into()) => break,
                    Some(done) = done.recv() => { running.remove(&done); }
                    _ = run_graceful.cancelled() => break 'arrivals,
                    changed = takeover_updates.changed() => {
                        if changed.is_err() {
                            // The session is gone; the run is being stopped.
                            break 'arrivals;
                        }
                        let list = takeover_updates.borrow_and_update().clone();
                        if list.len() <= takeovers.len() {
                            continue;
                        }
                        owners = take_over_arrivals(snapshot, weights, total, plan, &takeovers, &mut takeover_starts, &list)?;
                        takeovers = list;
                        let (new_max_vus, new_handshakes) = caps(&takeovers)?;
                        handshakes.add_permits(new_handshakes.saturating_sub(my_handshakes));
                        (my_max_vus, my_handshakes) = (new_max_vus, new_handshakes);
                        tracing::info!(run = %run_id, takeovers = takeovers.len(), my_max_vus, "taking over the arrivals of lost agents");
                        continue 'arrivals;
                    }
                }
            }
            let Some((number, _)) = next else { break };
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
                hard: hard_stop.clone(),
            };
            let command = WorkerCommand::Spawn {
                part,
                slot: global(slot),
                number: scenario.vu_number(part, number),
                control: vu_control.clone(),
                handshake: Some(handshake),
            };
            if worker_commands[global(slot) % worker_count].send(command).is_ok() {
                count(slot, Counter::VusStarted);
                running.insert(slot, vu_control);
            }
        }
        // Arrivals are over: VUs still playing finish their iteration (the graceful stop below
        // bounds the wait only after the plan's end or a stop).
        while !running.is_empty() && !run_graceful.is_cancelled() && Instant::now() < deadline {
            tokio::select! {
                Some(done) = done.recv() => { running.remove(&done); }
                _ = run_graceful.cancelled() => {}
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
        }
    }
    if !matches!(plan.model, LoadModel::Open { .. }) {
        // Slots number this agent's VUs layer after layer: `offsets[layer]` is the layer's first.
        let mut offsets = vec![0usize];
        let mut levels = vec![0usize];
        let mut finished = vec![false; layers.positions(0, agent_index).len()];
        let mut updates_open = true;
        loop {
            let now = Instant::now();
            if run_graceful.is_cancelled() || now >= deadline || stages_end.is_some_and(|end| now >= end) {
                break;
            }
            let elapsed = now.saturating_duration_since(run_start);
            let counts = layers.counts(plan.fleet_target_at(elapsed), elapsed);
            for (layer, in_play) in counts.iter().enumerate() {
                let mine = layers.positions(layer, agent_index);
                let offset = offsets[layer];
                let wanted = mine.partition_point(|position| position < in_play);
                let first_new = levels[layer].min(wanted);
                for (index, position) in mine.iter().enumerate().take(wanted).skip(first_new) {
                    let slot = offset + index;
                    if running.contains_key(&slot) || (iterations_per_vu.is_some() && finished[slot]) {
                        continue;
                    }
                    let vu_control = VuControl {
                        graceful: run_graceful.child_token(),
                        hard: hard_stop.clone(),
                    };
                    let command = WorkerCommand::Spawn {
                        part,
                        slot: global(slot),
                        number: scenario.vu_number(part, layers.number(layer, *position)),
                        control: vu_control.clone(),
                        handshake: None,
                    };
                    if worker_commands[global(slot) % worker_count].send(command).is_ok() {
                        running.insert(slot, vu_control);
                    }
                }
                for (_, vu) in running.range(offset + wanted..offset + mine.len()) {
                    vu.graceful.cancel();
                }
                levels[layer] = wanted;
            }
            // Without stages, or with each VU's iterations capped, the part is over once every VU
            // it could start has played all of them.
            if (stages_end.is_none() || iterations_per_vu.is_some())
                && running.is_empty()
                && finished.iter().all(|done| *done)
            {
                break;
            }
            tokio::select! {
                _ = tick.tick() => {}
                Some(slot) = done.recv() => {
                    running.remove(&slot);
                    if slot < finished.len() { finished[slot] = true; }
                }
                _ = run_graceful.cancelled() => {}
                changed = takeover_updates.changed(), if updates_open => {
                    if changed.is_err() {
                        updates_open = false;
                        continue;
                    }
                    let list = takeover_updates.borrow_and_update().clone();
                    if list.len() <= takeovers.len() {
                        continue;
                    }
                    // Earlier layers do not change; the new ones follow them.
                    let grown = ClosedLayers::new(weights, &list, plan.max_vus()).map_err(|error| error.to_string())?;
                    for layer in layers.layer_count()..grown.layer_count() {
                        let previous = offsets[layer - 1] + grown.positions(layer - 1, agent_index).len();
                        offsets.push(previous);
                        levels.push(0);
                        finished.resize(previous + grown.positions(layer, agent_index).len(), false);
                    }
                    tracing::info!(
                        run = %run_id,
                        takeovers = list.len(),
                        peak_vus = grown.parts(plan.max_vus())[agent_index],
                        "taking over the VUs of lost agents"
                    );
                    layers = grown;
                    takeovers = list;
                }
            }
        }
    }

    // Wind down: let iterations finish within the graceful stop, then close hard.
    run_graceful.cancel();
    let graceful_until = tokio::time::Instant::now() + plan.graceful_stop;
    while !running.is_empty() {
        tokio::select! {
            Some(slot) = done.recv() => { running.remove(&slot); }
            _ = tokio::time::sleep_until(graceful_until) => {
                run_hard.cancel();
                hard_stop.fire();
                break;
            }
            _ = run_hard.cancelled() => {
                hard_stop.fire();
                break;
            }
        }
    }
    // After a hard stop VUs close their connections with a bounded wait.
    let hard_until = tokio::time::Instant::now() + Duration::from_secs(5);
    while !running.is_empty() {
        tokio::select! {
            Some(slot) = done.recv() => { running.remove(&slot); }
            _ = tokio::time::sleep_until(hard_until) => break,
        }
    }
    Ok(())
}

/// Merges the workers' intervals and sends each interval once every worker has passed it.
/// Returns the last interval sent.
async fn report_intervals(
    mut reports: mpsc::UnboundedReceiver<WorkerReport>,
    workers: usize,
    run_id: String,
    outgoing: Arc<crate::outbox::Outbox>,
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
                // Kept until the controller acknowledges it, across reattachments.
                Ok(report) => outgoing.push_report(report),
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

/// The arrival owners once `list` (every takeover so far) is in force: back to `snapshot`, the
/// state where this agent's look-ahead started, which the takeovers' first arrivals cannot
/// precede when they arrive in time. A takeover learned late (its first arrival already passed)
/// is applied from where this agent is, consistent with the others from there on.
fn take_over_arrivals(
    snapshot: ArrivalOwners,
    weights: &[f64],
    total: u64,
    plan: &wsfleet_scenario::LoadPlan,
    known: &[Takeover],
    starts: &mut Vec<u64>,
    list: &[Takeover],
) -> Result<ArrivalOwners, String> {
    let weight_sets = reshare::weights_after(weights, list).map_err(|error| error.to_string())?;
    let resume_at = snapshot.next_index();
    let mut owners = snapshot;
    for (index, takeover) in list.iter().enumerate().skip(known.len()) {
        let start = reshare::first_arrival_from(plan, takeover.from);
        starts.push(start);
        match owners.add_takeover(start, &takeover.lost, &weight_sets[index + 1]) {
            Ok(()) => {}
            Err(reshare::TakeoverError::TooLate { .. }) => {
                tracing::warn!(
                    start,
                    resume_at,
                    "a takeover arrived late: arrivals between its start and now may be missed or doubled"
                );
                let with_starts: Vec<(u64, Takeover)> = starts.iter().copied().zip(list.iter().cloned()).collect();
                owners =
                    ArrivalOwners::at(weights, total, &with_starts, resume_at).map_err(|error| error.to_string())?;
            }
            Err(error) => return Err(error.to_string()),
        }
    }
    Ok(owners)
}
